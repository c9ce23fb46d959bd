//! `monitor check` end to end: the binary on the RP-PAM example captures
//! (examples/rp-pam/pcaps, written by `cargo run -p monitor --example
//! rp_pam_pcaps`), judged against the example matrix and inventories.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam").join(name)
}

fn monitor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_monitor")).args(args).output().expect("run the monitor binary")
}

/// `monitor check --format json` on an example capture; extra arguments last.
fn check(pcap: &str, inventory: &str, extra: &[&str]) -> (i32, Vec<Value>, Value) {
    let matrix = example("matrix.yaml");
    let inventory = example(inventory);
    let pcap = example(&format!("pcaps/{pcap}"));
    let mut args = vec![
        "check",
        "--matrix",
        matrix.to_str().unwrap(),
        "--inventory",
        inventory.to_str().unwrap(),
        "--pcap",
        pcap.to_str().unwrap(),
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = monitor(&args);
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().expect("exit status");
    assert!(code == 0 || code == 1, "monitor check failed ({code}): {stderr}");
    let mut lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let summary = lines.pop().expect("a summary line");
    assert_eq!(summary["type"], "summary", "the last line is the summary: {summary}");
    for a in &lines {
        assert_eq!(a["type"], "alert", "{a}");
        assert_eq!(a["schema"], 1, "{a}");
    }
    (code, lines, summary)
}

fn unused(summary: &Value) -> Vec<&str> {
    summary["unused_rules"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect()
}

#[test]
fn conforming_ha_traffic_gives_no_finding() {
    let (code, alerts, s) = check("conforming.pcap", "inventory.ini", &["--profile", "ha"]);
    assert_eq!(alerts, Vec::<Value>::new());
    assert_eq!(code, 0);
    assert_eq!((s["flows"].as_u64(), s["conforming"].as_u64()), (Some(7), Some(7)), "{s}");
    assert_eq!(s["packets"], 56);
    assert_eq!(s["skipped"], serde_json::json!({}));
    let unused = unused(&s);
    for seen in ["grpc-inter-node", "heartbeat", "redis", "db-postgres"] {
        assert!(!unused.contains(&seen), "{seen} was used by the capture: {unused:?}");
    }
    for never in ["ssh-proxy", "rdp-proxy", "lvs-checkin"] {
        assert!(unused.contains(&never), "{never} was never used: {unused:?}");
    }
}

#[test]
fn a_workstation_reaching_the_database_is_unexpected() {
    let (code, alerts, s) = check("unexpected.pcap", "inventory.ini", &["--profile", "ha"]);
    assert_eq!(code, 1);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a["kind"], "unexpected");
    assert_eq!(a["proto"], "tcp");
    assert_eq!((a["src"]["ip"].as_str(), a["src"]["host"].as_str()), (Some("10.200.2.50"), Some("ws01")));
    assert_eq!((a["dst"]["ip"].as_str(), a["dst"]["port"].as_u64()), (Some("10.200.1.20"), Some(5432)));
    assert_eq!((a["dst"]["host"].as_str(), a["dst"]["service"].as_str()), (Some("db1"), Some("database")));
    assert!(a["rule"].is_null());
    assert_eq!(a["closest"], serde_json::json!(["db-postgres"]));
    assert_eq!(a["state"], "closed");
    assert_eq!(a["initiator_seen"], true);
    assert_eq!((a["packets"].as_u64(), a["count"].as_u64()), (Some(8), Some(1)));
    assert_eq!((s["unexpected"].as_u64(), s["conforming"].as_u64()), (Some(1), Some(1)));
}

#[test]
fn grpc_answering_a_workstation_on_a_single_node_is_exposed() {
    let (code, alerts, s) = check("exposed-single-node.pcap", "inventory-single.ini", &[]);
    assert_eq!(code, 1);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a["kind"], "exposed");
    assert_eq!((a["dst"]["ip"].as_str(), a["dst"]["port"].as_u64()), (Some("10.200.1.11"), Some(7003)));
    assert_eq!(a["rule"], "grpc-localhost-only");
    assert!(a["reason"].as_str().unwrap().contains("SYN-ACK"), "{a}");
    // 7004 was asked too but never answered: counted, not reported.
    assert_eq!((s["exposed"].as_u64(), s["exposed_unanswered"].as_u64()), (Some(1), Some(1)), "{s}");
}

#[test]
fn documented_paths_that_fail_are_blocked_with_how() {
    let (code, alerts, s) = check("blocked.pcapng", "inventory.ini", &["--profile", "ha"]);
    assert_eq!(code, 1);
    let by_port = |p: u64| {
        alerts
            .iter()
            .find(|a| a["dst"]["port"] == p)
            .unwrap_or_else(|| panic!("no alert for port {p}: {alerts:?}"))
    };
    assert_eq!(alerts.len(), 3, "{alerts:?}");
    assert!(alerts.iter().all(|a| a["kind"] == "blocked"), "{alerts:?}");

    let grpc = by_port(7002);
    assert_eq!(
        (grpc["rule"].as_str(), grpc["state"].as_str()),
        (Some("grpc-inter-node"), Some("unanswered"))
    );
    assert!(grpc["reason"].as_str().unwrap().starts_with("unanswered"), "{grpc}");
    assert_eq!(grpc["packets"], 2, "the SYN and its retransmission");

    let redis = by_port(6379);
    assert_eq!((redis["rule"].as_str(), redis["state"].as_str()), (Some("redis"), Some("refused")));
    assert!(redis["reason"].as_str().unwrap().starts_with("refused"), "{redis}");

    let db = by_port(5432);
    assert_eq!((db["rule"].as_str(), db["state"].as_str()), (Some("db-postgres"), Some("icmp-unreachable")));
    assert!(db["reason"].as_str().unwrap().starts_with("icmp admin-prohibited"), "{db}");
    // The database host's own firewall sent the error.
    assert_eq!(
        db["icmp"],
        serde_json::json!({"type": 3, "code": 13, "name": "admin-prohibited", "sender": "10.200.1.20"})
    );

    assert_eq!((s["blocked"].as_u64(), s["conforming"].as_u64()), (Some(3), Some(2)), "{s}");
    assert_eq!(s["icmp_errors_matched"], 1);
    assert_eq!(s["packets"], 22);
}

#[test]
fn a_syn_younger_than_the_timeout_at_the_end_of_the_capture_is_not_yet_blocked() {
    let (_, alerts, s) =
        check("blocked.pcapng", "inventory.ini", &["--profile", "ha", "--syn-timeout", "10"]);
    assert!(alerts.iter().all(|a| a["dst"]["port"] != 7002), "{alerts:?}");
    assert_eq!((s["blocked"].as_u64(), s["awaiting"].as_u64()), (Some(2), Some(1)), "{s}");
}

#[test]
fn text_output_is_one_line_per_finding_then_a_summary() {
    let m = example("matrix.yaml");
    let i = example("inventory.ini");
    let p = example("pcaps/blocked.pcapng");
    let out = monitor(&[
        "check",
        "--matrix",
        m.to_str().unwrap(),
        "--inventory",
        i.to_str().unwrap(),
        "--profile",
        "ha",
        "--pcap",
        p.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let blocked: Vec<&str> = text.lines().filter(|l| l.starts_with("BLOCKED")).collect();
    assert_eq!(blocked.len(), 3, "{text}");
    assert!(blocked.iter().any(|l| l.contains("10.200.1.21:6379") && l.contains("rule=redis")), "{text}");
    assert!(text.contains("conforming 2, unexpected 0, blocked 3, exposed 0"), "{text}");
    assert!(text.contains("documented rules never seen"), "{text}");
}

#[test]
fn bad_input_exits_2_and_names_the_file() {
    let m = example("matrix.yaml");
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("notes.pcap");
    std::fs::write(&garbage, "this is not a capture\n").unwrap();
    let missing = dir.path().join("missing.pcap");
    for (pcap, want) in [(&garbage, "not a pcap or pcapng file"), (&missing, "missing.pcap")] {
        let out = monitor(&["check", "--matrix", m.to_str().unwrap(), "--pcap", pcap.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(want), "{stderr}");
        assert!(out.stdout.is_empty(), "no partial report on error");
    }
    let out = monitor(&["check", "--matrix", "no-such-matrix.yaml", "--pcap", garbage.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-matrix.yaml"));
    let out = monitor(&["check", "--matrix", m.to_str().unwrap(), "--pcap", "x.pcap", "--set", "novalue"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_empty_capture_conforms_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pcap");
    pcap_file::pcap::PcapWriter::new(std::fs::File::create(&empty).unwrap()).unwrap();
    let m = example("matrix.yaml");
    let out = monitor(&[
        "check",
        "--matrix",
        m.to_str().unwrap(),
        "--pcap",
        empty.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).expect("one summary line");
    assert_eq!((s["packets"].as_u64(), s["flows"].as_u64()), (Some(0), Some(0)));
    assert!(s["first_packet"].is_null() && s["last_packet"].is_null(), "{s}");
}

#[test]
fn help_documents_the_exit_status() {
    let out = monitor(&["check", "--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("Exit status: 0 every flow conforms, 1 at least one finding, 2 error"), "{help}");
}

#[test]
fn an_engine_warning_is_printed_once_and_says_warning_once() {
    let (m, inv, pcap) = (example("matrix.yaml"), example("inventory.ini"), example("pcaps/blocked.pcapng"));
    let out = monitor(&[
        "check",
        "--matrix",
        m.to_str().unwrap(),
        "--inventory",
        inv.to_str().unwrap(),
        "--profile",
        "ha",
        "--pcap",
        pcap.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> =
        stderr.lines().filter(|l| l.contains("no address known for lvs.ravenphyre.net")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert_eq!(lines[0].matches("warning:").count(), 1, "{}", lines[0]);
    assert!(lines[0].contains("matrix.yaml:94:11: warning: service `lvs`"), "{}", lines[0]);
}
