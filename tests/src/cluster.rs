//! A simulated RP-PAM cluster: one namespace per host of
//! `examples/rp-pam/inventory.ini`, all joined by a bridge on one layer-2
//! segment (10.200.0.0/16), so that the example matrix and inventory apply
//! to them unchanged.

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
}

pub struct Cluster {
    /// Declared before the switch, so hosts (and what runs in them) go first.
    hosts: Vec<Host>,
    switch: NetNs,
    /// Bridge ports made by [`Cluster::replug`], for their names.
    replugs: AtomicU32,
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
            assert!(ip.octets()[..2] == [10, 200], "{name}: {ip} is outside the test range 10.200.0.0/16");
            let ns = NetNs::new(name);
            bridge.join(&ns, Self::IFACE);
            link::add_addr(&ns, Self::IFACE, &format!("{ip}/16"));
            out.push(Host { name: name.to_string(), ip, ns });
        }
        Cluster { hosts: out, switch, replugs: AtomicU32::new(0) }
    }

    /// The namespace holding the bridge.
    pub fn switch(&self) -> &NetNs {
        &self.switch
    }

    /// Deletes `name`'s interface to the bridge (`ip link del`, which takes
    /// the bridge's end with it) and plugs a new one in under the same
    /// name and address: the interface re-created, as a CNI or a network
    /// restart does it. Returns the new interface's index.
    pub fn replug(&self, name: &str) -> u32 {
        let h = self.host(name);
        h.ns.exec(&["ip", "link", "del", Self::IFACE]);
        let port = format!("br0r{}", self.replugs.fetch_add(1, Ordering::Relaxed));
        link::Veth::pair(&h.ns, Self::IFACE, &self.switch, &port);
        self.switch.exec(&["ip", "link", "set", "dev", &port, "master", Self::BRIDGE]);
        link::add_addr(&h.ns, Self::IFACE, &format!("{}/16", h.ip));
        // The others still hold the old MAC address for it.
        for other in self.hosts.iter().filter(|o| o.name != name) {
            other.ns.exec(&["ip", "neigh", "flush", "dev", Self::IFACE]);
        }
        h.ns.ifindex(Self::IFACE)
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
