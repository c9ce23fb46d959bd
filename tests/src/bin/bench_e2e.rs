//! `cargo xtask bench e2e`: the live monitor (`monitor run`) end to end.
//!
//! 1. First packet to alert: a probe connects to an off-matrix TCP port at a
//!    known instant; the delay runs until the alert line is read from the
//!    agent's stdout. Each probe uses its own server port (its own
//!    de-duplication key) and `--scan-threshold` is raised so that none is
//!    folded. Measured at idle and under a load of new UDP flows per second
//!    (distinct source ports, to an off-matrix port: every load flow is
//!    judged `unexpected`, the costliest verdict, and de-duplicated).
//! 2. Agent CPU and RSS holding 100,000 live UDP flows (well inside the
//!    idle timeout): utime+stime over a 10 s window, VmRSS and VmHWM.
//! 3. The same holding 1,000,000 live flows (a big node), a fresh agent with
//!    `--max-flows` sized to fit them, filled as fast as the packet socket
//!    sends; then the first-packet-to-alert probes again while the table is
//!    that full. The kernel's flow table is charged to the kernel, not to the
//!    agent's RSS: its size is read from `bpftool map show` (memlock).
//!    Targets: RSS <= 128 MiB, CPU <= 25 % of one core, p99 <= 10 ms.
//!
//! Prints a table and writes bench/e2e.json under the target directory. Needs root and the
//! monitor binary (`cargo xtask build`, or MONITOR_BIN). Traffic only flows
//! between the two namespaces the bench creates, removed on exit.
//!
//! Options: `bench-e2e --help` (probes, load rate, the rows' flow counts, the
//! big row's `--max-flows` and `--interval`; `--big-flows 0` skips it).
//! BENCH_DEBUG=1 prints the agent's metrics at each row.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use monitor_tests::{
    agent::{sample, scrape, Agent},
    inject, link,
    monitor::monitor_bin,
    nft, require_root, traffic, NetNs,
};
use serde_json::json;

const IF: &str = "eth0";
/// rppam1 of examples/rp-pam/inventory.ini: the agent's host.
const NODE: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 11);
/// ws01: the workstation that probes and loads it.
const WS: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 50);
/// Load flows go to ports LOAD_PORT_TOP, LOAD_PORT_TOP-1, ...: off the matrix.
const LOAD_PORT_TOP: u16 = 9999;
const METRICS: &str = "127.0.0.1:9469";

/// The live monitor end to end: first packet to alert, CPU and RSS at 100,000 and 1,000,000 flows.
#[derive(clap::Parser)]
#[command(name = "bench-e2e")]
struct Opts {
    /// First-packet-to-alert probes per row.
    #[arg(long, default_value_t = 300)]
    probes: usize,
    /// Load of new UDP flows per second during the loaded probes.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Live flows of the 100,000-flow row.
    #[arg(long, default_value_t = 100_000)]
    flows: u64,
    /// Live flows of the big row; 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    big_flows: u64,
    /// The big row's agent `--max-flows`.
    #[arg(long, default_value_t = 1_310_720)]
    big_max_flows: u64,
    /// The big row's agent `--interval` (table reads), e.g. "3s".
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    big_interval: String,
}

fn main() {
    let o = <Opts as clap::Parser>::parse();
    require_root();
    let bin = monitor_bin();
    assert!(
        bin.is_file(),
        "monitor binary {} not found: run `cargo xtask build` (or set MONITOR_BIN)",
        bin.display()
    );
    let node = NetNs::new("e2e-node");
    let ws = NetNs::new("e2e-ws");
    link::Veth::pair(&node, IF, &ws, IF);
    link::add_addr(&node, IF, &format!("{NODE}/16"));
    link::add_addr(&ws, IF, &format!("{WS}/16"));
    // Load datagrams are dropped after the agent saw them, so the node
    // does not answer each with an ICMP error.
    nft::apply(&node, &nft::input_rules(&["udp dport 9000-9999 drop"]));
    nft::apply(&ws, &nft::input_rules(&["udp sport 9000-9999 drop"]));
    let dir = tempfile::tempdir().expect("tempdir");

    // 1. Latency, idle then under load, one agent.
    let agent = start_agent(&node, &dir.path().join("lat.sock"));
    warm_up(&agent, &ws);
    let idle = probes(&agent, &ws, 20000, o.probes);
    let load = Load::start(&ws, &node, o.rate, false);
    std::thread::sleep(Duration::from_secs(1));
    let loaded = probes(&agent, &ws, 40000, o.probes);
    let load = load.stop();
    std::thread::sleep(Duration::from_millis(1500));
    let m = scrape(&node, METRICS);
    let judged_unexpected = sample(&m, r#"monitor_flows_total{verdict="unexpected"}"#) as u64;
    let events_dropped = sample(&m, r#"monitor_flow_reader_total{counter="events_dropped"}"#) as u64;
    let lat_out = agent.stop();
    assert!(
        lat_out.status.success(),
        "the latency agent exited with {}:\n{}",
        lat_out.status,
        lat_out.stderr
    );

    // 2. CPU and memory holding many live flows, a fresh agent.
    let mem = hold(&node, &ws, &dir.path().join("mem.sock"), o.flows, 262_144, "1s", 50_000, 0);
    // 3. The same at a big node's flow count, with the probes while it is full.
    let big = (o.big_flows > 0).then(|| {
        assert!(
            o.big_max_flows >= o.big_flows,
            "--big-max-flows {} cannot hold --big-flows {}",
            o.big_max_flows,
            o.big_flows
        );
        hold(
            &node,
            &ws,
            &dir.path().join("big.sock"),
            o.big_flows,
            o.big_max_flows,
            &o.big_interval,
            u64::MAX,
            o.probes,
        )
    });
    let idle_s = Stats::of(&idle);
    let load_s = Stats::of(&loaded);
    println!("monitor run, end to end ({})", bin.display());
    println!();
    println!("first packet -> alert line read   probes   p50        p99        max");
    println!(
        "  idle                            {:>6}   {:>8.2} ms {:>8.2} ms {:>8.2} ms",
        idle.len(),
        idle_s.p50,
        idle_s.p99,
        idle_s.max
    );
    println!(
        "  {:>6.0} new UDP flows/s         {:>6}   {:>8.2} ms {:>8.2} ms {:>8.2} ms",
        load.rate,
        loaded.len(),
        load_s.p50,
        load_s.p99,
        load_s.max
    );
    println!(
        "  load: {} flows sent in {:.1} s; agent judged {} unexpected flows; ring events dropped: {}",
        load.sent,
        load.elapsed.as_secs_f64(),
        judged_unexpected,
        events_dropped
    );
    println!();
    mem.print();
    println!();
    println!(
        "targets: p99 <= 50 ms: {}; RSS <= 64 MiB: {}",
        verdict(load_s.p99.max(idle_s.p99) <= 50.0),
        verdict(mem.rss as f64 / 1024.0 <= 64.0)
    );
    if let Some(big) = &big {
        println!();
        big.print();
        let (rss_ok, cpu_ok, p99_ok) = big.met();
        println!(
            "targets at {} flows: RSS <= {BIG_RSS_MIB} MiB: {}; CPU <= {BIG_CPU_PCT} % of one core: {}; \
             p99 <= {BIG_P99_MS} ms: {}",
            big.flows,
            verdict(rss_ok),
            verdict(cpu_ok),
            verdict(p99_ok)
        );
    }
    println!();
    println!("load average (1, 5, 15 min) at the end: {}", load_average());

    let report = json!({
        "bench": "e2e",
        "monitor": bin.display().to_string(),
        "latency_ms": {
            "idle": { "probes": idle.len(), "p50": idle_s.p50, "p99": idle_s.p99, "max": idle_s.max, "samples": ms(&idle) },
            "load": {
                "probes": loaded.len(), "p50": load_s.p50, "p99": load_s.p99, "max": load_s.max, "samples": ms(&loaded),
                "load_flows_per_s": load.rate, "load_flows_sent": load.sent, "load_target": "udp to off-matrix ports 9999, 9998, ...",
                "judged_unexpected": judged_unexpected, "events_dropped": events_dropped,
            },
        },
        "live_flows": mem.json(),
        "targets": { "p99_ms": 50, "rss_mib": 64 },
        "big": big.as_ref().map(|big| {
            let (rss_ok, cpu_ok, p99_ok) = big.met();
            json!({
                "live_flows": big.json(),
                "targets": {
                    "rss_mib": BIG_RSS_MIB, "cpu_percent_of_one_core": BIG_CPU_PCT, "p99_ms": BIG_P99_MS,
                    "rss_met": rss_ok, "cpu_met": cpu_ok, "p99_met": p99_ok,
                },
            })
        }),
        "load_average": load_average(),
    });
    let out = monitor_tests::target_dir().join("bench");
    std::fs::create_dir_all(&out).expect("create target/bench");
    let path = out.join("e2e.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).expect("JSON")).expect("write e2e.json");
    println!("wrote {}", path.display());
}

/// The big row's targets.
const BIG_RSS_MIB: f64 = 128.0;
const BIG_CPU_PCT: f64 = 25.0;
const BIG_P99_MS: f64 = 10.0;

/// One agent holding `flows` live flows.
struct Held {
    flows: u64,
    max_flows: u64,
    interval: String,
    fill: Duration,
    fill_rate: f64,
    tracked: u64,
    evicted: u64,
    /// The last table read's wall time and the interval in force after it, s.
    read_took: f64,
    read_every: f64,
    cpu_pct: f64,
    window: Duration,
    /// Whole table reads in the window.
    window_reads: u64,
    rss: u64,
    rss_start: u64,
    hwm: u64,
    /// The kernel flow table's memlock, bytes (bpftool), if bpftool is there.
    map_bytes: Option<u64>,
    /// First packet to alert while the table is full (none if not probed).
    probes: Vec<Duration>,
}

/// Starts a fresh agent with a `max_flows` table, fills it with `flows` live
/// UDP flows, each answered (so each lives until the idle timeout, 120 s),
/// with the agent reading its table every `interval`,
/// at `fill_rate` flows/s each way (u64::MAX: as fast as the socket sends),
/// then measures CPU over whole table reads, 10 s at least, RSS, and `probes` first-packet-to-alert
/// delays while the flows are held.
#[allow(clippy::too_many_arguments)]
fn hold(
    node: &NetNs,
    ws: &NetNs,
    socket: &std::path::Path,
    flows: u64,
    max_flows: u64,
    interval: &str,
    fill_rate: u64,
    probes_n: usize,
) -> Held {
    let agent = start_agent_with(node, socket, max_flows, interval);
    let pid = agent.pid();
    if probes_n > 0 {
        warm_up(&agent, ws);
    }
    let rss_start = status_kib(pid, "VmRSS");
    let fill_started = Instant::now();
    Load::start_n(ws, node, fill_rate, false, flows).stop_after(flows);
    Load::start_n(node, ws, fill_rate, true, flows).stop_after(flows);
    let fill = fill_started.elapsed();
    assert!(
        fill < Duration::from_secs(60),
        "filling {flows} flows took {fill:?}: the first would near the idle timeout (120 s) while measured"
    );
    // Two table reads, so every flow is judged (again, answered) and held:
    // the window then holds steady reads only, a whole number of them, at
    // the interval in force (paced reads of a big table come up to 10 s
    // apart, not every --interval).
    let first = tables_read(node);
    let start = wait_reads(node, first + 3);
    let cpu0 = cpu_ticks(pid);
    let window = Instant::now();
    let mut end = start;
    while window.elapsed() < Duration::from_secs(10) {
        end = wait_reads(node, end + 1);
    }
    let cpu1 = cpu_ticks(pid);
    let window = window.elapsed();
    let reads = end - start;
    let rss = status_kib(pid, "VmRSS");
    let map_bytes = flow_map_bytes(max_flows);
    // Read before the probes: each probe is a flow of its own, and how many
    // of them the last published read had seen depends on timing.
    let m = scrape(node, METRICS);
    if std::env::var_os("BENCH_DEBUG").is_some() {
        eprintln!("{m}");
    }
    let tracked = sample(&m, "monitor_tracked_flows") as u64;
    let evicted = sample(&m, r#"monitor_flow_reader_total{counter="flows_evicted"}"#) as u64;
    let (read_took, read_every) =
        (sample(&m, "monitor_table_read_seconds"), sample(&m, "monitor_table_read_interval_seconds"));
    let probes = if probes_n > 0 { probes(&agent, ws, 50000, probes_n) } else { Vec::new() };
    let hwm = status_kib(pid, "VmHWM");
    let out = agent.stop();
    assert!(out.status.success(), "the {flows}-flow agent exited with {}:\n{}", out.status, out.stderr);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu_pct = (cpu1 - cpu0) as f64 / hz / window.as_secs_f64() * 100.0;
    Held {
        flows,
        max_flows,
        interval: interval.to_string(),
        fill,
        fill_rate: 2.0 * flows as f64 / fill.as_secs_f64(),
        tracked,
        evicted,
        read_took,
        read_every,
        cpu_pct,
        window,
        window_reads: reads,
        rss,
        rss_start,
        hwm,
        map_bytes,
        probes,
    }
}

impl Held {
    fn print(&self) {
        println!(
            "{} live UDP flows, --max-flows {} --interval {} (filled in {:.1} s, {:.0} packets/s)",
            self.flows,
            self.max_flows,
            self.interval,
            self.fill.as_secs_f64(),
            self.fill_rate
        );
        println!("  tracked by the agent            {} (evicted {})", self.tracked, self.evicted);
        println!(
            "  table reads                     every {:.1} s, the last took {:.0} ms",
            self.read_every,
            self.read_took * 1000.0
        );
        println!(
            "  CPU over {:.1} s ({} reads)       {:.1} % of one core",
            self.window.as_secs_f64(),
            self.window_reads,
            self.cpu_pct
        );
        println!(
            "  VmRSS                           {:.1} MiB (at start {:.1} MiB, peak {:.1} MiB)",
            self.rss as f64 / 1024.0,
            self.rss_start as f64 / 1024.0,
            self.hwm as f64 / 1024.0
        );
        if let Some(b) = self.map_bytes {
            println!("  kernel flow table (memlock)     {:.1} MiB, not in the RSS", b as f64 / 1048576.0);
        }
        if !self.probes.is_empty() {
            let s = Stats::of(&self.probes);
            println!(
                "  first packet -> alert, full     {:>6}   {:>8.2} ms {:>8.2} ms {:>8.2} ms (probes, p50, p99, max)",
                self.probes.len(),
                s.p50,
                s.p99,
                s.max
            );
        }
    }

    /// Whether RSS, CPU and p99 meet the big row's targets.
    fn met(&self) -> (bool, bool, bool) {
        let p99 = if self.probes.is_empty() { f64::NAN } else { Stats::of(&self.probes).p99 };
        (self.rss as f64 / 1024.0 <= BIG_RSS_MIB, self.cpu_pct <= BIG_CPU_PCT, p99 <= BIG_P99_MS)
    }

    fn json(&self) -> serde_json::Value {
        let mut v = json!({
            "flows": self.flows, "max_flows": self.max_flows, "interval": self.interval, "tracked": self.tracked, "evicted": self.evicted, "read_took_s": self.read_took, "read_every_s": self.read_every,
            "fill_s": self.fill.as_secs_f64(), "fill_packets_per_s": self.fill_rate,
            "cpu_percent_of_one_core": self.cpu_pct, "window_s": self.window.as_secs_f64(),
            "vm_rss_kib": self.rss, "vm_rss_start_kib": self.rss_start, "vm_hwm_kib": self.hwm,
            "kernel_flow_table_bytes": self.map_bytes,
        });
        if !self.probes.is_empty() {
            let s = Stats::of(&self.probes);
            v["latency_ms_full"] = json!({ "probes": self.probes.len(), "p50": s.p50, "p99": s.p99, "max": s.max, "samples": ms(&self.probes) });
        }
        v
    }
}

/// The memlock of the agent's flow table, from `bpftool -j map show`: the
/// newest `FLOWS` map of `max_flows` entries (bpftool may not list the
/// holders' pids, and other agents may hold tables of other sizes).
fn flow_map_bytes(max_flows: u64) -> Option<u64> {
    let out = std::process::Command::new("bpftool").args(["-j", "map", "show"]).output().ok()?;
    let maps: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    maps.as_array()?
        .iter()
        .filter(|m| m["name"].as_str() == Some("FLOWS") && m["max_entries"].as_u64() == Some(max_flows))
        .max_by_key(|m| m["id"].as_u64())
        .and_then(|m| m["bytes_memlock"].as_u64())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn start_agent(ns: &NetNs, socket: &std::path::Path) -> Agent {
    start_agent_with(ns, socket, 262_144, "1s")
}

fn start_agent_with(ns: &NetNs, socket: &std::path::Path, max_flows: u64, interval: &str) -> Agent {
    let max_flows = max_flows.to_string();
    Agent::rp_pam_ha(
        ns,
        IF,
        socket,
        &[
            "--scan-threshold",
            "1000000",
            "--max-flows",
            &max_flows,
            "--interval",
            interval,
            "--metrics",
            METRICS,
        ],
    )
}

/// One probe first, so that lazy set-up (the first ARP, page faults) is not measured.
fn warm_up(agent: &Agent, ws: &NetNs) {
    probes(agent, ws, 19990, 1);
}

/// Connects to `count` distinct closed ports from `first_port` on; returns
/// each delay from the connect to the alert line being read.
/// The agent's completed table reads, as its metrics show them (published
/// at its 1 s tick).
fn tables_read(node: &NetNs) -> u64 {
    sample(&scrape(node, METRICS), r#"monitor_flow_reader_total{counter="tables_read"}"#) as u64
}

/// Waits until the agent has completed `n` table reads in all, and gives
/// the count then.
fn wait_reads(node: &NetNs, n: u64) -> u64 {
    let t0 = Instant::now();
    loop {
        let r = tables_read(node);
        if r >= n {
            return r;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the agent read its table {r} times, not {n}, in 90 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn probes(agent: &Agent, ws: &NetNs, first_port: u16, count: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let port = first_port + i as u16;
        let before = agent.alerts().len();
        let server = SocketAddr::new(NODE.into(), port);
        let t0 = Instant::now();
        let _ = traffic::tcp_attempt(ws, WS.into(), server, Duration::from_secs(1));
        let (read_at, _) = agent
            .wait_alert(before, Duration::from_secs(5), |a| a.dst.port == port && a.proto == "tcp")
            .unwrap_or_else(|| panic!("no alert for probe {i} to {server} within 5 s:\n{}", agent.stderr()));
        out.push(read_at - t0);
    }
    out
}

struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    started: Instant,
    handle: JoinHandle<()>,
}

struct LoadDone {
    sent: u64,
    elapsed: Duration,
    rate: f64,
}

impl Load {
    /// Sends one UDP datagram per new flow from ws01 to the node at `rate`
    /// flows/s: source ports 1024..65535, then the next destination port
    /// down. With `reply`, sends from the node (in `from`) the answer to
    /// each of those flows instead, in the same order.
    fn start(from: &NetNs, to: &NetNs, rate: u64, reply: bool) -> Load {
        Load::start_n(from, to, rate, reply, u64::MAX)
    }

    /// [`Load::start`] that stops by itself after `limit` flows.
    fn start_n(from: &NetNs, to: &NetNs, rate: u64, reply: bool, limit: u64) -> Load {
        let src_mac = inject::mac_of(from, IF);
        let ifindex = from.ifindex(IF);
        let dst_mac = inject::mac_of(to, IF);
        let (client, server) =
            (SocketAddr::new(WS.into(), 1024), SocketAddr::new(NODE.into(), LOAD_PORT_TOP));
        let (src, dst) = if reply { (server, client) } else { (client, server) };
        let mut frame = inject::udp_frame(src_mac, dst_mac, &[], src, dst, &[0u8; 18]);
        // No UDP checksum (allowed over IPv4): the ports change per frame.
        let udp = 14 + 20;
        frame[udp + 6] = 0;
        frame[udp + 7] = 0;
        let (sport_at, dport_at) = if reply { (udp + 2, udp) } else { (udp, udp + 2) };
        let first = 0u64;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2) = (Arc::clone(&stop), Arc::clone(&sent));
        let handle = from.spawn(move || {
            let fd = packet_socket(ifindex, &frame);
            let started = Instant::now();
            let mut i = first;
            while !stop2.load(Ordering::Relaxed) && i < limit {
                let due = (first + (started.elapsed().as_secs_f64() * rate as f64) as u64).min(limit);
                while i < due {
                    let sport = 1024 + (i % 64512) as u16;
                    let dport = LOAD_PORT_TOP - (i / 64512) as u16;
                    frame[sport_at..sport_at + 2].copy_from_slice(&sport.to_be_bytes());
                    frame[dport_at..dport_at + 2].copy_from_slice(&dport.to_be_bytes());
                    // SAFETY: a bound AF_PACKET socket and a live buffer.
                    let n = unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), 0) };
                    if n < 0 {
                        let e = std::io::Error::last_os_error();
                        if e.raw_os_error() == Some(libc::ENOBUFS) {
                            continue; // the queue is full: retry this frame
                        }
                        panic!("load: send: {e}");
                    }
                    i += 1;
                    sent2.store(i - first, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            // SAFETY: our own fd.
            unsafe { libc::close(fd) };
        });
        Load { stop, sent, started: Instant::now(), handle }
    }

    fn stop(self) -> LoadDone {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        self.handle.join().expect("load thread");
        let sent = self.sent.load(Ordering::Relaxed);
        LoadDone { sent, elapsed, rate: sent as f64 / elapsed.as_secs_f64() }
    }

    /// Stops once `n` flows are sent.
    fn stop_after(self, n: u64) -> LoadDone {
        while self.sent.load(Ordering::Relaxed) < n {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.stop()
    }
}

fn packet_socket(ifindex: u32, frame: &[u8]) -> i32 {
    // SAFETY: plain socket(2)/bind(2) with a zeroed, then filled sockaddr_ll.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[..6]);
        let r = libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(r, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
        fd
    }
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    s.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// utime + stime of the whole process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')').expect("stat has (comm)") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after comm.
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

struct Stats {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Stats {
    fn of(d: &[Duration]) -> Stats {
        let mut v: Vec<f64> = ms(d);
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
        Stats { p50: at(0.50), p99: at(0.99), max: *v.last().expect("samples") }
    }
}

fn ms(d: &[Duration]) -> Vec<f64> {
    d.iter().map(|d| d.as_secs_f64() * 1e3).collect()
}
