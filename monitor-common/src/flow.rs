//! The flow semantics, written once for the kernel's flow table
//! (`monitor-ebpf/src/flow.rs`) and the pcap tracker
//! (`monitor::replay::track`): the canonical key, who initiated a flow, what
//! a new entry holds, and what a packet changes in an entry beyond its
//! counters (TCP flags, the initiator, which event to send). The functions
//! here are pure; the kernel keeps its map updates, atomics and ring buffer
//! around them, and the tracker its plain `&mut` table, so neither can drift
//! from the other. They run without root in this crate's unit tests, and the
//! differential test (`tests/tests/kernel_parse.rs`) runs both sides on the
//! same frames.

use crate::{
    event_kind, initiator_how,
    parse::{L4Kind, Packet},
    proto, side, tcp_flag, FlowKey, FlowValue, IcmpError, DIR_A_TO_B,
};

/// Compares two addresses held as memory-order words, as big-endian numbers
/// (the same order as comparing their bytes).
#[inline(always)]
fn addr_cmp(a: &[u32; 4], b: &[u32; 4]) -> core::cmp::Ordering {
    for i in 0..4 {
        let x = u32::from_be(a[i]);
        let y = u32::from_be(b[i]);
        if x != y {
            return if x < y { core::cmp::Ordering::Less } else { core::cmp::Ordering::Greater };
        }
    }
    core::cmp::Ordering::Equal
}

/// The canonical key of a packet from `(src, sport)` to `(dst, dport)`
/// (addresses as memory-order words, IPv4-mapped) and the direction it
/// travels: the endpoint that sorts lower (address bytes, then port) is
/// `a`. Built with word stores, no memcpy (the verifier rejects the call).
#[inline(always)]
pub fn make_key(src: &[u32; 4], sport: u16, dst: &[u32; 4], dport: u16, proto: u8) -> (FlowKey, usize) {
    let src_first = match addr_cmp(src, dst) {
        core::cmp::Ordering::Less => true,
        core::cmp::Ordering::Greater => false,
        core::cmp::Ordering::Equal => sport <= dport,
    };
    let (a, pa, b, pb, dir) =
        if src_first { (src, sport, dst, dport, 0) } else { (dst, dport, src, sport, 1) };
    let mut key = FlowKey::default();
    let ka = key.addr_a.as_mut_ptr() as *mut u32;
    let kb = key.addr_b.as_mut_ptr() as *mut u32;
    // SAFETY: `addr_a` and `addr_b` are 16 bytes at offsets 0 and 16 of an
    // 8-aligned key: four aligned words each.
    unsafe {
        for i in 0..4 {
            *ka.add(i) = a[i];
            *kb.add(i) = b[i];
        }
    }
    key.port_a = pa;
    key.port_b = pb;
    key.proto = proto;
    (key, dir)
}

/// The key and direction of the packet's own flow.
#[inline(always)]
pub fn key_of(pkt: &Packet) -> (FlowKey, usize) {
    make_key(&pkt.l3.src, pkt.sport, &pkt.l3.dst, pkt.dport, pkt.l3.proto)
}

/// The key of the flow an ICMP error quotes, and the direction of the
/// quoted packet in it.
#[inline(always)]
pub fn quoted_key(pkt: &Packet) -> (FlowKey, usize) {
    let q = &pkt.quoted;
    make_key(&q.src, q.sport, &q.dst, q.dport, q.proto)
}

/// The [`side`] that sends packets travelling in direction `dir`.
#[inline(always)]
pub fn dir_side(dir: usize) -> u32 {
    if dir == DIR_A_TO_B {
        side::A
    } else {
        side::B
    }
}

/// The [`side`] that receives packets travelling in direction `dir`.
#[inline(always)]
pub fn other_side(dir: usize) -> u32 {
    if dir == DIR_A_TO_B {
        side::B
    } else {
        side::A
    }
}

/// Who started the flow, as far as this one packet tells: the side and how
/// it is known ([`initiator_how`]).
#[inline(always)]
pub fn initiator_of(pkt: &Packet, dir: usize) -> (u32, u32) {
    match pkt.kind {
        L4Kind::Ports if pkt.l3.proto == proto::TCP => {
            if pkt.tcp_flags & tcp_flag::SYN != 0 {
                (dir_side(dir), initiator_how::TCP_SYN)
            } else if pkt.tcp_flags & tcp_flag::SYN_ACK != 0 {
                (other_side(dir), initiator_how::TCP_SYN_ACK)
            } else {
                (side::NONE, initiator_how::UNKNOWN)
            }
        }
        L4Kind::Echo { request: true } => (dir_side(dir), initiator_how::ICMP_ECHO),
        L4Kind::Echo { request: false } => (other_side(dir), initiator_how::ICMP_ECHO),
        // UDP and other datagrams: the first packet seen.
        _ => (dir_side(dir), initiator_how::FIRST_PACKET),
    }
}

/// The entry a flow's first packet makes (`segs` wire segments of `bytes`
/// bytes at `now`, seen on `ifindex`); its event is
/// [`event_kind::NEW_FLOW`].
#[inline(always)]
pub fn new_entry(pkt: &Packet, dir: usize, segs: u64, bytes: u64, now: u64, ifindex: u32) -> FlowValue {
    let (initiator, how) = initiator_of(pkt, dir);
    // Per-direction values written as expressions, not `[0; 2]` plus an
    // indexed store: in the kernel that form compiles into an out-of-line
    // memset.
    let fwd = dir == DIR_A_TO_B;
    FlowValue {
        packets: if fwd { [segs, 0] } else { [0, segs] },
        bytes: if fwd { [bytes, 0] } else { [0, bytes] },
        first_seen_ns: now,
        last_seen_ns: now,
        tcp_flags: if fwd { [pkt.tcp_flags, 0] } else { [0, pkt.tcp_flags] },
        initiator,
        initiator_how: how,
        icmp_error: 0,
        ifindex,
        icmp_sender: [0; 16],
    }
}

/// What a packet of a known flow changes besides its counters and last
/// sight. Most packets change nothing ([`on_packet`] gives `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// The direction's TCP flags from now on.
    pub tcp_flags: u32,
    /// The initiator and how it is known, when this packet tells it first.
    pub initiator: Option<(u32, u32)>,
    /// The event to send, if any ([`event_kind::TCP_ANSWER`]).
    pub event: Option<u32>,
}

/// What the packet `pkt`, travelling in direction `dir`, changes in an
/// entry whose flags in that direction are `seen` and whose initiator is
/// `initiator`: `None` unless it brings a TCP flag the direction lacks.
/// A SYN or SYN-ACK names the initiator of a flow joined mid-stream; the
/// first SYN-ACK or RST of a direction is the answer to a connection
/// attempt, which decides its fate, so user space is told at once.
#[inline(always)]
pub fn on_packet(seen: u32, initiator: u32, pkt: &Packet, dir: usize) -> Option<Change> {
    let new = pkt.tcp_flags & !seen;
    if new == 0 {
        return None;
    }
    let initiator = if initiator == side::NONE && new & (tcp_flag::SYN | tcp_flag::SYN_ACK) != 0 {
        Some(initiator_of(pkt, dir))
    } else {
        None
    };
    let event =
        if new & (tcp_flag::SYN_ACK | tcp_flag::RST) != 0 { Some(event_kind::TCP_ANSWER) } else { None };
    Some(Change { tcp_flags: seen | new, initiator, event })
}

/// The ICMP error `pkt` (an [`L4Kind::IcmpError`]) records in the flow it
/// quotes, `dir` being the quoted packet's direction there
/// ([`quoted_key`]), packed as [`IcmpError::pack`]. An entry holding
/// another value takes it, moves its last sight and sends
/// [`event_kind::ICMP_ERROR`]; the sender (`pkt`'s source) is written
/// whenever it differs, with no event: routers that take turns raise one.
#[inline(always)]
pub fn icmp_error_of(pkt: &Packet, dir: usize) -> u32 {
    IcmpError { v6: pkt.l3.v6, icmp_type: pkt.icmp_type, code: pkt.icmp_code, quoted_side: dir_side(dir) }
        .pack()
}

/// Whether the packet is a DNS message from a server: sent from port 53
/// over UDP or TCP.
#[inline(always)]
pub fn is_dns_answer(pkt: &Packet) -> bool {
    pkt.sport == 53 && pkt.kind == L4Kind::Ports && (pkt.l3.proto == proto::UDP || pkt.l3.proto == proto::TCP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        parse::{Quoted, L3},
        DIR_B_TO_A,
    };

    fn words(b: [u8; 4]) -> [u32; 4] {
        [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), u32::from_ne_bytes(b)]
    }

    fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u32) -> Packet {
        Packet {
            l3: L3 {
                src: words(src),
                dst: words(dst),
                proto: proto::TCP,
                v6: false,
                l4_off: 34,
                l3_off: 14,
                ip_len: 40,
            },
            sport,
            dport,
            kind: L4Kind::Ports,
            tcp_flags: flags,
            tcp_seq: 0,
            icmp_type: 0,
            icmp_code: 0,
            hdr_len: 54,
            quoted: Quoted { src: [0; 4], dst: [0; 4], sport: 0, dport: 0, proto: 0 },
        }
    }

    const C: [u8; 4] = [10, 200, 2, 50];
    const S: [u8; 4] = [10, 200, 1, 11];

    #[test]
    fn both_directions_share_a_key_ordered_as_the_bytes_are() {
        let (k1, d1) = key_of(&tcp(C, 40000, S, 443, tcp_flag::SYN));
        let (k2, d2) = key_of(&tcp(S, 443, C, 40000, tcp_flag::SYN_ACK));
        assert_eq!(k1, k2);
        assert_eq!((d1, d2), (DIR_B_TO_A, DIR_A_TO_B), "10.200.1.11 sorts below 10.200.2.50");
        // The byte form gives the same key: one ordering.
        let mapped = |b: [u8; 4]| {
            let mut a = [0u8; 16];
            a[10] = 0xff;
            a[11] = 0xff;
            a[12..].copy_from_slice(&b);
            a
        };
        assert_eq!(FlowKey::canonical(mapped(C), 40000, mapped(S), 443, proto::TCP), (k1, d1));
        // Same address: the lower port is `a`.
        let (k, d) = key_of(&tcp(C, 50000, C, 7001, 0));
        assert_eq!((k.port_a, k.port_b, d), (7001, 50000, DIR_B_TO_A));
    }

    #[test]
    fn a_new_entry_counts_its_packet_and_names_its_initiator() {
        let syn = tcp(C, 40000, S, 443, tcp_flag::SYN);
        let (_, dir) = key_of(&syn);
        let v = new_entry(&syn, dir, 2, 120, 7, 3);
        assert_eq!((v.packets, v.bytes, v.tcp_flags), ([0, 2], [0, 120], [0, tcp_flag::SYN]));
        assert_eq!((v.first_seen_ns, v.last_seen_ns, v.ifindex), (7, 7, 3));
        assert_eq!((v.initiator, v.initiator_how), (side::B, initiator_how::TCP_SYN));
        // Joined mid-stream: no initiator yet.
        let ack = tcp(C, 40000, S, 443, tcp_flag::ACK);
        assert_eq!(new_entry(&ack, dir, 1, 60, 7, 3).initiator, side::NONE);
    }

    #[test]
    fn only_a_new_flag_changes_an_entry_and_an_answer_sends_an_event() {
        let (_, c2s) = key_of(&tcp(C, 40000, S, 443, 0));
        let s2c = 1 - c2s;
        // Nothing new: the common case.
        let ack = tcp(C, 40000, S, 443, tcp_flag::ACK);
        assert_eq!(on_packet(tcp_flag::SYN | tcp_flag::ACK, side::B, &ack, c2s), None);
        // The SYN-ACK: flags, and the answer event; the initiator was known.
        let synack = tcp(S, 443, C, 40000, tcp_flag::SYN_ACK | tcp_flag::ACK);
        let c = on_packet(0, side::B, &synack, s2c).expect("a change");
        assert_eq!(
            c,
            Change {
                tcp_flags: tcp_flag::SYN_ACK | tcp_flag::ACK,
                initiator: None,
                event: Some(event_kind::TCP_ANSWER)
            }
        );
        // Joined mid-stream, then a SYN-ACK: it names the initiator (the side it went to).
        let c = on_packet(tcp_flag::ACK, side::NONE, &synack, s2c).expect("a change");
        assert_eq!(c.initiator, Some((side::B, initiator_how::TCP_SYN_ACK)));
        // A FIN is a new flag, not an answer.
        let fin = tcp(C, 40000, S, 443, tcp_flag::FIN | tcp_flag::ACK);
        let c = on_packet(tcp_flag::ACK, side::B, &fin, c2s).expect("a change");
        assert_eq!((c.tcp_flags, c.event), (tcp_flag::FIN | tcp_flag::ACK, None));
        // An RST is an answer.
        let rst = tcp(S, 443, C, 40000, tcp_flag::RST);
        assert_eq!(on_packet(0, side::B, &rst, s2c).and_then(|c| c.event), Some(event_kind::TCP_ANSWER));
    }

    #[test]
    fn an_icmp_error_names_the_side_it_quotes_and_dns_answers_come_from_port_53() {
        let mut err = tcp([10, 200, 9, 1], 0, C, 0, 0);
        err.kind = L4Kind::IcmpError;
        (err.icmp_type, err.icmp_code) = (3, 13);
        err.quoted = Quoted { src: words(C), dst: words(S), sport: 40000, dport: 443, proto: proto::TCP };
        let (k, dir) = quoted_key(&err);
        assert_eq!(k, key_of(&tcp(C, 40000, S, 443, 0)).0);
        let e = IcmpError::unpack(icmp_error_of(&err, dir)).expect("present");
        assert_eq!((e.icmp_type, e.code, e.v6, e.quoted_side), (3, 13, false, dir_side(dir)));
        assert!(is_dns_answer(&tcp(S, 53, C, 40000, 0)));
        assert!(!is_dns_answer(&tcp(C, 40000, S, 53, 0)), "a query is not an answer");
    }
}
