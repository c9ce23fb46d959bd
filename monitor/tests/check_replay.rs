//! `monitor check` on a long capture: flows that ended are judged and
//! dropped during the replay, and the summary still counts every flow.

mod check_run;

mod pcap_writer;

use check_run::check_json;
use etherparse::PacketBuilder;
use pcap_writer::Pcap;

const MATRIX: &str =
    "version: 1\nzones:\n  clients: {cidrs: [10.0.2.0/24]}\n  servers: {cidrs: [10.0.1.0/24]}\n\
rules:\n  - {id: web, from: clients, to: servers, port: 443}\n";

/// A classic pcap of `n` short TCP connections, one every 10 ms (handshake
/// and both FINs), and one undocumented connection (to port 22) halfway.
fn capture(n: u32) -> Vec<u8> {
    let mut pcap = Pcap::new(1_700_000_000_000_000);
    let mut record = |usec: u64, frame: Vec<u8>| pcap.record(usec, &frame);
    let eth = || PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    for i in 0..n {
        let client = [10, 0, 2, 1 + (i / 50_000) as u8];
        let server = [10, 0, 1, 10];
        let (cport, sport) = (1024 + (i % 50_000) as u16, if i == n / 2 { 22 } else { 443 });
        let t = u64::from(i) * 10_000;
        let mut f = Vec::new();
        eth().ipv4(client, server, 64).tcp(cport, sport, 1, 64240).syn().write(&mut f, &[]).unwrap();
        record(t, f);
        let mut f = Vec::new();
        eth().ipv4(server, client, 64).tcp(sport, cport, 1, 64240).syn().ack(2).write(&mut f, &[]).unwrap();
        record(t + 100, f);
        let mut f = Vec::new();
        eth().ipv4(client, server, 64).tcp(cport, sport, 2, 64240).fin().ack(2).write(&mut f, &[]).unwrap();
        record(t + 200, f);
        let mut f = Vec::new();
        eth().ipv4(server, client, 64).tcp(sport, cport, 2, 64240).fin().ack(3).write(&mut f, &[]).unwrap();
        record(t + 300, f);
    }
    pcap.into_bytes()
}

#[test]
fn a_long_capture_of_short_flows_counts_every_flow() {
    let n = 100_000;
    let lines = check_json(MATRIX, &capture(n));
    assert_eq!(lines.len(), 2, "one alert, then the summary: {lines:?}");
    assert_eq!((lines[0]["kind"].as_str(), lines[0]["dst"]["port"].as_u64()), (Some("unexpected"), Some(22)));
    let s = &lines[1];
    assert_eq!(s["packets"], 4 * u64::from(n));
    assert_eq!((s["flows"].as_u64(), s["conforming"].as_u64()), (Some(n.into()), Some(u64::from(n) - 1)));
    assert_eq!(s["unexpected"], 1);
}
