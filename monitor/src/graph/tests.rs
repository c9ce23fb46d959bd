use std::path::Path;

use monitor_common::{proto, tcp_flag};

use super::*;
use crate::{
    engine::Engine,
    fleet::report::{At, BlockedPath, Evidence, Missing, Report, RuleReport, Undocumented},
    flow::Flow,
    matrix::Selection,
    replay::judge::Judged,
    verdict::{
        assess,
        tests::{entry, to_flow, APP, CLIENT, LOGS, RST, SYN, SYN_ACK},
    },
};

const MATRIX: &str = r#"
version: 1
zones:
  clients: {cidrs: ["10.0.2.0/24"]}
services:
  app: {cidr: 10.0.1.10/32}
  logs: {cidr: 10.0.1.20/32}
  db: {cidr: 10.0.1.30/32}
rules:
  - {id: web, from: clients, to: app, port: 443}
  - {id: sql, from: clients, to: db, ports: [5432, 5433]}
  - {id: syslog, from: app, to: logs, port: 514, proto: udp}
exposure:
  - {id: db-admin-local, to: db, port: 9999, only_from: [db]}
"#;
const DB: &str = "10.0.1.30";

fn matrix() -> Matrix {
    Matrix::from_str(MATRIX, "graph.yaml", Path::new(".")).expect("test matrix").0
}

/// The graph of these flows (client 10.0.2.7), judged as a capture judges them.
fn graph_of(flows: &[(&str, u16, (u32, u32), u64)]) -> Graph {
    let m = matrix();
    let e = Engine::new(&m, None, &Selection::default()).expect("engine");
    let mut obs = Observations::default();
    for &(server, port, flags, replies) in flows {
        let f: Flow = to_flow(entry(proto::TCP, CLIENT, server, port, flags, replies, 10));
        let (v, o) = assess(&e, &f);
        obs.judged(&Judged { flow: &f, verdict: &v, outcome: &o, engine: &e });
    }
    Graph::build(&m, e.rules(), &obs)
}

fn edge<'a>(g: &'a Graph, from: &str, to: &str, kind: EdgeKind) -> &'a Edge {
    g.edges
        .iter()
        .find(|e| e.from == from && e.to == to && e.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} edge {from} -> {to}: {:#?}", g.edges))
}

const OK: (u32, u32) = (SYN | tcp_flag::ACK, SYN_ACK);

#[test]
fn used_unused_blocked_and_undocumented_flows_become_their_edges() {
    let g = graph_of(&[
        (APP, 443, OK, 1),
        (APP, 443, OK, 1),
        (DB, 5432, (SYN, RST), 1),
        (DB, 5433, (SYN, 0), 0),
        (DB, 5432, OK, 1),
        (LOGS, 22, OK, 1),
        (LOGS, 22, OK, 1),
        (APP, 8080, OK, 1),
    ]);
    let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["zone:clients", "service:app", "service:db", "service:logs"]);
    let kinds: Vec<(EdgeKind, Option<&str>)> = g.edges.iter().map(|e| (e.kind, e.rule.as_deref())).collect();
    assert_eq!(
        kinds,
        [
            (EdgeKind::Used, Some("web")),
            (EdgeKind::Blocked, Some("sql")),
            (EdgeKind::Unused, Some("syslog")),
            (EdgeKind::Undocumented, None),
            (EdgeKind::Undocumented, None),
        ]
    );
    let web = edge(&g, "zone:clients", "service:app", EdgeKind::Used);
    assert_eq!((web.flows, web.label.clone()), (2, vec!["web".to_string(), "tcp/443: 2 flows".into()]));
    let sql = edge(&g, "zone:clients", "service:db", EdgeKind::Blocked);
    assert_eq!(sql.label, ["sql", "tcp/5432-5433: 3 flows, 2 blocked", "refused 1, unanswered 1"]);
    let syslog = edge(&g, "service:app", "service:logs", EdgeKind::Unused);
    assert_eq!(
        (syslog.flows, syslog.label.clone()),
        (0, vec!["syslog".to_string(), "udp/514: no flow".into()])
    );
    // Without an inventory the finding names the server by its service.
    let und = edge(&g, "zone:clients", "service:logs", EdgeKind::Undocumented);
    assert_eq!(
        (und.flows, und.label.clone()),
        (2, vec!["undocumented: 2 flows".to_string(), "tcp/22: 2 flows".into()])
    );
    let und = edge(&g, "zone:clients", "service:app", EdgeKind::Undocumented);
    assert_eq!(und.label, ["undocumented: 1 flow", "tcp/8080: 1 flow"]);
    assert!(g.notes.is_empty(), "{:?}", g.notes);
}

#[test]
fn an_exposed_port_that_answers_is_an_edge_and_one_that_does_not_is_a_note() {
    let g = graph_of(&[(DB, 9999, OK, 1), (DB, 9999, (SYN, 0), 0)]);
    let x = edge(&g, "zone:clients", "service:db", EdgeKind::Exposed);
    assert_eq!(x.label, ["exposed (db-admin-local): 1 flow", "tcp/9999: 1 flow"]);
    assert_eq!(g.count(EdgeKind::Unused), 3, "no rule documents port 9999: {:#?}", g.edges);
    assert_eq!(g.notes.len(), 1, "{:?}", g.notes);
    assert!(g.notes[0].starts_with("1 flow to exposed ports went unanswered"), "{:?}", g.notes);
}

#[test]
fn many_undocumented_ports_are_summed_past_the_first_ones() {
    let flows: Vec<(&str, u16, (u32, u32), u64)> =
        (0..PORTS_SHOWN as u16 + 3).map(|i| (LOGS, 2000 + i, OK, 1)).collect();
    let g = graph_of(&flows);
    let und = edge(&g, "zone:clients", "service:logs", EdgeKind::Undocumented);
    assert_eq!(und.label.len(), 1 + PORTS_SHOWN + 1, "{:?}", und.label);
    assert_eq!(und.label.last().map(String::as_str), Some("+3 more ports: 3 flows"));
    assert_eq!(und.flows, PORTS_SHOWN as u64 + 3);
}

#[test]
fn rule_coverage_and_findings_alone_fill_the_graph() {
    // What an agent can give: per rule flows and blocked, and findings.
    let m = matrix();
    let e = Engine::new(&m, None, &Selection::default()).expect("engine");
    let mut obs = Observations::default();
    obs.rule("web").flows = 5;
    *obs.rule("sql") = RuleUse { flows: 4, blocked: 4, failures: BTreeMap::new() };
    let f = to_flow(entry(proto::TCP, CLIENT, DB, 5432, (SYN, RST), 1, 10));
    let (_, o) = assess(&e, &f);
    let Outcome::Finding(mut alert) = o else { panic!("a blocked finding") };
    alert.count = 4;
    obs.finding(&alert);
    obs.rule("gone").flows = 7;
    let g = Graph::build(&m, e.rules(), &obs);
    let sql = edge(&g, "zone:clients", "service:db", EdgeKind::Blocked);
    assert_eq!(sql.label, ["sql", "tcp/5432-5433: 4 flows, 4 blocked", "refused 4"]);
    assert_eq!(edge(&g, "zone:clients", "service:app", EdgeKind::Used).flows, 5);
    assert_eq!(
        g.notes,
        ["1 rule(s) with flows are not active rules of this matrix and selection (not drawn): gone (7 flows)"]
    );
}

#[test]
fn the_fleet_report_fills_rules_failures_and_group_pairs() {
    let m = matrix();
    let e = Engine::new(&m, None, &Selection::default()).expect("engine");
    let ev = |node: &str, side: &str, outcome: &str, n: u64, sender: Option<&str>| Evidence {
        node: node.into(),
        side: side.into(),
        outcome: outcome.into(),
        attempts: n,
        sender: sender.map(String::from),
        origin: sender.map(|_| "network".into()),
    };
    let rule =
        |id: &str, flows: &[(&str, u64)], blocked: &[(&str, u64)], paths: Vec<BlockedPath>| RuleReport {
            rule: id.into(),
            used: !flows.is_empty(),
            flows: flows.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
            blocked: blocked.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
            blocked_paths: paths,
        };
    let path = |at: At, evidence: Vec<Evidence>| BlockedPath {
        client: "ws1".into(),
        server: "db1".into(),
        at,
        evidence,
        server_agent: None,
    };
    let report = Report {
        version: 1,
        prometheus: "http://p".into(),
        job: "monitor".into(),
        time: "T".into(),
        window: "24h".into(),
        window_seconds: 86400.0,
        agents: vec![],
        rules: vec![
            rule("web", &[("app1", 3), ("ws1", 3)], &[], vec![]),
            rule(
                "sql",
                &[("ws1", 5)],
                &[("ws1", 5)],
                vec![
                    // Both ends counted the same refusals: counted once.
                    path(
                        At::Server,
                        vec![
                            ev("db1", "server", "refused", 3, None),
                            ev("ws1", "client", "refused", 3, None),
                        ],
                    ),
                    path(At::Network, vec![ev("ws1", "client", "icmp_rejected", 2, Some("router1"))]),
                ],
            ),
            rule("syslog", &[], &[], vec![]),
        ],
        undocumented: vec![Undocumented {
            source_group: "clients".into(),
            target_group: "databases".into(),
            flows: [("ws1".to_string(), 2), ("db1".to_string(), 2)].into_iter().collect(),
        }],
        missing: Missing { targets_down: vec![], targets_without_agent_info: vec![], inventory: None },
        warnings: vec![],
    };
    let g = Graph::build(&m, e.rules(), &fleet::observations(&report, &m));
    assert_eq!(edge(&g, "zone:clients", "service:app", EdgeKind::Used).label[1], "tcp/443: 6 flows");
    assert_eq!(
        edge(&g, "zone:clients", "service:db", EdgeKind::Blocked).label,
        [
            "sql",
            "tcp/5432-5433: 5 flows, 5 blocked",
            "icmp-rejected by router1 in the network 2, refused at the server 3"
        ]
    );
    edge(&g, "service:app", "service:logs", EdgeKind::Unused);
    // `clients` is a zone of the matrix, `databases` an inventory group.
    let und = edge(&g, "zone:clients", "group:databases", EdgeKind::Undocumented);
    assert_eq!(und.label, ["undocumented: 4 flows"]);
}

#[test]
fn an_agents_state_fills_the_rules_and_the_findings() {
    use crate::live::state::{Finding, Host, State, Status, Verdict};
    let at = std::time::SystemTime::UNIX_EPOCH;
    let host = |ip: &str, name: Option<&str>| Host { ip: ip.parse().unwrap(), host: name.map(String::from) };
    let finding = |kind, rule: Option<&str>, port, reason: &str, count| Finding {
        kind,
        proto: "tcp".into(),
        client: host("10.200.1.11", Some("rppam1")),
        server: host("10.200.9.9", None),
        port,
        reason: reason.into(),
        rule: rule.map(String::from),
        closest: vec![],
        provenance: None,
        count,
        state: "refused".into(),
        packets: 1,
        bytes: 60,
        initiator_seen: true,
        first_seen: at,
        last_seen: at,
    };
    let state = State {
        record: "state".into(),
        status: Status::default(),
        coverage: vec![],
        findings: vec![
            finding(Verdict::Blocked, Some("sql"), 5432, "refused: the server refused", 2),
            finding(Verdict::Blocked, Some("web"), 443, "icmp admin-prohibited: rejected", 1),
            finding(Verdict::Unexpected, None, 8080, "nobody documented it", 3),
        ],
        findings_dropped: 0,
        flows: vec![],
        groups: vec![],
        groups_dropped: 0,
    };
    let mut state = state;
    let line = |id: &str, flows, blocked| crate::live::coverage::RuleLine {
        id: id.into(),
        source: String::new(),
        target: String::new(),
        proto: "tcp".into(),
        ports: String::new(),
        purpose: String::new(),
        provenance: String::new(),
        usage: crate::live::coverage::RuleUse { flows, blocked, ..Default::default() },
    };
    state.coverage = vec![line("web", 4, 1), line("sql", 2, 2), line("syslog", 0, 0)];
    let obs = super::agent::observations(&state);
    assert_eq!(obs.rule_use("sql").unwrap().failures.get("refused"), Some(&2));
    assert_eq!(obs.rule_use("web").unwrap().failures.get("icmp-rejected (admin-prohibited)"), Some(&1));
    let m = matrix();
    let e = Engine::new(&m, None, &Selection::default()).expect("engine");
    let g = Graph::build(&m, e.rules(), &obs);
    assert_eq!(
        edge(&g, "zone:clients", "service:db", EdgeKind::Blocked).label,
        ["sql", "tcp/5432-5433: 2 flows, 2 blocked", "refused 2"]
    );
    assert_eq!(g.count(EdgeKind::Unused), 1, "{:#?}", g.edges);
    let u = edge(&g, "host:rppam1", "address:10.200.9.9", EdgeKind::Undocumented);
    assert_eq!(u.label, ["undocumented: 3 flows", "tcp/8080: 3 flows"]);
}
