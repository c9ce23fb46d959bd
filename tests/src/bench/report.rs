//! The printed tables, the targets, and the JSON file with every raw sample.

use std::fmt::Write as _;

use serde::Serialize;

use super::{
    mixrun::{self, Prog},
    replay,
    testrun::{self, Case, Hook, Method},
    veth::{self, Attach},
};

/// Known-flow update: at most this many times the baseline (test run, repeat).
pub const KNOWN_FLOW_MAX_RATIO: f64 = 1.5;
/// With the default attach mode (auto = TC on veth): at least this share of
/// the UDP pps and TCP Gbit/s without a program.
pub const UDP_MIN_RATIO: f64 = 0.90;
pub const TCP_MIN_RATIO: f64 = 0.95;

#[derive(Debug, Serialize)]
pub struct Target {
    pub what: String,
    pub measured: f64,
    /// "<=" or ">="
    pub bound: &'static str,
    pub limit: f64,
    pub met: bool,
}

#[derive(Debug, Serialize)]
pub struct Meta {
    pub kernel: String,
    pub cpus: usize,
    pub unix_time: u64,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub args: Vec<String>,
    pub monitor_bin: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub meta: Meta,
    pub targets: Vec<Target>,
    pub testrun: Option<testrun::Results>,
    /// Mixed traffic through the test run.
    pub mixed: Option<mixrun::Results>,
    pub veth: Option<veth::Results>,
    /// The mixed capture replayed onto the veth.
    pub replay: Option<replay::Results>,
}

pub fn targets(t: Option<&testrun::Results>, v: Option<&veth::Results>) -> Vec<Target> {
    let mut out = Vec::new();
    if let Some(t) = t {
        for hook in [Hook::Xdp, Hook::Tc] {
            if let (Some(k), Some(b)) = (
                t.median(hook, Case::KnownFlow, Method::Repeat),
                t.median(hook, Case::Baseline, Method::Repeat),
            ) {
                let r = k / b;
                out.push(Target {
                    what: format!("{}: known-flow update / baseline (test run, repeat)", hook.as_str()),
                    measured: r,
                    bound: "<=",
                    limit: KNOWN_FLOW_MAX_RATIO,
                    met: r <= KNOWN_FLOW_MAX_RATIO,
                });
            }
        }
    }
    if let Some(v) = v {
        if let (Some(none), Some(auto)) = (v.summary(Attach::None), v.summary(Attach::Auto)) {
            let r = auto.pps / none.pps;
            out.push(Target {
                what: "veth UDP pps, --attach auto / no program".into(),
                measured: r,
                bound: ">=",
                limit: UDP_MIN_RATIO,
                met: r >= UDP_MIN_RATIO,
            });
            let r = auto.gbit_s / none.gbit_s;
            out.push(Target {
                what: "veth TCP Gbit/s, --attach auto / no program".into(),
                measured: r,
                bound: ">=",
                limit: TCP_MIN_RATIO,
                met: r >= TCP_MIN_RATIO,
            });
        }
    }
    out
}

fn opt(x: Option<f64>, prec: usize) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.prec$}"))
}

pub fn testrun_table(t: &testrun::Results, rounds: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "In-kernel cost per packet: {}-byte IPv4/TCP frame through BPF_PROG_TEST_RUN, ns as timed by the \
         kernel, median of {rounds} interleaved rounds",
        t.frame_bytes
    );
    let _ = writeln!(s, "  kernel object: {}", t.object);
    let _ = writeln!(
        s,
        "  repeat = one run of {} iterations on the same frame; single = {} runs of 1 iteration (mean), the \
         only way to give every run a new flow",
        t.repeat, t.singles
    );
    let _ = writeln!(
        s,
        "  net = minus the empty program (the harness); x base = ratio to the baseline of the same hook and \
         method"
    );
    let _ = writeln!(
        s,
        "{:<5} {:<31} {:<7} {:>8} {:>8} {:>7} {:>10} {:>11}",
        "hook", "case", "method", "ns", "net ns", "x base", "net x base", "p50 of runs"
    );
    for hook in [Hook::Xdp, Hook::Tc] {
        for method in [Method::Repeat, Method::Single] {
            let floor = t.median(hook, Case::Floor, method);
            let base = t.median(hook, Case::Baseline, method);
            for case in Case::ALL {
                let Some(ns) = t.median(hook, case, method) else { continue };
                let net = floor.filter(|_| case != Case::Floor).map(|f| ns - f);
                let ratio = base.filter(|_| case != Case::Floor).map(|b| ns / b);
                let net_ratio = match (floor, base, net) {
                    (Some(f), Some(b), Some(n)) if case != Case::Floor && b > f => Some(n / (b - f)),
                    _ => None,
                };
                let p50 = (method == Method::Single).then(|| t.pooled_run_median(hook, case)).flatten();
                let _ = writeln!(
                    s,
                    "{:<5} {:<31} {:<7} {:>8.1} {:>8} {:>7} {:>10} {:>11}",
                    hook.as_str(),
                    case.label(),
                    if method == Method::Repeat { "repeat" } else { "single" },
                    ns,
                    opt(net, 1),
                    opt(ratio, 2),
                    opt(net_ratio, 2),
                    opt(p50, 0),
                );
            }
        }
    }
    if !t.stats.is_empty() {
        let _ = writeln!(
            s,
            "\nCross-check, kernel run-time statistics (BPF_ENABLE_STATS; run_time_ns / run_cnt, median of {} \
             rounds; each run pays two extra clock reads):",
            t.stats.iter().map(|x| x.round).max().unwrap_or(0) + 1
        );
        let _ = writeln!(s, "{:<5} {:<31} {:>8} {:>7} {:>10}", "hook", "case", "ns", "x base", "net x base");
        for hook in [Hook::Xdp, Hook::Tc] {
            let floor = t.stats_median(hook, Case::Floor);
            let base = t.stats_median(hook, Case::Baseline);
            for case in Case::ALL {
                let Some(ns) = t.stats_median(hook, case) else { continue };
                let ratio = base.filter(|_| case != Case::Floor).map(|b| ns / b);
                let net_ratio = match (floor, base) {
                    (Some(f), Some(b)) if case != Case::Floor && b > f => Some((ns - f) / (b - f)),
                    _ => None,
                };
                let _ = writeln!(
                    s,
                    "{:<5} {:<31} {:>8.1} {:>7} {:>10}",
                    hook.as_str(),
                    case.label(),
                    ns,
                    opt(ratio, 2),
                    opt(net_ratio, 2)
                );
            }
        }
    }
    s
}

/// One class of ours' frames in [`mixrun::Classes`].
type PickClass = fn(&mixrun::Classes) -> &mixrun::Class;

pub fn mixed_table(m: &mixrun::Results) -> String {
    let mut s = String::new();
    let c = &m.capture;
    let _ = writeln!(
        s,
        "Mixed traffic through BPF_PROG_TEST_RUN: {} frames of {} flows ({} TCP, {} UDP request/reply; {} \
         IPv6), up to {} open at once (mean {:.0})",
        c.frames, c.flows, c.tcp_flows, c.udp_flows, c.ipv6_flows, c.max_open_flows, c.mean_open_flows
    );
    let _ = writeln!(
        s,
        "  frames per flow: median {}, p99 {}, max {}; the largest 1% of flows carry {:.0}% of the frames; \
         mean frame {:.0} bytes",
        c.frames_per_flow_p50,
        c.frames_per_flow_p99,
        c.frames_per_flow_max,
        100.0 * c.top1pct_flows_frame_share,
        c.bytes as f64 / c.frames.max(1) as f64
    );
    let _ = writeln!(
        s,
        "  kernel object: {}; every frame once in capture order (repeat 1; ns = mean of the kernel's per-run \
         figures), each pass from a fresh object (empty flow table); median of {} rounds",
        m.object, m.rounds
    );
    let _ = writeln!(
        s,
        "{:<5} {:<27} {:>9} {:>15} {:>7} {:>7} {:>10} {:>5} {:>5}",
        "hook", "program", "ns/frame", "(min-max)", "net ns", "x base", "net x base", "p50", "p99"
    );
    for hook in [Hook::Xdp, Hook::Tc] {
        let floor = m.median(hook, Prog::Floor);
        let base = m.median(hook, Prog::Baseline);
        for prog in Prog::ALL {
            let Some(ns) = m.median(hook, prog) else { continue };
            let (lo, hi) = m.range(hook, prog).unwrap_or((ns, ns));
            let net = floor.filter(|_| prog != Prog::Floor).map(|f| ns - f);
            let ratio = base.filter(|_| prog == Prog::Ours).map(|b| ns / b);
            let net_ratio = match (floor, base, net) {
                (Some(f), Some(b), Some(n)) if prog == Prog::Ours && b > f => Some(n / (b - f)),
                _ => None,
            };
            let pcts: Vec<f64> = m
                .samples
                .iter()
                .filter(|x| x.hook == hook && x.prog == prog)
                .map(|x| f64::from(x.p50_ns))
                .collect();
            let p99s: Vec<f64> = m
                .samples
                .iter()
                .filter(|x| x.hook == hook && x.prog == prog)
                .map(|x| f64::from(x.p99_ns))
                .collect();
            let _ = writeln!(
                s,
                "{:<5} {:<27} {:>9.1} {:>15} {:>7} {:>7} {:>10} {:>5.0} {:>5.0}",
                hook.as_str(),
                prog.label(),
                ns,
                format!("({lo:.1}-{hi:.1})"),
                opt(net, 1),
                opt(ratio, 2),
                opt(net_ratio, 2),
                super::median(&pcts),
                super::median(&p99s),
            );
        }
        let classes: [(&str, PickClass); 3] =
            [("new flow", |c| &c.new_flow), ("cache hit", |c| &c.cache_hit), ("slot miss", |c| &c.slot_miss)];
        let parts: Vec<String> = classes
            .iter()
            .filter_map(|(label, pick)| {
                let (frames, ns) = m.class_median(hook, *pick)?;
                Some(format!(
                    "{label} {frames:.0} ({:.1}%) {ns:.0} ns",
                    100.0 * frames / m.capture.frames.max(1) as f64
                ))
            })
            .collect();
        if !parts.is_empty() {
            let _ = writeln!(s, "      ours' frames: {}", parts.join("; "));
        }
    }
    s
}

pub fn veth_table(v: &veth::Results, rounds: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "veth throughput, namespace b -> a, program on a's veth; median of {rounds} rounds x {} s per test",
        v.secs
    );
    let _ = writeln!(
        s,
        "  UDP: {}-byte payloads, sendmmsg x{}; pps = datagrams that reached a's UDP layer. TCP: one iperf3 \
         stream (receiver's figure).{}",
        v.payload_bytes,
        v.batch,
        if v.udp_read { "" } else { " No application reads the UDP socket (--udp-read to add one)." }
    );
    let none = v.summary(Attach::None);
    let _ = writeln!(
        s,
        "{:<30} {:>9} {:>19} {:>7} {:>13} {:>10} {:>13} {:>7}",
        "config", "UDP pps", "(min-max)", "x none", "app-read pps", "TCP Gbit/s", "(min-max)", "x none"
    );
    for a in Attach::ALL {
        let Some(x) = v.summary(a) else { continue };
        let _ = writeln!(
            s,
            "{:<30} {:>9.0} {:>19} {:>7} {:>13} {:>10.2} {:>13} {:>7}",
            a.label(),
            x.pps,
            format!("({:.0}-{:.0})", x.pps_range.0, x.pps_range.1),
            opt(none.as_ref().map(|n| x.pps / n.pps), 3),
            opt(x.delivered_pps, 0),
            x.gbit_s,
            format!("({:.2}-{:.2})", x.gbit_s_range.0, x.gbit_s_range.1),
            opt(none.as_ref().map(|n| x.gbit_s / n.gbit_s), 3),
        );
    }
    s
}

pub fn replay_table(r: &replay::Results, rounds: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Mixed capture replayed onto the veth (tcpreplay --topspeed from b, {} frames of {} flows, {} MB): \
         CPU time per packet, median of {rounds} rounds",
        r.capture.frames,
        r.capture.flows,
        r.pcap_bytes / 1_000_000
    );
    let _ = writeln!(
        s,
        "  system + softirq from /proc/stat over the replay, per packet sent, all CPUs and (1 CPU) the one \
         tcpreplay is pinned to (tcpreplay's own sends included, the same in every row); user = all CPUs' \
         user time (tcpreplay's and the monitor's; niced builds count in nice)"
    );
    let none = r.summary(Attach::None);
    let _ = writeln!(
        s,
        "{:<30} {:>10} {:>15} {:>7} {:>9} | {:>8} {:>15} {:>7} {:>9} | {:>8} {:>9}",
        "config",
        "ns/packet",
        "(min-max)",
        "x none",
        "+ns/pkt",
        "1 CPU ns",
        "(min-max)",
        "x none",
        "+ns/pkt",
        "user ns",
        "sent pps"
    );
    for a in [
        Attach::None,
        Attach::BaselineTc,
        Attach::Auto,
        Attach::BaselineXdp,
        Attach::XdpNative,
        Attach::XdpGeneric,
    ] {
        let Some(x) = r.summary(a) else { continue };
        let _ = writeln!(
            s,
            "{:<30} {:>10.0} {:>15} {:>7} {:>9} | {:>8.0} {:>15} {:>7} {:>9} | {:>8.0} {:>9.0}",
            a.label(),
            x.ns,
            format!("({:.0}-{:.0})", x.range.0, x.range.1),
            opt(none.as_ref().filter(|_| a != Attach::None).map(|n| x.ns / n.ns), 3),
            opt(none.as_ref().filter(|_| a != Attach::None).map(|n| x.ns - n.ns), 0),
            x.cpu_ns,
            format!("({:.0}-{:.0})", x.cpu_range.0, x.cpu_range.1),
            opt(none.as_ref().filter(|_| a != Attach::None).map(|n| x.cpu_ns / n.cpu_ns), 3),
            opt(none.as_ref().filter(|_| a != Attach::None).map(|n| x.cpu_ns - n.cpu_ns), 0),
            x.user_ns,
            x.pps,
        );
    }
    s
}

pub fn targets_table(targets: &[Target]) -> String {
    let mut s = String::from("Targets\n");
    for t in targets {
        let _ = writeln!(
            s,
            "  {:<58} {:>6.3} (target {} {:.2})  met: {}",
            t.what,
            t.measured,
            t.bound,
            t.limit,
            if t.met { "yes" } else { "NO" }
        );
    }
    s
}
