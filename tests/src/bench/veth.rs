//! Throughput across a veth pair between two namespaces, without a program
//! and with the monitor attached to the receiving end the way users run it.
//!
//! The sender is namespace `b` ([`Pair::IF_B`]), the receiver namespace `a`
//! ([`Pair::IF_A`], 10.200.0.1), where the monitor runs. Per configuration
//! and round: UDP (64-byte payloads, `sendmmsg` in batches of 64, for a
//! fixed time), then one iperf3 TCP stream. Configurations rotate from round
//! to round so that none always runs first.
//!
//! UDP pps counts the datagrams that reached the receiver's UDP layer (Udp
//! InDatagrams + RcvbufErrors in `a`): each of them went through the
//! program. On veth the whole receive path runs in softirq on the sending
//! CPU, so a slower receive path shows as fewer datagrams sent. By default
//! no application reads them (the socket overflows): a reading thread adds
//! a cross-CPU wake-up per batch, which on a VM (an IPI is a VM exit) costs
//! more than the whole packet path and halves the rate, hiding the
//! program's share. `--udp-read` reads them with `recvmmsg` and reports
//! that rate too.

use std::{
    mem::MaybeUninit,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    process::{Child, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};
use aya::{
    maps::HashMap,
    programs::{tc::TcAttachType, SchedClassifier, Xdp, XdpMode},
    Ebpf,
};
use monitor::kernel;
use monitor_common::{maps, programs, IfaceConfig, Stat};
use monitor_tests::{
    attach::Attachments,
    monitor::{Monitor, MonitorOutput},
    netns::NetNs,
    Pair,
};
use serde::Serialize;

use super::{check_stop, median};

const UDP_PORT: u16 = 5300;
const IPERF_PORT: u16 = 5201;
const PAYLOAD: usize = 64;
const BATCH: usize = 64;

/// How the receiving end is equipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attach {
    /// Nothing attached.
    None,
    /// `monitor flows --attach auto`: TC (TCX) ingress and egress on veth.
    Auto,
    /// `monitor flows --attach xdp`: native XDP ingress, TC egress.
    XdpNative,
    /// Generic (SKB) XDP ingress and TC egress. The monitor falls back to
    /// it only where native XDP fails, which it does not on veth, so the
    /// programs are attached in-process like the monitor does.
    XdpGeneric,
    /// `tc_baseline` (parse + counter) at TC ingress, in-process: the cost of
    /// a program that parses and counts, for the replay part.
    BaselineTc,
    /// `xdp_baseline` in native XDP, in-process: veth's XDP mode plus a
    /// parse, for the replay part.
    BaselineXdp,
}

impl Attach {
    pub const ALL: [Attach; 4] = [Attach::None, Attach::Auto, Attach::XdpNative, Attach::XdpGeneric];

    pub fn label(self) -> &'static str {
        match self {
            Attach::None => "no program",
            Attach::Auto => "ours, --attach auto (tc)",
            Attach::XdpNative => "ours, --attach xdp (native)",
            Attach::XdpGeneric => "ours, generic XDP",
            Attach::BaselineTc => "baseline, tc ingress",
            Attach::BaselineXdp => "baseline, xdp (native)",
        }
    }
}

pub struct Config {
    pub rounds: usize,
    pub secs: u64,
    pub attaches: Vec<Attach>,
    /// Read the UDP datagrams in an application thread (see [`Udp::run`]).
    pub udp_read: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct UdpSample {
    pub secs: f64,
    pub sent: u64,
    /// Udp InDatagrams + RcvbufErrors in the receiving namespace.
    pub reached_udp: u64,
    pub rcvbuf_errors: u64,
    /// Read by the receiving application (with `--udp-read` only).
    pub delivered: Option<u64>,
    /// The receiving veth's counters (rx_packets counts at the peer's
    /// transmit, before the receive path).
    pub veth_rx_packets: u64,
    pub veth_rx_dropped: u64,
    pub send_errors: u64,
    pub pps: f64,
    pub delivered_pps: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct TcpSample {
    pub secs: f64,
    pub bytes_received: u64,
    pub gbit_s: f64,
    pub retransmits: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub attach: Attach,
    pub round: usize,
    /// What was attached to the receiving veth (hook names and modes).
    pub attached: String,
    pub udp: UdpSample,
    pub tcp: TcpSample,
    /// The programs' own packet counter (`packets` of the stats), for ours.
    pub program_packets: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Results {
    pub secs: u64,
    pub udp_read: bool,
    pub payload_bytes: usize,
    pub batch: usize,
    pub samples: Vec<Sample>,
}

pub struct Summary {
    pub pps: f64,
    /// Lowest and highest round, to show the spread.
    pub pps_range: (f64, f64),
    pub delivered_pps: Option<f64>,
    pub gbit_s: f64,
    pub gbit_s_range: (f64, f64),
}

impl Results {
    pub fn summary(&self, attach: Attach) -> Option<Summary> {
        let s: Vec<&Sample> = self.samples.iter().filter(|s| s.attach == attach).collect();
        if s.is_empty() {
            return None;
        }
        let m = |f: &dyn Fn(&Sample) -> f64| median(&s.iter().map(|x| f(x)).collect::<Vec<_>>());
        let range = |f: &dyn Fn(&Sample) -> f64| {
            s.iter()
                .map(|x| f(x))
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
        };
        Some(Summary {
            pps: m(&|x| x.udp.pps),
            pps_range: range(&|x| x.udp.pps),
            gbit_s_range: range(&|x| x.tcp.gbit_s),
            delivered_pps: s
                .iter()
                .map(|x| x.udp.delivered_pps)
                .collect::<Option<Vec<f64>>>()
                .map(|v| median(&v)),
            gbit_s: m(&|x| x.tcp.gbit_s),
        })
    }
}

/// What is attached for one configuration, removed by [`Attached::detach`].
pub(super) enum Attached {
    Nothing,
    Monitor(Monitor),
    InProcess(Box<Ebpf>),
}

pub(super) fn attach(pair: &Pair, how: Attach) -> Result<(Attached, Attachments)> {
    let iface = Pair::IF_A;
    let attached = match how {
        Attach::None => Attached::Nothing,
        Attach::Auto | Attach::XdpNative => {
            let mode = if how == Attach::Auto { "auto" } else { "xdp" };
            let mut m = Monitor::start(
                &pair.a,
                &["flows", "--iface", iface, "--attach", mode, "--format", "json", "--interval", "60"],
            );
            m.wait_attached(&pair.a, iface);
            Attached::Monitor(m)
        }
        Attach::XdpGeneric => {
            // Looked up in the namespace: /sys/class/net on this thread shows the host's.
            let index = pair.a.ifindex(iface);
            Attached::InProcess(Box::new(pair.a.run(|| attach_generic(index))?))
        }
        Attach::BaselineTc | Attach::BaselineXdp => {
            let xdp = how == Attach::BaselineXdp;
            Attached::InProcess(Box::new(pair.a.run(|| attach_baseline(xdp))?))
        }
    };
    let now = Attachments::of(&pair.a, iface);
    let ok = match how {
        Attach::None => !now.any(),
        Attach::Auto => now.xdp.is_none() && !now.tcx_ingress.is_empty() && !now.tcx_egress.is_empty(),
        Attach::XdpNative => {
            now.xdp.as_ref().is_some_and(|(_, m)| m == "driver") && !now.tcx_egress.is_empty()
        }
        Attach::XdpGeneric => {
            now.xdp.as_ref().is_some_and(|(_, m)| m == "generic") && !now.tcx_egress.is_empty()
        }
        Attach::BaselineTc => now.xdp.is_none() && !now.tcx_ingress.is_empty(),
        Attach::BaselineXdp => now.xdp.as_ref().is_some_and(|(_, m)| m == "driver"),
    };
    ensure!(ok, "{}: {iface} has {now:?}, not what this configuration needs", how.label());
    Ok((attached, now))
}

/// Generic XDP ingress and TC egress on [`Pair::IF_A`], set up as the
/// monitor sets up its fallback; runs on a thread inside namespace `a`.
fn attach_generic(index: u32) -> Result<Ebpf> {
    let iface = Pair::IF_A;
    let mut ebpf = kernel::load_object(0)?;
    let xdp: &mut Xdp = kernel::program(&mut ebpf, programs::XDP_INGRESS)?;
    xdp.load()?;
    xdp.attach(iface, XdpMode::Skb).context("attaching generic XDP")?;
    let tc: &mut SchedClassifier = kernel::program(&mut ebpf, programs::TC_EGRESS)?;
    tc.load()?;
    tc.attach(iface, TcAttachType::Egress).context("attaching TC egress")?;
    let map = ebpf.map_mut(maps::IFACE_CONFIG).context("no IFACE_CONFIG map")?;
    let mut cfg: HashMap<_, u32, IfaceConfig> = HashMap::try_from(map)?;
    cfg.insert(index, IfaceConfig { ingress_attached: 1, _pad: 0 }, 0)?;
    Ok(ebpf)
}

/// The baseline program alone on [`Pair::IF_A`]'s ingress: native XDP or TC;
/// runs on a thread inside namespace `a`.
fn attach_baseline(xdp: bool) -> Result<Ebpf> {
    let iface = Pair::IF_A;
    let mut ebpf = kernel::load_object(0)?;
    if xdp {
        let p: &mut Xdp = kernel::program(&mut ebpf, programs::XDP_BASELINE)?;
        p.load()?;
        p.attach(iface, XdpMode::Driver).context("attaching xdp_baseline (native)")?;
    } else {
        let p: &mut SchedClassifier = kernel::program(&mut ebpf, programs::TC_BASELINE)?;
        p.load()?;
        p.attach(iface, TcAttachType::Ingress).context("attaching tc_baseline")?;
    }
    Ok(ebpf)
}

impl Attached {
    /// Detaches; returns the programs' packet counter.
    fn detach(self, pair: &Pair) -> Result<Option<u64>> {
        Ok(self.detach_counting(pair, &[Stat::Packets])?.map(|v| v[0]))
    }

    /// Detaches; returns the programs' counters `stats` (None without a program).
    pub(super) fn detach_counting(self, pair: &Pair, stats: &[Stat]) -> Result<Option<Vec<u64>>> {
        let packets = match self {
            Attached::Nothing => None,
            Attached::Monitor(m) => {
                let out: MonitorOutput = m.stop();
                ensure!(
                    out.status.success(),
                    "`{}` exited with {}:\n{}",
                    out.command,
                    out.status,
                    out.stderr
                );
                Some(stats.iter().map(|s| out.stat(s.name())).collect())
            }
            Attached::InProcess(ebpf) => {
                let map = ebpf.map(maps::STATS).context("no STATS map")?;
                let arr: aya::maps::PerCpuArray<_, u64> = aya::maps::PerCpuArray::try_from(map)?;
                let n = stats
                    .iter()
                    .map(|s| Ok(arr.get(&(*s as u32), 0)?.iter().sum()))
                    .collect::<Result<Vec<u64>>>()?;
                drop(ebpf);
                Some(n)
            }
        };
        // Program release after the last fd closes can lag a moment.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left = Attachments::of(&pair.a, Pair::IF_A);
            if !left.any() {
                return Ok(packets);
            }
            if Instant::now() > deadline {
                bail!("{} still has {left:?} after detaching", Pair::IF_A);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The UDP endpoints, made once.
struct Udp {
    sender: UdpSocket,
    receiver: Arc<UdpSocket>,
}

impl Udp {
    fn new(pair: &Pair) -> Result<Udp> {
        let to = SocketAddr::new(Pair::A4.into(), UDP_PORT);
        let receiver = pair.a.run(|| UdpSocket::bind(to)).with_context(|| format!("bind UDP {to} in a"))?;
        receiver.set_read_timeout(Some(Duration::from_millis(50)))?;
        // A large queue, so that the reader's scheduling hiccups do not drop.
        socket2::SockRef::from(&receiver).set_recv_buffer_size(8 << 20)?;
        let sender = pair.b.run(|| UdpSocket::bind("0.0.0.0:0")).context("bind UDP sender in b")?;
        sender.connect(to)?;
        Ok(Udp { sender, receiver: Arc::new(receiver) })
    }

    /// One run of `secs`; `app_reads`: an application thread reads every
    /// datagram with `recvmmsg` (else the socket is left unread and
    /// overflows, counted in RcvbufErrors).
    fn run(&self, pair: &Pair, secs: f64, app_reads: bool) -> Result<UdpSample> {
        let counters = || -> Result<[u64; 4]> {
            Ok([
                pair.a.snmp("Udp", "InDatagrams"),
                pair.a.snmp("Udp", "RcvbufErrors"),
                veth_stat(&pair.a, Pair::IF_A, "rx_packets")?,
                veth_stat(&pair.a, Pair::IF_A, "rx_dropped")?,
            ])
        };
        let stop = Arc::new(AtomicBool::new(false));
        let read = Arc::new(AtomicU64::new(0));
        let reader = {
            let (sock, stop, read) = (Arc::clone(&self.receiver), Arc::clone(&stop), Arc::clone(&read));
            thread::spawn(move || if app_reads { recv_until(&sock, &stop, &read) } else { Ok(()) })
        };
        // Leftovers of an earlier run are read before counting starts.
        thread::sleep(Duration::from_millis(100));
        let before = counters()?;
        let read_before = read.load(Ordering::SeqCst);
        let t0 = Instant::now();
        let (sent, send_errors) = send_for(&self.sender, Duration::from_secs_f64(secs))?;
        let elapsed = t0.elapsed().as_secs_f64();
        thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::SeqCst);
        reader.join().map_err(|_| anyhow::anyhow!("UDP reader panicked"))??;
        let delivered = app_reads.then(|| read.load(Ordering::SeqCst) - read_before);
        let after = counters()?;
        let reached = (after[0] - before[0]) + (after[1] - before[1]);
        Ok(UdpSample {
            secs: elapsed,
            sent,
            reached_udp: reached,
            rcvbuf_errors: after[1] - before[1],
            delivered,
            veth_rx_packets: after[2] - before[2],
            veth_rx_dropped: after[3] - before[3],
            send_errors,
            pps: reached as f64 / elapsed,
            delivered_pps: delivered.map(|d| d as f64 / elapsed),
        })
    }
}

pub(super) fn veth_stat(ns: &NetNs, iface: &str, name: &str) -> Result<u64> {
    let s = ns.exec(&["cat", &format!("/sys/class/net/{iface}/statistics/{name}")]);
    s.trim().parse().with_context(|| format!("{iface} {name} = {s:?}"))
}

/// One message header per buffer, for `sendmmsg`/`recvmmsg`; the headers
/// point into `iov`, which must outlive them.
fn one_iovec_each(iov: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iov.iter_mut()
        .map(|v| {
            // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect()
}

/// Sends 64-byte datagrams in `sendmmsg` batches of 64 for `dur`; returns
/// the datagrams sent and the failed calls (ENOBUFS under pressure).
fn send_for(sock: &UdpSocket, dur: Duration) -> Result<(u64, u64)> {
    let payload = [0x5au8; PAYLOAD];
    let mut iov: Vec<libc::iovec> = (0..BATCH)
        .map(|_| libc::iovec { iov_base: payload.as_ptr() as *mut libc::c_void, iov_len: PAYLOAD })
        .collect();
    let mut msgs = one_iovec_each(&mut iov);
    let (mut sent, mut errors) = (0u64, 0u64);
    let deadline = Instant::now() + dur;
    while Instant::now() < deadline {
        // SAFETY: msgs and the iovecs point at live buffers for the whole call.
        let n = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) => errors += 1,
                _ => return Err(e).context("sendmmsg"),
            }
        } else {
            sent += n as u64;
        }
    }
    Ok((sent, errors))
}

/// Reads datagrams with `recvmmsg`, counting them into `read`, until
/// `stop` is set and the socket is drained.
fn recv_until(sock: &UdpSocket, stop: &AtomicBool, read: &AtomicU64) -> Result<()> {
    let mut bufs = vec![[MaybeUninit::<u8>::uninit(); 2048]; BATCH];
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec { iov_base: b.as_mut_ptr() as *mut libc::c_void, iov_len: b.len() })
        .collect();
    let mut msgs = one_iovec_each(&mut iov);
    loop {
        // SAFETY: msgs and the buffers stay alive for the call; the socket's
        // receive timeout bounds the wait.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r > 0 {
            read.fetch_add(r as u64, Ordering::SeqCst);
            continue;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => {
                if stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
            }
            _ => return Err(e).context("recvmmsg"),
        }
    }
}

/// One iperf3 TCP stream from `b` to `a` for `secs` (after 1 s of warm-up
/// that iperf3 leaves out of its figures).
fn tcp_run(pair: &Pair, secs: u64) -> Result<TcpSample> {
    let server_addr = Pair::A4.to_string();
    let port = IPERF_PORT.to_string();
    let mut server = KillOnDrop(
        pair.a
            .command("iperf3")
            .args(["-s", "-1", "-B", &server_addr, "-p", &port])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting iperf3 -s in a (is iperf3 installed?)")?,
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while pair.a.exec(&["ss", "-Hltn", &format!("sport = :{IPERF_PORT}")]).trim().is_empty() {
        ensure!(Instant::now() < deadline, "iperf3 -s did not listen on port {IPERF_PORT} within 5 s");
        thread::sleep(Duration::from_millis(20));
    }
    let out = pair
        .b
        .command("iperf3")
        .args(["-c", &server_addr, "-p", &port, "-t", &secs.to_string(), "-O", "1", "-J"])
        .output()
        .context("running iperf3 -c in b")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("iperf3 -J printed no JSON: {text}"))?;
    if let Some(err) = v.get("error") {
        bail!("iperf3 failed: {err}");
    }
    let received = &v["end"]["sum_received"];
    let sample = TcpSample {
        secs: received["seconds"].as_f64().context("iperf3: no end.sum_received.seconds")?,
        bytes_received: received["bytes"].as_u64().context("iperf3: no end.sum_received.bytes")?,
        gbit_s: received["bits_per_second"].as_f64().context("iperf3: no bits_per_second")? / 1e9,
        retransmits: v["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
    };
    if monitor_tests::wait_timeout(&mut server.0, Duration::from_secs(5)).is_none() {
        bail!("iperf3 -s did not exit after its one client");
    }
    Ok(sample)
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn run(cfg: &Config) -> Result<Results> {
    let pair = Pair::new();
    let udp = Udp::new(&pair)?;
    // Warm-up (neighbour entries, caches), not recorded.
    udp.run(&pair, 1.0, cfg.udp_read)?;
    let mut samples = Vec::new();
    for round in 0..cfg.rounds {
        for how in super::rotated(&cfg.attaches, round) {
            check_stop()?;
            let (attached, during) = attach(&pair, how)?;
            let result = (|| -> Result<(UdpSample, TcpSample)> {
                let u = udp.run(&pair, cfg.secs as f64, cfg.udp_read)?;
                check_stop()?;
                let t = tcp_run(&pair, cfg.secs)?;
                Ok((u, t))
            })();
            let program_packets = attached.detach(&pair)?;
            let (udp_s, tcp_s) = result?;
            eprintln!(
                "veth: round {}/{} {:<28} UDP {:>9.0} pps  TCP {:>6.2} Gbit/s",
                round + 1,
                cfg.rounds,
                how.label(),
                udp_s.pps,
                tcp_s.gbit_s
            );
            samples.push(Sample {
                attach: how,
                round,
                attached: describe(&during),
                udp: udp_s,
                tcp: tcp_s,
                program_packets,
            });
        }
    }
    Ok(Results { secs: cfg.secs, udp_read: cfg.udp_read, payload_bytes: PAYLOAD, batch: BATCH, samples })
}

pub(super) fn describe(a: &Attachments) -> String {
    let mut parts = Vec::new();
    if let Some((id, mode)) = &a.xdp {
        parts.push(format!("xdp {mode} (prog {id})"));
    }
    if !a.tcx_ingress.is_empty() {
        parts.push(format!("tcx ingress {:?}", a.tcx_ingress));
    }
    if !a.tcx_egress.is_empty() {
        parts.push(format!("tcx egress {:?}", a.tcx_egress));
    }
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}
