//! Simulated clusters: one namespace per host.
//!
//! - [`Cluster::new`]: the hosts of `examples/rp-pam/inventory.ini`, all
//!   joined by a bridge on one layer-2 segment (10.200.0.0/16), so that the
//!   example matrix and inventory apply to them unchanged.
//! - [`Cluster::routed`]: several subnets, one bridge each, joined by a
//!   router: the namespace that holds the bridges gives each one the
//!   subnet's gateway address and forwards between them (`ip_forward`), and
//!   every host's default route points at its gateway. Traffic between
//!   subnets crosses the router's `forward` hook, where nftables rules make
//!   the network drop or reject a path.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::atomic::{AtomicU32, Ordering},
};

use crate::{
    link::{self, Bridge},
    netns::NetNs,
    require_root,
};

/// The hosts of `examples/rp-pam/inventory.ini` that tests can start, with
/// their addresses.
pub const HOSTS: [(&str, Ipv4Addr); 7] = [
    ("rppam1", Ipv4Addr::new(10, 200, 1, 11)),
    ("rppam2", Ipv4Addr::new(10, 200, 1, 12)),
    ("rppam3", Ipv4Addr::new(10, 200, 1, 13)),
    ("db1", Ipv4Addr::new(10, 200, 1, 20)),
    ("redis1", Ipv4Addr::new(10, 200, 1, 21)),
    ("ws01", Ipv4Addr::new(10, 200, 2, 50)),
    ("admin01", Ipv4Addr::new(10, 200, 2, 60)),
];

/// One simulated host: its namespace and address on [`Cluster::IFACE`].
pub struct Host {
    pub name: String,
    pub ip: Ipv4Addr,
    pub ns: NetNs,
    /// The bridge it is plugged into, the prefix length of its address and,
    /// in a routed cluster, its gateway.
    bridge: String,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
}

/// One subnet of a routed cluster ([`Cluster::routed`]): a bridge in the
/// router namespace, which holds the gateway address, and its hosts.
#[derive(Clone, Copy, Debug)]
pub struct Subnet<'a> {
    /// The bridge's name in the router namespace (at most 12 characters:
    /// its ports are named `<bridge>p<n>`).
    pub bridge: &'a str,
    /// The router's address on this subnet, every host's default gateway.
    pub gateway: Ipv4Addr,
    pub prefix: u8,
    pub hosts: &'a [(&'a str, Ipv4Addr)],
}

pub struct Cluster {
    /// Declared before the switch, so hosts (and what runs in them) go first.
    hosts: Vec<Host>,
    /// The namespace holding the bridge(s); in a routed cluster, the router.
    switch: NetNs,
    /// Bridge ports made by [`Cluster::replug`], for their names.
    replugs: AtomicU32,
}

fn assert_test_range(name: &str, ip: Ipv4Addr) {
    assert!(ip.octets()[..2] == [10, 200], "{name}: {ip} is outside the test range 10.200.0.0/16");
}

impl Cluster {
    /// Every host's interface to the bridge.
    pub const IFACE: &'static str = "eth0";

    /// The bridge in the switch namespace; a capture on it sees every frame.
    pub const BRIDGE: &'static str = "br0";

    /// Builds the named hosts of [`HOSTS`] (a test builds only those it uses).
    pub fn new(names: &[&str]) -> Cluster {
        let hosts: Vec<(&str, Ipv4Addr)> = names
            .iter()
            .map(|name| {
                *HOSTS.iter().find(|(n, _)| n == name).unwrap_or_else(|| {
                    panic!("no host {name} in the RP-PAM inventory: pick one of {HOSTS:?}")
                })
            })
            .collect();
        Self::of(&hosts)
    }

    /// Builds one namespace per (name, address), e.g. the hosts of another
    /// inventory; addresses must be in 10.200.0.0/16.
    pub fn of(hosts: &[(&str, Ipv4Addr)]) -> Cluster {
        require_root();
        let switch = NetNs::new("sw");
        let mut bridge = Bridge::new(&switch, Self::BRIDGE);
        let mut out = Vec::with_capacity(hosts.len());
        for &(name, ip) in hosts {
            assert_test_range(name, ip);
            let ns = NetNs::new(name);
            bridge.join(&ns, Self::IFACE);
            link::add_addr(&ns, Self::IFACE, &format!("{ip}/16"));
            out.push(Host {
                name: name.to_string(),
                ip,
                ns,
                bridge: Self::BRIDGE.to_string(),
                prefix: 16,
                gateway: None,
            });
        }
        Cluster { hosts: out, switch, replugs: AtomicU32::new(0) }
    }

    /// Builds a routed cluster: one bridge per subnet in a router namespace
    /// that holds every gateway address and forwards between the subnets;
    /// each host on its subnet's bridge with a default route through its
    /// gateway. Addresses must be in 10.200.0.0/16 and inside their subnet.
    pub fn routed(subnets: &[Subnet]) -> Cluster {
        require_root();
        let router = NetNs::new("rt");
        router.sysctl("net/ipv4/ip_forward", "1");
        let mut out = Vec::new();
        for net in subnets {
            assert_test_range(net.bridge, net.gateway);
            let mut bridge = Bridge::new(&router, net.bridge);
            link::add_addr(&router, net.bridge, &format!("{}/{}", net.gateway, net.prefix));
            for &(name, ip) in net.hosts {
                assert_test_range(name, ip);
                assert!(
                    same_subnet(ip, net.gateway, net.prefix),
                    "{name}: {ip} is not in subnet {}/{} of bridge {}",
                    net.gateway,
                    net.prefix,
                    net.bridge
                );
                let ns = NetNs::new(name);
                bridge.join(&ns, Self::IFACE);
                let host = Host {
                    name: name.to_string(),
                    ip,
                    ns,
                    bridge: net.bridge.to_string(),
                    prefix: net.prefix,
                    gateway: Some(net.gateway),
                };
                host.configure();
                out.push(host);
            }
        }
        Cluster { hosts: out, switch: router, replugs: AtomicU32::new(0) }
    }

    /// The namespace holding the bridge; in a routed cluster, the router.
    pub fn switch(&self) -> &NetNs {
        &self.switch
    }

    /// The router of a routed cluster (the namespace holding the bridges).
    pub fn router(&self) -> &NetNs {
        assert!(
            self.hosts.iter().any(|h| h.gateway.is_some()),
            "this cluster is one bridged segment: build it with Cluster::routed to have a router"
        );
        &self.switch
    }

    /// Deletes `name`'s interface to the bridge (`ip link del`, which takes
    /// the bridge's end with it) and plugs a new one in under the same
    /// name and address: the interface re-created, as a CNI or a network
    /// restart does it. Returns the new interface's index.
    pub fn replug(&self, name: &str) -> u32 {
        let h = self.host(name);
        h.ns.exec(&["ip", "link", "del", Self::IFACE]);
        let port = format!("{}r{}", h.bridge, self.replugs.fetch_add(1, Ordering::Relaxed));
        link::Veth::pair(&h.ns, Self::IFACE, &self.switch, &port);
        self.switch.exec(&["ip", "link", "set", "dev", &port, "master", &h.bridge]);
        h.configure();
        // The others still hold the old MAC address for it.
        for other in self.hosts.iter().filter(|o| o.name != name) {
            other.ns.exec(&["ip", "neigh", "flush", "dev", Self::IFACE]);
        }
        h.ns.ifindex(Self::IFACE)
    }

    /// Every host, in the order they were given.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("host {name} is not part of this cluster"))
    }

    pub fn ns(&self, name: &str) -> &NetNs {
        &self.host(name).ns
    }

    pub fn ip(&self, name: &str) -> IpAddr {
        self.host(name).ip.into()
    }

    pub fn addr(&self, name: &str, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip(name), port)
    }
}

impl Host {
    /// Its address on [`Cluster::IFACE`] and, in a routed cluster, the
    /// default route through its gateway.
    fn configure(&self) {
        link::add_addr(&self.ns, Cluster::IFACE, &format!("{}/{}", self.ip, self.prefix));
        if let Some(gw) = self.gateway {
            self.ns.exec(&["ip", "route", "add", "default", "via", &gw.to_string(), "dev", Cluster::IFACE]);
        }
    }

    /// Its gateway in a routed cluster (the router's address on its subnet).
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        self.gateway
    }
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(a) & mask == u32::from(b) & mask
}
