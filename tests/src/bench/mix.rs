//! A synthetic capture of mixed traffic, as a busy server sees it, for the
//! mixed-traffic rows of the kernel benchmark.
//!
//! The other test-run cases time one kind of packet at a time (a known flow,
//! a new flow). Real traffic mixes them: many flows open at once, their
//! packets interleaved, most flows short and a few carrying most packets, so
//! that a packet's flow is rarely the one its cache slot holds. This module
//! builds such a capture, deterministically (a fixed seed, a hand-written
//! PRNG: the same frames on every machine and with every crate version):
//!
//! - TCP flows with a handshake (SYN, SYN-ACK, ACK), data both ways (pure
//!   ACKs for every second segment received) and a close (FIN/ACK, FIN/ACK,
//!   ACK); UDP request/reply flows; IPv4 and IPv6;
//! - data segments per TCP flow (and exchanges per UDP flow) drawn from a
//!   Pareto distribution (heavy-tailed: a few elephants, many mice);
//! - flows starting over the first half of the capture's time span, each
//!   open for 30-70% of it (TCP), so that most are open at once; their
//!   packets are spread over their lifetime and merged by time.
//!
//! One server (10.200.1.1 and fd00:17::1, ports 443/80 TCP, 5300 UDP: no
//! port 53, whose copy path is measured elsewhere), clients in
//! 10.200.2.0-10.200.255.255 and fd00:17:1::/64. Neither prefix is on the
//! bench's veth pair (10.200.0.0/24, fd00:200::/64), so a replayed frame goes
//! through the programs and is then dropped by the receiving namespace's IP
//! layer (no route, forwarding off) without an answer.
//!
//! Frames are built on demand from compact packet records ([`Capture::frame`]):
//! the capture is a few MB of records, not hundreds of MB of frames. They are
//! handed to BPF_PROG_TEST_RUN, or written to a pcap file that the bench
//! replays onto a veth inside its own namespaces; never sent anywhere else.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use anyhow::{Context as _, Result};
use etherparse::PacketBuilder;
use serde::Serialize;

pub const SERVER4: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 1);
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 1);
/// The UDP service (request/reply).
pub const UDP_PORT: u16 = 5300;
/// The capture's time span, for the pcap timestamps (the bench replays at
/// top speed, so only the order matters).
const SPAN_US: f64 = 60e6;
/// The MTU of the veth the capture is replayed onto: frames must fit.
const MTU: usize = 1500;

#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// Flows in the capture (TCP and UDP).
    pub flows: u32,
    pub seed: u64,
    /// Share of the flows that are IPv6.
    pub v6_share: f64,
    /// Share of the flows that are UDP request/reply.
    pub udp_share: f64,
    /// Pareto shape of the data segments per TCP flow (scale 1): P(n >= k) = k^-alpha.
    pub pareto_alpha: f64,
    /// Cap on the data segments of one TCP flow.
    pub max_segments: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            flows: 20_000,
            seed: 17,
            v6_share: 0.3,
            udp_share: 0.15,
            pareto_alpha: 1.2,
            max_segments: 200_000,
        }
    }
}

/// SplitMix64: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi] (inclusive).
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next_u64() % u64::from(hi - lo + 1)) as u32
    }

    /// Pareto with scale 1 and shape `alpha`, rounded down: 1, 2, ... with
    /// P(n >= k) = k^-alpha, capped at `max`.
    fn pareto(&mut self, alpha: f64, max: u32) -> u32 {
        let u = 1.0 - self.f64(); // (0, 1]
        let x = u.powf(-1.0 / alpha);
        if x >= f64::from(max) {
            max
        } else {
            x as u32
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    Tcp,
    Udp,
}

/// One flow: a client and the server.
#[derive(Clone, Debug)]
pub struct Flow {
    pub proto: Proto,
    pub client: IpAddr,
    pub server: IpAddr,
    pub client_port: u16,
    pub server_port: u16,
}

impl Flow {
    /// The per-CPU cache slot a kernel object with a cache of `slots` slots
    /// maps this flow to (`monitor_common::flow_cache_index_in`).
    pub fn slot(&self, slots: u32) -> u32 {
        let proto = if self.proto == Proto::Tcp { 6 } else { 17 };
        monitor_common::flow_cache_index_in(
            slots,
            self.client,
            self.client_port,
            self.server,
            self.server_port,
            proto,
        )
    }

    /// The flow's canonical key, as the kernel builds it.
    pub fn key(&self) -> monitor_common::FlowKey {
        let proto = if self.proto == Proto::Tcp { 6 } else { 17 };
        let bytes = |ip: IpAddr| monitor_common::user::addr_bytes(&monitor_common::user::addr_words(ip));
        monitor_common::FlowKey::canonical(
            bytes(self.client),
            self.client_port,
            bytes(self.server),
            self.server_port,
            proto,
        )
        .0
    }
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// One packet of the capture, in capture order.
#[derive(Clone, Copy, Debug)]
pub struct Pkt {
    pub flow: u32,
    pub from_client: bool,
    /// TCP flags (0 for UDP).
    pub flags: u8,
    pub payload: u16,
    pub seq: u32,
    pub ack: u32,
    /// Microseconds from the capture's start.
    pub t_us: u32,
}

/// What the capture holds, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub config: Config,
    pub flows: u32,
    pub tcp_flows: u32,
    pub udp_flows: u32,
    pub ipv6_flows: u32,
    pub frames: u64,
    pub ipv6_frames: u64,
    pub udp_frames: u64,
    /// Frames with SYN, FIN (TCP) and first frames of a flow.
    pub syn_frames: u64,
    pub fin_frames: u64,
    pub bytes: u64,
    /// Flows open (between their first and last frame) at once: the most,
    /// and the mean over the capture's frames.
    pub max_open_flows: u32,
    pub mean_open_flows: f64,
    /// Frames per flow: median, 99th percentile, largest.
    pub frames_per_flow_p50: u64,
    pub frames_per_flow_p99: u64,
    pub frames_per_flow_max: u64,
    /// Share of all frames that the largest 1% of flows carry.
    pub top1pct_flows_frame_share: f64,
    /// Frames whose flow is the one that had the previous frame.
    pub same_flow_as_previous: u64,
}

pub struct Capture {
    pub flows: Vec<Flow>,
    pub pkts: Vec<Pkt>,
    pub summary: Summary,
}

/// Ethernet + IP + TCP (no options) or UDP header bytes of a flow.
fn header_len(v6: bool, proto: Proto) -> usize {
    14 + if v6 { 40 } else { 20 } + if proto == Proto::Tcp { 20 } else { 8 }
}

impl Capture {
    pub fn generate(cfg: &Config) -> Capture {
        let mut rng = Rng(cfg.seed);
        let mut flows = Vec::with_capacity(cfg.flows as usize);
        // (time, flow, order within the flow, packet)
        let mut timed: Vec<(f64, u32, u32, Pkt)> = Vec::new();
        let mut seen: HashSet<(IpAddr, u16)> = HashSet::new();
        for f in 0..cfg.flows {
            let v6 = rng.f64() < cfg.v6_share;
            let proto = if rng.f64() < cfg.udp_share { Proto::Udp } else { Proto::Tcp };
            let (client, client_port) = loop {
                let client: IpAddr = if v6 {
                    let r = rng.next_u64();
                    let w = |i: u32| (r >> (16 * i)) as u16;
                    Ipv6Addr::new(0xfd00, 0x17, 1, 0, w(0), w(1), w(2), w(3) | 1).into()
                } else {
                    Ipv4Addr::new(10, 200, rng.range(2, 255) as u8, rng.range(1, 254) as u8).into()
                };
                let port = rng.range(32768, 60999) as u16;
                if seen.insert((client, port)) {
                    break (client, port);
                }
            };
            let server: IpAddr = if v6 { SERVER6.into() } else { SERVER4.into() };
            let server_port = match proto {
                Proto::Tcp if rng.f64() < 0.8 => 443,
                Proto::Tcp => 80,
                Proto::Udp => UDP_PORT,
            };
            flows.push(Flow { proto, client, server, client_port, server_port });

            let mss = (MTU - header_len(v6, proto) + 14) as u32;
            let start = rng.f64() * 0.5;
            // Round-trip time, as a share of the span (0.2-2 ms of 60 s).
            let rtt = (0.2 + 1.8 * rng.f64()) * 1e-3 / 60.0;
            // (time, from_client, flags, payload)
            let mut evs: Vec<(f64, bool, u8, u16)> = Vec::new();
            match proto {
                Proto::Tcp => {
                    let end = (start + 0.3 + 0.4 * rng.f64()).min(1.0);
                    evs.push((start, true, SYN, 0));
                    evs.push((start + rtt, false, SYN | ACK, 0));
                    evs.push((start + 2.0 * rtt, true, ACK, 0));
                    let segments = rng.pareto(cfg.pareto_alpha, cfg.max_segments);
                    let (lo, hi) = (start + 3.0 * rtt, end - 3.0 * rtt);
                    let mut times: Vec<f64> = (0..segments).map(|_| lo + (hi - lo) * rng.f64()).collect();
                    times.sort_by(f64::total_cmp);
                    // Segments received by each side since its last ACK.
                    let mut unacked = [0u32; 2];
                    for t in times {
                        let from_client = rng.f64() < 0.4;
                        let payload = if from_client {
                            rng.range(20, 600)
                        } else if rng.f64() < 0.6 {
                            mss
                        } else {
                            rng.range(100, mss)
                        };
                        evs.push((t, from_client, ACK | PSH, payload as u16));
                        let receiver = usize::from(from_client); // 1: the server receives
                        unacked[receiver] += 1;
                        if unacked[receiver] == 2 {
                            unacked[receiver] = 0;
                            evs.push((t + rtt / 2.0, !from_client, ACK, 0));
                        }
                    }
                    let closer_is_client = rng.f64() < 0.5;
                    let t = end - 2.0 * rtt;
                    evs.push((t, closer_is_client, FIN | ACK, 0));
                    evs.push((t + rtt, !closer_is_client, FIN | ACK, 0));
                    evs.push((t + 2.0 * rtt, closer_is_client, ACK, 0));
                }
                Proto::Udp => {
                    let exchanges = rng.pareto(1.5, 64);
                    let mut t = start;
                    for _ in 0..exchanges {
                        evs.push((t, true, 0, rng.range(40, 200) as u16));
                        evs.push((t + rtt, false, 0, rng.range(100, mss) as u16));
                        t += rtt * (2.0 + 50.0 * rng.f64());
                    }
                }
            }
            evs.sort_by(|a, b| a.0.total_cmp(&b.0));
            // Sequence numbers as if every segment arrived: each side's next
            // sequence number, SYN and FIN counting one.
            let mut next_seq = [rng.next_u64() as u32, rng.next_u64() as u32];
            for (i, &(t, from_client, flags, payload)) in evs.iter().enumerate() {
                let (me, peer) = if from_client { (0, 1) } else { (1, 0) };
                let seq = next_seq[me];
                let ack = if flags & ACK != 0 { next_seq[peer] } else { 0 };
                next_seq[me] = seq.wrapping_add(u32::from(payload) + u32::from(flags & (SYN | FIN) != 0));
                let pkt = Pkt { flow: f, from_client, flags, payload, seq, ack, t_us: (t * SPAN_US) as u32 };
                timed.push((t, f, i as u32, pkt));
            }
        }
        timed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let pkts: Vec<Pkt> = timed.into_iter().map(|(_, _, _, p)| p).collect();
        let summary = summarize(cfg, &flows, &pkts);
        Capture { flows, pkts, summary }
    }

    /// Frame `i` of the capture into `buf` (cleared first), with the given
    /// Ethernet source and destination.
    pub fn frame(&self, i: usize, src_mac: [u8; 6], dst_mac: [u8; 6], buf: &mut Vec<u8>) {
        const PAYLOAD: [u8; MTU] = {
            let mut p = [0u8; MTU];
            let mut i = 0;
            while i < MTU {
                p[i] = (i * 7) as u8;
                i += 1;
            }
            p
        };
        let p = &self.pkts[i];
        let f = &self.flows[p.flow as usize];
        let (src, sport, dst, dport) = if p.from_client {
            (f.client, f.client_port, f.server, f.server_port)
        } else {
            (f.server, f.server_port, f.client, f.client_port)
        };
        let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
        let ip = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            _ => unreachable!("a flow's endpoints are of one family"),
        };
        buf.clear();
        let payload = &PAYLOAD[..usize::from(p.payload)];
        let written = match f.proto {
            Proto::Udp => ip.udp(sport, dport).write(buf, payload),
            Proto::Tcp => {
                let mut t = ip.tcp(sport, dport, p.seq, 65535);
                if p.flags & SYN != 0 {
                    t = t.syn();
                }
                if p.flags & FIN != 0 {
                    t = t.fin();
                }
                if p.flags & PSH != 0 {
                    t = t.psh();
                }
                if p.flags & ACK != 0 {
                    t = t.ack(p.ack);
                }
                t.write(buf, payload)
            }
        };
        written.expect("a frame of at most the MTU builds");
    }

    /// Writes the capture as a pcap file (Ethernet, microsecond timestamps).
    pub fn write_pcap(&self, path: &Path, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Result<u64> {
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = pcap_file::pcap::PcapWriter::new(std::io::BufWriter::with_capacity(1 << 20, file))
            .context("writing the pcap header")?;
        let mut buf = Vec::with_capacity(2048);
        let mut bytes = 0u64;
        for i in 0..self.pkts.len() {
            self.frame(i, src_mac, dst_mac, &mut buf);
            let ts = std::time::Duration::from_micros(u64::from(self.pkts[i].t_us));
            w.write_packet(&pcap_file::pcap::PcapPacket::new(ts, buf.len() as u32, &buf))
                .with_context(|| format!("writing frame {i} to {}", path.display()))?;
            bytes += buf.len() as u64;
        }
        use std::io::Write as _;
        w.into_writer().flush().with_context(|| format!("writing {}", path.display()))?;
        Ok(bytes)
    }

    /// Whether frame `i` is the first of its flow.
    pub fn first_of_flow(&self) -> Vec<bool> {
        let mut seen = vec![false; self.flows.len()];
        self.pkts
            .iter()
            .map(|p| {
                let first = !seen[p.flow as usize];
                seen[p.flow as usize] = true;
                first
            })
            .collect()
    }
}

fn summarize(cfg: &Config, flows: &[Flow], pkts: &[Pkt]) -> Summary {
    let n = flows.len();
    let mut per_flow = vec![0u64; n];
    let mut last = vec![0usize; n];
    let (mut ipv6_frames, mut udp_frames, mut syn, mut fin, mut bytes, mut same) = (0, 0, 0, 0, 0u64, 0);
    for (i, p) in pkts.iter().enumerate() {
        let f = &flows[p.flow as usize];
        per_flow[p.flow as usize] += 1;
        last[p.flow as usize] = i;
        let v6 = f.client.is_ipv6();
        ipv6_frames += u64::from(v6);
        udp_frames += u64::from(f.proto == Proto::Udp);
        syn += u64::from(p.flags & SYN != 0);
        fin += u64::from(p.flags & FIN != 0);
        bytes += (header_len(v6, f.proto) + usize::from(p.payload)) as u64;
        same += u64::from(i > 0 && pkts[i - 1].flow == p.flow);
    }
    // Open flows at each frame: +1 at a flow's first frame, -1 after its last.
    let mut started = vec![false; n];
    let (mut open, mut max_open, mut sum_open) = (0i64, 0i64, 0f64);
    for (i, p) in pkts.iter().enumerate() {
        let f = p.flow as usize;
        if !started[f] {
            started[f] = true;
            open += 1;
        }
        max_open = max_open.max(open);
        sum_open += open as f64;
        if last[f] == i {
            open -= 1;
        }
    }
    let mut sorted = per_flow.clone();
    sorted.sort_unstable();
    let pct = |q: f64| sorted[((n as f64 - 1.0) * q).round() as usize];
    let top: u64 = sorted.iter().rev().take(n.div_ceil(100)).sum();
    Summary {
        config: cfg.clone(),
        flows: n as u32,
        tcp_flows: flows.iter().filter(|f| f.proto == Proto::Tcp).count() as u32,
        udp_flows: flows.iter().filter(|f| f.proto == Proto::Udp).count() as u32,
        ipv6_flows: flows.iter().filter(|f| f.client.is_ipv6()).count() as u32,
        frames: pkts.len() as u64,
        ipv6_frames,
        udp_frames,
        syn_frames: syn,
        fin_frames: fin,
        bytes,
        max_open_flows: max_open as u32,
        mean_open_flows: sum_open / pkts.len().max(1) as f64,
        frames_per_flow_p50: pct(0.5),
        frames_per_flow_p99: pct(0.99),
        frames_per_flow_max: *sorted.last().unwrap_or(&0),
        top1pct_flows_frame_share: top as f64 / pkts.len().max(1) as f64,
        same_flow_as_previous: same,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Config {
        Config { flows: 2_000, ..Config::default() }
    }

    #[test]
    fn the_same_seed_gives_the_same_capture() {
        let (a, b) = (Capture::generate(&small()), Capture::generate(&small()));
        assert_eq!(a.pkts.len(), b.pkts.len());
        let (mut fa, mut fb) = (Vec::new(), Vec::new());
        for i in (0..a.pkts.len()).step_by(97) {
            a.frame(i, [2; 6], [4; 6], &mut fa);
            b.frame(i, [2; 6], [4; 6], &mut fb);
            assert_eq!(fa, fb, "frame {i}");
        }
    }

    #[test]
    fn frames_parse_fit_the_mtu_and_stay_in_the_bench_prefixes() {
        let c = Capture::generate(&small());
        let mut buf = Vec::new();
        for i in 0..c.pkts.len() {
            c.frame(i, [2; 6], [4; 6], &mut buf);
            assert!(buf.len() <= MTU + 14, "frame {i}: {} bytes", buf.len());
            let p = etherparse::SlicedPacket::from_ethernet(&buf).expect("frame parses");
            let (s, d): (IpAddr, IpAddr) = match p.net {
                Some(etherparse::NetSlice::Ipv4(ip)) => {
                    (ip.header().source_addr().into(), ip.header().destination_addr().into())
                }
                Some(etherparse::NetSlice::Ipv6(ip)) => {
                    (ip.header().source_addr().into(), ip.header().destination_addr().into())
                }
                other => panic!("frame {i}: not IP: {other:?}"),
            };
            for a in [s, d] {
                match a {
                    IpAddr::V4(v4) => assert_eq!(v4.octets()[..2], [10, 200], "frame {i}: {a}"),
                    IpAddr::V6(v6) => assert_eq!(v6.octets()[0], 0xfd, "frame {i}: {a}"),
                }
            }
        }
    }

    #[test]
    fn tcp_flows_open_carry_data_both_ways_and_close() {
        let c = Capture::generate(&small());
        let mut by_flow: Vec<Vec<&Pkt>> = vec![Vec::new(); c.flows.len()];
        for p in &c.pkts {
            by_flow[p.flow as usize].push(p);
        }
        let mut both_ways = 0;
        for (f, ps) in c.flows.iter().zip(&by_flow) {
            match f.proto {
                Proto::Tcp => {
                    let flags: Vec<u8> = ps.iter().map(|p| p.flags).collect();
                    assert_eq!(flags[..3], [SYN, SYN | ACK, ACK], "handshake first");
                    let n = flags.len();
                    assert_eq!(flags[n - 3..], [FIN | ACK, FIN | ACK, ACK], "close last");
                    let data: Vec<bool> =
                        ps.iter().filter(|p| p.payload > 0).map(|p| p.from_client).collect();
                    both_ways += usize::from(data.contains(&true) && data.contains(&false));
                }
                Proto::Udp => {
                    assert!(ps.len() >= 2 && ps.len() % 2 == 0, "request/reply pairs");
                    assert!(ps.iter().step_by(2).all(|p| p.from_client), "requests from the client");
                }
            }
        }
        assert!(both_ways > 100, "only {both_ways} TCP flows carry data both ways");
    }

    #[test]
    fn the_default_capture_is_busy_mixed_and_heavy_tailed() {
        let s = Capture::generate(&Config::default()).summary;
        eprintln!("{s:#?}");
        assert!(s.max_open_flows >= 10_000, "{s:?}");
        let v6 = f64::from(s.ipv6_flows) / f64::from(s.flows);
        assert!((0.27..0.33).contains(&v6), "IPv6 share {v6}");
        assert!(s.udp_flows > 0 && s.tcp_flows > s.udp_flows, "{s:?}");
        assert!(s.frames_per_flow_max > 50 * s.frames_per_flow_p50, "not heavy-tailed: {s:?}");
        assert!(s.top1pct_flows_frame_share > 0.1, "not heavy-tailed: {s:?}");
        // Interleaved: most frames follow a frame of another flow.
        assert!(s.same_flow_as_previous < s.frames / 10, "{s:?}");
    }
}
