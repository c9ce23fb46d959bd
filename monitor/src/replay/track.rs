//! The user-space flow tracker: the kernel's flow table, replayed over
//! captured frames (pcap files, tests, benchmarks).
//!
//! Nothing of the kernel's flow logic is written again here: the parser
//! (`monitor_common::parse`) and the flow semantics (`monitor_common::flow`:
//! the key, the new entry, what a packet changes, the ICMP error) are the
//! ones the XDP/TC programs run, so a frame is classified and counted here
//! exactly as in the kernel. Only the table is this module's: a plain
//! `&mut` map where the kernel has BPF maps, atomics and a ring buffer.
//!
//! Differences from the kernel, all forced by replaying a file:
//! - the table never evicts by size (the kernel's is an LRU of bounded
//!   size), so `Stat::FlowMapFull` and `Stat::RingBufFull` stay 0; it
//!   expires idle flows by the live stream's rule only when asked to
//!   ([`Tracker::expire_idle`]), and then by packet timestamps;
//! - timestamps are the capture's, in Unix-epoch nanoseconds, so flows go
//!   through [`EpochClock`] rather than the kernel's monotonic clock;
//! - `ifindex` is 0;
//! - bytes are the original (wire) length of the record, not the captured
//!   length, so a capture with a small snaplen still counts what crossed the
//!   wire. On links without an Ethernet header (Linux cooked, raw IP) the
//!   bytes are counted from the IP header on: the link header there is a
//!   capture artefact, not wire bytes.

use std::time::Duration;

use monitor_common::{
    flow::{dir_side, icmp_error_of, is_dns_answer, key_of, new_entry, on_packet, quoted_key},
    parse::{self, L4Kind, Packet},
    user::addr_bytes,
    FlowKey, FlowValue, Stat, DNS_PAYLOAD_MAX,
};
use rustc_hash::FxHashMap;

use crate::flow::{EpochClock, Flow, FlowState, NoHint};

/// The link layer a captured frame starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// Ethernet II, with up to two 802.1Q/802.1ad tags (pcap link type 1).
    Ethernet,
    /// Linux cooked capture v1, `tcpdump -i any` before libpcap 1.10 (113).
    LinuxSll,
    /// Linux cooked capture v2 (276).
    LinuxSll2,
    /// Raw IP, IPv4 or IPv6 told apart by the version nibble (101).
    RawIp,
    /// Raw IPv4 only (228).
    RawIpv4,
    /// Raw IPv6 only (229).
    RawIpv6,
}

impl LinkKind {
    /// The link kind of a pcap/pcapng link type number, if supported.
    pub fn from_linktype(linktype: i32) -> Option<LinkKind> {
        match linktype {
            1 => Some(LinkKind::Ethernet),
            113 => Some(LinkKind::LinuxSll),
            276 => Some(LinkKind::LinuxSll2),
            101 => Some(LinkKind::RawIp),
            228 => Some(LinkKind::RawIpv4),
            229 => Some(LinkKind::RawIpv6),
            _ => None,
        }
    }

    /// Where the ethertype sits and where the next header starts, for links
    /// that carry one.
    fn pseudo_header(self) -> Option<(usize, usize)> {
        match self {
            LinkKind::LinuxSll => Some((14, 16)),
            LinkKind::LinuxSll2 => Some((0, 20)),
            _ => None,
        }
    }
}

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
/// An ethertype no parser branch accepts: raw IP with a bad version nibble.
const ETH_P_NONE: u16 = 0;
/// The kernel parser never reads past offset 512 + 40 (`parse::MAX_OFFSET`
/// plus the largest header read there), so a frame prefix this long decides
/// everything it decides on the whole frame.
const PARSE_WINDOW: usize = 1024;
/// Headers of almost every frame fit in this many bytes (Ethernet, two VLAN
/// tags, IPv6 and a TCP header with options take 118).
const HEADERS_GUESS: usize = 128;
/// Where a frame must start relative to a 4-byte boundary so that the IP
/// header behind a 14-byte Ethernet header is word aligned.
const NET_IP_ALIGN: usize = 2;

/// Per-reason packet counters, indexed like the kernel's `STATS` map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats([u64; Stat::COUNT as usize]);

impl Stats {
    pub fn get(&self, stat: Stat) -> u64 {
        self.0[stat as usize]
    }

    /// Adds `other`'s counts: the shards of a sharded replay, as one table.
    pub fn merge(&mut self, other: &Stats) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    fn add(&mut self, stat: Stat, n: u64) {
        self.0[stat as usize] += n;
    }

    /// Every counter with its stable name, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (Stat, u64)> + '_ {
        Stat::ALL.iter().map(move |&s| (s, self.get(s)))
    }

    /// Packets that were neither counted into a flow nor attributed as an
    /// ICMP error: the reasons they were skipped, non-zero ones only.
    pub fn skipped(&self) -> impl Iterator<Item = (Stat, u64)> + '_ {
        self.iter().filter(|&(s, n)| {
            n > 0
                && !matches!(
                    s,
                    Stat::Packets
                        | Stat::Tracked
                        | Stat::IcmpErrorMatched
                        | Stat::DnsCopied
                        | Stat::DnsTruncated
                )
        })
    }
}

/// A flow table fed one captured frame at a time.
#[derive(Debug)]
pub struct Tracker {
    /// Fx rather than SipHash: the keys come from the operator's own
    /// captures, and hashing is on the path of every packet.
    flows: FxHashMap<FlowKey, FlowValue>,
    stats: Stats,
    /// The latest packet timestamp seen: "now" when flows are aged.
    now_ns: u64,
    /// Where frames are parsed: aligned as the kernel expects, and where
    /// cooked and raw-IP frames get an Ethernet header. Never reallocated.
    scratch: Box<[u8]>,
    /// Payloads sent from port 53, in capture order, when kept.
    dns: Option<Vec<crate::dns::DnsMessage>>,
    /// When set, flows idle past these timeouts leave the table for `ended`.
    expiry: Option<Expiry>,
    /// Capture time of the next sweep for idle flows.
    next_sweep_ns: u64,
    /// Expired flows not yet taken by [`Tracker::take_ended`].
    ended: Vec<(FlowKey, FlowValue)>,
    /// The most flows the table held at once.
    peak: usize,
    /// Sweeps happen only when the caller asks ([`Tracker::sweep_at`]).
    sweep_by_caller: bool,
}

/// When a replayed flow has ended: the rule of the live stream
/// (`kernel::stream::StreamOptions`), by packet timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// Any flow idle this long has ended.
    pub idle_timeout: Duration,
    /// A closed, refused or failed flow idle this long has ended.
    pub closed_timeout: Duration,
    /// The answer timeout flows are judged with: a flow still awaiting its
    /// answer is kept until it is not, so that it is judged as it would be
    /// at the end of the capture.
    pub answer_timeout: Duration,
}

impl Expiry {
    /// The live stream's timeouts (120 s idle, 10 s once closed or failed).
    pub fn live(answer_timeout: Duration) -> Expiry {
        Expiry {
            idle_timeout: Duration::from_secs(120),
            closed_timeout: Duration::from_secs(10),
            answer_timeout,
        }
    }
}

/// How often, in capture time, the table is swept for idle flows: the live
/// stream's read interval.
const SWEEP_INTERVAL_NS: u64 = 1_000_000_000;

impl Default for Tracker {
    fn default() -> Tracker {
        Tracker::new()
    }
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker {
            flows: FxHashMap::default(),
            stats: Stats::default(),
            now_ns: 0,
            scratch: vec![0; PARSE_WINDOW + 4].into_boxed_slice(),
            dns: None,
            expiry: None,
            next_sweep_ns: 0,
            ended: Vec::new(),
            peak: 0,
            sweep_by_caller: false,
        }
    }

    /// From now on, flows that ended by `expiry`'s rule (idle for
    /// `idle_timeout`, or closed or failed and idle for `closed_timeout`)
    /// leave the table once a second of capture time, for
    /// [`Tracker::take_ended`]: memory then follows the flows open at once,
    /// not every flow of the capture. A packet of an expired flow's key
    /// starts a new flow, as in the kernel.
    pub fn expire_idle(&mut self, expiry: Expiry) {
        self.expiry = Some(expiry);
    }

    /// Like [`Tracker::expire_idle`], but the table is swept only by
    /// [`Tracker::sweep_at`]: a shard of a sharded replay sweeps when the
    /// whole capture's clock says so, not its own packets'.
    pub fn expire_idle_when_told(&mut self, expiry: Expiry) {
        self.expiry = Some(expiry);
        self.sweep_by_caller = true;
    }

    /// Moves "now" to `now_ns` (if later) and sweeps the table for ended flows.
    pub fn sweep_at(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        if let Some(e) = self.expiry {
            self.sweep(e);
        }
    }

    /// How often, in capture time, [`Tracker::push_captured`] sweeps on its own.
    pub const SWEEP_INTERVAL_NS: u64 = SWEEP_INTERVAL_NS;

    /// The key of the flow that a frame would be counted into (the quoted
    /// flow's for an ICMP error), `None` for a frame counted into none: how
    /// a sharded replay sends every packet of a flow to the same shard.
    pub fn flow_key_of(&mut self, l2: LinkKind, frame: &[u8], orig_len: u64) -> Option<FlowKey> {
        let (pkt, _) = self.parse_captured(l2, frame, orig_len).ok()?;
        let (key, _) = if pkt.kind == L4Kind::IcmpError { quoted_key(&pkt) } else { key_of(&pkt) };
        Some(key)
    }

    /// Parses a captured frame of link type `l2`: the packet and the bytes
    /// it counts for (its original length, at least what was captured), or
    /// the reason it counts into no flow.
    fn parse_captured(&mut self, l2: LinkKind, frame: &[u8], orig_len: u64) -> Result<(Packet, u64), Stat> {
        let orig_len = orig_len.max(frame.len() as u64);
        match l2 {
            LinkKind::Ethernet => self.parse_ethernet(frame).map(|p| (p, orig_len)),
            _ => self.parse_cooked(l2, frame, orig_len),
        }
    }

    /// The flows expired since the last call, in no particular order.
    pub fn take_ended(&mut self) -> Vec<(FlowKey, FlowValue)> {
        std::mem::take(&mut self.ended)
    }

    /// The most flows the table held at once so far.
    pub fn peak_len(&self) -> usize {
        self.peak
    }

    /// The earliest first packet of the flows still in the table.
    pub fn oldest_start_ns(&self) -> Option<u64> {
        self.flows.values().map(|v| v.first_seen_ns).min()
    }

    fn sweep(&mut self, e: Expiry) {
        let now = self.now_ns;
        let clock = EpochClock { now_ns: now };
        let (idle_ns, closed_ns) = (e.idle_timeout.as_nanos() as u64, e.closed_timeout.as_nanos() as u64);
        let ended = &mut self.ended;
        self.flows.retain(|k, v| {
            let idle = now.saturating_sub(v.last_seen_ns);
            if idle < closed_ns.min(idle_ns) {
                return true;
            }
            let state = Flow::from_entry(k, v, &clock, &NoHint, e.answer_timeout).map(|f| f.state);
            if state == Some(FlowState::Awaiting) {
                return true;
            }
            let finished = state.is_some_and(|s| s == FlowState::Closed || s.is_failure());
            if idle >= idle_ns || (finished && idle >= closed_ns) {
                ended.push((*k, *v));
                return false;
            }
            true
        });
    }

    /// Keeps the payloads sent from port 53 (DNS answers) for
    /// [`Tracker::take_dns`]. They are counted (`dns_copied`,
    /// `dns_truncated`) whether kept or not, as the kernel counts them.
    pub fn keep_dns(&mut self) {
        self.dns.get_or_insert_with(Vec::new);
    }

    /// The DNS payloads kept so far, in capture order.
    pub fn take_dns(&mut self) -> Vec<crate::dns::DnsMessage> {
        self.dns.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Whether DNS payloads are kept and not yet taken.
    pub fn has_dns(&self) -> bool {
        self.dns.as_ref().is_some_and(|d| !d.is_empty())
    }

    /// Counts one frame whose whole wire length was captured.
    pub fn push(&mut self, ts_ns: u64, l2: LinkKind, frame: &[u8]) {
        self.push_captured(ts_ns, l2, frame, frame.len() as u64);
    }

    /// Counts one frame of which only `frame` was captured out of
    /// `orig_len` bytes (pcap's caplen vs. len).
    pub fn push_captured(&mut self, ts_ns: u64, l2: LinkKind, frame: &[u8], orig_len: u64) {
        self.stats.add(Stat::Packets, 1);
        self.now_ns = self.now_ns.max(ts_ns);
        match self.parse_captured(l2, frame, orig_len) {
            Ok((pkt, bytes)) => {
                self.track(&pkt, bytes, ts_ns);
                if is_dns_answer(&pkt) {
                    self.copy_dns(&pkt, ts_ns, l2, frame, bytes);
                }
            }
            Err(stat) => self.stats.add(stat, 1),
        }
        self.peak = self.peak.max(self.flows.len());
        if let Some(e) = self.expiry.filter(|_| !self.sweep_by_caller) {
            if self.now_ns >= self.next_sweep_ns {
                self.sweep(e);
                self.next_sweep_ns = self.now_ns.saturating_add(SWEEP_INTERVAL_NS);
            }
        }
    }

    /// `monitor-ebpf/src/dns.rs::capture` without the rate limit and the
    /// ring buffer: counts the payload and keeps its first
    /// `DNS_PAYLOAD_MAX` bytes (those captured) if asked to.
    fn copy_dns(&mut self, pkt: &Packet, ts_ns: u64, l2: LinkKind, frame: &[u8], bytes: u64) {
        // The kernel measures from the Ethernet header; cooked and raw frames
        // were parsed behind a synthetic one, and `bytes` is their L3 length.
        let (wire_len, eth_shift) = match l2 {
            LinkKind::Ethernet => (bytes, 0),
            _ => (bytes + ETH_HLEN as u64, ETH_HLEN),
        };
        let off = pkt.hdr_len as u64;
        let orig_len = parse::payload_len(pkt, wire_len as u32);
        if orig_len == 0 {
            return; // a bare ACK (maybe padded to the Ethernet minimum)
        }
        self.stats.add(Stat::DnsCopied, 1);
        if orig_len as usize > DNS_PAYLOAD_MAX {
            self.stats.add(Stat::DnsTruncated, 1);
        }
        let Some(kept) = self.dns.as_mut() else { return };
        // Where the L3 header starts in `frame` (0 for Ethernet and raw IP).
        let l3_start = l2.pseudo_header().map_or(0, |(_, l3)| l3);
        let start = (off as usize - eth_shift + l3_start).min(frame.len());
        let end = (start + (orig_len as usize).min(DNS_PAYLOAD_MAX)).min(frame.len());
        let (key, dir) = key_of(pkt);
        kept.push(crate::dns::DnsMessage {
            ts_ns,
            key,
            sender: dir_side(dir),
            tcp_seq: pkt.tcp_seq,
            orig_len,
            payload: frame[start..end].to_vec(),
        });
    }

    fn parse_ethernet(&mut self, frame: &[u8]) -> Result<Packet, Stat> {
        if frame.as_ptr() as usize % 4 == NET_IP_ALIGN {
            return parse_frame(frame);
        }
        self.parse_copy(&[], frame)
    }

    /// Parses `head` followed by `body`, copied to an aligned place. A parse
    /// that succeeds on a prefix of a frame succeeds alike on the whole frame
    /// (the parser reads only bytes inside its bounds checks and takes
    /// nothing else from the frame's end), so the headers are tried first
    /// and the rest is copied only when that fails.
    fn parse_copy(&mut self, head: &[u8], body: &[u8]) -> Result<Packet, Stat> {
        let at = self.aligned_start();
        let (h, total) = (head.len(), head.len() + body.len());
        self.scratch[at..at + h].copy_from_slice(head);
        let short = total.min(HEADERS_GUESS);
        self.scratch[at + h..at + short].copy_from_slice(&body[..short - h]);
        let first = parse_frame(&self.scratch[at..at + short]);
        if first.is_ok() || short == total {
            return first;
        }
        let n = total.min(PARSE_WINDOW);
        self.scratch[at + short..at + n].copy_from_slice(&body[short - h..n - h]);
        parse_frame(&self.scratch[at..at + n])
    }

    /// The offset in `scratch` where a frame starts NET_IP_ALIGN past a
    /// 4-byte boundary.
    fn aligned_start(&self) -> usize {
        (NET_IP_ALIGN + 4 - self.scratch.as_ptr() as usize % 4) % 4
    }

    /// Parses a frame without an Ethernet header by giving it one that
    /// carries the link's protocol, so that the kernel parser runs unchanged
    /// (VLAN tags in a cooked capture included). Returns the L3 byte count.
    fn parse_cooked(&mut self, l2: LinkKind, frame: &[u8], orig_len: u64) -> Result<(Packet, u64), Stat> {
        let (ethertype, l3) = match l2.pseudo_header() {
            Some((type_off, l3_off)) => {
                let t = frame.get(type_off..type_off + 2).ok_or(Stat::ShortEthernet)?;
                if frame.len() < l3_off {
                    return Err(Stat::ShortEthernet);
                }
                (u16::from_be_bytes([t[0], t[1]]), &frame[l3_off..])
            }
            None => {
                let ethertype = match l2 {
                    LinkKind::RawIpv4 => ETH_P_IP,
                    LinkKind::RawIpv6 => ETH_P_IPV6,
                    // Raw IP: the version nibble; an empty frame is a short IPv4 header.
                    _ => match frame.first().map(|b| b >> 4) {
                        None | Some(4) => ETH_P_IP,
                        Some(6) => ETH_P_IPV6,
                        Some(_) => ETH_P_NONE,
                    },
                };
                (ethertype, frame)
            }
        };
        let l3_len = orig_len.saturating_sub((frame.len() - l3.len()) as u64);
        let mut eth = [0u8; ETH_HLEN];
        eth[12..].copy_from_slice(&ethertype.to_be_bytes());
        self.parse_copy(&eth, l3).map(|p| (p, l3_len))
    }

    /// The kernel's flow table update (`monitor-ebpf/src/flow.rs::track`),
    /// one wire segment at a time, without the per-CPU cache (whose counts
    /// the kernel's reader adds back).
    fn track(&mut self, pkt: &Packet, bytes: u64, now: u64) {
        if pkt.kind == L4Kind::IcmpError {
            self.attribute_icmp_error(pkt, now);
            return;
        }
        let (key, dir) = key_of(pkt);
        self.stats.add(Stat::Tracked, 1);
        let v = match self.flows.entry(key) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(new_entry(pkt, dir, 1, bytes, now, 0));
                return;
            }
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        };
        v.packets[dir] += 1;
        v.bytes[dir] += bytes;
        v.last_seen_ns = now;
        if let Some(change) = on_packet(v.tcp_flags[dir], v.initiator, pkt, dir) {
            v.tcp_flags[dir] = change.tcp_flags;
            if let Some(initiator) = change.initiator {
                (v.initiator, v.initiator_how) = initiator;
            }
        }
    }

    /// The kernel's `attribute_icmp_error`: the quoted flow takes the error
    /// and its sender; last_seen moves only when the error changes.
    fn attribute_icmp_error(&mut self, pkt: &Packet, now: u64) {
        let (key, dir) = quoted_key(pkt);
        let Some(v) = self.flows.get_mut(&key) else {
            self.stats.add(Stat::IcmpErrorNoFlow, 1);
            return;
        };
        self.stats.add(Stat::IcmpErrorMatched, 1);
        let err = icmp_error_of(pkt, dir);
        // The outer packet's source: the server itself, or a router or
        // firewall on the way.
        v.icmp_sender = addr_bytes(&pkt.l3.src);
        if v.icmp_error != err {
            v.icmp_error = err;
            v.last_seen_ns = now;
        }
    }

    /// The raw flow table, as the kernel's `FLOWS` map would hold it.
    pub fn entries(&self) -> impl Iterator<Item = (&FlowKey, &FlowValue)> {
        self.flows.iter()
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The latest packet timestamp seen (Unix-epoch ns), 0 before any packet.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Every flow, oriented client → server and aged to the latest packet:
    /// a SYN with no answer within `answer_timeout` of the end of the
    /// capture is unanswered. Sorted by first packet, then key, so that
    /// output is stable.
    pub fn flows(&self, answer_timeout: Duration) -> Vec<Flow> {
        let clock = EpochClock { now_ns: self.now_ns };
        let mut entries: Vec<_> = self.flows.iter().collect();
        entries.sort_by_key(|(k, v)| (v.first_seen_ns, **k));
        entries
            .into_iter()
            .filter_map(|(k, v)| Flow::from_entry(k, v, &clock, &NoHint, answer_timeout))
            .collect()
    }
}

fn parse_frame(frame: &[u8]) -> Result<Packet, Stat> {
    let data = frame.as_ptr() as usize;
    parse::parse(data, data + frame.len())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use etherparse::{LinuxSllPacketType, PacketBuilder, PacketBuilderStep, TcpHeader};

    use super::*;
    use crate::flow::{addr_key, FlowState, Proto};
    use monitor_common::{initiator_how, proto, side, tcp_flag, IcmpError};

    const CLIENT: [u8; 4] = [10, 200, 2, 50];
    const SERVER: [u8; 4] = [10, 200, 1, 11];
    const ROUTER: [u8; 4] = [10, 200, 2, 1];
    const CLIENT6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50];
    const SERVER6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];
    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1_700_000_000 * SEC;

    fn eth() -> PacketBuilderStep<etherparse::Ethernet2Header> {
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
    }

    fn write<B>(build: impl FnOnce(Vec<u8>) -> B) -> B {
        build(Vec::new())
    }

    /// An Ethernet/IPv4/TCP segment with the flags set by `flags`.
    fn tcp(
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        flags: fn(PacketBuilderStep<TcpHeader>) -> PacketBuilderStep<TcpHeader>,
    ) -> Vec<u8> {
        write(|mut v| {
            flags(eth().ipv4(src, dst, 64).tcp(sport, dport, 1000, 64240)).write(&mut v, &[]).unwrap();
            v
        })
    }

    fn syn(b: PacketBuilderStep<TcpHeader>) -> PacketBuilderStep<TcpHeader> {
        b.syn()
    }
    fn syn_ack(b: PacketBuilderStep<TcpHeader>) -> PacketBuilderStep<TcpHeader> {
        b.syn().ack(1001)
    }
    fn ack(b: PacketBuilderStep<TcpHeader>) -> PacketBuilderStep<TcpHeader> {
        b.ack(1)
    }
    fn rst_ack(b: PacketBuilderStep<TcpHeader>) -> PacketBuilderStep<TcpHeader> {
        b.rst().ack(1001)
    }

    fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        eth().ipv4(src, dst, 64).udp(sport, dport).write(&mut v, payload).unwrap();
        v
    }

    fn udp6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16) -> Vec<u8> {
        let mut v = Vec::new();
        eth().ipv6(src, dst, 64).udp(sport, dport).write(&mut v, b"ping").unwrap();
        v
    }

    /// An IPv4 packet (no Ethernet header) as an ICMP error would quote it:
    /// the IP header and the first 8 bytes of the transport header.
    fn quote_v4_syn(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, 1000, 64240).syn().write(&mut v, &[]).unwrap();
        v.truncate(28);
        v
    }

    fn icmp4_error(from: [u8; 4], to: [u8; 4], t: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        eth().ipv4(from, to, 64).icmpv4_raw(t, code, [0; 4]).write(&mut v, quoted).unwrap();
        v
    }

    fn key4(a: [u8; 4], pa: u16, b: [u8; 4], pb: u16, p: u8) -> FlowKey {
        FlowKey::canonical(addr_key(IpAddr::from(a)), pa, addr_key(IpAddr::from(b)), pb, p).0
    }

    fn value(t: &Tracker, k: &FlowKey) -> FlowValue {
        *t.flows.get(k).unwrap_or_else(|| panic!("no flow for {k:?}; table: {:?}", t.flows.keys()))
    }

    /// Pushes each frame one second apart from T0 and returns the tracker.
    fn replay(frames: &[Vec<u8>]) -> Tracker {
        let mut t = Tracker::new();
        for (i, f) in frames.iter().enumerate() {
            t.push(T0 + i as u64 * SEC, LinkKind::Ethernet, f);
        }
        t
    }

    fn only_reason(t: &Tracker) -> Vec<(Stat, u64)> {
        t.stats().skipped().collect()
    }

    #[test]
    fn tcp_handshake_counts_both_directions_into_one_flow() {
        let frames = [
            tcp(CLIENT, 40000, SERVER, 7101, syn),
            tcp(SERVER, 7101, CLIENT, 40000, syn_ack),
            tcp(CLIENT, 40000, SERVER, 7101, ack),
        ];
        let t = replay(&frames);
        assert_eq!(t.len(), 1, "both directions must share one entry");
        let v = value(&t, &key4(CLIENT, 40000, SERVER, 7101, proto::TCP));
        // 10.200.1.11 sorts below 10.200.2.50: the server is side A.
        assert_eq!(v.initiator, side::B);
        assert_eq!(v.initiator_how, initiator_how::TCP_SYN);
        assert_eq!(v.packets, [1, 2]);
        assert_eq!(v.bytes, [frames[1].len() as u64, (frames[0].len() + frames[2].len()) as u64]);
        assert_eq!(v.tcp_flags[1], tcp_flag::SYN | tcp_flag::ACK);
        assert_eq!(v.tcp_flags[0], tcp_flag::SYN_ACK | tcp_flag::ACK);
        assert_eq!((v.first_seen_ns, v.last_seen_ns), (T0, T0 + 2 * SEC));
        assert_eq!(t.stats().get(Stat::Packets), 3);
        assert_eq!(t.stats().get(Stat::Tracked), 3);

        let flows = t.flows(Duration::from_secs(3));
        let f = &flows[0];
        assert_eq!((f.proto, f.client.port, f.server.port), (Proto::Tcp, 40000, 7101));
        assert_eq!(f.client.ip, IpAddr::from(CLIENT));
        assert_eq!(f.state, FlowState::Established);
        assert_eq!(f.to_server.packets, 2);
        assert!(f.initiator_seen);
    }

    #[test]
    fn syn_ack_alone_names_the_side_it_was_sent_to_as_client() {
        let t = replay(&[tcp(SERVER, 5432, CLIENT, 50000, syn_ack)]);
        let f = &t.flows(Duration::from_secs(3))[0];
        assert_eq!((f.client.ip, f.server.port), (IpAddr::from(CLIENT), 5432));
        assert_eq!(f.initiator_how, "tcp-syn-ack");
    }

    #[test]
    fn midstream_tcp_has_no_initiator_until_a_syn_shows_up() {
        let mut t = replay(&[tcp(CLIENT, 40000, SERVER, 7101, ack)]);
        let k = key4(CLIENT, 40000, SERVER, 7101, proto::TCP);
        assert_eq!(
            (value(&t, &k).initiator, value(&t, &k).initiator_how),
            (side::NONE, initiator_how::UNKNOWN)
        );
        t.push(T0 + SEC, LinkKind::Ethernet, &tcp(CLIENT, 40000, SERVER, 7101, syn));
        assert_eq!((value(&t, &k).initiator, value(&t, &k).initiator_how), (side::B, initiator_how::TCP_SYN));
    }

    #[test]
    fn unanswered_syn_ages_against_the_last_packet_of_the_capture() {
        let mut t = Tracker::new();
        t.push(T0, LinkKind::Ethernet, &tcp(CLIENT, 40001, SERVER, 5201, syn));
        t.push(T0 + 2 * SEC, LinkKind::Ethernet, &udp(CLIENT, 5353, SERVER, 53, b"q"));
        let state = |t: &Tracker| t.flows(Duration::from_secs(3))[0].state;
        assert_eq!(state(&t), FlowState::Awaiting);
        t.push(T0 + 3 * SEC, LinkKind::Ethernet, &udp(CLIENT, 5353, SERVER, 53, b"q"));
        assert_eq!(state(&t), FlowState::Unanswered);
    }

    #[test]
    fn rst_answer_makes_the_flow_refused() {
        let t = replay(&[tcp(CLIENT, 40002, SERVER, 7003, syn), tcp(SERVER, 7003, CLIENT, 40002, rst_ack)]);
        assert_eq!(t.flows(Duration::from_secs(3))[0].state, FlowState::Refused);
    }

    #[test]
    fn udp_client_is_the_first_sender() {
        let t = replay(&[udp(SERVER, 53, CLIENT, 5353, b"late reply"), udp(CLIENT, 5353, SERVER, 53, b"q")]);
        let v = value(&t, &key4(CLIENT, 5353, SERVER, 53, proto::UDP));
        assert_eq!((v.initiator, v.initiator_how), (side::A, initiator_how::FIRST_PACKET));
        assert_eq!(v.tcp_flags, [0, 0]);
        let f = &t.flows(Duration::from_secs(3))[0];
        assert_eq!((f.client.ip, f.state), (IpAddr::from(SERVER), FlowState::Answered));
    }

    #[test]
    fn icmp_echo_is_keyed_by_identifier_and_oriented_by_request() {
        let mut reply = Vec::new();
        eth().ipv4(SERVER, CLIENT, 64).icmpv4_echo_reply(77, 1).write(&mut reply, &[]).unwrap();
        let mut req = Vec::new();
        eth().ipv4(CLIENT, SERVER, 64).icmpv4_echo_request(77, 2).write(&mut req, &[]).unwrap();
        let t = replay(&[reply, req]);
        assert_eq!(t.len(), 1);
        let v = value(&t, &key4(CLIENT, 77, SERVER, 77, proto::ICMP));
        // The reply came first and went to the client (side B).
        assert_eq!((v.initiator, v.initiator_how), (side::B, initiator_how::ICMP_ECHO));
        assert_eq!(v.packets, [1, 1]);
    }

    #[test]
    fn other_icmp_is_one_flow_per_address_pair_and_type() {
        // Timestamp request (13): the ICMP type stands in for both ports.
        let mut v = Vec::new();
        eth().ipv4(CLIENT, SERVER, 64).icmpv4_raw(13, 0, [0; 4]).write(&mut v, &[0; 12]).unwrap();
        let mut w = Vec::new();
        eth().ipv4(CLIENT, SERVER, 64).icmpv4_raw(10, 0, [0; 4]).write(&mut w, &[0; 12]).unwrap();
        let t = replay(&[v.clone(), v, w]);
        assert_eq!(t.len(), 2, "one flow per ICMP type");
        let val = value(&t, &key4(CLIENT, 13, SERVER, 13, proto::ICMP));
        assert_eq!(val.initiator_how, initiator_how::FIRST_PACKET);
        assert_eq!(val.packets.iter().sum::<u64>(), 2);
        let flows = t.flows(Duration::from_secs(3));
        let solicit = flows.iter().find(|f| f.server.port == 10).expect("router solicitation flow");
        assert_eq!(solicit.network_control(), Some("IPv4 router discovery"));
        let stamp = flows.iter().find(|f| f.server.port == 13).expect("timestamp flow");
        assert_eq!(stamp.network_control(), None, "a timestamp request is judged like any flow");
    }

    #[test]
    fn icmp_error_is_attributed_to_the_quoted_flow_not_counted_in_it() {
        let syn_frame = tcp(CLIENT, 40003, SERVER, 5432, syn);
        let err = icmp4_error(ROUTER, CLIENT, 3, 13, &quote_v4_syn(CLIENT, 40003, SERVER, 5432));
        let t = replay(&[syn_frame.clone(), err]);
        assert_eq!(t.len(), 1, "the ICMP error must not open a flow of its own");
        let v = value(&t, &key4(CLIENT, 40003, SERVER, 5432, proto::TCP));
        assert_eq!(v.packets, [0, 1]);
        assert_eq!(v.last_seen_ns, T0 + SEC, "the error refreshes last_seen");
        let e = IcmpError::unpack(v.icmp_error).expect("icmp_error set");
        assert_eq!(e, IcmpError { v6: false, icmp_type: 3, code: 13, quoted_side: side::B });
        assert_eq!(t.stats().get(Stat::IcmpErrorMatched), 1);
        assert_eq!(t.stats().get(Stat::Tracked), 1);
        let f = &t.flows(Duration::from_secs(3))[0];
        assert_eq!(f.state, FlowState::IcmpUnreachable);
        assert_eq!(f.icmp_error.map(|i| i.name), Some("admin-prohibited"));
        assert_eq!(f.icmp_error.and_then(|i| i.sender), Some(IpAddr::from(ROUTER)), "a router sent it");
    }

    #[test]
    fn icmp_error_without_its_flow_is_counted_apart() {
        let err = icmp4_error(ROUTER, CLIENT, 3, 3, &quote_v4_syn(CLIENT, 40004, SERVER, 22));
        let t = replay(&[err]);
        assert!(t.is_empty());
        assert_eq!(only_reason(&t), vec![(Stat::IcmpErrorNoFlow, 1)]);
    }

    #[test]
    fn icmp_error_with_a_short_quote_is_bad_icmp_quote() {
        let mut quote = quote_v4_syn(CLIENT, 40005, SERVER, 22);
        quote.truncate(22);
        let t = replay(&[icmp4_error(ROUTER, CLIENT, 3, 13, &quote)]);
        assert_eq!(only_reason(&t), vec![(Stat::BadIcmpQuote, 1)]);
    }

    #[test]
    fn icmpv6_error_is_attributed_to_the_quoted_udp_flow() {
        let out = udp6(CLIENT6, 50000, SERVER6, 514);
        // The quote: the client's IPv6 header and UDP header, as sent.
        let quote = out[14..14 + 48].to_vec();
        let mut err = Vec::new();
        eth().ipv6(SERVER6, CLIENT6, 64).icmpv6_raw(1, 4, [0; 4]).write(&mut err, &quote).unwrap();
        let t = replay(&[out, err]);
        let k = FlowKey::canonical(CLIENT6, 50000, SERVER6, 514, proto::UDP).0;
        let e = IcmpError::unpack(value(&t, &k).icmp_error).expect("icmp_error set");
        assert_eq!((e.v6, e.icmp_type, e.code), (true, 1, 4));
        let f = &t.flows(Duration::from_secs(3))[0];
        assert_eq!((f.state, f.icmp_error.unwrap().name), (FlowState::IcmpUnreachable, "port-unreachable"));
    }

    const ROUTER6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe];

    /// An ICMPv6 destination-unreachable from `from` to the client, quoting
    /// the client's UDP datagram `out` (an Ethernet frame).
    fn icmp6_error(from: [u8; 16], code: u8, out: &[u8]) -> Vec<u8> {
        let mut err = Vec::new();
        eth().ipv6(from, CLIENT6, 64).icmpv6_raw(1, code, [0; 4]).write(&mut err, &out[14..14 + 48]).unwrap();
        err
    }

    /// The sender the flow of `k` carries, raw and as the flow reports it.
    fn sender(t: &Tracker, k: &FlowKey) -> (Option<[u8; 16]>, Option<IpAddr>) {
        let f = t.flows(Duration::from_secs(3)).into_iter().find(|f| f.key == *k).expect("the flow");
        (value(t, k).icmp_sender(), f.icmp_error.expect("an ICMP error").sender)
    }

    #[test]
    fn icmp_error_sender_is_the_outer_source_router_or_server_v4() {
        // A router on the way rejects one connection, the server another.
        let by_router = quote_v4_syn(CLIENT, 40010, SERVER, 5432);
        let by_server = quote_v4_syn(CLIENT, 40011, SERVER, 5433);
        let t = replay(&[
            tcp(CLIENT, 40010, SERVER, 5432, syn),
            icmp4_error(ROUTER, CLIENT, 3, 13, &by_router),
            tcp(CLIENT, 40011, SERVER, 5433, syn),
            icmp4_error(SERVER, CLIENT, 3, 3, &by_server),
        ]);
        let (rk, sk) =
            (key4(CLIENT, 40010, SERVER, 5432, proto::TCP), key4(CLIENT, 40011, SERVER, 5433, proto::TCP));
        assert_eq!(sender(&t, &rk), (Some(addr_key(IpAddr::from(ROUTER))), Some(IpAddr::from(ROUTER))));
        assert_eq!(sender(&t, &sk), (Some(addr_key(IpAddr::from(SERVER))), Some(IpAddr::from(SERVER))));
        assert_eq!(t.stats().get(Stat::IcmpErrorMatched), 2);
    }

    #[test]
    fn icmp_error_sender_is_the_outer_source_router_or_server_v6() {
        let to_router = udp6(CLIENT6, 50010, SERVER6, 514);
        let to_server = udp6(CLIENT6, 50011, SERVER6, 515);
        let t = replay(&[
            to_router.clone(),
            icmp6_error(ROUTER6, 1, &to_router),
            to_server.clone(),
            icmp6_error(SERVER6, 4, &to_server),
        ]);
        let rk = FlowKey::canonical(CLIENT6, 50010, SERVER6, 514, proto::UDP).0;
        let sk = FlowKey::canonical(CLIENT6, 50011, SERVER6, 515, proto::UDP).0;
        assert_eq!(sender(&t, &rk), (Some(ROUTER6), Some(IpAddr::from(ROUTER6))));
        assert_eq!(sender(&t, &sk), (Some(SERVER6), Some(IpAddr::from(SERVER6))));
        let f = t.flows(Duration::from_secs(3)).into_iter().find(|f| f.key == rk).unwrap();
        assert_eq!(f.icmp_error.unwrap().name, "admin-prohibited");
    }

    #[test]
    fn a_flow_without_an_icmp_error_has_no_sender() {
        let t = replay(&[tcp(CLIENT, 40012, SERVER, 22, syn)]);
        assert_eq!(value(&t, &key4(CLIENT, 40012, SERVER, 22, proto::TCP)).icmp_sender, [0; 16]);
    }

    #[test]
    fn the_same_error_from_another_sender_updates_the_sender_only() {
        let quote = quote_v4_syn(CLIENT, 40013, SERVER, 5432);
        let other_router = [10, 200, 2, 2];
        let t = replay(&[
            tcp(CLIENT, 40013, SERVER, 5432, syn),
            icmp4_error(ROUTER, CLIENT, 3, 13, &quote),
            icmp4_error(other_router, CLIENT, 3, 13, &quote),
        ]);
        let k = key4(CLIENT, 40013, SERVER, 5432, proto::TCP);
        assert_eq!(sender(&t, &k).1, Some(IpAddr::from(other_router)), "the latest sender is kept");
        assert_eq!(
            value(&t, &k).last_seen_ns,
            T0 + SEC,
            "as in the kernel, only a new error moves last_seen"
        );
    }

    #[test]
    fn icmpv4_inside_ipv6_is_other_protocol() {
        let mut v = Vec::new();
        eth().ipv6(CLIENT6, SERVER6, 64).icmpv6_echo_request(1, 1).write(&mut v, &[]).unwrap();
        v[14 + 6] = proto::ICMP;
        assert_eq!(only_reason(&replay(&[v])), vec![(Stat::OtherProtocol, 1)]);
    }

    #[test]
    fn vlan_tags_up_to_two_are_followed() {
        let mut one = Vec::new();
        eth()
            .single_vlan(10.try_into().unwrap())
            .ipv4(CLIENT, SERVER, 64)
            .udp(1, 2)
            .write(&mut one, &[])
            .unwrap();
        let mut two = Vec::new();
        eth()
            .double_vlan(10.try_into().unwrap(), 20.try_into().unwrap())
            .ipv4(CLIENT, SERVER, 64)
            .udp(1, 2)
            .write(&mut two, &[])
            .unwrap();
        // A third tag: the inner tag now encapsulates one more 802.1Q tag.
        let mut three = two.clone();
        three.splice(20..20, [0x81, 0x00, 0x00, 0x1e]);
        let mut short = one.clone();
        short.truncate(16);
        let t = replay(&[one.clone(), two, three, short]);
        let v = value(&t, &key4(CLIENT, 1, SERVER, 2, proto::UDP));
        // The client sorts above the server: its packets go B to A.
        assert_eq!(v.packets, [0, 2]);
        assert_eq!(v.bytes[1], one.len() as u64 + one.len() as u64 + 4, "tags count as wire bytes");
        assert_eq!(only_reason(&t), vec![(Stat::ShortVlan, 1), (Stat::TooManyVlans, 1)]);
    }

    #[test]
    fn ipv4_header_length_and_fragments_follow_the_kernel() {
        let base = udp(CLIENT, 1000, SERVER, 2000, b"data");
        // IHL 6: one option word between the header and UDP.
        let mut options = base.clone();
        options[14] = 0x46;
        options.splice(34..34, [1, 1, 1, 0]);
        let mut ihl_low = base.clone();
        ihl_low[14] = 0x44;
        let mut ihl_past_end = base.clone();
        ihl_past_end[14] = 0x4f;
        ihl_past_end.truncate(14 + 40);
        let mut first_frag = base.clone();
        first_frag[14 + 6] = 0x20; // MF, offset 0
        let mut later_frag = base.clone();
        later_frag[14 + 7] = 0x10; // offset 16 * 8
        let mut short = base.clone();
        short.truncate(14 + 19);
        let mut wrong_version = base.clone();
        wrong_version[14] = 0x65;
        let t = replay(&[options, ihl_low, ihl_past_end, first_frag, later_frag, short, wrong_version]);
        assert_eq!(value(&t, &key4(CLIENT, 1000, SERVER, 2000, proto::UDP)).packets, [0, 2]);
        assert_eq!(
            only_reason(&t),
            vec![(Stat::ShortIpv4, 1), (Stat::BadIhl, 2), (Stat::LaterFragment, 1), (Stat::BadIpVersion, 1)]
        );
    }

    /// A UDP-over-IPv6 frame with `exts` (header type, body after the two
    /// length/next bytes) inserted between the IPv6 and UDP headers.
    fn udp6_with_ext(exts: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut v = udp6(CLIENT6, 3000, SERVER6, 4000);
        let mut chain = Vec::new();
        let mut next_of_prev = v[14 + 6];
        for (ty, body) in exts.iter().rev() {
            let mut h = vec![next_of_prev, 0];
            h.extend_from_slice(body);
            h[1] = match *ty {
                NEXTHDR_AUTH => (h.len() / 4 - 2) as u8,
                NEXTHDR_FRAGMENT => 0,
                _ => (h.len() / 8 - 1) as u8,
            };
            chain.splice(0..0, h);
            next_of_prev = *ty;
        }
        v[14 + 6] = next_of_prev;
        v.splice(54..54, chain);
        v
    }

    const NEXTHDR_HOP: u8 = 0;
    const NEXTHDR_ROUTING: u8 = 43;
    const NEXTHDR_FRAGMENT: u8 = 44;
    const NEXTHDR_AUTH: u8 = 51;
    const NEXTHDR_DEST: u8 = 60;

    #[test]
    fn ipv6_extension_chains_are_followed_to_the_transport_header() {
        let chain = udp6_with_ext(&[
            (NEXTHDR_HOP, vec![1, 4, 0, 0, 0, 0]),
            (NEXTHDR_DEST, vec![1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (NEXTHDR_ROUTING, vec![0, 0, 0, 0, 0, 0]),
            (NEXTHDR_FRAGMENT, vec![0, 1, 0, 0, 0, 9]), // offset 0, MF: the first fragment
            (NEXTHDR_AUTH, vec![0; 10]),
        ]);
        let later = udp6_with_ext(&[(NEXTHDR_FRAGMENT, vec![0, 0x18, 0, 0, 0, 9])]);
        let nine = udp6_with_ext(&vec![(NEXTHDR_DEST, vec![1, 4, 0, 0, 0, 0]); 9]);
        let eight = udp6_with_ext(&vec![(NEXTHDR_DEST, vec![1, 4, 0, 0, 0, 0]); 7]);
        let mut cut = udp6_with_ext(&[(NEXTHDR_HOP, vec![1, 4, 0, 0, 0, 0])]);
        cut.truncate(14 + 40 + 1);
        let t = replay(&[chain, later, nine, eight, cut]);
        let k = FlowKey::canonical(CLIENT6, 3000, SERVER6, 4000, proto::UDP).0;
        assert_eq!(value(&t, &k).packets, [0, 2], "5- and 7-header chains reach UDP");
        assert_eq!(
            only_reason(&t),
            vec![(Stat::BadIpv6Ext, 1), (Stat::TooManyIpv6Ext, 1), (Stat::LaterFragment, 1)]
        );
    }

    #[test]
    fn headers_past_the_first_guess_are_parsed_on_the_whole_frame() {
        // A 160-byte hop-by-hop header (one PadN option) puts UDP at offset 214.
        let long = udp6_with_ext(&[(NEXTHDR_HOP, [1, 156].into_iter().chain([0; 156]).collect())]);
        assert_eq!(long.len(), 14 + 40 + 160 + 8 + 4);
        let mut t = Tracker::new();
        for shift in 0..4 {
            let mut buf = vec![0u8; long.len() + 8];
            let base = (8 - buf.as_ptr() as usize % 4 + shift) % 4;
            buf[base..base + long.len()].copy_from_slice(&long);
            t.push(T0, LinkKind::Ethernet, &buf[base..base + long.len()]);
            t.push(T0, LinkKind::RawIpv6, &buf[base + 14..base + long.len()]);
        }
        let k = FlowKey::canonical(CLIENT6, 3000, SERVER6, 4000, proto::UDP).0;
        assert_eq!(value(&t, &k).packets, [0, 8]);
        assert_eq!(only_reason(&t), vec![]);
    }

    #[test]
    fn short_and_untracked_frames_are_counted_by_reason() {
        let mut arp = udp(CLIENT, 1, SERVER, 2, &[]);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let mut gre = udp(CLIENT, 1, SERVER, 2, &[]);
        gre[14 + 9] = 47;
        let mut short_tcp = tcp(CLIENT, 1, SERVER, 2, syn);
        short_tcp.truncate(14 + 20 + 19);
        let mut short_udp = udp(CLIENT, 1, SERVER, 2, &[]);
        short_udp.truncate(14 + 20 + 7);
        let mut short_ipv6 = udp6(CLIENT6, 1, SERVER6, 2);
        short_ipv6.truncate(14 + 39);
        let t = replay(&[vec![0; 13], arp, gre, short_tcp, short_udp, short_ipv6]);
        assert!(t.is_empty());
        assert_eq!(
            only_reason(&t),
            vec![
                (Stat::NotIp, 1),
                (Stat::ShortEthernet, 1),
                (Stat::ShortIpv6, 1),
                (Stat::ShortL4, 2),
                (Stat::OtherProtocol, 1)
            ]
        );
        assert_eq!(t.stats().get(Stat::Packets), 6);
    }

    #[test]
    fn cooked_and_raw_links_share_keys_and_count_l3_bytes() {
        let eth_frame = udp(CLIENT, 5000, SERVER, 6379, b"PING");
        let l3 = eth_frame[14..].to_vec();
        let mut sll = Vec::new();
        PacketBuilder::linux_sll(LinuxSllPacketType::OUTGOING, 6, [2, 0, 0, 0, 0, 1, 0, 0])
            .ipv4(CLIENT, SERVER, 64)
            .udp(5000, 6379)
            .write(&mut sll, b"PING")
            .unwrap();
        assert_eq!(&sll[16..], &l3[..], "SLL v1 header is 16 bytes");
        // SLL2: protocol, reserved, ifindex, hatype, pkttype, addr len, addr.
        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0];
        sll2.extend_from_slice(&l3);
        let mut six = udp6(CLIENT6, 5000, SERVER6, 6379)[14..].to_vec();

        let mut t = Tracker::new();
        t.push(T0, LinkKind::Ethernet, &eth_frame);
        t.push(T0, LinkKind::LinuxSll, &sll);
        t.push(T0, LinkKind::LinuxSll2, &sll2);
        t.push(T0, LinkKind::RawIp, &l3);
        t.push(T0, LinkKind::RawIpv4, &l3);
        t.push(T0, LinkKind::RawIp, &six);
        t.push(T0, LinkKind::RawIpv6, &six);
        six[0] = 0x50;
        t.push(T0, LinkKind::RawIp, &six);
        t.push(T0, LinkKind::LinuxSll, &sll[..15]);
        let v = value(&t, &key4(CLIENT, 5000, SERVER, 6379, proto::UDP));
        assert_eq!(v.packets, [0, 5]);
        assert_eq!(v.bytes[1], eth_frame.len() as u64 + 4 * l3.len() as u64);
        let k6 = FlowKey::canonical(CLIENT6, 5000, SERVER6, 6379, proto::UDP).0;
        assert_eq!(value(&t, &k6).packets, [0, 2]);
        assert_eq!(only_reason(&t), vec![(Stat::NotIp, 1), (Stat::ShortEthernet, 1)]);
    }

    /// The kernel parser loads addresses as aligned words: frames that sit at
    /// any address (as in a pcap buffer) must parse alike, without tripping
    /// the misaligned-pointer check of debug builds.
    #[test]
    fn frames_at_any_alignment_parse_alike() {
        let frames = [
            tcp(CLIENT, 40000, SERVER, 7101, syn),
            udp6(CLIENT6, 1, SERVER6, 2),
            icmp4_error(ROUTER, CLIENT, 3, 13, &quote_v4_syn(CLIENT, 40000, SERVER, 7101)),
        ];
        let mut keys = Vec::new();
        for shift in 0..4 {
            let mut t = Tracker::new();
            for f in &frames {
                let mut buf = vec![0u8; f.len() + 8];
                let base = (8 - buf.as_ptr() as usize % 4 + shift) % 4;
                buf[base..base + f.len()].copy_from_slice(f);
                t.push(T0, LinkKind::Ethernet, &buf[base..base + f.len()]);
                t.push(T0, LinkKind::RawIp, &buf[base + 14..base + f.len()]);
            }
            assert_eq!(t.stats().get(Stat::IcmpErrorMatched), 2, "shift {shift}");
            let mut k: Vec<_> = t.entries().map(|(k, v)| (*k, *v)).collect();
            k.sort_by_key(|e| e.0);
            keys.push(k);
        }
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn snaplen_cut_frames_count_their_wire_length() {
        let frame = udp(CLIENT, 5000, SERVER, 53, &[0; 1000]);
        let mut t = Tracker::new();
        t.push_captured(T0, LinkKind::Ethernet, &frame[..96], frame.len() as u64);
        t.push_captured(T0, LinkKind::RawIpv4, &frame[14..110], frame.len() as u64 - 14);
        let v = value(&t, &key4(CLIENT, 5000, SERVER, 53, proto::UDP));
        assert_eq!(v.bytes[1], 2 * frame.len() as u64 - 14);
    }

    #[test]
    fn expiry_keeps_only_open_flows_and_hands_out_every_ended_one() {
        // 200,000 refused connections, one every 10 ms: about a thousand
        // are younger than the closed timeout at any time.
        let total = 200_000u64;
        let mut t = Tracker::new();
        t.expire_idle(Expiry::live(Duration::from_secs(3)));
        let mut ended = 0;
        for i in 0..total {
            let client = [10, 200, 2, 50 + (i / 50_000) as u8];
            let port = 1024 + (i % 50_000) as u16;
            let ts = T0 + i * SEC / 100;
            t.push(ts, LinkKind::Ethernet, &tcp(client, port, SERVER, 7101, syn));
            t.push(ts + 1_000_000, LinkKind::Ethernet, &tcp(SERVER, 7101, client, port, rst_ack));
            ended += t.take_ended().len() as u64;
        }
        assert!(t.peak_len() < 5_000, "peak {} of {total} flows", t.peak_len());
        assert!(ended > total - 5_000, "only {ended} ended");
        assert_eq!(ended + t.len() as u64, total, "every flow is handed out once or still open");
        assert_eq!(t.stats().get(Stat::Tracked), 2 * total);
    }

    #[test]
    fn a_flow_awaiting_its_answer_is_kept_until_it_is_judged_unanswered() {
        let mut t = Tracker::new();
        t.expire_idle(Expiry { answer_timeout: Duration::from_secs(60), ..Expiry::live(Duration::ZERO) });
        t.push(T0, LinkKind::Ethernet, &tcp(CLIENT, 40000, SERVER, 7101, syn));
        // Idle past the closed timeout, still within its answer timeout.
        t.push(T0 + 30 * SEC, LinkKind::Ethernet, &udp(CLIENT, 5000, SERVER, 514, b"x"));
        assert!(t.take_ended().is_empty() && t.len() == 2);
        // Unanswered (a failure) and idle past the closed timeout: ended.
        t.push(T0 + 61 * SEC, LinkKind::Ethernet, &udp(CLIENT, 5000, SERVER, 514, b"x"));
        let ended = t.take_ended();
        assert_eq!(ended.len(), 1, "{ended:?}");
        assert_eq!(ended[0].0, key4(CLIENT, 40000, SERVER, 7101, proto::TCP));
        // A flow merely idle goes after the idle timeout; a packet of its key then starts anew.
        t.push(T0 + 200 * SEC, LinkKind::Ethernet, &tcp(CLIENT, 40000, SERVER, 7101, syn));
        assert_eq!(t.take_ended().len(), 1);
        assert_eq!(value(&t, &key4(CLIENT, 40000, SERVER, 7101, proto::TCP)).first_seen_ns, T0 + 200 * SEC);
        assert_eq!(t.peak_len(), 2);
    }
}
