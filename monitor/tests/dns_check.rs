//! `monitor check` with passive DNS: answers in a capture bind names as the
//! capture goes, so that each connection is judged with what the host had
//! resolved when it opened it. dnsmasq's real answers (tests/fixtures/dns)
//! are replayed inside synthetic frames.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapPacket, PcapWriter};
use serde_json::Value;

const MATRIX: &str = r#"
version: 1
zones:
  lan: {cidrs: ["10.0.2.0/24"]}
services:
  rppam: {cidr: 10.0.2.50/32}
  resolver: {cidr: 10.0.2.1/32}
  lvs: {fqdn: lvs.ravenphyre.net}
  graph: {fqdn: graph.microsoft.com}
rules:
  - {id: dns, from: rppam, to: resolver, port: 53, proto: udp}
  - {id: dns-tcp, from: rppam, to: resolver, port: 53}
  - {id: lvs-checkin, from: rppam, to: lvs, port: 443}
  - {id: graph-api, from: rppam, to: graph, port: 443}
"#;

const CLIENT: [u8; 4] = [10, 0, 2, 50];
const RESOLVER: [u8; 4] = [10, 0, 2, 1];
const LVS: [u8; 4] = [203, 0, 113, 10];
const GRAPH: [u8; 4] = [203, 0, 113, 21];
const ELSEWHERE: [u8; 4] = [198, 51, 100, 7];

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/dns/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn eth() -> etherparse::PacketBuilderStep<etherparse::Ethernet2Header> {
    PacketBuilder::ethernet2([2; 6], [4; 6])
}

fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    eth().ipv4(src, dst, 64).udp(sport, dport).write(&mut v, payload).unwrap();
    v
}

fn syn(sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    eth().ipv4(CLIENT, dst, 64).tcp(sport, dport, 1000, 64240).syn().write(&mut v, &[]).unwrap();
    v
}

fn syn_ack(src: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    eth().ipv4(src, CLIENT, 64).tcp(sport, dport, 5000, 64240).syn().ack(1001).write(&mut v, &[]).unwrap();
    v
}

fn segment(seq: u32, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    eth().ipv4(RESOLVER, CLIENT, 64).tcp(53, 40002, seq, 64240).ack(1100).write(&mut v, data).unwrap();
    v
}

/// (seconds after the start, frame)
fn capture() -> Vec<(f64, Vec<u8>)> {
    let tcp_answer = fixture("graph_a_tcp.bin");
    vec![
        // lvs.ravenphyre.net A over UDP, then a connection to its address.
        (0.0, udp(CLIENT, 40001, RESOLVER, 53, b"query")),
        (0.001, udp(RESOLVER, 53, CLIENT, 40001, &fixture("lvs_a.bin"))),
        (1.0, syn(50001, LVS, 443)),
        (1.001, syn_ack(LVS, 443, 50001)),
        // Straight to graph's address, before any lookup of it.
        (2.0, syn(50002, GRAPH, 443)),
        (2.001, syn_ack(GRAPH, 443, 50002)),
        // graph.microsoft.com over TCP, the answer in two segments.
        (3.0, syn(40002, RESOLVER, 53)),
        (3.001, syn_ack(RESOLVER, 53, 40002)),
        (3.002, segment(5001, &tcp_answer[..50])),
        (3.003, segment(5051, &tcp_answer[50..])),
        (4.0, syn(50003, GRAPH, 443)),
        (4.001, syn_ack(GRAPH, 443, 50003)),
        // A port no rule documents on lvs's address: its DNS name is shown.
        (5.0, syn(50004, LVS, 8443)),
        (5.001, syn_ack(LVS, 8443, 50004)),
        (6.0, syn(50005, ELSEWHERE, 443)),
        (6.001, syn_ack(ELSEWHERE, 443, 50005)),
        // graph's answer had TTL 30 (the smallest of its chain); with the
        // 60 s grace it is gone at 3 + 90 s.
        (92.0, syn(50006, GRAPH, 443)),
        (92.001, syn_ack(GRAPH, 443, 50006)),
        (94.0, syn(50007, GRAPH, 443)),
        (94.001, syn_ack(GRAPH, 443, 50007)),
    ]
}

fn write(dir: &Path) -> (PathBuf, PathBuf) {
    let pcap = dir.join("dns.pcap");
    let mut w = PcapWriter::new(std::fs::File::create(&pcap).unwrap()).unwrap();
    let t0 = Duration::from_secs(1_775_469_600);
    for (t, f) in capture() {
        w.write_packet(&PcapPacket::new(t0 + Duration::from_secs_f64(t), f.len() as u32, &f)).unwrap();
    }
    let matrix = dir.join("matrix.yaml");
    std::fs::write(&matrix, MATRIX).unwrap();
    (pcap, matrix)
}

#[test]
fn connections_are_judged_with_the_lookups_seen_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let (pcap, matrix) = write(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["check", "--matrix", matrix.to_str().unwrap(), "--pcap", pcap.to_str().unwrap()])
        .args(["--format", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "findings expected: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let summary = lines.pop().unwrap();
    let by_port = |p: u64| -> Vec<&Value> { lines.iter().filter(|a| a["src"]["port"] == p).collect() };

    // The two lookups and the connections made after them conform.
    let dns = |name: &str| summary["dns"][name].as_u64().unwrap_or(0);
    assert_eq!(
        (dns("dns_messages"), dns("dns_answers"), dns("dns_tcp_messages")),
        (2, 2, 1),
        "the summary counts the UDP answer and the reassembled TCP one: {summary}"
    );
    // lvs's address under one name; graph's under the three names of its CNAME chain,
    // which run out together at 93 s.
    assert_eq!(
        (dns("dns_bindings_added"), dns("dns_bindings_expired")),
        (4, 3),
        "bindings learnt and run out: {summary}"
    );
    assert_eq!(
        (summary["conforming"].as_u64(), summary["unexpected"].as_u64()),
        (Some(5), Some(4)),
        "{summary}"
    );
    for conforming in [50001, 50003, 50006, 40001, 40002] {
        assert!(by_port(conforming).is_empty(), "client port {conforming} conforms: {lines:?}");
    }
    // Before its lookup, graph's address is just an address.
    let early = by_port(50002);
    assert_eq!(early.len(), 1, "{lines:?}");
    let reason = early[0]["reason"].as_str().unwrap();
    assert!(
        reason.ends_with(
            "; no DNS lookup of lvs.ravenphyre.net or graph.microsoft.com was seen resolving to 203.0.113.21"
        ),
        "{reason}"
    );
    assert!(early[0]["dst"].get("dns_names").is_none(), "no names before the lookup: {}", early[0]);
    // After TTL and grace, the binding is gone.
    let late = by_port(50007);
    assert_eq!(late.len(), 1, "expired at 93 s: {lines:?}");
    assert!(late[0]["reason"].as_str().unwrap().contains("no DNS lookup of"), "{}", late[0]);
    // An undocumented port on a resolved address names what it was resolved from.
    let off_port = by_port(50004);
    assert_eq!(off_port[0]["dst"]["dns_names"], serde_json::json!(["lvs.ravenphyre.net"]));
    assert!(!off_port[0]["reason"].as_str().unwrap().contains("no DNS lookup"), "{}", off_port[0]);
    let elsewhere = by_port(50005);
    assert!(
        elsewhere[0]["reason"].as_str().unwrap().contains("resolving to 198.51.100.7"),
        "{}",
        elsewhere[0]
    );
}
