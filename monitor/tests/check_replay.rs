//! `monitor check` on a long capture: flows that ended are judged and
//! dropped during the replay, and the summary still counts every flow.

use std::{io::Write, process::Command};

use etherparse::PacketBuilder;
use serde_json::Value;

const MATRIX: &str =
    "version: 1\nzones:\n  clients: {cidrs: [10.0.2.0/24]}\n  servers: {cidrs: [10.0.1.0/24]}\n\
rules:\n  - {id: web, from: clients, to: servers, port: 443}\n";

/// A classic pcap of `n` short TCP connections, one every 10 ms (handshake
/// and both FINs), and one undocumented connection (to port 22) halfway.
fn capture(n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let mut record = |usec: u64, frame: Vec<u8>| {
        let t = 1_700_000_000_000_000 + usec;
        out.extend_from_slice(&((t / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((t % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    };
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
    out
}

#[test]
fn a_long_capture_of_short_flows_counts_every_flow() {
    let n = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let (matrix, pcap) = (dir.path().join("matrix.yaml"), dir.path().join("long.pcap"));
    std::fs::write(&matrix, MATRIX).unwrap();
    std::fs::File::create(&pcap).unwrap().write_all(&capture(n)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["check", "--format", "json", "--matrix"])
        .arg(&matrix)
        .arg("--pcap")
        .arg(&pcap)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "one alert, then the summary: {stdout}");
    assert_eq!((lines[0]["kind"].as_str(), lines[0]["dst"]["port"].as_u64()), (Some("unexpected"), Some(22)));
    let s = &lines[1];
    assert_eq!(s["packets"], 4 * u64::from(n));
    assert_eq!((s["flows"].as_u64(), s["conforming"].as_u64()), (Some(n.into()), Some(u64::from(n) - 1)));
    assert_eq!(s["unexpected"], 1);
}
