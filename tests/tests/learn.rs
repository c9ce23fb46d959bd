//! `monitor learn` on a live cluster: the RP-PAM HA cluster in namespaces
//! makes its documented traffic while tcpdump captures the bridge; the
//! matrix it is judged against lacks three documented rules. `learn` must
//! propose exactly those three, in the matrix's own names (services and
//! groups, not hosts), and after `--merge-into` the matrix lints and
//! `monitor check` finds nothing unexpected on the same capture. An agent
//! on the switch, watching every bridge port, sees the same traffic:
//! `learn --socket` must propose the same three rules from its findings.
//!
//! NEEDS ROOT, tcpdump and the monitor binary (`cargo xtask build`, or
//! MONITOR_BIN and MONITOR_EBPF_OBJECT for the agent).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ::monitor::live::state::Verdict;
use monitor_tests::{
    agent::{rp_pam, Agent},
    capture::Capture,
    cluster::Cluster,
    monitor,
    traffic::{tcp_echo_client, TcpEchoServer},
};
use serde_json::Value;

/// The rules the test takes out of the matrix: the database, Redis and
/// the heartbeat between nodes.
const REMOVED: [&str; 3] = ["db-postgres", "redis", "heartbeat"];

/// The matrix text without the rule blocks of `ids`.
fn without(text: &str, ids: &[&str]) -> String {
    let mut out = text.to_string();
    for id in ids {
        let start = out.find(&format!("  - id: {id}\n")).unwrap_or_else(|| panic!("no rule {id}"));
        let rest = &out[start + 1..];
        let end = [rest.find("\n  - id: "), rest.find("\n\n")].into_iter().flatten().min().expect("rule end");
        out.replace_range(start..start + end + 1, "");
    }
    out
}

/// (source, target, ports, proto) of every active expanded rule, by
/// `monitor matrix show --format json`.
fn rules(matrix: &Path, only: Option<&[&str]>) -> BTreeSet<(String, String, String, String)> {
    let m = matrix.display().to_string();
    let out = monitor::run(&["matrix", "show", &m, "--profile", "ha", "--format", "json"]);
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("matrix show prints JSON lines"))
        .filter(|r| r["active"] == true)
        .filter(|r| only.is_none_or(|ids| ids.contains(&r["id"].as_str().unwrap_or_default())))
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("source"), s("target"), r["ports"].to_string(), s("proto"))
        })
        .collect()
}

/// The documented traffic of the three nodes: the database, Redis, the
/// heartbeat in a ring, and gRPC (still documented) between two of them.
fn traffic(c: &Cluster) {
    let db = TcpEchoServer::start(c.ns("db1"), c.addr("db1", 5432), 3);
    let redis = TcpEchoServer::start(c.ns("redis1"), c.addr("redis1", 6379), 3);
    for node in ["rppam1", "rppam2", "rppam3"] {
        tcp_echo_client(c.ns(node), db.addr, 2, 100);
        tcp_echo_client(c.ns(node), redis.addr, 2, 100);
    }
    db.join();
    redis.join();
    for (client, server, port) in [
        ("rppam1", "rppam2", 5201),
        ("rppam2", "rppam3", 5201),
        ("rppam3", "rppam1", 5201),
        ("rppam1", "rppam3", 7004),
    ] {
        let s = TcpEchoServer::start(c.ns(server), c.addr(server, port), 1);
        tcp_echo_client(c.ns(client), s.addr, 2, 64);
        s.join();
    }
}

#[test]
fn learn_proposes_exactly_the_three_missing_rules_in_group_terms_and_the_merge_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = PathBuf::from(rp_pam("matrix.yaml"));
    let text = std::fs::read_to_string(&original).expect("the example matrix");
    // The matrix refers to files beside it (prefixes): the trimmed copy and
    // the merged one live beside copies of them.
    for entry in std::fs::read_dir(original.parent().unwrap()).expect("the example folder") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "json") {
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).expect("copy a prefixes file");
        }
    }
    let trimmed = dir.path().join("matrix.yaml");
    std::fs::write(&trimmed, without(&text, &REMOVED)).expect("write the trimmed matrix");
    let removed = rules(&original, Some(&REMOVED));
    assert_eq!(removed.len(), 3, "{removed:?}");

    let hosts = ["rppam1", "rppam2", "rppam3", "db1", "redis1"];
    let c = Cluster::new(&hosts);
    let (m, inv) = (trimmed.display().to_string(), rp_pam("inventory.ini"));
    let sources = ["--matrix", m.as_str(), "--inventory", inv.as_str(), "--profile", "ha"];
    // The switch's side of every host's veth (`br0p0`...).
    let ports: Vec<String> = (0..hosts.len()).map(|i| format!("{}p{i}", Cluster::BRIDGE)).collect();
    let socket = dir.path().join("switch.sock").display().to_string();
    let mut agent_args: Vec<&str> = sources.to_vec();
    agent_args.extend(["--socket", &socket, "--node", "switch"]);
    for p in &ports {
        agent_args.extend(["--iface", p]);
    }
    let agent = Agent::start(c.switch(), &ports[0], &agent_args);
    let cap = Capture::start(c.switch(), Cluster::BRIDGE);
    traffic(&c);
    let pcap = dir.path().join("cluster.pcap");
    cap.save(&pcap);
    let p = pcap.display().to_string();
    let check = |matrix: &str| {
        let stdout = monitor::check(&[
            "--matrix",
            matrix,
            "--inventory",
            &inv,
            "--profile",
            "ha",
            "--pcap",
            &p,
            "--format",
            "json",
        ]);
        let summary: Value =
            serde_json::from_str(stdout.lines().last().expect("a summary line")).expect("JSON");
        (summary["unexpected"].as_u64().expect("an unexpected count"), stdout)
    };
    let (before, _) = check(&m);
    assert!(
        before >= 9,
        "the trimmed matrix should leave the 9 database, Redis and heartbeat flows unexpected: {before}"
    );

    // The proposals, as a patch, use the matrix's services: the three nodes
    // are `rppam`, not three hosts.
    let patch = dir.path().join("patch.yaml");
    let mut args = vec!["learn"];
    args.extend(sources);
    args.extend(["--pcap", &p, "-o", patch.to_str().unwrap()]);
    monitor::run(&args);
    let patch_text = std::fs::read_to_string(&patch).expect("the patch");
    for host in ["rppam1", "rppam2", "rppam3", "db1", "redis1"] {
        assert!(
            !patch_text.lines().any(|l| l.trim_start().starts_with("from:") && l.contains(host)
                || l.trim_start().starts_with("to:") && l.contains(host)),
            "a proposal names host {host} instead of its service:\n{patch_text}"
        );
    }

    // Merged into the matrix: it lints, it proposes exactly what was taken
    // out, and the capture then conforms.
    let merged = dir.path().join("merged.yaml");
    let mut args = vec!["learn"];
    args.extend(sources);
    args.extend(["--pcap", &p, "--merge-into", &m, "-o", merged.to_str().unwrap()]);
    monitor::run(&args);
    let merged_text = std::fs::read_to_string(&merged).expect("the merged matrix");
    assert_eq!(merged_text.matches("learnt:").count(), 3, "three learnt rules:\n{merged_text}");
    monitor::run(&["matrix", "lint", merged.to_str().unwrap(), "--inventory", &inv, "--profile", "ha"]);
    let learnt: BTreeSet<_> = rules(&merged, None).difference(&rules(&trimmed, None)).cloned().collect();
    assert_eq!(learnt, removed, "learn must propose exactly the removed rules:\n{patch_text}");
    let (after, out) = check(merged.to_str().unwrap());
    assert_eq!(after, 0, "unexpected flows after the merge:\n{out}");

    // The agent's findings: the same three rules. Its findings come as the
    // flows are judged (the TCP ones at their answer or close, within a
    // table read of 1 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    let unexpected = loop {
        let state = agent.state();
        let n: u64 = state.findings.iter().filter(|f| f.kind == Verdict::Unexpected).map(|f| f.count).sum();
        if n >= before || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(unexpected >= 9, "the agent saw {unexpected} unexpected flows, not the 9:\n{}", agent.stderr());
    let live = dir.path().join("live.yaml");
    let mut args = vec!["learn"];
    args.extend(sources);
    args.extend(["--socket", &socket, "--merge-into", &m, "-o", live.to_str().unwrap()]);
    monitor::run(&args);
    let live_text = std::fs::read_to_string(&live).expect("the matrix merged from the agent");
    assert!(live_text.contains(&format!("seen_in: [\"agent {socket}\"]")), "{live_text}");
    let learnt_live: BTreeSet<_> = rules(&live, None).difference(&rules(&trimmed, None)).cloned().collect();
    assert_eq!(learnt_live, removed, "learn --socket must propose exactly the removed rules:\n{live_text}");
    agent.stop().assert_success();
}
