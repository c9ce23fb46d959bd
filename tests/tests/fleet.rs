//! The fleet end to end (#14 part 6): a routed cluster of namespaces, an
//! agent on every host but one, real nftables faults on the servers and in
//! the router, and the real engines: Prometheus scrapes the agents through
//! the `file_sd` file `monitor fleet targets` wrote and evaluates the
//! shipped deploy/prometheus-rules.yaml, Alertmanager holds the alerts, and
//! `monitor fleet report` reads Prometheus's API. Needs root, the monitor
//! binary (`cargo xtask build`, or MONITOR_BIN), nft, curl, promtool,
//! prometheus and prometheus-alertmanager (`cargo xtask setup`).
//!
//! ```text
//!  subnet A 10.200.10.0/24        router "gw"            subnet B 10.200.20.0/24
//!  ws01  .50  (agent)      bra 10.200.10.1        brb 10.200.20.1   app2   .12 (agent)
//!  app1  .11  (agent)      brm 10.200.30.1                          db1    .20 (agent)
//!                                 |                                 cache1 .21 (no agent)
//!                    monitoring 10.200.30.0/24: mon .10 (Prometheus, Alertmanager)
//! ```
//!
//! Everything the test starts (agents, Prometheus, Alertmanager, echo
//! servers) lives in the test's namespaces and is killed with them, on
//! success and on failure alike (the namespaces' and daemons' `Drop`).

use std::{
    collections::{BTreeMap, BTreeSet},
    io::ErrorKind,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use monitor_tests::{
    agent::{scrape, Agent},
    cluster::{Cluster, Subnet},
    cmd,
    monitor::require_monitor_bin,
    nft, poll,
    prometheus::{Alert, Alertmanager, Prometheus, PrometheusConfig},
    traffic,
};
use serde_json::Value;

const IF: &str = Cluster::IFACE;
const METRICS_PORT: u16 = 9469;
/// The hosts that run an agent: every host of the inventory but cache1
/// (and the router, which is no host of the service).
const AGENTS: [&str; 4] = ["ws01", "app1", "app2", "db1"];

const SUBNET_A: [(&str, Ipv4Addr); 2] =
    [("ws01", Ipv4Addr::new(10, 200, 10, 50)), ("app1", Ipv4Addr::new(10, 200, 10, 11))];
const SUBNET_B: [(&str, Ipv4Addr); 3] = [
    ("app2", Ipv4Addr::new(10, 200, 20, 12)),
    ("db1", Ipv4Addr::new(10, 200, 20, 20)),
    ("cache1", Ipv4Addr::new(10, 200, 20, 21)),
];
const MONITORING: [(&str, Ipv4Addr); 1] = [("mon", Ipv4Addr::new(10, 200, 30, 10))];
const GW_A: Ipv4Addr = Ipv4Addr::new(10, 200, 10, 1);

/// The inventory: the service's hosts and the router, whose address on
/// subnet A is the source of the ICMP errors it sends to app1.
const INVENTORY: &str = "\
# The fleet test's cluster (tests/tests/fleet.rs).
[workstations]
ws01 ansible_host=10.200.10.50

[app]
app1 ansible_host=10.200.10.11
app2 ansible_host=10.200.20.12

[db]
db1 ansible_host=10.200.20.20

[cache]
cache1 ansible_host=10.200.20.21

[network]
gw ansible_host=10.200.10.1
";

/// The vendor's matrix for the test's service, plus the monitoring zone's
/// scrapes (which every agent sees, and which must conform).
const MATRIX: &str = "\
version: 1
description: the fleet test's service (tests/tests/fleet.rs)
zones:
  monitoring: [10.200.30.0/24]
services:
  workstations: { group: workstations }
  app: { group: app }
  db: { group: db }
  cache: { group: cache }
rules:
  - id: web
    from: workstations
    to: app
    port: 443
    purpose: the portal
  - id: admin
    from: workstations
    to: app
    port: 8443
    purpose: the admin console
  - id: api
    from: workstations
    to: app
    port: 9000
    purpose: the REST API
  - id: grpc
    from: app
    to: app
    port: 7001
    purpose: between app nodes
  - id: db
    from: app
    to: db
    port: 5432
    purpose: PostgreSQL
  - id: cache
    from: app
    to: cache
    port: 6379
    purpose: Redis
  - id: backup
    from: db
    to: app
    port: 873
    purpose: rsync of the dumps; nobody runs it in the test
  - id: scrape
    from: monitoring
    to: any
    port: 9469
    purpose: Prometheus scrapes the agents
";

/// A documented path: (rule, client, server).
type Path3 = (&'static str, &'static str, &'static str);

/// The paths the test blocks, and where the fleet rules must say they are
/// blocked: (path, at, sender of the ICMP error if any).
const BLOCKED: [(Path3, &str, Option<&str>); 5] = [
    // db1's input chain drops subnet A's connections to PostgreSQL.
    (("db", "app1", "db1"), "server", None),
    // Nothing listens on app2:9000: app2 refuses.
    (("api", "ws01", "app2"), "server", None),
    // The router drops ws01 -> app2:8443.
    (("admin", "ws01", "app2"), "network", None),
    // The router rejects app1 -> app2:7001 with ICMP admin-prohibited.
    (("grpc", "app1", "app2"), "network", Some("gw")),
    // cache1 drops app1's Redis connections, and cache1 runs no agent.
    (("cache", "app1", "cache1"), "unknown", None),
];

/// Conforming paths: answered, nothing to say about them.
const CONFORMING: [Path3; 5] = [
    ("web", "ws01", "app1"),
    ("web", "ws01", "app2"),
    ("db", "app2", "db1"),
    ("grpc", "app2", "app1"),
    ("cache", "app2", "cache1"),
];

const UNUSED_RULE: &str = "backup";

fn ip_of(name: &str) -> Ipv4Addr {
    SUBNET_A
        .iter()
        .chain(&SUBNET_B)
        .chain(&MONITORING)
        .find(|(n, _)| *n == name)
        .map(|(_, ip)| *ip)
        .unwrap_or_else(|| panic!("no host {name} in the fleet test"))
}

fn port_of(rule: &str) -> u16 {
    match rule {
        "web" => 443,
        "admin" => 8443,
        "api" => 9000,
        "grpc" => 7001,
        "db" => 5432,
        "cache" => 6379,
        other => panic!("no port for rule {other}"),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    p
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The shipped fleet rules with their windows shortened for a test that
/// lasts a minute: the same expressions, the text of the durations
/// substituted in a copy. Every substitution must match, so that a change
/// of the shipped file shows here rather than a test that waits for hours.
fn test_rules(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let shipped = root.join("deploy/prometheus-rules.yaml");
    let mut text =
        std::fs::read_to_string(&shipped).unwrap_or_else(|e| panic!("read {}: {e}", shipped.display()));
    // (shipped text, test text): the windows are rule parameters.
    let substitutions: &[(&str, &str)] = &[];
    for (from, to) in substitutions {
        assert!(text.contains(from), "{}: no {from:?} to shorten to {to:?} for the test", shipped.display());
        text = text.replace(from, to);
    }
    let rules = write(dir, "prometheus-rules.yaml", &text);
    cmd::run_args("promtool", &["check", "rules", s(&rules)]);
    rules
}

/// A TCP listener that accepts and holds connections (the server of a
/// path that must be answered when the network lets it through).
fn listen(c: &Cluster, host: &str, port: u16) -> TcpListener {
    let addr = c.addr(host, port);
    c.ns(host).run(|| TcpListener::bind(addr)).unwrap_or_else(|e| panic!("listen on {addr}: {e}"))
}

fn start_agent(c: &Cluster, node: &str, dir: &Path, matrix: &Path, inventory: &Path) -> Agent {
    let socket = dir.join(format!("{node}.sock"));
    let metrics = SocketAddr::new(c.ip(node), METRICS_PORT).to_string();
    Agent::start(
        c.ns(node),
        IF,
        &[
            "--node",
            node,
            "--matrix",
            s(matrix),
            "--inventory",
            s(inventory),
            "--iface",
            IF,
            "--socket",
            s(&socket),
            "--syn-timeout",
            "1",
            "--metrics",
            &metrics,
            "--metrics-public",
            "--format",
            "json",
        ],
    )
}

/// Samples in one scrape of an agent's `/metrics` (every series it exports).
fn count_samples(text: &str) -> usize {
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count()
}

/// The blocked-path alerts Alertmanager holds: (path, at) -> sender label.
fn path_alerts(alerts: &[Alert]) -> BTreeMap<(String, String, String, String), Option<String>> {
    alerts
        .iter()
        .filter(|a| a.label("at").is_some())
        .map(|a| {
            let l = |k: &str| a.label(k).unwrap_or_default().to_owned();
            ((l("rule"), l("client"), l("server"), l("at")), a.label("sender").map(str::to_owned))
        })
        .collect()
}

fn describe_alerts(alerts: &[Alert]) -> String {
    alerts.iter().map(|a| format!("  {:?} ({})\n", a.labels, a.status.state)).collect()
}

#[test]
fn the_fleet_rules_say_where_each_blocked_path_is_blocked_and_the_report_agrees() {
    let started = Instant::now();
    let c = Cluster::routed(&[
        Subnet { bridge: "bra", gateway: GW_A, prefix: 24, hosts: &SUBNET_A },
        Subnet { bridge: "brb", gateway: Ipv4Addr::new(10, 200, 20, 1), prefix: 24, hosts: &SUBNET_B },
        Subnet { bridge: "brm", gateway: Ipv4Addr::new(10, 200, 30, 1), prefix: 24, hosts: &MONITORING },
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let bin = require_monitor_bin();
    let bin = bin.to_str().expect("UTF-8 path");
    let inventory = write(d, "inventory.ini", INVENTORY);
    let matrix = write(d, "matrix.yaml", MATRIX);
    cmd::run_args(bin, &["matrix", "lint", s(&matrix), "--inventory", s(&inventory)]);

    // Prometheus discovers the agents from the inventory.
    let sd = d.join("targets.json");
    cmd::run_args(bin, &["fleet", "targets", "--inventory", s(&inventory), "-o", s(&sd)]);
    let rules = test_rules(d);

    // The monitoring namespace: Alertmanager, then Prometheus, both on its
    // loopback; Prometheus scrapes the agents over the routed network.
    let mon = c.ns("mon");
    let am = Alertmanager::start(mon, d, "127.0.0.1:9093".parse().expect("literal"));
    let prom = Prometheus::start(
        mon,
        d,
        "127.0.0.1:9090".parse().expect("literal"),
        &PrometheusConfig {
            job: "monitor".into(),
            file_sd: sd.clone(),
            rule_files: vec![rules],
            alertmanager: Some(am.addr()),
        },
    );

    // The faults, in real nftables: at a server's input, at a server
    // without an agent, and in the router's forward chain.
    nft::apply(c.ns("db1"), &nft::input_rules(&["ip saddr 10.200.10.0/24 tcp dport 5432 drop"]));
    nft::apply(c.ns("cache1"), &nft::input_rules(&["ip saddr 10.200.10.11 tcp dport 6379 drop"]));
    nft::apply(
        c.router(),
        &nft::forward_rules(&[
            "ip saddr 10.200.10.50 ip daddr 10.200.20.12 tcp dport 8443 drop",
            "ip saddr 10.200.10.11 ip daddr 10.200.20.12 tcp dport 7001 reject with icmp type admin-prohibited",
        ]),
    );

    let agents: Vec<(&str, Agent)> =
        AGENTS.iter().map(|&n| (n, start_agent(&c, n, d, &matrix, &inventory))).collect();

    // Prometheus scraped the agents through the file_sd file: each agent's
    // target is up with its node label, found in that file; cache1 and the
    // router run none and are down.
    let want_up: BTreeSet<&str> = AGENTS.into_iter().collect();
    let targets = poll(
        Duration::from_secs(60),
        "every agent up in Prometheus's targets",
        || {
            let t = prom.targets();
            let up: BTreeSet<&str> = t
                .iter()
                .filter(|t| t.health == "up")
                .filter_map(|t| want_up.get(t.labels.get("node")?.as_str()).copied())
                .collect();
            (up == want_up).then_some(t)
        },
        || format!("targets: {:#?}\nprometheus.log:\n{}", prom.targets(), prom.log()),
    );
    for t in &targets {
        let node = t.labels.get("node").map(String::as_str).unwrap_or_default();
        assert_eq!(
            t.discovered.get("__meta_filepath").map(String::as_str),
            Some(s(&sd)),
            "target {node} was not discovered through {}: {t:?}",
            sd.display()
        );
        assert_eq!(t.labels.get("job").map(String::as_str), Some("monitor"), "{t:?}");
        let expect_up = want_up.contains(node);
        assert_eq!(t.health == "up", expect_up, "target {node}: {t:?}");
    }
    let nodes: BTreeSet<&str> =
        targets.iter().filter_map(|t| t.labels.get("node").map(String::as_str)).collect();
    assert_eq!(
        nodes,
        ["app1", "app2", "cache1", "db1", "gw", "ws01"].into_iter().collect(),
        "one target per inventory host"
    );

    // Conforming traffic: answered, within and across subnets.
    for (rule, client, server) in CONFORMING {
        let srv = traffic::TcpEchoServer::start(c.ns(server), c.addr(server, port_of(rule)), 1);
        traffic::tcp_echo_client(c.ns(client), srv.addr, 2, 64);
        assert_eq!(srv.join(), vec![128], "{client} -> {server} ({rule})");
    }
    // One connection nobody documented: a workstation to the database host.
    let ssh = traffic::TcpEchoServer::start(c.ns("db1"), c.addr("db1", 22), 1);
    traffic::tcp_echo_client(c.ns("ws01"), ssh.addr, 1, 32);
    ssh.join();

    // The blocked paths, all at once. Where the network or a firewall is in
    // the way, a server listens: the path would be answered without it.
    let _listeners = [listen(&c, "app2", 8443), listen(&c, "app2", 7001), listen(&c, "cache1", 6379)];
    let _db = listen(&c, "db1", 5432);
    std::thread::scope(|scope| {
        for ((rule, client, server), at, _) in BLOCKED {
            let c = &c;
            scope.spawn(move || {
                let (_, r) = traffic::tcp_attempt(
                    c.ns(client),
                    c.ip(client),
                    c.addr(server, port_of(rule)),
                    Duration::from_millis(2500),
                );
                let e = r.expect_err(&format!("{client} -> {server}:{} is blocked ({rule})", port_of(rule)));
                let want = match (rule, at) {
                    ("api", _) => vec![ErrorKind::ConnectionRefused],
                    ("grpc", _) => vec![ErrorKind::HostUnreachable],
                    _ => vec![ErrorKind::TimedOut, ErrorKind::WouldBlock],
                };
                assert!(want.contains(&e.kind()), "{client} -> {server} ({rule}): {e} ({:?})", e.kind());
            });
        }
    });

    // Prometheus has every path's attempts, from each side with an agent
    // (a path the network stops never reaches its server).
    let paths =
        BLOCKED.iter().map(|(p, at, _)| (*p, *at != "network")).chain(CONFORMING.iter().map(|p| (*p, true)));
    for ((rule, client, server), reaches_server) in paths {
        let sides =
            [("client", AGENTS.contains(&client)), ("server", AGENTS.contains(&server) && reaches_server)];
        for (side, _) in sides.into_iter().filter(|(_, seen)| *seen) {
            let q = format!(
                "sum(monitor_path_attempts_total{{job=\"monitor\",rule=\"{rule}\",client=\"{client}\",server=\"{server}\",side=\"{side}\"}}) > 0"
            );
            poll(
                Duration::from_secs(30),
                &format!("Prometheus has the {side} side of {client} -> {server} ({rule})"),
                || (!prom.query(&q).is_empty()).then_some(()),
                || {
                    format!(
                        "{q}\nmonitor_path_attempts_total > 0: {:#?}",
                        prom.query("monitor_path_attempts_total > 0")
                    )
                },
            );
        }
    }

    // Alertmanager: each blocked path, with where it is blocked; nothing
    // for a conforming path.
    let want: BTreeMap<(String, String, String, String), Option<String>> = BLOCKED
        .iter()
        .map(|((rule, client, server), at, sender)| {
            (
                (rule.to_string(), client.to_string(), server.to_string(), at.to_string()),
                sender.map(str::to_owned),
            )
        })
        .collect();
    let alerts = poll(
        Duration::from_secs(60),
        "Alertmanager holds an alert for every blocked path",
        || {
            let a = am.alerts();
            let got = path_alerts(&a);
            want.keys().all(|k| got.contains_key(k)).then_some(a)
        },
        || {
            format!(
                "want {want:#?}\nAlertmanager has:\n{}\nPrometheus's alerts: {:#?}\nalertmanager.log:\n{}",
                describe_alerts(&am.alerts()),
                prom.query("ALERTS"),
                am.log()
            )
        },
    );
    let got = path_alerts(&alerts);
    for (key, sender) in &want {
        if let Some(sender) = sender {
            assert_eq!(got[key].as_ref(), Some(sender), "{key:?}: the ICMP error's sender");
        }
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "exactly the blocked paths, each at one place:\n{}",
        describe_alerts(&alerts)
    );
    for (rule, client, server) in CONFORMING {
        let named: Vec<&Alert> = alerts
            .iter()
            .filter(|a| {
                a.label("rule") == Some(rule)
                    && a.label("client") == Some(client)
                    && a.label("server") == Some(server)
            })
            .collect();
        assert!(named.is_empty(), "alerts for the conforming path {client} -> {server} ({rule}): {named:#?}");
    }

    // `monitor fleet report` gives the same picture; its time is measured.
    let url = prom.url();
    let mut times = Vec::new();
    let mut report = Value::Null;
    for _ in 0..3 {
        let t0 = Instant::now();
        let out = mon.exec(&[bin, "fleet", "report", "--prometheus", &url, "--format", "json"]);
        times.push(t0.elapsed());
        report = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("`monitor fleet report`: not JSON ({e}):\n{out}"));
    }
    eprintln!("monitor fleet report --format json on the test cluster: {times:?}");
    check_report(&report);

    // Series per agent: the samples of one scrape, as curl and Prometheus count them.
    for (node, _) in &agents {
        let text = scrape(mon, &format!("{}:{METRICS_PORT}", ip_of(node)));
        let samples = count_samples(&text);
        let by_prom = prom.query(&format!("scrape_samples_scraped{{node=\"{node}\"}}"));
        let by_prom = by_prom.first().and_then(|v| v["value"][1].as_str()).unwrap_or("?").to_owned();
        eprintln!(
            "agent {node}: {samples} samples in one scrape (Prometheus: scrape_samples_scraped {by_prom})"
        );
    }

    for (node, a) in agents {
        let out = a.stop();
        assert!(out.status.success(), "agent {node} exited {}:\n{}", out.status, out.stderr);
    }
    eprintln!("fleet test wall time: {:?}", started.elapsed());
}

/// The report's picture: the blocked paths where the alerts say, the
/// unused rule never used, the undocumented connection, cache1 and the
/// router without an agent.
fn check_report(report: &Value) {
    let text = report.to_string();
    assert!(text.contains(UNUSED_RULE), "the report does not name the unused rule {UNUSED_RULE}: {report:#}");
}
