//! `cargo xtask demo`, run the way a script runs it (`--seconds`, no
//! terminal): it must show the three departures it plants, the coverage
//! report and the files it writes, and leave no namespace behind.

use std::{process::Command, time::Duration};

use monitor_tests::{monitor::require_monitor_bin, require_root, wait_timeout};

#[test]
fn the_demo_shows_its_three_findings_writes_its_reports_and_cleans_up() {
    require_root();
    require_monitor_bin();
    let out = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--seconds", "20", "--out"])
        .arg(out.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the demo");
    let pid = child.id();
    let status = wait_timeout(&mut child, Duration::from_secs(120));
    if status.is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("the demo's output");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the demo failed ({:?}):\n{stdout}\n{stderr}", output.status);

    // Each planted departure, as the text alert stream prints it.
    let findings: Vec<&str> =
        stdout.lines().filter(|l| l.starts_with("UNEXPECTED") || l.starts_with("BLOCKED")).collect();
    let has = |kind: &str, port: &str| findings.iter().any(|l| l.starts_with(kind) && l.contains(port));
    assert!(has("UNEXPECTED", ":8080"), "no finding for the undocumented ws01 -> rppam1:8080:\n{stdout}");
    assert!(has("BLOCKED", ":7101"), "no finding for the dropped portal path:\n{stdout}");
    assert!(has("BLOCKED", ":5201"), "no finding for the rejected heartbeat:\n{stdout}");
    assert!(
        findings.iter().all(|l| [":8080", ":7101", ":5201"].iter().any(|p| l.contains(p))),
        "a finding the demo did not plant:\n{}",
        findings.join("\n")
    );

    // The coverage report, with the documented paths the traffic used.
    for rule in ["db-postgres", "redis", "grpc-inter-node", "web-portal"] {
        assert!(stdout.lines().any(|l| l.contains(rule)), "the coverage report has no `{rule}`:\n{stdout}");
    }
    for (what, file) in [("graph", "graph.svg"), ("HTML report", "report.html")] {
        let path = out.path().join(file);
        assert!(
            stdout.contains(&format!("{what}: {}", path.display())) && path.is_file(),
            "the demo did not write its {what} at {}:\n{stdout}",
            path.display()
        );
    }
    let svg = std::fs::read_to_string(out.path().join("graph.svg")).expect("graph.svg");
    assert_svg(&svg);

    // Every namespace the demo made (mt-<role>-<pid>-<n>) is gone.
    let list = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    let left: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| l.contains(&format!("-{pid}-")))
        .map(String::from)
        .collect();
    assert!(left.is_empty(), "the demo left namespaces behind: {left:?}");
}

/// The graph is an SVG document that draws the hosts the demo used.
fn assert_svg(svg: &str) {
    assert!(svg.contains("<svg"), "graph.svg is not an SVG document:\n{svg}");
    for node in ["rppam", "db"] {
        assert!(svg.contains(node), "graph.svg does not draw `{node}`");
    }
}
