//! The flows believed to be in the kernel table, to notice the flows the
//! kernel's LRU evicts from a full table (each is counted in
//! `flows_evicted`) and to hand over, as last known, those whose eviction
//! can still change how they are judged.
//!
//! Every known flow costs its id ([`FlowId`], 8 bytes) and two numbers: the
//! read that last saw it, and the slot of its last value where that value is
//! kept (16 bytes a flow). A value, with its key to hand it over (128
//! bytes), is kept only where a later judgement of the evicted flow can
//! differ from what the consumer already judged:
//!
//! - a flow last known from a ring event (new, first answer, ICMP error):
//!   the consumer may not have seen that event (it drops events when
//!   behind), and no read has shown the flow since;
//! - a flow the last read saw awaiting its answer: it can still time out to
//!   `unanswered`, which only its last value, judged with a later clock,
//!   shows.
//!
//! Any other flow was judged by the consumer from the read that saw it, in
//! a state that no longer depends on time: judged again as last known, it
//! would come out the same (same state, same counters). Its eviction is
//! counted, and the consumer forgets it as for any flow absent from a read.
//!
//! Its size is bounded: a read leaves at most the table's capacity, and the
//! ring events since may add half as many again ([`Known::limit`]). An event
//! past that is left in the ring until a read has made room (see the
//! stream's `drain_events`): under a flood of new flows the map would
//! otherwise grow with the events of a whole interval. The map is allocated
//! as it fills (at a million answered flows, 1.5 times the table allocated
//! up front was 548 MiB), so it doubles its allocation as it grows: under a
//! flood of 65,536 flows that is one rehash of 1 MiB into 2 MiB.

use monitor_common::{FlowKey, FlowValue};

use crate::flow::{FlowId, IdMap};

/// No value kept.
const NONE: u32 = u32::MAX;

#[derive(Debug)]
pub(super) struct Known {
    flows: IdMap<Mark>,
    /// The values kept, with their keys, by slot; the slots in `free` are
    /// not in use.
    values: Vec<(FlowKey, FlowValue)>,
    free: Vec<u32>,
    /// Flows a read found that were not known (their events were dropped,
    /// or left in the ring): added at the end of the read, once the evicted
    /// are out, so that the map never holds both.
    unknown: Vec<(FlowKey, Option<FlowValue>)>,
    /// The number of the current (or last) read.
    read: u32,
    /// The most flows it holds: the table's capacity and half as many again.
    limit: usize,
}

#[derive(Clone, Copy, Debug)]
struct Mark {
    /// The read that last saw the flow; a ring event counts as seen by the
    /// current read (or the last, between reads).
    read: u32,
    /// The slot of its value in `values`, or [`NONE`].
    slot: u32,
}

const _: () = assert!(std::mem::size_of::<(FlowId, Mark)>() == 16, "one per known flow");

/// What a read found gone: the flows known before it and absent from it.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Evicted {
    /// How many, whether their value was kept or not.
    pub count: usize,
    /// Those whose value was kept, as last known: to be judged again.
    pub flows: Vec<(FlowKey, FlowValue)>,
}

impl Known {
    /// Known flows for a table of `capacity` flows.
    pub fn new(capacity: usize) -> Known {
        Known {
            flows: IdMap::default(),
            values: Vec::new(),
            free: Vec::new(),
            unknown: Vec::new(),
            read: 0,
            limit: capacity + capacity / 2,
        }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether it holds as many flows as it may: the next event waits for
    /// the end of a read.
    pub fn is_full(&self) -> bool {
        self.flows.len() >= self.limit
    }

    /// A flow a ring event reported: its value is kept until a read shows
    /// the flow in a state time cannot change.
    pub fn event(&mut self, key: FlowKey, value: FlowValue) {
        let read = self.read;
        let mark = self.flows.entry(FlowId::of(&key)).or_insert(Mark { read, slot: NONE });
        mark.read = read;
        mark.slot = keep(&mut self.values, &mut self.free, mark.slot, (key, value));
    }

    pub fn contains(&self, key: &FlowKey) -> bool {
        self.flows.contains_key(&FlowId::of(key))
    }

    /// A flow we removed from the table (expired): no eviction.
    pub fn remove(&mut self, key: &FlowKey) {
        if let Some(mark) = self.flows.remove(&FlowId::of(key)) {
            release(&mut self.free, mark.slot);
        }
    }

    /// Starts a read: every flow it does not see by [`Known::end_read`]
    /// (through [`Known::seen`] or an event meanwhile) is evicted then.
    pub fn begin_read(&mut self) {
        self.read = self.read.wrapping_add(1);
    }

    /// A flow the current read found, with its value kept if `keep` (the
    /// read saw it awaiting its answer) and dropped otherwise.
    pub fn seen(&mut self, key: &FlowKey, value: &FlowValue, keep_value: bool) {
        let read = self.read;
        match self.flows.get_mut(&FlowId::of(key)) {
            Some(mark) => {
                mark.read = read;
                mark.slot = if keep_value {
                    keep(&mut self.values, &mut self.free, mark.slot, (*key, *value))
                } else {
                    release(&mut self.free, mark.slot);
                    NONE
                };
            }
            None => self.unknown.push((*key, keep_value.then_some(*value))),
        }
    }

    /// Ends the read: the flows it did not see are evicted (those with a
    /// value come out as last known), and the flows it found that were not
    /// known become known.
    pub fn end_read(&mut self) -> Evicted {
        let read = self.read;
        let Known { flows, values, free, .. } = self;
        let mut evicted = Evicted::default();
        for (_, mark) in flows.extract_if(|_, m| m.read != read) {
            evicted.count += 1;
            if mark.slot != NONE {
                evicted.flows.push(values[mark.slot as usize]);
                free.push(mark.slot);
            }
        }
        for (key, value) in std::mem::take(&mut self.unknown) {
            let slot = value.map_or(NONE, |v| keep(&mut self.values, &mut self.free, NONE, (key, v)));
            self.flows.insert(FlowId::of(&key), Mark { read, slot });
        }
        self.compact();
        evicted
    }

    /// Values kept (what [`Known::compact`] weighs, and the tests check).
    pub fn values_kept(&self) -> usize {
        self.values.len() - self.free.len()
    }

    /// Once at most a quarter of the slots are in use (a burst of new flows
    /// has been answered), moves the values into a slab of their size, so
    /// that the burst's peak is not held for good.
    fn compact(&mut self) {
        let used = self.values_kept();
        if self.values.len() < 4096 || used > self.values.len() / 4 {
            return;
        }
        let mut values = Vec::with_capacity(used);
        for mark in self.flows.values_mut().filter(|m| m.slot != NONE) {
            values.push(self.values[mark.slot as usize]);
            mark.slot = (values.len() - 1) as u32;
        }
        self.values = values;
        self.free = Vec::new();
    }
}

/// Stores `value` in `slot`, or in a slot taken for it; returns the slot.
fn keep(
    values: &mut Vec<(FlowKey, FlowValue)>,
    free: &mut Vec<u32>,
    slot: u32,
    value: (FlowKey, FlowValue),
) -> u32 {
    let slot = if slot != NONE {
        slot
    } else if let Some(s) = free.pop() {
        s
    } else {
        values.push(value);
        return (values.len() - 1) as u32;
    };
    values[slot as usize] = value;
    slot
}

fn release(free: &mut Vec<u32>, slot: u32) {
    if slot != NONE {
        free.push(slot);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use monitor_common::{initiator_how, proto, side, tcp_flag};

    use super::*;
    use crate::{
        flow::{addr_key, Flow, FlowState},
        kernel::{stream::ReadClock, KernelClock},
    };

    const SEC: u64 = 1_000_000_000;

    fn syn_only(port: u16, at: u64) -> (FlowKey, FlowValue) {
        let (key, _) = FlowKey::canonical(
            addr_key("10.200.0.1".parse().unwrap()),
            port,
            addr_key("10.200.0.2".parse().unwrap()),
            5432,
            proto::TCP,
        );
        let dir = if key.port_a == port { 0 } else { 1 };
        let mut v = FlowValue {
            first_seen_ns: at,
            last_seen_ns: at,
            initiator: if dir == 0 { side::A } else { side::B },
            initiator_how: initiator_how::TCP_SYN,
            ..FlowValue::default()
        };
        v.packets[dir] = 1;
        v.bytes[dir] = 74;
        v.tcp_flags[dir] = tcp_flag::SYN;
        (key, v)
    }

    /// A read of `entries`, each with whether its value is kept (the
    /// stream keeps it for a flow awaiting its answer).
    fn read(known: &mut Known, entries: &[((FlowKey, FlowValue), bool)]) -> Evicted {
        known.begin_read();
        for ((k, v), keep) in entries {
            known.seen(k, v, *keep);
        }
        known.end_read()
    }

    fn port(k: &FlowKey) -> u16 {
        k.port_a.max(k.port_b)
    }

    #[test]
    fn an_evicted_syn_comes_out_unanswered_after_the_timeout() {
        let mut known = Known::new(16);
        let (gone, stays) = (syn_only(40000, 10 * SEC), syn_only(40001, 10 * SEC));
        // Known from the last read (awaiting: kept), and one more from a ring event since.
        assert_eq!(read(&mut known, &[(gone, true), (stays, true)]), Evicted::default());
        let evented = syn_only(40002, 11 * SEC);
        known.event(evented.0, evented.1);

        let mut evicted = read(&mut known, &[(stays, true)]);
        assert_eq!(evicted.count, 2);
        evicted.flows.sort_by_key(|(k, _)| port(k));
        assert_eq!(evicted.flows, vec![gone, evented], "known before the read and not in it, as last known");
        assert_eq!(known.len(), 1, "known is now the read");
        assert!(known.contains(&stays.0));

        // Judged with the read's clock: 4 s after the SYN, past a 3 s timeout.
        let clock = ReadClock { clock: KernelClock::new(), now: 14 * SEC + 1 };
        let flow = |(k, v): &(FlowKey, FlowValue), clock: &ReadClock| {
            Flow::from_entry(k, v, clock, &crate::flow::NoHint, Duration::from_secs(3)).unwrap()
        };
        assert_eq!(flow(&evicted.flows[0], &clock).state, FlowState::Unanswered);
        assert_eq!(flow(&evicted.flows[0], &clock).server.port, 5432);
        // 2 s after its SYN: still waiting.
        assert_eq!(flow(&evicted.flows[1], &ReadClock { now: 13 * SEC, ..clock }).state, FlowState::Awaiting);
        assert_eq!(read(&mut known, &[(stays, true)]), Evicted::default(), "an eviction is reported once");
        // A read holds the value it read, not the one known before.
        let mut later = stays;
        later.1.last_seen_ns = 20 * SEC;
        assert_eq!(read(&mut known, &[(later, true)]), Evicted::default());
        assert_eq!(read(&mut known, &[]), Evicted { count: 1, flows: vec![later] }, "evicted as last read");
    }

    #[test]
    fn a_flow_judged_from_a_read_in_a_settled_state_is_counted_but_not_kept() {
        let mut known = Known::new(16);
        let (settled, awaiting) = (syn_only(40000, SEC), syn_only(40001, SEC));
        known.event(settled.0, settled.1);
        known.event(awaiting.0, awaiting.1);
        assert_eq!(known.values_kept(), 2, "known from events: kept");
        // The read shows the first one settled (say answered), the other still awaiting.
        read(&mut known, &[(settled, false), (awaiting, true)]);
        assert_eq!(known.values_kept(), 1, "the settled flow's value is dropped");
        let evicted = read(&mut known, &[]);
        assert_eq!(evicted.count, 2, "both evictions are counted");
        assert_eq!(evicted.flows, vec![awaiting], "only the one that can still time out is handed over");
        assert_eq!(known.values_kept(), 0);

        // A ring event after the read (its answer, say) keeps the value again.
        read(&mut known, &[(settled, false)]);
        let mut answered = settled;
        answered.1.packets = [1, 1];
        known.event(answered.0, answered.1);
        assert_eq!(read(&mut known, &[]), Evicted { count: 1, flows: vec![answered] });
        // A flow a read finds that was not known is kept as the read says.
        read(&mut known, &[(settled, false), (awaiting, true)]);
        assert_eq!(read(&mut known, &[]), Evicted { count: 2, flows: vec![awaiting] });
        // One we expired is no eviction.
        known.event(settled.0, settled.1);
        known.remove(&settled.0);
        assert_eq!(read(&mut known, &[]), Evicted::default());
    }

    #[test]
    fn an_event_during_a_read_counts_as_seen_by_it() {
        let mut known = Known::new(16);
        let (a, b) = (syn_only(40000, SEC), syn_only(40001, SEC));
        read(&mut known, &[(a, true)]);
        known.begin_read();
        // The read's walk passed a's bucket before its event came.
        known.event(a.0, a.1);
        known.event(b.0, b.1);
        assert_eq!(known.end_read(), Evicted::default(), "in the table after the walk passed it");
        assert_eq!(known.len(), 2);
    }

    #[test]
    fn the_known_flows_fill_at_half_again_the_table_and_a_read_leaves_the_table() {
        let mut known = Known::new(4);
        for port in 0..6 {
            assert!(!known.is_full(), "{port} of 6");
            let (k, v) = syn_only(40000 + port, SEC);
            known.event(k, v);
        }
        assert!(known.is_full(), "4 in the table and 2 more by events");
        // The table holds 2 of them and 2 flows whose events were dropped.
        let table: Vec<_> = [0, 1, 10, 11].map(|p| (syn_only(40000 + p, 2 * SEC), true)).to_vec();
        let evicted = read(&mut known, &table);
        let mut ports: Vec<u16> = evicted.flows.iter().map(|(k, _)| port(k)).collect();
        ports.sort();
        assert_eq!(ports, [40002, 40003, 40004, 40005], "those the table no longer has are evicted");
        assert_eq!(evicted.count, 4);
        assert_eq!(known.len(), 4, "known is the table");
        assert!(known.contains(&table[3].0 .0));
        assert!(!known.is_full());
    }

    #[test]
    fn the_values_of_a_burst_are_given_back_once_it_is_answered() {
        let mut known = Known::new(1 << 16);
        let burst: Vec<_> = (0..8192).map(|p| syn_only(20000 + p, SEC)).collect();
        for (k, v) in &burst {
            known.event(*k, *v);
        }
        assert_eq!(known.values_kept(), 8192);
        // All but 100 answered at the next read: the slab is compacted.
        let entries: Vec<_> = burst.iter().enumerate().map(|(i, e)| (*e, i < 100)).collect();
        read(&mut known, &entries);
        assert_eq!(known.values_kept(), 100);
        assert!(known.values.len() == 100 && known.free.is_empty(), "compacted: {}", known.values.len());
        // The values kept are still each flow's own.
        let mut evicted = read(&mut known, &[]);
        evicted.flows.sort_by_key(|(k, _)| port(k));
        assert_eq!(evicted.count, 8192);
        assert_eq!(evicted.flows, burst[..100].to_vec());
    }
}
