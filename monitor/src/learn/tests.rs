use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use super::{
    cover::{cidrs, Name, Places},
    merge::{merge, Additions, MergeError},
    ports, propose, render, Observed, Options, Unused,
};
use crate::{
    engine::{Engine, FlowQuery, VerdictKind},
    flow::{Endpoint, Flow, FlowState, Proto},
    inventory::Inventory,
    matrix::{Matrix, MatrixError, ProtoSpec, Selection},
};

type Ranges = Vec<(u16, u16)>;
/// A rule's sources, target and ports.
type Shape = (Vec<String>, String, Ranges);

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam")
}

fn ha() -> Selection {
    Selection { profiles: vec!["ha".into()], ..Selection::default() }
}

struct World {
    matrix: Matrix,
    inventory: Inventory,
    engine: Engine,
}

impl World {
    fn new(text: &str) -> World {
        let (matrix, _) = Matrix::from_str(text, "m.yaml", &example_dir()).expect("the matrix loads");
        let (inventory, _) =
            Inventory::load(&example_dir().join("inventory.ini")).expect("the inventory loads");
        let engine = Engine::new(&matrix, Some(&inventory), &ha()).expect("compiles");
        World { matrix, inventory, engine }
    }

    fn example() -> World {
        World::new(&example_text())
    }

    fn places(&self) -> Places<'_> {
        Places::new(&self.matrix, Some(&self.inventory), &ha(), &self.engine).expect("places")
    }

    fn ip(&self, host: &str) -> IpAddr {
        self.inventory.hosts[host].addresses[0]
    }
}

fn example_text() -> String {
    std::fs::read_to_string(example_dir().join("matrix.yaml")).unwrap()
}

fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn obs(client: IpAddr, server: IpAddr, port: u16, proto: Proto, t: u64) -> Observed {
    Observed { client, server, port, proto, flows: 1, first_seen: at(t), last_seen: at(t + 1) }
}

fn names(w: &World, hosts: &[&str]) -> Vec<Name> {
    let addrs: BTreeSet<IpAddr> = hosts.iter().map(|h| w.ip(h)).collect();
    w.places().cover(&addrs).into_iter().map(|p| p.name).collect()
}

#[test]
fn the_smallest_service_or_group_that_holds_every_address_names_them() {
    let w = World::example();
    let service = |s: &str| vec![Name::Service(s.into())];
    // The three nodes: the service on rppam_nodes (3 hosts), not the group
    // `rppam` (6) nor the three hosts; the service wins the tie with its group.
    assert_eq!(names(&w, &["rppam1", "rppam2", "rppam3"]), service("rppam"));
    assert_eq!(names(&w, &["rppam2"]), service("rppam"));
    assert_eq!(names(&w, &["db1"]), service("database"));
    // No service holds ws01: its one-host group does, smaller than its zone.
    assert_eq!(names(&w, &["ws01"]), vec![Name::Group("user_workstations".into())]);
    // A node and the database: no service, but the parent group `rppam`.
    assert_eq!(names(&w, &["rppam1", "db1"]), vec![Name::Group("rppam".into())]);
    // `all` never names anything: ws01 and admin01 split by zone instead.
    assert_eq!(
        names(&w, &["ws01", "admin01"]),
        vec![Name::Group("admin_workstations".into()), Name::Group("user_workstations".into())]
    );
}

#[test]
fn a_zone_names_addresses_that_no_group_holds_and_a_cidr_comes_last() {
    let w = World::example();
    let p = w.places();
    let cover = |a: &[&str]| p.cover(&ips(a)).into_iter().map(|p| p.name).collect::<Vec<_>>();
    assert_eq!(cover(&["10.200.2.98", "10.200.2.99"]), vec![Name::Zone("users".into())]);
    // Two zones: one part each, so the rule gets two sources.
    assert_eq!(
        cover(&["10.200.2.99", "10.200.2.57"]),
        vec![Name::Zone("admins".into()), Name::Zone("users".into())]
    );
    // A known host and an unknown address of the same zone: the zone.
    assert_eq!(cover(&["10.200.1.11", "10.200.1.99"]), vec![Name::Zone("cluster".into())]);
    // Outside every zone and service: a CIDR, the narrowest that holds them.
    let net = |s: &str| vec![Name::Cidrs(vec![s.parse().unwrap()])];
    assert_eq!(cover(&["198.51.100.7"]), net("198.51.100.7/32"));
    assert_eq!(cover(&["198.51.100.7", "198.51.100.9"]), net("198.51.100.0/28"));
    // Too far apart for one prefix of /24 or longer: one host prefix each.
    assert_eq!(
        cidrs(&ips(&["198.51.100.7", "203.0.113.5", "2001:db8::1"])),
        ["198.51.100.7/32", "203.0.113.5/32", "2001:db8::1/128"].map(|s| s.parse().unwrap()).to_vec()
    );
    // A CIDR part and a zone part together.
    assert_eq!(
        cover(&["198.51.100.7", "10.200.2.99"]),
        vec![Name::Cidrs(vec!["198.51.100.7/32".parse().unwrap()]), Name::Zone("users".into())]
    );
}

#[test]
fn contiguous_ports_fold_into_ranges_and_gaps_stay() {
    let set = |p: &[u16]| p.iter().copied().collect::<BTreeSet<u16>>();
    assert_eq!(ports::fold(&set(&[7003, 7001, 7002, 7005])), vec![(7001, 7003), (7005, 7005)]);
    assert_eq!(ports::fold(&set(&[65534, 65535])), vec![(65534, 65535)]);
    assert_eq!(ports::fold(&set(&[22])), vec![(22, 22)]);
    assert_eq!(ports::yaml(&[(7001, 7003), (7005, 7005)]), "[\"7001-7003\", 7005]");
    assert_eq!(ports::yaml(&[(5432, 5432)]), "5432");

    let w = World::example();
    let (r1, r2) = (w.ip("rppam1"), w.ip("rppam2"));
    let observed: Vec<Observed> =
        [9001, 9002, 9003, 9005].iter().map(|&p| obs(r1, r2, p, Proto::Tcp, u64::from(p))).collect();
    let l = propose(&observed, &w.places(), &w.matrix, Options::default());
    assert_eq!(l.rules.len(), 1, "{l:#?}");
    let r = &l.rules[0];
    assert_eq!((r.from.clone(), r.to.as_str()), (vec!["rppam".to_string()], "rppam"));
    assert_eq!(r.ports, vec![(9001, 9003), (9005, 9005)]);
    assert_eq!(r.id, "learnt-rppam-9001-9003_9005");
    assert_eq!((r.evidence.flows, r.evidence.first_seen, r.evidence.last_seen), (4, at(9001), at(9006)));
}

#[test]
fn the_servers_port_is_proposed_never_the_ephemeral_one() {
    let w = World::example();
    let client = Endpoint { ip: w.ip("rppam1"), port: 51234 };
    let server = Endpoint { ip: w.ip("db1"), port: 9187 };
    let flow = Flow::attempt(Proto::Tcp, client, server, FlowState::Closed);
    let o = Observed::from_flow(&flow).expect("a closed connection is an observation");
    assert_eq!((o.client, o.server, o.port), (client.ip, server.ip, 9187));
    let l = propose(&[o], &w.places(), &w.matrix, Options::default());
    let proposed: Vec<(u16, u16)> = l.rules.iter().flat_map(|r| r.ports.clone()).collect();
    assert_eq!(proposed, vec![(9187, 9187)]);

    // Started before the capture, the ends guessed by port number: the
    // "server" port may be the client's ephemeral one, so it is left out.
    let mut guessed = flow.clone();
    guessed.initiator_seen = false;
    guessed.initiator_how = "port-heuristic";
    assert_eq!(Observed::from_flow(&guessed), Err(Unused::Guessed));
    // A listening socket told the live monitor which end serves: kept.
    guessed.initiator_how = "listening-port";
    assert!(Observed::from_flow(&guessed).is_ok());
    // Attempts that failed document nothing.
    for state in [FlowState::Refused, FlowState::Unanswered, FlowState::IcmpUnreachable, FlowState::Awaiting]
    {
        let f = Flow::attempt(Proto::Tcp, client, server, state);
        assert_eq!(Observed::from_flow(&f), Err(Unused::Failed), "{state:?}");
    }
    // An unanswered datagram is normal for UDP (syslog).
    let udp = Flow::attempt(Proto::Udp, client, Endpoint { ip: server.ip, port: 514 }, FlowState::Unanswered);
    assert_eq!(Observed::from_flow(&udp).map(|o| o.port), Ok(514));
}

#[test]
fn the_window_leaves_out_older_flows_and_counts_them() {
    let w = World::example();
    let (r1, db) = (w.ip("rppam1"), w.ip("db1"));
    let observed = [obs(r1, db, 9100, Proto::Tcp, 0), obs(r1, db, 9200, Proto::Tcp, 7200)];
    let options = Options { window: Some(Duration::from_secs(3600)), end: Some(at(7300)) };
    let l = propose(&observed, &w.places(), &w.matrix, options);
    assert_eq!(l.rules.iter().map(|r| r.ports.clone()).collect::<Vec<_>>(), vec![vec![(9200, 9200)]]);
    assert_eq!((l.flows, l.outside_window), (1, 1));
    assert_eq!(l.start, Some(at(3700)));
    assert_eq!(render::window_text(options.window), "1h");
    assert_eq!(render::window_text(None), "whole capture");
}

#[test]
fn tcp_and_udp_alike_become_one_rule_and_icmp_has_no_port() {
    let w = World::example();
    let (r1, r2, db) = (w.ip("rppam1"), w.ip("rppam2"), w.ip("db1"));
    let observed = [
        obs(r1, db, 8125, Proto::Tcp, 0),
        obs(r2, db, 8125, Proto::Udp, 1),
        obs(r1, db, 0, Proto::Icmp, 2),
        obs(r1, db, 0, Proto::Icmpv6, 3),
    ];
    let l = propose(&observed, &w.places(), &w.matrix, Options::default());
    let got: Vec<(&str, Ranges, ProtoSpec, u64)> =
        l.rules.iter().map(|r| (r.id.as_str(), r.ports.clone(), r.proto, r.evidence.flows)).collect();
    assert_eq!(
        got,
        vec![
            ("learnt-database-icmp", vec![], ProtoSpec::Icmp, 2),
            ("learnt-database-8125-both", vec![(8125, 8125)], ProtoSpec::Both, 2),
        ]
    );
}

/// The example matrix without three rules, cut from its text.
fn without(text: &str, ids: &[&str]) -> String {
    let mut out = text.to_string();
    for id in ids {
        let start = out.find(&format!("  - id: {id}\n")).unwrap_or_else(|| panic!("no rule {id}"));
        let rest = &out[start + 1..];
        let len = [rest.find("\n  - id: "), rest.find("\n\n")].into_iter().flatten().min().unwrap() + 1;
        out.replace_range(start..start + len, "");
    }
    out
}

fn comments(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.trim_start().starts_with('#')).collect()
}

#[test]
fn merged_proposals_keep_the_files_comments_lint_clean_and_document_the_flows() {
    let removed = ["db-postgres", "redis", "heartbeat"];
    let text = without(&example_text(), &removed);
    let w = World::new(&text);
    let ip = |h: &str| w.ip(h);
    let mut observed = Vec::new();
    for (i, node) in ["rppam1", "rppam2", "rppam3"].into_iter().enumerate() {
        let t = i as u64 * 10;
        observed.push(obs(ip(node), ip("db1"), 5432, Proto::Tcp, t));
        observed.push(obs(ip(node), ip("redis1"), 6379, Proto::Tcp, t + 1));
        let next = ["rppam2", "rppam3", "rppam1"][i];
        observed.push(obs(ip(node), ip(next), 5201, Proto::Tcp, t + 2));
    }
    // And a workstation to the database: a group no service names yet.
    observed.push(obs(ip("ws01"), ip("db1"), 5433, Proto::Tcp, 40));
    let places = w.places();
    let l = propose(&observed, &places, &w.matrix, Options::default());

    // Exactly the removed rules, in their own terms, and the workstation's.
    let (orig, _) = Matrix::from_str(&example_text(), "m.yaml", &example_dir()).unwrap();
    let sel = ha();
    let active = orig.activate(&sel).unwrap();
    let mut want: Vec<Shape> = orig
        .expand_rules(&active, false)
        .unwrap()
        .into_iter()
        .filter(|r| removed.contains(&r.rule_id.as_str()))
        .map(|r| (vec![r.source], r.target, r.ports))
        .collect();
    want.push((vec!["user_workstations".into()], "database".into(), vec![(5433, 5433)]));
    want.sort();
    let mut got: Vec<Shape> =
        l.rules.iter().map(|r| (r.from.clone(), r.to.clone(), r.ports.clone())).collect();
    got.sort();
    assert_eq!(got, want);
    assert!(l.rules.iter().all(|r| r.proto == ProtoSpec::Tcp));
    assert_eq!(l.services.len(), 1);
    assert_eq!(l.services[0].name, "user_workstations");

    let window = render::window_text(None);
    let seen_in = vec!["t.pcap".to_string()];
    let rules: Vec<Vec<String>> =
        l.rules.iter().map(|p| render::rule_lines(p, &places, &window, &seen_in)).collect();
    let services: Vec<Vec<String>> = l.services.iter().map(render::service_lines).collect();
    let ids: Vec<String> = l.rules.iter().map(|r| r.id.clone()).collect();
    let header = render::header(&l, &seen_in);
    let add = Additions { header: &header, services: &services, rules: &rules, ids: &ids };
    let (merged, warnings) = merge(&text, "m.yaml", &example_dir(), &add).expect("merges");
    assert!(warnings.is_empty(), "the merged matrix lints clean: {warnings:#?}");
    // Every line of the file is still there, in order, comments included.
    assert_eq!(comments(&merged).len(), comments(&text).len() + header.len());
    let mut rest = merged.as_str();
    for line in text.lines() {
        let at = rest.find(line).unwrap_or_else(|| panic!("line {line:?} lost or moved:\n{merged}"));
        rest = &rest[at + line.len()..];
    }
    // The rules land at the end of `rules:`, before `exposure:`.
    let (rules_at, exposure_at) =
        (merged.find("- id: learnt-").unwrap(), merged.find("\nexposure:").unwrap());
    assert!(rules_at < exposure_at && rules_at > merged.find("- id: ssh-proxy").unwrap());

    // The merged matrix documents every observed flow, with its evidence.
    let (m, _) = Matrix::from_str(&merged, "m.yaml", &example_dir()).unwrap();
    let e = Engine::new(&m, Some(&w.inventory), &sel).unwrap();
    for o in &observed {
        let q = FlowQuery {
            client: o.client,
            server: o.server,
            port: o.port,
            proto: o.proto,
            initiator_seen: true,
        };
        assert_eq!(e.verdict(&q).kind, VerdictKind::Conforming, "{o:?}");
    }
    let db = m.rules.iter().find(|r| r.id == "learnt-database-5432").expect("the database rule");
    let learnt = db.learnt.as_ref().expect("with its provenance");
    assert_eq!(learnt.flows, 3);
    assert_eq!(learnt.clients, ["rppam1", "rppam2", "rppam3"]);
    assert_eq!(learnt.servers, ["db1"]);
    assert_eq!(learnt.window, "whole capture");
    assert_eq!(learnt.seen_in, ["t.pcap"]);
    assert_eq!(learnt.first_seen, humantime::format_rfc3339_seconds(at(0)).to_string());
    assert_eq!(learnt.last_seen, humantime::format_rfc3339_seconds(at(21)).to_string());

    // The patch file is the same YAML, with the unused rules as comments.
    let unused = [crate::replay::UnusedRule {
        id: "grpc-local".into(),
        source: "loopback".into(),
        target: "loopback".into(),
        ports: "7001-7012".into(),
        proto: Proto::Tcp,
        provenance: "m.yaml:150".into(),
    }];
    let patch = render::patch(&l, &places, &unused, &seen_in);
    use saphyr::LoadableYamlNode;
    let docs = saphyr::Yaml::load_from_str(&patch).unwrap_or_else(|e| panic!("{e}\n{patch}"));
    assert_eq!(docs[0]["rules"].as_sequence().map(Vec::len), Some(4), "{patch}");
    assert_eq!(docs[0]["services"]["user_workstations"]["group"].as_str(), Some("user_workstations"));
    for r in &rules {
        assert!(merged.contains(&r.iter().map(|l| format!("  {l}\n")).collect::<String>()), "{patch}");
    }
    assert!(patch.contains("\n#   grpc-local loopback -> loopback 7001-7012/tcp (m.yaml:150)\n"), "{patch}");
}

#[test]
fn a_matrix_with_empty_or_missing_blocks_takes_the_proposals_and_flow_style_is_refused() {
    let rule = vec![vec!["- id: x".to_string(), "  from: a".into(), "  to: a".into(), "  port: 1".into()]];
    let service = vec![vec!["a:".to_string(), "  cidrs: [10.0.0.0/8]".into()]];
    let ids = vec!["x".to_string()];
    let add = Additions { header: &[], services: &service, rules: &rule, ids: &ids };
    for text in
        ["version: 1 # top\nrules: [] # none yet\n", "version: 1\n", "version: 1\nservices: {}\nrules:\n"]
    {
        let (merged, w) =
            merge(text, "m.yaml", Path::new("."), &add).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert!(w.is_empty(), "{merged}\n{w:#?}");
        assert!(merged.starts_with("version: 1"), "{merged}");
        if text.contains("# none yet") {
            assert!(merged.contains("rules: # none yet\n"), "{merged}");
        }
    }
    let text = "version: 1\nservices:\n  a: { cidrs: [10.0.0.0/8] }\nrules: [{ from: a, to: a, port: 2 }]\n";
    let one = Additions { header: &[], services: &[], rules: &rule, ids: &ids };
    match merge(text, "m.yaml", Path::new("."), &one) {
        Err(e @ MergeError::FlowStyle { line: 4, .. }) => {
            assert!(e.to_string().starts_with("m.yaml:4: `rules:`"))
        }
        other => panic!("{other:?}"),
    }
    // CRLF files stay CRLF.
    let text = "version: 1\r\nservices:\r\n  a: { cidrs: [10.0.0.0/8] }\r\nrules:\r\n  - { from: a, to: a, port: 2 }\r\n";
    let (merged, _) = merge(text, "m.yaml", Path::new("."), &one).unwrap();
    assert!(merged.ends_with("  - id: x\r\n    from: a\r\n    to: a\r\n    port: 1\r\n"), "{merged:?}");
}

#[test]
fn learnt_evidence_is_checked_where_it_is_wrong() {
    let head =
        "version: 1\nzones:\n  z: [10.0.0.0/8]\nrules:\n  - from: z\n    to: z\n    port: 1\n    learnt:\n";
    let err = |body: &str| match Matrix::from_str(&format!("{head}{body}"), "m.yaml", Path::new(".")) {
        Err(MatrixError::Invalid(d)) => {
            d.iter().map(|d| format!("{}:{}", d.pos.line, d.message)).collect::<Vec<_>>()
        }
        other => panic!("{body}: {:?}", other.map(|_| ())),
    };
    assert!(err("      flows: many\n")[0].starts_with("9:`flows` of `learnt` is a count"));
    assert!(err("      first_seen: yesterday\n")[0].starts_with("9:`first_seen` must be an RFC 3339 time"));
    assert!(err("      first_seen: 2026-12-03T09:00:00Z\n      last_seen: 2026-12-03T08:00:00Z\n")[0]
        .starts_with("10:`last_seen` is before `first_seen`"));
    assert!(err("      seen: 1\n")[0].contains("unknown key `seen` in `learnt`"));
    let ok = "      flows: 2\n      clients: [a, b]\n      servers: c\n      window: 24h\n";
    let (m, w) = Matrix::from_str(&format!("{head}{ok}"), "m.yaml", Path::new(".")).unwrap();
    assert!(w.is_empty());
    let l = m.rules[0].learnt.as_ref().unwrap();
    assert_eq!(
        (l.flows, l.clients.clone(), l.servers.clone(), l.window.as_str()),
        (2, vec!["a".into(), "b".into()], vec!["c".into()], "24h")
    );
}

#[test]
fn an_agents_unexpected_findings_are_observations_and_the_rest_is_counted() {
    use crate::live::{
        coverage::{RuleLine, RuleUse},
        state::{Finding, Host, State, Status, Verdict},
    };
    let w = World::example();
    let (r1, r2, db) = (w.ip("rppam1"), w.ip("rppam2"), w.ip("db1"));
    let finding = |kind, client: IpAddr, port, proto: &str, state: &str, seen: bool, count| Finding {
        kind,
        proto: proto.into(),
        client: Host { ip: client, host: None },
        server: Host { ip: db, host: None },
        port,
        reason: String::new(),
        rule: None,
        closest: vec![],
        provenance: None,
        count,
        state: state.into(),
        packets: 4,
        bytes: 400,
        initiator_seen: seen,
        first_seen: at(10),
        last_seen: at(20),
    };
    let used = RuleLine {
        id: "db-postgres".into(),
        source: String::new(),
        target: String::new(),
        proto: "tcp".into(),
        ports: "5432".into(),
        purpose: String::new(),
        provenance: String::new(),
        usage: RuleUse { flows: 2, last_seen: Some(at(15)), ..RuleUse::default() },
    };
    let mut state = State {
        record: "state".into(),
        status: Status { flows_seen: 40, ..Status::default() },
        coverage: vec![used],
        findings: vec![
            finding(Verdict::Unexpected, r1, 9187, "tcp", "closed", true, 3),
            finding(Verdict::Unexpected, r2, 9187, "tcp", "established", true, 2),
            finding(Verdict::Unexpected, r1, 9188, "tcp", "refused", true, 5),
            finding(Verdict::Unexpected, r1, 9189, "tcp", "established", false, 7),
            finding(Verdict::Unexpected, r1, 514, "udp", "unanswered", true, 1),
            finding(Verdict::Exposed, r1, 22, "tcp", "established", true, 11),
            finding(Verdict::Blocked, r1, 5432, "tcp", "refused", true, 13),
        ],
        findings_dropped: 6,
        flows: vec![],
        groups: vec![],
        groups_dropped: 0,
    };
    let rules = w.engine.rules();
    let o = super::agent::from_state(&state, rules, at(100)).expect("a state of this build");
    let seen: Vec<(IpAddr, u16, Proto, u64)> =
        o.observed.iter().map(|o| (o.client, o.port, o.proto, o.flows)).collect();
    assert_eq!(seen, [(r1, 9187, Proto::Tcp, 3), (r2, 9187, Proto::Tcp, 2), (r1, 514, Proto::Udp, 1)]);
    assert_eq!((o.left_out.failed, o.left_out.guessed, o.left_out.exposed), (5, 7, 11));
    assert_eq!((o.flows, o.pushed_out, o.end), (40, 6, Some(at(100))));
    assert_eq!(o.last_use.get("db-postgres"), Some(&at(15)));
    // Every active rule but the one used is up for review.
    let unused = o.unused_since(None);
    assert_eq!(unused.len(), rules.len() - 1);
    assert!(!unused.iter().any(|u| u.id == "db-postgres"));
    // The two rppam nodes become their service, the port as seen.
    let l = propose(&o.observed, &w.places(), &w.matrix, Options { window: None, end: o.end });
    let tcp = l.rules.iter().find(|r| r.ports == [(9187, 9187)]).expect("a rule for 9187");
    assert_eq!(tcp.from, ["rppam"], "{l:?}");

    // A value this build does not know is an error that names it.
    state.findings[0].state = "half-open".into();
    assert_eq!(
        super::agent::from_state(&state, rules, at(100)).err(),
        Some(("flow state", "half-open".to_string()))
    );
}
