use std::{net::IpAddr, path::Path};

use super::*;
use crate::{inventory::Inventory, matrix::Matrix};

fn example(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam").join(file)
}

fn sel(profiles: &[&str], vars: &[(&str, &str)]) -> Selection {
    Selection {
        profiles: profiles.iter().map(|s| s.to_string()).collect(),
        vars: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

fn engine(inventory: &str, s: Selection) -> Engine {
    let (m, _) = Matrix::load(&example("matrix.yaml")).expect("example matrix loads");
    let (inv, _) = Inventory::load(&example(inventory)).expect("example inventory loads");
    Engine::new(&m, Some(&inv), &s).expect("engine compiles")
}

fn ha() -> Engine {
    engine("inventory.ini", sel(&["ha"], &[]))
}

fn q(client: &str, server: &str, port: u16) -> FlowQuery {
    FlowQuery {
        client: client.parse().unwrap(),
        server: server.parse().unwrap(),
        port,
        proto: Proto::Tcp,
        initiator_seen: true,
    }
}

/// Verdict kind and the id of its rule (or exposure).
fn judge(e: &Engine, f: FlowQuery) -> (VerdictKind, String) {
    let v = e.verdict(&f);
    let id = match (v.kind, v.rule, v.exposure) {
        (VerdictKind::Exposed, _, Some(x)) => e.exposure(x).id.clone(),
        (_, Some(r), _) => e.rule(r).id.clone(),
        _ => String::new(),
    };
    (v.kind, id)
}

const NODE1: &str = "10.200.1.11";
const NODE2: &str = "10.200.1.12";
const DB: &str = "10.200.1.20";
const WS: &str = "10.200.2.50";
const ADMIN: &str = "10.200.2.60";

#[test]
fn ha_documented_flows_conform() {
    let e = ha();
    use VerdictKind::Conforming as C;
    assert_eq!(judge(&e, q(NODE1, DB, 5432)), (C, "db-postgres".into()));
    assert_eq!(judge(&e, q(NODE2, NODE1, 7005)), (C, "grpc-inter-node".into()));
    assert_eq!(judge(&e, q(NODE2, NODE1, 5201)), (C, "heartbeat".into()));
    assert_eq!(judge(&e, q(NODE1, "10.200.1.21", 6379)), (C, "redis".into()));
    assert_eq!(judge(&e, q("10.200.1.10", NODE2, 7101)), (C, "lb-to-nodes".into()));
    assert_eq!(judge(&e, q(WS, "10.200.1.10", 443)), (C, "web-portal-vip/users".into()));
    assert_eq!(
        judge(&e, q(ADMIN, NODE1, 7101)),
        (C, "web-portal/admins".into()),
        "admins is the more specific zone"
    );
    assert_eq!(judge(&e, q(NODE1, "10.200.3.10", 3389)), (C, "rdp-proxy".into()));
    assert_eq!(judge(&e, q("127.0.0.1", "127.0.0.1", 7012)), (C, "grpc-local".into()));
}

#[test]
fn off_matrix_flows_name_the_closest_rules() {
    let e = ha();
    let f = q(WS, DB, 5432);
    let v = e.verdict(&f);
    assert_eq!(v.kind, VerdictKind::Unexpected);
    let x = e.explain(&f, &v);
    assert_eq!(
        x.reason,
        "port 5432/tcp on database is documented from rppam, not from 10.200.2.50 (host ws01, zone users)"
    );
    assert_eq!(x.closest, vec!["db-postgres"]);
    assert!(x.rules.is_empty());

    // The same port documented only elsewhere.
    let f = q(NODE1, "10.200.3.20", 3389);
    let x = e.explain(&f, &e.verdict(&f));
    assert!(x.reason.starts_with("port 3389/tcp is documented only to windows-targets (from rppam), not to linux-targets (10.200.3.20, zone corp)"), "{}", x.reason);

    // Documented between the same sides, on other ports.
    let e = engine("inventory.ini", sel(&["ha"], &[("db", "mssql")]));
    let f = q(NODE1, DB, 5432);
    let v = e.verdict(&f);
    assert_eq!(v.kind, VerdictKind::Unexpected, "5432 is off-matrix with SQL Server");
    let x = e.explain(&f, &v);
    assert_eq!(
        x.reason,
        "rppam (10.200.1.11, zone cluster) may reach database (10.200.1.20, zone cluster) only on 1433/tcp (rules `db-mssql`), not on port 5432/tcp"
    );
    let f = FlowQuery { initiator_seen: false, ..q("192.0.2.9", DB, 9999) };
    let x = e.explain(&f, &e.verdict(&f));
    assert!(
        x.reason.starts_with(
            "no rule documents port 9999/tcp, nor any flow from 192.0.2.9 (zone internet) to database"
        ),
        "{}",
        x.reason
    );
    assert!(x.reason.contains("start of this flow was not seen"), "{}", x.reason);
}

#[test]
fn grpc_from_outside_is_exposed_single_node_and_ha() {
    let single = engine("inventory-single.ini", sel(&[], &[]));
    let f = q(WS, NODE1, 7001);
    let v = single.verdict(&f);
    assert_eq!(judge(&single, f), (VerdictKind::Exposed, "grpc-localhost-only".into()));
    let x = single.explain(&f, &v);
    assert_eq!(x.exposure.as_deref(), Some("grpc-localhost-only"));
    assert!(
        x.reason.starts_with("port 7001/tcp on rppam (10.200.1.11, zone cluster) may only be reached from loopback (exposure `grpc-localhost-only`"),
        "{}",
        x.reason
    );
    // On one node, even a cluster neighbour must not reach gRPC.
    assert_eq!(judge(&single, q("10.200.1.99", NODE1, 7012)).0, VerdictKind::Exposed);
    assert_eq!(judge(&single, q("127.0.0.1", "127.0.0.1", 7001)).0, VerdictKind::Conforming);
    // Just outside the range: not protected, simply undocumented.
    assert_eq!(judge(&single, q(WS, NODE1, 7013)).0, VerdictKind::Unexpected);

    let e = ha();
    assert_eq!(judge(&e, q(WS, NODE1, 7005)), (VerdictKind::Exposed, "grpc-cluster-only".into()));
    assert_eq!(judge(&e, q(WS, "10.200.1.21", 6379)), (VerdictKind::Exposed, "redis-cluster-only".into()));
    // Inside the cluster VLAN but undocumented: allowed to reach, yet unexpected.
    assert_eq!(judge(&e, q("10.200.1.10", NODE1, 7005)).0, VerdictKind::Unexpected);
}

#[test]
fn exposure_wins_over_a_conforming_rule() {
    let yaml = "version: 1\nzones:\n  lan: [10.0.0.0/8]\nservices:\n  app: { cidr: 10.0.0.1 }\nrules:\n  - { id: open, from: lan, to: app, port: 9000 }\nexposure:\n  - { id: closed, to: app, port: 9000, only_from: [loopback] }\n";
    let (m, w) = Matrix::from_str(yaml, "t.yaml", Path::new(".")).unwrap();
    assert_eq!(w.len(), 1, "the contradiction is linted: {w:#?}");
    let e = Engine::new(&m, None, &Selection::default()).unwrap();
    let f = q("10.0.0.2", "10.0.0.1", 9000);
    let v = e.verdict(&f);
    assert_eq!(v.kind, VerdictKind::Exposed);
    assert_eq!(e.rule(v.rule.unwrap()).id, "open");
    let x = e.explain(&f, &v);
    assert_eq!(x.rules, vec!["open"]);
    assert!(
        x.reason.contains("rule `open` (t.yaml:7) documents this flow, so the matrix contradicts itself"),
        "{}",
        x.reason
    );
}

#[test]
fn grpc_port_base_moves_the_verdicts() {
    let e = engine("inventory.ini", sel(&["ha"], &[("grpcPortBase", "8001")]));
    assert_eq!(judge(&e, q(NODE2, NODE1, 8012)).0, VerdictKind::Conforming);
    assert_eq!(judge(&e, q(NODE2, NODE1, 7001)).0, VerdictKind::Unexpected);
    assert_eq!(judge(&e, q(WS, NODE1, 8001)).0, VerdictKind::Exposed);
    assert_eq!(judge(&e, q(WS, NODE1, 7001)).0, VerdictKind::Unexpected);
}

#[test]
fn fqdn_services_use_bindings_and_prefix_files() {
    let s = sel(&["entra"], &[("bind:lvs.ravenphyre.net", "203.0.113.10")]);
    let e = engine("inventory-single.ini", s);
    assert_eq!(judge(&e, q(NODE1, "203.0.113.10", 443)), (VerdictKind::Conforming, "lvs-checkin".into()));
    assert_eq!(judge(&e, q(NODE1, "20.190.130.5", 443)), (VerdictKind::Conforming, "entra-graph".into()));
    assert_eq!(
        judge(&e, q(NODE1, "2603:1006:2000::7", 443)),
        (VerdictKind::Conforming, "entra-graph".into())
    );
    assert_eq!(judge(&e, q(NODE1, "203.0.113.11", 443)).0, VerdictKind::Unexpected);
    assert!(
        !e.warnings().iter().any(|w| w.message.contains("lvs.ravenphyre.net")),
        "a bound name is not warned about: {:?}",
        e.warnings()
    );

    // Air-gapped: the same check-in is off-matrix.
    let e =
        engine("inventory-single.ini", sel(&["air-gapped"], &[("bind:lvs.ravenphyre.net", "203.0.113.10")]));
    assert_eq!(judge(&e, q(NODE1, "203.0.113.10", 443)).0, VerdictKind::Unexpected);

    // A resolver (later: the DNS cache) feeds wildcard and exact names.
    let mut r = StaticResolver::default();
    r.names.insert("graph.microsoft.com".into(), vec!["198.51.100.7".parse().unwrap()]);
    let (m, _) = Matrix::load(&example("matrix.yaml")).unwrap();
    let e = Engine::with_resolver(&m, None, &sel(&["entra"], &[]), &r).unwrap();
    assert_eq!(
        judge(&e, q("10.200.9.9", "198.51.100.7", 443)).0,
        VerdictKind::Unexpected,
        "no inventory: rppam is nowhere"
    );
    let side = e.side_info("198.51.100.7".parse().unwrap());
    assert_eq!(side.services, vec!["microsoft-graph"]);
    assert_eq!(side.zones, vec!["internet"]);
}

#[test]
fn sides_resolve_to_hosts_services_and_zones() {
    let e = ha();
    let s = e.side_info(NODE1.parse().unwrap());
    assert_eq!(
        (s.hosts, s.services, s.zones),
        (vec!["rppam1".into()], vec!["rppam".into()], vec!["cluster".into()])
    );
    let z = |ip: &str| e.side_info(ip.parse().unwrap()).zones;
    assert_eq!(z("10.200.2.61"), vec!["admins"]);
    assert_eq!(z("10.200.2.1"), vec!["users"]);
    assert_eq!(z("10.200.77.1"), vec!["corp"]);
    assert_eq!(z("8.8.8.8"), vec!["internet"]);
    assert_eq!(z("::1"), vec!["loopback"]);
    assert_eq!(z("2001:db8::1"), vec!["internet"]);
    // IPv4-mapped IPv6 is IPv4.
    let mapped: IpAddr = "::ffff:10.200.1.11".parse().unwrap();
    assert_eq!(e.side_info(mapped).hosts, vec!["rppam1"]);
    assert_eq!(e.verdict(&FlowQuery { client: mapped, ..q(NODE2, DB, 5432) }).kind, VerdictKind::Conforming);
}

#[test]
fn protocols_udp_both_and_icmp() {
    let yaml = "version: 1\nzones:\n  lan: [10.0.0.0/8, fd00::/8]\nservices:\n  dns: { cidr: [10.0.0.53, fd00::53] }\nrules:\n  - { id: dns, from: lan, to: dns, port: 53, proto: both }\n  - { id: ping, from: lan, to: dns, proto: icmp }\n";
    let (m, _) = Matrix::from_str(yaml, "t.yaml", Path::new(".")).unwrap();
    let e = Engine::new(&m, None, &Selection::default()).unwrap();
    let f = |proto, port, server: &str| FlowQuery { proto, port, ..q("10.0.0.9", server, 0) };
    assert_eq!(e.rule(e.verdict(&f(Proto::Udp, 53, "10.0.0.53")).rule.unwrap()).id, "dns/udp");
    assert_eq!(e.rule(e.verdict(&f(Proto::Tcp, 53, "10.0.0.53")).rule.unwrap()).id, "dns/tcp");
    assert_eq!(e.verdict(&f(Proto::Udp, 54, "10.0.0.53")).kind, VerdictKind::Unexpected);
    // ICMP ignores the port field (it carries the echo identifier).
    assert_eq!(e.verdict(&f(Proto::Icmp, 4711, "10.0.0.53")).kind, VerdictKind::Conforming);
    let v6 = FlowQuery { client: "fd00::9".parse().unwrap(), ..f(Proto::Icmpv6, 1, "fd00::53") };
    assert_eq!(e.rule(e.verdict(&v6).rule.unwrap()).id, "ping");
    assert_eq!(e.rules().len(), 3);
    assert_eq!(e.rules()[2].proto, Proto::Icmp);
    assert!(e.rules()[2].ports.is_empty());
}

#[test]
fn missing_inventory_is_warned_about_for_active_services_only() {
    let (m, _) = Matrix::load(&example("matrix.yaml")).unwrap();
    let e = Engine::new(&m, None, &Selection::default()).unwrap();
    let msgs: Vec<String> = e.warnings().iter().map(|w| w.to_string()).collect();
    assert!(
        msgs.iter()
            .any(|w| w.contains("service `rppam` runs on group `rppam_nodes`, but no inventory was given")),
        "{msgs:#?}"
    );
    assert!(!msgs.iter().any(|w| w.contains("`redis`")), "redis is HA-only: {msgs:#?}");
    assert!(msgs.iter().all(|w| w.contains("matrix.yaml:")), "warnings carry matrix positions: {msgs:#?}");
}

#[test]
fn unknown_selection_is_an_engine_error() {
    let (m, _) = Matrix::load(&example("matrix.yaml")).unwrap();
    let err = Engine::new(&m, None, &sel(&["cluster"], &[])).err().expect("unknown profile must fail");
    assert!(err.to_string().contains("unknown profile `cluster`"), "{err}");
}

#[test]
fn overlapping_ranges_keep_every_candidate_in_file_order() {
    let yaml = "version: 1\nzones:\n  lan: [10.0.0.0/8]\nservices:\n  app: { cidr: 10.0.0.1 }\n  ops: { cidr: 10.0.0.2 }\nrules:\n  - { id: wide, from: lan, to: app, ports: 1000-2000 }\n  - { id: narrow, from: ops, to: app, ports: [1500, 1990-2010] }\n  - { id: other, from: ops, to: app, port: 2005 }\n";
    let (m, _) = Matrix::from_str(yaml, "t.yaml", Path::new(".")).unwrap();
    let e = Engine::new(&m, None, &Selection::default()).unwrap();
    let ids = |port| {
        let f = q("10.0.0.2", "10.0.0.1", port);
        e.explain(&f, &e.verdict(&f)).rules
    };
    assert_eq!(ids(999), Vec::<String>::new());
    assert_eq!(ids(1000), vec!["wide"]);
    assert_eq!(ids(1500), vec!["wide", "narrow"]);
    assert_eq!(ids(1501), vec!["wide"]);
    assert_eq!(ids(2000), vec!["wide", "narrow"]);
    assert_eq!(ids(2005), vec!["narrow", "other"]);
    assert_eq!(ids(2011), Vec::<String>::new());
    assert_eq!(
        e.rule(e.verdict(&q("10.0.0.2", "10.0.0.1", 1500)).rule.unwrap()).id,
        "wide",
        "first in file order"
    );
    assert_eq!(ids(65535), Vec::<String>::new());
}

#[test]
fn addresses_are_labelled_by_inventory_host_and_smallest_group() {
    let e = ha();
    assert_eq!(e.host_label(NODE1.parse().unwrap()), "rppam1");
    assert_eq!(e.group_label(NODE1.parse().unwrap()), "rppam_nodes");
    assert_eq!(e.host_label(DB.parse().unwrap()), "db1");
    assert_eq!(e.group_label(DB.parse().unwrap()), "database");
    // IPv4-mapped IPv6 is the same address.
    assert_eq!(e.host_label("::ffff:10.200.1.20".parse().unwrap()), "db1");
    // Outside the inventory: `other`, and the matrix zone as its group.
    let outsider: IpAddr = "192.0.2.7".parse().unwrap();
    assert_eq!(e.host_label(outsider), OTHER);
    assert_eq!(e.group_label(outsider), "internet");
    assert!(e.has_host("rppam2") && !e.has_host("nosuch"));
}

#[test]
fn a_host_in_nested_groups_is_counted_in_the_smallest() {
    let dir = std::env::temp_dir().join(format!("monitor-labels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inv = dir.join("inventory.ini");
    // `primary` is a child of `database` (2 hosts); db1 is in both and in `zz_one` (1 host).
    std::fs::write(
        &inv,
        "[primary]\ndb1 ansible_host=10.200.1.20\n[replicas]\ndb2 ansible_host=10.200.1.22\n\
         [database:children]\nprimary\nreplicas\n[zz_one]\ndb1\n[lonely]\nsolo ansible_host=10.200.1.30\n",
    )
    .unwrap();
    let (m, _) = Matrix::load(&example("matrix.yaml")).unwrap();
    let (inv, _) = Inventory::load(&inv).unwrap();
    let e = Engine::new(&m, Some(&inv), &sel(&["ha"], &[])).unwrap();
    // db1: primary and zz_one have one host each; `primary` comes first by name.
    assert_eq!(e.group_label("10.200.1.20".parse().unwrap()), "primary");
    assert_eq!(e.group_label("10.200.1.22".parse().unwrap()), "replicas");
    assert_eq!(e.group_label("10.200.1.30".parse().unwrap()), "lonely");
    std::fs::remove_dir_all(&dir).unwrap();
}
