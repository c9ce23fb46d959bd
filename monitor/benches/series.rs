//! How many Prometheus series one agent exports (docs/metrics.md,
//! "Cardinality"), for the RP-PAM HA example and for the generated matrix
//! of 1,000 rules and 10,000 hosts (benches/generated).
//!
//! Each node studied is driven through the real judge and metrics with,
//! for every documented path it is an end of (as client and as server,
//! every rule, every peer host, and one address outside the inventory in
//! each zone): one attempt of each outcome and an ICMP rejection from the
//! server and from a router, the worst case; plus an undocumented flow
//! from and to every group and zone. "quiet" is the same node when every
//! attempt is answered and nothing undocumented happens. The counts are
//! the sample lines of the exposition, as Prometheus stores them.
//!
//! Run: cargo bench -p monitor --bench series (or `cargo xtask bench series`)

mod generated;

use std::{collections::BTreeSet, net::IpAddr, path::Path, sync::Arc, time::Instant};

use monitor::{
    engine::{Engine, FlowQuery, VerdictKind, OTHER},
    flow::{Endpoint, Flow, FlowState, IcmpInfo, Proto},
    inventory::Inventory,
    live::{
        judge::Judge,
        metrics::{Metrics, Snapshot},
        tally::{Tally, MAX_PATHS},
    },
    matrix::{Matrix, Selection},
};

/// A router on the way: no inventory host.
const ROUTER: &str = "192.0.2.254";
/// A port no rule documents, in either matrix.
const UNDOCUMENTED: u16 = 65_011;

struct Node<'a> {
    name: &'a str,
    ip: IpAddr,
}

/// A flow in `state`. The flows of one path are made one after the other,
/// each with the next client port, so no two share a key.
fn flow(n: &mut u16, proto: Proto, client: IpAddr, server: IpAddr, port: u16, state: FlowState) -> Flow {
    *n = n.wrapping_add(1);
    let cport = 1024 + *n % 60_000;
    Flow::attempt(proto, Endpoint { ip: client, port: cport }, Endpoint { ip: server, port }, state)
}

fn rejected(mut f: Flow, sender: IpAddr) -> Flow {
    f.state = FlowState::IcmpUnreachable;
    f.icmp_error = Some(IcmpInfo {
        icmp_type: 3,
        code: 13,
        name: "admin-prohibited",
        about_client: true,
        sender: Some(sender),
    });
    f
}

/// Series of `node`'s agent: (worst case, quiet), and the paths labelled.
fn series(engine: &Arc<Engine>, peers: &[IpAddr], node: &Node) -> (usize, usize, usize) {
    let ports: BTreeSet<(Proto, u16)> = engine
        .rules()
        .iter()
        .filter(|r| r.proto != Proto::Icmp)
        .filter_map(|r| Some((r.proto, r.ports.first()?.0)))
        .collect();
    let mut worst = Judge::new(engine.clone(), Tally::new(node.name, MAX_PATHS));
    let mut quiet = Judge::new(engine.clone(), Tally::new(node.name, MAX_PATHS));
    let router: IpAddr = ROUTER.parse().unwrap();
    let mut n = 0u16;
    for &peer in peers.iter().filter(|p| **p != node.ip) {
        for &(proto, port) in &ports {
            for (client, server) in [(node.ip, peer), (peer, node.ip)] {
                let q = FlowQuery { client, server, port, proto, initiator_seen: true };
                if engine.verdict(&q).kind != VerdictKind::Conforming {
                    continue;
                }
                for state in [FlowState::Established, FlowState::Refused, FlowState::Unanswered] {
                    worst.observe(&flow(&mut n, proto, client, server, port, state));
                }
                for sender in [server, router] {
                    let f = flow(&mut n, proto, client, server, port, FlowState::Awaiting);
                    worst.observe(&rejected(f, sender));
                }
                quiet.observe(&flow(&mut n, proto, client, server, port, FlowState::Established));
            }
        }
        // Undocumented, both ways: one finding series per pair of groups.
        for (client, server) in [(node.ip, peer), (peer, node.ip)] {
            let f = flow(&mut n, Proto::Tcp, client, server, UNDOCUMENTED, FlowState::Established);
            worst.observe(&f);
        }
    }
    let paths = worst.tally.paths.len();
    assert_eq!(worst.tally.paths_overflow, 0, "{}: past --max-paths", node.name);
    (samples(&worst), samples(&quiet), paths)
}

/// Sample lines in the agent's exposition, with every family it publishes.
fn samples(judge: &Judge) -> usize {
    let m = Metrics::for_node(judge.tally.node());
    let kernel = monitor::kernel::KernelStats::default();
    let user = monitor::kernel::stream::UserStats::default();
    let dns = monitor::dns::Passive::new(monitor::dns::CacheOptions::default());
    let dedup = monitor::live::dedup::DedupStats::default();
    m.publish(&Snapshot {
        counters: &[&kernel, &user, &dns, &dedup, &judge.tally],
        rules: judge.coverage.in_force(judge.engine()),
        tally: Some(&judge.tally),
        tracked_flows: 0,
        table_read: None,
        interfaces: Some(&[]),
    });
    m.encode().lines().filter(|l| !l.starts_with('#')).count()
}

/// The inventory's addresses, and one address outside it in each zone.
fn peers(engine: &Engine, m: &Matrix, inv: &Inventory, sel: &Selection) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = inv.hosts.values().flat_map(|h| h.addresses.iter().copied()).collect();
    let active = m.activate(sel).expect("selection activates");
    for (_, net) in m.zone_nets(&active).expect("zones") {
        let outsider = net.hosts().find(|ip| engine.host_label(*ip) == OTHER);
        out.extend(outsider);
    }
    out.push("198.51.100.7".parse().unwrap());
    out
}

fn report(what: &str, m: &Matrix, inv: &Inventory, sel: &Selection, nodes: &[&str]) {
    let started = Instant::now();
    let engine = Arc::new(Engine::new(m, Some(inv), sel).expect("engine compiles"));
    let peers = peers(&engine, m, inv, sel);
    println!("{what}: {} rules in force, {} inventory hosts", engine.rules().len(), inv.hosts.len());
    for name in nodes {
        let ip = inv.hosts[*name].addresses[0];
        let (worst, quiet, paths) = series(&engine, &peers, &Node { name, ip });
        println!("  node {name:<10} {worst:>7} series worst case ({paths} paths), {quiet:>6} quiet");
    }
    println!("  ({:.1} s)", started.elapsed().as_secs_f64());
}

fn main() {
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam");
    let (m, _) = Matrix::load(&ex.join("matrix.yaml")).expect("example matrix");
    let (inv, _) = Inventory::load(&ex.join("inventory.ini")).expect("example inventory");
    let ha = Selection { profiles: vec!["ha".into()], ..Selection::default() };
    report("RP-PAM HA example", &m, &inv, &ha, &["rppam1", "db1", "ws01"]);

    let dir = tempfile::tempdir().unwrap();
    let (m, inv, _) = generated::generate(dir.path());
    let nodes: Vec<String> = [0, 50, 99].iter().map(|g| format!("h{g}-0")).collect();
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    report("generated, 1,000 rules x 10,000 hosts", &m, &inv, &Selection::default(), &nodes);
}
