//! Passive DNS end to end: `monitor run` on a client's veth, a real DNS
//! server (dnsmasq) and HTTPS-port listeners in the peer namespace, lookups
//! with `dig` over UDP and TCP (docs/dns.md).
//!
//! NEED ROOT, THE BUILT BINARY (`cargo xtask build`), dnsmasq and dig
//! (`cargo xtask setup` installs dnsmasq-base and bind9-dnsutils).
//!
//! `a` (10.200.0.1) is the client; `b` (10.200.0.2) runs dnsmasq and
//! listens on 203.0.113.10 (lvs.ravenphyre.net), .21 and .22
//! (graph.microsoft.com → CNAME → CNAME → A, TTL 2 s, moved from .21 to .22
//! half-way). The run is captured with tcpdump on veth-a and the capture
//! replayed with `monitor check`: the findings must be the same.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use monitor_tests::{
    link,
    monitor::{self, Monitor},
    traffic::{tcp_echo_client, TcpEchoServer},
    NetNs, Pair,
};
use serde_json::Value;

const MATRIX: &str = r#"
version: 1
zones:
  lab: {cidrs: ["10.200.0.0/24"]}
services:
  rppam: {cidr: 10.200.0.1/32}
  resolver: {cidr: 10.200.0.2/32}
  lvs: {fqdn: lvs.ravenphyre.net}
  graph: {fqdn: graph.microsoft.com}
rules:
  - {id: dns-udp, from: rppam, to: resolver, port: 53, proto: udp}
  - {id: dns-tcp, from: rppam, to: resolver, port: 53}
  - {id: lvs-checkin, from: rppam, to: lvs, port: 443}
  - {id: graph-api, from: rppam, to: graph, port: 443}
"#;

const LVS: &str = "203.0.113.10";
const GRAPH_OLD: &str = "203.0.113.21";
const GRAPH_NEW: &str = "203.0.113.22";
/// TTL of the graph chain (seconds) and the grace given to the monitor.
const TTL: u32 = 2;
const GRACE: &str = "1";

fn require_tool(name: &str) {
    let found = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().unwrap();
    assert!(
        found.status.success(),
        "{name} is missing: run `cargo xtask setup` (dnsmasq-base, bind9-dnsutils)"
    );
}

/// dnsmasq in `ns`, answering for the lab's names, graph on `graph_addr`.
fn dnsmasq(ns: &NetNs, graph_addr: &str) -> Child {
    let mut c = ns.command("dnsmasq");
    c.args([
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=10.200.0.2",
        "--port=53",
        "--pid-file=",
        &format!("--host-record=lvs.ravenphyre.net,{LVS},300"),
        &format!("--host-record=edge.graph.example.net,{graph_addr},{TTL}"),
        &format!("--cname=graph.microsoft.com,graph.ms-acdc.example.net,{TTL}"),
        &format!("--cname=graph.ms-acdc.example.net,edge.graph.example.net,{TTL}"),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let child = c.spawn().expect("start dnsmasq");
    std::thread::sleep(Duration::from_millis(300));
    child
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) on our own child (`ip netns exec` execs the program).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// `dig` from `ns`; returns the addresses it printed.
fn dig(ns: &NetNs, name: &str, tcp: bool) -> Vec<String> {
    let mut args = vec!["dig", "@10.200.0.2", "+short", "+tries=1", "+time=2", name, "A"];
    if tcp {
        args.push("+tcp");
    }
    ns.exec(&args).lines().filter(|l| l.parse::<IpAddr>().is_ok()).map(String::from).collect()
}

/// One HTTPS-port connection from `p.a` to `ip`, served in `p.b`.
fn connect(p: &Pair, ip: &str) {
    let server = SocketAddr::new(ip.parse().unwrap(), 443);
    let listener = TcpEchoServer::start(&p.b, server, 1);
    tcp_echo_client(&p.a, server, 1, 16);
    listener.join();
}

/// (kind, server ip, server port, whether the reason names a missing lookup)
type Finding = (String, String, u64, bool);

fn findings(lines: &[String]) -> BTreeSet<Finding> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "alert")
        .map(|a| {
            (
                a["kind"].as_str().unwrap().to_string(),
                a["dst"]["ip"].as_str().unwrap().to_string(),
                a["dst"]["port"].as_u64().unwrap(),
                a["reason"].as_str().unwrap().contains("no DNS lookup of"),
            )
        })
        .collect()
}

#[test]
fn connections_to_names_conform_after_the_host_looked_them_up() {
    require_tool("dnsmasq");
    require_tool("dig");
    let p = Pair::new();
    for ip in [LVS, GRAPH_OLD, GRAPH_NEW] {
        link::add_addr(&p.b, Pair::IF_B, &format!("{ip}/32"));
    }
    p.a.exec(&["ip", "route", "add", "203.0.113.0/24", "via", "10.200.0.2"]);
    let dir = tempfile::tempdir().unwrap();
    let matrix = dir.path().join("matrix.yaml");
    std::fs::write(&matrix, MATRIX).unwrap();
    let pcap = dir.path().join("run.pcap");

    let mut dns = dnsmasq(&p.b, GRAPH_OLD);

    let tcpdump =
        p.a.command("tcpdump")
            .args(["-i", Pair::IF_A, "-U", "-n", "-w", pcap.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tcpdump");
    let socket = dir.path().join("monitor.sock");
    let mut mon = Monitor::start(
        &p.a,
        &[
            "run",
            "--matrix",
            matrix.to_str().unwrap(),
            "--iface",
            Pair::IF_A,
            "--format",
            "json",
            "--dns-grace",
            GRACE,
            "--socket",
            socket.to_str().unwrap(),
        ],
    );
    mon.wait_attached(&p.a, Pair::IF_A);
    std::thread::sleep(Duration::from_millis(500));

    // Straight to lvs's address, no lookup: unexpected.
    connect(&p, LVS);
    // Looked up over UDP, then connected: conforming.
    assert_eq!(dig(&p.a, "lvs.ravenphyre.net", false), vec![LVS.to_string()]);
    connect(&p, LVS);
    // graph over TCP, through its CNAME chain: conforming.
    assert_eq!(dig(&p.a, "graph.microsoft.com", true), vec![GRAPH_OLD.to_string()]);
    connect(&p, GRAPH_OLD);
    // The name moves; once TTL and grace have run out the old address is
    // no longer graph's, and the new one is after its lookup.
    stop(dns);
    dns = dnsmasq(&p.b, GRAPH_NEW);
    std::thread::sleep(Duration::from_secs(u64::from(TTL) + 3));
    assert_eq!(dig(&p.a, "graph.microsoft.com", false), vec![GRAPH_NEW.to_string()]);
    connect(&p, GRAPH_NEW);
    connect(&p, GRAPH_OLD);
    std::thread::sleep(Duration::from_secs(2));

    let out = mon.stop();
    out.assert_success();
    stop(tcpdump);
    stop(dns);

    let live = findings(&out.lines);
    let want: BTreeSet<Finding> = [
        ("unexpected".to_string(), LVS.to_string(), 443, true),
        ("unexpected".to_string(), GRAPH_OLD.to_string(), 443, true),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        live,
        want,
        "live findings; monitor stdout:\n{}\nstderr:\n{}",
        out.lines.join("\n"),
        out.stderr
    );
    // Findings fold repeats: the flows each rule documented tell the
    // conforming connections apart (the exit coverage report).
    let coverage: Value = out
        .lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "coverage")
        .expect("a coverage report at exit");
    let flows = |id: &str| -> u64 {
        let rules = coverage["rules"].as_array().expect("coverage rules");
        rules.iter().find(|r| r["id"] == id).map_or(0, |r| r["flows"].as_u64().unwrap_or(0))
    };
    assert_eq!(flows("lvs-checkin"), 1, "the connection after the UDP lookup: {coverage}");
    assert_eq!(flows("graph-api"), 2, "after the TCP lookup, and to the new address: {coverage}");
    assert_eq!(flows("dns-tcp"), 1, "{coverage}");

    // The capture, replayed, gives the same findings.
    let (replay, unexpected) = check(&matrix, &pcap);
    assert_eq!(replay, want, "monitor check on the capture of the same traffic");
    assert_eq!(unexpected, 2, "one flow per finding in the capture too");
}

/// `monitor check` on the capture: its findings, and its count of unexpected flows.
fn check(matrix: &Path, pcap: &Path) -> (BTreeSet<Finding>, u64) {
    let stdout = monitor::check(&[
        "--matrix",
        matrix.to_str().unwrap(),
        "--pcap",
        pcap.to_str().unwrap(),
        "--format",
        "json",
        "--dns-grace",
        GRACE,
    ]);
    let lines: Vec<String> = stdout.lines().map(String::from).collect();
    let summary: Value = serde_json::from_str(lines.last().expect("a summary line")).unwrap();
    (findings(&lines), summary["unexpected"].as_u64().unwrap_or(0))
}
