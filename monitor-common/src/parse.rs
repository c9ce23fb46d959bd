//! Packet parsing: Ethernet (+ up to two VLAN tags), IPv4 (IHL honoured,
//! fragments), IPv6 (extension header chain), TCP, UDP, ICMP and ICMPv6,
//! including the packet quoted inside ICMP errors.
//!
//! One parser for both sides: the XDP/TC programs run it on the packet in
//! place, and the pcap tracker (`monitor::replay::track`) on a captured
//! frame, so a frame is classified alike in a capture and on the wire.
//!
//! Every read goes through [`ptr_at`], the one bounds check the verifier needs.
//! A parse failure returns the [`Stat`] that explains it; the caller counts it
//! and lets the packet pass. Addresses are loaded as 32-bit words, relying on
//! the frame starting 2 bytes past a 4-byte boundary (NET_IP_ALIGN), as the
//! kernel's do; the tracker copies a frame to such a place unless it sits there.

use core::mem::size_of;

use crate::{proto, tcp_flag, Stat};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const MAX_VLANS: usize = 2;

const IPV6_HLEN: usize = 40;
const MAX_IPV6_EXT: usize = 8;
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_DEST: u8 = 60;

/// Upper bound on any header offset: keeps offsets provably bounded for the
/// verifier, and no sane header chain is longer.
const MAX_OFFSET: usize = 512;

/// The one bounds-checked accessor: a pointer to a `T` at `offset`, or an
/// error when it would read past the end of the packet.
#[inline(always)]
pub fn ptr_at<T>(data: usize, data_end: usize, offset: usize) -> Option<*const T> {
    if offset > MAX_OFFSET {
        return None;
    }
    let start = data + offset;
    if start + size_of::<T>() > data_end {
        return None;
    }
    Some(start as *const T)
}

/// A bounds-checked view of the `N` header bytes at `offset`. Every field of
/// a header is read through this one checked pointer: re-deriving the pointer
/// per field lets LLVM emit accesses the verifier cannot tie to the check.
#[inline(always)]
fn header<const N: usize>(data: usize, end: usize, offset: usize) -> Option<&'static [u8; N]> {
    ptr_at::<[u8; N]>(data, end, offset).map(|p| unsafe { &*p })
}

#[inline(always)]
fn be16(h: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([h[i], h[i + 1]])
}

/// Reads a 32-bit word in memory (network) order. IP headers start 4-byte
/// aligned relative to one another, so a word load is what the NIC gives us.
#[inline(always)]
fn word(h: &[u8], i: usize) -> u32 {
    unsafe { *(h.as_ptr().add(i) as *const u32) }
}

/// A 16-byte address as four memory-order words.
#[inline(always)]
fn addr16(h: &[u8], i: usize) -> [u32; 4] {
    [word(h, i), word(h, i + 4), word(h, i + 8), word(h, i + 12)]
}

/// An IPv4 address in the IPv4-mapped IPv6 form, as memory-order words.
#[inline(always)]
fn addr4(h: &[u8], i: usize) -> [u32; 4] {
    [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), word(h, i)]
}

/// The network layer of a packet, or of the packet quoted in an ICMP error.
#[derive(Clone, Copy)]
pub struct L3 {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub proto: u8,
    pub v6: bool,
    /// Offset of the transport header.
    pub l4_off: usize,
    /// Offset of the IP header.
    pub l3_off: u16,
    /// The header's own length field, raw: IPv4 total length, IPv6 payload
    /// length (0 for jumbograms). Ethernet pads short frames to 60 bytes;
    /// [`payload_len`] uses this to tell padding from payload.
    pub ip_len: u16,
}

/// What the transport layer says about the packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum L4Kind {
    /// TCP or UDP.
    Ports,
    /// ICMP/ICMPv6 echo request (`true`) or reply (`false`).
    Echo { request: bool },
    /// Any other non-error ICMP message (neighbour discovery, ...).
    IcmpOther,
    /// An ICMP error: the quoted packet is in [`Packet::quoted`].
    IcmpError,
}

pub struct Packet {
    pub l3: L3,
    pub sport: u16,
    pub dport: u16,
    pub kind: L4Kind,
    /// [`tcp_flag`] bits of this segment.
    pub tcp_flags: u32,
    /// TCP sequence number (0 for other protocols): DNS over TCP is
    /// reassembled in user space.
    pub tcp_seq: u32,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Bytes of headers through the transport header: added back once per
    /// extra segment of a GSO super-packet to count wire bytes.
    pub hdr_len: u32,
    /// For [`L4Kind::IcmpError`]: the quoted packet's addresses and ports.
    pub quoted: Quoted,
}

#[derive(Clone, Copy)]
pub struct Quoted {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// Parses Ethernet and VLAN tags; returns the ethertype and the L3 offset.
#[inline(always)]
fn parse_ethernet(data: usize, end: usize) -> Result<(u16, usize), Stat> {
    let eth = header::<ETH_HLEN>(data, end, 0).ok_or(Stat::ShortEthernet)?;
    let mut ethertype = be16(eth, 12);
    let mut off = ETH_HLEN;
    for _ in 0..MAX_VLANS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            return Ok((ethertype, off));
        }
        // TCI (2 bytes) then the encapsulated ethertype.
        let tag = header::<4>(data, end, off).ok_or(Stat::ShortVlan)?;
        ethertype = be16(tag, 2);
        off += 4;
    }
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        return Err(Stat::TooManyVlans);
    }
    Ok((ethertype, off))
}

/// Parses an IPv4 header at `off`. `Err(LaterFragment)` for a non-first fragment.
#[inline(always)]
fn parse_ipv4(data: usize, end: usize, off: usize) -> Result<L3, Stat> {
    let ip = header::<20>(data, end, off).ok_or(Stat::ShortIpv4)?;
    if ip[0] >> 4 != 4 {
        return Err(Stat::BadIpVersion);
    }
    let ihl = (ip[0] & 0x0f) as usize * 4;
    if ihl < 20 {
        return Err(Stat::BadIhl);
    }
    // IHL may claim options past the end of the packet.
    if off + ihl > end - data {
        return Err(Stat::BadIhl);
    }
    if be16(ip, 6) & 0x1fff != 0 {
        return Err(Stat::LaterFragment);
    }
    Ok(L3 {
        src: addr4(ip, 12),
        dst: addr4(ip, 16),
        proto: ip[9],
        v6: false,
        l4_off: off + ihl,
        l3_off: off as u16,
        ip_len: be16(ip, 2),
    })
}

/// Parses an IPv6 header at `off` and, when `follow_ext`, its extension chain.
#[inline(always)]
fn parse_ipv6(data: usize, end: usize, off: usize, follow_ext: bool) -> Result<L3, Stat> {
    let ip = header::<IPV6_HLEN>(data, end, off).ok_or(Stat::ShortIpv6)?;
    if ip[0] >> 4 != 6 {
        return Err(Stat::BadIpVersion);
    }
    let mut next = ip[6];
    let (src, dst) = (addr16(ip, 8), addr16(ip, 24));
    let ip_len = be16(ip, 4);
    let mut l4_off = off + IPV6_HLEN;
    if follow_ext {
        let mut done = false;
        for _ in 0..MAX_IPV6_EXT {
            if !matches!(next, NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_AUTH | NEXTHDR_FRAGMENT)
            {
                done = true;
                break;
            }
            // Every extension header starts with next-header and a length byte.
            let ext = header::<8>(data, end, l4_off).ok_or(Stat::BadIpv6Ext)?;
            let len = match next {
                NEXTHDR_AUTH => (ext[1] as usize + 2) * 4,
                NEXTHDR_FRAGMENT => {
                    if be16(ext, 2) >> 3 != 0 {
                        return Err(Stat::LaterFragment);
                    }
                    8
                }
                _ => (ext[1] as usize + 1) * 8,
            };
            next = ext[0];
            l4_off += len;
            if l4_off > MAX_OFFSET {
                return Err(Stat::BadIpv6Ext);
            }
        }
        if !done {
            return Err(Stat::TooManyIpv6Ext);
        }
    }
    Ok(L3 { src, dst, proto: next, v6: true, l4_off, l3_off: off as u16, ip_len })
}

/// ICMP types that quote the offending packet and are attributed to its flow.
#[inline(always)]
fn is_icmp_error(v6: bool, icmp_type: u8) -> bool {
    if v6 {
        // Destination unreachable, packet too big, time exceeded, parameter problem.
        matches!(icmp_type, 1..=4)
    } else {
        // Destination unreachable, source quench, redirect, time exceeded, parameter problem.
        matches!(icmp_type, 3 | 4 | 5 | 11 | 12)
    }
}

/// Parses the packet quoted by an ICMP error at `off`: an IP header and the
/// first 8 bytes of its transport header (RFC 792 and 4443 guarantee them).
#[inline(always)]
fn parse_quoted(data: usize, end: usize, off: usize, v6: bool) -> Result<Quoted, Stat> {
    let l3 = if v6 { parse_ipv6(data, end, off, false) } else { parse_ipv4(data, end, off) }
        .map_err(|_| Stat::BadIcmpQuote)?;
    let l4 = header::<8>(data, end, l3.l4_off).ok_or(Stat::BadIcmpQuote)?;
    let (sport, dport) = match l3.proto {
        proto::TCP | proto::UDP => (be16(l4, 0), be16(l4, 2)),
        proto::ICMP | proto::ICMPV6 => (be16(l4, 4), be16(l4, 4)),
        _ => return Err(Stat::BadIcmpQuote),
    };
    Ok(Quoted { src: l3.src, dst: l3.dst, sport, dport, proto: l3.proto })
}

/// Parses a whole frame starting at the Ethernet header.
#[inline(always)]
pub fn parse(data: usize, end: usize) -> Result<Packet, Stat> {
    let (ethertype, l3_off) = parse_ethernet(data, end)?;
    let l3 = match ethertype {
        ETH_P_IP => parse_ipv4(data, end, l3_off)?,
        ETH_P_IPV6 => parse_ipv6(data, end, l3_off, true)?,
        _ => return Err(Stat::NotIp),
    };
    let off = l3.l4_off;
    let empty = Quoted { src: [0; 4], dst: [0; 4], sport: 0, dport: 0, proto: 0 };
    let mut pkt = Packet {
        l3,
        sport: 0,
        dport: 0,
        kind: L4Kind::Ports,
        tcp_flags: 0,
        tcp_seq: 0,
        icmp_type: 0,
        icmp_code: 0,
        hdr_len: 0,
        quoted: empty,
    };
    match l3.proto {
        proto::TCP => {
            let th = header::<20>(data, end, off).ok_or(Stat::ShortL4)?;
            pkt.sport = be16(th, 0);
            pkt.dport = be16(th, 2);
            pkt.tcp_flags = tcp_bits(th[13]);
            pkt.tcp_seq = u32::from_be_bytes([th[4], th[5], th[6], th[7]]);
            pkt.hdr_len = (off + (th[12] >> 4) as usize * 4) as u32;
        }
        proto::UDP => {
            let uh = header::<8>(data, end, off).ok_or(Stat::ShortL4)?;
            pkt.sport = be16(uh, 0);
            pkt.dport = be16(uh, 2);
            pkt.hdr_len = (off + 8) as u32;
        }
        proto::ICMP | proto::ICMPV6 => {
            let v6 = l3.proto == proto::ICMPV6;
            if v6 != l3.v6 {
                // ICMPv4 inside IPv6 or the reverse: not a meaningful flow.
                return Err(Stat::OtherProtocol);
            }
            let ih = header::<8>(data, end, off).ok_or(Stat::ShortL4)?;
            let t = ih[0];
            pkt.icmp_type = t;
            pkt.icmp_code = ih[1];
            pkt.hdr_len = (off + 8) as u32;
            let (echo_req, echo_rep) = if v6 { (128, 129) } else { (8, 0) };
            if t == echo_req || t == echo_rep {
                let id = be16(ih, 4);
                pkt.sport = id;
                pkt.dport = id;
                pkt.kind = L4Kind::Echo { request: t == echo_req };
            } else if is_icmp_error(v6, t) {
                pkt.quoted = parse_quoted(data, end, off + 8, v6)?;
                pkt.kind = L4Kind::IcmpError;
            } else {
                // The type stands in for ports: neighbour discovery and
                // router messages must stay apart from other ICMP.
                pkt.sport = t as u16;
                pkt.dport = t as u16;
                pkt.kind = L4Kind::IcmpOther;
            }
        }
        _ => return Err(Stat::OtherProtocol),
    }
    Ok(pkt)
}

/// Bytes of transport payload in a frame of `frame_len` bytes: from the end
/// of the transport header to the end of the datagram (or of the frame,
/// whichever comes first), so that Ethernet padding is never payload.
#[inline(always)]
pub fn payload_len(pkt: &Packet, frame_len: u32) -> u32 {
    let l3 = &pkt.l3;
    let end = match (l3.v6, l3.ip_len) {
        (true, 0) => frame_len, // a jumbogram: the length is elsewhere
        (true, n) => l3.l3_off as u32 + IPV6_HLEN as u32 + n as u32,
        (false, n) => l3.l3_off as u32 + n as u32,
    };
    let end = if end < frame_len { end } else { frame_len };
    end.saturating_sub(pkt.hdr_len)
}

#[inline(always)]
fn tcp_bits(flags: u8) -> u32 {
    const FIN: u8 = 0x01;
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;
    let mut bits = 0;
    if flags & SYN != 0 {
        bits |= if flags & ACK != 0 { tcp_flag::SYN_ACK } else { tcp_flag::SYN };
    }
    if flags & RST != 0 {
        bits |= tcp_flag::RST;
    }
    if flags & FIN != 0 {
        bits |= tcp_flag::FIN;
    }
    if flags & ACK != 0 {
        bits |= tcp_flag::ACK;
    }
    bits
}
