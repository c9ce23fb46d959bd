//! The mixed capture ([`super::mix`]) replayed onto a veth with `tcpreplay`:
//! CPU time per packet in the receiving kernel, with and without the
//! programs attached.
//!
//! The test run times the program alone; this times the whole receive path
//! around it, on real skbs, with the monitor running as users run it (its
//! user space reads the NEW_FLOW events of 20,000 flows meanwhile). The
//! veth pair and its namespaces are [`super::veth`]'s: namespace `b` replays
//! the capture onto `veth-b` at top speed, namespace `a` receives on `veth-a`
//! with nothing, the baseline program (parse + counter, attached in-process)
//! at TC ingress or in native XDP, `monitor flows --attach auto` (TC) or
//! `--attach xdp` (native). Configurations rotate each round, and each
//! starts from an empty flow table (a new monitor). The baseline rows
//! separate what veth's XDP mode costs by itself (on veth, native XDP moves
//! the receive path to NAPI and copies each skb) from what ours adds. Generic
//! XDP is left out: attached in-process, nobody would read its events, and
//! the full ring buffer would spare it the event writes.
//!
//! The pcap is written with `veth-b`'s and `veth-a`'s Ethernet addresses, so
//! that `a` receives every frame as addressed to it (PACKET_HOST): it runs
//! through XDP and TC ingress and into IP, where it is dropped without an
//! answer: the capture's addresses (10.200.1.1, 10.200.2-255.x,
//! fd00:17::/32) are routed nowhere in `a`, and forwarding is off.
//!
//! CPU time is read from /proc/stat (all CPUs: the veth receive path runs in
//! softirq on the sending CPU, the monitor elsewhere; and the CPU tcpreplay
//! is pinned to alone, which holds less of other processes' work), system + softirq,
//! from just before tcpreplay starts to 100 ms after it exits, divided by
//! the packets tcpreplay sent. tcpreplay's own reads and sends are in it,
//! the same in every configuration, so "with - without" is what the
//! programs add per packet, and the ratio understates their share of the
//! receive path alone. Other work on the machine lands in these counters
//! too: compare the rounds' spread before the figures.

use std::{
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};
use monitor_common::Stat;
use monitor_tests::Pair;
use serde::Serialize;

use super::{
    check_stop, median,
    mix::{self, Capture},
    veth::{self, Attach},
};

pub struct Config {
    pub rounds: usize,
    pub attaches: Vec<Attach>,
    pub capture: mix::Config,
    /// Where the pcap is written (kept after the run, for a look with tcpdump).
    pub pcap: PathBuf,
}

/// The counters of one CPU line of /proc/stat, in clock ticks.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CpuTicks {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTicks {
    fn minus(&self, o: &CpuTicks) -> CpuTicks {
        CpuTicks {
            user: self.user - o.user,
            nice: self.nice - o.nice,
            system: self.system - o.system,
            idle: self.idle - o.idle,
            iowait: self.iowait - o.iowait,
            irq: self.irq - o.irq,
            softirq: self.softirq - o.softirq,
            steal: self.steal - o.steal,
        }
    }
}

/// /proc/stat's per-CPU lines (`cpu0`, `cpu1`, ...).
fn proc_stat() -> Result<Vec<CpuTicks>> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let mut cpus = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some(name) = it.next() else { continue };
        if !(name.starts_with("cpu") && name.len() > 3) {
            continue;
        }
        let v: Vec<u64> = it.take(8).map(|x| x.parse().unwrap_or(0)).collect();
        ensure!(v.len() == 8, "/proc/stat line with fewer than 8 counters: {line}");
        cpus.push(CpuTicks {
            user: v[0],
            nice: v[1],
            system: v[2],
            idle: v[3],
            iowait: v[4],
            irq: v[5],
            softirq: v[6],
            steal: v[7],
        });
    }
    ensure!(!cpus.is_empty(), "/proc/stat has no per-CPU lines");
    Ok(cpus)
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// What tcpreplay printed about one replay.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Replayed {
    pub successful: u64,
    pub failed: u64,
    pub retried_enobufs: u64,
    pub retried_eagain: u64,
    /// tcpreplay's own "sent in" seconds.
    pub secs: f64,
}

fn parse_tcpreplay(out: &str) -> Result<Replayed> {
    let field = |label: &str| -> Option<u64> {
        out.lines().find_map(|l| l.trim().strip_prefix(label)).and_then(|rest| rest.trim().parse().ok())
    };
    let secs = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Actual:"))
        .and_then(|rest| rest.split(" sent in ").nth(1))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok());
    match (field("Successful packets:"), secs) {
        (Some(successful), Some(secs)) => Ok(Replayed {
            successful,
            failed: field("Failed packets:").unwrap_or(0),
            retried_enobufs: field("Retried packets (ENOBUFS):").unwrap_or(0),
            retried_eagain: field("Retried packets (EAGAIN):").unwrap_or(0),
            secs,
        }),
        _ => bail!("tcpreplay printed no \"Actual: ... sent in\" or \"Successful packets:\" line:\n{out}"),
    }
}

/// One replay of the capture.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub attach: Attach,
    pub round: usize,
    pub attached: String,
    pub replayed: Replayed,
    /// `veth-a`'s counters (rx_packets counts at the peer's transmit).
    pub veth_rx_packets: u64,
    pub veth_rx_dropped: u64,
    /// The programs' counters (ours only): packets seen, flow-table inserts
    /// that failed, events lost to a full ring buffer.
    pub program_packets: Option<u64>,
    pub flow_map_full: Option<u64>,
    pub ring_buf_full: Option<u64>,
    /// Seconds the CPU counters cover.
    pub window_secs: f64,
    /// Per-CPU deltas over the window.
    pub cpu: Vec<CpuTicks>,
    /// (system + softirq, all CPUs) ns per packet sent.
    pub sys_softirq_ns_per_packet: f64,
    /// The CPU tcpreplay was pinned to, and its system + softirq ns per packet.
    pub replay_cpu: usize,
    pub replay_cpu_sys_softirq_ns_per_packet: f64,
    /// user, all CPUs, ns per packet sent: tcpreplay's and the monitor's
    /// (niced work, such as other builds at nice 19, counts in `nice`).
    pub user_ns_per_packet: f64,
}

#[derive(Debug, Serialize)]
pub struct Results {
    pub capture: mix::Summary,
    pub pcap: String,
    pub pcap_bytes: u64,
    pub clock_ticks_per_sec: f64,
    pub samples: Vec<Sample>,
}

pub struct Summary {
    pub ns: f64,
    /// The replay CPU only: median and range.
    pub cpu_ns: f64,
    pub cpu_range: (f64, f64),
    pub range: (f64, f64),
    pub user_ns: f64,
    pub pps: f64,
}

impl Results {
    pub fn summary(&self, attach: Attach) -> Option<Summary> {
        let s: Vec<&Sample> = self.samples.iter().filter(|s| s.attach == attach).collect();
        if s.is_empty() {
            return None;
        }
        let ns: Vec<f64> = s.iter().map(|x| x.sys_softirq_ns_per_packet).collect();
        let span = |xs: &[f64]| {
            xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
        };
        let one: Vec<f64> = s.iter().map(|x| x.replay_cpu_sys_softirq_ns_per_packet).collect();
        Some(Summary {
            ns: median(&ns),
            range: span(&ns),
            cpu_ns: median(&one),
            cpu_range: span(&one),
            user_ns: median(&s.iter().map(|x| x.user_ns_per_packet).collect::<Vec<_>>()),
            pps: median(
                &s.iter()
                    .map(|x| x.replayed.successful as f64 / x.replayed.secs.max(1e-9))
                    .collect::<Vec<_>>(),
            ),
        })
    }
}

fn mac(pair_ns: &monitor_tests::netns::NetNs, iface: &str) -> Result<[u8; 6]> {
    let s = pair_ns.exec(&["cat", &format!("/sys/class/net/{iface}/address")]);
    let bytes: Vec<u8> = s.trim().split(':').filter_map(|h| u8::from_str_radix(h, 16).ok()).collect();
    bytes.try_into().map_err(|_| anyhow::anyhow!("{iface} has no Ethernet address: {s:?}"))
}

/// Replays the pcap once from `b`, tcpreplay pinned to `cpu`; returns its figures.
fn replay(pair: &Pair, pcap: &str, cpu: usize) -> Result<Replayed> {
    let out = pair
        .b
        .command("taskset")
        .args(["-c", &cpu.to_string(), "tcpreplay", "-i", Pair::IF_B, "--topspeed", pcap])
        .output()
        .context("running tcpreplay in b (is tcpreplay installed? `cargo xtask setup` installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "tcpreplay exited with {}:\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    parse_tcpreplay(&text)
}

pub fn run(cfg: &Config) -> Result<Results> {
    let cap = Capture::generate(&cfg.capture);
    let pair = Pair::new();
    let (src, dst) = (mac(&pair.b, Pair::IF_B)?, mac(&pair.a, Pair::IF_A)?);
    if let Some(dir) = cfg.pcap.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let pcap_bytes = cap.write_pcap(&cfg.pcap, src, dst)?;
    let pcap = cfg.pcap.to_str().context("the pcap path is not UTF-8")?.to_string();
    eprintln!("replay: {} frames ({} bytes) written to {pcap}", cap.pkts.len(), pcap_bytes);
    // The replay runs on the last CPU: the veth receive path runs in softirq
    // on the sending CPU, so that CPU's counters hold most of the work and
    // less of other processes' than all CPUs together.
    let replay_cpu = proc_stat()?.len() - 1;
    // Warm-up (page cache, neighbour state), not recorded.
    replay(&pair, &pcap, replay_cpu)?;
    let tick_ns = 1e9 / clock_ticks_per_sec();
    let mut samples = Vec::new();
    for round in 0..cfg.rounds {
        for how in super::rotated(&cfg.attaches, round) {
            check_stop()?;
            let (attached, during) = veth::attach(&pair, how)?;
            let result = (|| -> Result<_> {
                // Let the monitor settle (startup reads) before counting.
                thread::sleep(Duration::from_millis(300));
                let rx0 = (
                    veth::veth_stat(&pair.a, Pair::IF_A, "rx_packets")?,
                    veth::veth_stat(&pair.a, Pair::IF_A, "rx_dropped")?,
                );
                let (t0, cpu0) = (Instant::now(), proc_stat()?);
                let replayed = replay(&pair, &pcap, replay_cpu)?;
                thread::sleep(Duration::from_millis(100));
                let (cpu1, window) = (proc_stat()?, t0.elapsed().as_secs_f64());
                let rx1 = (
                    veth::veth_stat(&pair.a, Pair::IF_A, "rx_packets")?,
                    veth::veth_stat(&pair.a, Pair::IF_A, "rx_dropped")?,
                );
                let cpu: Vec<CpuTicks> = cpu1.iter().zip(&cpu0).map(|(a, b)| a.minus(b)).collect();
                Ok((replayed, cpu, window, rx1.0 - rx0.0, rx1.1 - rx0.1))
            })();
            let counters =
                attached.detach_counting(&pair, &[Stat::Packets, Stat::FlowMapFull, Stat::RingBufFull])?;
            let (replayed, cpu, window_secs, veth_rx_packets, veth_rx_dropped) = result?;
            ensure!(replayed.successful > 0, "tcpreplay sent nothing");
            let packets = replayed.successful as f64;
            let sys: u64 = cpu.iter().map(|c| c.system + c.softirq).sum();
            let sys_replay_cpu = cpu.get(replay_cpu).map_or(0, |c| c.system + c.softirq);
            let user: u64 = cpu.iter().map(|c| c.user).sum();
            let s = Sample {
                attach: how,
                round,
                attached: veth::describe(&during),
                sys_softirq_ns_per_packet: sys as f64 * tick_ns / packets,
                replay_cpu_sys_softirq_ns_per_packet: sys_replay_cpu as f64 * tick_ns / packets,
                replay_cpu,
                user_ns_per_packet: user as f64 * tick_ns / packets,
                replayed,
                veth_rx_packets,
                veth_rx_dropped,
                program_packets: counters.as_ref().map(|c| c[0]),
                flow_map_full: counters.as_ref().map(|c| c[1]),
                ring_buf_full: counters.as_ref().map(|c| c[2]),
                window_secs,
                cpu,
            };
            eprintln!(
                "replay: round {}/{} {:<28} {:>7.0} ns/packet system+softirq ({} packets in {:.2} s; program saw \
                 {})",
                round + 1,
                cfg.rounds,
                how.label(),
                s.sys_softirq_ns_per_packet,
                s.replayed.successful,
                s.replayed.secs,
                s.program_packets.map_or_else(|| "-".into(), |p| p.to_string()),
            );
            samples.push(s);
        }
    }
    Ok(Results {
        capture: cap.summary,
        pcap,
        pcap_bytes,
        clock_ticks_per_sec: clock_ticks_per_sec(),
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcpreplay_output_parses() {
        let out = "Actual: 212495 packets (77226892 bytes) sent in 0.91 seconds\n\
                   Rated: 84863617.5 Bps, 678.90 Mbps, 233510.98 pps\n\
                   Flows: 20000 flows, 21978.02 fps, 212495 unique flow packets, 0 unique non-flow packets\n\
                   Statistics for network device: veth-b\n\
                   \tSuccessful packets:        212490\n\
                   \tFailed packets:            5\n\
                   \tTruncated packets:         0\n\
                   \tRetried packets (ENOBUFS): 3\n\
                   \tRetried packets (EAGAIN):  0\n";
        let r = parse_tcpreplay(out).unwrap();
        assert_eq!((r.successful, r.failed, r.retried_enobufs, r.retried_eagain), (212490, 5, 3, 0));
        assert_eq!(r.secs, 0.91);
        assert!(parse_tcpreplay("nothing").is_err());
    }
}
