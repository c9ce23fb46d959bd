//! `monitor graph`: the documented matrix drawn with the traffic observed
//! against it, so that a reviewer sees at a glance which documented paths
//! are used, which never are, which fail and what runs that nobody wrote
//! down (docs/graph.md).
//!
//! The drawing is built in two steps, so that every source of observations
//! gives the same picture:
//!
//! - [`Observations`] gathers what was seen, in the terms every source can
//!   give: per rule (by its expanded id, as coverage and metrics name it)
//!   the flows and the blocked flows, the ways the blocked ones failed, and
//!   the findings. A capture fills it flow by flow ([`Observations::judged`],
//!   via [`capture`]); the fleet from Prometheus's report ([`fleet`]); a
//!   running agent can fill it from its coverage ([`Observations::rule`])
//!   and its findings ([`Observations::finding`]).
//! - [`Graph::build`] turns the engine's active rules and the observations
//!   into nodes (services, zones, and the hosts and groups findings name)
//!   and edges of one [`EdgeKind`] each, with their labels; [`render`] draws
//!   it as Mermaid or DOT, [`svg`] has Graphviz lay the DOT out.
//!
//! What the graph cannot draw (control traffic, exposed ports that did not
//! answer, counts for rules the matrix does not hold) is kept in
//! [`Graph::notes`], which every form carries as comments.

pub mod capture;
pub mod fleet;
pub mod render;
pub mod svg;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use crate::{
    alert::{Alert, End, Kind},
    engine::{RuleInfo, VerdictKind},
    flow::{FlowState, Proto},
    matrix::{format_ports, Matrix, ANY},
    replay::judge::Judged,
    verdict::Outcome,
};

/// What a node stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeKind {
    /// A matrix service.
    Service,
    /// A matrix zone (with the built-in `loopback` and `internet`).
    Zone,
    /// The matrix's `any`.
    Any,
    /// An inventory group, as the fleet's findings name their ends.
    Group,
    /// An inventory host, as a finding names its end.
    Host,
    /// An address neither the inventory nor a zone names.
    Address,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Service => "service",
            NodeKind::Zone => "zone",
            NodeKind::Any => "any",
            NodeKind::Group => "group",
            NodeKind::Host => "host",
            NodeKind::Address => "address",
        }
    }
}

/// One end of an observed flow, as the finding names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Party {
    pub kind: NodeKind,
    pub name: String,
}

impl Party {
    /// The end of a finding: its inventory host; else (no inventory) the
    /// one matrix service placed on the address; else its zone (every
    /// address has one, `internet` at least); else its address.
    pub fn of_end(end: &End) -> Party {
        let n = &end.names;
        match (&n.host, &n.service, &n.zone) {
            (Some(h), _, _) => Party { kind: NodeKind::Host, name: h.clone() },
            // Several services are joined with ", ": no one node is theirs.
            (None, Some(s), _) if !s.contains(", ") => Party { kind: NodeKind::Service, name: s.clone() },
            (None, _, Some(z)) => Party { kind: NodeKind::Zone, name: z.clone() },
            (None, _, None) => Party { kind: NodeKind::Address, name: end.ip.to_string() },
        }
    }

    /// A name the fleet gives (an inventory group, or outside the inventory
    /// a matrix zone): a zone when `matrix` has one of that name.
    pub fn group_or_zone(name: &str, matrix: &Matrix) -> Party {
        let kind = if matrix.zones.contains_key(name) { NodeKind::Zone } else { NodeKind::Group };
        Party { kind, name: name.to_string() }
    }

    fn entity(name: &str, matrix: &Matrix) -> Party {
        let kind = if name == ANY {
            NodeKind::Any
        } else if matrix.zones.contains_key(name) {
            NodeKind::Zone
        } else {
            NodeKind::Service
        };
        Party { kind, name: name.to_string() }
    }

    /// The node's id: unique across kinds (a service and a group may share a name).
    pub fn id(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.name)
    }
}

/// A port a finding's flows went to: protocol and server port (0 for ICMP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    pub proto: Proto,
    pub port: u16,
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.proto {
            Proto::Tcp | Proto::Udp => write!(f, "{}/{}", self.proto, self.port),
            Proto::Icmp | Proto::Icmpv6 => f.write_str(self.proto.as_str()),
        }
    }
}

/// The use of one documented rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleUse {
    /// Flows the rule documents.
    pub flows: u64,
    /// Of those, the flows refused, unanswered or rejected.
    pub blocked: u64,
    /// How blocked flows failed (`refused`, `unanswered`, `icmp-rejected
    /// (port-unreachable)`, ...), with their flows, as far as the source
    /// tells (a capture: every blocked flow; the fleet: per blocked path).
    pub failures: BTreeMap<String, u64>,
}

/// Findings of one kind between two ends.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct SeenKey {
    source: Party,
    target: Party,
    /// `None` for undocumented flows; the broken constraint for exposed ones.
    exposure: Option<String>,
}

/// Flows by port; `None` when the source does not say (the fleet counts
/// undocumented flows by group pair only).
type ByPort = BTreeMap<Option<Port>, u64>;

/// Everything observed, from any source (see the module's doc).
#[derive(Clone, Debug, Default)]
pub struct Observations {
    rules: BTreeMap<String, RuleUse>,
    seen: BTreeMap<SeenKey, ByPort>,
    /// Flows of IP's own control traffic (neighbour discovery, ...): not judged.
    pub network_control: u64,
    /// Flows to an exposed port that got no answer: not findings.
    pub exposed_unanswered: u64,
    /// Findings that an agent's de-duplication folded into overflow records.
    pub folded: u64,
}

impl Observations {
    /// The use of rule `id` (an expanded rule's id, as `Engine::rules` has it), to add to.
    pub fn rule(&mut self, id: &str) -> &mut RuleUse {
        self.rules.entry(id.to_string()).or_default()
    }

    /// The use of rule `id`, if anything was observed of it.
    pub fn rule_use(&self, id: &str) -> Option<&RuleUse> {
        self.rules.get(id)
    }

    /// `flows` flows of no documented rule from `source` to `target` (to `port` when known).
    pub fn undocumented(&mut self, source: Party, target: Party, port: Option<Port>, flows: u64) {
        let key = SeenKey { source, target, exposure: None };
        *self.seen.entry(key).or_default().entry(port).or_default() += flows;
    }

    /// `flows` flows from `source` to `target` reaching a port that
    /// exposure constraint `exposure` keeps from them, which answered.
    pub fn exposed(&mut self, source: Party, target: Party, exposure: &str, port: Option<Port>, flows: u64) {
        let key = SeenKey { source, target, exposure: Some(exposure.to_string()) };
        *self.seen.entry(key).or_default().entry(port).or_default() += flows;
    }

    /// A finding (its `count` flows): an unexpected or exposed one becomes
    /// an edge; a blocked one says how its rule's flows failed (the flows
    /// themselves are counted by [`Observations::rule`]); an overflow
    /// record's folded findings are counted in [`Observations::folded`].
    pub fn finding(&mut self, alert: &Alert) {
        let n = alert.count.max(1);
        let port = Some(Port {
            proto: alert.proto,
            port: if matches!(alert.proto, Proto::Tcp | Proto::Udp) { alert.dst.port } else { 0 },
        });
        let (source, target) = (Party::of_end(&alert.src), Party::of_end(&alert.dst));
        match alert.kind {
            Kind::Unexpected => self.undocumented(source, target, port, n),
            Kind::Exposed => {
                let exposure = alert.rule.as_deref().unwrap_or("?");
                self.exposed(source, target, exposure, port, n)
            }
            Kind::Blocked => {
                let how = failure(alert.state, alert.icmp.map(|i| i.name));
                let rule = alert.rule.as_deref().unwrap_or("?");
                *self.rule(rule).failures.entry(how).or_default() += n;
            }
            Kind::Overflow => {
                if let Some(o) = &alert.overflow {
                    self.folded += o.unexpected + o.blocked + o.exposed;
                }
            }
        }
    }

    /// One flow of a capture, as [`crate::replay::judge::judge_capture`]
    /// hands it: counted to its rule as the live monitor's coverage counts
    /// it (documented flows, and of them the blocked ones), and its finding.
    pub fn judged(&mut self, j: &Judged<'_>) {
        match j.outcome {
            Outcome::NetworkControl => {
                self.network_control += 1;
                return;
            }
            Outcome::ExposedUnanswered => self.exposed_unanswered += 1,
            _ => {}
        }
        if let (VerdictKind::Conforming, Some(r)) = (j.verdict.kind, j.verdict.rule) {
            let blocked = matches!(j.outcome, Outcome::Finding(a) if a.kind == Kind::Blocked);
            let u = self.rule(&j.engine.rule(r).id);
            u.flows += 1;
            u.blocked += u64::from(blocked);
        }
        if let Outcome::Finding(alert) = j.outcome {
            self.finding(alert);
        }
    }
}

/// How a blocked flow failed, in a few words.
fn failure(state: FlowState, icmp: Option<&str>) -> String {
    match (state, icmp) {
        (FlowState::Refused, _) => "refused".into(),
        (FlowState::Unanswered, _) => "unanswered".into(),
        (FlowState::IcmpUnreachable, Some(name)) => format!("icmp-rejected ({name})"),
        (FlowState::IcmpUnreachable, None) => "icmp-rejected".into(),
        (other, _) => format!("{other:?}").to_lowercase(),
    }
}

/// A node of the graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Unique: `KIND:NAME` ([`Party::id`]).
    pub id: String,
    pub kind: NodeKind,
    pub name: String,
}

/// What an edge says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EdgeKind {
    /// A documented rule that flows used, none of them blocked: solid.
    Used,
    /// A documented rule no flow used: dashed grey.
    Unused,
    /// A documented rule with blocked flows: red, with how they failed.
    Blocked,
    /// Flows no rule documents: orange.
    Undocumented,
    /// Flows that reached a port an exposure constraint keeps from them, and were answered: purple.
    Exposed,
}

impl EdgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Used => "used",
            EdgeKind::Unused => "unused",
            EdgeKind::Blocked => "blocked",
            EdgeKind::Undocumented => "undocumented",
            EdgeKind::Exposed => "exposed",
        }
    }
}

/// An edge of the graph: from the client's side to the server's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub kind: EdgeKind,
    /// The documented rule's id (expanded), for rule edges.
    pub rule: Option<String>,
    /// Flows it stands for.
    pub flows: u64,
    /// The label, one line each.
    pub label: Vec<String>,
}

/// Ports listed on an undocumented or exposed edge before the rest are summed.
pub const PORTS_SHOWN: usize = 6;

/// The documented rules and the observed traffic, as nodes and edges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Graph {
    /// In the order first named: rules' sources and targets in matrix order,
    /// then the findings' ends.
    pub nodes: Vec<Node>,
    /// The rules in matrix order, then the findings' edges by ends.
    pub edges: Vec<Edge>,
    /// What the edges do not show: counted, for the reader.
    pub notes: Vec<String>,
}

fn flows(n: u64) -> String {
    if n == 1 {
        "1 flow".into()
    } else {
        format!("{n} flows")
    }
}

/// `tcp/7001-7012`, `udp/514`, `icmp`.
fn rule_ports(r: &RuleInfo) -> String {
    if r.ports.is_empty() {
        r.proto.to_string()
    } else {
        format!("{}/{}", r.proto, format_ports(&r.ports))
    }
}

impl Graph {
    /// The graph of `rules` (the engine's active expanded rules, in matrix
    /// order) under `matrix` (which tells services from zones) and what
    /// `obs` saw.
    pub fn build(matrix: &Matrix, rules: &[RuleInfo], obs: &Observations) -> Graph {
        let mut g = Graph::default();
        let mut known = BTreeSet::new();
        let mut node = |g: &mut Graph, p: &Party| -> String {
            let id = p.id();
            if known.insert(id.clone()) {
                g.nodes.push(Node { id: id.clone(), kind: p.kind, name: p.name.clone() });
            }
            id
        };
        let mut in_matrix = BTreeSet::new();
        for r in rules {
            in_matrix.insert(r.id.as_str());
            let from = node(&mut g, &Party::entity(&r.source, matrix));
            let to = node(&mut g, &Party::entity(&r.target, matrix));
            let ports = rule_ports(r);
            let u = obs.rules.get(&r.id).cloned().unwrap_or_default();
            let (kind, mut label) = if u.blocked > 0 {
                (
                    EdgeKind::Blocked,
                    vec![r.id.clone(), format!("{ports}: {}, {} blocked", flows(u.flows), u.blocked)],
                )
            } else if u.flows > 0 {
                (EdgeKind::Used, vec![r.id.clone(), format!("{ports}: {}", flows(u.flows))])
            } else {
                (EdgeKind::Unused, vec![r.id.clone(), format!("{ports}: no flow")])
            };
            if kind == EdgeKind::Blocked {
                let how: Vec<String> = u.failures.iter().map(|(h, n)| format!("{h} {n}")).collect();
                if !how.is_empty() {
                    label.push(how.join(", "));
                }
            }
            g.edges.push(Edge { from, to, kind, rule: Some(r.id.clone()), flows: u.flows, label });
        }
        for (key, ports) in &obs.seen {
            let from = node(&mut g, &key.source);
            let to = node(&mut g, &key.target);
            let total: u64 = ports.values().sum();
            let (kind, head) = match &key.exposure {
                None => (EdgeKind::Undocumented, format!("undocumented: {}", flows(total))),
                Some(x) => (EdgeKind::Exposed, format!("exposed ({x}): {}", flows(total))),
            };
            let mut label = vec![head];
            let listed: Vec<(Port, u64)> = ports.iter().filter_map(|(p, n)| p.map(|p| (p, *n))).collect();
            for (p, n) in listed.iter().take(PORTS_SHOWN) {
                label.push(format!("{p}: {}", flows(*n)));
            }
            if listed.len() > PORTS_SHOWN {
                let rest: u64 = listed[PORTS_SHOWN..].iter().map(|(_, n)| n).sum();
                label.push(format!("+{} more ports: {}", listed.len() - PORTS_SHOWN, flows(rest)));
            }
            g.edges.push(Edge { from, to, kind, rule: None, flows: total, label });
        }
        let stray: Vec<String> = obs
            .rules
            .iter()
            .filter(|(id, u)| !in_matrix.contains(id.as_str()) && (u.flows > 0 || u.blocked > 0))
            .map(|(id, u)| format!("{id} ({})", flows(u.flows.max(u.blocked))))
            .collect();
        if !stray.is_empty() {
            g.notes.push(format!(
                "{} rule(s) with flows are not active rules of this matrix and selection (not drawn): {}",
                stray.len(),
                stray.join(", ")
            ));
        }
        if obs.network_control > 0 {
            g.notes.push(format!(
                "{} of network control (neighbour discovery and the like) not judged, not drawn",
                flows(obs.network_control)
            ));
        }
        if obs.exposed_unanswered > 0 {
            g.notes.push(format!(
                "{} to exposed ports went unanswered (the firewall held): not findings, not drawn",
                flows(obs.exposed_unanswered)
            ));
        }
        if obs.folded > 0 {
            g.notes.push(format!(
                "{} finding(s) were folded into overflow records by the agent's de-duplication: their ends are not drawn",
                obs.folded
            ));
        }
        g
    }

    /// Edges of each kind, for summaries.
    pub fn count(&self, kind: EdgeKind) -> usize {
        self.edges.iter().filter(|e| e.kind == kind).count()
    }
}

#[cfg(test)]
mod tests;
