//! The flow table: one LRU hash entry per conversation, counters updated in
//! place, one ring-buffer event per state change (never per packet), and a
//! small per-CPU cache in front of it for the packets that change nothing
//! but counters.

use aya_ebpf::{
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use monitor_common::{
    event_kind,
    flow::{icmp_error_of, key_of, new_entry, on_packet, quoted_key},
    flow_cache_index,
    parse::{L4Kind, Packet},
    FlowCacheSlot, FlowEvent, FlowKey, FlowValue, IfaceConfig, Stat, DIR_A_TO_B, DIR_B_TO_A, EVENTS_BYTES,
    FLOWS_MAX_ENTRIES, FLOW_CACHE_SLOTS,
};

#[map]
static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(FLOWS_MAX_ENTRIES, 0);

#[map]
static FLOW_CACHE: PerCpuArray<FlowCacheSlot> = PerCpuArray::with_max_entries(FLOW_CACHE_SLOTS, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Stat::COUNT, 0);

#[map]
static IFACE_CONFIG: HashMap<u32, IfaceConfig> = HashMap::with_max_entries(1024, 0);

const BPF_NOEXIST: u64 = 1;
const EEXIST: i32 = 17;

/// Adds to a per-CPU counter: no other CPU writes this slot, so no atomics.
#[inline(always)]
pub fn count(stat: Stat, n: u64) {
    if let Some(p) = STATS.get_ptr_mut(stat as u32) {
        unsafe { *p += n };
    }
}

/// Adds to a shared counter from any CPU.
#[inline(always)]
fn atomic_add(p: *mut u64, n: u64) {
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(p, n);
    }
}

/// Whether TC egress should skip this packet: it was received on an
/// interface whose ingress we watch, so it was counted there already.
#[inline(always)]
pub fn counted_at_ingress(ingress_ifindex: u32) -> bool {
    if ingress_ifindex == 0 {
        return false;
    }
    match unsafe { IFACE_CONFIG.get(ingress_ifindex) } {
        Some(cfg) => cfg.ingress_attached != 0,
        None => false,
    }
}

/// Sends one event; a full ring buffer is counted, never waited on.
#[inline(always)]
fn emit(kind: u32, ifindex: u32, now: u64, key: &FlowKey, value: &FlowValue) {
    match EVENTS.reserve::<FlowEvent>(0) {
        Some(mut entry) => {
            let ev = entry.as_mut_ptr();
            unsafe {
                (*ev).header.kind = kind;
                (*ev).header.ifindex = ifindex;
                (*ev).header.ts_ns = now;
                (*ev).key = *key;
                (*ev).value = *value;
            }
            entry.submit(0);
        }
        None => count(Stat::RingBufFull, 1),
    }
}

/// Counts one packet (or GSO super-packet of `segs` segments and `bytes`
/// wire bytes) into its flow.
///
/// A packet of the flow this CPU saw last in the same slot, in the same clock
/// tick, that brings no new TCP flag, is counted in this CPU's cache slot:
/// no hash lookup, no atomic, no clock call. Every other packet takes the
/// shared path. A slot another flow claimed in this tick is left to it (the
/// packet costs one lookup, not a write-back and a lookup); a slot of this
/// flow is written back through the entry the packet looks up anyway; only
/// a slot of another flow from an earlier tick is written back on its own,
/// before this flow claims it. The shared entry's `last_seen_ns` is
/// therefore exact to the tick, and user space adds the slots' counts when
/// it reads the table (`kernel::table`).
#[inline(always)]
pub fn track(pkt: &Packet, segs: u64, bytes: u64, ifindex: u32) {
    if pkt.kind == L4Kind::IcmpError {
        attribute_icmp_error(pkt, ifindex, unsafe { bpf_ktime_get_coarse_ns() });
        return;
    }
    count(Stat::Tracked, 1);
    // The verifier inlines bpf_jiffies64 into one load; a clock helper call
    // alone costs about as much as the whole cached path.
    let tick = unsafe { bpf_jiffies64() };
    let mut slot = FLOW_CACHE.get_ptr_mut(cache_index(pkt));
    // This flow's slot, to write back through its entry.
    let mut mine = None;
    if let Some(s) = slot {
        match unsafe { probe(s, pkt, segs, bytes, tick) } {
            Probe::Hit => return,
            Probe::Mine => mine = Some(s),
            Probe::Busy => slot = None,
            Probe::Stale => unsafe {
                if holds_counts(s) {
                    write_back(s, FLOWS.get_ptr_mut(&(*s).key));
                }
            },
        }
    }

    // The coarse clock (one tick) is ample for last_seen; a new flow's
    // first_seen, which alert latency is measured from, takes the precise one.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let (key, dir) = key_of(pkt);
    let found = FLOWS.get_ptr_mut(&key);
    if let Some(s) = mine {
        unsafe { write_back(s, found) };
    }
    if let Some(v) = found {
        update(v, &key, pkt, dir, segs, bytes, ifindex, now);
        claim(slot, &key, tick, unsafe { &*v });
        return;
    }

    let now = unsafe { bpf_ktime_get_ns() };
    let value = new_entry(pkt, dir, segs, bytes, now, ifindex);
    match FLOWS.insert(&key, &value, BPF_NOEXIST) {
        Ok(()) => {
            emit(event_kind::NEW_FLOW, ifindex, now, &key, &value);
            claim(slot, &key, tick, &value);
        }
        // Another CPU created it between our lookup and insert: count there.
        Err(e) if e == -EEXIST => {
            if let Some(v) = FLOWS.get_ptr_mut(&key) {
                update(v, &key, pkt, dir, segs, bytes, ifindex, now);
                claim(slot, &key, tick, unsafe { &*v });
            }
        }
        Err(_) => count(Stat::FlowMapFull, 1),
    }
}

#[inline(always)]
fn cache_index(pkt: &Packet) -> u32 {
    flow_cache_index(&pkt.l3.src, &pkt.l3.dst, pkt.sport, pkt.dport, pkt.l3.proto)
}

#[inline(always)]
unsafe fn addr_eq(k: *const u8, a: &[u32; 4]) -> bool {
    let k = k as *const u32;
    *k == a[0] && *k.add(1) == a[1] && *k.add(2) == a[2] && *k.add(3) == a[3]
}

/// What a packet finds in its cache slot.
enum Probe {
    /// Its flow's, in this tick, and the packet brings no new TCP flag:
    /// counted there.
    Hit,
    /// Its flow's, from an earlier tick or with a new flag: written back
    /// through the entry, then claimed again.
    Mine,
    /// Another flow's, claimed in this tick: left to it.
    Busy,
    /// Another flow's (or none) from an earlier tick: written back and claimed.
    Stale,
}

/// Counts the packet into the slot if the slot holds its flow in this tick
/// and the packet brings no TCP flag the shared entry lacks (a flag may
/// raise an event); otherwise tells what the slot holds. Compares the
/// packet's endpoints both ways round rather than building the canonical
/// key: the key is only needed on a miss.
#[inline(always)]
unsafe fn probe(s: *mut FlowCacheSlot, pkt: &Packet, segs: u64, bytes: u64, tick: u64) -> Probe {
    let k = &(*s).key;
    let this_tick = (*s).tick == tick;
    let dir = if k.proto != pkt.l3.proto {
        2
    } else if k.port_a == pkt.sport
        && k.port_b == pkt.dport
        && addr_eq(k.addr_a.as_ptr(), &pkt.l3.src)
        && addr_eq(k.addr_b.as_ptr(), &pkt.l3.dst)
    {
        DIR_A_TO_B
    } else if k.port_a == pkt.dport
        && k.port_b == pkt.sport
        && addr_eq(k.addr_a.as_ptr(), &pkt.l3.dst)
        && addr_eq(k.addr_b.as_ptr(), &pkt.l3.src)
    {
        DIR_B_TO_A
    } else {
        2
    };
    if dir > DIR_B_TO_A {
        return if this_tick { Probe::Busy } else { Probe::Stale };
    }
    if !this_tick || pkt.tcp_flags & !(*s).tcp_flags[dir] != 0 {
        return Probe::Mine;
    }
    // Only this CPU writes its slot, and programs do not nest on one CPU.
    (*s).packets[dir] += segs;
    (*s).bytes[dir] += bytes;
    Probe::Hit
}

/// Whether the slot holds counts not yet written back.
#[inline(always)]
unsafe fn holds_counts(s: *const FlowCacheSlot) -> bool {
    (*s).packets[0] != 0 || (*s).packets[1] != 0
}

/// Adds the slot's counts to `entry`, its flow's entry as looked up, if
/// that is the same flow (same first_seen). If the flow has left the table
/// (expired by user space, which had already read the slot, or evicted),
/// the counts are counted away. The slot is left empty either way.
#[inline(always)]
unsafe fn write_back(s: *mut FlowCacheSlot, entry: Option<*mut FlowValue>) {
    if !holds_counts(s) {
        return;
    }
    let (p0, p1) = ((*s).packets[0], (*s).packets[1]);
    match entry {
        Some(v) if (*v).first_seen_ns == (*s).first_seen_ns => {
            atomic_add(&mut (*v).packets[0], p0);
            atomic_add(&mut (*v).packets[1], p1);
            atomic_add(&mut (*v).bytes[0], (*s).bytes[0]);
            atomic_add(&mut (*v).bytes[1], (*s).bytes[1]);
        }
        _ => count(Stat::CacheStale, p0 + p1),
    }
    // Volatile: LLVM would merge plain zero stores into a memset call.
    for p in
        [&raw mut (*s).packets[0], &raw mut (*s).packets[1], &raw mut (*s).bytes[0], &raw mut (*s).bytes[1]]
    {
        core::ptr::write_volatile(p, 0);
    }
}

/// Points the (written-back, empty) slot at `key` for the rest of the tick,
/// with the entry's `v` first_seen and flags as they are now.
#[inline(always)]
fn claim(slot: Option<*mut FlowCacheSlot>, key: &FlowKey, tick: u64, v: &FlowValue) {
    if let Some(s) = slot {
        unsafe {
            (*s).key = *key;
            (*s).tick = tick;
            (*s).first_seen_ns = v.first_seen_ns;
            (*s).tcp_flags = v.tcp_flags;
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn update(
    v: *mut FlowValue,
    key: &FlowKey,
    pkt: &Packet,
    dir: usize,
    segs: u64,
    bytes: u64,
    ifindex: u32,
    now: u64,
) {
    unsafe {
        atomic_add(&mut (*v).packets[dir], segs);
        atomic_add(&mut (*v).bytes[dir], bytes);
        // Coarse time may lag first_seen by a tick; and skipping the store
        // while the tick has not moved spares the cache line.
        if now > (*v).last_seen_ns {
            (*v).last_seen_ns = now;
        }
        let Some(change) = on_packet((*v).tcp_flags[dir], (*v).initiator, pkt, dir) else { return };
        // A flag bit is set once per direction: this write is rare, and a race
        // between two CPUs on the same direction of one flow can only repeat it.
        (*v).tcp_flags[dir] = change.tcp_flags;
        if let Some((initiator, how)) = change.initiator {
            (*v).initiator = initiator;
            (*v).initiator_how = how;
        }
        if let Some(kind) = change.event {
            emit(kind, ifindex, now, key, &*v);
        }
    }
}

/// Attributes an ICMP error to the flow whose packet it quotes, and records
/// who sent it (the outer packet's source, already parsed: no further read).
/// The entry is written only when the error or its sender changes, and an
/// event is sent only when the error changes: a flow answered by routers
/// that take turns still raises one event, and user space reads the latest
/// sender with the table.
#[inline(always)]
fn attribute_icmp_error(pkt: &Packet, ifindex: u32, now: u64) {
    let (key, dir) = quoted_key(pkt);
    let Some(v) = FLOWS.get_ptr_mut(&key) else {
        count(Stat::IcmpErrorNoFlow, 1);
        return;
    };
    count(Stat::IcmpErrorMatched, 1);
    let err = icmp_error_of(pkt, dir);
    unsafe {
        let new_error = (*v).icmp_error != err;
        if !new_error && addr_eq((*v).icmp_sender.as_ptr(), &pkt.l3.src) {
            return;
        }
        // Word stores, as in `make_key` (no memcpy). Two CPUs writing different
        // senders of one flow at once may mix them: rare, and only this
        // field is affected.
        let s = (*v).icmp_sender.as_mut_ptr() as *mut u32;
        for i in 0..4 {
            *s.add(i) = pkt.l3.src[i];
        }
        if new_error {
            (*v).icmp_error = err;
            if now > (*v).last_seen_ns {
                (*v).last_seen_ns = now;
            }
            emit(event_kind::ICMP_ERROR, ifindex, now, &key, &*v);
        }
    }
}
