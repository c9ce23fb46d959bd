//! `cargo xtask bench kernel`: what the kernel programs cost.
//!
//! 1. Per packet, in the kernel, through BPF_PROG_TEST_RUN (XDP and TC):
//!    ours on a known flow and on new flows against the baseline program
//!    and an empty program, cross-checked with the kernel's run-time stats.
//! 2. Mixed traffic through the same test run: a synthetic capture of a
//!    busy server's traffic (20,000 flows), every frame once in order,
//!    ours against the baseline and the empty program.
//! 3. veth throughput between two namespaces (UDP pps, TCP Gbit/s) with no
//!    program and with `monitor flows` attached in each mode.
//! 4. The mixed capture replayed onto the same veth with tcpreplay: CPU time
//!    per packet with and without the programs.
//!
//! Prints tables and writes every raw sample to bench/kernel.json under the
//! target directory.
//! Needs root, the kernel object (embedded in the monitor crate) and the
//! monitor binary (`cargo xtask build`), iperf3, ss and tcpreplay. Traffic only flows
//! inside the namespaces the bench creates (10.200.0.0/24), which are
//! removed on exit, on error and on Ctrl-C.

#[path = "../bench/mod.rs"]
mod bench;

use std::{path::PathBuf, time::SystemTime};

use anyhow::{ensure, Context as _, Result};
use bench::{mix, mixrun, replay, report, testrun, veth};
use clap::Parser;

#[derive(Parser)]
#[command(name = "bench-kernel", about = "Kernel-side benchmark of the monitor's eBPF programs")]
struct Args {
    /// Interleaved rounds of the test-run measurements.
    #[arg(long, default_value_t = 7)]
    testrun_rounds: usize,
    /// Iterations of one repeated test run.
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Single-iteration test runs per round and case (new flows).
    #[arg(long, default_value_t = 10_000)]
    singles: usize,
    /// Rounds of the bpf_stats cross-check.
    #[arg(long, default_value_t = 3)]
    stats_rounds: usize,
    /// Measure this kernel object file in the test-run part instead of the
    /// one embedded in the monitor (to compare a change to monitor-ebpf).
    #[arg(long)]
    object: Option<PathBuf>,
    /// Rounds of the mixed-traffic test runs (each: every frame through
    /// each program and hook).
    #[arg(long, default_value_t = 5)]
    mixed_rounds: usize,
    /// Flows in the mixed-traffic capture.
    #[arg(long, default_value_t = mix::Config::default().flows)]
    mixed_flows: u32,
    /// Interleaved rounds of the veth measurements.
    #[arg(long, default_value_t = 3)]
    veth_rounds: usize,
    /// Seconds per UDP and per TCP measurement.
    #[arg(long, default_value_t = 4)]
    secs: u64,
    /// Read the UDP datagrams with recvmmsg in the receiving namespace (by
    /// default the socket is left unread: see the veth module).
    #[arg(long)]
    udp_read: bool,
    /// Rounds of the replay of the mixed capture onto the veth.
    #[arg(long, default_value_t = 5)]
    replay_rounds: usize,
    /// Leave out generic XDP in the veth part.
    #[arg(long)]
    no_generic: bool,
    /// Run only these parts (comma-separated or repeated): testrun (the
    /// single-case test runs), mixed (mixed traffic through the test run),
    /// veth (throughput), replay (the mixed capture onto the veth). Default: all.
    #[arg(long, value_delimiter = ',', value_parser = ["testrun", "mixed", "veth", "replay"])]
    only: Vec<String>,
    /// Where to write the JSON (default: <workspace>/target/bench/kernel.json).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn main() -> Result<()> {
    let args = Args::parse();
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "the kernel benchmark loads eBPF programs and makes namespaces: run it as root"
    );
    bench::catch_signals();
    let loadavg_start = loadavg();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load1: f64 = loadavg_start.split_whitespace().next().and_then(|l| l.parse().ok()).unwrap_or(0.0);
    if load1 > 0.5 * cpus as f64 {
        eprintln!(
            "warning: load average {load1} on {cpus} CPUs: other work shares the CPUs, and the veth figures \
             (CPU-bound on the sending CPU) vary with it; compare the min-max spreads before the ratios"
        );
    }
    let part = |p: &str| args.only.is_empty() || args.only.iter().any(|o| o == p);
    let (mut t, mut m, mut v, mut rp) = (None, None, None, None);
    let attaches: Vec<veth::Attach> = veth::Attach::ALL
        .into_iter()
        .filter(|a| !(args.no_generic && *a == veth::Attach::XdpGeneric))
        .collect();
    let mixed_capture = mix::Config { flows: args.mixed_flows, ..mix::Config::default() };
    let out = args.out.clone().unwrap_or_else(|| monitor_tests::target_dir().join("bench/kernel.json"));
    if part("testrun") {
        let cfg = testrun::Config {
            rounds: args.testrun_rounds,
            repeat: args.repeat,
            singles: args.singles,
            stats_rounds: args.stats_rounds,
            object: args.object.clone(),
        };
        let r = testrun::run(&cfg)?;
        println!("{}", report::testrun_table(&r, cfg.rounds));
        t = Some(r);
    }
    if part("mixed") {
        let cfg = mixrun::Config {
            rounds: args.mixed_rounds,
            capture: mixed_capture.clone(),
            object: args.object.clone(),
        };
        let r = mixrun::run(&cfg)?;
        println!("{}", report::mixed_table(&r));
        m = Some(r);
    }
    if part("veth") {
        monitor_tests::monitor::require_monitor_bin();
        let cfg =
            veth::Config { rounds: args.veth_rounds, secs: args.secs, attaches, udp_read: args.udp_read };
        let r = veth::run(&cfg)?;
        println!("{}", report::veth_table(&r, cfg.rounds));
        v = Some(r);
    }
    if part("replay") {
        monitor_tests::monitor::require_monitor_bin();
        // Generic XDP is attached in-process with nobody reading its events:
        // the ring buffer fills and spares it the event writes.
        let replay_attaches = [
            veth::Attach::None,
            veth::Attach::BaselineTc,
            veth::Attach::Auto,
            veth::Attach::BaselineXdp,
            veth::Attach::XdpNative,
        ]
        .into();
        let cfg = replay::Config {
            rounds: args.replay_rounds,
            attaches: replay_attaches,
            capture: mixed_capture,
            pcap: out.with_file_name("mixed.pcap"),
        };
        let r = replay::run(&cfg)?;
        println!("{}", report::replay_table(&r, cfg.rounds));
        rp = Some(r);
    }
    let targets = report::targets(t.as_ref(), v.as_ref());
    println!("{}", report::targets_table(&targets));

    let report = report::Report {
        meta: report::Meta {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().into(),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            unix_time: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            loadavg_start,
            loadavg_end: loadavg(),
            args: std::env::args().collect(),
            monitor_bin: monitor_tests::monitor::monitor_bin().display().to_string(),
        },
        targets,
        testrun: t,
        mixed: m,
        veth: v,
        replay: rp,
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_vec_pretty(&report)?;
    std::fs::write(&out, json).with_context(|| format!("writing {}", out.display()))?;
    println!("raw samples: {}", out.display());
    Ok(())
}
