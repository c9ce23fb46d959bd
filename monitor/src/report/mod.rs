//! The HTML report: one self-contained page that a person can open from a
//! file and forward by mail, with what a run came to (`monitor check
//! --format html` on a capture, `monitor report --format html` from a
//! running agent): the summary, the graph, the rule coverage table and the
//! findings (docs/report.md).
//!
//! The page is built as a [`Page`] first, a plain model of what it shows,
//! so that the sources (a judged capture: [`capture`]; a running agent's
//! coverage: [`agent`]) and the rendering ([`html`]) stay apart and each is
//! tested on its own. The page needs no network: styles and the small
//! script are inline, and its content security policy forbids loading
//! anything.

pub mod agent;
pub mod capture;
pub mod html;

use std::{fmt::Write, net::IpAddr};

use crate::{
    alert::{state_name, Alert, End, Kind},
    engine::Engine,
    live::coverage::RuleLine,
};

/// Everything the page shows, in the order it shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The page's title and heading: what was judged.
    pub title: String,
    /// One line under the heading: against what, and where from.
    pub subtitle: String,
    /// The headline numbers (flows, findings by kind, rules never seen).
    pub counts: Vec<Count>,
    /// The rest of the summary, as label and value.
    pub facts: Vec<Fact>,
    /// The graph as inline SVG (`dot -Tsvg` output), or `None` when it is
    /// not available (no Graphviz `dot`, or a source that has no graph).
    pub graph: Option<String>,
    /// Every rule of the matrix in force, in matrix order.
    pub rules: Vec<RuleRow>,
    pub findings: Findings,
}

/// A headline number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Count {
    pub label: &'static str,
    pub value: u64,
    /// Its colour: "ok", "unexpected", "blocked", "exposed", "never" or "".
    pub tone: &'static str,
}

/// A line of the summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fact {
    pub label: &'static str,
    pub value: String,
}

/// One row of the rule coverage table.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleRow {
    pub rule: RuleLine,
    /// Whether the run saw the rule (as the source counts it: `monitor
    /// check`'s `unused_rules`, the agent's `unused`).
    pub seen: bool,
}

impl RuleRow {
    /// `7001-7012/tcp`, or `icmp` for a rule without ports.
    pub fn what(&self) -> String {
        if self.rule.ports.is_empty() {
            self.rule.proto.clone()
        } else {
            format!("{}/{}", self.rule.ports, self.rule.proto)
        }
    }

    /// The last use as an RFC 3339 time, or "never".
    pub fn last_seen(&self) -> String {
        match self.rule.usage.last_seen {
            Some(t) => humantime::format_rfc3339_seconds(t).to_string(),
            None => "never".into(),
        }
    }
}

/// The findings section.
#[derive(Clone, Debug, PartialEq)]
pub enum Findings {
    /// The findings of the run, in the order their flows started.
    Listed(Vec<Finding>),
    /// The source has none to give; the page says why.
    NotAvailable(String),
}

/// The findings of one kind, for the page's groups.
#[derive(Clone, Debug, PartialEq)]
pub struct Group<'a> {
    pub kind: Kind,
    pub findings: Vec<&'a Finding>,
}

impl Findings {
    /// The findings grouped by kind, in the order of [`Kind::ALL`], with
    /// empty kinds left out; within a group, in run order.
    pub fn groups(&self) -> Vec<Group<'_>> {
        let Findings::Listed(all) = self else { return Vec::new() };
        Kind::ALL
            .iter()
            .map(|&kind| Group { kind, findings: all.iter().filter(|f| f.kind == kind).collect() })
            .filter(|g| !g.findings.is_empty())
            .collect()
    }

    /// How many findings of `kind` there are.
    pub fn count(&self, kind: Kind) -> u64 {
        match self {
            Findings::Listed(all) => all.iter().filter(|f| f.kind == kind).count() as u64,
            Findings::NotAvailable(_) => 0,
        }
    }
}

/// A matrix rule (or exposure constraint) a finding is about, with the
/// document line it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleRef {
    pub id: String,
    /// `file:line` of the rule; `None` when the engine no longer has it.
    pub provenance: Option<String>,
}

/// One finding, as the page shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    pub proto: String,
    /// `ip:port` of the client (the address alone from a running agent,
    /// whose findings fold the client's ports), and its names.
    pub client: String,
    pub client_names: String,
    pub server: String,
    pub server_names: String,
    /// The rule the finding is about (`blocked`: the rule documenting the
    /// flow; `exposed`: the constraint it breaks), or for `unexpected` the
    /// closest documented rules; each with its document line.
    pub rules: Vec<RuleRef>,
    /// Whether `rules` are the closest rules (`unexpected`) rather than the
    /// rule concerned.
    pub closest: bool,
    pub reason: String,
    pub state: String,
    pub first_seen: String,
    pub packets: u64,
    pub bytes: u64,
    /// How many flows the record stands for.
    pub count: u64,
}

impl Finding {
    /// The finding of `alert`, its rules' document lines looked up in
    /// `engine` (the engine the flow was judged with).
    pub fn from_alert(alert: &Alert, engine: &Engine) -> Finding {
        let (ids, closest): (Vec<&String>, bool) = match &alert.rule {
            Some(rule) => (vec![rule], false),
            None => (alert.closest.iter().collect(), true),
        };
        let rules = ids
            .into_iter()
            .map(|id| RuleRef { id: id.clone(), provenance: provenance(engine, alert.kind, id) })
            .collect();
        Finding {
            kind: alert.kind,
            proto: alert.proto.as_str().to_string(),
            client: address(&alert.src),
            client_names: names(&alert.src, false),
            server: address(&alert.dst),
            server_names: names(&alert.dst, true),
            rules,
            closest,
            reason: alert.reason.clone(),
            state: state_name(alert.state).to_string(),
            first_seen: humantime::format_rfc3339_seconds(alert.first_seen).to_string(),
            packets: alert.packets,
            bytes: alert.bytes,
            count: alert.count,
        }
    }
}

/// `file:line` of the rule `id`: for `exposed` an exposure constraint
/// (falling back to the rules), otherwise a rule.
fn provenance(engine: &Engine, kind: Kind, id: &str) -> Option<String> {
    let exposure = || engine.exposures().iter().find(|e| e.id == id).map(|e| e.provenance.clone());
    let rule = || engine.rules().iter().find(|r| r.id == id).map(|r| r.provenance.clone());
    if kind == Kind::Exposed {
        exposure().or_else(rule)
    } else {
        rule().or_else(exposure)
    }
}

fn address(end: &End) -> String {
    match end.ip {
        IpAddr::V6(ip) => format!("[{ip}]:{}", end.port),
        IpAddr::V4(ip) => format!("{ip}:{}", end.port),
    }
}

/// `host ws01 · zone users · service database · dns db.example`, what is known.
fn names(end: &End, with_service: bool) -> String {
    let mut s = String::new();
    let mut add = |label: &str, value: &str| {
        if !s.is_empty() {
            s.push_str(" · ");
        }
        let _ = write!(s, "{label} {value}");
    };
    if let Some(h) = &end.names.host {
        add("host", h);
    }
    if let Some(z) = &end.names.zone {
        add("zone", z);
    }
    if let Some(svc) = end.names.service.as_deref().filter(|_| with_service) {
        add("service", svc);
    }
    if !end.dns_names.is_empty() {
        add("dns", &end.dns_names.join(", "));
    }
    s
}

#[cfg(test)]
pub(crate) mod tests;
