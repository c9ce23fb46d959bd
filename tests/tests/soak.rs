//! A minute of hostile traffic against a live agent, with real findings
//! running alongside (docs/deploy.md, "Limits and hostile traffic"):
//!
//! - refused-connection churn from a real client, far past a small flow
//!   table (`--max-flows 1024`);
//! - spoofed IPv4 and IPv6 sources, each one new, and spoofed DNS answers
//!   from port 53 carrying made-up names;
//! - the watched interface deleted and re-created twice.
//!
//! Every ten seconds a round of real traffic runs: a conforming connection,
//! a documented path the firewall drops (`blocked`), a port that must stay
//! internal answering from a workstation (`exposed`), and an off-matrix
//! connection between two inventory hosts (`unexpected`). The agent must
//! stay up, keep its peak resident size under [`MAX_HWM_KIB`], and alert
//! every real finding of every round with its own kind; the losses must be
//! counted. Needs root and the monitor binary.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use etherparse::PacketBuilder;
use monitor_tests::{
    agent::{rp_pam, sample, scrape, Agent, AlertLine},
    cluster::Cluster,
    inject, nft,
    traffic::{self, XorShift},
    NetNs,
};

const IF: &str = Cluster::IFACE;
/// How long the hostile traffic runs.
const SOAK: Duration = Duration::from_secs(60);
/// One round of real traffic every this long; the de-duplication window is
/// shorter, so that each round's findings are new again.
const ROUND: Duration = Duration::from_secs(10);
const DEDUP_WINDOW: &str = "4s";
/// Spoofed frames per 50 ms tick, of each family (4,000 new sources a
/// second each), and spoofed DNS answers per tick (400 a second).
const SPOOFED_PER_TICK: usize = 200;
const DNS_PER_TICK: usize = 20;
/// The bound on the agent's peak resident size: the DaemonSet's memory limit
/// is 128 MiB.
const MAX_HWM_KIB: u64 = 112 * 1024;
const METRICS: &str = "127.0.0.1:9469";

/// A DNS response from `src` (port 53) binding a made-up name to an address.
fn dns_answer(rng: &mut XorShift, macs: ([u8; 6], [u8; 6]), src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let id = rng.next_u64();
    let mut m = Vec::with_capacity(96);
    m.extend_from_slice(&(id as u16).to_be_bytes());
    m.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    for label in [format!("h{id:016x}"), "spoofed".to_owned(), "example".to_owned()] {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    // The answer: a pointer to the question's name, A, IN, TTL 300, 4 bytes.
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
    m.extend_from_slice(&((id >> 32) as u32 | 0x0a00_0000).to_be_bytes());
    let b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(53, 40000 + (id as u16 % 1000));
    let mut f = Vec::with_capacity(b.size(m.len()));
    b.write(&mut f, &m).expect("build DNS frame");
    f
}

/// One UDP datagram from a spoofed source, IPv4 or IPv6, to rppam1.
fn spoofed(rng: &mut XorShift, macs: ([u8; 6], [u8; 6]), v6: bool, dst4: Ipv4Addr) -> Vec<u8> {
    let x = rng.next_u64();
    let b = PacketBuilder::ethernet2(macs.0, macs.1);
    let b = if v6 {
        let src = Ipv6Addr::from(
            0xfd00u128 << 112 | u128::from(x & 0xffff_ffff_ffff) << 64 | u128::from(rng.next_u64()),
        );
        let dst: Ipv6Addr = "fd00::1".parse().expect("address");
        b.ipv6(src.octets(), dst.octets(), 64)
    } else {
        // 198.18.0.0/15, the benchmarking range.
        let src = Ipv4Addr::from(0xc612_0000 | (x as u32 & 0x1_ffff));
        b.ipv4(src.octets(), dst4.octets(), 64)
    }
    .udp(40000 + (x >> 48) as u16 % 20000, 9999);
    let mut f = Vec::with_capacity(b.size(16));
    b.write(&mut f, &[0; 16]).expect("build UDP frame");
    f
}

/// The hostile sender in ws01: spoofed frames and DNS answers every 50 ms,
/// to rppam1's current MAC address (it changes when the interface is
/// re-created), until `stop`. Returns the frames sent.
fn flood(ws01: &NetNs, rppam1_mac: &AtomicU64, rppam1: Ipv4Addr, stop: &AtomicBool) -> u64 {
    let ws_mac = inject::mac_of(ws01, IF);
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        let m = rppam1_mac.load(Ordering::Relaxed).to_be_bytes();
        let macs = (ws_mac, [m[2], m[3], m[4], m[5], m[6], m[7]]);
        let mut frames = Vec::with_capacity(2 * SPOOFED_PER_TICK + DNS_PER_TICK);
        for i in 0..2 * SPOOFED_PER_TICK {
            frames.push(spoofed(&mut rng, macs, i % 2 == 1, rppam1));
        }
        for _ in 0..DNS_PER_TICK {
            let resolver = Ipv4Addr::from(0xc612_0000 | (rng.next_u64() as u32 & 0xff));
            frames.push(dns_answer(&mut rng, macs, resolver, rppam1));
        }
        inject::send_frames(ws01, IF, &frames);
        sent += frames.len() as u64;
        std::thread::sleep(Duration::from_millis(50));
    }
    sent
}

/// Refused connections from admin01 to a closed port of rppam1, one every
/// half millisecond or so, until `stop`. Returns the attempts made.
fn churn(admin01: &NetNs, target: SocketAddr, stop: &AtomicBool) -> u64 {
    admin01.run(|| {
        let mut attempts = 0;
        while !stop.load(Ordering::Relaxed) {
            // Refused, or unreachable while the interface is re-created.
            let _ = TcpStream::connect_timeout(&target, Duration::from_millis(200));
            attempts += 1;
            std::thread::sleep(Duration::from_micros(500));
        }
        attempts
    })
}

/// What one round of real traffic should have raised: (kind, rule, client).
struct Finding {
    kind: &'static str,
    rule: Option<&'static str>,
    client: SocketAddr,
    server: SocketAddr,
}

/// One round of real traffic. The conforming connection raises nothing; the
/// other three each raise one finding.
fn round(c: &Cluster) -> Vec<Finding> {
    let mut found = Vec::new();
    // Conforming: an admin workstation on the portal (which the firewall
    // closes to the user workstation).
    let portal = traffic::TcpEchoServer::start(c.ns("rppam1"), c.addr("rppam1", 7101), 1);
    traffic::tcp_echo_client(c.ns("admin01"), portal.addr, 2, 64);
    portal.join();
    // Blocked: the portal's firewall drops the user workstation.
    let (client, r) =
        traffic::tcp_attempt(c.ns("ws01"), c.ip("ws01"), c.addr("rppam1", 7101), Duration::from_millis(1200));
    r.expect_err("nft drops ws01 -> 7101");
    found.push(Finding {
        kind: "blocked",
        rule: Some("web-portal/users"),
        client,
        server: c.addr("rppam1", 7101),
    });
    // Exposed: gRPC, which must stay on the node, answers a workstation.
    let grpc = traffic::TcpEchoServer::start(c.ns("rppam1"), c.addr("rppam1", 7003), 1);
    let server = grpc.addr;
    let r = traffic::tcp_echo_client(c.ns("ws01"), server, 1, 64);
    grpc.join();
    found.push(Finding { kind: "exposed", rule: Some("grpc-localhost-only"), client: r.local, server });
    // Unexpected between inventory hosts: nothing documents 8080.
    let (client, r) = traffic::tcp_attempt(
        c.ns("admin01"),
        c.ip("admin01"),
        c.addr("rppam1", 8080),
        Duration::from_secs(1),
    );
    r.expect("connect to rppam1:8080");
    found.push(Finding { kind: "unexpected", rule: None, client, server: c.addr("rppam1", 8080) });
    found
}

fn describe(a: &AlertLine) -> String {
    format!(
        "{} {} {}:{} -> {}:{} rule={:?}",
        a.kind, a.proto, a.src.ip, a.src.port, a.dst.ip, a.dst.port, a.rule
    )
}

#[test]
fn a_minute_of_hostile_traffic_leaves_the_agent_up_bounded_and_every_real_finding_alerted() {
    let c = Cluster::new(&["rppam1", "ws01", "admin01"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (matrix, inventory) = (rp_pam("matrix.yaml"), rp_pam("inventory-single.ini"));
    let socket = dir.path().join("rppam1.sock").display().to_string();
    let a = Agent::start(
        c.ns("rppam1"),
        IF,
        &[
            "--matrix",
            &matrix,
            "--inventory",
            &inventory,
            "--iface",
            IF,
            "--socket",
            &socket,
            "--format",
            "json",
            "--syn-timeout",
            "1",
            "--max-flows",
            "1024",
            "--dedup-window",
            DEDUP_WINDOW,
            "--metrics",
            METRICS,
        ],
    );
    let _unexpected =
        c.ns("rppam1").run(|| TcpListener::bind(c.addr("rppam1", 8080))).expect("listen on 8080");
    nft::apply(
        c.ns("rppam1"),
        &nft::input_rules(&[&format!("ip saddr {} tcp dport 7101 drop", c.ip("ws01"))]),
    );

    let stop = AtomicBool::new(false);
    let mac = |ns: &NetNs| {
        let m = inject::mac_of(ns, IF);
        u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
    };
    let rppam1_mac = AtomicU64::new(mac(c.ns("rppam1")));
    let IpAddr::V4(rppam1) = c.ip("rppam1") else { panic!("rppam1 has an IPv4 address") };

    let mut expected = Vec::new();
    let mut replugs = Vec::new();
    let mut n = 0u32;
    let (frames, attempts) = std::thread::scope(|s| {
        let flooder = s.spawn(|| flood(c.ns("ws01"), &rppam1_mac, rppam1, &stop));
        let churner = s.spawn(|| churn(c.ns("admin01"), c.addr("rppam1", 9), &stop));
        let start = Instant::now();
        while start.elapsed() < SOAK {
            let round_start = Instant::now();
            expected.extend(round(&c));
            n += 1;
            // After rounds 2 and 4: the interface re-created.
            if n == 2 || n == 4 {
                std::thread::sleep(Duration::from_secs(2));
                let old = c.ns("rppam1").ifindex(IF);
                let new = c.replug("rppam1");
                rppam1_mac.store(mac(c.ns("rppam1")), Ordering::Relaxed);
                let line = format!("{IF} re-created (ifindex {new}): attached");
                assert!(
                    a.wait_stderr(&line, Duration::from_secs(10)),
                    "the agent did not re-attach to {IF} (ifindex {old} -> {new}):\n{}",
                    a.stderr()
                );
                replugs.push((old, new));
            }
            if let Some(left) = ROUND.checked_sub(round_start.elapsed()) {
                std::thread::sleep(left);
            }
        }
        stop.store(true, Ordering::Relaxed);
        (flooder.join().expect("flood thread"), churner.join().expect("churn thread"))
    });
    // A few table reads past the last SYN timeout.
    std::thread::sleep(Duration::from_secs(3));
    let metrics = scrape(c.ns("rppam1"), METRICS);
    let peak = a.peak_kib();
    eprintln!(
        "soak: {n} rounds, {frames} spoofed frames, {attempts} refused connects, replugs {replugs:?}, VmHWM {peak} KiB"
    );
    assert!(peak < MAX_HWM_KIB, "the agent peaked at {peak} KiB (bound {MAX_HWM_KIB} KiB)\n{}", a.stderr());
    let out = a.stop();
    out.assert_success();

    // Every real finding of every round, with its own kind, from its own
    // connection (the window is shorter than a round, so each is new).
    let alerts = out.alerts();
    let mut missing = Vec::new();
    for f in &expected {
        let hit = alerts.iter().any(|x| {
            x.kind == f.kind
                && x.rule.as_deref() == f.rule
                && x.src.ip == f.client.ip()
                && x.src.port == f.client.port()
                && x.dst.ip == f.server.ip()
                && x.dst.port == f.server.port()
        });
        if !hit {
            missing.push(format!("{} {:?} {} -> {}", f.kind, f.rule, f.client, f.server));
        }
    }
    let real: Vec<String> = alerts
        .iter()
        .filter(|x| x.dst.ip == c.ip("rppam1") && x.src.ip != c.ip("ws01") || x.dst.port == 7003)
        .map(describe)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} real findings not alerted:\n  {}\nalerts to rppam1 from inventory hosts:\n  {}\nstderr:\n{}",
        missing.len(),
        expected.len(),
        missing.join("\n  "),
        real.join("\n  "),
        out.stderr
    );
    assert!(n >= 6, "only {n} rounds in {SOAK:?}");
    // The conforming connections raised nothing.
    let noise: Vec<String> =
        alerts.iter().filter(|x| x.src.ip == c.ip("admin01") && x.dst.port == 7101).map(describe).collect();
    assert!(noise.is_empty(), "conforming portal connections alerted:\n  {}", noise.join("\n  "));

    // The hostile traffic really pressed on every bound, and each said so.
    let counter = |family: &str, name: &str| sample(&metrics, &format!(r#"{family}{{counter="{name}"}}"#));
    assert!(
        counter("monitor_flow_reader_total", "flows_evicted") > 0.0,
        "the churn never filled the 1,024-flow table"
    );
    assert!(
        counter("monitor_dns_total", "addrs_evicted_bindings") > 0.0,
        "the spoofed answers never filled the DNS cache"
    );
    assert!(
        alerts.iter().any(|x| x.kind == "overflow"),
        "spoofed sources never overflowed de-duplication (no `overflow` alert)"
    );
    let cov = out.final_coverage();
    assert!(cov.rule("web-portal/users").blocked >= u64::from(n), "{:?}", cov.rule("web-portal/users"));
}
