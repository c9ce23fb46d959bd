//! The live monitor (`monitor run`) on a simulated RP-PAM cluster: one
//! network namespace per host of examples/rp-pam/inventory.ini on a bridge,
//! an agent in each node namespace run the way users run it, real TCP and
//! UDP traffic and real nftables rules. Needs root and the monitor binary
//! (`cargo xtask build`, or MONITOR_BIN).

use std::{
    io::ErrorKind,
    net::{SocketAddr, TcpListener},
    path::Path,
    time::{Duration, Instant},
};

use monitor_tests::{
    agent::{rp_pam, sample, scrape, Agent, AlertLine, Coverage},
    cluster::Cluster,
    nft, traffic,
};
use serde_json::Value;

const IF: &str = Cluster::IFACE;

/// Starts an agent on `node` with the example matrix; `ha` picks the HA
/// profile and inventory, else the single-node inventory without a profile.
fn agent(c: &Cluster, node: &str, dir: &Path, matrix: &str, ha: bool, extra: &[&str]) -> Agent {
    let socket = dir.join(format!("{node}.sock")).display().to_string();
    let inventory = rp_pam(if ha { "inventory.ini" } else { "inventory-single.ini" });
    let mut args = vec![
        "--matrix",
        matrix,
        "--inventory",
        &inventory,
        "--iface",
        IF,
        "--socket",
        &socket,
        "--syn-timeout",
        "1",
    ];
    if ha {
        args.extend(["--profile", "ha"]);
    }
    args.extend(["--format", "json"]);
    args.extend_from_slice(extra);
    Agent::start(c.ns(node), IF, &args)
}

/// Lets every agent read the table twice, so that later states of the
/// flows (answered, closed) have been judged too.
fn settle() {
    std::thread::sleep(Duration::from_millis(2500));
}

fn listen(c: &Cluster, host: &str, port: u16) -> TcpListener {
    let addr = c.addr(host, port);
    c.ns(host).run(|| TcpListener::bind(addr)).unwrap_or_else(|e| panic!("listen on {addr}: {e}"))
}

fn describe(alerts: &[AlertLine]) -> String {
    alerts
        .iter()
        .map(|a| {
            format!(
                "  {} {} {}:{} -> {}:{} rule={:?} count={} {}",
                a.kind, a.proto, a.src.ip, a.src.port, a.dst.ip, a.dst.port, a.rule, a.count, a.reason
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_used(cov: &Coverage, node: &str, expected: &[(&str, u64)]) {
    for (id, flows) in expected {
        let r = cov.rule(id);
        assert_eq!(r.flows, *flows, "{node}: rule {id} should count {flows} flow(s): {r:?}");
        assert!(
            r.packets > 0 && r.bytes > 0 && r.last_seen.is_some(),
            "{node}: rule {id} has no traffic: {r:?}"
        );
        assert_eq!(r.blocked, 0, "{node}: rule {id} was not blocked: {r:?}");
    }
    let mut unused: Vec<&str> =
        cov.rules.iter().map(|r| r.id.as_str()).filter(|id| !expected.iter().any(|(e, _)| e == id)).collect();
    unused.sort_unstable();
    let mut listed: Vec<&str> = cov.unused.iter().map(String::as_str).collect();
    listed.sort_unstable();
    assert_eq!(listed, unused, "{node}: `unused` must list exactly the rules no flow used");
    for id in &unused {
        let r = cov.rule(id);
        assert_eq!((r.flows, r.packets, r.bytes), (0, 0, 0), "{node}: unused rule {id} has traffic: {r:?}");
    }
}

/// Conforming traffic of an HA cluster: every node to the database and to
/// Redis, gRPC and heartbeat between nodes, workstations to the portal.
fn conforming_traffic(c: &Cluster) {
    let db = traffic::TcpEchoServer::start(c.ns("db1"), c.addr("db1", 5432), 3);
    let redis = traffic::TcpEchoServer::start(c.ns("redis1"), c.addr("redis1", 6379), 3);
    for node in ["rppam1", "rppam2", "rppam3"] {
        traffic::tcp_echo_client(c.ns(node), db.addr, 3, 200);
        traffic::tcp_echo_client(c.ns(node), redis.addr, 3, 100);
    }
    assert_eq!(db.join(), vec![600; 3]);
    assert_eq!(redis.join(), vec![300; 3]);
    // (client, server, port): gRPC at both ends of the range, heartbeat in a ring.
    let pairs = [
        ("rppam1", "rppam2", 7001),
        ("rppam2", "rppam3", 7012),
        ("rppam3", "rppam1", 7005),
        ("rppam1", "rppam2", 5201),
        ("rppam2", "rppam3", 5201),
        ("rppam3", "rppam1", 5201),
        ("ws01", "rppam1", 7101),
        ("ws01", "rppam2", 7101),
        ("admin01", "rppam3", 7101),
    ];
    for (client, server, port) in pairs {
        let s = traffic::TcpEchoServer::start(c.ns(server), c.addr(server, port), 1);
        traffic::tcp_echo_client(c.ns(client), s.addr, 2, 64);
        s.join();
    }
}

#[test]
fn ha_cluster_conforms_quietly_and_off_matrix_connections_alert_within_a_second() {
    let c = Cluster::new(&["rppam1", "rppam2", "rppam3", "db1", "redis1", "ws01", "admin01"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let matrix = rp_pam("matrix.yaml");
    let alerts_file = dir.path().join("rppam1-alerts.jsonl").display().to_string();
    let a1 = agent(&c, "rppam1", dir.path(), &matrix, true, &["--alerts-out", &alerts_file]);
    let a2 = agent(&c, "rppam2", dir.path(), &matrix, true, &[]);
    let a3 = agent(&c, "rppam3", dir.path(), &matrix, true, &[]);

    conforming_traffic(&c);
    settle();
    for a in [&a1, &a2, &a3] {
        let alerts = a.alerts();
        assert!(alerts.is_empty(), "`{}` alerted on conforming traffic:\n{}", a.command, describe(&alerts));
    }

    // The reports: exact flows per used rule, every other rule unused.
    let common = [("db-postgres", 1), ("redis", 1), ("grpc-inter-node", 2), ("heartbeat", 2)];
    let expect = |portal: &'static str| -> Vec<(&'static str, u64)> {
        common.iter().copied().chain([(portal, 1)]).collect()
    };
    let reports = [
        ("rppam1", a1.report(c.ns("rppam1")), expect("web-portal/users")),
        ("rppam2", a2.report(c.ns("rppam2")), expect("web-portal/users")),
        ("rppam3", a3.report(c.ns("rppam3")), expect("web-portal/admins")),
    ];
    for (node, cov, used) in &reports {
        assert_eq!(cov.record, "coverage");
        assert_used(cov, node, used);
    }
    assert!(
        reports[0].1.unused.contains(&"lb-to-nodes".to_string()),
        "no load balancer in the test: lb-to-nodes is unused"
    );

    // Off the matrix: a workstation on a port nobody documented. The delay
    // runs from the connect to the moment the alert line is read.
    let _l = listen(&c, "rppam2", 8080);
    let t0 = Instant::now();
    let (_, r) =
        traffic::tcp_attempt(c.ns("ws01"), c.ip("ws01"), c.addr("rppam2", 8080), Duration::from_secs(1));
    r.expect("connect to rppam2:8080");
    let (read_at, alert) = a2
        .wait_alert(0, Duration::from_secs(3), |a| a.dst.port == 8080)
        .unwrap_or_else(|| panic!("no alert for ws01 -> rppam2:8080 within 3 s; stderr:\n{}", a2.stderr()));
    let latency = read_at - t0;
    eprintln!("ws01 -> rppam2:8080: alert read {latency:?} after the connect");
    assert!(latency < Duration::from_secs(1), "the unexpected alert took {latency:?} (limit 1 s)");
    assert_eq!((alert.kind.as_str(), alert.proto.as_str()), ("unexpected", "tcp"), "{alert:?}");
    assert_eq!(
        (alert.src.ip, alert.src.host.as_deref(), alert.src.zone.as_deref()),
        (c.ip("ws01"), Some("ws01"), Some("users"))
    );
    assert_eq!(
        (alert.dst.ip, alert.dst.host.as_deref(), alert.dst.service.as_deref()),
        (c.ip("rppam2"), Some("rppam2"), Some("rppam"))
    );
    assert_eq!((alert.rule.as_deref(), alert.count), (None, 1), "{alert:?}");

    // The same through --alerts-out on rppam1.
    let _l1 = listen(&c, "rppam1", 8081);
    let t0 = Instant::now();
    let (_, r) = traffic::tcp_attempt(
        c.ns("admin01"),
        c.ip("admin01"),
        c.addr("rppam1", 8081),
        Duration::from_secs(1),
    );
    r.expect("connect to rppam1:8081");
    let (read_at, alert) =
        a1.wait_alert(0, Duration::from_secs(3), |a| a.dst.port == 8081).unwrap_or_else(|| {
            panic!("no alert in {alerts_file} for admin01 -> rppam1:8081; stderr:\n{}", a1.stderr())
        });
    assert!(
        read_at - t0 < Duration::from_secs(1),
        "the alert reached {alerts_file} after {:?}",
        read_at - t0
    );
    assert_eq!(
        (alert.kind.as_str(), alert.src.zone.as_deref(), alert.dst.host.as_deref()),
        ("unexpected", Some("admins"), Some("rppam1"))
    );

    // UDP nobody documented, answered.
    let udp = traffic::UdpEchoServer::start(c.ns("rppam3"), c.addr("rppam3", 5353), 2);
    traffic::udp_echo_client(c.ns("ws01"), udp.addr, 2, 40);
    udp.join();
    let (_, alert) = a3
        .wait_alert(0, Duration::from_secs(3), |a| a.dst.port == 5353)
        .unwrap_or_else(|| panic!("no alert for ws01 -> rppam3:5353/udp; stderr:\n{}", a3.stderr()));
    assert_eq!(
        (alert.kind.as_str(), alert.proto.as_str(), alert.rule.as_deref()),
        ("unexpected", "udp", None),
        "{alert:?}"
    );

    // At exit: exactly those alerts, then the coverage report, the same as `monitor report` gave.
    let expected_ports = [("rppam1", vec![8081u16]), ("rppam2", vec![8080]), ("rppam3", vec![5353])];
    for ((agent, (node, report, used)), (_, ports)) in
        [a1, a2, a3].into_iter().zip(&reports).zip(&expected_ports)
    {
        let out = agent.stop();
        out.assert_success();
        let alerts = out.alerts();
        let got: Vec<u16> = alerts.iter().map(|a| a.dst.port).collect();
        assert_eq!(&got, ports, "{node}: alerts at exit:\n{}", describe(&alerts));
        let last = out.final_coverage();
        assert_used(&last, node, used);
        assert_eq!(last.unused, report.unused, "{node}: the exit report differs from `monitor report`");
        for r in &report.rules {
            let l = last.rule(&r.id);
            assert!(
                l.flows == r.flows && l.packets >= r.packets && l.bytes >= r.bytes,
                "{node}: rule {} was {r:?} in `monitor report`, {l:?} at exit",
                r.id
            );
        }
    }
    let file = std::fs::read_to_string(&alerts_file).expect("read --alerts-out");
    assert_eq!(file.lines().count(), 2, "{alerts_file} holds the alert and the coverage report:\n{file}");
}

#[test]
fn documented_paths_dropped_refused_or_prohibited_are_blocked() {
    let c = Cluster::new(&["rppam1", "rppam2", "db1", "redis1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let a = agent(&c, "rppam1", dir.path(), &rp_pam("matrix.yaml"), true, &[]);
    // Services listen; the firewalls in front of them say no, each its own way.
    let _listeners = [listen(&c, "db1", 5432), listen(&c, "redis1", 6379), listen(&c, "rppam2", 5201)];
    nft::apply(c.ns("db1"), &nft::input_rules(&[&nft::drop_tcp(5432)]));
    nft::apply(c.ns("redis1"), &nft::input_rules(&[&nft::reset_tcp(6379)]));
    nft::apply(c.ns("rppam2"), &nft::input_rules(&[&nft::prohibit_tcp_v4(5201)]));
    let me = c.ip("rppam1");

    let (local, r) = traffic::tcp_attempt(c.ns("rppam1"), me, c.addr("redis1", 6379), Duration::from_secs(1));
    assert_eq!(r.expect_err("nft resets 6379").kind(), ErrorKind::ConnectionRefused);
    let (_, refused) = a
        .wait_alert(0, Duration::from_secs(2), |x| x.dst.port == 6379)
        .unwrap_or_else(|| panic!("no alert for the refused Redis connection; stderr:\n{}", a.stderr()));
    assert_eq!(
        (refused.kind.as_str(), refused.rule.as_deref(), refused.state.as_str()),
        ("blocked", Some("redis"), "refused"),
        "{refused:?}"
    );
    assert!(refused.reason.starts_with("refused"), "{}", refused.reason);
    assert_eq!(refused.src.port, local.port());

    let (_, r) = traffic::tcp_attempt(c.ns("rppam1"), me, c.addr("rppam2", 5201), Duration::from_secs(1));
    r.expect_err("nft rejects 5201 with admin-prohibited");
    let (_, prohibited) = a
        .wait_alert(0, Duration::from_secs(2), |x| x.dst.port == 5201)
        .unwrap_or_else(|| panic!("no alert for the prohibited heartbeat; stderr:\n{}", a.stderr()));
    assert_eq!(
        (prohibited.kind.as_str(), prohibited.rule.as_deref(), prohibited.state.as_str()),
        ("blocked", Some("heartbeat"), "icmp-unreachable")
    );
    assert!(prohibited.reason.starts_with("icmp admin-prohibited"), "{}", prohibited.reason);
    let icmp = prohibited.icmp.as_ref().expect("the ICMP error is carried");
    assert_eq!((icmp.icmp_type, icmp.code, icmp.name.as_str()), (3, 13, "admin-prohibited"));
    assert_eq!(icmp.sender, Some(c.ip("rppam2")), "the server's own firewall sent the error");

    let t0 = Instant::now();
    let (_, r) = traffic::tcp_attempt(c.ns("rppam1"), me, c.addr("db1", 5432), Duration::from_millis(1500));
    let e = r.expect_err("nft drops 5432");
    assert!(matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock), "{e}");
    let (read_at, dropped) = a
        .wait_alert(0, Duration::from_secs(4), |x| x.dst.port == 5432)
        .unwrap_or_else(|| panic!("no alert for the dropped database connection; stderr:\n{}", a.stderr()));
    let after = read_at - t0;
    assert!(after >= Duration::from_secs(1), "unanswered after {after:?}, before the 1 s SYN timeout");
    assert!(
        after < Duration::from_millis(3500),
        "unanswered reported {after:?} after the SYN (timeout 1 s, interval 1 s)"
    );
    assert_eq!(
        (dropped.kind.as_str(), dropped.rule.as_deref(), dropped.state.as_str()),
        ("blocked", Some("db-postgres"), "unanswered")
    );
    assert!(dropped.reason.starts_with("unanswered"), "{}", dropped.reason);

    let cov = a.report(c.ns("rppam1"));
    for id in ["redis", "heartbeat", "db-postgres"] {
        let r = cov.rule(id);
        assert_eq!((r.flows, r.blocked), (1, 1), "rule {id}: {r:?}");
    }
    // `state json` (monitor top) tells the same, and the three findings.
    let state = a.state();
    assert_eq!(state.record, "state");
    assert_eq!(state.status.interfaces, [IF], "{:?}", state.status);
    assert!(state.status.flows_seen >= 3 && state.status.secs_since_event.is_some(), "{:?}", state.status);
    for id in ["redis", "heartbeat", "db-postgres"] {
        let r = state.coverage.iter().find(|r| r.id == id).expect("every rule in force is in the state");
        assert_eq!((r.usage.flows, r.usage.blocked), (1, 1), "state: rule {id}: {r:?}");
    }
    let mut blocked: Vec<(&str, u16, bool)> = state
        .findings
        .iter()
        .map(|f| {
            let cited = f.provenance.as_deref().is_some_and(|p| p.contains("matrix.yaml:"));
            (f.rule.as_deref().unwrap_or("-"), f.port, cited)
        })
        .collect();
    blocked.sort_unstable();
    assert_eq!(
        blocked,
        [("db-postgres", 5432, true), ("heartbeat", 5201, true), ("redis", 6379, true)],
        "{:?}",
        state.findings
    );
    assert_eq!(state.findings_dropped, 0);
    assert!(
        state.groups.iter().any(|g| g.worst == monitor::live::state::Verdict::Blocked && g.flows >= 1),
        "a blocked cell in the grid: {:?}",
        state.groups
    );
    // `monitor graph --socket` draws that state: the three rules red, each
    // labelled with how it failed, and no undocumented edge.
    let (matrix, inventory) = (rp_pam("matrix.yaml"), rp_pam("inventory.ini"));
    let socket = a.socket.display().to_string();
    let dot = monitor_tests::monitor::run(&[
        "graph",
        "--socket",
        &socket,
        "--matrix",
        &matrix,
        "--inventory",
        &inventory,
        "--profile",
        "ha",
        "--format",
        "dot",
    ]);
    for (rule, how) in [
        ("redis", "refused 1"),
        ("heartbeat", "icmp-rejected (admin-prohibited) 1"),
        ("db-postgres", "unanswered 1"),
    ] {
        let edge = dot
            .lines()
            .find(|l| l.contains(&format!("label=\"{rule}\\n")))
            .unwrap_or_else(|| panic!("no edge for rule {rule} in the graph:\n{dot}"));
        assert!(edge.contains("color=\"red\"") && edge.contains(how), "rule {rule}: {edge}");
    }
    assert!(!dot.contains("darkorange"), "an undocumented edge:\n{dot}");
    // `monitor report --format html` is the page of that state: the three
    // findings, each with its rule's document line, and the graph.
    let page = monitor_tests::monitor::run(&[
        "report",
        "--socket",
        &socket,
        "--format",
        "html",
        "--matrix",
        &matrix,
        "--inventory",
        &inventory,
        "--profile",
        "ha",
    ]);
    assert_eq!(page.matches("<tr class=\"finding\" data-kind=\"blocked\"").count(), 3, "{page}");
    assert!(page.contains("<svg") && page.matches("matrix.yaml:").count() >= 3, "{page}");
    settle();
    let out = a.stop();
    out.assert_success();
    let alerts = out.alerts();
    assert_eq!(alerts.len(), 3, "one alert per blocked path, no more:\n{}", describe(&alerts));
}

#[test]
fn grpc_answered_from_outside_a_single_node_is_exposed() {
    let c = Cluster::new(&["rppam1", "ws01"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let a = agent(&c, "rppam1", dir.path(), &rp_pam("matrix.yaml"), false, &[]);
    let grpc = traffic::TcpEchoServer::start(c.ns("rppam1"), c.addr("rppam1", 7003), 1);
    traffic::tcp_echo_client(c.ns("ws01"), grpc.addr, 2, 80);
    grpc.join();
    // The portal is for users; gRPC dropped by the node's firewall is not exposed.
    let portal = traffic::TcpEchoServer::start(c.ns("rppam1"), c.addr("rppam1", 7101), 1);
    traffic::tcp_echo_client(c.ns("ws01"), portal.addr, 1, 80);
    portal.join();
    let _l = listen(&c, "rppam1", 7004);
    nft::apply(c.ns("rppam1"), &nft::input_rules(&[&nft::drop_tcp(7004)]));
    let (_, r) =
        traffic::tcp_attempt(c.ns("ws01"), c.ip("ws01"), c.addr("rppam1", 7004), Duration::from_millis(1200));
    r.expect_err("7004 is dropped");

    let (_, x) = a
        .wait_alert(0, Duration::from_secs(3), |x| x.dst.port == 7003)
        .unwrap_or_else(|| panic!("no alert for ws01 -> rppam1:7003; stderr:\n{}", a.stderr()));
    assert_eq!(
        (x.kind.as_str(), x.rule.as_deref(), x.src.ip, x.dst.ip),
        ("exposed", Some("grpc-localhost-only"), c.ip("ws01"), c.ip("rppam1")),
        "{x:?}"
    );
    assert!(x.reason.contains("answered (SYN-ACK)"), "{}", x.reason);
    settle();
    let out = a.stop();
    out.assert_success();
    let alerts = out.alerts();
    assert_eq!(alerts.len(), 1, "only the answered gRPC port is exposed:\n{}", describe(&alerts));
    let cov = out.final_coverage();
    assert_eq!(cov.rule("web-portal/users").flows, 1);
}

#[test]
fn repeats_fold_into_one_alert_and_a_follow_up_with_their_count() {
    let c = Cluster::new(&["rppam1", "ws01"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = "127.0.0.1:9469";
    let a = agent(
        &c,
        "rppam1",
        dir.path(),
        &rp_pam("matrix.yaml"),
        true,
        &["--dedup-window", "2", "--metrics", metrics],
    );
    let server = traffic::TcpEchoServer::start(c.ns("rppam1"), c.addr("rppam1", 9000), 50);
    let t0 = Instant::now();
    for _ in 0..50 {
        traffic::tcp_echo_client(c.ns("ws01"), server.addr, 1, 32);
    }
    server.join();
    let burst = t0.elapsed();
    assert!(
        burst < Duration::from_millis(1500),
        "50 connections took {burst:?}: too slow to fit one 2 s window"
    );
    a.wait_alert(0, Duration::from_secs(2), |x| x.dst.port == 9000)
        .expect("the first connection alerts at once");
    let (_, follow) = a
        .wait_alert(1, Duration::from_secs(4), |x| x.dst.port == 9000)
        .unwrap_or_else(|| panic!("no follow-up alert after the 2 s window; stderr:\n{}", a.stderr()));
    assert_eq!((follow.kind.as_str(), follow.count), ("unexpected", 49), "{follow:?}");
    assert!(follow.reason.contains("49 more times"), "{}", follow.reason);
    let alerts = a.alerts();
    assert_eq!(alerts.len(), 2, "one alert and one follow-up:\n{}", describe(&alerts));
    assert_eq!(alerts.iter().map(|x| x.count).sum::<u64>(), 50, "the counts add up to the 50 connections");
    let m = scrape(c.ns("rppam1"), metrics);
    assert_eq!(
        sample(&m, r#"monitor_alerts_total{kind="unexpected"}"#),
        2.0,
        "alerts_total counts alert lines"
    );
    assert_eq!(sample(&m, r#"monitor_alerts_total{kind="blocked"}"#), 0.0);
    a.stop().assert_success();
}

#[test]
fn a_port_scan_folds_into_one_alert_per_source_and_the_count_adds_up() {
    let c = Cluster::new(&["rppam1", "admin01"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = "127.0.0.1:9470";
    let a = agent(&c, "rppam1", dir.path(), &rp_pam("matrix.yaml"), true, &["--metrics", metrics]);
    let threshold = 32; // the default --scan-threshold
    for port in 20000..20200u16 {
        let server = SocketAddr::new(c.ip("rppam1"), port);
        let (_, r) = traffic::tcp_attempt(c.ns("admin01"), c.ip("admin01"), server, Duration::from_secs(1));
        assert_eq!(r.expect_err("nothing listens").kind(), ErrorKind::ConnectionRefused);
    }
    let (_, scan) = a
        .wait_alert(0, Duration::from_secs(3), |x| x.reason.starts_with("port scan?"))
        .unwrap_or_else(|| panic!("no scan alert; alerts:\n{}", describe(&a.alerts())));
    assert_eq!((scan.kind.as_str(), scan.dst.port, scan.count), ("unexpected", 0, 1), "{scan:?}");
    settle();
    let alerts = a.alerts();
    assert_eq!(
        alerts.len(),
        threshold + 1,
        "{threshold} alerts, then one scan alert:\n{}",
        describe(&alerts)
    );
    let m = scrape(c.ns("rppam1"), metrics);
    assert_eq!(sample(&m, r#"monitor_alerts_total{kind="unexpected"}"#), (threshold + 1) as f64);
    let out = a.stop();
    out.assert_success();
    let alerts = out.alerts();
    let follow: Vec<_> = alerts[threshold + 1..].iter().collect();
    assert_eq!(follow.len(), 1, "the flush at exit reports the folded flows once:\n{}", describe(&alerts));
    assert!(
        follow[0].reason.starts_with(&format!("port scan? {} opened", c.ip("admin01"))),
        "{}",
        follow[0].reason
    );
    assert!(
        follow[0].reason.contains(":20032 tcp"),
        "the follow-up names the first folded flow: {}",
        follow[0].reason
    );
    assert_eq!(
        alerts.iter().map(|x| x.count).sum::<u64>(),
        200,
        "the counts add up to the 200 probes:\n{}",
        describe(&alerts)
    );
}

#[test]
fn sighup_reloads_the_matrix_and_a_broken_one_keeps_the_old() {
    let c = Cluster::new(&["rppam1", "ws01"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let original = std::fs::read_to_string(rp_pam("matrix.yaml")).expect("read the example matrix");
    let matrix = dir.path().join("matrix.yaml");
    std::fs::write(&matrix, &original).expect("write the matrix copy");
    // The matrix reads Entra ID prefixes from a file next to it.
    std::fs::copy(rp_pam("azure-service-tags.json"), dir.path().join("azure-service-tags.json"))
        .expect("copy azure-service-tags.json");
    let metrics = "127.0.0.1:9471";
    let a = agent(&c, "rppam1", dir.path(), matrix.to_str().expect("UTF-8"), true, &["--metrics", metrics]);
    let ws = c.ns("ws01");
    let connect = |port: u16| {
        let s = traffic::TcpEchoServer::start(c.ns("rppam1"), c.addr("rppam1", port), 1);
        traffic::tcp_echo_client(ws, s.addr, 1, 50);
        s.join();
    };

    connect(7101);
    connect(9100);
    let (_, x) =
        a.wait_alert(0, Duration::from_secs(2), |x| x.dst.port == 9100).expect("9100 is off the matrix");
    assert_eq!(x.kind, "unexpected");

    // Document 9100 for users, reload.
    let rule = "  - id: agent-9100\n    from: users\n    to: rppam\n    port: 9100\n    purpose: test agent\n\nexposure:";
    let edited = original.replacen("\nexposure:", &format!("\n{rule}"), 1);
    assert_ne!(edited, original);
    std::fs::write(&matrix, &edited).expect("write the edited matrix");
    a.signal(libc::SIGHUP);
    assert!(
        a.wait_stderr("reloaded the matrix", Duration::from_secs(5)),
        "no reload logged:\n{}",
        a.stderr()
    );
    connect(9100);
    let deadline = Instant::now() + Duration::from_secs(3);
    while a.report(c.ns("rppam1")).rules.iter().find(|r| r.id == "agent-9100").is_none_or(|r| r.flows < 1) {
        assert!(Instant::now() < deadline, "the reloaded rule agent-9100 never counted the new flow");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A broken matrix: the reload fails, says why, and the edited one stays.
    std::fs::write(&matrix, format!("{edited}\n  - id: [broken\n")).expect("write a broken matrix");
    a.signal(libc::SIGHUP);
    assert!(
        a.wait_stderr("reload failed", Duration::from_secs(5)),
        "no failed reload logged:\n{}",
        a.stderr()
    );
    let err = a.stderr();
    assert!(err.contains(matrix.to_str().unwrap()), "the reload error names the file:\n{err}");
    connect(9100);
    connect(9200);
    let (_, y) = a.wait_alert(1, Duration::from_secs(2), |_| true).expect("9200 is still off the matrix");
    assert_eq!((y.kind.as_str(), y.dst.port), ("unexpected", 9200), "{y:?}");
    settle();
    let cov = a.report(c.ns("rppam1"));
    assert_eq!(cov.rule("agent-9100").flows, 2, "both flows after the reload conform");
    assert_eq!(cov.rule("web-portal/users").flows, 1, "coverage from before the reloads survives");
    assert!(cov.rule("web-portal/users").packets > 0);
    let m = scrape(c.ns("rppam1"), metrics);
    assert_eq!(sample(&m, r#"monitor_reloads_total{result="ok"}"#), 1.0);
    assert_eq!(sample(&m, r#"monitor_reloads_total{result="error"}"#), 1.0);
    assert_eq!(sample(&m, r#"monitor_alerts_total{kind="unexpected"}"#), 2.0);
    let out = a.stop();
    out.assert_success();
    let alerts = out.alerts();
    let ports: Vec<u16> = alerts.iter().map(|x| x.dst.port).collect();
    assert_eq!(ports, vec![9100, 9200], "{}", describe(&alerts));
}

#[test]
fn sighup_with_an_inventory_past_the_host_limit_fails_at_once_and_keeps_the_old_matrix() {
    let c = Cluster::new(&["rppam1", "ws01"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let original = std::fs::read_to_string(rp_pam("inventory.ini")).expect("read the example inventory");
    let inventory = dir.path().join("inventory.ini");
    std::fs::write(&inventory, &original).expect("write the inventory copy");
    let socket = dir.path().join("rppam1.sock").display().to_string();
    let (matrix, inv) = (rp_pam("matrix.yaml"), inventory.display().to_string());
    let metrics = "127.0.0.1:9472";
    #[rustfmt::skip]
    let a = Agent::start(c.ns("rppam1"), IF, &[
        "--matrix", &matrix, "--inventory", &inv, "--profile", "ha", "--iface", IF, "--socket", &socket,
        "--syn-timeout", "1", "--format", "json", "--metrics", metrics,
    ]);
    let connect = |port: u16| {
        let s = traffic::TcpEchoServer::start(c.ns("rppam1"), c.addr("rppam1", port), 1);
        traffic::tcp_echo_client(c.ns("ws01"), s.addr, 1, 50);
        s.join();
    };
    connect(7101);

    // A 50-byte line that stands for ten million hosts (17.8 GB when it was
    // expanded): the reload is refused before anything is expanded.
    // It also drops ws01, so that a reload that took any of it would show.
    let without_ws01: String =
        original.lines().filter(|l| !l.starts_with("ws01 ")).map(|l| format!("{l}\n")).collect();
    assert_ne!(without_ws01, original, "the example inventory lists ws01");
    let huge = format!("{without_ws01}\n[user_workstations]\nws[0:9999999] ansible_host=10.200.2.99\n");
    let line = huge.lines().position(|l| l.starts_with("ws[0:")).expect("the range line") + 1;
    std::fs::write(&inventory, &huge).expect("write the huge inventory");
    a.signal(libc::SIGHUP);
    assert!(
        a.wait_stderr("reload failed", Duration::from_secs(5)),
        "no failed reload logged:\n{}",
        a.stderr()
    );
    let want = format!("{inv}:{line}: host range \"ws[0:9999999]\" stands for 10,000,000 hosts");
    assert!(
        a.stderr().contains(&want),
        "the error names the file, the line and the range ({want}):\n{}",
        a.stderr()
    );

    // The old matrix and inventory still judge: the portal conforms, 9300 does not.
    connect(7101);
    connect(9300);
    let (_, x) =
        a.wait_alert(0, Duration::from_secs(3), |x| x.dst.port == 9300).expect("9300 is off the matrix");
    assert_eq!((x.kind.as_str(), x.src.host.as_deref()), ("unexpected", Some("ws01")), "{x:?}");
    settle();
    assert_eq!(a.report(c.ns("rppam1")).rule("web-portal/users").flows, 2);
    let m = scrape(c.ns("rppam1"), metrics);
    assert_eq!(sample(&m, r#"monitor_reloads_total{result="error"}"#), 1.0);
    assert_eq!(sample(&m, r#"monitor_reloads_total{result="ok"}"#), 0.0);
    let out = a.stop();
    out.assert_success();
    let ports: Vec<u16> = out.alerts().iter().map(|x| x.dst.port).collect();
    assert_eq!(ports, vec![9300], "{}", describe(&out.alerts()));
}

#[test]
fn ocsf_output_holds_events_only_and_the_coverage_report_goes_to_stderr() {
    let c = Cluster::new(&["rppam1", "ws01"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("rppam1.sock").display().to_string();
    let (matrix, inventory) = (rp_pam("matrix.yaml"), rp_pam("inventory.ini"));
    #[rustfmt::skip]
    let a = Agent::start(c.ns("rppam1"), IF, &[
        "--matrix", &matrix, "--inventory", &inventory, "--profile", "ha", "--iface", IF, "--socket", &socket,
        "--format", "ocsf",
    ]);
    let s = traffic::TcpEchoServer::start(c.ns("rppam1"), c.addr("rppam1", 9100), 1);
    traffic::tcp_echo_client(c.ns("ws01"), s.addr, 1, 50);
    s.join();
    settle();
    let out = a.stop();
    out.assert_success();
    let events: Vec<Value> = out
        .lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not an OCSF event ({e}): {l}")))
        .collect();
    assert!(!events.is_empty(), "no event:\n{}", out.stderr);
    for e in &events {
        assert_eq!((e["class_uid"].as_u64(), e["category_uid"].as_u64()), (Some(4001), Some(4)), "{e}");
    }
    let e = events.iter().find(|e| e["dst_endpoint"]["port"] == 9100).expect("the 9100 finding");
    assert_eq!(e["src_endpoint"]["hostname"], "ws01", "{e}");
    assert_eq!(e["unmapped"]["kind"], "unexpected", "{e}");
    assert!(
        out.stderr.contains("web-portal") && out.stderr.contains("never seen"),
        "the coverage report is on stderr:\n{}",
        out.stderr
    );
}

#[test]
fn a_rule_removed_by_a_reload_leaves_the_metrics() {
    let c = Cluster::new(&["rppam1", "ws01"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let original = std::fs::read_to_string(rp_pam("matrix.yaml")).expect("read the example matrix");
    let rule = "  - id: agent-9100\n    from: users\n    to: rppam\n    port: 9100\n    purpose: test agent\n\nexposure:";
    let with_rule = original.replacen("\nexposure:", &format!("\n{rule}"), 1);
    let matrix = dir.path().join("matrix.yaml");
    std::fs::write(&matrix, &with_rule).expect("write the matrix copy");
    std::fs::copy(rp_pam("azure-service-tags.json"), dir.path().join("azure-service-tags.json"))
        .expect("copy azure-service-tags.json");
    let metrics = "127.0.0.1:9473";
    let a = agent(&c, "rppam1", dir.path(), matrix.to_str().expect("UTF-8"), true, &["--metrics", metrics]);
    for port in [9100, 7101] {
        let s = traffic::TcpEchoServer::start(c.ns("rppam1"), c.addr("rppam1", port), 1);
        traffic::tcp_echo_client(c.ns("ws01"), s.addr, 1, 50);
        s.join();
    }
    let series = r#"monitor_rule_flows_total{rule="agent-9100"}"#;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !scrape(c.ns("rppam1"), metrics).contains(&format!("{series} 1")) {
        assert!(
            Instant::now() < deadline,
            "agent-9100 never counted its flow:\n{}",
            scrape(c.ns("rppam1"), metrics)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The rule removed: after the reload and the next publish, no series names it.
    std::fs::write(&matrix, &original).expect("write the original matrix");
    a.signal(libc::SIGHUP);
    assert!(a.wait_stderr("reloaded the matrix", Duration::from_secs(5)), "no reload:\n{}", a.stderr());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = scrape(c.ns("rppam1"), metrics);
        if !m.contains("agent-9100") {
            assert_eq!(sample(&m, r#"monitor_reloads_total{result="ok"}"#), 1.0);
            assert!(
                m.contains(r#"monitor_rule_flows_total{rule="web-portal/users"}"#),
                "rules in force stay:\n{m}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the removed rule is still in /metrics after the reload:\n{m}");
        std::thread::sleep(Duration::from_millis(200));
    }
    a.stop().assert_success();
}
