//! What the fleet metrics add up across agents (docs/metrics.md): the
//! attempts on each documented path, seen from this host's side, with how
//! they ended and who sent the ICMP errors that rejected them; and the
//! findings, by rule or by the groups of an undocumented flow's ends.
//!
//! Every label is a rule id, an inventory host or group name, a matrix zone
//! or a fixed word, so the number of series is bounded by the matrix and
//! the inventory, never by the traffic; the paths are bounded again by
//! `--max-paths`, past which attempts are counted, not labelled.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use crate::{
    alert::Kind,
    counters::{Counters, Emit, Family},
    engine::{Engine, OTHER},
    flow::{Flow, FlowState},
};

/// Where this agent stands on a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// This node is the client host.
    Client,
    /// This node is the server host.
    Server,
    /// Neither: a router or bridge host that sees the flow pass.
    Transit,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
            Side::Transit => "transit",
        }
    }
}

/// How an attempt on a path ended, as first decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    Answered,
    Refused,
    IcmpRejected,
    Unanswered,
}

impl Attempt {
    pub const ALL: [Attempt; 4] =
        [Attempt::Answered, Attempt::Refused, Attempt::IcmpRejected, Attempt::Unanswered];

    pub fn as_str(self) -> &'static str {
        match self {
            Attempt::Answered => "answered",
            Attempt::Refused => "refused",
            Attempt::IcmpRejected => "icmp_rejected",
            Attempt::Unanswered => "unanswered",
        }
    }

    /// The outcome a flow's state decides; `None` while it awaits an answer.
    pub fn of(state: FlowState) -> Option<Attempt> {
        match state {
            FlowState::Awaiting => None,
            FlowState::Established | FlowState::Closed | FlowState::Answered => Some(Attempt::Answered),
            FlowState::Refused => Some(Attempt::Refused),
            FlowState::IcmpUnreachable => Some(Attempt::IcmpRejected),
            FlowState::Unanswered => Some(Attempt::Unanswered),
        }
    }
}

/// Where an ICMP error that rejected an attempt came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// The flow's server address.
    Server,
    /// Another address: a router or firewall on the way.
    Network,
    /// The kernel did not record the sender (not expected).
    Unknown,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Server => "server",
            Origin::Network => "network",
            Origin::Unknown => "unknown",
        }
    }
}

/// One documented path as this agent sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PathKey {
    pub rule: Arc<str>,
    pub client: Arc<str>,
    pub server: Arc<str>,
    pub side: Side,
}

/// The attempts on one path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathCounts {
    /// By [`Attempt`], in the order of [`Attempt::ALL`].
    pub attempts: [u64; 4],
    /// ICMP rejections by sender label and origin.
    pub icmp: BTreeMap<(Arc<str>, Origin), u64>,
}

/// What a finding is counted under.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FindingKey {
    /// `blocked` by the documenting rule, `exposed` by the broken constraint.
    Rule(Kind, Arc<str>),
    /// `unexpected`, by the groups of the client and the server.
    Groups(Arc<str>, Arc<str>),
}

/// The fleet tallies of one agent, kept across reloads (by rule id).
#[derive(Debug)]
pub struct Tally {
    /// This node's inventory host name (`--node`).
    node: Arc<str>,
    max_paths: usize,
    pub paths: BTreeMap<PathKey, PathCounts>,
    pub findings: BTreeMap<FindingKey, u64>,
    /// Attempts on paths past `max_paths`.
    pub paths_overflow: u64,
}

/// The default of `--max-paths`.
pub const MAX_PATHS: usize = 10_000;

impl Tally {
    pub fn new(node: &str, max_paths: usize) -> Tally {
        Tally {
            node: Arc::from(node),
            max_paths,
            paths: BTreeMap::new(),
            findings: BTreeMap::new(),
            paths_overflow: 0,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Counts one attempt on the path of `rule` that `flow` took, ended as
    /// `attempt`. The path's four outcome series are created together, so
    /// that a later change of outcome is a rise from zero.
    pub fn attempt(&mut self, engine: &Engine, rule: &Arc<str>, flow: &Flow, attempt: Attempt) {
        let client = engine.host_label(flow.client.ip);
        let server = engine.host_label(flow.server.ip);
        let side = if client == &*self.node && client != OTHER {
            Side::Client
        } else if server == &*self.node && server != OTHER {
            Side::Server
        } else {
            Side::Transit
        };
        let key = PathKey { rule: rule.clone(), client: Arc::from(client), server: Arc::from(server), side };
        let full = self.paths.len() >= self.max_paths;
        let counts = match self.paths.get_mut(&key) {
            Some(c) => c,
            None if full => {
                self.paths_overflow += 1;
                return;
            }
            None => self.paths.entry(key).or_default(),
        };
        counts.attempts[attempt as usize] += 1;
        if attempt == Attempt::IcmpRejected {
            let sender = flow.icmp_error.and_then(|i| i.sender);
            let origin = match sender {
                Some(ip) if ip == flow.server.ip => Origin::Server,
                Some(_) => Origin::Network,
                None => Origin::Unknown,
            };
            let label = sender.map_or(OTHER, |ip| engine.host_label(ip));
            *counts.icmp.entry((Arc::from(label), origin)).or_default() += 1;
        }
    }

    /// Counts one finding: `rule` for blocked and exposed; the groups of
    /// the ends for unexpected.
    pub fn finding(
        &mut self,
        engine: &Engine,
        kind: Kind,
        rule: Option<&str>,
        client: IpAddr,
        server: IpAddr,
    ) {
        let key = match (kind, rule) {
            (Kind::Blocked | Kind::Exposed, Some(rule)) => FindingKey::Rule(kind, Arc::from(rule)),
            _ => FindingKey::Groups(
                Arc::from(engine.group_label(client)),
                Arc::from(engine.group_label(server)),
            ),
        };
        *self.findings.entry(key).or_default() += 1;
    }
}

/// `monitor_path_overflow_total`.
pub static PATH_OVERFLOW: Family = Family {
    name: "path_overflow",
    help: "Attempts on documented paths past --max-paths: counted here, not by path.",
    label: "",
};

impl Counters for Tally {
    fn counters(&self, emit: &mut Emit<'_>) {
        emit(&PATH_OVERFLOW, "", self.paths_overflow);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{
        flow::{Endpoint, IcmpInfo, Proto},
        inventory::Inventory,
        live::judge::Judge,
        matrix::{Matrix, Selection},
    };

    const NODE1: &str = "10.200.1.11";
    const NODE2: &str = "10.200.1.12";
    const DB: &str = "10.200.1.20";
    const REDIS: &str = "10.200.1.21";
    const WS: &str = "10.200.2.50";

    fn judge(node: &str, max_paths: usize) -> Judge {
        let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam");
        let (m, _) = Matrix::load(&ex.join("matrix.yaml")).unwrap();
        let (inv, _) = Inventory::load(&ex.join("inventory.ini")).unwrap();
        let sel = Selection { profiles: vec!["ha".into()], ..Selection::default() };
        let e = Engine::new(&m, Some(&inv), &sel).unwrap();
        Judge::new(Arc::new(e), Tally::new(node, max_paths))
    }

    fn flow(client: &str, cport: u16, server: &str, port: u16, state: FlowState) -> Flow {
        let end = |ip: &str, port| Endpoint { ip: ip.parse().unwrap(), port };
        Flow::attempt(Proto::Tcp, end(client, cport), end(server, port), state)
    }

    fn rejected(mut f: Flow, sender: Option<&str>) -> Flow {
        f.state = FlowState::IcmpUnreachable;
        f.icmp_error = Some(IcmpInfo {
            icmp_type: 3,
            code: 13,
            name: "admin-prohibited",
            about_client: true,
            sender: sender.map(|s| s.parse().unwrap()),
        });
        f
    }

    fn attempts(j: &Judge, rule: &str, client: &str, server: &str, side: Side) -> [u64; 4] {
        let k = PathKey { rule: rule.into(), client: client.into(), server: server.into(), side };
        j.tally.paths.get(&k).unwrap_or_else(|| panic!("no path {k:?} in {:?}", j.tally.paths)).attempts
    }

    #[test]
    fn a_state_decides_an_attempt_once_it_is_not_awaiting() {
        assert_eq!(Attempt::of(FlowState::Awaiting), None);
        assert_eq!(Attempt::of(FlowState::Closed), Some(Attempt::Answered));
        assert_eq!(Attempt::of(FlowState::IcmpUnreachable), Some(Attempt::IcmpRejected));
        assert_eq!(Attempt::ALL.map(|a| a as usize), [0, 1, 2, 3]);
    }

    #[test]
    fn each_attempt_is_counted_once_on_its_path_from_this_hosts_side() {
        let mut j = judge("rppam1", MAX_PATHS);
        // Awaiting: not decided yet; then unanswered; then a late answer is
        // the same attempt, not a second one.
        j.observe(&flow(NODE1, 40000, DB, 5432, FlowState::Awaiting));
        assert!(j.tally.paths.is_empty(), "{:?}", j.tally.paths);
        j.observe(&flow(NODE1, 40000, DB, 5432, FlowState::Unanswered));
        j.observe(&flow(NODE1, 40000, DB, 5432, FlowState::Established));
        j.observe(&flow(NODE1, 40001, DB, 5432, FlowState::Established));
        assert_eq!(attempts(&j, "db-postgres", "rppam1", "db1", Side::Client), [1, 0, 0, 1]);
        // rppam1 as the server of a refused attempt.
        j.observe(&flow(NODE2, 40002, NODE1, 5201, FlowState::Refused));
        assert_eq!(attempts(&j, "heartbeat", "rppam2", "rppam1", Side::Server), [0, 1, 0, 0]);
        // Neither end is this node: seen in transit.
        j.observe(&flow(NODE2, 40003, DB, 5432, FlowState::Closed));
        assert_eq!(attempts(&j, "db-postgres", "rppam2", "db1", Side::Transit), [1, 0, 0, 0]);
        // Blocked findings by rule; the answered flows are none.
        assert_eq!(
            j.tally.findings,
            BTreeMap::from([
                (FindingKey::Rule(Kind::Blocked, "db-postgres".into()), 1),
                (FindingKey::Rule(Kind::Blocked, "heartbeat".into()), 1),
            ])
        );
    }

    #[test]
    fn an_icmp_rejection_names_its_sender_and_whether_it_was_the_server() {
        let mut j = judge("rppam1", MAX_PATHS);
        j.observe(&rejected(flow(NODE1, 40000, REDIS, 6379, FlowState::Awaiting), Some(REDIS)));
        j.observe(&rejected(flow(NODE1, 40001, REDIS, 6379, FlowState::Awaiting), Some("10.200.1.1")));
        j.observe(&rejected(flow(NODE1, 40002, REDIS, 6379, FlowState::Awaiting), Some(NODE2)));
        j.observe(&rejected(flow(NODE1, 40003, REDIS, 6379, FlowState::Awaiting), None));
        let k = PathKey {
            rule: "redis".into(),
            client: "rppam1".into(),
            server: "redis1".into(),
            side: Side::Client,
        };
        let c = &j.tally.paths[&k];
        assert_eq!(c.attempts, [0, 0, 4, 0]);
        let icmp: Vec<(&str, Origin, u64)> = c.icmp.iter().map(|((s, o), n)| (&**s, *o, *n)).collect();
        assert_eq!(
            icmp,
            [
                ("other", Origin::Network, 1),
                ("other", Origin::Unknown, 1),
                ("redis1", Origin::Server, 1),
                ("rppam2", Origin::Network, 1),
            ]
        );
    }

    #[test]
    fn undocumented_flows_are_counted_by_the_groups_of_their_ends() {
        let mut j = judge("db1", MAX_PATHS);
        j.observe(&flow(WS, 40000, DB, 5432, FlowState::Established));
        j.observe(&flow(WS, 40001, DB, 5432, FlowState::Established));
        j.observe(&flow("192.0.2.9", 40002, DB, 22, FlowState::Established));
        assert_eq!(
            j.tally.findings,
            BTreeMap::from([
                (FindingKey::Groups("internet".into(), "database".into()), 1),
                (FindingKey::Groups("user_workstations".into(), "database".into()), 2),
            ])
        );
        assert!(j.tally.paths.is_empty(), "undocumented flows have no path");
    }

    #[test]
    fn paths_past_the_bound_are_counted_not_labelled() {
        let mut j = judge("rppam1", 2);
        j.observe(&flow(NODE1, 40000, DB, 5432, FlowState::Established));
        j.observe(&flow(NODE1, 40001, REDIS, 6379, FlowState::Established));
        j.observe(&flow(NODE1, 40002, NODE2, 5201, FlowState::Established));
        j.observe(&flow(NODE1, 40003, DB, 5432, FlowState::Established));
        assert_eq!(j.tally.paths.len(), 2);
        assert_eq!(attempts(&j, "db-postgres", "rppam1", "db1", Side::Client), [2, 0, 0, 0]);
        assert_eq!(j.tally.paths_overflow, 1);
        let c = crate::counters::collect(&j.tally);
        assert_eq!(c.iter().map(|(f, _, v)| (f.name, *v)).collect::<Vec<_>>(), [("path_overflow", 1)]);
    }
}
