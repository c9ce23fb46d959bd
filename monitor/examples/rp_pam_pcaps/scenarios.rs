//! The example captures of examples/rp-pam/pcaps/: RP-PAM traffic that
//! conforms to the matrix, and one capture per kind of finding.
//!
//! Frames are real Ethernet/IPv4/TCP/ICMP (etherparse builds them, with
//! checksums), written with a pcap writer. The bytes are the same on every
//! run: monitor/tests/pcap_examples.rs checks that the committed files are
//! exactly what this writes.

use std::{net::Ipv4Addr, time::Duration};

use etherparse::PacketBuilder;
use pcap_file::{
    pcap::{PcapPacket, PcapWriter},
    pcapng::{
        blocks::{
            enhanced_packet::EnhancedPacketBlock,
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        },
        PcapNgWriter,
    },
    DataLink,
};

// The addresses of examples/rp-pam/inventory.ini.
const NODE1: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 11);
const NODE2: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 12);
const NODE3: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 13);
const DB: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 20);
const REDIS: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 21);
const WORKSTATION: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 50);
const ADMIN: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 60);

/// 2026-04-06T10:00:00Z, the date of the vendor document.
const START: Duration = Duration::from_secs(1_775_469_600);

/// A capture being built: frames with their timestamps.
#[derive(Default)]
struct Capture {
    frames: Vec<(Duration, Vec<u8>)>,
    now: Duration,
}

impl Capture {
    fn new() -> Capture {
        Capture { frames: Vec::new(), now: START }
    }

    /// Moves the clock on.
    fn wait(&mut self, d: Duration) {
        self.now += d;
    }

    fn push(&mut self, frame: Vec<u8>) {
        self.frames.push((self.now, frame));
        self.now += Duration::from_micros(150);
    }

    fn tcp(&mut self, client: Ipv4Addr, server: Ipv4Addr, sport: u16, dport: u16) -> Tcp<'_> {
        Tcp { cap: self, client, server, sport, dport, cseq: 1_000_000 + sport as u32, sseq: 7_000_000 }
    }

    /// An ICMP error from `from` to `to` quoting `quoted` (an IP packet).
    fn icmp_error(&mut self, from: Ipv4Addr, to: Ipv4Addr, icmp_type: u8, code: u8, quoted: &[u8]) {
        let mut v = Vec::new();
        eth(from, to)
            .ipv4(from.octets(), to.octets(), 64)
            .icmpv4_raw(icmp_type, code, [0; 4])
            .write(&mut v, quoted)
            .unwrap();
        self.push(v);
    }
}

/// A MAC address derived from the IPv4 address, so that frames look real.
fn mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x50, o[0], o[1], o[2], o[3]]
}

fn eth(src: Ipv4Addr, dst: Ipv4Addr) -> etherparse::PacketBuilderStep<etherparse::Ethernet2Header> {
    PacketBuilder::ethernet2(mac(src), mac(dst))
}

/// One TCP connection, with sequence numbers kept right.
struct Tcp<'a> {
    cap: &'a mut Capture,
    client: Ipv4Addr,
    server: Ipv4Addr,
    sport: u16,
    dport: u16,
    cseq: u32,
    sseq: u32,
}

#[derive(Clone, Copy)]
enum Seg {
    Syn,
    SynAck,
    Ack,
    RstAck,
    Fin,
}

impl Tcp<'_> {
    /// Sends a segment from the client (`to_server`) or the server.
    fn send(&mut self, to_server: bool, seg: Seg, payload: &[u8]) -> Vec<u8> {
        let (src, dst, sp, dp) = if to_server {
            (self.client, self.server, self.sport, self.dport)
        } else {
            (self.server, self.client, self.dport, self.sport)
        };
        let (seq, ack) = if to_server { (self.cseq, self.sseq) } else { (self.sseq, self.cseq) };
        let b = eth(src, dst).ipv4(src.octets(), dst.octets(), 64).tcp(sp, dp, seq, 64240);
        let b = match seg {
            Seg::Syn => b.syn(),
            Seg::SynAck => b.syn().ack(ack),
            Seg::Ack if payload.is_empty() => b.ack(ack),
            Seg::Ack => b.ack(ack).psh(),
            Seg::RstAck => b.rst().ack(ack),
            Seg::Fin => b.fin().ack(ack),
        };
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        let used = payload.len() as u32 + u32::from(matches!(seg, Seg::Syn | Seg::SynAck | Seg::Fin));
        if to_server {
            self.cseq = self.cseq.wrapping_add(used);
        } else {
            self.sseq = self.sseq.wrapping_add(used);
        }
        self.cap.push(v.clone());
        v
    }

    /// The IP packet of a client SYN, as an ICMP error quotes it.
    fn syn_quote(&mut self) -> Vec<u8> {
        let frame = self.send(true, Seg::Syn, &[]);
        frame[14..14 + 28].to_vec()
    }

    /// Handshake, one request and one response, orderly close.
    fn session(&mut self, request: usize, response: usize) {
        self.send(true, Seg::Syn, &[]);
        self.send(false, Seg::SynAck, &[]);
        self.send(true, Seg::Ack, &[]);
        self.send(true, Seg::Ack, &vec![0x16; request]);
        self.send(false, Seg::Ack, &vec![0x17; response]);
        self.send(true, Seg::Fin, &[]);
        self.send(false, Seg::Fin, &[]);
        self.send(true, Seg::Ack, &[]);
    }
}

/// HA cluster traffic that the matrix documents: portal, inter-node gRPC
/// and heartbeat, Redis and PostgreSQL from the nodes.
fn conforming() -> Capture {
    let mut c = Capture::new();
    c.tcp(WORKSTATION, NODE1, 51000, 7101).session(517, 4200);
    c.tcp(ADMIN, NODE2, 51001, 7101).session(517, 1800);
    c.tcp(NODE1, NODE2, 40100, 7001).session(300, 900);
    c.tcp(NODE2, NODE3, 40101, 7003).session(420, 64);
    c.tcp(NODE3, NODE1, 40102, 5201).session(64, 64);
    c.tcp(NODE1, REDIS, 40103, 6379).session(40, 12);
    c.tcp(NODE2, DB, 40104, 5432).session(120, 2400);
    c
}

/// A workstation talking straight to the database: nobody documented it.
fn unexpected() -> Capture {
    let mut c = Capture::new();
    c.tcp(WORKSTATION, NODE1, 51010, 7101).session(517, 4200);
    c.tcp(WORKSTATION, DB, 51011, 5432).session(90, 600);
    c
}

/// A single node whose gRPC AuditService (7003) answers a workstation: the
/// vendor says these ports stay on localhost. 7004 is asked too, but the
/// firewall drops it: exposed on paper, not in fact.
fn exposed_single_node() -> Capture {
    let mut c = Capture::new();
    c.tcp(WORKSTATION, NODE1, 51020, 7101).session(517, 4200);
    c.tcp(WORKSTATION, NODE1, 51021, 7003).session(200, 80);
    let mut dropped = c.tcp(WORKSTATION, NODE1, 51022, 7004);
    dropped.send(true, Seg::Syn, &[]);
    c.wait(Duration::from_secs(1));
    let mut dropped = c.tcp(WORKSTATION, NODE1, 51022, 7004);
    dropped.send(true, Seg::Syn, &[]);
    c.wait(Duration::from_secs(4));
    c.tcp(WORKSTATION, NODE1, 51023, 7101).session(517, 300);
    c
}

/// Documented paths that fail: gRPC to node 2 dropped (no answer), Redis
/// refused (RST), PostgreSQL rejected by a firewall (ICMP admin-prohibited).
fn blocked() -> Capture {
    let mut c = Capture::new();
    c.tcp(NODE1, NODE3, 40200, 7001).session(300, 900);
    let mut grpc = c.tcp(NODE1, NODE2, 40201, 7002);
    grpc.send(true, Seg::Syn, &[]);
    c.wait(Duration::from_secs(1));
    c.tcp(NODE1, NODE2, 40201, 7002).send(true, Seg::Syn, &[]);
    let mut redis = c.tcp(NODE2, REDIS, 40202, 6379);
    redis.send(true, Seg::Syn, &[]);
    redis.send(false, Seg::RstAck, &[]);
    let mut db = c.tcp(NODE3, DB, 40203, 5432);
    let quote = db.syn_quote();
    c.icmp_error(DB, NODE3, 3, 13, &quote);
    // Let the unanswered SYN outlive the default 3 s answer timeout.
    c.wait(Duration::from_secs(4));
    c.tcp(NODE3, NODE1, 40205, 5201).session(64, 64);
    c
}

fn pcap(cap: &Capture) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new()).expect("pcap header");
    for (ts, frame) in &cap.frames {
        w.write_packet(&PcapPacket::new(*ts, frame.len() as u32, frame)).expect("write packet");
    }
    w.into_writer()
}

/// pcapng with nanosecond timestamps (if_tsresol 9), as dumpcap can write.
fn pcapng(cap: &Capture) -> Vec<u8> {
    let mut w = PcapNgWriter::new(Vec::new()).expect("pcapng section header");
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 262_144,
        options: vec![InterfaceDescriptionOption::IfTsResol(9)],
    })
    .expect("interface block");
    for (ts, frame) in &cap.frames {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: *ts,
            original_len: frame.len() as u32,
            data: frame.into(),
            options: vec![],
        })
        .expect("packet block");
    }
    w.into_inner()
}

/// Every example capture: file name and contents.
pub fn captures() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("conforming.pcap", pcap(&conforming())),
        ("unexpected.pcap", pcap(&unexpected())),
        ("exposed-single-node.pcap", pcap(&exposed_single_node())),
        ("blocked.pcapng", pcapng(&blocked())),
    ]
}
