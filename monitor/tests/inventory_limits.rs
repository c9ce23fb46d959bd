//! A 50-byte inventory must not exhaust the monitor: a host range over
//! `--max-inventory-hosts` is refused at once, naming the file, the line and
//! the range, by every command that loads inventories; the flag raises it.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use assert_cmd::Command;

fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam").join(file)
}

fn monitor() -> Command {
    Command::cargo_bin("monitor").expect("the monitor binary is built")
}

/// An inventory placing the database on `range` hosts, all at 10.200.1.20.
fn inventory(dir: &Path, range: &str) -> PathBuf {
    let file = dir.join("inventory.ini");
    std::fs::write(&file, format!("[database]\n{range} ansible_host=10.200.1.20\n"))
        .expect("write inventory");
    file
}

#[test]
fn check_and_lint_refuse_a_huge_range_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let inv = inventory(dir.path(), "host[0:9999999]");
    assert!(std::fs::metadata(&inv).unwrap().len() < 64, "the inventory is a small file");
    let want = format!(
        "{}:2: host range \"host[0:9999999]\" stands for 10,000,000 hosts, more than the limit of 65,536 hosts per inventory; \
         if the inventory really is that large, raise the limit with --max-inventory-hosts N",
        inv.display()
    );
    let runs: [Vec<std::ffi::OsString>; 2] = [
        vec![
            "check".into(),
            "--matrix".into(),
            example("matrix.yaml").into(),
            "--inventory".into(),
            inv.clone().into(),
            "--pcap".into(),
            example("pcaps/blocked.pcapng").into(),
        ],
        vec![
            "matrix".into(),
            "lint".into(),
            example("matrix.yaml").into(),
            "--inventory".into(),
            inv.clone().into(),
        ],
    ];
    for args in runs {
        let start = Instant::now();
        let out = monitor().args(&args).timeout(Duration::from_secs(30)).output().expect("run monitor");
        let elapsed = start.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail: {stderr}");
        assert!(stderr.contains(&want), "{args:?}:\n{stderr}");
        assert!(elapsed < Duration::from_secs(5), "{args:?} took {elapsed:?}");
    }
}

#[test]
fn the_flag_raises_the_limit_and_alerts_stay_small() {
    let dir = tempfile::tempdir().expect("temp dir");
    let inv = inventory(dir.path(), "db[0:99999]");
    let check = |extra: &[&str]| {
        monitor()
            .arg("check")
            .arg("--matrix")
            .arg(example("matrix.yaml"))
            .arg("--inventory")
            .arg(&inv)
            .arg("--pcap")
            .arg(example("pcaps/blocked.pcapng"))
            .args(["--profile", "ha", "--format", "json"])
            .args(extra)
            .timeout(Duration::from_secs(120))
            .output()
            .expect("run monitor")
    };
    let out = check(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "100,000 hosts are over the default limit");
    assert!(stderr.contains(":2: host range \"db[0:99999]\" stands for 100,000 hosts"), "{stderr}");

    let out = check(&["--max-inventory-hosts", "100000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    assert!(code == Some(0) || code == Some(1), "with the limit raised the check runs ({code:?}): {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let alerts: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|v: &serde_json::Value| v["type"] == "alert")
        .collect();
    let to_db: Vec<&serde_json::Value> = alerts.iter().filter(|a| a["dst"]["ip"] == "10.200.1.20").collect();
    assert!(!to_db.is_empty(), "blocked.pcapng has a finding towards the database:\n{stdout}");
    for a in to_db {
        assert_eq!(
            a["dst"]["host"],
            "db0, db1, db10, db100, db1000, db10000, db10001, db10002, ... (+99,992 more)"
        );
        assert!(a.to_string().len() < 4096, "{a}");
    }
}
