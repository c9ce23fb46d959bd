//! `monitor check --format json` on a matrix and a capture written to a
//! temporary directory (`mod check_run;` in each test that runs it).

use std::process::Command;

use serde_json::Value;

/// The JSON lines (alerts, then the summary) of
/// `monitor check --format json --matrix M --pcap P`, which must exit 1
/// (findings); panics with stderr otherwise.
pub fn check_json(matrix: &str, pcap: &[u8]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let (m, p) = (dir.path().join("matrix.yaml"), dir.path().join("capture.pcap"));
    std::fs::write(&m, matrix).unwrap();
    std::fs::write(&p, pcap).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["check", "--format", "json", "--matrix"])
        .arg(&m)
        .arg("--pcap")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "findings expected: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
}
