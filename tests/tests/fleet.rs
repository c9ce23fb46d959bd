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
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
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

/// A host's address in the inventory (the router's is its subnet A side).
fn ip_of_inventory(name: &str) -> Ipv4Addr {
    if name == "gw" {
        GW_A
    } else {
        ip_of(name)
    }
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
    // (shipped text, test text): the windows are rule parameters. The
    // paths' window (10m) becomes 30 s, and so does the "never used" one
    // (24h): the test's traffic repeats every few seconds, so a used rule
    // is used in every 30 s, and a fleet 30 s old has had its chance.
    let substitutions: &[(&str, &str)] = &[
        ("[10m]", "[30s]"),
        ("offset 10m", "offset 30s"),
        ("[24h]", "[30s]"),
        ("offset 24h", "offset 30s"),
        ("window: 24h", "window: 30s"),
    ];
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

/// Samples in one scrape of an agent's `/metrics` (every series it
/// exports): in all, and those that grow with the matrix (`monitor_rule_*`),
/// with the paths in use (`monitor_path_*`) and with the findings
/// (`monitor_findings_*`).
fn count_samples(text: &str) -> (usize, [usize; 3]) {
    let samples: Vec<&str> = text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let of = |prefix: &str| samples.iter().filter(|l| l.starts_with(prefix)).count();
    (samples.len(), [of("monitor_rule_"), of("monitor_path_"), of("monitor_findings_")])
}

/// The blocked-path alerts Alertmanager holds: (rule, client, server, at)
/// and the sender label, if any.
type PathAlerts = BTreeMap<(String, String, String, String), Option<String>>;

fn path_alerts(alerts: &[Alert]) -> PathAlerts {
    alerts
        .iter()
        .filter(|a| a.label("alertname") == Some("MonitorFleetPathBlocked"))
        .map(|a| {
            let l = |k: &str| a.label(k).unwrap_or_default().to_owned();
            ((l("rule"), l("client"), l("server"), l("at")), a.label("sender").map(str::to_owned))
        })
        .collect()
}

fn describe_alerts(alerts: &[Alert]) -> String {
    alerts.iter().map(|a| format!("  {:?} ({})\n", a.labels, a.status.state)).collect()
}

/// The test's traffic, repeated in rounds until stopped: every conforming
/// path answered, every blocked path attempted (and failing the way its
/// fault makes it fail), the undocumented connection answered. A steady
/// fleet: whenever the rules look over their window, the conforming paths
/// and the blocked ones have been tried in it, and the unused rule not.
struct Traffic {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(c: Arc<Cluster>) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU32::new(0));
        let thread = {
            let (stop, rounds) = (Arc::clone(&stop), Arc::clone(&rounds));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    round(&c);
                    rounds.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        Traffic { stop, rounds, thread: Some(thread) }
    }

    /// Rounds completed so far; panics with the traffic thread's panic if it failed.
    fn rounds(&mut self) -> u32 {
        if self.thread.as_ref().is_some_and(|t| t.is_finished()) && !self.stop.load(Ordering::Relaxed) {
            self.finish();
        }
        self.rounds.load(Ordering::Relaxed)
    }

    /// Waits until `n` more rounds are done (each takes about 3 s).
    fn wait_rounds(&mut self, n: u32) {
        let target = self.rounds() + n;
        poll(
            Duration::from_secs(30 * u64::from(n)),
            &format!("{n} more round(s) of traffic"),
            || (self.rounds() >= target).then_some(()),
            String::new,
        );
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // A panic in the round was (or will be) reported by the test's own failure.
            let _ = t.join();
        }
    }
}

/// One round: the blocked attempts at once (each waits up to 2.5 s), the
/// answered connections meanwhile.
fn round(c: &Cluster) {
    std::thread::scope(|scope| {
        for ((rule, client, server), _, _) in BLOCKED {
            scope.spawn(move || {
                let to = c.addr(server, port_of(rule));
                let (_, r) =
                    traffic::tcp_attempt(c.ns(client), c.ip(client), to, Duration::from_millis(2500));
                let e = r.expect_err(&format!("{client} -> {to} is blocked ({rule})"));
                let want: &[ErrorKind] = match rule {
                    "api" => &[ErrorKind::ConnectionRefused],
                    "grpc" => &[ErrorKind::HostUnreachable],
                    _ => &[ErrorKind::TimedOut, ErrorKind::WouldBlock],
                };
                assert!(want.contains(&e.kind()), "{client} -> {to} ({rule}): {e} ({:?})", e.kind());
            });
        }
        for (rule, client, server) in CONFORMING {
            let srv = traffic::TcpEchoServer::start(c.ns(server), c.addr(server, port_of(rule)), 1);
            traffic::tcp_echo_client(c.ns(client), srv.addr, 2, 64);
            assert_eq!(srv.join(), vec![128], "{client} -> {server} ({rule})");
        }
        // The one connection nobody documented: a workstation to the database host.
        let ssh = traffic::TcpEchoServer::start(c.ns("db1"), c.addr("db1", 22), 1);
        traffic::tcp_echo_client(c.ns("ws01"), ssh.addr, 1, 32);
        ssh.join();
    });
}

/// The blocked paths the faults make, with where each is blocked and who
/// sends its ICMP error: what Alertmanager and the report must both show.
fn blocked_paths() -> PathAlerts {
    BLOCKED
        .iter()
        .map(|((rule, client, server), at, sender)| {
            (
                (rule.to_string(), client.to_string(), server.to_string(), at.to_string()),
                sender.map(str::to_owned),
            )
        })
        .collect()
}

#[test]
fn the_fleet_rules_say_where_each_blocked_path_is_blocked_and_the_report_agrees() {
    let started = Instant::now();
    let c = Arc::new(Cluster::routed(&[
        Subnet { bridge: "bra", gateway: GW_A, prefix: 24, hosts: &SUBNET_A },
        Subnet { bridge: "brb", gateway: Ipv4Addr::new(10, 200, 20, 1), prefix: 24, hosts: &SUBNET_B },
        Subnet { bridge: "brm", gateway: Ipv4Addr::new(10, 200, 30, 1), prefix: 24, hosts: &MONITORING },
    ]));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let bin = require_monitor_bin();
    let bin = bin.to_str().expect("UTF-8 path");
    let inventory = write(d, "inventory.ini", INVENTORY);
    let matrix = write(d, "matrix.yaml", MATRIX);
    cmd::run_args(bin, &["matrix", "lint", s(&matrix), "--inventory", s(&inventory)]);
    let rules = test_rules(d);

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
    // Where a firewall is in the way, a server listens: the path would be
    // answered without it.
    let _listeners = [listen(&c, "app2", 8443), listen(&c, "app2", 7001)];

    // The agents first, so that every scrape of theirs succeeds (the
    // rules' "up for the whole window").
    let agents: Vec<(&str, Agent)> =
        AGENTS.iter().map(|&n| (n, start_agent(&c, n, d, &matrix, &inventory))).collect();

    // The monitoring namespace: Alertmanager, then Prometheus, both on its
    // loopback; Prometheus finds the agents through the file_sd file that
    // `monitor fleet targets` writes from the inventory, and scrapes them
    // over the routed network.
    let sd = d.join("targets.json");
    cmd::run_args(bin, &["fleet", "targets", "--inventory", s(&inventory), "-o", s(&sd)]);
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
        let instance = format!("{}:{METRICS_PORT}", ip_of_inventory(node));
        assert_eq!(t.labels.get("instance"), Some(&instance), "{t:?}");
        assert_eq!(t.health == "up", want_up.contains(node), "target {node}: {t:?}");
    }
    let nodes: BTreeSet<&str> =
        targets.iter().filter_map(|t| t.labels.get("node").map(String::as_str)).collect();
    assert_eq!(
        nodes,
        ["app1", "app2", "cache1", "db1", "gw", "ws01"].into_iter().collect(),
        "one target per inventory host"
    );

    let mut traffic = Traffic::start(Arc::clone(&c));

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
                || {
                    traffic.rounds();
                    (!prom.query(&q).is_empty()).then_some(())
                },
                || {
                    format!(
                        "{q}\nmonitor_path_attempts_total > 0: {:#?}",
                        prom.query("monitor_path_attempts_total > 0")
                    )
                },
            );
        }
    }

    // Alertmanager: each blocked path, with where it is blocked (and who
    // sent the ICMP error), and nothing for a conforming path.
    let want = blocked_paths();
    let alerts = poll(
        Duration::from_secs(90),
        "Alertmanager holds exactly one MonitorFleetPathBlocked per blocked path, with its place",
        || {
            traffic.rounds();
            let a = am.alerts();
            (path_alerts(&a) == want).then_some(a)
        },
        || {
            format!(
                "want {want:#?}\nAlertmanager has:\n{}\nPrometheus's monitor:path_blocked:10m: {:#?}\nalertmanager.log:\n{}",
                describe_alerts(&am.alerts()),
                prom.query("monitor:path_blocked:10m"),
                am.log()
            )
        },
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
    // The undocumented connection, by the groups of its ends.
    assert!(
        alerts.iter().any(|a| a.label("alertname") == Some("MonitorFleetUnexpectedTraffic")
            && a.label("source_group") == Some("workstations")
            && a.label("target_group") == Some("db")),
        "no MonitorFleetUnexpectedTraffic from workstations to db:\n{}",
        describe_alerts(&alerts)
    );

    // The unused rule is never used once the fleet is older than the
    // (shortened) window; no rule the traffic uses is, nor `scrape`:
    // Prometheus keeps its connection to each agent open, one flow older
    // than the window, whose packets keep the rule in use.
    let never_used = |a: &[Alert]| -> BTreeSet<String> {
        a.iter()
            .filter(|a| a.label("alertname") == Some("MonitorFleetRuleNeverUsed"))
            .filter_map(|a| a.label("rule").map(str::to_owned))
            .collect()
    };
    let unused = poll(
        Duration::from_secs(90),
        &format!("MonitorFleetRuleNeverUsed for {UNUSED_RULE}"),
        || {
            traffic.rounds();
            Some(never_used(&am.alerts())).filter(|n| n.contains(UNUSED_RULE))
        },
        || {
            format!(
                "never used: {:?}\nmonitor:rule_flows:window: {:#?}",
                never_used(&am.alerts()),
                prom.query("monitor:rule_flows:window")
            )
        },
    );
    eprintln!("MonitorFleetRuleNeverUsed: {unused:?}");
    for rule in BLOCKED.iter().map(|(p, ..)| p.0).chain(CONFORMING.iter().map(|p| p.0)).chain(["scrape"]) {
        assert!(!unused.contains(rule), "rule {rule} is used by the traffic, yet never used: {unused:?}");
    }

    // `monitor fleet report` gives the same picture; its time is measured.
    // One more round first, so that the report's window holds it all.
    traffic.wait_rounds(1);
    let url = prom.url();
    let mut times = Vec::new();
    let mut report = Value::Null;
    for _ in 0..5 {
        let t0 = Instant::now();
        let out = mon.exec(&[
            bin,
            "fleet",
            "report",
            "--prometheus",
            &url,
            "--inventory",
            s(&inventory),
            "--format",
            "json",
        ]);
        times.push(t0.elapsed());
        report = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("`monitor fleet report`: not JSON ({e}):\n{out}"));
    }
    times.sort();
    eprintln!(
        "monitor fleet report --format json on the test cluster (4 agents, 8 rules): median {:?}, runs {times:?}",
        times[times.len() / 2]
    );
    check_report(&report);
    traffic.finish();

    // Series per agent: the samples of one scrape, as curl and Prometheus count them.
    for (node, _) in &agents {
        let text = scrape(mon, &format!("{}:{METRICS_PORT}", ip_of(node)));
        let (samples, [rule, path, findings]) = count_samples(&text);
        let by_prom = prom.query(&format!("scrape_samples_scraped{{node=\"{node}\"}}"));
        let by_prom = by_prom.first().and_then(|v| v["value"][1].as_str()).unwrap_or("?").to_owned();
        eprintln!(
            "agent {node}: {samples} samples in one scrape (Prometheus: scrape_samples_scraped {by_prom}): \
             {rule} per rule, {path} per path, {findings} findings, {} fixed",
            samples - rule - path - findings
        );
    }

    for (node, a) in agents {
        let out = a.stop();
        assert!(out.status.success(), "agent {node} exited {}:\n{}", out.status, out.stderr);
    }
    eprintln!("fleet test wall time: {:?}", started.elapsed());
}

/// The report's picture, the same as the alerts': every rule used but the
/// unused one; each blocked path where the alerts say (the ICMP error's
/// sender the router), no conforming path blocked; the undocumented
/// connection by group; cache1 and the router without an agent.
fn check_report(report: &Value) {
    let r = |k: &str| -> &Value { &report[k] };
    assert_eq!(r("version"), 1, "{report:#}");
    let agents: BTreeSet<(&str, bool)> = r("agents")
        .as_array()
        .expect("agents[]")
        .iter()
        .map(|a| (a["node"].as_str().unwrap_or("?"), a["up"].as_bool().unwrap_or(false)))
        .collect();
    assert_eq!(agents, AGENTS.iter().map(|n| (*n, true)).collect(), "agents: {report:#}");

    let rules = r("rules").as_array().expect("rules[]");
    let rule = |id: &str| -> &Value {
        rules
            .iter()
            .find(|x| x["rule"] == id)
            .unwrap_or_else(|| panic!("no rule {id} in the report: {report:#}"))
    };
    for id in ["web", "admin", "api", "grpc", "db", "cache", "scrape"] {
        assert_eq!(rule(id)["used"], true, "rule {id}: {:#}", rule(id));
    }
    assert_eq!(rule(UNUSED_RULE)["used"], false, "rule {UNUSED_RULE}: {:#}", rule(UNUSED_RULE));

    let mut got: PathAlerts = BTreeMap::new();
    for x in rules {
        for p in x["blocked_paths"].as_array().expect("blocked_paths[]") {
            let key = (
                x["rule"].as_str().unwrap_or("?").to_owned(),
                p["client"].as_str().unwrap_or("?").to_owned(),
                p["server"].as_str().unwrap_or("?").to_owned(),
                p["at"].as_str().unwrap_or("?").to_owned(),
            );
            let sender = p["evidence"]
                .as_array()
                .expect("evidence[]")
                .iter()
                .find_map(|e| e["sender"].as_str().map(str::to_owned));
            got.insert(key, sender);
        }
    }
    let want = blocked_paths();
    assert_eq!(got, want, "the report's blocked paths differ from the alerts': {report:#}");

    let undocumented: Vec<(&str, &str)> = r("undocumented")
        .as_array()
        .expect("undocumented[]")
        .iter()
        .map(|u| (u["source_group"].as_str().unwrap_or("?"), u["target_group"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(undocumented, [("workstations", "db")], "undocumented: {report:#}");

    let down: BTreeSet<&str> = r("missing")["targets_down"]
        .as_array()
        .expect("missing.targets_down[]")
        .iter()
        .filter_map(|t| t["node"].as_str())
        .collect();
    assert_eq!(down, BTreeSet::from(["cache1", "gw"]), "targets down: {report:#}");
    let without: BTreeSet<(&str, &str)> = r("missing")["inventory"]["hosts_without_agent"]
        .as_array()
        .expect("missing.inventory.hosts_without_agent[]")
        .iter()
        .map(|h| (h["host"].as_str().unwrap_or("?"), h["target"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(
        without,
        BTreeSet::from([("cache1", "down"), ("gw", "down")]),
        "hosts without agent: {report:#}"
    );
    assert_eq!(r("warnings"), &Value::Array(vec![]), "warnings: {report:#}");
}
