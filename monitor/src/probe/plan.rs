//! What to probe: from the host's documented outbound paths (see
//! [`crate::host_paths`]), one probe per (rule, protocol, port, peer
//! address), and the paths left out with the reason.
//!
//! - Only addresses the inventory and the matrix name are probed: the
//!   addresses of inventory hosts, single-address CIDRs (`/32`, `/128`), and
//!   the addresses the matrix's `bindings:` or `--set bind:` give an FQDN.
//! - A CIDR, a zone or `any` is never swept: "not probed: a range".
//! - An FQDN without a binding is not resolved: "not probed: a name with no
//!   bound address" (a DNS answer is not an address the matrix names).
//! - This host's own addresses are left out ("not probed: this host").
//! - ICMP rules are left out ("not probed: icmp").
//! - A port range is probed at its first port only (the report says so):
//!   a range such as 49152-65535 stands for one listener, and sweeping it
//!   is what a scanner does.

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::host_paths::HostPath;
use crate::matrix::RuleProto;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeProto {
    Tcp,
    Udp,
}

impl ProbeProto {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeProto::Tcp => "tcp",
            ProbeProto::Udp => "udp",
        }
    }
}

/// One probe: a documented path to one address and port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub rule: String,
    pub provenance: String,
    pub proto: ProbeProto,
    pub addr: SocketAddr,
    /// The peer as the matrix and inventory name it (host, service, name).
    pub target: String,
    /// Set when the port stands for a range: `first of 8000-8010`.
    pub port_note: Option<String>,
}

/// A documented path (or part of one) that is not probed, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub rule: String,
    pub provenance: String,
    pub proto: String,
    pub ports: String,
    pub target: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub host: String,
    pub probes: Vec<Probe>,
    pub skipped: Vec<Skipped>,
}

pub fn ports_text(ports: &[(u16, u16)]) -> String {
    ports
        .iter()
        .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
        .collect::<Vec<_>>()
        .join(",")
}

/// The plan for `host` (whose own addresses are `own`) from its outbound paths.
pub fn plan<'a>(host: &str, own: &[IpAddr], outbound: impl IntoIterator<Item = &'a HostPath>) -> Plan {
    let mut p = Plan { host: host.to_string(), ..Plan::default() };
    for path in outbound {
        let skip = |target: &str, reason: &str| Skipped {
            rule: path.rule_id.clone(),
            provenance: path.provenance.clone(),
            proto: path.proto.as_str().to_string(),
            ports: ports_text(&path.ports),
            target: target.to_string(),
            reason: reason.to_string(),
        };
        let peer = &path.peer;
        let proto = match path.proto {
            RuleProto::Tcp => ProbeProto::Tcp,
            RuleProto::Udp => ProbeProto::Udp,
            RuleProto::Icmp => {
                p.skipped.push(skip(&peer.entity, "not probed: icmp"));
                continue;
            }
        };
        if peer.any || peer.internet {
            p.skipped.push(skip(&peer.entity, "not probed: a range"));
        }
        if peer.loopback {
            p.skipped.push(skip(&peer.entity, "not probed: loopback"));
        }
        // Every (name, address) the peer names one by one.
        let mut addrs: Vec<(String, IpAddr)> = Vec::new();
        for h in &peer.hosts {
            if h.addresses.is_empty() {
                p.skipped.push(skip(&h.name, "not probed: no address in the inventory"));
            }
            addrs.extend(h.addresses.iter().map(|a| (h.name.clone(), *a)));
        }
        for n in &peer.nets {
            if n.prefix_len() == n.max_prefix_len() {
                addrs.push((format!("{} ({n})", peer.entity), n.addr()));
            } else {
                p.skipped.push(skip(&format!("{} ({n})", peer.entity), "not probed: a range"));
            }
        }
        for n in &peer.names {
            if n.name.starts_with('*') {
                p.skipped.push(skip(&n.name, "not probed: a range"));
            } else if n.bound.is_empty() {
                p.skipped.push(skip(&n.name, "not probed: a name with no bound address"));
            }
            if !n.name.starts_with('*') {
                addrs.extend(n.bound.iter().map(|a| (n.name.clone(), *a)));
            }
        }
        for (name, a) in addrs {
            if own.contains(&a) {
                p.skipped.push(skip(&format!("{name} ({a})"), "not probed: this host"));
                continue;
            }
            for &(first, last) in &path.ports {
                let probe = Probe {
                    rule: path.rule_id.clone(),
                    provenance: path.provenance.clone(),
                    proto,
                    addr: SocketAddr::new(a, first),
                    target: name.clone(),
                    port_note: (first != last).then(|| format!("first of {first}-{last}")),
                };
                if !p.probes.contains(&probe) {
                    p.probes.push(probe);
                }
            }
        }
    }
    p
}
