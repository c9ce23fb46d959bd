//! From flows to findings: the per-flow judgement that `monitor check` and
//! the live monitor share ([`assess`]), and the tally of a whole run
//! ([`Tally`]) that `monitor check` prints as its summary.

use std::{collections::BTreeSet, time::SystemTime};

use monitor_common::{tcp_flag, Stat};
use serde::Serialize;

use crate::{
    alert::{Alert, Kind, Names, SCHEMA},
    engine::{Engine, FlowQuery, RuleIdx, SideInfo, Verdict, VerdictKind},
    flow::{ser_time, Flow, FlowState, Proto},
    matrix::format_ports,
    track::Stats,
};

/// What one flow comes to.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Documented, and (as far as seen) it works.
    Conforming,
    /// A finding to report (boxed: findings are rare, verdicts are not).
    Finding(Box<Alert>),
    /// Reaches a port it must not, but the server never answered: the
    /// firewall did its job. Not a finding; counted.
    ExposedUnanswered,
}

/// The question the engine answers for a flow: ICMP has no port.
pub fn query(flow: &Flow) -> FlowQuery {
    let port = match flow.proto {
        Proto::Tcp | Proto::Udp => flow.server.port,
        Proto::Icmp | Proto::Icmpv6 => 0,
    };
    FlowQuery {
        client: flow.client.ip,
        server: flow.server.ip,
        port,
        proto: flow.proto,
        initiator_seen: flow.initiator_seen,
    }
}

/// Judges one flow: the verdict (cheap, no allocation) and, only for a
/// finding, the explained alert.
///
/// A flow whose answer is still awaited is judged as it stands: conforming
/// until its answer timeout passes, then blocked if nothing came back. The
/// live monitor calls this again when the flow's state changes.
pub fn assess(engine: &Engine, flow: &Flow) -> (Verdict, Outcome) {
    let q = query(flow);
    let v = engine.verdict(&q);
    (v, outcome(engine, flow, &q, &v))
}

fn outcome(engine: &Engine, flow: &Flow, q: &FlowQuery, v: &Verdict) -> Outcome {
    let (kind, detail) = match v.kind {
        VerdictKind::Unexpected => (Kind::Unexpected, None),
        VerdictKind::Conforming => match blocked_reason(flow) {
            Some(reason) => (Kind::Blocked, Some(reason)),
            None => return Outcome::Conforming,
        },
        VerdictKind::Exposed => match answer(flow) {
            Some(how) => (Kind::Exposed, Some(format!("the server answered ({how})"))),
            None => return Outcome::ExposedUnanswered,
        },
    };
    // Only findings pay for the explanation's allocations.
    let e = engine.explain(q, v);
    let (rule, reason) = match (kind, detail) {
        (Kind::Blocked, Some(d)) => (v.rule.map(|r| engine.rule(r).id.clone()), d),
        (Kind::Exposed, Some(d)) => (e.exposure.clone(), format!("{}; {d}", e.reason)),
        _ => (None, e.reason.clone()),
    };
    let mut a = Alert::new(kind, flow, names(&e.client), names(&e.server), rule, reason);
    a.closest = e.closest;
    Outcome::Finding(Box::new(a))
}

fn names(s: &SideInfo) -> Names {
    Names::from_lists(&s.hosts, &s.services, &s.zones)
}

/// Why a documented flow failed, if it did. The reason starts with one of
/// the tokens of docs/alerts.md: `refused`, `unanswered`, `icmp NAME`.
fn blocked_reason(flow: &Flow) -> Option<String> {
    match flow.state {
        FlowState::Refused => {
            Some("refused: the server answered the connection attempt with a TCP reset".into())
        }
        FlowState::Unanswered => Some(match flow.proto {
            Proto::Tcp => "unanswered: the SYN got no answer within the answer timeout".into(),
            _ => "unanswered: nothing came back within the answer timeout".into(),
        }),
        FlowState::IcmpUnreachable => {
            let i = flow.icmp_error.expect("an icmp-unreachable flow carries its ICMP error");
            Some(format!(
                "icmp {}: the client's packet was rejected with ICMP type {} code {}",
                i.name, i.icmp_type, i.code
            ))
        }
        _ => None,
    }
}

/// Whether, and how, the server answered: SYN-ACK for TCP (or traffic both
/// ways on a flow joined mid-stream), any reply for UDP and ICMP that is not
/// an ICMP error about the client's packets.
fn answer(flow: &Flow) -> Option<&'static str> {
    match flow.proto {
        Proto::Tcp if flow.tcp_flags.to_client.has(tcp_flag::SYN_ACK) => Some("SYN-ACK"),
        Proto::Tcp if !flow.initiator_seen && flow.to_client.packets > 0 => {
            Some("traffic in both directions")
        }
        Proto::Tcp => None,
        _ if flow.state == FlowState::Answered => Some("reply"),
        _ => None,
    }
}

/// Counts of a whole run, and the rules it saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub flows: u64,
    pub conforming: u64,
    pub unexpected: u64,
    pub blocked: u64,
    pub exposed: u64,
    pub exposed_unanswered: u64,
    /// Flows still waiting for an answer when the capture ended.
    pub awaiting: u64,
    seen: BTreeSet<RuleIdx>,
}

impl Tally {
    pub fn add(&mut self, flow: &Flow, verdict: &Verdict, outcome: &Outcome) {
        self.flows += 1;
        if let Some(r) = verdict.rule {
            self.seen.insert(r);
        }
        if flow.state == FlowState::Awaiting {
            self.awaiting += 1;
        }
        match outcome {
            Outcome::Conforming => self.conforming += 1,
            Outcome::ExposedUnanswered => self.exposed_unanswered += 1,
            Outcome::Finding(a) => match a.kind {
                Kind::Unexpected => self.unexpected += 1,
                Kind::Blocked => self.blocked += 1,
                Kind::Exposed => self.exposed += 1,
            },
        }
    }

    pub fn findings(&self) -> u64 {
        self.unexpected + self.blocked + self.exposed
    }

    /// The active rules that no flow matched, in matrix order.
    pub fn unused_rules(&self, engine: &Engine) -> Vec<UnusedRule> {
        engine
            .rules()
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.seen.contains(&RuleIdx(*i as u32)))
            .map(|(_, r)| UnusedRule {
                id: r.id.clone(),
                source: r.source.clone(),
                target: r.target.clone(),
                ports: if r.ports.is_empty() { String::new() } else { format_ports(&r.ports) },
                proto: r.proto,
                provenance: r.provenance.clone(),
            })
            .collect()
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
    pub flows: u64,
    pub conforming: u64,
    pub unexpected: u64,
    pub blocked: u64,
    pub exposed: u64,
    pub exposed_unanswered: u64,
    pub awaiting: u64,
    /// Packets that were not counted into any flow, by reason (non-zero only).
    pub skipped: std::collections::BTreeMap<&'static str, u64>,
    /// ICMP errors attributed to a flow (not counted as flow packets).
    pub icmp_errors_matched: u64,
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
    ) -> Summary {
        let time = |ns: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
        Summary {
            record: "summary",
            schema: SCHEMA,
            pcap,
            packets: stats.get(Stat::Packets),
            first_packet: first.map(time),
            last_packet: last.map(time),
            flows: tally.flows,
            conforming: tally.conforming,
            unexpected: tally.unexpected,
            blocked: tally.blocked,
            exposed: tally.exposed,
            exposed_unanswered: tally.exposed_unanswered,
            awaiting: tally.awaiting,
            skipped: stats.skipped().map(|(s, n)| (s.name(), n)).collect(),
            icmp_errors_matched: stats.get(Stat::IcmpErrorMatched),
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
        let _ = writeln!(s, "{}: {} packets{span}, {} flows", self.pcap, self.packets, self.flows);
        let _ = writeln!(
            s,
            "  conforming {}, unexpected {}, blocked {}, exposed {} (exposed but unanswered {}), awaiting an answer {}",
            self.conforming, self.unexpected, self.blocked, self.exposed, self.exposed_unanswered, self.awaiting
        );
        if self.skipped.is_empty() {
            let _ = writeln!(s, "  every packet was counted into a flow");
        } else {
            let list: Vec<String> = self.skipped.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(s, "  packets not counted into a flow: {}", list.join(", "));
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
