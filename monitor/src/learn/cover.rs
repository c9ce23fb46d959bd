//! The matrix's own name for a set of observed addresses: the smallest
//! service or inventory group that holds every one of them; failing that,
//! the zone they share; a CIDR only when the addresses are in no service,
//! group or zone of the matrix. Addresses of several zones that no one
//! service or group holds are split by zone and each part named so, which
//! gives a rule with several sources (`from: [users, admins]`).
//!
//! "Smallest" counts addresses: a group or a host-placed service holds its
//! hosts' addresses, a CIDR or zone placement every address of its ranges.
//! Between a service and a group of the same size (the service `rppam`
//! placed on the group `rppam_nodes`), the service wins: it is already a
//! name of the matrix. The groups `all` and `ungrouped` never stand for
//! anything: `all` would document every host of the inventory.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::{
    engine::Engine,
    inventory::Inventory,
    matrix::{Matrix, MatrixError, PlacementKind, Selection, INTERNET},
};

/// What names one part of a covered set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Name {
    /// A service of the matrix.
    Service(String),
    /// A zone of the matrix (user zones and `loopback`; never `internet`).
    Zone(String),
    /// An inventory group that no service of the same size stands for: the
    /// proposal adds a service placed on it.
    Group(String),
    /// Addresses in nothing else: the proposal adds a service of these CIDRs.
    Cidrs(Vec<IpNet>),
}

/// A name and the addresses it was chosen for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub name: Name,
    pub addrs: BTreeSet<IpAddr>,
}

/// Shortest prefix a CIDR proposal may have when it stands for several
/// addresses; wider than this, each address gets its own host prefix.
pub const WIDEST_V4: u8 = 24;
pub const WIDEST_V6: u8 = 64;

/// Groups that never name anything.
const NOT_NAMES: [&str; 2] = ["all", "ungrouped"];

/// The names a matrix and an inventory offer, with their sizes.
pub struct Places<'a> {
    engine: &'a Engine,
    /// Inventory group -> its hosts' addresses (children's hosts included).
    groups: BTreeMap<String, BTreeSet<IpAddr>>,
    /// Service -> how many addresses it holds (saturating).
    service_size: BTreeMap<String, u128>,
}

impl<'a> Places<'a> {
    /// `engine` must be compiled from `matrix`, `inventory` and `selection`:
    /// it says which services and zone hold an address.
    pub fn new(
        matrix: &Matrix,
        inventory: Option<&Inventory>,
        selection: &Selection,
        engine: &'a Engine,
    ) -> Result<Places<'a>, MatrixError> {
        let active = matrix.activate(selection)?;
        let mut groups: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
        let mut hosts: BTreeMap<&str, Vec<IpAddr>> = BTreeMap::new();
        for h in inventory.map(|i| i.hosts.values()).into_iter().flatten() {
            let addrs: Vec<IpAddr> = h.addresses.iter().map(|a| a.to_canonical()).collect();
            for g in &h.groups {
                groups.entry(g.clone()).or_default().extend(&addrs);
            }
            hosts.insert(&h.name, addrs);
        }
        let mut zone_size: BTreeMap<String, u128> = BTreeMap::new();
        for (zone, net) in matrix.zone_nets(&active)? {
            let s = zone_size.entry(zone).or_default();
            *s = s.saturating_add(net_size(&net));
        }
        zone_size.insert(INTERNET.to_string(), u128::MAX);
        let mut service_size = BTreeMap::new();
        for (name, s) in &matrix.services {
            let mut size: u128 = 0;
            for p in &s.placements {
                let n = match &p.kind {
                    PlacementKind::Group(g) => groups.get(g).map_or(0, |a| a.len() as u128),
                    PlacementKind::Host(h) => hosts.get(h.as_str()).map_or(0, |a| a.len() as u128),
                    PlacementKind::Cidr(t) => t
                        .eval(&active.vars)
                        .and_then(|s| crate::matrix::parse_net(&s))
                        .map_or(0, |n| net_size(&n)),
                    PlacementKind::Zone(z) => zone_size.get(z).copied().unwrap_or(0),
                    PlacementKind::Fqdn(f) => active
                        .bindings
                        .iter()
                        .filter(|(name, _)| f.matches(name))
                        .map(|(_, a)| a.len() as u128)
                        .sum::<u128>()
                        .max(1),
                    PlacementKind::Prefixes { nets, .. } => {
                        nets.iter().fold(0u128, |s, n| s.saturating_add(net_size(n)))
                    }
                };
                size = size.saturating_add(n);
            }
            service_size.insert(name.clone(), size);
        }
        Ok(Places { engine, groups, service_size })
    }

    /// The inventory host names of `ip`, else the address itself.
    pub fn host_name(&self, ip: IpAddr) -> String {
        let hosts = self.engine.side_info(ip).hosts;
        if hosts.is_empty() {
            ip.to_string()
        } else {
            hosts.join("/")
        }
    }

    /// The names for `addrs` (see the module's doc), each with the
    /// addresses it stands for; one part unless the addresses span zones
    /// that no one service or group holds.
    pub fn cover(&self, addrs: &BTreeSet<IpAddr>) -> Vec<Part> {
        if addrs.is_empty() {
            return Vec::new();
        }
        if let Some(name) = self.smallest(addrs) {
            return vec![Part { name, addrs: addrs.clone() }];
        }
        let mut by_zone: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
        for &a in addrs {
            by_zone.entry(self.zone(a)).or_default().insert(a);
        }
        let single = by_zone.len() == 1;
        let mut parts: Vec<Part> = Vec::new();
        for (zone, part) in by_zone {
            let name = match (single, zone == INTERNET) {
                (true, false) => Name::Zone(zone),
                (true, true) => Name::Cidrs(cidrs(&part)),
                (false, _) => self.smallest(&part).unwrap_or(if zone == INTERNET {
                    Name::Cidrs(cidrs(&part))
                } else {
                    Name::Zone(zone)
                }),
            };
            match parts.iter_mut().find(|p| p.name == name) {
                Some(p) => p.addrs.extend(part),
                None => parts.push(Part { name, addrs: part }),
            }
        }
        parts
    }

    fn zone(&self, ip: IpAddr) -> String {
        self.engine.side_info(ip).zones.into_iter().next().unwrap_or_else(|| INTERNET.to_string())
    }

    /// The smallest service or group holding every address of `addrs`.
    fn smallest(&self, addrs: &BTreeSet<IpAddr>) -> Option<Name> {
        let mut common: Option<BTreeSet<String>> = None;
        for &a in addrs {
            let s: BTreeSet<String> = self.engine.side_info(a).services.into_iter().collect();
            common = Some(match common {
                None => s,
                Some(c) => c.intersection(&s).cloned().collect(),
            });
        }
        // (size, services before groups, name)
        let services = common.unwrap_or_default().into_iter().map(|s| {
            let size = self.service_size.get(&s).copied().unwrap_or(u128::MAX);
            (size, 0u8, Name::Service(s))
        });
        let groups = self
            .groups
            .iter()
            .filter(|(g, members)| !NOT_NAMES.contains(&g.as_str()) && addrs.is_subset(members))
            .map(|(g, members)| (members.len() as u128, 1u8, Name::Group(g.clone())));
        services.chain(groups).min().map(|(_, _, n)| n)
    }
}

/// How many addresses `net` holds, saturating.
fn net_size(net: &IpNet) -> u128 {
    let bits = u32::from(net.max_prefix_len() - net.prefix_len());
    1u128.checked_shl(bits).unwrap_or(u128::MAX)
}

/// The smallest prefix of each address family that holds `addrs`, or one
/// host prefix per address when that prefix would be wider than
/// [`WIDEST_V4`] / [`WIDEST_V6`].
pub fn cidrs(addrs: &BTreeSet<IpAddr>) -> Vec<IpNet> {
    let v4: Vec<u32> = addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(a) => Some(u32::from(*a)),
            IpAddr::V6(_) => None,
        })
        .collect();
    let v6: Vec<u128> = addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(a) => Some(u128::from(*a)),
            IpAddr::V4(_) => None,
        })
        .collect();
    let mut out = Vec::new();
    if let Some(&first) = v4.first() {
        let len = v4.iter().fold(0, |d, a| d | (a ^ first)).leading_zeros() as u8;
        if len >= WIDEST_V4 || v4.len() == 1 {
            let net = Ipv4Net::new(first.into(), len).expect("a prefix length of at most 32");
            out.push(IpNet::V4(net.trunc()));
        } else {
            out.extend(v4.iter().map(|a| IpNet::V4(Ipv4Net::from(std::net::Ipv4Addr::from(*a)))));
        }
    }
    if let Some(&first) = v6.first() {
        let len = v6.iter().fold(0, |d, a| d | (a ^ first)).leading_zeros() as u8;
        if len >= WIDEST_V6 || v6.len() == 1 {
            let net = Ipv6Net::new(first.into(), len).expect("a prefix length of at most 128");
            out.push(IpNet::V6(net.trunc()));
        } else {
            out.extend(v6.iter().map(|a| IpNet::V6(Ipv6Net::from(std::net::Ipv6Addr::from(*a)))));
        }
    }
    out
}
