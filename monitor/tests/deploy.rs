//! The files in deploy/, checked by the tools that will read them:
//! `systemd-analyze verify` and `security` for the unit, `promtool` for the
//! alerting rules, `kubernetes-validate` (the Kubernetes API's schemas) and a
//! YAML parser for the DaemonSet, and the monitor binary itself for every
//! command line and for the example matrix and inventory of the package.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use saphyr::{LoadableYamlNode, Yaml};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

/// `[Section]` → key → values (a key may repeat).
fn unit_settings(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
        } else {
            let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
            out.entry(section.clone()).or_default().entry(k.to_string()).or_default().push(v.to_string());
        }
    }
    out
}

fn tool(name: &str) -> bool {
    Command::new(name).arg("--version").output().is_ok()
}

/// Options are parsed left to right before --help is acted on, so a
/// misspelt or removed option fails here.
fn assert_monitor_accepts<S: AsRef<str>>(args: &[S]) {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_monitor")).args(&args).arg("--help").output().unwrap();
    assert!(
        out.status.success(),
        "`monitor {}` is refused:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_unit_grants_capabilities_not_root() {
    let unit = unit_settings(&read("monitor.service"));
    let svc = &unit["Service"];
    let one = |k: &str| -> &str {
        match svc.get(k).map(Vec::as_slice) {
            Some([v]) => v,
            other => panic!("[Service] {k}: expected one value, got {other:?}"),
        }
    };
    let caps = "CAP_BPF CAP_NET_ADMIN CAP_PERFMON";
    assert_eq!(one("AmbientCapabilities"), caps);
    assert_eq!(one("CapabilityBoundingSet"), caps);
    assert_eq!(one("DynamicUser"), "yes");
    assert!(svc.get("User").is_none(), "no fixed user, least of all root");
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("RuntimeDirectory", "monitor"),
        ("LogsDirectory", "monitor"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(one(k), v, "[Service] {k}");
    }
    assert!(svc.get("PrivateNetwork").is_none(), "the host's network is what the monitor watches");
    // The paths the service writes are the ones systemd makes writable.
    let exec = one("ExecStart");
    // Where the Debian package (monitor/Cargo.toml, [package.metadata.deb]) puts it.
    assert!(exec.starts_with("/usr/bin/monitor run "), "{exec}");
    assert!(exec.contains("--matrix /etc/monitor/matrix.yaml"), "the package's conffile: {exec}");
    assert!(exec.contains("--inventory /etc/monitor/inventory.ini"), "the package's conffile: {exec}");
    assert!(exec.contains("--alerts-out /var/log/monitor/"), "alerts go under LogsDirectory: {exec}");
    assert!(exec.contains("--metrics 127.0.0.1:9469"), "metrics on loopback only: {exec}");
    assert_eq!(monitor::live::control::DEFAULT_SOCKET.rsplit_once('/').unwrap().0, "/run/monitor");
}

#[test]
fn the_units_command_line_is_one_the_binary_accepts() {
    let unit = unit_settings(&read("monitor.service"));
    let exec = &unit["Service"]["ExecStart"][0];
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    assert_monitor_accepts(&args);
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    if !tool("systemd-analyze") {
        eprintln!("systemd-analyze is not installed: unit not verified (apt-get install systemd)");
        return;
    }
    // verify insists that ExecStart exists: point it at the binary built
    // for this test.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitor.service");
    let text = read("monitor.service").replace("/usr/bin/monitor", env!("CARGO_BIN_EXE_monitor"));
    std::fs::write(&path, text).unwrap();

    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // verify only warns (exit 0) about unknown keys and bad values: any
    // line about our unit is a failure.
    let ours: Vec<&str> = report.lines().filter(|l| l.contains("monitor.service")).collect();
    assert!(out.status.success() && ours.is_empty(), "systemd-analyze verify:\n{report}");

    // The exposure score stays in systemd's "OK" band (below 4.0 of 10).
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=40"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze security: exposure above 4.0:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(deploy(""))
        .output()
        .unwrap_or_else(|e| panic!("promtool: {e} (apt-get install prometheus, or cargo xtask setup)"));
    assert!(
        out.status.success(),
        "promtool {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks_and_tests_the_alerting_rules() {
    promtool(&["check", "rules", "prometheus-rules.yaml"]);
    // Each rule against made-up series: fires when it should, not otherwise.
    // Every deploy/prometheus-rules*.test.yaml, so that a new one cannot be
    // left out: the per-node rules' and the fleet's (where each blocked path
    // is blocked, rules never used, undocumented traffic by group).
    let mut tests: Vec<String> = std::fs::read_dir(deploy(""))
        .unwrap_or_else(|e| panic!("deploy/: {e}"))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("prometheus-rules") && n.ends_with(".test.yaml"))
        .collect();
    tests.sort();
    for file in ["prometheus-rules.test.yaml", "prometheus-rules.fleet.test.yaml"] {
        assert!(tests.iter().any(|t| t == file), "deploy/{file} is missing: {tests:?}");
    }
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    promtool(&args);
}

#[test]
fn the_rules_use_only_metrics_the_monitor_exports() {
    let rules = read("prometheus-rules.yaml");
    // Every family present: the collected ones appear once they are set.
    let m = monitor::live::metrics::Metrics::for_node("n1");
    let kernel = monitor::kernel::KernelStats::default();
    let user = monitor::kernel::stream::UserStats::default();
    let dns = monitor::dns::Passive::new(monitor::dns::CacheOptions::default());
    let dedup = monitor::live::dedup::DedupStats::default();
    let webhook = monitor::live::webhook::WebhookStats::default();
    let used = monitor::live::coverage::RuleUse {
        last_seen: Some(std::time::SystemTime::now()),
        ..Default::default()
    };
    let tally = {
        use monitor::{alert::Kind, live::tally::*};
        let mut t = Tally::new("n1", 10);
        let key = PathKey { rule: "r".into(), client: "n1".into(), server: "n2".into(), side: Side::Client };
        let icmp = [(("router".into(), Origin::Network), 1)].into();
        t.paths.insert(key, PathCounts { attempts: [1, 1, 1, 1], icmp });
        t.findings.insert(FindingKey::Rule(Kind::Blocked, "r".into()), 1);
        t.findings.insert(FindingKey::Groups("g1".into(), "g2".into()), 1);
        t
    };
    m.publish(&monitor::live::metrics::Snapshot {
        counters: &[&kernel, &user, &dns, &dedup, &webhook, &tally],
        rules: vec![("r", &used)],
        tally: Some(&tally),
        tracked_flows: 0,
        table_read: Some((std::time::Duration::from_millis(20), std::time::Duration::from_secs(1))),
        interfaces: Some(&[]),
    });
    let exposed = m.encode();
    let samples: Vec<&str> = exposed
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    let names = regex::Regex::new(r"\bmonitor_[a-z0-9_]+").unwrap();
    let used: Vec<&str> = names.find_iter(&rules).map(|m| m.as_str()).collect();
    assert!(used.len() >= 5, "{used:?}");
    for name in used {
        assert!(samples.contains(&name), "the rules use {name}, which the monitor does not export");
    }
    // And every series they select by its `counter` label exists in that family.
    let selectors = regex::Regex::new(r#"\b(monitor_[a-z0-9_]+)\{counter=~?"([^"]+)"\}"#).unwrap();
    let mut named = 0;
    for c in selectors.captures_iter(&rules) {
        for counter in c[2].split('|') {
            let series = format!(r#"{}{{counter="{counter}"}}"#, &c[1]);
            assert!(exposed.contains(&series), "the rules watch {series}, which the monitor does not export");
            named += 1;
        }
    }
    assert!(named >= 4, "ringbuf_full, flow_map_full, flows_evicted, events_dropped");
}

/// `doc` at `path` (dot-separated mapping keys), with a clear panic.
fn at<'a>(doc: &'a Yaml<'a>, path: &str) -> &'a Yaml<'a> {
    path.split('.').fold(doc, |node, key| {
        node.as_mapping_get(key).unwrap_or_else(|| panic!("deploy/daemonset.yaml: no `{path}` (at `{key}`)"))
    })
}

fn strings<'a>(node: &'a Yaml<'a>) -> Vec<&'a str> {
    node.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {node:?}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}")))
        .collect()
}

#[test]
fn the_daemonset_watches_the_host_with_three_capabilities() {
    let text = read("daemonset.yaml");
    let docs = Yaml::load_from_str(&text).unwrap_or_else(|e| panic!("deploy/daemonset.yaml: {e}"));
    let kind = |k: &str| {
        docs.iter()
            .find(|d| at(d, "kind").as_str() == Some(k))
            .unwrap_or_else(|| panic!("deploy/daemonset.yaml has no {k}"))
    };
    let ds = kind("DaemonSet");
    let cm = kind("ConfigMap");
    assert!(kind("Namespace").as_mapping_get("metadata").is_some());

    let pod = at(ds, "spec.template.spec");
    assert_eq!(at(pod, "hostNetwork").as_bool(), Some(true));
    let tolerations = at(pod, "tolerations").as_sequence().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| at(t, "operator").as_str() == Some("Exists") && t.as_mapping_get("key").is_none()),
        "a toleration of every taint, so that every node runs it"
    );
    let labels = at(ds, "spec.selector.matchLabels");
    assert_eq!(labels, at(ds, "spec.template.metadata.labels"), "the selector must match the pod's labels");

    let c = &at(pod, "containers").as_sequence().unwrap()[0];
    let sc = at(c, "securityContext");
    assert_eq!(strings(at(sc, "capabilities.drop")), ["ALL"]);
    assert_eq!(strings(at(sc, "capabilities.add")), ["BPF", "NET_ADMIN", "PERFMON"]);
    assert_eq!(at(sc, "privileged").as_bool(), Some(false));
    assert_eq!(at(sc, "allowPrivilegeEscalation").as_bool(), Some(false));
    assert_eq!(at(sc, "readOnlyRootFilesystem").as_bool(), Some(true));
    assert_eq!(at(c, "resources.limits.memory").as_str(), Some("128Mi"));

    // Volumes: the ConfigMap's files where the arguments look for them,
    // host paths read-only.
    let mounts: BTreeMap<&str, &Yaml> = at(c, "volumeMounts")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| (at(m, "name").as_str().unwrap(), m))
        .collect();
    let volumes: BTreeMap<&str, &Yaml> = at(pod, "volumes")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| (at(v, "name").as_str().unwrap(), v))
        .collect();
    for (name, v) in &volumes {
        let m = mounts.get(name).unwrap_or_else(|| panic!("volume {name} is not mounted"));
        if v.as_mapping_get("hostPath").is_some() {
            assert_eq!(at(m, "readOnly").as_bool(), Some(true), "host path {name} must be read-only");
        }
    }
    let config_dir = at(mounts["config"], "mountPath").as_str().unwrap();
    assert_eq!(at(volumes["config"], "configMap.name").as_str(), at(cm, "metadata.name").as_str());
    let args = strings(at(c, "args"));
    for file in ["matrix.yaml", "inventory.ini"] {
        assert!(at(cm, "data").as_mapping_get(file).is_some(), "the ConfigMap has no {file}");
        assert!(
            args.iter().any(|a| a.ends_with(&format!("={config_dir}/{file}"))),
            "no argument reads {config_dir}/{file}: {args:?}"
        );
    }

    // The metrics port is the one --metrics serves, and the binary
    // accepts the arguments (with the node address filled in).
    let port = at(&at(c, "ports").as_sequence().unwrap()[0], "containerPort").as_integer().unwrap();
    assert!(args.contains(&&*format!("--metrics=$(NODE_IP):{port}")), "{args:?}");
    // Kubernetes leaves a `$(VAR)` it has no env entry for as it is:
    // every one the arguments use is defined, the node's name from the
    // downward API (the fleet metrics' --node).
    let env = at(c, "env").as_sequence().unwrap();
    let field_of = |name: &str| {
        env.iter()
            .find(|e| at(e, "name").as_str() == Some(name))
            .map(|e| at(e, "valueFrom.fieldRef.fieldPath").as_str().unwrap().to_string())
    };
    let vars = regex::Regex::new(r"\$\(([A-Z_]+)\)").unwrap();
    for a in &args {
        for v in vars.captures_iter(a) {
            assert!(field_of(&v[1]).is_some(), "{a} uses $({}), which env does not define", &v[1]);
        }
    }
    assert!(args.contains(&"--node=$(NODE_NAME)"), "{args:?}");
    assert_eq!(field_of("NODE_NAME").as_deref(), Some("spec.nodeName"));
    let args: Vec<String> =
        args.iter().map(|a| a.replace("$(NODE_IP)", "192.0.2.1").replace("$(NODE_NAME)", "node-1")).collect();
    assert_monitor_accepts(&args);
}

/// `kubernetes-validate --strict`: the manifest against the Kubernetes API's
/// OpenAPI schemas that the tool ships (no cluster, no network); strict
/// rejects unknown fields. A misspelt field must fail, so that a validator
/// that checks nothing cannot pass.
#[test]
fn the_daemonset_validates_against_the_kubernetes_schema() {
    let validate = |path: &Path| {
        Command::new("kubernetes-validate").arg("--strict").arg(path).output().unwrap_or_else(|e| {
            panic!("kubernetes-validate: {e} (pip install kubernetes-validate, or cargo xtask setup)")
        })
    };
    let out = validate(&deploy("daemonset.yaml"));
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubernetes-validate deploy/daemonset.yaml:\n{report}");
    for kind in ["namespace/monitor", "configmap/monitor-config", "daemonset/monitor"] {
        assert!(report.contains(&format!("passed for resource {kind}")), "{kind} not validated:\n{report}");
    }

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("daemonset.yaml");
    let text = read("daemonset.yaml");
    assert!(text.contains("hostNetwork: true"));
    std::fs::write(&bad, text.replace("hostNetwork: true", "hostNetwrk: true")).unwrap();
    let out = validate(&bad);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stdout).contains("hostNetwrk"),
        "kubernetes-validate accepted a misspelt field:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The DaemonSet runs the image `cargo xtask image` builds and tags.
#[test]
fn the_daemonset_runs_the_image_xtask_builds() {
    let text = read("daemonset.yaml");
    let docs = Yaml::load_from_str(&text).unwrap();
    let ds = docs.iter().find(|d| at(d, "kind").as_str() == Some("DaemonSet")).unwrap();
    let c = &at(ds, "spec.template.spec.containers").as_sequence().unwrap()[0];
    let image = at(c, "image").as_str().unwrap();
    assert_eq!(image, format!("localhost/monitor:{}", env!("CARGO_PKG_VERSION")), "see xtask/src/package.rs");
    // The manifest passes arguments only: the image's entrypoint is the binary.
    assert!(c.as_mapping_get("command").is_none(), "the Containerfile's ENTRYPOINT runs the monitor");
    let containerfile = std::fs::read_to_string(deploy("../Containerfile")).unwrap();
    assert!(containerfile.contains(r#"ENTRYPOINT ["/usr/bin/monitor"]"#), "{containerfile}");
}

/// The example matrix and inventory the package installs in /etc/monitor/
/// are clean for the monitor that reads them.
#[test]
fn the_example_matrix_and_inventory_lint_clean() {
    let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["matrix", "lint", "--deny-warnings", "--inventory"])
        .arg(deploy("etc/inventory.ini"))
        .arg(deploy("etc/matrix.yaml"))
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "monitor matrix lint deploy/etc/matrix.yaml:\n{report}");
    assert!(report.contains("0 warnings"), "{report}");
}
