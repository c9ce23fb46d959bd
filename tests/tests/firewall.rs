//! issue #15 part 2, the firewall half: the RP-PAM HA example as a cluster
//! of namespaces, `monitor matrix firewall --format nft` applied on every
//! host. Every documented path connects, the undocumented ones are
//! dropped, and each rule's nft counter equals the connections made on it
//! (docs/firewall.md). Needs root and the monitor binary (MONITOR_BIN).

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::Path,
    time::Duration,
};

use monitor_tests::{
    cluster::{Cluster, HOSTS},
    monitor::require_monitor_bin,
    nft,
    traffic::tcp_attempt,
};

/// (client, server, port, the rule that documents it).
const DOCUMENTED: &[(&str, &str, u16, &str)] = &[
    ("ws01", "rppam1", 7101, "web-portal/users"),
    ("admin01", "rppam1", 7101, "web-portal/admins"),
    ("ws01", "rppam-vip", 443, "web-portal-vip/users"),
    ("admin01", "rppam-vip", 7101, "web-portal-vip/admins"),
    ("rppam-vip", "rppam2", 7101, "lb-to-nodes"),
    ("rppam1", "rppam2", 7005, "grpc-inter-node"),
    ("rppam3", "rppam1", 7012, "grpc-inter-node"),
    ("rppam2", "rppam3", 5201, "heartbeat"),
    ("rppam1", "db1", 5432, "db-postgres"),
    ("rppam3", "db1", 5432, "db-postgres"),
    ("rppam2", "redis1", 6379, "redis"),
];

/// (client, server, port): nothing documents these.
const UNDOCUMENTED: &[(&str, &str, u16)] =
    &[("ws01", "db1", 5432), ("ws01", "rppam1", 7001), ("rppam1", "rppam2", 9999)];

fn generate(host: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(require_monitor_bin())
        .current_dir(&root)
        .args([
            "matrix",
            "firewall",
            "examples/rp-pam/matrix.yaml",
            "--inventory",
            "examples/rp-pam/inventory.ini",
        ])
        .args(["--host", host, "--profile", "ha", "--format", "nft"])
        .output()
        .expect("run monitor matrix firewall");
    assert!(out.status.success(), "{host}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Packets counted by each `rule:<id>` comment of the host's table.
fn counters(cluster: &Cluster, host: &str) -> BTreeMap<String, u64> {
    let text = cluster.ns(host).exec(&["nft", "-j", "list", "table", "inet", "monitor_fw"]);
    let j: serde_json::Value = serde_json::from_str(&text).expect("nft -j output");
    let mut out = BTreeMap::new();
    for item in j["nftables"].as_array().unwrap() {
        let Some(rule) = item.get("rule") else { continue };
        let Some(id) = rule["comment"].as_str().and_then(|c| c.strip_prefix("rule:")) else { continue };
        let packets: u64 =
            rule["expr"].as_array().unwrap().iter().filter_map(|e| e["counter"]["packets"].as_u64()).sum();
        *out.entry(id.to_string()).or_default() += packets;
    }
    out
}

#[test]
fn generated_firewalls_allow_exactly_the_documented_paths() {
    let mut hosts: Vec<(&str, Ipv4Addr)> = HOSTS.to_vec();
    hosts.push(("rppam-vip", Ipv4Addr::new(10, 200, 1, 10)));
    let cluster = Cluster::of(&hosts);
    for (h, _) in &hosts {
        nft::apply(cluster.ns(h), &generate(h));
    }
    // Listeners on every port tried, documented or not.
    let mut listeners = Vec::new();
    let ports =
        DOCUMENTED.iter().map(|&(_, s, p, _)| (s, p)).chain(UNDOCUMENTED.iter().map(|&(_, s, p)| (s, p)));
    for (server, port) in ports {
        let addr = cluster.addr(server, port);
        if listeners.iter().any(|(a, _): &(SocketAddr, TcpListener)| *a == addr) {
            continue;
        }
        let l = cluster.ns(server).run(|| TcpListener::bind(addr)).expect("listen");
        listeners.push((addr, l));
    }
    let mut want: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for &(client, server, port, rule) in DOCUMENTED {
        let (local, r) = tcp_attempt(
            cluster.ns(client),
            cluster.ip(client),
            cluster.addr(server, port),
            Duration::from_secs(2),
        );
        assert!(r.is_ok(), "{client} -> {server}:{port} ({rule}) from {local}: {r:?}");
        *want.entry((server, rule)).or_default() += 1;
    }
    for &(client, server, port) in UNDOCUMENTED {
        let (_, r) = tcp_attempt(
            cluster.ns(client),
            cluster.ip(client),
            cluster.addr(server, port),
            Duration::from_millis(500),
        );
        let e = r.expect_err(&format!("{client} -> {server}:{port} is not documented but connected"));
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::TimedOut,
            "{client} -> {server}:{port}: dropped, so a timeout: {e}"
        );
    }
    for (h, _) in &hosts {
        let got = counters(&cluster, h);
        for (rule, n) in &got {
            let expect = want.get(&(*h, rule.as_str())).copied().unwrap_or(0);
            assert_eq!(*n, expect, "{h}: counter of rule:{rule}");
        }
        for ((server, rule), n) in &want {
            if server == h {
                assert_eq!(got.get(*rule), Some(n), "{h}: no counter for rule:{rule}");
            }
        }
    }
}
