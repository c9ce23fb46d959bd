//! Links between test namespaces: veth pairs, bridges, and the addresses on
//! them. (VLAN sub-interfaces need CONFIG_VLAN_8021Q, which the test kernel
//! lacks: tagged traffic is injected instead, see [`crate::inject`].)

use std::net::IpAddr;

use crate::netns::NetNs;

/// Adds `cidr` (e.g. "10.200.0.1/24" or "fd00:200::1/64") to `dev`. IPv6
/// addresses skip duplicate address detection so they work at once.
pub fn add_addr(ns: &NetNs, dev: &str, cidr: &str) {
    let ip: IpAddr = cidr
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("add_addr: {cidr:?} is not ADDRESS/PREFIX"));
    if ip.is_ipv6() {
        ns.exec(&["ip", "-6", "addr", "add", cidr, "dev", dev, "nodad"]);
    } else {
        ns.exec(&["ip", "addr", "add", cidr, "dev", dev]);
    }
}

pub fn set_up(ns: &NetNs, dev: &str) {
    ns.exec(&["ip", "link", "set", "dev", dev, "up"]);
}

/// One end of a link: the interface name and the namespace it lives in.
#[derive(Clone, Debug)]
pub struct End {
    pub ns: String,
    pub name: String,
}

/// A veth pair whose ends live in two namespaces, both up.
#[derive(Clone, Debug)]
pub struct Veth {
    pub a: End,
    pub b: End,
}

impl Veth {
    /// Creates `name_a` in `ns_a` and its peer `name_b` in `ns_b`, both up.
    /// Each end is created directly inside its namespace, so the same names
    /// can be used by tests running in parallel.
    pub fn pair(ns_a: &NetNs, name_a: &str, ns_b: &NetNs, name_b: &str) -> Veth {
        crate::cmd::run_args(
            "ip",
            &[
                "link",
                "add",
                name_a,
                "netns",
                ns_a.name(),
                "type",
                "veth",
                "peer",
                "name",
                name_b,
                "netns",
                ns_b.name(),
            ],
        );
        set_up(ns_a, name_a);
        set_up(ns_b, name_b);
        Veth {
            a: End { ns: ns_a.name().to_owned(), name: name_a.to_owned() },
            b: End { ns: ns_b.name().to_owned(), name: name_b.to_owned() },
        }
    }
}

/// A Linux bridge in its own namespace: a switch that joins several test
/// namespaces on one layer-2 segment.
pub struct Bridge<'a> {
    ns: &'a NetNs,
    name: String,
    ports: u32,
}

impl<'a> Bridge<'a> {
    /// Creates bridge `name` in `ns` (usually a namespace of its own), up.
    pub fn new(ns: &'a NetNs, name: &str) -> Bridge<'a> {
        ns.exec(&["ip", "link", "add", "name", name, "type", "bridge"]);
        set_up(ns, name);
        Bridge { ns, name: name.to_owned(), ports: 0 }
    }

    /// Connects `host` to the bridge with a veth pair: `host_if` in `host`,
    /// its peer enslaved to the bridge. Returns the pair.
    pub fn join(&mut self, host: &NetNs, host_if: &str) -> Veth {
        let port = format!("{}p{}", self.name, self.ports);
        assert!(port.len() <= 15, "bridge port name {port} is too long: use a shorter bridge name");
        self.ports += 1;
        let veth = Veth::pair(host, host_if, self.ns, &port);
        self.ns.exec(&["ip", "link", "set", "dev", &port, "master", &self.name]);
        veth
    }
}
