//! A flow table too small for the traffic: flows the kernel evicts before
//! they are read again are judged as last known, and the losses are in the
//! coverage report and the log. Needs root and the monitor binary.

use std::{net::SocketAddr, time::Duration};

use etherparse::PacketBuilder;
use monitor_tests::{agent::Agent, cluster::Cluster, inject, nft};
use serde_json::Value;

const IF: &str = Cluster::IFACE;

/// One SYN from `src` to `dst`, as rppam1's stack would send it.
fn syn(src_mac: [u8; 6], dst_mac: [u8; 6], src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else { panic!("IPv4 only") };
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(s.ip().octets(), d.ip().octets(), 64)
        .tcp(src.port(), dst.port(), 1000, 64240)
        .syn();
    let mut frame = Vec::with_capacity(b.size(0));
    b.write(&mut frame, &[]).expect("build SYN");
    frame
}

#[test]
fn every_attempt_is_judged_blocked_though_most_flows_are_evicted() {
    const ATTEMPTS: u16 = 3000;
    let c = Cluster::new(&["rppam1", "db1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Agent::rp_pam_ha(
        c.ns("rppam1"),
        IF,
        &dir.path().join("rppam1.sock"),
        &["--syn-timeout", "1", "--max-flows", "1024"],
    );
    // Documented (db-postgres), but the database's firewall drops it all.
    nft::apply(c.ns("db1"), &nft::input_rules(&[&nft::drop_tcp(5432)]));
    let (me, db) = (inject::mac_of(c.ns("rppam1"), IF), inject::mac_of(c.ns("db1"), IF));
    let server = c.addr("db1", 5432);
    // One SYN per attempt, each from its own port (no retransmission: one
    // flow each), 100 every 50 ms so that the ring buffer keeps up.
    let frames: Vec<Vec<u8>> =
        (0..ATTEMPTS).map(|i| syn(me, db, SocketAddr::new(c.ip("rppam1"), 30000 + i), server)).collect();
    for batch in frames.chunks(100) {
        inject::send_frames(c.ns("rppam1"), IF, batch);
        std::thread::sleep(Duration::from_millis(50));
    }
    // Past the SYN timeout, with a few table reads.
    std::thread::sleep(Duration::from_secs(4));
    let out = a.stop();
    out.assert_success();

    let last = out.lines.last().expect("the agent printed its coverage report");
    let report: Value = serde_json::from_str(last).expect("the last line is JSON");
    assert_eq!(report["type"], "coverage", "{last}");
    let losses = &report["losses"];
    assert!(losses.is_object(), "the report has a losses section: {last}");
    let evicted = losses["flows_evicted"].as_u64().expect("losses.flows_evicted");
    assert!(evicted > 0, "3,000 flows in a 1,024-flow table: some are evicted: {losses}");
    for k in ["ringbuf_full", "events_dropped", "flow_map_full"] {
        assert_eq!(losses[k], 0, "{k}: nothing but evictions may be lost here: {losses}");
    }
    let rule = report["rules"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == "db-postgres"))
        .unwrap_or_else(|| panic!("no db-postgres in {last}"));
    assert_eq!(
        (rule["flows"].as_u64(), rule["blocked"].as_u64()),
        (Some(u64::from(ATTEMPTS)), Some(u64::from(ATTEMPTS))),
        "every attempt judged once, and blocked, evicted or not: {rule}\nstderr:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("WARN")
            && out.stderr.contains("flows_evicted +")
            && out.stderr.contains("--max-flows"),
        "the evictions are logged:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("{ATTEMPTS} documented blocked"))
            && out.stderr.contains(&format!("losses: flows_evicted={evicted} ")),
        "the exit summary names the blocked flows and the losses:\n{}",
        out.stderr
    );
}
