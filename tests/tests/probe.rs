//! `monitor probe` in namespaces: a client, a router and a server, with
//! nftables making each outcome happen for real, so that every state the
//! probe reports (open, refused, icmp-rejected with the right sender, timed
//! out, UDP port-unreachable, UDP open|filtered) is what the kernel did.
//! Needs root and the monitor binary (`cargo xtask build`, or MONITOR_BIN).

use std::{
    net::{TcpListener, UdpSocket},
    process::Output,
    time::{Duration, Instant},
};

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use monitor_tests::{
    agent::{rp_pam, Agent},
    cluster::Cluster,
    link::{self, Veth},
    monitor::require_monitor_bin,
    netns::NetNs,
    nft, require_root,
};
use serde_json::Value;

const MATRIX: &str = r#"
version: 1
services:
  client: {group: clients}
  server: {group: servers}
  lab: {cidr: 10.201.2.0/24}
rules:
  - {id: open, from: client, to: server, port: 5000}
  - {id: router-prohibited, from: client, to: server, port: 5001}
  - {id: host-port-unreachable, from: client, to: server, port: 5002}
  - {id: dropped, from: client, to: server, port: 5003}
  - {id: refused, from: client, to: server, port: 5004}
  - {id: udp-closed, from: client, to: server, port: 5005, proto: udp}
  - {id: udp-silent, from: client, to: server, port: 5006, proto: udp}
  - {id: a-range, from: client, to: lab, port: 80}
  - {id: inbound-only, from: server, to: client, port: 22}
"#;

const INVENTORY: &str =
    "[clients]\nclient ansible_host=10.201.1.2\n\n[servers]\nserver ansible_host=10.201.2.2\n";

struct Net {
    client: NetNs,
    router: NetNs,
    server: NetNs,
    _links: Vec<Veth>,
}

/// client 10.201.1.2 — 10.201.1.1 router 10.201.2.1 — 10.201.2.2 server.
fn routed() -> Net {
    require_root();
    let (client, router, server) = (NetNs::new("pc"), NetNs::new("pr"), NetNs::new("ps"));
    let a = Veth::pair(&client, "eth0", &router, "eth0");
    let b = Veth::pair(&server, "eth0", &router, "eth1");
    link::add_addr(&client, "eth0", "10.201.1.2/24");
    link::add_addr(&router, "eth0", "10.201.1.1/24");
    link::add_addr(&router, "eth1", "10.201.2.1/24");
    link::add_addr(&server, "eth0", "10.201.2.2/24");
    router.sysctl("net/ipv4/ip_forward", "1");
    client.exec(&["ip", "route", "add", "default", "via", "10.201.1.1"]);
    server.exec(&["ip", "route", "add", "default", "via", "10.201.2.1"]);
    nft::apply(
        &router,
        "table inet probe_test {\n chain forward {\n  type filter hook forward priority filter; policy accept;\n  tcp dport 5001 reject with icmp type admin-prohibited\n }\n}\n",
    );
    nft::apply(
        &server,
        &nft::input_rules(&["tcp dport 5002 reject with icmp type port-unreachable", &nft::drop_tcp(5003)]),
    );
    Net { client, router, server, _links: vec![a, b] }
}

fn probe(ns: &NetNs, dir: &std::path::Path, extra: &[&str]) -> Output {
    let bin = require_monitor_bin();
    let m = dir.join("matrix.yaml");
    let i = dir.join("inventory.ini");
    std::fs::write(&m, MATRIX).unwrap();
    std::fs::write(&i, INVENTORY).unwrap();
    ns.command(bin.to_str().unwrap())
        .args([
            "probe",
            "--matrix",
            m.to_str().unwrap(),
            "--inventory",
            i.to_str().unwrap(),
            "--host",
            "client",
        ])
        .args(extra)
        .output()
        .unwrap()
}

fn outcome<'a>(report: &'a Value, rule: &str) -> &'a Value {
    let hits: Vec<&Value> =
        report["results"].as_array().unwrap().iter().filter(|r| r["rule"] == rule).collect();
    assert_eq!(hits.len(), 1, "one result for {rule}: {report:#}");
    &hits[0]["outcome"]
}

#[test]
fn each_state_is_what_the_kernel_did_and_the_icmp_sender_is_named() {
    let net = routed();
    let dir = tempfile::tempdir().unwrap();
    let _open = net.server.run(|| TcpListener::bind("10.201.2.2:5000")).unwrap();
    let _silent = net.server.run(|| UdpSocket::bind("10.201.2.2:5006")).unwrap();
    let out = probe(&net.client, dir.path(), &["--timeout", "1s", "--format", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "some paths are closed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["host"], "client");
    assert_eq!(r["probed"], 7, "{r:#}");
    assert_eq!(outcome(&r, "open")["state"], "open");
    let prohibited = outcome(&r, "router-prohibited");
    assert_eq!(prohibited["state"], "icmp-rejected", "{r:#}");
    // From the router's address on the client's side, where the error leaves it.
    assert_eq!(prohibited["from"], "10.201.1.1", "the router sent it: {r:#}");
    assert_eq!((prohibited["icmp_type"].as_u64(), prohibited["icmp_code"].as_u64()), (Some(3), Some(13)));
    assert_eq!(prohibited["meaning"], "admin-prohibited");
    let unreachable = outcome(&r, "host-port-unreachable");
    assert_eq!(unreachable["state"], "icmp-rejected", "{r:#}");
    assert_eq!(unreachable["from"], "10.201.2.2", "the host sent it: {r:#}");
    assert_eq!(unreachable["meaning"], "port-unreachable");
    assert_eq!(outcome(&r, "dropped")["state"], "timed-out");
    assert_eq!(outcome(&r, "refused")["state"], "refused");
    let udp = outcome(&r, "udp-closed");
    assert_eq!(
        (udp["state"].as_str(), udp["from"].as_str()),
        (Some("icmp-rejected"), Some("10.201.2.2")),
        "{r:#}"
    );
    assert_eq!(outcome(&r, "udp-silent")["state"], "open|filtered");
    let not: Vec<(&str, &str)> = r["not_probed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["rule"].as_str().unwrap(), s["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(not, [("a-range", "not probed: a range")], "{r:#}");
    let _ = &net.router;
}

#[test]
fn dry_run_prints_the_plan_and_sends_nothing() {
    let net = routed();
    let dir = tempfile::tempdir().unwrap();
    let l = net.server.run(|| TcpListener::bind("10.201.2.2:5000")).unwrap();
    l.set_nonblocking(true).unwrap();
    let out = probe(&net.client, dir.path(), &["--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("probe plan for client: 7 probes\n"), "{text}");
    assert!(text.contains("open tcp/10.201.2.2:5000 -> server"), "{text}");
    assert!(text.contains("a-range tcp/80 -> lab (10.201.2.0/24)"), "{text}");
    assert!(text.contains("not probed: a range"), "{text}");
    assert!(!text.contains("inbound-only"), "only paths whose source is the host: {text}");
    assert_eq!(
        l.accept().map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::WouldBlock),
        "nothing was sent"
    );
}

/// 7 probes at 4/s cannot take less than 6 intervals of 250 ms.
#[test]
fn rate_is_enforced() {
    let net = routed();
    let dir = tempfile::tempdir().unwrap();
    let _open = net.server.run(|| TcpListener::bind("10.201.2.2:5000")).unwrap();
    let t = Instant::now();
    let out = probe(&net.client, dir.path(), &["--rate", "4/s", "--timeout", "300ms"]);
    let took = t.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(took >= Duration::from_millis(1500), "7 probes at 4/s took only {took:?}");
}

fn run_probe(ns: &NetNs, args: &[&str]) -> (Option<i32>, Value) {
    let bin = require_monitor_bin();
    let out = ns.command(bin.to_str().unwrap()).arg("probe").args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("probe {args:?}: {e}: {stdout}{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), v)
}

/// The RP-PAM HA cluster with every documented path between its hosts
/// listening, one drop (db1 5432) and one ICMP reject (redis1 6379) added,
/// and an agent on every host: the probe from each host reports exactly the
/// paths nft blocks among the cluster's hosts (db1 and redis1 from each
/// node, none from the others), the agents' blocked findings name the same
/// two paths and no other, and each probed rule's flows are in the coverage
/// of the prober's agent.
#[test]
fn on_the_cluster_the_probe_reports_what_nft_blocks_and_the_agent_agrees() {
    let names = ["rppam1", "rppam2", "rppam3", "db1", "redis1"];
    let c = Cluster::new(&names);
    let dir = tempfile::tempdir().unwrap();
    let (matrix, inventory) = (rp_pam("matrix.yaml"), rp_pam("inventory.ini"));
    let base = |host: &'static str| {
        ["--matrix", matrix.as_str(), "--inventory", inventory.as_str(), "--host", host, "--profile", "ha"]
            .map(str::to_owned)
            .to_vec()
    };
    let args = |host: &'static str, extra: &[&str]| -> Vec<String> {
        base(host).into_iter().chain(extra.iter().map(|s| s.to_string())).collect()
    };
    let by_ip: BTreeMap<IpAddr, &str> = names.iter().map(|n| (c.ip(n), *n)).collect();
    // Listen on every probed TCP address of a cluster host, once each; UDP
    // stays silent.
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    let mut seen = BTreeSet::new();
    let mut probing = Vec::new();
    for host in names {
        let a = args(host, &["--dry-run", "--format", "json"]);
        let (code, plan) = run_probe(c.ns(host), &a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, Some(0), "{host}: {plan:#}");
        let mut to_cluster = 0;
        for p in plan["probes"].as_array().unwrap() {
            let addr: SocketAddr = p["addr"].as_str().unwrap().parse().unwrap();
            let Some(server) = by_ip.get(&addr.ip()) else { continue };
            to_cluster += 1;
            if !seen.insert((p["proto"].as_str().unwrap().to_string(), addr)) {
                continue;
            }
            match p["proto"].as_str().unwrap() {
                "tcp" => tcp.push(c.ns(server).run(|| TcpListener::bind(addr)).unwrap()),
                _ => udp.push(c.ns(server).run(|| UdpSocket::bind(addr)).unwrap()),
            }
        }
        probing.push((host, to_cluster));
    }
    assert!(tcp.len() >= 4, "paths between the cluster's hosts: {probing:?}");
    let db = c.addr("db1", 5432);
    let redis = c.addr("redis1", 6379);
    nft::apply(c.ns("db1"), &nft::input_rules(&[&nft::drop_tcp(5432)]));
    nft::apply(c.ns("redis1"), &nft::input_rules(&["tcp dport 6379 reject with icmp type port-unreachable"]));

    let agents: Vec<(&str, Agent)> = names
        .iter()
        .map(|&host| {
            let socket = dir.path().join(format!("{host}.sock")).display().to_string();
            let agent = Agent::start(
                c.ns(host),
                Cluster::IFACE,
                &[
                    "--matrix",
                    &matrix,
                    "--inventory",
                    &inventory,
                    "--profile",
                    "ha",
                    "--iface",
                    Cluster::IFACE,
                    "--socket",
                    &socket,
                    "--syn-timeout",
                    "1",
                    "--node",
                    host,
                    "--format",
                    "json",
                ],
            );
            (host, agent)
        })
        .collect();
    for (host, agent) in &agents {
        let a = args(host, &["--timeout", "1s", "--format", "json"]);
        let (code, r) = run_probe(c.ns(host), &a.iter().map(String::as_str).collect::<Vec<_>>());
        let mut failed = BTreeMap::new();
        let mut open_rules = BTreeSet::new();
        for x in r["results"].as_array().unwrap() {
            let addr: SocketAddr = x["addr"].as_str().unwrap().parse().unwrap();
            if !by_ip.contains_key(&addr.ip()) {
                continue;
            }
            let state = x["outcome"]["state"].as_str().unwrap();
            match state {
                "open" => {
                    open_rules.insert(x["rule"].as_str().unwrap().to_string());
                }
                "open|filtered" | "answered" => {}
                _ => {
                    failed
                        .insert(addr, (state.to_string(), x["outcome"]["from"].as_str().map(str::to_string)));
                }
            }
        }
        // The nodes use the database and Redis; the others probe neither.
        let want = if host.starts_with("rppam") {
            BTreeMap::from([
                (db, ("timed-out".to_string(), None)),
                (redis, ("icmp-rejected".to_string(), Some("10.200.1.21".to_string()))),
            ])
        } else {
            BTreeMap::new()
        };
        assert_eq!(failed, want, "{host}: exactly the paths nft blocks: {r:#}");
        let probed_all_open =
            r["results"].as_array().unwrap().iter().all(|x| {
                matches!(x["outcome"]["state"].as_str(), Some("open" | "open|filtered" | "answered"))
            });
        assert_eq!(code, Some(if probed_all_open { 0 } else { 1 }), "{host}: {r:#}");
        // The prober's agent sees its blocked attempts and counts the open ones.
        for addr in want.keys() {
            agent
                .wait_alert(0, Duration::from_secs(5), |a| {
                    a.kind == "blocked" && SocketAddr::new(a.dst.ip, a.dst.port) == *addr
                })
                .unwrap_or_else(|| {
                    panic!("{host}: no blocked finding for {addr}; alerts: {:?}", agent.alerts())
                });
        }
        let cov = agent.report(c.ns(host));
        for id in &open_rules {
            assert!(
                cov.rule(id).flows >= 1,
                "{host}: rule {id}: the probe's connection is not in the coverage: {:?}",
                cov.rule(id)
            );
        }
    }
    // Every agent's blocked findings, the servers' included (db1 sees the
    // dropped SYNs arrive), name the same two paths and no other.
    let mut blocked = BTreeSet::new();
    for (host, agent) in agents {
        let out = agent.stop();
        out.assert_success();
        for a in out.alerts().into_iter().filter(|a| a.kind == "blocked" && by_ip.contains_key(&a.dst.ip)) {
            blocked.insert((host, SocketAddr::new(a.dst.ip, a.dst.port)));
        }
    }
    let paths: BTreeSet<SocketAddr> = blocked.iter().map(|(_, p)| *p).collect();
    assert_eq!(
        paths,
        BTreeSet::from([db, redis]),
        "the agents' blocked findings agree with the probes: {blocked:?}"
    );
}
