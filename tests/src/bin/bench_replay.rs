//! `cargo xtask bench replay`: `monitor check --pcap` against the offline
//! readers of other flow tools, on one generated capture.
//!
//! The capture (deterministic: same options, same bytes) is RP-PAM HA
//! traffic between the hosts of examples/rp-pam/inventory.ini: TCP
//! connections from the workstations to the portal and between the nodes,
//! database and Redis (handshake, request and response segments, FIN
//! close: 21 packets each), and UDP request/reply exchanges the matrix does
//! not document (14 packets each, every one a finding). Flows overlap: a
//! window of open flows is advanced in a pseudo-random order, 20 µs of
//! capture time per packet. The default, 40,000 TCP and 10,000 UDP flows,
//! is 980,000 packets.
//!
//! Timed, in interleaved rounds, wall clock of the whole process:
//! - `monitor check --matrix --inventory --profile ha --pcap FILE --format json [--threads N]`;
//! - `softflowd -r FILE -n 127.0.0.1:9 -d` (NetFlow export to the discard
//!   port on loopback);
//! - `nfpcapd -r FILE -w DIR` (nfdump's pcap collector, flows to a temporary directory);
//! - `argus -r FILE -w /dev/null`.
//!
//! A peer that is not installed is skipped with a note (`cargo xtask bench
//! replay` installs them). Prints M packets/s (best and median of the
//! rounds) and our ratio to the fastest peer; writes bench/replay.json
//! under the target directory.
//!
//! Options (`bench-replay --help`): the capture's size, the rounds, the
//! `--threads` variants timed, and `--baseline MONITOR_BIN` (another build,
//! timed in the same rounds, for before/after figures). The load average
//! before and after is printed.

use std::{
    fs::File,
    io::{BufWriter, Write},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context, Result};
use monitor_tests::monitor::monitor_bin;
use serde_json::json;

/// Portal and back-end services of the HA profile, and a client chooser each.
const TCP_SERVICES: [(Ipv4Addr, u16, Clients); 7] = [
    (Ipv4Addr::new(10, 200, 1, 10), 443, Clients::Workstations),
    (Ipv4Addr::new(10, 200, 1, 11), 7101, Clients::Workstations),
    (Ipv4Addr::new(10, 200, 1, 12), 7101, Clients::LoadBalancer),
    (Ipv4Addr::new(10, 200, 1, 20), 5432, Clients::Nodes),
    (Ipv4Addr::new(10, 200, 1, 13), 7001, Clients::Nodes),
    (Ipv4Addr::new(10, 200, 3, 20), 22, Clients::Nodes),
    (Ipv4Addr::new(10, 200, 3, 10), 3389, Clients::Nodes),
];
/// UDP services no rule documents.
const UDP_SERVICES: [(Ipv4Addr, u16); 3] = [
    (Ipv4Addr::new(10, 200, 4, 10), 123),
    (Ipv4Addr::new(10, 200, 1, 21), 514),
    (Ipv4Addr::new(10, 200, 3, 20), 161),
];

#[derive(Clone, Copy)]
enum Clients {
    Workstations,
    LoadBalancer,
    Nodes,
}

const WS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 200, 2, 50), Ipv4Addr::new(10, 200, 2, 60)];
const NODES: [Ipv4Addr; 3] =
    [Ipv4Addr::new(10, 200, 1, 11), Ipv4Addr::new(10, 200, 1, 12), Ipv4Addr::new(10, 200, 1, 13)];
const LB: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 10);

/// How many flows are open at once.
const WINDOW: usize = 2048;
const TCP_PACKETS: usize = 21;
const UDP_PACKETS: usize = 14;
/// 2026-04-06 10:00 UTC.
const START_S: u64 = 1_775_469_600;
const STEP_NS: u64 = 20_000;

/// `monitor check` against softflowd, nfpcapd and argus on a generated capture.
#[derive(clap::Parser)]
#[command(name = "bench-replay")]
struct Opts {
    /// TCP flows in the generated capture.
    #[arg(long, default_value_t = 40_000)]
    tcp_flows: u64,
    /// UDP flows in the generated capture.
    #[arg(long, default_value_t = 10_000)]
    udp_flows: u64,
    /// Timed rounds of every tool; best and median are printed.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The `monitor check --threads` variants timed, e.g. 1,2.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    threads: Vec<usize>,
    /// Keep the capture in FILE.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write the capture and stop.
    #[arg(long)]
    generate_only: bool,
    /// Another build of `monitor`, timed in the same rounds (before/after).
    #[arg(long, value_name = "MONITOR_BIN")]
    baseline: Option<PathBuf>,
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One flow being written: its endpoints and how far it got.
struct Gen {
    tcp: bool,
    client: [u8; 4],
    server: [u8; 4],
    sport: u16,
    dport: u16,
    step: usize,
    seq: [u32; 2],
}

impl Gen {
    fn new(i: u64, tcp: bool, rng: &mut Rng) -> Gen {
        let (client, server, dport) = if tcp {
            let (server, port, clients) = TCP_SERVICES[rng.below(TCP_SERVICES.len())];
            let client = match clients {
                Clients::Workstations => WS[rng.below(WS.len())],
                Clients::LoadBalancer => LB,
                Clients::Nodes => {
                    let n = NODES[rng.below(NODES.len())];
                    if n == server {
                        NODES[(rng.below(2) + 1 + NODES.iter().position(|x| *x == n).unwrap()) % 3]
                    } else {
                        n
                    }
                }
            };
            (client, server, port)
        } else {
            let (server, port) = UDP_SERVICES[rng.below(UDP_SERVICES.len())];
            (NODES[rng.below(NODES.len())], server, port)
        };
        // Each flow its own source port: keys repeat only 64,000 flows
        // apart, long after the earlier flow closed and expired.
        let sport = 1024 + (i % 64_000) as u16;
        Gen {
            tcp,
            client: client.octets(),
            server: server.octets(),
            sport,
            dport,
            step: 0,
            seq: [rng.next() as u32, rng.next() as u32],
        }
    }

    fn done(&self) -> bool {
        self.step == if self.tcp { TCP_PACKETS } else { UDP_PACKETS }
    }

    /// The next frame of this flow into `buf`.
    fn frame(&mut self, buf: &mut Vec<u8>) {
        buf.clear();
        let s = self.step;
        self.step += 1;
        let from_client = if self.tcp { tcp_from_client(s) } else { s.is_multiple_of(2) };
        let (src, dst, sp, dp) = if from_client {
            (self.client, self.server, self.sport, self.dport)
        } else {
            (self.server, self.client, self.dport, self.sport)
        };
        let (smac, dmac) = if from_client {
            ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        } else {
            ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
        };
        let b = etherparse::PacketBuilder::ethernet2(smac, dmac).ipv4(src, dst, 64);
        if !self.tcp {
            let len = if from_client { 48 } else { 180 + (s * 37) % 600 };
            b.udp(sp, dp).write(buf, &PAYLOAD[..len]).unwrap();
            return;
        }
        let (me, peer) = if from_client { (0, 1) } else { (1, 0) };
        let len = tcp_len(s);
        let b = b.tcp(sp, dp, self.seq[me], 64240);
        let b = match s {
            0 => b.syn(),
            1 => b.syn().ack(self.seq[peer].wrapping_add(1)),
            17 | 18 => b.fin().ack(self.seq[peer]),
            _ => b.ack(self.seq[peer]),
        };
        let b = if len > 0 { b.psh() } else { b };
        b.write(buf, &PAYLOAD[..len]).unwrap();
        let advance = if matches!(s, 0 | 1 | 17 | 18) { 1 } else { len as u32 };
        self.seq[me] = self.seq[me].wrapping_add(advance);
    }
}

/// SYN, SYN-ACK, ACK; request and response segments; FIN, FIN, ACK.
fn tcp_from_client(step: usize) -> bool {
    match step {
        0 | 2 | 17 | 20 => true,
        1 | 18 | 19 => false,
        s => s % 2 == 1,
    }
}

fn tcp_len(step: usize) -> usize {
    match step {
        3..=16 if step % 2 == 1 => 120 + (step * 53) % 400,
        3..=16 => [1448, 1448, 600, 1448, 200, 1448, 1448][(step - 4) / 2],
        _ => 0,
    }
}

static PAYLOAD: [u8; 1500] = [0x5a; 1500];

/// Writes the capture to `path`; returns the packet count and the byte size.
fn generate(path: &Path, tcp_flows: u64, udp_flows: u64) -> Result<(u64, u64)> {
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    // Legacy pcap, microseconds, Ethernet, snaplen 65535.
    w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&[0; 8])?;
    w.write_all(&65535u32.to_le_bytes())?;
    w.write_all(&1u32.to_le_bytes())?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let total = tcp_flows + udp_flows;
    let mut started = 0u64;
    // TCP and UDP starts spread evenly through the capture.
    let start = |rng: &mut Rng, started: &mut u64| {
        let i = *started;
        *started += 1;
        let tcp = (i * udp_flows) / total == ((i + 1) * udp_flows) / total;
        Gen::new(i, tcp, rng)
    };
    let mut open: Vec<Gen> = Vec::with_capacity(WINDOW);
    while open.len() < WINDOW && started < total {
        open.push(start(&mut rng, &mut started));
    }
    let mut ts = START_S * 1_000_000_000;
    let (mut packets, mut bytes) = (0u64, 24u64);
    let mut frame = Vec::with_capacity(1600);
    while !open.is_empty() {
        let at = rng.below(open.len());
        open[at].frame(&mut frame);
        ts += STEP_NS;
        let us = ts / 1000;
        w.write_all(&((us / 1_000_000) as u32).to_le_bytes())?;
        w.write_all(&((us % 1_000_000) as u32).to_le_bytes())?;
        w.write_all(&(frame.len() as u32).to_le_bytes())?;
        w.write_all(&(frame.len() as u32).to_le_bytes())?;
        w.write_all(&frame)?;
        packets += 1;
        bytes += 16 + frame.len() as u64;
        if open[at].done() {
            if started < total {
                open[at] = start(&mut rng, &mut started);
            } else {
                open.swap_remove(at);
            }
        }
    }
    w.flush()?;
    Ok((packets, bytes))
}

struct Tool {
    name: String,
    cmd: Vec<String>,
    /// Exit statuses that mean success.
    ok: &'static [i32],
    /// Wall-clock seconds of each round.
    times: Vec<f64>,
    /// CPU seconds (user + system) of each round.
    cpu: Vec<f64>,
}

fn have(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// User + system CPU seconds of the waited-for children so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Runs `tool` once: wall and CPU seconds.
fn run_once(tool: &Tool, scratch: &Path) -> Result<(f64, f64)> {
    // nfpcapd writes into a directory that must exist and start empty.
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch)?;
    let cpu = children_cpu();
    let t = Instant::now();
    let out = Command::new(&tool.cmd[0])
        .args(&tool.cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("run {}", tool.cmd[0]))?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = children_cpu() - cpu;
    let code = out.status.code().unwrap_or(-1);
    if !tool.ok.contains(&code) {
        bail!("{} exited {code}: {}", tool.cmd.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok((secs, cpu))
}

/// The 1, 5 and 15 minute load averages: how shared the machine was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() -> Result<()> {
    let o = <Opts as clap::Parser>::parse();
    let target = monitor_tests::target_dir();
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir)?;
    let pcap = o.out.clone().unwrap_or_else(|| dir.join("replay.pcap"));
    let t = Instant::now();
    let (packets, bytes) = generate(&pcap, o.tcp_flows, o.udp_flows)?;
    println!(
        "capture: {} ({packets} packets, {} flows, {:.1} MB) written in {:.1} s",
        pcap.display(),
        o.tcp_flows + o.udp_flows,
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    if o.generate_only {
        return Ok(());
    }
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam");
    let file = pcap.display().to_string();
    let scratch = dir.join("replay-peer-out");
    let mut tools = Vec::new();
    let mut builds = vec![("monitor check", monitor_bin())];
    if let Some(b) = &o.baseline {
        builds.push(("baseline check", b.clone()));
    }
    for (label, bin) in &builds {
        for n in &o.threads {
            let mut cmd = vec![
                bin.display().to_string(),
                "check".into(),
                "--matrix".into(),
                example.join("matrix.yaml").display().to_string(),
                "--inventory".into(),
                example.join("inventory.ini").display().to_string(),
                "--profile".into(),
                "ha".into(),
                "--pcap".into(),
                file.clone(),
                "--format".into(),
                "json".into(),
            ];
            if *n != 1 {
                cmd.extend(["--threads".into(), n.to_string()]);
            }
            let name = if *n == 1 { label.to_string() } else { format!("{label} --threads {n}") };
            tools.push(Tool { name, cmd, ok: &[0, 1], times: Vec::new(), cpu: Vec::new() });
        }
    }
    let ours = tools.len();
    let peers: [(&str, Vec<String>); 3] = [
        ("softflowd", vec!["-r".into(), file.clone(), "-n".into(), "127.0.0.1:9".into(), "-d".into()]),
        ("nfpcapd", vec!["-r".into(), file.clone(), "-w".into(), scratch.display().to_string()]),
        ("argus", vec!["-r".into(), file.clone(), "-w".into(), "/dev/null".into()]),
    ];
    for (bin, args) in peers {
        if !have(bin) {
            println!("{bin}: not installed, skipped (cargo xtask bench replay installs it)");
            continue;
        }
        let mut cmd = vec![bin.to_string()];
        cmd.extend(args);
        tools.push(Tool { name: bin.into(), cmd, ok: &[0], times: Vec::new(), cpu: Vec::new() });
    }
    let load_before = loadavg();
    println!("load average before: {load_before}");
    // A warm-up round (page cache, binaries), untimed.
    for tool in &tools {
        run_once(tool, &scratch)?;
    }
    for _ in 0..o.rounds {
        for tool in &mut tools {
            let (wall, cpu) = run_once(tool, &scratch)?;
            tool.times.push(wall);
            tool.cpu.push(cpu);
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let load_after = loadavg();
    println!("load average after: {load_after}");
    let mpps = |s: f64| packets as f64 / s / 1e6;
    println!(
        "\nM packets/s over {} rounds; wall: elapsed time, cpu: per CPU second (user + system)",
        o.rounds
    );
    println!(
        "{:<28} {:>10} {:>12} {:>10} {:>12}",
        "tool", "wall best", "wall median", "cpu best", "cpu median"
    );
    let mut rows = Vec::new();
    for tool in &mut tools {
        tool.times.sort_by(f64::total_cmp);
        tool.cpu.sort_by(f64::total_cmp);
        let mid = tool.times.len() / 2;
        let (best, med, cbest, cmed) = (tool.times[0], tool.times[mid], tool.cpu[0], tool.cpu[mid]);
        println!(
            "{:<28} {:>10.2} {:>12.2} {:>10.2} {:>12.2}",
            tool.name,
            mpps(best),
            mpps(med),
            mpps(cbest),
            mpps(cmed)
        );
        rows.push(json!({
            "tool": tool.name, "command": tool.cmd.join(" "),
            "wall_seconds": tool.times, "cpu_seconds": tool.cpu,
            "wall_best_mpps": mpps(best), "wall_median_mpps": mpps(med),
            "cpu_best_mpps": mpps(cbest), "cpu_median_mpps": mpps(cmed),
        }));
    }
    let median = |t: &Tool| t.times[t.times.len() / 2];
    let cpu_median = |t: &Tool| t.cpu[t.cpu.len() / 2];
    let fastest_peer = tools[ours..].iter().min_by(|a, b| median(a).total_cmp(&median(b)));
    let mut ratios = Vec::new();
    if let Some(peer) = fastest_peer {
        for tool in &tools[..ours] {
            let r = median(peer) / median(tool);
            let c = cpu_median(peer) / cpu_median(tool);
            println!(
                "{}: {r:.2}x the fastest peer ({}) by wall median, {c:.2}x by CPU median",
                tool.name, peer.name
            );
            ratios.push(json!({ "tool": tool.name, "peer": peer.name, "wall_ratio": r, "cpu_ratio": c }));
        }
    }
    let report = json!({
        "packets": packets, "bytes": bytes, "flows": o.tcp_flows + o.udp_flows,
        "rounds": o.rounds, "tools": rows, "ratios": ratios,
        "load_before": load_before, "load_after": load_after,
    });
    std::fs::write(dir.join("replay.json"), serde_json::to_string_pretty(&report)?)?;
    if o.out.is_none() {
        let _ = std::fs::remove_file(&pcap);
    }
    Ok(())
}
