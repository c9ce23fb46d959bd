//! From flows to findings: the per-flow judgement that `monitor check` and
//! the live monitor share ([`assess`]), and the tally of a whole run
//! ([`Tally`]) that `monitor check` prints as its summary.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::SystemTime,
};

use monitor_common::{tcp_flag, FlowKey, FlowValue, Stat};
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
    /// Link-level control traffic of IP itself (neighbour discovery, ...):
    /// not judged; counted.
    NetworkControl,
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
    if flow.network_control().is_some() {
        return (v, Outcome::NetworkControl);
    }
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
///
/// Only TCP can be unanswered: a datagram without a reply proves nothing
/// (syslog, SNMP traps and heartbeats never answer), so UDP and ICMP are
/// blocked only when an ICMP error says so.
fn blocked_reason(flow: &Flow) -> Option<String> {
    match flow.state {
        FlowState::Refused => {
            Some("refused: the server answered the connection attempt with a TCP reset".into())
        }
        FlowState::Unanswered if flow.proto == Proto::Tcp => {
            Some("unanswered: the SYN got no answer within the answer timeout".into())
        }
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

/// How the flows of a run came out: [`Tally`] counts them, the summary
/// line prints them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub flows: u64,
    pub conforming: u64,
    pub unexpected: u64,
    pub blocked: u64,
    pub exposed: u64,
    pub exposed_unanswered: u64,
    /// Flows still waiting for an answer when the capture ended.
    pub awaiting: u64,
    /// Neighbour discovery and other control traffic of IP itself: not judged.
    pub network_control: u64,
}

/// Counts of a whole run, and the rules it saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub counts: Counts,
    seen: BTreeSet<RuleIdx>,
}

impl Tally {
    pub fn add(&mut self, flow: &Flow, verdict: &Verdict, outcome: &Outcome) {
        self.counts.flows += 1;
        if *outcome == Outcome::NetworkControl {
            self.counts.network_control += 1;
            return;
        }
        if let Some(r) = verdict.rule {
            self.seen.insert(r);
        }
        if flow.state == FlowState::Awaiting {
            self.counts.awaiting += 1;
        }
        match outcome {
            Outcome::Conforming => self.counts.conforming += 1,
            Outcome::ExposedUnanswered => self.counts.exposed_unanswered += 1,
            Outcome::NetworkControl => {}
            Outcome::Finding(a) => match a.kind {
                Kind::Unexpected => self.counts.unexpected += 1,
                Kind::Blocked => self.counts.blocked += 1,
                Kind::Exposed => self.counts.exposed += 1,
                // Only the live de-duplicator makes these, never the engine.
                Kind::Overflow => {}
            },
        }
    }

    pub fn findings(&self) -> u64 {
        self.counts.unexpected + self.counts.blocked + self.counts.exposed
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

/// How many ended flows [`InOrder`] holds back, at most, for a flow that
/// started before them and is still open: beyond this the oldest are judged
/// anyway, so that one long connection cannot make a replay keep every flow.
pub const MAX_HELD_FLOWS: usize = 65_536;

/// The ended flows of a replay, handed out in the order they started (first
/// packet, then key: the order of [`crate::track::Tracker::flows`]), so that
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
    use std::{path::Path, time::Duration};

    use monitor_common::{initiator_how, proto, side, tcp_flag, FlowKey, FlowValue, IcmpError};

    use super::*;
    use crate::{
        engine::Selection,
        flow::{addr_key, EpochClock, NoHint},
        matrix::Matrix,
    };

    const MATRIX: &str = r#"
version: 1
zones:
  servers: {cidrs: ["10.0.1.0/24"]}
  clients: {cidrs: ["10.0.2.0/24"]}
services:
  app: {cidr: 10.0.1.10/32}
  logs: {cidr: 10.0.1.20/32}
rules:
  - {id: web, from: clients, to: app, port: 443}
  - {id: syslog, from: app, to: logs, port: 514, proto: udp}
  - {id: admin, from: app, to: app, port: 9000}
exposure:
  - {id: admin-local, to: app, port: 9000, only_from: [app]}
"#;

    const APP: &str = "10.0.1.10";
    const LOGS: &str = "10.0.1.20";
    const CLIENT: &str = "10.0.2.7";
    const NOW: u64 = 1_775_469_600_000_000_000;
    const SEC: u64 = 1_000_000_000;
    const SYN: u32 = tcp_flag::SYN;
    const SYN_ACK: u32 = tcp_flag::SYN_ACK | tcp_flag::ACK;
    const RST: u32 = tcp_flag::RST | tcp_flag::ACK;

    fn engine() -> Engine {
        let (m, _) = Matrix::from_str(MATRIX, "test.yaml", Path::new(".")).expect("test matrix");
        Engine::new(&m, None, &Selection::default()).expect("engine")
    }

    /// A flow from `client:40000` to `server:port` whose first packet came
    /// `age` seconds before the end of the capture: TCP with the flags seen
    /// each way, or a datagram flow with `replies` packets back.
    fn entry(
        p: u8,
        client: &str,
        server: &str,
        port: u16,
        flags: (u32, u32),
        replies: u64,
        age: u64,
    ) -> (FlowKey, FlowValue) {
        let (key, c2s) = FlowKey::canonical(
            addr_key(client.parse().unwrap()),
            40000,
            addr_key(server.parse().unwrap()),
            port,
            p,
        );
        let s2c = 1 - c2s;
        let mut v = FlowValue {
            first_seen_ns: NOW - age * SEC,
            last_seen_ns: NOW - age * SEC,
            initiator: if c2s == 0 { side::A } else { side::B },
            initiator_how: if p == proto::TCP { initiator_how::TCP_SYN } else { initiator_how::FIRST_PACKET },
            ..FlowValue::default()
        };
        v.packets[c2s] = 1;
        v.packets[s2c] = replies;
        v.tcp_flags[c2s] = flags.0;
        v.tcp_flags[s2c] = flags.1;
        (key, v)
    }

    fn tcp(server: &str, port: u16, flags: (u32, u32), age: u64) -> (FlowKey, FlowValue) {
        entry(proto::TCP, CLIENT, server, port, flags, u64::from(flags.1 != 0), age)
    }

    fn to_flow((k, v): (FlowKey, FlowValue)) -> Flow {
        Flow::from_entry(&k, &v, &EpochClock { now_ns: NOW }, &NoHint, Duration::from_secs(3)).unwrap()
    }

    fn judge(e: &Engine, entry: (FlowKey, FlowValue)) -> (Flow, Outcome) {
        let f = to_flow(entry);
        let (_, o) = assess(e, &f);
        (f, o)
    }

    fn finding(o: &Outcome) -> &Alert {
        match o {
            Outcome::Finding(a) => a,
            other => panic!("want a finding, got {other:?}"),
        }
    }

    #[test]
    fn a_documented_working_flow_conforms() {
        let (_, o) = judge(&engine(), tcp(APP, 443, (SYN | tcp_flag::ACK, SYN_ACK), 10));
        assert_eq!(o, Outcome::Conforming);
    }

    #[test]
    fn documented_tcp_failures_are_blocked_with_their_rule() {
        let e = engine();
        let (_, o) = judge(&e, tcp(APP, 443, (SYN, 0), 10));
        let a = finding(&o);
        assert_eq!((a.kind, a.rule.as_deref()), (Kind::Blocked, Some("web")));
        assert!(a.reason.starts_with("unanswered"), "{}", a.reason);

        let (_, o) = judge(&e, tcp(APP, 443, (SYN, RST), 10));
        assert!(finding(&o).reason.starts_with("refused"), "{o:?}");

        // Younger than the answer timeout: not yet a failure.
        let (_, o) = judge(&e, tcp(APP, 443, (SYN, 0), 1));
        assert_eq!(o, Outcome::Conforming);
    }

    #[test]
    fn udp_without_reply_is_not_blocked_but_an_icmp_error_is() {
        let e = engine();
        let (f, o) = judge(&e, entry(proto::UDP, APP, LOGS, 514, (0, 0), 0, 10));
        assert_eq!((f.state, o), (FlowState::Unanswered, Outcome::Conforming));

        let (k, mut v) = entry(proto::UDP, APP, LOGS, 514, (0, 0), 0, 10);
        v.icmp_error = IcmpError { v6: false, icmp_type: 3, code: 3, quoted_side: v.initiator }.pack();
        let (_, o) = judge(&e, (k, v));
        let a = finding(&o);
        assert_eq!((a.kind, a.rule.as_deref()), (Kind::Blocked, Some("syslog")));
        assert!(a.reason.starts_with("icmp port-unreachable"), "{}", a.reason);
        assert_eq!(a.icmp.map(|i| (i.icmp_type, i.code)), Some((3, 3)));
    }

    #[test]
    fn exposure_is_a_finding_only_when_the_server_answers() {
        let e = engine();
        let (_, o) = judge(&e, tcp(APP, 9000, (SYN | tcp_flag::ACK, SYN_ACK), 10));
        let a = finding(&o);
        assert_eq!((a.kind, a.rule.as_deref()), (Kind::Exposed, Some("admin-local")));
        assert!(a.reason.ends_with("the server answered (SYN-ACK)"), "{}", a.reason);
        assert_eq!(a.dst.names.service.as_deref(), Some("app"));
        assert_eq!(a.src.names.zone.as_deref(), Some("clients"));

        for (answer, age) in [(0, 10), (RST, 10), (0, 1)] {
            let (_, o) = judge(&e, tcp(APP, 9000, (SYN, answer), age));
            assert_eq!(o, Outcome::ExposedUnanswered, "answer {answer:#x}, age {age}s");
        }
    }

    #[test]
    fn undocumented_flows_are_unexpected_even_when_they_fail() {
        let e = engine();
        let (_, o) = judge(&e, tcp(LOGS, 514, (SYN, 0), 10));
        let a = finding(&o);
        assert_eq!((a.kind, a.rule.as_deref(), a.state), (Kind::Unexpected, None, FlowState::Unanswered));
        // Port 514 is documented over UDP from app only: that rule is the nearest.
        let (_, o) = judge(&e, entry(proto::UDP, CLIENT, LOGS, 514, (0, 0), 1, 10));
        assert_eq!(finding(&o).closest, vec!["syslog".to_string()]);
    }

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
