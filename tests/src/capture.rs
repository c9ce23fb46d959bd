//! Ground truth for the flow counters: a tcpdump capture in the peer
//! namespace, tallied per flow and direction.
//!
//! Capturing at the peer's end of the veth sees the very skbs the monitored
//! end sends and receives. A frame counts `orig_len` bytes, from the Ethernet
//! header on (libpcap re-inserts an offloaded VLAN tag). When the stack
//! builds a GSO super-packet, the capture holds it as one frame; tests that
//! want exact wire counts check [`Tally::max_frame_len`] against the MTU.

use std::{
    io::{BufRead as _, BufReader},
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::{Child, Stdio},
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};

use crate::{cmd, netns::NetNs};

/// A running tcpdump writing to a temporary pcap file.
pub struct Capture {
    child: Child,
    line: String,
    dir: tempfile::TempDir,
    stderr: JoinHandle<Vec<String>>,
}

impl Capture {
    /// Starts tcpdump on `iface` inside `ns` and waits until it listens.
    pub fn start(ns: &NetNs, iface: &str) -> Capture {
        let dir = tempfile::tempdir().expect("temporary directory for the pcap");
        let path = dir.path().join("capture.pcap");
        let mut command = ns.command("tcpdump");
        // -U: write each packet at once; -Z root: Debian's tcpdump otherwise
        // drops to a user that cannot write into our directory. A short snap
        // length (headers only; orig_len keeps the size) and a 32 MiB buffer
        // give the ring thousands of slots, so a busy CPU loses no frame.
        command
            .args([
                "-i",
                iface,
                "-n",
                "-U",
                "-Z",
                "root",
                "--immediate-mode",
                "-s",
                "256",
                "-B",
                "32768",
                "-w",
            ])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let line = cmd::command_line(&command);
        let mut child =
            command.spawn().unwrap_or_else(|e| panic!("cannot run `{line}`: {e} (is tcpdump installed?)"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(l.clone());
                lines.push(l);
            }
            lines
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) if l.contains("listening on") => break,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().expect("wait tcpdump");
                    let err = reader.join().unwrap_or_default().join("\n");
                    panic!("`{line}` exited ({status}) before listening:\n{err}");
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() > deadline => {
                    let _ = child.kill();
                    panic!("`{line}` did not start listening within 10 s");
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        Capture { child, line, dir, stderr: reader }
    }

    /// Stops the capture (after a short grace period for frames still in
    /// flight), checks that the kernel dropped none, and tallies the frames.
    pub fn stop(mut self) -> Tally {
        Tally::from_pcap(self.end())
    }

    /// Stops the capture like [`Capture::stop`] and copies the pcap file to
    /// `to`, without tallying it (to replay it with `monitor check`; it may
    /// hold frames the tally does not know, such as a bridge's IGMP).
    pub fn save(mut self, to: &std::path::Path) {
        let pcap = self.end();
        std::fs::copy(&pcap, to).unwrap_or_else(|e| panic!("copy the capture to {}: {e}", to.display()));
    }

    /// Stops tcpdump, checks that it lost nothing, returns the pcap's path.
    fn end(&mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = crate::wait_timeout(&mut self.child, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("`{}` did not exit within 10 s of SIGTERM", self.line));
        let stderr =
            std::mem::replace(&mut self.stderr, std::thread::spawn(Vec::new)).join().unwrap_or_default();
        assert!(status.success(), "`{}` exited with {status}:\n{}", self.line, stderr.join("\n"));
        for l in &stderr {
            if let Some(n) = l.strip_suffix(" packets dropped by kernel") {
                assert_eq!(n.trim(), "0", "tcpdump lost frames, the ground truth is incomplete: {l}");
            }
        }
        self.dir.path().join("capture.pcap")
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What one captured frame was, as far as flows are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Tcp {
        syn: bool,
        ack: bool,
        fin: bool,
        rst: bool,
    },
    Udp,
    /// ICMP or ICMPv6 echo request/reply; the identifier is in both ports.
    Echo,
    /// Any other ICMP/ICMPv6 message (errors, neighbour discovery).
    IcmpOther {
        v6: bool,
        icmp_type: u8,
        code: u8,
    },
    /// An IPv4 fragment other than the first: no ports (both 0 here).
    LaterFragment,
    /// ARP and whatever else is not IP.
    NotIp,
}

#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub kind: Kind,
    /// Frame length as captured from the wire side, Ethernet header on.
    pub len: u64,
    pub vlan: bool,
}

/// Packets and bytes in one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub packets: u64,
    pub bytes: u64,
}

/// All frames of a capture.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub frames: Vec<Frame>,
}

impl Tally {
    pub fn from_pcap(path: PathBuf) -> Tally {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let mut reader = pcap_file::pcap::PcapReader::new(file)
            .unwrap_or_else(|e| panic!("{}: not a pcap file: {e}", path.display()));
        let mut frames = Vec::new();
        let mut index = 0usize;
        // Raw records: pcap-file's checked packets reject orig_len above the
        // snap length, which is what a short snap length produces.
        while let Some(pkt) = reader.next_raw_packet() {
            index += 1;
            let pkt = pkt.unwrap_or_else(|e| panic!("{}: frame {index}: {e}", path.display()));
            assert!(
                pkt.incl_len <= pkt.orig_len && pkt.incl_len as usize == pkt.data.len(),
                "{}: frame {index}: inconsistent lengths (incl {}, orig {}, data {})",
                path.display(),
                pkt.incl_len,
                pkt.orig_len,
                pkt.data.len()
            );
            frames.push(classify(&pkt.data, pkt.orig_len as u64).unwrap_or_else(|e| {
                panic!("{}: frame {index} ({} bytes) does not parse: {e}", path.display(), pkt.orig_len)
            }));
        }
        Tally { frames }
    }

    /// Frames from `src` to `dst` of the given flow protocol ("tcp", "udp",
    /// "icmp" or "icmpv6" for echo), summed.
    pub fn between(&self, proto: &str, src: SocketAddr, dst: SocketAddr) -> Counts {
        self.frames
            .iter()
            .filter(|f| f.src == src && f.dst == dst && kind_proto(f) == Some(proto))
            .fold(Counts::default(), |c, f| Counts { packets: c.packets + 1, bytes: c.bytes + f.len })
    }

    /// The TCP frames from `src` to `dst`.
    pub fn tcp_frames(&self, src: SocketAddr, dst: SocketAddr) -> Vec<Frame> {
        self.frames
            .iter()
            .filter(|f| f.src == src && f.dst == dst && matches!(f.kind, Kind::Tcp { .. }))
            .copied()
            .collect()
    }

    /// IPv4 fragments other than the first.
    pub fn later_fragments(&self) -> u64 {
        self.frames.iter().filter(|f| f.kind == Kind::LaterFragment).count() as u64
    }

    /// ICMP/ICMPv6 messages other than echo sent by `from`.
    pub fn icmp_other_from(&self, from: IpAddr) -> Vec<Frame> {
        self.frames
            .iter()
            .filter(|f| f.src.ip() == from && matches!(f.kind, Kind::IcmpOther { .. }))
            .copied()
            .collect()
    }

    /// The longest IP frame: above MTU + Ethernet (+ VLAN) header means the
    /// capture holds GSO/GRO super-packets rather than wire frames.
    pub fn max_frame_len(&self) -> u64 {
        self.frames.iter().filter(|f| f.kind != Kind::NotIp).map(|f| f.len).max().unwrap_or(0)
    }
}

fn kind_proto(f: &Frame) -> Option<&'static str> {
    match f.kind {
        Kind::Tcp { .. } => Some("tcp"),
        Kind::Udp => Some("udp"),
        Kind::Echo if f.src.is_ipv4() => Some("icmp"),
        Kind::Echo => Some("icmpv6"),
        _ => None,
    }
}

fn classify(data: &[u8], len: u64) -> Result<Frame, String> {
    // Lax: frames are cut at the snap length, headers are all there.
    let p = LaxSlicedPacket::from_ethernet(data).map_err(|e| e.to_string())?;
    let vlan = !p.link_exts.is_empty();
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    let (src_ip, dst_ip): (IpAddr, IpAddr) = match &p.net {
        Some(LaxNetSlice::Ipv4(s)) => (s.header().source_addr().into(), s.header().destination_addr().into()),
        Some(LaxNetSlice::Ipv6(s)) => (s.header().source_addr().into(), s.header().destination_addr().into()),
        _ => return Ok(Frame { src: unspecified, dst: unspecified, kind: Kind::NotIp, len, vlan }),
    };
    if let Some(LaxNetSlice::Ipv4(s)) = &p.net {
        if s.header().is_fragmenting_payload() {
            let (src, dst) = (SocketAddr::new(src_ip, 0), SocketAddr::new(dst_ip, 0));
            if s.header().fragments_offset().value() != 0 {
                return Ok(Frame { src, dst, kind: Kind::LaterFragment, len, vlan });
            }
            let (sport, dport, kind) = first_fragment(s.header().protocol().0, s.payload().payload)
                .map_err(|e| format!("first fragment {src_ip} -> {dst_ip}: {e}"))?;
            return Ok(Frame {
                src: SocketAddr::new(src_ip, sport),
                dst: SocketAddr::new(dst_ip, dport),
                kind,
                len,
                vlan,
            });
        }
    }
    if p.transport.is_none() {
        if let Some((e, layer)) = &p.stop_err {
            return Err(format!("{src_ip} -> {dst_ip}: {layer:?}: {e}"));
        }
    }
    let (sport, dport, kind) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => (
            t.source_port(),
            t.destination_port(),
            Kind::Tcp { syn: t.syn(), ack: t.ack(), fin: t.fin(), rst: t.rst() },
        ),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port(), Kind::Udp),
        Some(TransportSlice::Icmpv4(i)) => icmp_kind(false, i.type_u8(), i.code_u8(), i.bytes5to8()),
        Some(TransportSlice::Icmpv6(i)) => icmp_kind(true, i.type_u8(), i.code_u8(), i.bytes5to8()),
        _ => return Err(format!("IP frame {src_ip} -> {dst_ip} with a transport the tests do not make")),
    };
    Ok(Frame { src: SocketAddr::new(src_ip, sport), dst: SocketAddr::new(dst_ip, dport), kind, len, vlan })
}

/// Ports and kind of an IPv4 first fragment, from the start of its payload
/// (etherparse leaves fragmented transports unparsed).
fn first_fragment(proto: u8, pl: &[u8]) -> Result<(u16, u16, Kind), String> {
    let be16 = |i: usize| u16::from_be_bytes([pl[i], pl[i + 1]]);
    match proto {
        6 if pl.len() >= 20 => {
            let f = pl[13];
            let kind =
                Kind::Tcp { syn: f & 0x02 != 0, ack: f & 0x10 != 0, fin: f & 0x01 != 0, rst: f & 0x04 != 0 };
            Ok((be16(0), be16(2), kind))
        }
        17 if pl.len() >= 8 => Ok((be16(0), be16(2), Kind::Udp)),
        1 if pl.len() >= 8 => Ok(icmp_kind(false, pl[0], pl[1], [pl[4], pl[5], pl[6], pl[7]])),
        _ => Err(format!("protocol {proto} with {} payload bytes", pl.len())),
    }
}

fn icmp_kind(v6: bool, t: u8, code: u8, rest: [u8; 4]) -> (u16, u16, Kind) {
    let echo = if v6 { t == 128 || t == 129 } else { t == 8 || t == 0 };
    if echo {
        let id = u16::from_be_bytes([rest[0], rest[1]]);
        (id, id, Kind::Echo)
    } else {
        (0, 0, Kind::IcmpOther { v6, icmp_type: t, code })
    }
}
