//! `cargo xtask demo`: the product working in one minute on any Linux host.
//!
//! It builds the RP-PAM HA example as a cluster of network namespaces on a
//! bridge, runs `monitor run` on node rppam1, and makes traffic in rounds:
//! the documented paths, plus one connection nobody documented (ws01 to
//! rppam1:8080), one documented path that rppam1's firewall drops (ws01 to
//! the portal, 7101) and one it rejects (rppam3's heartbeat, 5201). It
//! shows `monitor top` on a terminal, or the alert stream otherwise, and at
//! the end (Ctrl-C, `q` in top, or `--seconds`) prints the coverage report
//! and writes the graph and the HTML report of what the bridge carried.
//! Every namespace is removed on the way out, on a panic too.

use std::{
    io::{IsTerminal as _, Write as _},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use clap::Parser;
use monitor_tests::{
    agent::{rp_pam, Agent},
    capture::Capture,
    cluster::{Cluster, HOSTS},
    monitor::require_monitor_bin,
    nft, traffic,
};

#[derive(Parser)]
#[command(about = "The monitor on a simulated RP-PAM HA cluster, in network namespaces (needs root)")]
struct Args {
    /// Stop after this many seconds, without a terminal view (for scripts and tests).
    #[arg(long, value_name = "N")]
    seconds: Option<u64>,
    /// Where the capture, the coverage report, the graph and the HTML report go.
    #[arg(long, value_name = "DIR", default_value = "target/demo")]
    out: PathBuf,
}

const NODE: &str = "rppam1";
const IF: &str = Cluster::IFACE;
/// The documented portal port that rppam1 drops from ws01.
const DROPPED: u16 = 7101;
/// The documented heartbeat port that rppam1 rejects.
const REJECTED: u16 = 5201;
/// A port nobody documented, where rppam1 answers.
const UNDOCUMENTED: u16 = 8080;

fn main() {
    let args = Args::parse();
    let bin = require_monitor_bin();
    std::fs::create_dir_all(&args.out).unwrap_or_else(|e| panic!("create {}: {e}", args.out.display()));
    let out = args.out.canonicalize().expect("the output directory");

    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    ctrlc::set_handler(move || s.store(true, Ordering::SeqCst)).expect("install the Ctrl-C handler");

    let names: Vec<&str> = HOSTS.iter().map(|(n, _)| *n).collect();
    eprintln!("demo: building the RP-PAM HA cluster: {} namespaces on a bridge", names.len() + 1);
    let c = Cluster::new(&names);
    let rppam1 = c.host(NODE);
    nft::apply(
        &rppam1.ns,
        &nft::input_rules(&[
            &format!("ip saddr {} tcp dport {DROPPED} drop", c.ip("ws01")),
            &format!("tcp dport {REJECTED} reject with icmpx type admin-prohibited"),
        ]),
    );
    let capture = Capture::start(c.switch(), Cluster::BRIDGE);
    let socket = out.join("monitor.sock");
    let (matrix, inventory) = (rp_pam("matrix.yaml"), rp_pam("inventory.ini"));
    let agent = Agent::rp_pam_ha_as(&rppam1.ns, IF, &socket, "text", &["--syn-timeout", "1"]);
    eprintln!("demo: `monitor run` watches {NODE}:{IF}; traffic starts");

    let mut shown = 0;
    let traffic = {
        let c = &c;
        thread::scope(|scope| {
            let t = scope.spawn(|| rounds(c, &stop));
            let interactive = args.seconds.is_none() && std::io::stdout().is_terminal();
            if interactive && has_top(&bin) {
                let status = Command::new(&bin)
                    .arg("top")
                    .arg("--socket")
                    .arg(&socket)
                    .status()
                    .expect("run monitor top");
                if !status.success() {
                    eprintln!("demo: monitor top exited with {status}");
                }
                stop.store(true, Ordering::SeqCst);
                shown = agent.lines().len();
            } else {
                follow(&agent, args.seconds.map(Duration::from_secs), &stop, &mut shown);
            }
            t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    };

    // The agent prints its coverage report as it exits; `top` has shown
    // the alerts already.
    let stopped = agent.stop();
    print_new(&stopped.lines, &mut shown);
    let pcap = out.join("capture.pcap");
    capture.save(&pcap);
    let sources = ["--matrix", &matrix, "--inventory", &inventory, "--profile", "ha"];
    let svg = out.join("graph.svg");
    let graph =
        on_capture(&bin, "graph", &sources, &pcap, &["--format", "svg", "-o", &svg.display().to_string()]);
    written("graph", &svg, &graph);
    let html = out.join("report.html");
    let page = on_capture(&bin, "check", &sources, &pcap, &["--format", "html"]);
    // `check` exits 1 when it finds something, as here.
    if page.status.code().is_some_and(|c| c <= 1) && !page.stdout.is_empty() {
        std::fs::write(&html, &page.stdout).expect("write report.html");
    }
    written("HTML report", &html, &page);
    println!("capture: {}", pcap.display());
    println!("traffic: {traffic} rounds");
    drop(c);
    println!("demo: removed every namespace");
}

/// Traffic in rounds of about two seconds until `stop`: the documented
/// paths of rppam1, then the three that depart from the matrix. Returns
/// how many rounds ran.
fn rounds(c: &Cluster, stop: &AtomicBool) -> u64 {
    let conforming = [
        ("rppam1", "db1", 5432),
        ("rppam1", "redis1", 6379),
        ("rppam1", "rppam2", 7001),
        ("rppam2", "rppam1", 7005),
        ("admin01", "rppam1", 7101),
    ];
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        for (client, server, port) in conforming.iter().copied().chain([("ws01", NODE, UNDOCUMENTED)]) {
            let s = traffic::TcpEchoServer::start(c.ns(server), c.addr(server, port), 1);
            traffic::tcp_echo_client(c.ns(client), s.addr, 2, 64);
            s.join();
        }
        attempt(c, "ws01", c.addr(NODE, DROPPED));
        attempt(c, "rppam3", c.addr(NODE, REJECTED));
        n += 1;
        while started.elapsed() < Duration::from_secs(2) && !stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(50));
        }
    }
    n
}

/// A connection attempt that the node's firewall is meant to stop.
fn attempt(c: &Cluster, client: &str, server: SocketAddr) {
    let (_, r) = traffic::tcp_attempt(c.ns(client), c.ip(client), server, Duration::from_millis(500));
    assert!(r.is_err(), "{client} -> {server} was answered: the demo's firewall rule is not in force");
}

/// Prints the agent's alert lines as they come until `stop` or `limit`.
fn follow(agent: &Agent, limit: Option<Duration>, stop: &AtomicBool, shown: &mut usize) {
    let started = Instant::now();
    eprintln!(
        "demo: the alert stream follows{}",
        match limit {
            Some(l) => format!(" for {} s", l.as_secs()),
            None => "; Ctrl-C stops".into(),
        }
    );
    while !stop.load(Ordering::SeqCst) && limit.is_none_or(|l| started.elapsed() < l) {
        print_new(&agent.lines(), shown);
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
}

fn print_new(lines: &[String], shown: &mut usize) {
    let mut out = std::io::stdout().lock();
    for l in lines.iter().skip(*shown) {
        let _ = writeln!(out, "{l}");
    }
    *shown = (*shown).max(lines.len());
    let _ = out.flush();
}

fn has_top(bin: &Path) -> bool {
    Command::new(bin)
        .args(["top", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `monitor COMMAND SOURCES --pcap PCAP REST`.
fn on_capture(
    bin: &Path,
    command: &str,
    sources: &[&str],
    pcap: &Path,
    rest: &[&str],
) -> std::process::Output {
    Command::new(bin)
        .arg(command)
        .args(sources)
        .arg("--pcap")
        .arg(pcap)
        .args(rest)
        .output()
        .unwrap_or_else(|e| panic!("run monitor {command}: {e}"))
}

fn written(what: &str, path: &Path, run: &std::process::Output) {
    if path.is_file() {
        println!("{what}: {}", path.display());
    } else {
        println!("{what}: not written: {}", String::from_utf8_lossy(&run.stderr).trim());
    }
}
