//! Judging live flows: each flow is judged when it first appears and again
//! whenever it changes (its answer arrives, its SYN times out), and each
//! finding is reported once per flow. The traffic of documented flows is
//! added to the coverage of their rule.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use monitor_common::FlowKey;

use super::{
    coverage::{Coverage, RuleSlot},
    tally::{Attempt, Tally},
};
use crate::{
    alert::{Alert, Kind},
    engine::{Engine, VerdictKind},
    flow::{Flow, FlowId, FlowState, IdMap},
    verdict::{assess, Bucket, Counts, Outcome},
};

/// What the judge remembers of a flow between observations: one per live
/// flow, so kept small (with its id, 32 bytes a flow: at a million flows
/// the map is 2^21 buckets of 33 bytes, 66 MiB).
struct Seen {
    /// The state the flow was last judged in: a flow is judged again only
    /// when its state changes, not at every table read.
    state: FlowState,
    /// The table read in which the flow was last seen (wraps: only equality
    /// with the current read matters, and every flow the last read did not
    /// see is forgotten at its end).
    gen: u8,
    verdict: VerdictKind,
    /// The rule documenting the flow, for coverage.
    rule: Option<RuleSlot>,
    /// The finding already reported for this flow.
    alerted: Option<Kind>,
    blocked_counted: bool,
    /// Whether the attempt's outcome is counted on its path (once decided).
    attempt_counted: bool,
    /// The line of [`Counts`] the flow is counted in now.
    counted: Bucket,
    /// Traffic already added to the rule's coverage: the packets as their
    /// low 32 bits (a flow does not send 2^31 packets between two reads).
    packets: u32,
    bytes: u64,
}

const _: () = assert!(std::mem::size_of::<(FlowId, Seen)>() == 32, "Seen is held once per live flow");

/// The result of one observation.
#[derive(Debug, Default)]
pub struct Judged {
    /// A finding not yet reported for this flow.
    pub alert: Option<Alert>,
    /// The finding already reported for this flow, judged again because
    /// the flow's state changed (an unexpected attempt answered, refused
    /// or closed): not an alert, but the live state shows how it went.
    pub refreshed: Option<Alert>,
    /// Set on the first observation of a flow: its verdict.
    pub new_flow: Option<VerdictKind>,
    /// Time spent in the engine; `None` when the flow was not judged again
    /// (its state had not changed).
    pub engine_time: Option<Duration>,
}

pub struct Judge {
    engine: Arc<Engine>,
    flows: IdMap<Seen>,
    /// Network-control flows already counted, with the table read that last saw them.
    control: IdMap<u8>,
    /// The current table read; flows not seen in it are forgotten at its end.
    gen: u8,
    pub coverage: Coverage,
    /// Every flow seen, by its latest outcome.
    pub counts: Counts,
    /// Attempts by documented path, and findings, for the fleet metrics.
    pub tally: Tally,
}

impl Judge {
    pub fn new(engine: Arc<Engine>, tally: Tally) -> Judge {
        Judge {
            tally,
            engine,
            flows: IdMap::default(),
            control: IdMap::default(),
            gen: 0,
            coverage: Coverage::default(),
            counts: Counts::default(),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Swaps in a reloaded engine. Flows already judged keep their verdicts
    /// (they were judged against the matrix in force when they started);
    /// coverage is kept by rule id, so it survives the reload.
    pub fn set_engine(&mut self, engine: Arc<Engine>) {
        self.engine = engine;
    }

    pub fn tracked(&self) -> usize {
        self.flows.len()
    }

    /// How the tracked flow `key` stands: the line of the counts it is in
    /// and the id of the rule documenting it; `None` for a flow not judged.
    pub fn standing(&self, key: &FlowKey) -> Option<(Bucket, Option<&Arc<str>>)> {
        let id = FlowId::of(key);
        if self.control.contains_key(&id) {
            return Some((Bucket::NetworkControl, None));
        }
        self.flows.get(&id).map(|s| (s.counted, s.rule.map(|r| self.coverage.id(r))))
    }

    pub fn observe(&mut self, flow: &Flow) -> Judged {
        let id = FlowId::of(&flow.key);
        if let Some(seen) = self.flows.get_mut(&id) {
            seen.gen = self.gen;
            if seen.state == flow.state {
                // Nothing to judge: only the documented rule's traffic moves.
                add_traffic(&mut self.coverage, seen, flow);
                return Judged::default();
            }
        }
        let started = Instant::now();
        let (verdict, outcome) = assess(&self.engine, flow);
        let mut judged = Judged { engine_time: Some(started.elapsed()), ..Judged::default() };
        if outcome == Outcome::NetworkControl {
            if self.control.insert(id, self.gen).is_none() {
                self.counts.add(Bucket::NetworkControl);
            }
            return judged;
        }

        let (engine, coverage) = (&self.engine, &mut self.coverage);
        let seen = self.flows.entry(id).or_insert_with(|| {
            judged.new_flow = Some(verdict.kind);
            Seen {
                state: flow.state,
                gen: self.gen,
                verdict: verdict.kind,
                rule: verdict.rule.map(|r| coverage.slot(&engine.rule(r).id)),
                alerted: None,
                blocked_counted: false,
                attempt_counted: false,
                counted: outcome.bucket(),
                packets: 0,
                bytes: 0,
            }
        });
        if let Some(kind) = judged.new_flow {
            self.counts.add(seen.counted);
            if let (VerdictKind::Conforming, Some(rule)) = (kind, seen.rule) {
                self.coverage.add_flow(rule);
            }
        } else {
            self.counts.moved(seen.counted, outcome.bucket());
            seen.counted = outcome.bucket();
        }
        seen.state = flow.state;
        add_traffic(&mut self.coverage, seen, flow);
        if let (VerdictKind::Conforming, Some(rule), false) = (seen.verdict, seen.rule, seen.attempt_counted)
        {
            if let Some(attempt) = Attempt::of(flow.state) {
                seen.attempt_counted = true;
                self.tally.attempt(&self.engine, self.coverage.id(rule), flow, attempt);
            }
        }
        if let Outcome::Finding(alert) = outcome {
            if seen.alerted != Some(alert.kind) {
                seen.alerted = Some(alert.kind);
                if alert.kind == Kind::Blocked && !seen.blocked_counted {
                    seen.blocked_counted = true;
                    if let Some(rule) = seen.rule {
                        self.coverage.add_blocked(rule);
                    }
                }
                self.tally.finding(
                    &self.engine,
                    alert.kind,
                    alert.rule.as_deref(),
                    flow.client.ip,
                    flow.server.ip,
                );
                judged.alert = Some(*alert);
            } else {
                judged.refreshed = Some(*alert);
            }
        }
        judged
    }

    /// Starts judging a full table read.
    pub fn begin_table(&mut self) {
        self.gen = self.gen.wrapping_add(1);
    }

    /// Marks a flow as present in the current table without judging it.
    pub fn touch(&mut self, key: &FlowKey) {
        if let Some(seen) = self.flows.get_mut(&FlowId::of(key)) {
            seen.gen = self.gen;
        }
    }

    /// After a full table: forgets the flows it did not hold (expired or
    /// evicted in the kernel).
    pub fn end_table(&mut self) {
        let gen = self.gen;
        self.flows.retain(|_, s| s.gen == gen);
        self.control.retain(|_, g| *g == gen);
    }
}

/// Adds what a documented flow carried since it was last seen to its
/// rule's coverage.
fn add_traffic(coverage: &mut Coverage, seen: &mut Seen, flow: &Flow) {
    let (VerdictKind::Conforming, Some(rule)) = (seen.verdict, seen.rule) else { return };
    let packets = flow.to_server.packets + flow.to_client.packets;
    let bytes = flow.to_server.bytes + flow.to_client.bytes;
    // A read can come out short of the one before (a cache write-back
    // between its two halves, see kernel::table): nothing is added then.
    let new_packets = if seen.bytes == 0 && seen.packets == 0 {
        packets
    } else {
        match (packets as u32).wrapping_sub(seen.packets) {
            d if d < 1 << 31 => u64::from(d),
            _ => 0,
        }
    };
    coverage.add_traffic(rule, new_packets, bytes.saturating_sub(seen.bytes), flow.last_seen);
    if new_packets > 0 {
        seen.packets = packets as u32;
    }
    seen.bytes = seen.bytes.max(bytes);
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::flow::{Counters, Endpoint, Proto};

    fn conforming(rule: RuleSlot) -> Seen {
        Seen {
            state: FlowState::Established,
            gen: 0,
            verdict: VerdictKind::Conforming,
            rule: Some(rule),
            alerted: None,
            blocked_counted: false,
            attempt_counted: false,
            counted: Bucket::Conforming,
            packets: 0,
            bytes: 0,
        }
    }

    /// A flow whose table entry reads `packets` and `bytes` in all.
    fn read(packets: u64, bytes: u64) -> Flow {
        let ip = |d| IpAddr::V4(Ipv4Addr::new(10, 200, 0, d));
        let mut f = Flow::attempt(
            Proto::Tcp,
            Endpoint { ip: ip(2), port: 40000 },
            Endpoint { ip: ip(1), port: 443 },
            FlowState::Established,
        );
        f.to_server = Counters { packets: packets - packets / 2, bytes: bytes - bytes / 2 };
        f.to_client = Counters { packets: packets / 2, bytes: bytes / 2 };
        f
    }

    /// Feeds the reads in order and gives the rule's packets and bytes
    /// after each.
    fn coverage_after(reads: &[(u64, u64)]) -> Vec<(u64, u64)> {
        let mut coverage = Coverage::default();
        let rule = coverage.slot("r1");
        let mut seen = conforming(rule);
        reads
            .iter()
            .map(|&(p, b)| {
                add_traffic(&mut coverage, &mut seen, &read(p, b));
                let u = coverage.get("r1").expect("the rule has a slot");
                (u.packets, u.bytes)
            })
            .collect()
    }

    #[test]
    fn each_read_adds_what_the_flow_carried_since_the_last() {
        assert_eq!(coverage_after(&[(3, 300), (3, 300), (10, 1000)]), [(3, 300), (3, 300), (10, 1000)]);
    }

    #[test]
    fn a_first_read_past_2_to_the_32_packets_adds_them_all() {
        let p = (1u64 << 32) + 5;
        assert_eq!(
            coverage_after(&[(p, 9 << 32), (p + 2, (9 << 32) + 100)]),
            [(p, 9 << 32), (p + 2, (9 << 32) + 100)]
        );
    }

    #[test]
    fn packets_add_across_the_wrap_of_their_low_32_bits() {
        let p = (1u64 << 32) - 3;
        assert_eq!(coverage_after(&[(p, 1000), (p + 10, 2000)]), [(p, 1000), (p + 10, 2000)]);
    }

    #[test]
    fn a_short_read_adds_nothing_and_the_next_adds_from_the_highest() {
        // The second read comes out short of the first (a cache write-back
        // between its halves); the third is whole again.
        assert_eq!(
            coverage_after(&[(100, 10_000), (90, 9_000), (120, 12_000)]),
            [(100, 10_000), (100, 10_000), (120, 12_000)]
        );
    }

    #[test]
    fn an_undocumented_flow_adds_nothing() {
        let mut coverage = Coverage::default();
        let rule = coverage.slot("r1");
        let mut seen = Seen { verdict: VerdictKind::Unexpected, ..conforming(rule) };
        add_traffic(&mut coverage, &mut seen, &read(5, 500));
        let u = coverage.get("r1").expect("the rule has a slot");
        assert_eq!((u.packets, u.bytes), (0, 0));
        assert_eq!((seen.packets, seen.bytes), (0, 0));
    }
}
