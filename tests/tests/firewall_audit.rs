//! `monitor firewall audit` against real nftables in the RP-PAM namespace
//! cluster: the generated ruleset audits clean, a hand-written one is
//! audited exactly, and the audit's verdict for every documented path of
//! rppam1 between cluster hosts is what a real connection does. Needs root,
//! nft and the monitor binary.

use std::{
    net::{IpAddr, TcpListener},
    process::Command,
    time::Duration,
};

use monitor_tests::{
    agent::rp_pam, cluster::Cluster, cmd, monitor::require_monitor_bin, netns::NetNs, nft, traffic,
};
use serde_json::Value;

const HOSTS: [&str; 7] = ["rppam1", "rppam2", "rppam3", "db1", "redis1", "ws01", "admin01"];

/// `nft -j list ruleset` inside `ns`, saved to a file; the path.
fn saved_ruleset(ns: &NetNs, dir: &std::path::Path) -> String {
    let json = ns.exec(&["nft", "-j", "list", "ruleset"]);
    let path = dir.join("ruleset.json");
    std::fs::write(&path, json).expect("write the saved ruleset");
    path.display().to_string()
}

/// Runs the audit of rppam1 on `ruleset`; (exit code, stdout).
fn audit(ruleset: &str, format: &str) -> (i32, String) {
    let (m, i) = (rp_pam("matrix.yaml"), rp_pam("inventory.ini"));
    let out = Command::new(require_monitor_bin())
        .args(["firewall", "audit", "--matrix", &m, "--inventory", &i, "--host", "rppam1", "--profile", "ha"])
        .args(["--ruleset", ruleset, "--format", format])
        .output()
        .expect("run monitor firewall audit");
    let code = out.status.code().expect("exit code");
    assert!(matches!(code, 0 | 1), "audit failed: {}", String::from_utf8_lossy(&out.stderr));
    (code, String::from_utf8(out.stdout).expect("UTF-8"))
}

fn ports_of(s: &str) -> (u16, u16) {
    match s.split_once('-') {
        Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
        None => (s.parse().unwrap(), s.parse().unwrap()),
    }
}

fn in_prefix(ip: IpAddr, p: &str) -> bool {
    let net: monitor::matrix::IpNet =
        p.parse().unwrap_or_else(|_| format!("{p}/32").parse().expect("a prefix"));
    net.contains(&ip)
}

/// For every documented path between rppam1 and a cluster host, at the
/// first and last port: what the audit says (accepted or not) and what a
/// connection does. Returns how many attempts were compared.
fn connections_agree(c: &Cluster, report: &Value) -> usize {
    let mut compared = 0;
    let mut listeners: std::collections::BTreeMap<std::net::SocketAddr, TcpListener> = Default::default();
    for p in report["paths"].as_array().expect("paths") {
        if p["proto"] != "tcp" || p["status"] == "not-evaluated" {
            continue;
        }
        assert_ne!(p["status"], "not-understood", "{p}");
        let inbound = p["direction"] == "inbound";
        for port_s in p["ports"].as_array().unwrap() {
            let (lo, hi) = ports_of(port_s.as_str().unwrap());
            for port in [lo, hi] {
                for peer in HOSTS.iter().filter(|h| **h != "rppam1") {
                    let ip = c.ip(peer);
                    if !p["peers"].as_array().unwrap().iter().any(|x| in_prefix(ip, x.as_str().unwrap())) {
                        continue;
                    }
                    let blocked = p["parts"].as_array().unwrap().iter().any(|part| {
                        part["peers"].as_array().unwrap().iter().any(|x| in_prefix(ip, x.as_str().unwrap()))
                            && part["ports"].as_array().unwrap().iter().any(|r| {
                                let (a, b) = ports_of(r.as_str().unwrap());
                                (a..=b).contains(&port)
                            })
                    });
                    let (server, client) = if inbound { ("rppam1", *peer) } else { (*peer, "rppam1") };
                    let addr = c.addr(server, port);
                    // Each address is listened on once for the whole test: no rebinding.
                    listeners.entry(addr).or_insert_with(|| {
                        c.ns(server)
                            .run(|| TcpListener::bind(addr))
                            .unwrap_or_else(|e| panic!("listen on {addr}: {e}"))
                    });
                    let (_, r) =
                        traffic::tcp_attempt(c.ns(client), c.ip(client), addr, Duration::from_millis(700));
                    assert_eq!(
                        r.is_ok(),
                        !blocked,
                        "{} {client} -> {addr}: the audit says {}, the connection {:?}",
                        p["rule"],
                        if blocked { "blocked" } else { "accepted" },
                        r
                    );
                    compared += 1;
                }
            }
        }
    }
    compared
}

#[test]
fn the_generated_ruleset_audits_clean_and_every_path_connects() {
    let c = Cluster::new(&HOSTS);
    let dir = tempfile::tempdir().expect("tempdir");
    let (m, i) = (rp_pam("matrix.yaml"), rp_pam("inventory.ini"));
    let script = cmd::run(
        Command::new(require_monitor_bin())
            .args(["matrix", "firewall", &m, "--inventory", &i, "--host", "rppam1", "--profile", "ha"])
            .args(["--format", "nft", "--egress"]),
    );
    nft::apply(c.ns("rppam1"), &script);
    let saved = saved_ruleset(c.ns("rppam1"), dir.path());
    let (code, text) = audit(&saved, "text");
    assert_eq!(
        text,
        "firewall audit of rppam1: 12 documented paths, 11 accepted, 0 blocked, 0 not understood, 1 not evaluated\n\
         \n\
         not evaluated:\n  \
         lvs-checkin (examples/rp-pam/matrix.yaml:129) outbound tcp: lvs.ravenphyre.net: a DNS name, not evaluated\n"
            .replace("examples/rp-pam/matrix.yaml", &m),
    );
    assert_eq!(code, 0);
    let (_, json) = audit(&saved, "json");
    let report: Value = serde_json::from_str(&json).expect("JSON report");
    let n = connections_agree(&c, &report);
    assert!(n >= 20, "only {n} connections compared");
}

#[test]
fn a_hand_written_ruleset_is_audited_exactly_and_connections_agree() {
    let c = Cluster::new(&HOSTS);
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/firewall/rppam1-hand.nft");
    nft::apply(c.ns("rppam1"), &std::fs::read_to_string(fixture).expect("read the fixture"));
    let saved = saved_ruleset(c.ns("rppam1"), dir.path());
    let m = rp_pam("matrix.yaml");
    let (code, text) = audit(&saved, "text");
    assert_eq!(code, 1);
    let expected = "\
firewall audit of rppam1: 12 documented paths, 9 accepted, 2 blocked, 0 not understood, 1 not evaluated

documented paths not accepted:
  heartbeat (M:232) inbound tcp 5201 from 10.200.1.11/32,10.200.1.12/32,10.200.1.13/32
    tcp 5201 10.200.1.12/31: dropped by inet hand input policy
  redis (M:226) outbound tcp 6379 to 10.200.1.21/32
    tcp 6379 10.200.1.21/32: rejected by inet hand output handle 12 (\"no redis\")

not evaluated:
  lvs-checkin (M:129) outbound tcp: lvs.ravenphyre.net: a DNS name, not evaluated

ports open to sources the matrix does not document:
  tcp 7101 from 10.200.2.64/28: accepted by inet hand input handle 7 (\"portal\")
  tcp 22 from 0.0.0.0/0: accepted by inet hand input handle 10 (\"ssh\")

rules no documented path uses:
  inet hand input handle 10 (\"ssh\")
"
    .replace("M:", &format!("{m}:"));
    assert_eq!(text, expected, "got:\n{text}");
    let (_, json) = audit(&saved, "json");
    let report: Value = serde_json::from_str(&json).expect("JSON report");
    let n = connections_agree(&c, &report);
    assert!(n >= 20, "only {n} connections compared");
    // The undocumented opening is real too: ws01 reaches rppam1:22.
    let addr = c.addr("rppam1", 22);
    let _l = c.ns("rppam1").run(|| TcpListener::bind(addr)).expect("listen on 22");
    let (_, r) = traffic::tcp_attempt(c.ns("ws01"), c.ip("ws01"), addr, Duration::from_millis(700));
    r.expect("ssh is open to ws01, as the audit says");
}
