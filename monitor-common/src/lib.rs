//! Types and logic shared by the kernel programs (monitor-ebpf) and user
//! space (monitor).
//!
//! Every type here crosses the kernel/user boundary byte for byte, so each is
//! `#[repr(C)]` with explicit padding and a size assertion: the verifier and
//! the map definitions see exactly what user space reads. The packet parser
//! ([`parse`]) and the flow semantics ([`flow`]) live here too, written once
//! for the XDP/TC programs and the pcap tracker. The crate is `no_std` for
//! the BPF target and has std on the host, where its unit tests run; what
//! only user space needs is in [`user`] (behind the `user` feature).
#![cfg_attr(target_arch = "bpf", no_std)]

pub mod flow;
pub mod parse;
pub mod stats;
#[cfg(feature = "user")]
pub mod user;

pub use stats::Stat;
#[cfg(feature = "user")]
pub use user::{flow_cache_index_in, flow_cache_index_of};

/// IANA protocol numbers the programs track as flows.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// Bits of [`FlowValue::tcp_flags`], one word per direction.
pub mod tcp_flag {
    /// SYN without ACK: a connection attempt.
    pub const SYN: u32 = 1 << 0;
    /// SYN with ACK: the answer to a connection attempt.
    pub const SYN_ACK: u32 = 1 << 1;
    pub const RST: u32 = 1 << 2;
    pub const FIN: u32 = 1 << 3;
    /// Any segment with ACK set (data flowing once established).
    pub const ACK: u32 = 1 << 4;
}

/// How the initiator (client) of a flow was learnt. Stored in
/// [`FlowValue::initiator_how`]; the side itself is in [`FlowValue::initiator`].
pub mod initiator_how {
    /// Not known: the start of the flow was not seen (e.g. TCP mid-stream).
    pub const UNKNOWN: u32 = 0;
    /// A TCP SYN without ACK was seen from the initiator.
    pub const TCP_SYN: u32 = 1;
    /// Only the SYN-ACK was seen; the initiator is the side it was sent to.
    pub const TCP_SYN_ACK: u32 = 2;
    /// UDP (or other datagram): the sender of the first packet seen.
    pub const FIRST_PACKET: u32 = 3;
    /// ICMP echo request sender.
    pub const ICMP_ECHO: u32 = 4;
}

/// Which endpoint of a [`FlowKey`] a packet or a role belongs to.
pub mod side {
    /// Not known.
    pub const NONE: u32 = 0;
    /// The lower endpoint, `FlowKey::{addr_a, port_a}`.
    pub const A: u32 = 1;
    /// The higher endpoint, `FlowKey::{addr_b, port_b}`.
    pub const B: u32 = 2;
}

/// Direction index into the per-direction counter arrays of [`FlowValue`].
pub const DIR_A_TO_B: usize = 0;
pub const DIR_B_TO_A: usize = 1;

/// A flow, keyed so that both directions of a conversation share one entry.
///
/// The endpoint that sorts lower (address bytes, then port) is `a`; the other
/// is `b`. IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`) so that one
/// key type serves both families. Ports are in host byte order. For ICMP
/// echo, both ports hold the echo identifier; for other non-error ICMP both
/// hold the ICMP type. 8-byte aligned so the kernel can build it with word stores.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FlowKey {
    pub addr_a: [u8; 16],
    pub addr_b: [u8; 16],
    pub port_a: u16,
    pub port_b: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

impl FlowKey {
    /// Builds the canonical key for a packet from `(src, sport)` to
    /// `(dst, dport)`, and tells which direction the packet travels.
    #[inline(always)]
    /// Addresses as bytes; the one ordering is [`flow::make_key`]'s.
    pub fn canonical(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16, proto: u8) -> (FlowKey, usize) {
        let words = |b: [u8; 16]| -> [u32; 4] {
            core::array::from_fn(|i| u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]))
        };
        flow::make_key(&words(src), sport, &words(dst), dport, proto)
    }
}

/// Counters of one flow, updated in place by the kernel programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowValue {
    /// Packets per direction (`DIR_A_TO_B`, `DIR_B_TO_A`). A GSO/GRO
    /// super-packet counts as the number of wire segments it carries.
    pub packets: [u64; 2],
    /// Bytes per direction, from the Ethernet header on, as on the wire
    /// (for GSO super-packets the per-segment headers are added back).
    pub bytes: [u64; 2],
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the first and last packet.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// [`tcp_flag`] bits seen, per direction.
    pub tcp_flags: [u32; 2],
    /// [`side`] of the initiator (client), or `side::NONE`.
    pub initiator: u32,
    /// [`initiator_how`]: how the initiator was learnt.
    pub initiator_how: u32,
    /// Last ICMP/ICMPv6 error that quoted this flow, as [`IcmpError::pack`].
    pub icmp_error: u32,
    /// Interface index where the flow was first seen.
    pub ifindex: u32,
    /// Source address of the ICMP/ICMPv6 error in `icmp_error` (the server
    /// itself, or a router or firewall on the way), IPv4-mapped like the
    /// [`FlowKey`] addresses; all zero when no error was seen. Written with
    /// `icmp_error` and only on the ICMP error path, never per packet.
    pub icmp_sender: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<FlowValue>() == 88);
const _: () = assert!(core::mem::align_of::<FlowValue>() == 8);
const _: () = assert!(core::mem::offset_of!(FlowValue, icmp_sender) == 72);

impl FlowValue {
    /// [`FlowValue::icmp_sender`] when known (not all zero).
    #[inline(always)]
    pub fn icmp_sender(&self) -> Option<[u8; 16]> {
        if self.icmp_sender == [0; 16] {
            None
        } else {
            Some(self.icmp_sender)
        }
    }
}

/// An ICMP or ICMPv6 error attributed to a flow, packed into a u32:
/// bit 31 set when present, bits 16..18 the [`side`] that *sent* the error
/// report's quoted packet (the flow's side whose packet was refused),
/// bit 24 set for ICMPv6, bits 8..16 the type and bits 0..8 the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpError {
    pub v6: bool,
    pub icmp_type: u8,
    pub code: u8,
    /// The side whose packet the error quotes (the sender of the refused packet).
    pub quoted_side: u32,
}

impl IcmpError {
    const PRESENT: u32 = 1 << 31;
    const V6: u32 = 1 << 24;

    #[inline(always)]
    pub const fn pack(&self) -> u32 {
        Self::PRESENT
            | if self.v6 { Self::V6 } else { 0 }
            | ((self.quoted_side & 0x3) << 16)
            | ((self.icmp_type as u32) << 8)
            | self.code as u32
    }

    pub const fn unpack(raw: u32) -> Option<IcmpError> {
        if raw & Self::PRESENT == 0 {
            return None;
        }
        Some(IcmpError {
            v6: raw & Self::V6 != 0,
            icmp_type: (raw >> 8) as u8,
            code: raw as u8,
            quoted_side: (raw >> 16) & 0x3,
        })
    }
}

/// Kinds of ring-buffer events. Events are sent on state changes only
/// (a new flow, the first SYN-ACK, RST or ICMP error of a flow), never per packet.
pub mod event_kind {
    pub const NEW_FLOW: u32 = 1;
    /// A flow's TCP state changed: the first SYN-ACK or RST in a direction.
    pub const TCP_ANSWER: u32 = 2;
    /// An ICMP error quoting this flow was seen.
    pub const ICMP_ERROR: u32 = 3;
    /// A DNS message from port 53 ([`DnsEvent`](crate::DnsEvent), in `DNS_EVENTS`).
    pub const DNS: u32 = 4;
}

/// Header first, so that user space can dispatch on `kind` before reading more.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EventHeader {
    pub kind: u32,
    /// Interface index where the packet was seen.
    pub ifindex: u32,
    pub ts_ns: u64,
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 16);

/// A flow event: the header, the key, and the flow's value right after the
/// packet that caused the event was counted.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowEvent {
    pub header: EventHeader,
    pub key: FlowKey,
    pub value: FlowValue,
}

const _: () = assert!(core::mem::size_of::<FlowEvent>() == 16 + 40 + 88);

/// Most DNS payload bytes copied per event: the EDNS buffer size DNS Flag
/// Day 2020 recommends, so nearly every UDP answer arrives whole. A longer
/// payload is cut there and counted (`Stat::DnsTruncated`).
pub const DNS_PAYLOAD_MAX: usize = 1232;

/// A DNS message (or, over TCP, one segment of the DNS stream) sent from
/// port 53, copied to user space through the `DNS_EVENTS` ring buffer.
/// Header first, like every event (`kind` is `event_kind::DNS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsEvent {
    pub header: EventHeader,
    /// The flow of the packet (canonical key: proto, both addresses and ports).
    pub key: FlowKey,
    /// Bytes of `payload` that are valid.
    pub len: u32,
    /// Bytes of transport payload the packet carried (more than `len` when cut).
    pub orig_len: u32,
    /// For TCP: the segment's sequence number, to reassemble the stream.
    pub tcp_seq: u32,
    /// [`side`] that sent the packet (the server, port 53).
    pub sender: u32,
    pub payload: [u8; DNS_PAYLOAD_MAX],
}

const _: () = assert!(core::mem::size_of::<DnsEvent>() == 16 + 40 + 16 + DNS_PAYLOAD_MAX);

/// Per-interface settings, written by user space into the `IFACE_CONFIG`
/// map keyed by ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IfaceConfig {
    /// 1 when the monitor attached to this interface's ingress: TC egress then
    /// skips packets that were received there (forwarded), so a forwarded
    /// packet is counted once, not at every interface it crosses.
    pub ingress_attached: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<IfaceConfig>() == 8);

/// Map names, shared so that user space and kernel cannot drift apart.
pub mod maps {
    pub const FLOWS: &str = "FLOWS";
    pub const EVENTS: &str = "EVENTS";
    pub const STATS: &str = "STATS";
    pub const IFACE_CONFIG: &str = "IFACE_CONFIG";
    pub const DNS_EVENTS: &str = "DNS_EVENTS";
    pub const DNS_BUDGET: &str = "DNS_BUDGET";
    pub const FLOW_CACHE: &str = "FLOW_CACHE";
}

/// Program names (the function names in monitor-ebpf).
pub mod programs {
    pub const XDP_INGRESS: &str = "xdp_ingress";
    pub const TC_INGRESS: &str = "tc_ingress";
    pub const TC_EGRESS: &str = "tc_egress";
    /// Baseline for benchmarks: parses, then increments one per-CPU counter.
    pub const XDP_BASELINE: &str = "xdp_baseline";
    pub const TC_BASELINE: &str = "tc_baseline";
}

/// One slot of the per-CPU flow cache (`FLOW_CACHE`): the packets and bytes
/// of one flow that this CPU counted during one clock tick and has not yet
/// added to the shared `FLOWS` entry. The first packet of a flow in a tick
/// takes the shared path (and updates `last_seen_ns`); later ones in the same
/// tick with no new TCP flag are counted here. The next packet that maps to
/// the slot in another tick, or of another flow, writes the counts back.
/// User space adds the counts of slots whose `key` and `first_seen_ns` match
/// an entry when it reads the table.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowCacheSlot {
    pub key: FlowKey,
    /// Not yet written back, per direction as in [`FlowValue`].
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// `bpf_jiffies64()` of the tick the slot is valid in.
    pub tick: u64,
    /// The entry's `first_seen_ns`: tells this flow from a later one with the same key.
    pub first_seen_ns: u64,
    /// The entry's TCP flags when the slot was claimed: a packet with any
    /// other flag takes the shared path, which may raise an event.
    pub tcp_flags: [u32; 2],
}

const _: () = assert!(core::mem::size_of::<FlowCacheSlot>() == 96);

/// Slots of the flow cache per CPU: 2^FLOW_CACHE_BITS (96 KiB per CPU).
pub const FLOW_CACHE_BITS: u32 = 10;
pub const FLOW_CACHE_SLOTS: u32 = 1 << FLOW_CACHE_BITS;

/// The flow-cache slot of a packet between `(a, pa)` and `(b, pb)`
/// (addresses as memory-order words, IPv4-mapped; ports in host order).
/// Symmetric in the two endpoints, so both directions of a flow share a
/// slot; built from the words that differ most between flows (the low word
/// of each address and of its prefix, ports, protocol). A collision only
/// costs a write-back.
#[inline(always)]
pub fn flow_cache_index(a: &[u32; 4], b: &[u32; 4], pa: u16, pb: u16, proto: u8) -> u32 {
    (flow_cache_hash(a, b, pa, pb, proto) >> (64 - FLOW_CACHE_BITS)) as u32
}

/// The 64-bit hash whose top bits [`flow_cache_index`] takes: a cache of
/// 2^n slots uses the top n (so that a benchmark can classify the packets
/// of a kernel object built with another cache size).
#[inline(always)]
pub fn flow_cache_hash(a: &[u32; 4], b: &[u32; 4], pa: u16, pb: u16, proto: u8) -> u64 {
    let hi = (a[3] ^ b[3]) as u64;
    let lo = (a[1] ^ b[1] ^ (((pa ^ pb) as u32) << 8) ^ proto as u32) as u64;
    (hi << 32 | lo).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Default number of flow entries; user space may resize at load time.
pub const FLOWS_MAX_ENTRIES: u32 = 262_144;
/// Ring buffer size in bytes (a power of two, a multiple of the page size):
/// about 13,800 flow events in flight. User space maps a ring's data twice
/// (so that a record can wrap) and the kernel maps every page at mmap time:
/// each ring adds twice its size to the agent's resident memory from the
/// start. An event that finds the ring full is counted (`ringbuf_full`); its
/// flow is still in the table and reaches user space at the next read.
pub const EVENTS_BYTES: u32 = 2 * 1024 * 1024;
/// DNS ring buffer size: about 1,600 full-size answers in flight.
pub const DNS_EVENTS_BYTES: u32 = 2 * 1024 * 1024;
/// DNS events each CPU may send per second (a token bucket), and its burst.
/// Past it answers are counted (`Stat::DnsRateLimited`), not copied.
pub const DNS_RATE_PER_CPU: u64 = 5_000;
pub const DNS_BURST: u64 = 500;

/// A per-CPU token bucket for DNS events.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenBucket {
    pub tokens: u64,
    pub last_ns: u64,
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn canonical_key_is_the_same_both_ways() {
        let a = [1u8; 16];
        let b = [2u8; 16];
        let (k1, d1) = FlowKey::canonical(a, 40000, b, 443, proto::TCP);
        let (k2, d2) = FlowKey::canonical(b, 443, a, 40000, proto::TCP);
        assert_eq!(k1, k2, "both directions must share one key");
        assert_eq!((d1, d2), (DIR_A_TO_B, DIR_B_TO_A));
        // Same address: ports break the tie (loopback flows).
        let (k3, d3) = FlowKey::canonical(a, 7001, a, 50000, proto::TCP);
        assert_eq!((k3.port_a, k3.port_b, d3), (7001, 50000, DIR_A_TO_B));
    }

    #[test]
    fn icmp_error_round_trips() {
        let e = IcmpError { v6: true, icmp_type: 1, code: 4, quoted_side: side::B };
        assert_eq!(IcmpError::unpack(e.pack()), Some(e));
        assert_eq!(IcmpError::unpack(0), None);
    }
}
