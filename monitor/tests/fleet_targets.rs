//! `monitor fleet targets`: the inventory's hosts as Prometheus `file_sd`
//! targets, read by the real `promtool` and a real `prometheus` (Debian's,
//! installed by `cargo xtask setup`) started on loopback with its own data
//! directory. The "agents" are small HTTP servers on 127.0.0.2 and
//! 127.0.0.3 serving a metrics page.

mod fleet_support;

use std::{
    net::{Ipv4Addr, TcpListener},
    process::Command,
};

use fleet_support::{Prometheus, Response, StaticHttp};
use serde_json::Value;

/// Runs `monitor fleet targets ARGS`; returns (success, stdout, stderr).
fn targets(args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["fleet", "targets"];
    all.extend_from_slice(args);
    fleet_support::run(&all)
}

#[test]
fn an_inventory_becomes_file_sd_json_and_hosts_without_address_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("inventory.ini");
    std::fs::write(&inv, "[nodes]\nn1 ansible_host=10.200.1.11\nn2 ansible_host=fd00::12\nlost\n")
        .expect("write");
    let (ok, out, err) = targets(&["--inventory", inv.to_str().expect("UTF-8"), "--port", "9100"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        v,
        serde_json::json!([
            {"targets": ["10.200.1.11:9100"], "labels": {"node": "n1", "groups": ",nodes,"}},
            {"targets": ["[fd00::12]:9100"], "labels": {"node": "n2", "groups": ",nodes,"}},
        ])
    );
    assert!(
        err.contains(&format!("warning: {}: host \"lost\" has no ansible_host", inv.display()))
            && err.contains("give it ansible_host=ADDRESS")
            && err.contains("2 target(s) on port 9100, 1 host(s) left out"),
        "{err}"
    );

    std::fs::write(&inv, "[nodes]\nlost\n").expect("write");
    let (ok, _, err) = targets(&["--inventory", inv.to_str().expect("UTF-8")]);
    assert!(!ok, "an inventory without one address is an error");
    assert!(err.contains("no host to scrape") && err.contains(&inv.display().to_string()), "{err}");

    let (ok, _, err) = targets(&["--inventory", "/nonexistent/inventory.ini"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/inventory.ini: cannot read the inventory"), "{err}");
}

#[test]
fn promtool_discovers_the_written_file_as_a_file_sd_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("inventory.ini");
    std::fs::write(&inv, "[nodes]\nn1 ansible_host=10.200.1.11\n\n[db]\ndb1 ansible_host=fd00::20\n")
        .expect("write");
    let sd = dir.path().join("monitor-targets.json");
    let (ok, _, err) =
        targets(&["--inventory", inv.to_str().expect("UTF-8"), "-o", sd.to_str().expect("UTF-8")]);
    assert!(ok, "{err}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sd).expect("stat").permissions());
    assert_eq!(mode & 0o777, 0o644, "Prometheus, running as another user, can read it");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "scrape_configs:\n  - job_name: monitor\n    file_sd_configs:\n      - files: [{}]\n",
            sd.display()
        ),
    )
    .expect("write config");
    // `promtool check service-discovery` runs Prometheus's own file SD and
    // prints the targets with their labels after relabelling (it waits out
    // its timeout whatever the mechanism; a file is read at once).
    let discover = || {
        let out = Command::new("promtool")
            .args(["check", "service-discovery", "--timeout=3s"])
            .arg(&config)
            .arg("monitor")
            .output()
            .unwrap_or_else(|e| panic!("promtool: {e} (apt-get install prometheus, or cargo xtask setup)"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("promtool prints JSON");
        let mut t: Vec<(String, String, String)> = v
            .as_array()
            .expect("a list of targets")
            .iter()
            .map(|t| {
                let s = |k: &str| t["labels"][k].as_str().unwrap_or_default().to_owned();
                (s("instance"), s("node"), s("groups"))
            })
            .collect();
        t.sort();
        t
    };
    let want = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        discover(),
        vec![want("10.200.1.11:9469", "n1", ",nodes,"), want("[fd00::20]:9469", "db1", ",db,")]
    );
    // promtool really reads the file: a broken one gives no target.
    std::fs::write(&sd, r#"[{"targets": ["10.200.1.11:9100"], "labels": {"node": 1}}]"#).expect("break it");
    assert_eq!(discover(), vec![], "a file_sd file with a number as a label value gave targets");
}

#[test]
fn prometheus_scrapes_every_inventory_host_through_the_file_and_follows_its_rewrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One port on two loopback addresses, as every agent uses the same one.
    let first = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), 0)).expect("bind 127.0.0.2");
    let port = first.local_addr().expect("addr").port();
    let second =
        TcpListener::bind((Ipv4Addr::new(127, 0, 0, 3), port)).expect("bind 127.0.0.3 on the same port");
    let page = || Response::metrics("# TYPE monitor_up gauge\nmonitor_up 1\n");
    let _agents = [StaticHttp::start(first, page()), StaticHttp::start(second, page())];

    let inv = dir.path().join("inventory.ini");
    std::fs::write(&inv, "[nodes]\nnode1 ansible_host=127.0.0.2\n\n[db]\ndb1 ansible_host=127.0.0.3\n")
        .expect("write");
    let sd = dir.path().join("targets.json");
    let write = || {
        let (ok, _, err) = targets(&[
            "--inventory",
            inv.to_str().expect("UTF-8"),
            "--port",
            &port.to_string(),
            "-o",
            sd.to_str().expect("UTF-8"),
        ]);
        assert!(ok, "{err}");
    };
    write();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: monitor\n    \
             file_sd_configs:\n      - files: [{}]\n        refresh_interval: 1s\n",
            sd.display()
        ),
    )
    .expect("write config");
    let prom = Prometheus::start(dir.path(), &config);
    prom.wait_targets(&[("db1", ",db,", "up"), ("node1", ",nodes,", "up")]);
    // The scraped series carry the labels.
    let v = prom.get("/api/v1/query?query=monitor_up%7Bgroups%3D~%22.*%2Cnodes%2C.*%22%7D").expect("query");
    let result = v["data"]["result"].as_array().expect("result");
    assert_eq!(result.len(), 1, "{v}");
    assert_eq!(result[0]["metric"]["node"], "node1", "{v}");

    // A host added to the inventory: written again, picked up; its agent is not up.
    std::fs::write(
        &inv,
        "[nodes]\nnode1 ansible_host=127.0.0.2\nnode2 ansible_host=127.0.0.4\n\n[db]\ndb1 ansible_host=127.0.0.3\n",
    )
    .expect("write");
    write();
    prom.wait_targets(&[("db1", ",db,", "up"), ("node1", ",nodes,", "up"), ("node2", ",nodes,", "down")]);
}
