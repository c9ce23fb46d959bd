//! The judgement of one flow, shared by both front ends: `monitor check`
//! (a capture, [`crate::replay`]) and `monitor run` (the kernel's table,
//! [`crate::live`]) ask [`assess`] the same question and count what it
//! answers in the same [`Counts`], so that a flow comes out the same
//! whichever way it was seen.

use monitor_common::tcp_flag;
use serde::Serialize;

use crate::{
    alert::{Alert, Kind, Names},
    engine::{Engine, FlowQuery, SideInfo, Verdict, VerdictKind},
    flow::{Flow, FlowState, Proto},
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

/// The line of [`Counts`] a flow's outcome falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Conforming,
    Unexpected,
    Blocked,
    Exposed,
    ExposedUnanswered,
    NetworkControl,
}

impl Outcome {
    pub fn bucket(&self) -> Bucket {
        match self {
            Outcome::Conforming => Bucket::Conforming,
            Outcome::ExposedUnanswered => Bucket::ExposedUnanswered,
            Outcome::NetworkControl => Bucket::NetworkControl,
            Outcome::Finding(a) => match a.kind {
                Kind::Unexpected => Bucket::Unexpected,
                Kind::Blocked => Bucket::Blocked,
                Kind::Exposed => Bucket::Exposed,
                // Only the live de-duplicator makes overflow alerts, never
                // the engine: no flow comes out as one.
                Kind::Overflow => Bucket::Unexpected,
            },
        }
    }
}

/// How the flows of a run came out, each flow counted once, by its latest
/// outcome: the summary of `monitor check` and the exit line of `monitor run`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub flows: u64,
    /// Documented, and (as far as seen) working.
    pub conforming: u64,
    pub unexpected: u64,
    /// Documented, and failed (refused, unanswered, rejected by ICMP).
    pub blocked: u64,
    /// Reached a port it must not, and the server answered.
    pub exposed: u64,
    /// Reached a port it must not, but nothing answered: not a finding.
    pub exposed_unanswered: u64,
    /// Flows still waiting for an answer when the capture ended (replay
    /// only: a live flow waits on).
    pub awaiting: u64,
    /// Neighbour discovery and other control traffic of IP itself: not judged.
    pub network_control: u64,
}

impl Counts {
    /// One more flow, with this outcome.
    pub fn add(&mut self, b: Bucket) {
        self.flows += 1;
        *self.line(b) += 1;
    }

    /// A flow counted as `from` came out `to` when judged again (live: its
    /// SYN timed out, the exposed server answered).
    pub fn moved(&mut self, from: Bucket, to: Bucket) {
        if from != to {
            let old = self.line(from);
            *old = old.saturating_sub(1);
            *self.line(to) += 1;
        }
    }

    pub fn findings(&self) -> u64 {
        self.unexpected + self.blocked + self.exposed
    }

    fn line(&mut self, b: Bucket) -> &mut u64 {
        match b {
            Bucket::Conforming => &mut self.conforming,
            Bucket::Unexpected => &mut self.unexpected,
            Bucket::Blocked => &mut self.blocked,
            Bucket::Exposed => &mut self.exposed,
            Bucket::ExposedUnanswered => &mut self.exposed_unanswered,
            Bucket::NetworkControl => &mut self.network_control,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{path::Path, time::Duration};

    use monitor_common::{initiator_how, proto, side, tcp_flag, FlowKey, FlowValue, IcmpError};

    use super::*;
    use crate::{
        flow::{addr_key, EpochClock, NoHint},
        matrix::{Matrix, Selection},
    };

    pub(crate) const MATRIX: &str = r#"
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

    pub(crate) const APP: &str = "10.0.1.10";
    pub(crate) const LOGS: &str = "10.0.1.20";
    pub(crate) const CLIENT: &str = "10.0.2.7";
    pub(crate) const NOW: u64 = 1_775_469_600_000_000_000;
    pub(crate) const SEC: u64 = 1_000_000_000;
    pub(crate) const SYN: u32 = tcp_flag::SYN;
    pub(crate) const SYN_ACK: u32 = tcp_flag::SYN_ACK | tcp_flag::ACK;
    pub(crate) const RST: u32 = tcp_flag::RST | tcp_flag::ACK;

    pub(crate) fn engine() -> Engine {
        let (m, _) = Matrix::from_str(MATRIX, "test.yaml", Path::new(".")).expect("test matrix");
        Engine::new(&m, None, &Selection::default()).expect("engine")
    }

    /// A flow from `client:40000` to `server:port` whose first packet came
    /// `age` seconds before the end of the capture: TCP with the flags seen
    /// each way, or a datagram flow with `replies` packets back.
    pub(crate) fn entry(
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

    pub(crate) fn tcp(server: &str, port: u16, flags: (u32, u32), age: u64) -> (FlowKey, FlowValue) {
        entry(proto::TCP, CLIENT, server, port, flags, u64::from(flags.1 != 0), age)
    }

    pub(crate) fn to_flow((k, v): (FlowKey, FlowValue)) -> Flow {
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
    fn counts_move_a_flow_from_line_to_line() {
        let mut c = Counts::default();
        c.add(Bucket::Conforming);
        c.add(Bucket::ExposedUnanswered);
        c.moved(Bucket::Conforming, Bucket::Blocked);
        c.moved(Bucket::ExposedUnanswered, Bucket::Exposed);
        c.moved(Bucket::Exposed, Bucket::Exposed);
        assert_eq!((c.flows, c.conforming, c.blocked, c.exposed_unanswered, c.exposed), (2, 0, 1, 0, 1));
        assert_eq!(c.findings(), 2);
    }
}
