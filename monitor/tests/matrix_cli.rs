//! `monitor matrix lint|show` as a user runs them.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam").join(file)
}

fn monitor() -> Command {
    Command::cargo_bin("monitor").expect("the monitor binary is built")
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

#[test]
fn lint_of_the_example_is_clean() {
    let out = monitor().args(["matrix", "lint"]).arg(example("matrix.yaml")).output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "lint failed: {text}");
    assert!(text.trim_end().ends_with("21 rules, 4 exposure constraints, 7 profiles, 0 warnings"), "{text}");
}

#[test]
fn lint_reports_errors_with_positions_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\nservices:\n  web: { group: web }\nrules:\n  - from: web\n    to: dbb\n    ports: 7012-7001\n",
    )
    .unwrap();
    let out = monitor().args(["matrix", "lint"]).arg(&bad).output().unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let f = bad.display().to_string();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with(&format!("{f}:6:9: error: unknown service or zone `dbb`")), "{text}");
    assert!(lines[1].starts_with(&format!("{f}:7:12: error: bad port range 7012-7001")), "{text}");
}

#[test]
fn lint_warnings_pass_unless_denied() {
    let dir = tempfile::tempdir().unwrap();
    let dup = dir.path().join("dup.yaml");
    std::fs::write(
        &dup,
        "version: 1\nservices:\n  db: { cidr: 10.0.0.5 }\nrules:\n  - { id: a, from: any, to: db, port: 5432 }\n  - { id: b, from: any, to: db, port: 5432 }\n",
    )
    .unwrap();
    let out = monitor().args(["matrix", "lint"]).arg(&dup).output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(":6:5: warning: rule `b` duplicates rule `a`"), "{text}");
    let out = monitor().args(["matrix", "lint", "--deny-warnings"]).arg(&dup).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn lint_against_an_inventory_reports_unbound_names() {
    let out = monitor()
        .args(["matrix", "lint", "--profile", "ha", "--inventory"])
        .arg(example("inventory.ini"))
        .arg(example("matrix.yaml"))
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("warning: service `lvs`: no address known for lvs.ravenphyre.net"), "{text}");
    let out = monitor()
        .args([
            "matrix",
            "lint",
            "--profile",
            "ha",
            "--set",
            "bind:lvs.ravenphyre.net=203.0.113.10",
            "--inventory",
        ])
        .arg(example("inventory.ini"))
        .arg(example("matrix.yaml"))
        .output()
        .unwrap();
    assert!(stdout(&out).contains(", 0 warnings"), "{}", stdout(&out));
}

fn show_json(args: &[&str]) -> Vec<serde_json::Value> {
    let out = monitor().args(["matrix", "show"]).arg(example("matrix.yaml")).args(args).output().unwrap();
    assert!(out.status.success(), "show failed: {}", String::from_utf8_lossy(&out.stderr));
    stdout(&out).lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect()
}

#[test]
fn show_json_lists_every_rule_without_a_selection() {
    let rules = show_json(&["--format", "json"]);
    assert_eq!(rules.len(), 23, "21 rules, two of them with two sources");
    for r in &rules {
        for field in ["id", "source", "target", "ports", "proto", "when", "provenance"] {
            assert!(r.get(field).is_some(), "missing {field} in {r}");
        }
    }
    let grpc = rules.iter().find(|r| r["id"] == "grpc-inter-node").unwrap();
    assert_eq!(grpc["ports"], serde_json::json!([[7001, 7012]]));
    assert_eq!(grpc["when"], serde_json::json!(["ha"]));
    assert_eq!(grpc["proto"], "tcp");
    assert!(grpc["provenance"].as_str().unwrap().ends_with("matrix.yaml:166"), "{grpc}");
    let web = rules.iter().find(|r| r["id"] == "web-portal/admins").unwrap();
    assert_eq!(web["when"], serde_json::json!([]));
}

#[test]
fn show_json_with_a_selection_lists_active_rules_shifted() {
    let rules = show_json(&[
        "--format",
        "json",
        "--profile",
        "ha",
        "--set",
        "grpcPortBase=8001",
        "--set",
        "db=mssql",
    ]);
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"db-mssql") && ids.contains(&"redis"), "{ids:?}");
    assert!(!ids.contains(&"db-postgres") && !ids.contains(&"db-mssql-local"), "{ids:?}");
    let grpc = rules.iter().find(|r| r["id"] == "grpc-inter-node").unwrap();
    assert_eq!(grpc["ports"], serde_json::json!([[8001, 8012]]));
}

#[test]
fn show_text_is_an_aligned_table() {
    let out = monitor().args(["matrix", "show"]).arg(example("matrix.yaml")).output().unwrap();
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("ID ") && lines[0].contains("PROTO") && lines[0].ends_with("PURPOSE"),
        "{text}"
    );
    let col = lines[0].find("FROM").unwrap();
    for l in &lines[1..24] {
        assert_eq!(&l[col - 2..col], "  ", "FROM column misaligned in {l:?}");
        assert_ne!(&l[col..col + 1], " ", "FROM column empty in {l:?}");
    }
    assert!(text.contains("EXPOSURE") && text.contains("grpc-localhost-only"), "{text}");
}

#[test]
fn show_with_an_unknown_profile_fails_with_the_known_ones() {
    let out = monitor()
        .args(["matrix", "show", "--profile", "cluster"])
        .arg(example("matrix.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown profile `cluster`") && err.contains("air-gapped"), "{err}");
}
