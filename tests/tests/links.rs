//! Interfaces that come and go while the monitor runs: a watched interface
//! deleted and re-created with the same name is attached to again, and
//! without `--iface` an interface added after the start is watched too.
//!
//! NEED ROOT AND THE BUILT BINARY (see tests/tests/flows.rs).

use std::net::SocketAddr;

use monitor_tests::{
    attach::{assert_left_nothing, Attachments},
    link::{self, Veth},
    monitor::{table, Monitor, MonitorOutput},
    traffic, NetNs, Pair,
};

/// One TCP echo connection `client` -> `server` (in `server_ns`); returns
/// the client's and the server's addresses.
fn echo(client: &NetNs, server_ns: &NetNs, server: SocketAddr) -> (SocketAddr, SocketAddr) {
    let srv = traffic::TcpEchoServer::start(server_ns, server, 1);
    let r = traffic::tcp_echo_client(client, srv.addr, 3, 200);
    srv.join();
    (r.local, r.peer)
}

/// Asserts the final table holds the connection, seen on `ifindex` both
/// ways.
fn assert_seen(out: &MonitorOutput, conn: (SocketAddr, SocketAddr), ifindex: u32) {
    let f = out.flow("tcp", conn.0, conn.1);
    assert_eq!(f.ifindex, ifindex, "flow seen on another interface: {f:#?}\n{}", table(&out.flows()));
    assert!(f.to_server.packets >= 5 && f.to_client.packets >= 5, "{f:#?}");
    assert_eq!(f.state, "closed", "{f:#?}");
}

#[test]
fn deleted_and_recreated_interface_is_watched_again() {
    let p = Pair::new();
    let old_index = p.a.ifindex(Pair::IF_A);
    let (mon, first) = Monitor::flows(&p.a, Pair::IF_A, &[]);

    // `ip link del` of one end removes the pair; then the same pair again.
    p.a.exec(&["ip", "link", "del", Pair::IF_A]);
    Veth::pair(&p.a, Pair::IF_A, &p.b, Pair::IF_B);
    link::add_addr(&p.a, Pair::IF_A, "10.200.0.1/24");
    link::add_addr(&p.b, Pair::IF_B, "10.200.0.2/24");
    let new_index = p.a.ifindex(Pair::IF_A);
    assert_ne!(old_index, new_index, "the re-created veth-a kept its ifindex: the test proves nothing");

    let mut mon = mon;
    let again = mon.wait_attached(&p.a, Pair::IF_A);
    assert!(
        !again.tcx_egress.is_empty() || !again.tc_filters.is_empty(),
        "no egress program on the re-created veth-a: {again:?}"
    );
    let conn = echo(&p.a, &p.b, Pair::addr_b(false, 7101));
    let out = mon.stop();
    out.assert_success();
    assert_left_nothing(&p.a, Pair::IF_A, &again);
    // The first programs are the same ones (one load), released too.
    assert_left_nothing(&p.a, Pair::IF_A, &first);

    assert_seen(&out, conn, new_index);
    let gone = format!("veth-a (ifindex {old_index}) disappeared");
    assert!(out.stderr.contains(&gone), "stderr lacks `{gone}`:\n{}", out.stderr);
    let back = format!("veth-a re-created (ifindex {new_index}): attached, ingress tc, egress tc");
    assert!(out.stderr.contains(&back), "stderr lacks `{back}`:\n{}", out.stderr);
}

#[test]
fn interface_added_after_the_start_is_watched_without_iface() {
    let p = Pair::new();
    let c = NetNs::new("c");
    let mut mon = Monitor::start(&p.a, &["flows", "--format", "json", "--interval", "1"]);
    let _ = mon.wait_attached(&p.a, Pair::IF_A);

    Veth::pair(&p.a, "veth-c", &c, "veth-d");
    link::add_addr(&p.a, "veth-c", "10.201.0.1/24");
    link::add_addr(&c, "veth-d", "10.201.0.2/24");
    let index = p.a.ifindex("veth-c");
    let attached = mon.wait_attached(&p.a, "veth-c");

    let conn = echo(&p.a, &c, "10.201.0.2:7102".parse().expect("address"));
    let out = mon.stop();
    out.assert_success();
    assert_left_nothing(&p.a, "veth-c", &attached);
    assert_eq!(Attachments::of(&p.a, Pair::IF_A), Attachments::default(), "veth-a keeps attachments");

    assert_seen(&out, conn, index);
    let line = format!("veth-c appeared (ifindex {index}): attached, ingress tc, egress tc");
    assert!(out.stderr.contains(&line), "stderr lacks `{line}`:\n{}", out.stderr);
}
