//! The page of a judged capture (`monitor check --format html`): every
//! judged flow is handed to a [`Collector`] from the callback of
//! [`judge_capture`](crate::replay::judge::judge_capture), which keeps the
//! findings and the rules' use, and [`Collector::page`] turns them and the
//! run's [`Summary`] into a [`Page`].
//!
//! The rules' use is counted by the live monitor's own [`Coverage`], with
//! the live judge's rules (a documented flow adds a flow and its traffic to
//! its rule, a blocked one adds a blocked flow), so that a capture's table
//! and a running agent's read the same. The collector also keeps the
//! graph's [`Observations`], so that the page's graph shows the same flows
//! (`monitor graph`'s model, laid out by Graphviz: [`Collector::svg`]).

use std::path::Path;

use super::{Count, Fact, Finding, Findings, Page, RuleRow};
use crate::{
    alert::Kind,
    engine::{RuleInfo, VerdictKind},
    graph::{
        svg::{self, SvgError},
        Graph, Observations,
    },
    live::coverage::Coverage,
    matrix::Matrix,
    replay::{
        judge::{Judged, Judgement},
        Summary,
    },
    verdict::Outcome,
};

/// What the page needs from the judged flows of a capture.
#[derive(Debug, Default)]
pub struct Collector {
    coverage: Coverage,
    findings: Vec<Finding>,
    observed: Observations,
}

impl Collector {
    /// Counts one judged flow, and keeps its finding if it is one.
    pub fn add(&mut self, j: &Judged<'_>) {
        self.observed.judged(j);
        if *j.outcome == Outcome::NetworkControl {
            return;
        }
        let finding = match j.outcome {
            Outcome::Finding(alert) => Some(alert),
            _ => None,
        };
        if let Some(rule) = j.verdict.rule {
            let slot = self.coverage.slot(&j.engine.rule(rule).id);
            if j.verdict.kind == VerdictKind::Conforming {
                let flow = j.flow;
                self.coverage.add_flow(slot);
                self.coverage.add_traffic(
                    slot,
                    flow.to_server.packets + flow.to_client.packets,
                    flow.to_server.bytes + flow.to_client.bytes,
                    flow.last_seen,
                );
            }
            if finding.is_some_and(|a| a.kind == Kind::Blocked) {
                self.coverage.add_blocked(slot);
            }
        }
        if let Some(alert) = finding {
            self.findings.push(Finding::from_alert(alert, j.engine));
        }
    }

    /// The graph of what was collected: `matrix` and its `rules` drawn
    /// with the traffic seen against them, as SVG by Graphviz's `dot`.
    pub fn svg(&self, matrix: &Matrix, rules: &[RuleInfo]) -> Result<String, SvgError> {
        svg::of_graph(&Graph::build(matrix, rules, &self.observed))
    }

    /// The page of the whole capture; `matrix` names the matrix in the
    /// subtitle, `graph` is the graph's SVG when there is one.
    pub fn page(self, judged: &Judgement, matrix: &Path, graph: Option<String>) -> Page {
        let s = &judged.summary;
        let report = self.coverage.report(&judged.engine);
        let rules = report
            .rules
            .into_iter()
            .map(|rule| {
                let seen = !s.unused_rules.iter().any(|u| u.id == rule.id);
                RuleRow { rule, seen }
            })
            .collect();
        Page {
            title: format!("monitor check: {}", s.pcap),
            subtitle: format!("the capture {} judged against the matrix {}", s.pcap, matrix.display()),
            counts: counts(s),
            facts: facts(s),
            graph,
            rules,
            findings: Findings::Listed(self.findings),
        }
    }
}

fn counts(s: &Summary) -> Vec<Count> {
    let c = &s.counts;
    vec![
        Count { label: "flows", value: c.flows, tone: "" },
        Count { label: "conforming", value: c.conforming, tone: "ok" },
        Count { label: "unexpected", value: c.unexpected, tone: "unexpected" },
        Count { label: "blocked", value: c.blocked, tone: "blocked" },
        Count { label: "exposed", value: c.exposed, tone: "exposed" },
        Count { label: "rules never seen", value: s.unused_rules.len() as u64, tone: "never" },
    ]
}

fn facts(s: &Summary) -> Vec<Fact> {
    let time = |t: Option<std::time::SystemTime>| {
        t.map(|t| humantime::format_rfc3339_seconds(t).to_string()).unwrap_or_else(|| "none".into())
    };
    let list = |m: &mut dyn Iterator<Item = (String, u64)>| {
        let v: Vec<String> = m.map(|(k, n)| format!("{k} {n}")).collect();
        v.join(", ")
    };
    let c = &s.counts;
    let mut facts = vec![
        Fact { label: "capture", value: s.pcap.clone() },
        Fact { label: "packets", value: s.packets.to_string() },
        Fact { label: "first packet", value: time(s.first_packet) },
        Fact { label: "last packet", value: time(s.last_packet) },
        Fact { label: "exposed but unanswered (not findings)", value: c.exposed_unanswered.to_string() },
        Fact { label: "awaiting an answer at the end", value: c.awaiting.to_string() },
        Fact { label: "network control (not judged)", value: c.network_control.to_string() },
        Fact {
            label: "packets not counted into a flow",
            value: if s.skipped.is_empty() {
                "none: every packet was counted into a flow".into()
            } else {
                list(&mut s.skipped.iter().map(|(k, n)| (k.to_string(), *n)))
            },
        },
        Fact { label: "ICMP errors matched to a flow", value: s.icmp_errors_matched.to_string() },
    ];
    if !s.dns.is_empty() {
        facts.push(Fact {
            label: "passive DNS",
            value: list(&mut s.dns.iter().map(|(k, n)| (k.clone(), *n))),
        });
    }
    facts.push(Fact {
        label: "documented rules",
        value: format!("{}, of which {} never seen", s.rules, s.unused_rules.len()),
    });
    facts
}
