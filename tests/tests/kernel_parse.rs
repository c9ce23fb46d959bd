//! The kernel programs on crafted frames, through BPF_PROG_TEST_RUN: every
//! protocol, VLAN tags, IPv6 extension chains, and truncated or malformed
//! frames. The verdict is always "pass", every frame is either counted into
//! a flow or counted by reason, and the user-space tracker (pcap replay)
//! agrees with the kernel on every flow and counter.
//!
//! Needs root (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON) and the kernel object
//! (`cargo xtask test` provides both), so it lives in this crate with the
//! other privileged tests, and `cargo test -p monitor` runs as any user.

use std::collections::BTreeMap;

use aya::{
    maps::{HashMap, PerCpuArray},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
    Ebpf,
};
use monitor::{
    kernel,
    replay::track::{LinkKind, Tracker},
};
use monitor_common::{
    initiator_how, maps, programs, proto, side, tcp_flag, FlowCacheSlot, FlowKey, FlowValue, IcmpError, Stat,
    FLOW_CACHE_SLOTS,
};

const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC (-1) as the u32 the test run returns.
const TC_ACT_UNSPEC: u32 = u32::MAX;

// ---- frame building: raw bytes, so malformed frames are as easy as good ones.

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const A4: [u8; 4] = [10, 200, 0, 1];
const B4: [u8; 4] = [10, 200, 0, 2];
const A6: [u8; 16] = [0xfd, 0, 0x2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const B6: [u8; 16] = [0xfd, 0, 0x2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn eth(tags: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    for tpid in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&100u16.to_be_bytes()); // TCI: VLAN 100
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    ipv4_ihl(src, dst, proto, frag, 5, payload)
}

fn ipv4_ihl(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, ihl: u8, payload: &[u8]) -> Vec<u8> {
    let opts = (ihl.max(5) as usize - 5) * 4;
    let total = (20 + opts + payload.len()) as u16;
    let mut h = vec![0x40 | ihl, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend(std::iter::repeat_n(1u8, opts)); // NOP options
    h.extend_from_slice(payload);
    h
}

fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

/// An 8-byte IPv6 extension header (hop-by-hop, routing, destination options).
fn ext8(next: u8) -> Vec<u8> {
    vec![next, 0, 1, 4, 0, 0, 0, 0] // PadN option
}

fn frag6(next: u8, offset: u16, more: bool) -> Vec<u8> {
    let off = (offset << 3) | more as u16;
    let mut h = vec![next, 0];
    h.extend_from_slice(&off.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 7]);
    h
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    h.extend_from_slice(payload);
    h
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    h
}

fn icmp(t: u8, code: u8, rest: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut h = vec![t, code, 0, 0];
    h.extend_from_slice(&rest);
    h.extend_from_slice(payload);
    h
}

fn v4(proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(&[], 0x0800, &ipv4(A4, B4, proto, 0, l4))
}

fn v4_back(proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(&[], 0x0800, &ipv4(B4, A4, proto, 0, l4))
}

// ---- the programs under test

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    Xdp,
    Tc,
}

struct Kernel {
    ebpf: Ebpf,
    hook: Hook,
}

impl Kernel {
    fn load(hook: Hook) -> Kernel {
        let mut ebpf = kernel::load_object(1024).unwrap_or_else(|e| {
            panic!("loading the kernel object failed: {e} (run as root after `cargo xtask build`)")
        });
        match hook {
            Hook::Xdp => {
                let p: &mut Xdp = kernel::program(&mut ebpf, programs::XDP_INGRESS).unwrap();
                p.load().expect("the verifier accepts xdp_ingress");
            }
            Hook::Tc => {
                let p: &mut SchedClassifier = kernel::program(&mut ebpf, programs::TC_INGRESS).unwrap();
                p.load().expect("the verifier accepts tc_ingress");
            }
        }
        Kernel { ebpf, hook }
    }

    /// Runs one frame and asserts that it passes unchanged.
    fn run(&mut self, frame: &[u8]) {
        let hook = self.hook;
        self.try_run(frame).unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN ({hook:?}) failed: {e}"))
    }

    /// Runs one frame; an error is the test harness refusing the frame.
    fn try_run(&mut self, frame: &[u8]) -> Result<(), aya::programs::ProgramError> {
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..TestRunOptions::new() };
        let size = match self.hook {
            Hook::Xdp => {
                let p: &mut Xdp = kernel::program(&mut self.ebpf, programs::XDP_INGRESS).unwrap();
                let r = p.test_run(opts)?;
                assert_eq!(r.return_value, XDP_PASS, "xdp_ingress must pass every frame: {frame:02x?}");
                r.data_size_out
            }
            Hook::Tc => {
                let p: &mut SchedClassifier = kernel::program(&mut self.ebpf, programs::TC_INGRESS).unwrap();
                let r = p.test_run(opts)?;
                assert_eq!(r.return_value, TC_ACT_UNSPEC, "tc_ingress must pass every frame: {frame:02x?}");
                r.data_size_out
            }
        };
        assert_eq!(&out[..size as usize], frame, "the program must not alter the frame");
        Ok(())
    }

    fn stats(&self) -> BTreeMap<&'static str, u64> {
        let map = self.ebpf.map(maps::STATS).expect("STATS map");
        let arr: PerCpuArray<_, u64> = PerCpuArray::try_from(map).unwrap();
        Stat::ALL
            .iter()
            .map(|s| (s.name(), arr.get(&(*s as u32), 0).unwrap().iter().sum::<u64>()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The flow table as user space reads it, a chunk at a time: entries
    /// plus cached counts.
    fn flows(&self) -> BTreeMap<FlowKey, FlowValue> {
        let map = |name| self.ebpf.map(name).unwrap_or_else(|| panic!("{name} map"));
        let mut reader = kernel::table::Reader::default();
        let (mut out, mut chunk) = (Vec::new(), Vec::new());
        while !reader.is_done() {
            reader
                .next_chunk(map(maps::FLOWS), map(maps::FLOW_CACHE), &mut chunk)
                .expect("reading the table");
            out.append(&mut chunk);
        }
        out.into_iter().collect()
    }

    /// The shared entries alone, without the per-CPU cache.
    fn entries(&self) -> BTreeMap<FlowKey, FlowValue> {
        let map = self.ebpf.map(maps::FLOWS).expect("FLOWS map");
        let flows: HashMap<_, FlowKey, FlowValue> = HashMap::try_from(map).unwrap();
        flows.iter().map(|r| r.unwrap()).collect()
    }

    /// Packets of `key` held in cache slots, summed over CPUs, per direction.
    fn cached(&self, key: &FlowKey) -> [u64; 2] {
        let map = self.ebpf.map(maps::FLOW_CACHE).expect("FLOW_CACHE map");
        let slots: PerCpuArray<_, FlowCacheSlot> = PerCpuArray::try_from(map).unwrap();
        let mut sum = [0; 2];
        for i in 0..FLOW_CACHE_SLOTS {
            for s in slots.get(&i, 0).unwrap().iter().filter(|s| s.key == *key) {
                sum[0] += s.packets[0];
                sum[1] += s.packets[1];
            }
        }
        sum
    }

    /// Deletes an entry, as user space does when a flow expires.
    fn expire(&mut self, key: &FlowKey) {
        let map = self.ebpf.map_mut(maps::FLOWS).expect("FLOWS map");
        let mut flows: HashMap<_, FlowKey, FlowValue> = HashMap::try_from(map).unwrap();
        flows.remove(key).expect("the flow is in the table");
    }
}

fn key4(sport: u16, dport: u16, p: u8) -> (FlowKey, usize) {
    let m = |a: [u8; 4]| std::net::Ipv4Addr::from(a).to_ipv6_mapped().octets();
    FlowKey::canonical(m(A4), sport, m(B4), dport, p)
}

fn both_hooks(check: impl Fn(Hook)) {
    check(Hook::Xdp);
    check(Hook::Tc);
}

fn stats_of(pairs: &[(&'static str, u64)]) -> BTreeMap<&'static str, u64> {
    pairs.iter().copied().collect()
}

// ---- tests

#[test]
fn tcp_handshake_is_one_flow_with_the_initiator_and_flags_per_direction() {
    both_hooks(|hook| {
        let mut k = Kernel::load(hook);
        let syn = v4(proto::TCP, &tcp(40000, 443, SYN, &[]));
        let synack = v4_back(proto::TCP, &tcp(443, 40000, SYN | ACK, &[]));
        let data = v4(proto::TCP, &tcp(40000, 443, ACK, b"hello"));
        let fin = v4_back(proto::TCP, &tcp(443, 40000, FIN | ACK, &[]));
        for f in [&syn, &synack, &data, &fin] {
            k.run(f);
        }
        let flows = k.flows();
        assert_eq!(flows.len(), 1, "{hook:?}: both directions share one entry: {flows:?}");
        let (key, dir) = key4(40000, 443, proto::TCP);
        let v = flows[&key];
        let (c2s, s2c) = (dir, 1 - dir);
        assert_eq!(v.packets[c2s], 2, "{hook:?}: client sent SYN and data");
        assert_eq!(v.packets[s2c], 2, "{hook:?}: server sent SYN-ACK and FIN");
        assert_eq!(
            v.bytes[c2s],
            (syn.len() + data.len()) as u64,
            "{hook:?}: bytes from the Ethernet header on"
        );
        assert_eq!(v.bytes[s2c], (synack.len() + fin.len()) as u64);
        assert_eq!(v.tcp_flags[c2s], tcp_flag::SYN | tcp_flag::ACK);
        assert_eq!(v.tcp_flags[s2c], tcp_flag::SYN_ACK | tcp_flag::ACK | tcp_flag::FIN);
        let client_side = if c2s == 0 { side::A } else { side::B };
        assert_eq!((v.initiator, v.initiator_how), (client_side, initiator_how::TCP_SYN), "{hook:?}");
        assert!(v.first_seen_ns > 0 && v.last_seen_ns >= v.first_seen_ns);
        assert_eq!(k.stats(), stats_of(&[("packets", 4), ("tracked", 4)]), "{hook:?}");
    });
}

#[test]
fn syn_ack_alone_names_the_initiator_and_midstream_tcp_does_not() {
    both_hooks(|hook| {
        let mut k = Kernel::load(hook);
        k.run(&v4_back(proto::TCP, &tcp(443, 40000, SYN | ACK, &[])));
        k.run(&v4(proto::TCP, &tcp(40001, 22, ACK, b"x")));
        let flows = k.flows();
        let (key, dir) = key4(40000, 443, proto::TCP);
        let client_side = if dir == 0 { side::A } else { side::B };
        assert_eq!(
            (flows[&key].initiator, flows[&key].initiator_how),
            (client_side, initiator_how::TCP_SYN_ACK)
        );
        let (mid, _) = key4(40001, 22, proto::TCP);
        assert_eq!((flows[&mid].initiator, flows[&mid].initiator_how), (side::NONE, initiator_how::UNKNOWN));
    });
}

#[test]
fn rst_answering_a_syn_is_recorded_on_the_flow() {
    both_hooks(|hook| {
        let mut k = Kernel::load(hook);
        k.run(&v4(proto::TCP, &tcp(40000, 5432, SYN, &[])));
        k.run(&v4_back(proto::TCP, &tcp(5432, 40000, RST | ACK, &[])));
        let (key, dir) = key4(40000, 5432, proto::TCP);
        let v = k.flows()[&key];
        assert_eq!(v.tcp_flags[1 - dir], tcp_flag::RST | tcp_flag::ACK, "{hook:?}");
    });
}

#[test]
fn udp_and_icmp_echo_flows_v4_and_v6() {
    both_hooks(|hook| {
        let mut k = Kernel::load(hook);
        k.run(&v4(proto::UDP, &udp(50000, 53, b"query")));
        k.run(&v4_back(proto::UDP, &udp(53, 50000, b"answer")));
        k.run(&v4(proto::ICMP, &icmp(8, 0, [0x12, 0x34, 0, 1], b"ping")));
        k.run(&v4_back(proto::ICMP, &icmp(0, 0, [0x12, 0x34, 0, 1], b"ping")));
        k.run(&eth(&[], 0x86dd, &ipv6(A6, B6, proto::UDP, &udp(50001, 514, b"log"))));
        k.run(&eth(&[], 0x86dd, &ipv6(A6, B6, proto::ICMPV6, &icmp(128, 0, [0, 9, 0, 1], b"p6"))));
        // Neighbour solicitation: tracked, no echo id.
        k.run(&eth(&[], 0x86dd, &ipv6(A6, B6, proto::ICMPV6, &icmp(135, 0, [0; 4], &[0; 16]))));
        let flows = k.flows();
        assert_eq!(flows.len(), 5, "{hook:?}: {flows:#?}");
        let (dns, _) = key4(50000, 53, proto::UDP);
        assert_eq!(flows[&dns].packets, [1, 1], "{hook:?}: one query, one answer");
        assert_eq!(flows[&dns].initiator_how, initiator_how::FIRST_PACKET);
        let (echo, _) = key4(0x1234, 0x1234, proto::ICMP);
        assert_eq!(flows[&echo].packets, [1, 1], "{hook:?}: echo request and reply share the id");
        assert_eq!(flows[&echo].initiator_how, initiator_how::ICMP_ECHO);
        let v6: Vec<_> = flows.keys().filter(|k| k.addr_a[0] == 0xfd).collect();
        assert_eq!(v6.len(), 3, "{hook:?}: UDP, echo and NS over IPv6");
        // The answer from port 53 is also copied to user space.
        assert_eq!(k.stats(), stats_of(&[("packets", 7), ("tracked", 7), ("dns_copied", 1)]), "{hook:?}");
    });
}

#[test]
fn vlan_tags_are_followed_up_to_two() {
    both_hooks(|hook| {
        let mut k = Kernel::load(hook);
        k.run(&eth(&[0x8100], 0x0800, &ipv4(A4, B4, proto::TCP, 0, &tcp(40000, 80, SYN, &[]))));
        k.run(&eth(&[0x88a8, 0x8100], 0x0800, &ipv4(A4, B4, proto::TCP, 0, &tcp(40001, 80, SYN, &[]))));
        k.run(&eth(
            &[0x88a8, 0x8100, 0x8100],
            0x0800,
            &ipv4(A4, B4, proto::TCP, 0, &tcp(40002, 80, SYN, &[])),
        ));
        let flows = k.flows();
        assert!(flows.contains_key(&key4(40000, 80, proto::TCP).0), "{hook:?}: 802.1Q");
        assert!(flows.contains_key(&key4(40001, 80, proto::TCP).0), "{hook:?}: 802.1ad + 802.1Q");
        assert_eq!(flows.len(), 2);
        assert_eq!(k.stats(), stats_of(&[("packets", 3), ("tracked", 2), ("too_many_vlans", 1)]), "{hook:?}");
    });
}

#[test]
fn ipv4_options_and_fragments() {
    both_hooks(|hook| {
        let mut k = Kernel::load(hook);
        // IHL 8: 12 bytes of options before TCP.
        k.run(&eth(&[], 0x0800, &ipv4_ihl(A4, B4, proto::TCP, 0, 8, &tcp(40000, 636, SYN, &[]))));
        // First fragment (MF set, offset 0) carries the ports; a later one does not.
        k.run(&eth(&[], 0x0800, &ipv4(A4, B4, proto::UDP, 0x2000, &udp(50000, 5201, &[0; 32]))));
        k.run(&eth(&[], 0x0800, &ipv4(A4, B4, proto::UDP, 4, &[0; 32])));
        let flows = k.flows();
        assert!(flows.contains_key(&key4(40000, 636, proto::TCP).0), "{hook:?}: ports after IPv4 options");
        assert!(flows.contains_key(&key4(50000, 5201, proto::UDP).0), "{hook:?}: first fragment");
        assert_eq!(k.stats(), stats_of(&[("packets", 3), ("tracked", 2), ("later_fragment", 1)]), "{hook:?}");
    });
}

#[test]
fn ipv6_extension_chains() {
    both_hooks(|hook| {
        let mut k = Kernel::load(hook);
        const HOP: u8 = 0;
        const ROUTING: u8 = 43;
        const FRAG: u8 = 44;
        const DEST: u8 = 60;
        // hop-by-hop -> routing -> destination options -> first fragment -> TCP
        let mut chain = ext8(ROUTING);
        chain.extend(ext8(DEST));
        chain.extend(ext8(FRAG));
        chain.extend(frag6(proto::TCP, 0, true));
        chain.extend(tcp(40000, 7001, SYN, &[]));
        k.run(&eth(&[], 0x86dd, &ipv6(A6, B6, HOP, &chain)));
        // A later fragment: no ports.
        let mut later = frag6(proto::TCP, 100, false);
        later.extend([0u8; 24]);
        k.run(&eth(&[], 0x86dd, &ipv6(A6, B6, FRAG, &later)));
        // A bogus chain: nine hop-by-hop headers, one more than the parser follows.
        let mut bogus = Vec::new();
        for _ in 0..9 {
            bogus.extend(ext8(HOP));
        }
        k.run(&eth(&[], 0x86dd, &ipv6(A6, B6, HOP, &bogus)));
        // A chain that runs off the end of the packet.
        k.run(&eth(&[], 0x86dd, &ipv6(A6, B6, DEST, &[proto::TCP, 4, 0, 0])));
        let flows = k.flows();
        assert_eq!(flows.len(), 1, "{hook:?}: {flows:#?}");
        let key = flows.keys().next().unwrap();
        assert_eq!((key.port_a.min(key.port_b), key.port_a.max(key.port_b)), (7001, 40000), "{hook:?}");
        assert_eq!(
            k.stats(),
            stats_of(&[
                ("packets", 4),
                ("tracked", 1),
                ("later_fragment", 1),
                ("too_many_ipv6_ext", 1),
                ("bad_ipv6_ext", 1)
            ]),
            "{hook:?}"
        );
    });
}

#[test]
fn icmp_errors_are_attributed_to_the_flow_they_quote() {
    both_hooks(|hook| {
        let mut k = Kernel::load(hook);
        let syn_l3 = ipv4(A4, B4, proto::TCP, 0, &tcp(40000, 1433, SYN, &[]));
        k.run(&eth(&[], 0x0800, &syn_l3));
        // B's firewall answers: destination unreachable, communication administratively prohibited.
        k.run(&eth(&[], 0x0800, &ipv4(B4, A4, proto::ICMP, 0, &icmp(3, 13, [0; 4], &syn_l3[..28]))));
        // An error quoting a flow we never saw, and one whose quote is cut short.
        let other = ipv4(A4, B4, proto::UDP, 0, &udp(50000, 161, &[]));
        k.run(&eth(&[], 0x0800, &ipv4(B4, A4, proto::ICMP, 0, &icmp(3, 3, [0; 4], &other[..28]))));
        k.run(&eth(&[], 0x0800, &ipv4(B4, A4, proto::ICMP, 0, &icmp(3, 3, [0; 4], &other[..22]))));
        // ICMPv6 port unreachable quoting a UDP datagram we saw.
        let dgram = ipv6(A6, B6, proto::UDP, &udp(50001, 514, b"x"));
        k.run(&eth(&[], 0x86dd, &dgram));
        k.run(&eth(&[], 0x86dd, &ipv6(B6, A6, proto::ICMPV6, &icmp(1, 4, [0; 4], &dgram))));

        let flows = k.flows();
        let (key, dir) = key4(40000, 1433, proto::TCP);
        let err = IcmpError::unpack(flows[&key].icmp_error).expect("the error is attributed");
        let quoted_side = if dir == 0 { side::A } else { side::B };
        assert_eq!(err, IcmpError { v6: false, icmp_type: 3, code: 13, quoted_side }, "{hook:?}");
        assert_eq!(flows[&key].packets[1 - dir], 0, "{hook:?}: the ICMP error is not a packet of the flow");
        let v6 = flows.iter().find(|(k, _)| k.proto == proto::UDP).expect("the IPv6 UDP flow");
        let err6 = IcmpError::unpack(v6.1.icmp_error).expect("ICMPv6 error attributed");
        assert_eq!((err6.v6, err6.icmp_type, err6.code), (true, 1, 4));
        assert_eq!(
            k.stats(),
            stats_of(&[
                ("packets", 6),
                ("tracked", 2),
                ("icmp_error_matched", 2),
                ("icmp_error_no_flow", 1),
                ("bad_icmp_quote", 1)
            ]),
            "{hook:?}"
        );
    });
}

/// A router between A and B, in both families.
const R4: [u8; 4] = [10, 200, 9, 1];
const R6: [u8; 16] = [0xfd, 0, 0x9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

fn mapped(a: [u8; 4]) -> [u8; 16] {
    std::net::Ipv4Addr::from(a).to_ipv6_mapped().octets()
}

/// The flow events in the ring, in order.
fn flow_events(k: &mut Kernel) -> Vec<monitor_common::FlowEvent> {
    let map = k.ebpf.map_mut(maps::EVENTS).expect("EVENTS map");
    let mut ring = aya::maps::RingBuf::try_from(map).unwrap();
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        assert_eq!(
            item.len(),
            std::mem::size_of::<monitor_common::FlowEvent>(),
            "one whole event per record"
        );
        // SAFETY: the size matches and FlowEvent is valid for any bytes.
        out.push(unsafe { std::ptr::read_unaligned(item.as_ptr() as *const monitor_common::FlowEvent) });
    }
    out
}

#[test]
fn icmp_errors_record_their_sender_router_or_server() {
    both_hooks(|hook| {
        let mut k = Kernel::load(hook);
        // v4: a router rejects one SYN, the server itself another.
        let by_router = ipv4(A4, B4, proto::TCP, 0, &tcp(40020, 5432, SYN, &[]));
        let by_server = ipv4(A4, B4, proto::TCP, 0, &tcp(40021, 5433, SYN, &[]));
        k.run(&eth(&[], 0x0800, &by_router));
        k.run(&eth(&[], 0x0800, &ipv4(R4, A4, proto::ICMP, 0, &icmp(3, 13, [0; 4], &by_router[..28]))));
        k.run(&eth(&[], 0x0800, &by_server));
        k.run(&eth(&[], 0x0800, &ipv4(B4, A4, proto::ICMP, 0, &icmp(3, 3, [0; 4], &by_server[..28]))));
        // v6: the same, UDP.
        let to_router = ipv6(A6, B6, proto::UDP, &udp(50020, 514, b"x"));
        let to_server = ipv6(A6, B6, proto::UDP, &udp(50021, 515, b"x"));
        k.run(&eth(&[], 0x86dd, &to_router));
        k.run(&eth(&[], 0x86dd, &ipv6(R6, A6, proto::ICMPV6, &icmp(1, 1, [0; 4], &to_router))));
        k.run(&eth(&[], 0x86dd, &to_server));
        k.run(&eth(&[], 0x86dd, &ipv6(B6, A6, proto::ICMPV6, &icmp(1, 4, [0; 4], &to_server))));

        let flows = k.flows();
        let v6_flow = |port: u16| {
            *flows
                .iter()
                .find(|(k, _)| k.proto == proto::UDP && (k.port_a == port || k.port_b == port))
                .unwrap()
                .1
        };
        let sender = |v: &FlowValue| v.icmp_sender();
        assert_eq!(sender(&flows[&key4(40020, 5432, proto::TCP).0]), Some(mapped(R4)), "{hook:?}: v4 router");
        assert_eq!(sender(&flows[&key4(40021, 5433, proto::TCP).0]), Some(mapped(B4)), "{hook:?}: v4 server");
        assert_eq!(sender(&v6_flow(514)), Some(R6), "{hook:?}: v6 router");
        assert_eq!(sender(&v6_flow(515)), Some(B6), "{hook:?}: v6 server");
        assert_eq!(k.stats()["icmp_error_matched"], 4, "{hook:?}");
        // Each error raised one event, and the event carries the sender.
        let icmp_events: Vec<_> = flow_events(&mut k)
            .into_iter()
            .filter(|e| e.header.kind == monitor_common::event_kind::ICMP_ERROR)
            .map(|e| e.value.icmp_sender)
            .collect();
        assert_eq!(icmp_events, vec![mapped(R4), mapped(B4), R6, B6], "{hook:?}");

        // The same error again from another router: the sender follows, no
        // new event (state changes only), and last_seen stays.
        let before = flows[&key4(40020, 5432, proto::TCP).0];
        let other = [10, 200, 9, 2];
        k.run(&eth(&[], 0x0800, &ipv4(other, A4, proto::ICMP, 0, &icmp(3, 13, [0; 4], &by_router[..28]))));
        let after = k.flows()[&key4(40020, 5432, proto::TCP).0];
        assert_eq!(after.icmp_sender(), Some(mapped(other)), "{hook:?}");
        assert_eq!(
            (after.icmp_error, after.last_seen_ns),
            (before.icmp_error, before.last_seen_ns),
            "{hook:?}"
        );
        assert!(flow_events(&mut k).is_empty(), "{hook:?}: a new sender alone raises no event");
        // A flow that saw no error has no sender.
        k.run(&v4(proto::TCP, &tcp(40022, 22, SYN, &[])));
        assert_eq!(k.flows()[&key4(40022, 22, proto::TCP).0].icmp_sender, [0; 16], "{hook:?}");
    });
}

#[test]
fn malformed_frames_pass_and_are_counted_by_reason() {
    both_hooks(|hook| {
        let mut k = Kernel::load(hook);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("not_ip", eth(&[], 0x0806, &[0; 28])), // ARP
            ("short_vlan", eth(&[], 0x8100, &[0, 100])),
            ("short_ipv4", eth(&[], 0x0800, &[0x45, 0, 0, 20, 0, 0])),
            ("bad_ihl", eth(&[], 0x0800, &ipv4_ihl(A4, B4, proto::TCP, 0, 3, &tcp(1, 2, SYN, &[])))),
            ("bad_ihl", {
                // IHL 15 (60 bytes) on a packet that ends after 40.
                let mut ip = ipv4(A4, B4, proto::TCP, 0, &tcp(1, 2, SYN, &[]));
                ip[0] = 0x4f;
                eth(&[], 0x0800, &ip)
            }),
            ("bad_ip_version", eth(&[], 0x0800, &ipv6(A6, B6, proto::TCP, &tcp(1, 2, SYN, &[])))),
            ("short_ipv6", eth(&[], 0x86dd, &[0x60, 0, 0, 0, 0, 8, 6, 64])),
            ("short_l4", eth(&[], 0x0800, &ipv4(A4, B4, proto::TCP, 0, &[0; 12]))),
            ("short_l4", eth(&[], 0x0800, &ipv4(A4, B4, proto::UDP, 0, &[0; 4]))),
            ("short_l4", eth(&[], 0x86dd, &ipv6(A6, B6, proto::ICMPV6, &[128, 0]))),
            ("other_protocol", eth(&[], 0x0800, &ipv4(A4, B4, 47, 0, &[0; 8]))), // GRE
            (
                "other_protocol",
                eth(&[], 0x0800, &ipv4(A4, B4, proto::ICMPV6, 0, &[128, 0, 0, 0, 0, 0, 0, 0])),
            ),
        ];
        let mut refused_by_harness = 0;
        for (reason, frame) in &cases {
            let before = k.stats();
            // The skb test harness (unlike XDP's) refuses an IPv4/IPv6 frame
            // without a full IP header (EINVAL) before our program runs; the
            // parser is shared, and the XDP pass covers these frames.
            if hook == Hook::Tc && matches!(*reason, "short_ipv4" | "short_ipv6") {
                let err = k.try_run(frame).expect_err("the skb test harness refuses a truncated IP header");
                let einval = matches!(&err, aya::programs::ProgramError::SyscallError(e)
                    if e.io_error.raw_os_error() == Some(libc::EINVAL));
                assert!(einval, "expected EINVAL from the skb test harness, got {err:?}");
                refused_by_harness += 1;
                continue;
            }
            k.run(frame);
            let after = k.stats();
            let delta = after.get(reason).copied().unwrap_or(0) - before.get(reason).copied().unwrap_or(0);
            assert_eq!(delta, 1, "{hook:?}: frame {frame:02x?} must count as {reason}; stats {after:?}");
        }
        assert!(k.flows().is_empty(), "{hook:?}: no malformed frame creates a flow");
        assert_eq!(k.stats().get("tracked"), None);
        assert_eq!(k.stats()["packets"], (cases.len() - refused_by_harness) as u64);
    });
}

/// The pcap replay must agree with the kernel: same keys, counters, flags,
/// initiators, ICMP attribution and per-reason counters, frame for frame.
#[test]
fn user_space_tracker_agrees_with_the_kernel() {
    let syn_l3 = ipv4(A4, B4, proto::TCP, 0, &tcp(40010, 1433, SYN, &[]));
    let dgram6 = ipv6(A6, B6, proto::UDP, &udp(50030, 514, b"x"));
    let frames: Vec<Vec<u8>> = vec![
        v4(proto::TCP, &tcp(40000, 443, SYN, &[])),
        v4_back(proto::TCP, &tcp(443, 40000, SYN | ACK, &[])),
        v4(proto::TCP, &tcp(40000, 443, ACK, b"GET / HTTP/1.1")),
        v4_back(proto::TCP, &tcp(443, 40000, ACK | FIN, b"200")),
        v4(proto::TCP, &tcp(40001, 5432, SYN, &[])),
        v4_back(proto::TCP, &tcp(5432, 40001, RST | ACK, &[])),
        v4(proto::TCP, &tcp(40002, 22, ACK, b"midstream")),
        eth(&[], 0x0800, &syn_l3),
        eth(&[], 0x0800, &ipv4(B4, A4, proto::ICMP, 0, &icmp(3, 13, [0; 4], &syn_l3[..28]))),
        // The same error again, from a router: only the sender changes.
        eth(&[], 0x0800, &ipv4(R4, A4, proto::ICMP, 0, &icmp(3, 13, [0; 4], &syn_l3[..28]))),
        eth(&[], 0x86dd, &dgram6),
        eth(&[], 0x86dd, &ipv6(R6, A6, proto::ICMPV6, &icmp(1, 1, [0; 4], &dgram6))),
        v4(proto::UDP, &udp(50000, 53, b"q")),
        v4_back(proto::UDP, &udp(53, 50000, b"a")),
        v4(proto::ICMP, &icmp(8, 0, [0, 7, 0, 1], b"p")),
        eth(&[0x8100], 0x86dd, &ipv6(A6, B6, proto::TCP, &tcp(40003, 6379, SYN, &[]))),
        eth(&[], 0x86dd, &ipv6(A6, B6, 0, &[ext8(proto::UDP), udp(50001, 5201, b"hb")].concat())),
        eth(&[], 0x0806, &[0; 28]),
        eth(&[], 0x0800, &ipv4(A4, B4, proto::UDP, 4, &[0; 32])),
        eth(&[], 0x0800, &ipv4_ihl(A4, B4, proto::TCP, 0, 3, &tcp(1, 2, SYN, &[]))),
        eth(&[0x88a8, 0x8100, 0x8100], 0x0800, &[0; 20]),
        // Padded to the Ethernet minimum: a bare ACK and a short answer from port 53.
        [v4_back(proto::TCP, &tcp(53, 40004, ACK, &[])), vec![0; 6]].concat(),
        [v4_back(proto::UDP, &udp(53, 50005, &[9, 9])), vec![0; 16]].concat(),
    ];
    both_hooks(|hook| {
        let mut k = Kernel::load(hook);
        let mut t = Tracker::new();
        for (i, f) in frames.iter().enumerate() {
            k.run(f);
            t.push(1_000 + i as u64, LinkKind::Ethernet, f);
        }
        let mut kernel = k.flows();
        let mut user: BTreeMap<FlowKey, FlowValue> = t.entries().map(|(k, v)| (*k, *v)).collect();
        // Timestamps and interfaces differ by nature; everything else must not.
        for v in kernel.values_mut().chain(user.values_mut()) {
            v.first_seen_ns = 0;
            v.last_seen_ns = 0;
            v.ifindex = 0;
        }
        assert_eq!(user, kernel, "{hook:?}: tracker and kernel disagree on the flow table");
        let user_stats: BTreeMap<&'static str, u64> =
            t.stats().iter().filter(|(_, n)| *n > 0).map(|(s, n)| (s.name(), n)).collect();
        assert_eq!(user_stats, k.stats(), "{hook:?}: tracker and kernel disagree on the counters");
    });
}

// ---- the per-CPU cache in front of the shared table

/// Keeps this thread on the CPU it runs on, so that every test run of the
/// test uses the same CPU's cache slots.
fn pin_to_this_cpu() {
    // SAFETY: plain libc calls on a zeroed cpu_set_t that lives for the call.
    unsafe {
        let cpu = libc::sched_getcpu();
        assert!(cpu >= 0, "sched_getcpu failed");
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(rc, 0, "sched_setaffinity: {}", std::io::Error::last_os_error());
    }
}

/// Longer than a jiffy at any HZ (100 to 1000): the next packet is in a new tick.
fn next_tick() {
    std::thread::sleep(std::time::Duration::from_millis(20));
}

#[test]
fn cached_counts_are_read_written_back_and_never_given_to_a_later_flow() {
    pin_to_this_cpu();
    both_hooks(|hook| {
        let mut k = Kernel::load(hook);
        let f = v4(proto::UDP, &udp(50000, 5201, b"payload"));
        let (key, dir) = key4(50000, 5201, proto::UDP);
        for _ in 0..10 {
            k.run(&f);
        }
        let cached = k.cached(&key)[dir];
        assert!(cached > 0, "{hook:?}: packets after the first in a tick are counted in the cache");
        assert_eq!(k.entries()[&key].packets[dir] + cached, 10, "{hook:?}: each packet in one place");
        let v = k.flows()[&key];
        assert_eq!((v.packets[dir], v.bytes[dir]), (10, 10 * f.len() as u64), "{hook:?}: read whole");

        next_tick();
        k.run(&f);
        assert_eq!(k.cached(&key), [0, 0], "{hook:?}: a new tick writes the slot back");
        assert_eq!(k.entries()[&key].packets[dir], 11, "{hook:?}: the entry has every packet");

        // An answer in the same tick as cached packets still reaches the
        // entry at once: a new TCP flag never stays in the cache.
        let data = v4(proto::TCP, &tcp(40000, 443, ACK, b"data"));
        let (tkey, tdir) = key4(40000, 443, proto::TCP);
        for _ in 0..5 {
            k.run(&data);
        }
        k.run(&v4_back(proto::TCP, &tcp(443, 40000, RST, &[])));
        let e = k.entries()[&tkey];
        assert_eq!(e.tcp_flags[1 - tdir], tcp_flag::RST, "{hook:?}: the RST is in the entry");
        assert_eq!(k.flows()[&tkey].packets, if tdir == 0 { [5, 1] } else { [1, 5] }, "{hook:?}");

        // The flow expires with packets still cached; the same key comes back
        // later as a new flow, which must not inherit them.
        for _ in 0..5 {
            k.run(&f);
        }
        let left = k.cached(&key)[dir];
        assert!(left > 0, "{hook:?}: packets left in the cache");
        k.expire(&key);
        next_tick();
        k.run(&f);
        let v = k.flows()[&key];
        assert_eq!(v.packets, if dir == 0 { [1, 0] } else { [0, 1] }, "{hook:?}: a new flow, its own packet");
        assert_eq!(k.stats().get("cache_stale"), Some(&left), "{hook:?}: the left-over packets are counted");
    });
}

/// Two flows whose keys share a cache slot, in turn: whichever holds the
/// slot, each packet is counted once, in the slot or in the entry, and the
/// table read gives every packet to its own flow; a flow written back
/// through its entry keeps its count.
#[test]
fn flows_sharing_a_slot_count_every_packet_once() {
    pin_to_this_cpu();
    both_hooks(|hook| {
        let mut k = Kernel::load(hook);
        let index = |sport: u16| {
            let (a, b) = (std::net::IpAddr::from(A4), std::net::IpAddr::from(B4));
            monitor_common::flow_cache_index_of(a, sport, b, 5201, proto::UDP)
        };
        let other = (50001..u16::MAX).find(|&p| index(p) == index(50000)).expect("a port sharing the slot");
        let (fa, fb) = (v4(proto::UDP, &udp(50000, 5201, b"a")), v4(proto::UDP, &udp(other, 5201, b"b")));
        let ((ka, da), (kb, db)) = (key4(50000, 5201, proto::UDP), key4(other, 5201, proto::UDP));
        for round in 1..=3u64 {
            for _ in 0..10 {
                k.run(&fa);
                k.run(&fb);
            }
            let (ea, eb) = (k.entries()[&ka].packets[da], k.entries()[&kb].packets[db]);
            let (ca, cb) = (k.cached(&ka)[da], k.cached(&kb)[db]);
            assert_eq!(
                (ea + ca, eb + cb),
                (10 * round, 10 * round),
                "{hook:?} round {round}: each packet in one place"
            );
            assert!(ca == 0 || cb == 0, "{hook:?}: one slot holds one flow ({ca} and {cb} cached)");
            let f = k.flows();
            assert_eq!(
                (f[&ka].packets[da], f[&kb].packets[db]),
                (10 * round, 10 * round),
                "{hook:?}: read whole"
            );
            next_tick();
        }
        assert_eq!(k.stats().get("cache_stale"), None, "{hook:?}: nothing counted away");
    });
}

// ---- DNS answers to user space

fn dns_events(k: &mut Kernel) -> Vec<monitor_common::DnsEvent> {
    let map = k.ebpf.map_mut(maps::DNS_EVENTS).expect("DNS_EVENTS map");
    let mut ring = aya::maps::RingBuf::try_from(map).unwrap();
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        assert_eq!(item.len(), std::mem::size_of::<monitor_common::DnsEvent>(), "one whole event per record");
        // SAFETY: the size matches and DnsEvent is valid for any bytes.
        out.push(unsafe { std::ptr::read_unaligned(item.as_ptr() as *const monitor_common::DnsEvent) });
    }
    out
}

#[test]
fn dns_answers_are_copied_whole_cut_at_the_bound_and_rate_limited() {
    both_hooks(|hook| {
        let mut k = Kernel::load(hook);
        // A query is not copied; the answer from port 53 is, whole.
        let answer: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        k.run(&v4(proto::UDP, &udp(50000, 53, b"query")));
        k.run(&v4_back(proto::UDP, &udp(53, 50000, &answer)));
        // Over TCP, a segment of the DNS stream, with its sequence number.
        k.run(&v4_back(proto::TCP, &tcp(53, 40000, ACK, &[0, 3, 0xaa, 0xbb, 0xcc])));
        // A bare ACK from port 53 carries nothing to copy.
        k.run(&v4_back(proto::TCP, &tcp(53, 40000, ACK, &[])));
        // Longer than DNS_PAYLOAD_MAX: cut there, and counted.
        let big = vec![0x5a; 2000];
        k.run(&eth(&[], 0x86dd, &ipv6(B6, A6, proto::UDP, &udp(53, 50001, &big))));
        let ev = dns_events(&mut k);
        assert_eq!(ev.len(), 3, "{hook:?}: the UDP answer, the TCP segment and the cut answer");
        let (udp_key, dir) = key4(50000, 53, proto::UDP);
        assert_eq!(ev[0].key, udp_key);
        assert_eq!(ev[0].header.kind, monitor_common::event_kind::DNS);
        assert_eq!(ev[0].sender, if dir == 0 { side::B } else { side::A }, "{hook:?}: the server sent it");
        assert_eq!((ev[0].len, ev[0].orig_len), (300, 300));
        assert_eq!(&ev[0].payload[..300], &answer[..], "{hook:?}: the payload arrives unchanged");
        assert_eq!((ev[1].len, ev[1].tcp_seq), (5, 1), "{hook:?}: TCP segment and its sequence number");
        assert_eq!(&ev[1].payload[..5], &[0, 3, 0xaa, 0xbb, 0xcc]);
        let max = monitor_common::DNS_PAYLOAD_MAX;
        assert_eq!((ev[2].len as usize, ev[2].orig_len), (max, 2000));
        assert!(ev[2].payload.iter().all(|b| *b == 0x5a));
        // Ethernet pads short frames to 60 bytes: padding is not payload.
        let pad = |mut f: Vec<u8>| {
            f.resize(60, 0);
            f
        };
        k.run(&pad(v4_back(proto::TCP, &tcp(53, 40000, ACK, &[]))));
        k.run(&pad(v4_back(proto::UDP, &udp(53, 50003, &[1, 2, 3, 4]))));
        let padded = dns_events(&mut k);
        assert_eq!(padded.len(), 1, "{hook:?}: a padded bare ACK carries no DNS payload");
        assert_eq!((padded[0].len, padded[0].orig_len), (4, 4), "{hook:?}: only the datagram's own bytes");
        assert_eq!(&padded[0].payload[..4], &[1, 2, 3, 4]);
        let stats = k.stats();
        assert_eq!(stats.get("dns_copied"), Some(&4), "{hook:?}: {stats:?}");
        assert_eq!(stats.get("dns_truncated"), Some(&1), "{hook:?}: {stats:?}");

        // A burst far over the budget: the bucket holds DNS_BURST tokens,
        // refilled at DNS_RATE_PER_CPU; the rest are counted, not copied.
        let burst = monitor_common::DNS_BURST as usize * 3;
        let frame = v4_back(proto::UDP, &udp(53, 50002, b"flood"));
        for _ in 0..burst {
            k.run(&frame);
        }
        let copied = dns_events(&mut k).len();
        let stats = k.stats();
        let limited = stats.get("dns_rate_limited").copied().unwrap_or(0) as usize;
        assert_eq!(copied + limited, burst, "{hook:?}: every answer is copied or counted: {stats:?}");
        assert!(limited > 0, "{hook:?}: a burst of {burst} must exceed the budget");
        assert!(
            copied >= monitor_common::DNS_BURST as usize - 3,
            "{hook:?}: the burst allowance is honoured"
        );
    });
}
