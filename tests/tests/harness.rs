//! Self-tests of the harness: namespaces, veth, traffic, nftables and the
//! pcap ground truth, without the monitor. Need root; no monitor binary.

use std::{io::ErrorKind, net::SocketAddr, path::Path, time::Duration};

use monitor_tests::{
    attach::Attachments,
    capture::{Capture, Kind},
    inject,
    link::{self, Bridge},
    nft, require_root, traffic, NetNs, Pair,
};

#[test]
fn namespace_is_created_and_deleted() {
    require_root();
    let path;
    {
        let ns = NetNs::new("self");
        path = format!("/run/netns/{}", ns.name());
        assert!(Path::new(&path).exists(), "{path} missing after NetNs::new");
        let links = ns.exec(&["ip", "-o", "link", "show", "lo"]);
        assert!(links.contains("UP"), "lo is not up in {}: {links}", ns.name());
        // A process started inside is ended with the namespace.
        let child = ns.command("sleep").arg("60").spawn().expect("spawn sleep");
        let pid = child.id() as i32;
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(ns.pids(), vec![pid], "`ip netns exec` should exec, leaving one process");
        std::mem::forget(child);
    }
    assert!(!Path::new(&path).exists(), "{path} still there after drop");
}

#[test]
fn namespaces_have_unique_names() {
    require_root();
    let x = NetNs::new("u");
    let y = NetNs::new("u");
    assert_ne!(x.name(), y.name());
}

#[test]
fn tcp_over_veth_echoes_and_capture_counts_it() {
    let p = Pair::new();
    let cap = Capture::start(&p.b, Pair::IF_B);
    let server = traffic::TcpEchoServer::start(&p.b, Pair::addr_b(false, 7001), 3);
    let reports: Vec<_> = (0..3).map(|_| traffic::tcp_echo_client(&p.a, server.addr, 4, 100)).collect();
    assert_eq!(server.join(), vec![400, 400, 400]);
    let tally = cap.stop();
    for r in &reports {
        let up = tally.between("tcp", r.local, r.peer);
        let down = tally.between("tcp", r.peer, r.local);
        // SYN, ACK, 4 data, FIN (+ its ACK) at least one way; the exact
        // number depends on delayed ACKs, hence the capture.
        assert!(up.packets >= 7, "{} -> {}: only {} packets captured", r.local, r.peer, up.packets);
        assert!(down.packets >= 6, "{} -> {}: only {} packets captured", r.peer, r.local, down.packets);
        let syns = tally
            .tcp_frames(r.local, r.peer)
            .iter()
            .filter(|f| matches!(f.kind, Kind::Tcp { syn: true, ack: false, .. }))
            .count();
        assert_eq!(syns, 1, "one SYN per connection");
        // 100-byte payloads: each data frame is 14 + 20 + 32 + 100 bytes.
        assert!(up.bytes >= 4 * 166, "too few bytes captured: {up:?}");
    }
    assert!(tally.max_frame_len() <= 1514, "small messages must not form super-packets");
}

#[test]
fn tcp_over_ipv6() {
    let p = Pair::new();
    let cap = Capture::start(&p.b, Pair::IF_B);
    let s6 = traffic::TcpEchoServer::start(&p.b, Pair::addr_b(true, 7002), 1);
    let r6 = traffic::tcp_echo_client(&p.a, s6.addr, 2, 10);
    assert_eq!(s6.join(), vec![20]);
    let tally = cap.stop();
    assert!(r6.local.is_ipv6());
    assert!(tally.between("tcp", r6.local, r6.peer).packets >= 5, "IPv6 TCP not captured");
}

#[test]
fn injected_vlan_frames_arrive_tagged() {
    let p = Pair::new();
    let cap = Capture::start(&p.a, Pair::IF_A);
    let (mac_a, mac_b) = (inject::mac_of(&p.a, Pair::IF_A), inject::mac_of(&p.b, Pair::IF_B));
    let (src, dst) = (Pair::addr_b(false, 4000), Pair::addr_a(false, 4001));
    let single = inject::udp_frame(mac_b, mac_a, &[100], src, dst, &[7; 30]);
    let double = inject::udp_frame(mac_b, mac_a, &[200, 100], src, dst, &[7; 30]);
    assert_eq!((single.len(), double.len()), (18 + 20 + 8 + 30, 22 + 20 + 8 + 30));
    inject::send_frames(&p.b, Pair::IF_B, &[single.clone(), single, double]);
    let tally = cap.stop();
    let frames: Vec<_> = tally.frames.iter().filter(|f| f.src == src && f.dst == dst).collect();
    assert_eq!(frames.len(), 3, "injected frames seen on the peer: {frames:?}");
    assert!(frames.iter().all(|f| f.vlan && f.kind == Kind::Udp));
    assert_eq!(frames.iter().map(|f| f.len).sum::<u64>(), 2 * 76 + 80);
}

#[test]
fn bridge_joins_three_namespaces() {
    require_root();
    let sw = NetNs::new("sw");
    let hosts: Vec<NetNs> = (0..3).map(|_| NetNs::new("h")).collect();
    let mut br = Bridge::new(&sw, "br0");
    for (i, h) in hosts.iter().enumerate() {
        br.join(h, "eth0");
        link::add_addr(h, "eth0", &format!("10.200.1.{}/24", i + 1));
    }
    for (i, h) in hosts.iter().enumerate() {
        let to = format!("10.200.1.{}", (i + 1) % 3 + 1).parse().expect("address");
        assert_eq!(traffic::ping(h, to, 1, 8).replies, 1, "host {i} cannot reach {to} over the bridge");
    }
}

#[test]
fn udp_and_ping() {
    let p = Pair::new();
    let cap = Capture::start(&p.b, Pair::IF_B);
    let srv = traffic::UdpEchoServer::start(&p.b, Pair::addr_b(false, 5353), 3);
    let server = srv.addr;
    let local = traffic::udp_echo_client(&p.a, server, 3, 50);
    srv.join();
    let ping4 = traffic::ping(&p.a, Pair::B4.into(), 3, 56);
    let ping6 = traffic::ping(&p.a, Pair::B6.into(), 2, 56);
    assert_eq!((ping4.replies, ping6.replies), (3, 2));
    let tally = cap.stop();
    let up = tally.between("udp", local, server);
    // 14 + 20 + 8 + 50 bytes each.
    assert_eq!(up.packets, 3);
    assert_eq!(up.bytes, 3 * 92);
    let a = SocketAddr::new(Pair::A4.into(), ping4.id);
    let b = SocketAddr::new(Pair::B4.into(), ping4.id);
    assert_eq!(tally.between("icmp", a, b).packets, 3, "echo requests");
    assert_eq!(tally.between("icmp", b, a).bytes, 3 * (14 + 20 + 8 + 56), "echo replies");
    let a6 = SocketAddr::new(Pair::A6.into(), ping6.id);
    let b6 = SocketAddr::new(Pair::B6.into(), ping6.id);
    assert_eq!(tally.between("icmpv6", a6, b6).packets, 2);
}

#[test]
fn nftables_drop_reset_and_prohibit() {
    let p = Pair::new();
    nft::apply(&p.b, &nft::input_rules(&[&nft::drop_tcp(81), &nft::reset_tcp(82), &nft::prohibit_tcp(83)]));
    let (_, dropped) =
        traffic::tcp_attempt(&p.a, Pair::A4.into(), Pair::addr_b(false, 81), Duration::from_millis(300));
    assert_eq!(dropped.expect_err("drop rule").kind(), ErrorKind::TimedOut);
    let (_, reset) =
        traffic::tcp_attempt(&p.a, Pair::A4.into(), Pair::addr_b(false, 82), Duration::from_secs(2));
    assert_eq!(reset.expect_err("reset rule").kind(), ErrorKind::ConnectionRefused);
    let (_, prohibited) =
        traffic::tcp_attempt(&p.a, Pair::A6.into(), Pair::addr_b(true, 83), Duration::from_secs(2));
    let e = prohibited.expect_err("prohibit rule");
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "ICMPv6 admin-prohibited maps to EACCES, got {e}");
    // No listener at all: the kernel answers RST.
    let (_, closed) =
        traffic::tcp_attempt(&p.a, Pair::A4.into(), Pair::addr_b(false, 84), Duration::from_secs(2));
    assert_eq!(closed.expect_err("no listener").kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn fresh_veth_has_nothing_attached() {
    let p = Pair::new();
    let att = Attachments::of(&p.a, Pair::IF_A);
    assert!(!att.any(), "new veth already has attachments: {att:?}");
}
