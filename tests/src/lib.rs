//! Test harness: network namespaces, veth pairs, traffic and nftables, and
//! the monitor binary run inside them.
//!
//! Everything here needs root (namespaces, nftables, BPF). Traffic only
//! goes to loopback or to namespaces the test made.

pub mod agent;
pub mod attach;
pub mod capture;
pub mod cluster;
pub mod cmd;
pub mod inject;
pub mod link;
pub mod monitor;
pub mod netns;
pub mod nft;
pub mod traffic;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::{Child, ExitStatus},
    time::{Duration, Instant},
};

pub use netns::NetNs;

/// Panics unless running as root: every test here creates namespaces.
/// The target directory this test or benchmark was built into (wherever
/// CARGO_TARGET_DIR put it): the nearest ancestor of the running executable
/// that holds cargo's CACHEDIR.TAG.
pub fn target_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the path of the running executable");
    exe.ancestors()
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .unwrap_or_else(|| panic!("{} is not inside a cargo target directory", exe.display()))
        .to_path_buf()
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these end-to-end tests need root (network namespaces, nftables, BPF); run them as root"
    );
}

/// Waits for `child` up to `timeout`; `None` if it is still running.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two namespaces joined by a veth pair: `a` (where the monitor runs, on
/// [`Pair::IF_A`]) and its peer `b`, with IPv4 and IPv6 addresses.
pub struct Pair {
    pub a: NetNs,
    pub b: NetNs,
}

impl Pair {
    pub const IF_A: &'static str = "veth-a";
    pub const IF_B: &'static str = "veth-b";
    pub const A4: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    pub const B4: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
    pub const A6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 1);
    pub const B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 2);

    pub fn new() -> Pair {
        require_root();
        let a = NetNs::new("a");
        let b = NetNs::new("b");
        link::Veth::pair(&a, Self::IF_A, &b, Self::IF_B);
        link::add_addr(&a, Self::IF_A, "10.200.0.1/24");
        link::add_addr(&b, Self::IF_B, "10.200.0.2/24");
        link::add_addr(&a, Self::IF_A, "fd00:200::1/64");
        link::add_addr(&b, Self::IF_B, "fd00:200::2/64");
        Pair { a, b }
    }

    pub fn addr_a(v6: bool, port: u16) -> SocketAddr {
        if v6 {
            SocketAddr::new(Self::A6.into(), port)
        } else {
            SocketAddr::new(Self::A4.into(), port)
        }
    }

    pub fn addr_b(v6: bool, port: u16) -> SocketAddr {
        if v6 {
            SocketAddr::new(Self::B6.into(), port)
        } else {
            SocketAddr::new(Self::B4.into(), port)
        }
    }
}

impl Default for Pair {
    fn default() -> Self {
        Self::new()
    }
}

/// A client and a server in two subnets with a router between them, each in
/// its own namespace, IPv4 and IPv6: the monitor runs in `client` on
/// [`Routed::IF_CLIENT`], where errors from the router and from the server
/// both arrive.
pub struct Routed {
    pub client: NetNs,
    pub router: NetNs,
    pub server: NetNs,
}

impl Routed {
    pub const IF_CLIENT: &'static str = "veth-c";
    pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 2);
    /// The router's address on the client's subnet.
    pub const ROUTER4: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 1);
    pub const SERVER4: Ipv4Addr = Ipv4Addr::new(10, 201, 2, 2);
    pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 1, 0, 0, 0, 0, 2);
    pub const ROUTER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 1, 0, 0, 0, 0, 1);
    pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 2, 0, 0, 0, 0, 2);

    pub fn new() -> Routed {
        require_root();
        let client = NetNs::new("c");
        let router = NetNs::new("r");
        let server = NetNs::new("s");
        link::Veth::pair(&client, Self::IF_CLIENT, &router, "veth-rc");
        link::Veth::pair(&server, "veth-s", &router, "veth-rs");
        link::add_addr(&client, Self::IF_CLIENT, "10.201.1.2/24");
        link::add_addr(&client, Self::IF_CLIENT, "fd00:201:1::2/64");
        link::add_addr(&router, "veth-rc", "10.201.1.1/24");
        link::add_addr(&router, "veth-rc", "fd00:201:1::1/64");
        link::add_addr(&router, "veth-rs", "10.201.2.1/24");
        link::add_addr(&router, "veth-rs", "fd00:201:2::1/64");
        link::add_addr(&server, "veth-s", "10.201.2.2/24");
        link::add_addr(&server, "veth-s", "fd00:201:2::2/64");
        router.sysctl("net/ipv4/ip_forward", "1");
        router.sysctl("net/ipv6/conf/all/forwarding", "1");
        for (ns, v4, v6) in
            [(&client, "10.201.1.1", "fd00:201:1::1"), (&server, "10.201.2.1", "fd00:201:2::1")]
        {
            ns.exec(&["ip", "route", "add", "default", "via", v4]);
            ns.exec(&["ip", "-6", "route", "add", "default", "via", v6]);
        }
        Routed { client, router, server }
    }

    pub fn client(v6: bool) -> IpAddr {
        if v6 {
            Self::CLIENT6.into()
        } else {
            Self::CLIENT4.into()
        }
    }

    pub fn router(v6: bool) -> IpAddr {
        if v6 {
            Self::ROUTER6.into()
        } else {
            Self::ROUTER4.into()
        }
    }

    pub fn server(v6: bool, port: u16) -> SocketAddr {
        if v6 {
            SocketAddr::new(Self::SERVER6.into(), port)
        } else {
            SocketAddr::new(Self::SERVER4.into(), port)
        }
    }
}

impl Default for Routed {
    fn default() -> Self {
        Self::new()
    }
}
