//! Replaying a capture (`monitor check`): packets from a pcap or pcapng
//! file ([`pcap`]) become flows as the kernel would count them ([`track`]),
//! each ended flow is judged ([`crate::verdict`]) in the order it started
//! ([`InOrder`]), and the run is tallied ([`Tally`]) into the [`Summary`]
//! that `monitor check` prints last. [`judge`] runs the whole loop.

pub mod judge;
mod pages;
pub mod pcap;
pub mod track;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::SystemTime,
};

use monitor_common::{FlowKey, FlowValue, Stat};
use serde::Serialize;

use crate::{
    alert::SCHEMA,
    engine::{Engine, RuleIdx, RuleInfo, Verdict},
    flow::{ser_time, Flow, FlowState, Proto},
    matrix::format_ports,
    verdict::{Counts, Outcome},
};
use track::Stats;

/// Counts of a whole run, and the rules it saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub counts: Counts,
    seen: BTreeSet<RuleIdx>,
}

impl Tally {
    pub fn add(&mut self, flow: &Flow, verdict: &Verdict, outcome: &Outcome) {
        self.counts.add(outcome.bucket());
        if *outcome == Outcome::NetworkControl {
            return;
        }
        if let Some(r) = verdict.rule {
            self.seen.insert(r);
        }
        if flow.state == FlowState::Awaiting {
            self.counts.awaiting += 1;
        }
    }

    pub fn findings(&self) -> u64 {
        self.counts.findings()
    }

    /// The active rules that no flow matched, in matrix order.
    pub fn unused_rules(&self, engine: &Engine) -> Vec<UnusedRule> {
        engine
            .rules()
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.seen.contains(&RuleIdx(*i as u32)))
            .map(|(_, r)| UnusedRule::of(r))
            .collect()
    }
}

/// How many ended flows [`InOrder`] holds back, at most, for a flow that
/// started before them and is still open: beyond this the oldest are judged
/// anyway, so that one long connection cannot make a replay keep every flow.
pub const MAX_HELD_FLOWS: usize = 65_536;

/// The ended flows of a replay, handed out in the order they started (first
/// packet, then key: the order of [`track::Tracker::flows`]), so that
/// findings come out in that order and each flow is judged with the names
/// DNS had bound when it started, however long it lasted.
#[derive(Debug, Default)]
pub struct InOrder {
    held: BTreeMap<(u64, FlowKey), FlowValue>,
}

impl InOrder {
    pub fn add(&mut self, ended: impl IntoIterator<Item = (FlowKey, FlowValue)>) {
        self.held.extend(ended.into_iter().map(|(k, v)| ((v.first_seen_ns, k), v)));
    }

    /// Flows held now.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The flows that started before `oldest_open` (the first packet of the
    /// oldest flow still open; `None` when none is, which hands out all),
    /// and the oldest beyond [`MAX_HELD_FLOWS`]; in start order.
    pub fn ready(&mut self, oldest_open: Option<u64>) -> Vec<(FlowKey, FlowValue)> {
        let mut out = Vec::new();
        loop {
            let held = self.held.len();
            let Some(entry) = self.held.first_entry() else { break };
            let started = entry.key().0;
            let before = oldest_open.is_none_or(|t| started < t);
            if !before && held <= MAX_HELD_FLOWS {
                break;
            }
            let ((_, k), v) = entry.remove_entry();
            out.push((k, v));
        }
        out
    }
}

/// A documented rule that no flow of the run matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnusedRule {
    pub id: String,
    pub source: String,
    pub target: String,
    /// As written in matrices: "7001-7012", "443"; empty for ICMP.
    pub ports: String,
    pub proto: Proto,
    /// `file:line` of the rule.
    pub provenance: String,
}

impl UnusedRule {
    /// The rule `r` of the engine, as the summary lists it.
    pub fn of(r: &RuleInfo) -> UnusedRule {
        UnusedRule {
            id: r.id.clone(),
            source: r.source.clone(),
            target: r.target.clone(),
            ports: if r.ports.is_empty() { String::new() } else { format_ports(&r.ports) },
            proto: r.proto,
            provenance: r.provenance.clone(),
        }
    }
}

/// The last JSON line of `monitor check`.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    #[serde(rename = "type")]
    pub record: &'static str,
    pub schema: u32,
    pub pcap: String,
    pub packets: u64,
    #[serde(serialize_with = "ser_opt_time")]
    pub first_packet: Option<SystemTime>,
    #[serde(serialize_with = "ser_opt_time")]
    pub last_packet: Option<SystemTime>,
    #[serde(flatten)]
    pub counts: Counts,
    /// Packets that were not counted into any flow, by reason (non-zero only).
    pub skipped: std::collections::BTreeMap<&'static str, u64>,
    /// ICMP errors attributed to a flow (not counted as flow packets).
    pub icmp_errors_matched: u64,
    /// Passive DNS counters, as named in the live monitor's metrics (non-zero only).
    pub dns: std::collections::BTreeMap<String, u64>,
    pub rules: usize,
    pub unused_rules: Vec<UnusedRule>,
}

impl Summary {
    pub fn new(
        pcap: String,
        stats: &Stats,
        first: Option<u64>,
        last: Option<u64>,
        tally: &Tally,
        engine: &Engine,
        dns: Vec<(String, u64)>,
    ) -> Summary {
        let time = |ns: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
        Summary {
            record: "summary",
            schema: SCHEMA,
            pcap,
            packets: stats.get(Stat::Packets),
            first_packet: first.map(time),
            last_packet: last.map(time),
            counts: tally.counts,
            skipped: stats.skipped().map(|(s, n)| (s.name(), n)).collect(),
            icmp_errors_matched: stats.get(Stat::IcmpErrorMatched),
            dns: dns.into_iter().filter(|(_, n)| *n > 0).collect(),
            rules: engine.rules().len(),
            unused_rules: tally.unused_rules(engine),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a summary always serialises")
    }

    /// The human form, several lines.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let span = match (self.first_packet, self.last_packet) {
            (Some(a), Some(b)) => {
                format!(
                    ", {} to {}",
                    humantime::format_rfc3339_seconds(a),
                    humantime::format_rfc3339_seconds(b)
                )
            }
            _ => String::new(),
        };
        let _ = writeln!(s, "{}: {} packets{span}, {} flows", self.pcap, self.packets, self.counts.flows);
        let _ = writeln!(
            s,
            "  conforming {}, unexpected {}, blocked {}, exposed {} (exposed but unanswered {}), awaiting an answer {}, \
             network control (not judged) {}",
            self.counts.conforming,
            self.counts.unexpected,
            self.counts.blocked,
            self.counts.exposed,
            self.counts.exposed_unanswered,
            self.counts.awaiting,
            self.counts.network_control
        );
        if self.skipped.is_empty() {
            let _ = writeln!(s, "  every packet was counted into a flow");
        } else {
            let list: Vec<String> = self.skipped.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(s, "  packets not counted into a flow: {}", list.join(", "));
        }
        if !self.dns.is_empty() {
            let list: Vec<String> = self.dns.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(s, "  passive DNS: {}", list.join(", "));
        }
        if self.unused_rules.is_empty() {
            let _ = writeln!(s, "  every documented rule ({}) was seen", self.rules);
        } else {
            let _ =
                writeln!(s, "  documented rules never seen ({} of {}):", self.unused_rules.len(), self.rules);
            for r in &self.unused_rules {
                let what =
                    if r.ports.is_empty() { r.proto.to_string() } else { format!("{}/{}", r.ports, r.proto) };
                let _ =
                    writeln!(s, "    {:<28} {} -> {} {what}  ({})", r.id, r.source, r.target, r.provenance);
            }
        }
        s
    }
}

fn ser_opt_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ser_time(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{
        assess,
        tests::{engine, tcp, to_flow, APP, LOGS, SYN, SYN_ACK},
    };
    use monitor_common::tcp_flag;

    #[test]
    fn the_tally_counts_outcomes_and_lists_rules_never_seen() {
        let e = engine();
        let mut t = Tally::default();
        for entry in [
            tcp(APP, 443, (SYN | tcp_flag::ACK, SYN_ACK), 10),
            tcp(APP, 443, (SYN, 0), 10),
            tcp(APP, 443, (SYN, 0), 1),
            tcp(APP, 9000, (SYN, 0), 10),
            tcp(LOGS, 22, (SYN, SYN_ACK), 10),
        ] {
            let f = to_flow(entry);
            let (v, o) = assess(&e, &f);
            t.add(&f, &v, &o);
        }
        let c = t.counts;
        assert_eq!(
            (c.flows, c.conforming, c.blocked, c.exposed_unanswered, c.unexpected, c.awaiting),
            (5, 2, 1, 1, 1, 1)
        );
        assert_eq!(t.findings(), 2);
        let unused: Vec<String> = t.unused_rules(&e).into_iter().map(|r| r.id).collect();
        assert_eq!(unused, vec!["syslog".to_string(), "admin".to_string()]);
    }
}
