//! `monitor check` on a capture where documented connections are rejected by
//! ICMP errors from different senders: a router on the way (IPv4 and IPv6)
//! and the server itself. The alert's `icmp.sender` names who sent each.

mod check_run;

use std::{net::IpAddr, time::Duration};

use check_run::check_json;
use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapPacket, PcapWriter};

const MATRIX: &str = "version: 1\nzones:\n  clients: {cidrs: [10.0.2.0/24, \"fd00:2::/64\"]}\n  \
servers: {cidrs: [10.0.1.0/24, \"fd00:1::/64\"]}\nrules:\n  - {id: web, from: clients, to: servers, port: 443}\n";

/// Two clients, so that their alerts are not one alert counted twice.
const CLIENT: [u8; 4] = [10, 0, 2, 1];
const CLIENT_B: [u8; 4] = [10, 0, 2, 2];
const SERVER: [u8; 4] = [10, 0, 1, 10];
const ROUTER: [u8; 4] = [10, 0, 2, 254];
const CLIENT6: [u8; 16] = [0xfd, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const SERVER6: [u8; 16] = [0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
const ROUTER6: [u8; 16] = [0xfd, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe];

fn eth() -> etherparse::PacketBuilderStep<etherparse::Ethernet2Header> {
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
}

/// A SYN from the client's `sport` to port 443, as a frame and as the IP
/// packet an ICMP error quotes (the IP header and 8 bytes of TCP).
fn syn4(client: [u8; 4], sport: u16) -> (Vec<u8>, Vec<u8>) {
    let mut f = Vec::new();
    eth().ipv4(client, SERVER, 64).tcp(sport, 443, 1, 64240).syn().write(&mut f, &[]).unwrap();
    let quote = f[14..14 + 28].to_vec();
    (f, quote)
}

fn syn6(sport: u16) -> (Vec<u8>, Vec<u8>) {
    let mut f = Vec::new();
    eth().ipv6(CLIENT6, SERVER6, 64).tcp(sport, 443, 1, 64240).syn().write(&mut f, &[]).unwrap();
    let quote = f[14..14 + 48].to_vec();
    (f, quote)
}

fn icmp4(from: [u8; 4], to: [u8; 4], t: u8, code: u8, quote: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    eth().ipv4(from, to, 64).icmpv4_raw(t, code, [0; 4]).write(&mut f, quote).unwrap();
    f
}

fn icmp6(from: [u8; 16], t: u8, code: u8, quote: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    eth().ipv6(from, CLIENT6, 64).icmpv6_raw(t, code, [0; 4]).write(&mut f, quote).unwrap();
    f
}

fn capture() -> Vec<u8> {
    let (a, qa) = syn4(CLIENT, 40000);
    let (b, qb) = syn4(CLIENT_B, 40001);
    let (c, qc) = syn6(40002);
    let frames = [
        a,
        icmp4(ROUTER, CLIENT, 3, 13, &qa), // a firewall on the way: admin-prohibited
        b,
        icmp4(SERVER, CLIENT_B, 3, 3, &qb), // the server itself: port-unreachable
        c,
        icmp6(ROUTER6, 1, 1, &qc), // an IPv6 router: admin-prohibited
    ];
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let ts = Duration::from_secs(1_700_000_000) + Duration::from_millis(i as u64);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f)).unwrap();
    }
    w.into_writer()
}

#[test]
fn icmp_errors_in_a_capture_name_their_sender() {
    let lines = check_json(MATRIX, &capture());
    let (summary, alerts) = lines.split_last().expect("a summary line");
    assert_eq!(summary["icmp_errors_matched"], 3, "{summary}");
    let by_port = |p: u64| {
        alerts
            .iter()
            .find(|a| a["src"]["port"] == p)
            .unwrap_or_else(|| panic!("no alert from client port {p}: {lines:?}"))
    };
    let ip = |a: [u8; 16]| IpAddr::from(a).to_string();
    for (port, name, sender) in [
        (40000, "admin-prohibited", IpAddr::from(ROUTER).to_string()),
        (40001, "port-unreachable", IpAddr::from(SERVER).to_string()),
        (40002, "admin-prohibited", ip(ROUTER6)),
    ] {
        let a = by_port(port);
        assert_eq!(
            (a["kind"].as_str(), a["state"].as_str()),
            (Some("blocked"), Some("icmp-unreachable")),
            "{a}"
        );
        assert_eq!(a["icmp"]["name"], name, "{a}");
        assert_eq!(a["icmp"]["sender"], sender.as_str(), "{a}");
    }
    assert_eq!(alerts.len(), 3, "{alerts:?}");
}
