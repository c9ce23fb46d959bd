//! The flow table as user space sees it: the shared `FLOWS` entries plus the
//! counts that the kernel programs hold in their per-CPU cache slots
//! (`FLOW_CACHE`, see monitor-common's `FlowCacheSlot`) and have not yet
//! written back.

use std::{collections::HashMap, os::fd::AsFd};

use aya::maps::{Map, MapData};
use monitor_common::{maps, FlowCacheSlot, FlowKey, FlowValue};

use super::{batch, KernelError};

/// Flow entries read per batch syscall.
const CHUNK: usize = 4096;
/// Flow entries a [`Reader`] hands over at a time: the user-space copy of
/// the table is this big, whatever the table's size (1 MiB).
pub const READ_CHUNK: usize = 2 * CHUNK;
/// Cache slots per batch syscall: each is 96 bytes times the CPUs.
const SLOT_CHUNK: usize = 128;

/// A read of the table a chunk at a time ([`READ_CHUNK`] entries), every
/// cached count added to the entries of its chunk, so that a million flows
/// are never copied at once and the reader can do other work (drain the
/// ring) between chunks.
///
/// Each chunk is read before the cache: a write-back between the two reads
/// moves counts from a slot already emptied into an entry already read, so
/// a read can come out short by the packets of that moment (the next read
/// has them), but never counts a packet twice. A slot whose entry comes in
/// a later chunk is added there, from the cache as read then.
pub struct Reader {
    flows: batch::Batches<FlowKey, FlowValue>,
    pending: Pending,
}

impl Default for Reader {
    fn default() -> Reader {
        Reader { flows: batch::Batches::new(CHUNK, 1), pending: Pending::default() }
    }
}

impl Reader {
    /// Whether the whole table has been read.
    pub fn is_done(&self) -> bool {
        self.flows.is_done()
    }

    /// Reads the next chunk of the table into `out` (emptied first): up to
    /// [`READ_CHUNK`] entries, none once [`Reader::is_done`].
    pub fn next_chunk(
        &mut self,
        flows: &Map,
        cache: &Map,
        out: &mut Vec<(FlowKey, FlowValue)>,
    ) -> Result<(), KernelError> {
        out.clear();
        let flows = map_data(flows, maps::FLOWS)?;
        let cache = map_data(cache, maps::FLOW_CACHE)?;
        while out.len() < READ_CHUNK && !self.flows.is_done() {
            self.flows.next(flows.fd().as_fd(), |k, v| out.push((k, v))).map_err(KernelError::Walk)?;
        }
        if out.is_empty() {
            return Ok(());
        }
        let pending = &mut self.pending;
        pending.0.clear();
        batch::for_each_per_cpu(cache.fd().as_fd(), SLOT_CHUNK, |_: u32, slot: FlowCacheSlot| {
            pending.add(&slot)
        })
        .map_err(KernelError::Walk)?;
        pending.apply(out);
        Ok(())
    }
}

fn map_data<'a>(map: &'a Map, name: &'static str) -> Result<&'a MapData, KernelError> {
    match map {
        Map::LruHashMap(d) | Map::HashMap(d) | Map::PerCpuArray(d) => Ok(d),
        _ => Err(KernelError::MissingMap(name)),
    }
}

/// Counts held in cache slots, by flow: same key and same `first_seen_ns`
/// (a slot left over from an earlier flow with the same key belongs to no
/// entry, and the kernel counts it as stale when it writes it back).
#[derive(Default)]
struct Pending(HashMap<(FlowKey, u64), PacketsBytes, crate::flow::FlowHasher>);

/// Packets and bytes, each by direction.
type PacketsBytes = ([u64; 2], [u64; 2]);

impl Pending {
    fn add(&mut self, s: &FlowCacheSlot) {
        if s.packets == [0, 0] {
            return;
        }
        let p = self.0.entry((s.key, s.first_seen_ns)).or_default();
        for d in 0..2 {
            p.0[d] += s.packets[d];
            p.1[d] += s.bytes[d];
        }
    }

    fn apply(&self, entries: &mut [(FlowKey, FlowValue)]) {
        if self.0.is_empty() {
            return;
        }
        for (key, value) in entries.iter_mut() {
            if let Some((packets, bytes)) = self.0.get(&(*key, value.first_seen_ns)) {
                for d in 0..2 {
                    value.packets[d] += packets[d];
                    value.bytes[d] += bytes[d];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> FlowKey {
        FlowKey { port_a: port, port_b: 443, proto: 6, ..Default::default() }
    }

    fn entry(port: u16, first_seen_ns: u64, packets: [u64; 2]) -> (FlowKey, FlowValue) {
        let bytes = [packets[0] * 100, packets[1] * 100];
        (key(port), FlowValue { packets, bytes, first_seen_ns, ..Default::default() })
    }

    /// What `read` does with the slots it reads.
    fn add_cached(entries: &mut [(FlowKey, FlowValue)], slots: &[FlowCacheSlot]) {
        let mut pending = Pending::default();
        slots.iter().for_each(|s| pending.add(s));
        pending.apply(entries);
    }

    fn slot(port: u16, first_seen_ns: u64, packets: [u64; 2]) -> FlowCacheSlot {
        let bytes = [packets[0] * 100, packets[1] * 100];
        FlowCacheSlot { key: key(port), packets, bytes, first_seen_ns, tick: 7, ..Default::default() }
    }

    #[test]
    fn slots_of_every_cpu_add_to_their_flow() {
        let mut t = vec![entry(1000, 5, [3, 1]), entry(1001, 6, [1, 0])];
        // Flow 1000 cached on two CPUs, both directions.
        add_cached(&mut t, &[slot(1000, 5, [2, 0]), slot(1000, 5, [1, 4]), FlowCacheSlot::default()]);
        assert_eq!(t[0].1.packets, [6, 5], "3+2+1 one way, 1+0+4 the other");
        assert_eq!(t[0].1.bytes, [600, 500], "bytes follow the packets");
        assert_eq!(t[1].1.packets, [1, 0], "a flow with no slot is left as read");
    }

    #[test]
    fn a_slot_of_an_earlier_flow_with_the_same_key_adds_nothing() {
        let mut t = vec![entry(1000, 50, [1, 0])];
        add_cached(&mut t, &[slot(1000, 5, [9, 9])]);
        assert_eq!(t[0].1.packets, [1, 0], "first_seen differs: the slot is of an expired flow");
    }

    #[test]
    fn a_slot_whose_flow_has_left_the_table_adds_no_entry() {
        let mut t = vec![entry(1000, 5, [1, 0])];
        add_cached(&mut t, &[slot(2000, 5, [4, 0])]);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].1.packets, [1, 0]);
    }
}
