//! A flood of spoofed IPv6 sources: the agent's memory stays within its
//! bound (docs/deploy.md, "Limits and hostile traffic"), it stays up, and a
//! real finding sent afterwards is still alerted with its own kind. Needs
//! root and the monitor binary.

use std::{
    net::{Ipv6Addr, TcpListener},
    time::Duration,
};

use etherparse::PacketBuilder;
use monitor_tests::{agent::Agent, cluster::Cluster, inject, traffic};

const IF: &str = Cluster::IFACE;
/// Spoofed sources sent.
const SOURCES: u32 = 200_000;
/// The bound on the agent's peak resident size under the flood, with the
/// DaemonSet's `--max-flows 65536`: the DaemonSet's 128 MiB limit. Measured
/// on 2026-12-03: 92 MiB, once the known flows were allocated as they fill,
/// their values kept only where an eviction can change a verdict, and the
/// table read in chunks. On 2026-12-02: 117-120 MiB (heap 107 MB by heaptrack: the judge's flows
/// 19, the known flows 18, the evicted flows awaiting an answer 17, the
/// evicted of a read 17, de-duplication 11, tables 9); 137 MiB before the
/// known flows were bounded (they grew with the events between two reads,
/// 54 MB, where the machine delivered them faster); 104-105 MiB on an
/// earlier machine, and 121 MiB there while each read built a second map of
/// the known flows; 128.5 MiB before the per-client scan state was made
/// small.
const MAX_HWM_KIB: u64 = 128 * 1024;

#[test]
fn spoofed_ipv6_sources_stay_within_the_memory_bound_and_a_real_finding_still_alerts() {
    let c = Cluster::new(&["rppam1", "ws01"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Agent::rp_pam_ha(c.ns("rppam1"), IF, &dir.path().join("rppam1.sock"), &["--max-flows", "65536"]);
    let (me, ws) = (inject::mac_of(c.ns("rppam1"), IF), inject::mac_of(c.ns("ws01"), IF));
    let dst: Ipv6Addr = "fd00::1".parse().expect("address");
    // Random sources in fd00::/16, each in its own /64 (so that every one
    // is a client of its own to de-duplication), 1,000 every 5 ms.
    let mut rng = traffic::XorShift(0x1234_5678_9abc_def1);
    for _ in 0..SOURCES / 1000 {
        let batch: Vec<Vec<u8>> = (0..1000)
            .map(|_| {
                let x = rng.next_u64();
                let hi = u128::from(x.wrapping_mul(0x9e37_79b9_7f4a_7c15) & 0xffff_ffff_ffff);
                let src = Ipv6Addr::from(0xfd00u128 << 112 | hi << 64 | u128::from(x));
                let b =
                    PacketBuilder::ethernet2(ws, me).ipv6(src.octets(), dst.octets(), 64).udp(40000, 9999);
                let mut f = Vec::with_capacity(b.size(16));
                b.write(&mut f, &[0; 16]).expect("build UDP frame");
                f
            })
            .collect();
        inject::send_frames(c.ns("ws01"), IF, &batch);
        std::thread::sleep(Duration::from_millis(5));
    }
    // A few table reads with the flood in the table.
    std::thread::sleep(Duration::from_secs(3));
    let peak = a.peak_kib();
    eprintln!("VmHWM after {SOURCES} spoofed sources: {peak} KiB");
    assert!(
        peak < MAX_HWM_KIB,
        "{SOURCES} spoofed sources took the agent to {peak} KiB (bound {MAX_HWM_KIB} KiB)\n{}",
        a.stderr()
    );

    // Still up, and a real finding between inventory hosts still alerts.
    let skip = a.alerts().len();
    let addr = c.addr("rppam1", 8080);
    let _l = c.ns("rppam1").run(|| TcpListener::bind(addr)).expect("listen on rppam1:8080");
    let (_, r) = traffic::tcp_attempt(c.ns("ws01"), c.ip("ws01"), addr, Duration::from_secs(1));
    r.expect("connect to rppam1:8080");
    let (_, alert) = a
        .wait_alert(skip, Duration::from_secs(5), |al| al.dst.port == 8080 && al.src.ip == c.ip("ws01"))
        .unwrap_or_else(|| panic!("no alert for ws01 -> rppam1:8080 after the flood:\n{}", a.stderr()));
    assert_eq!((alert.kind.as_str(), alert.proto.as_str()), ("unexpected", "tcp"), "{alert:?}");
    let out = a.stop();
    out.assert_success();
}
