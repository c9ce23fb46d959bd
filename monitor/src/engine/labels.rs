//! The names an address is labelled with in the fleet metrics
//! (docs/metrics.md): its inventory host, and the group it is counted in.
//! Both come from the inventory and the matrix only, so the number of label
//! values is bounded by them whatever the traffic: an address the inventory
//! does not hold is `other`, or its matrix zone.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
};

use super::{classify, Engine, HostView};

/// The label of an address outside the inventory (and of the group of an
/// address in no zone either, which cannot happen: `internet` holds the rest).
pub const OTHER: &str = "other";

/// Inventory host and group labels by address.
#[derive(Debug, Default)]
pub(super) struct AddrLabels {
    by_addr: HashMap<IpAddr, Labels>,
    /// Every inventory host, with an address or not.
    hosts: HashSet<Arc<str>>,
}

#[derive(Clone, Debug)]
struct Labels {
    host: Arc<str>,
    group: Arc<str>,
}

impl AddrLabels {
    /// Each address is labelled with the first host by name that holds it,
    /// and that host's smallest group (the fewest hosts: a child group
    /// before its parents; the first by name among equals; never `all`),
    /// or the host's own name when it is in no group.
    pub(super) fn new(hosts: &[HostView]) -> AddrLabels {
        let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
        for h in hosts {
            for g in h.groups {
                *sizes.entry(g.as_str()).or_default() += 1;
            }
        }
        let mut by_addr: HashMap<IpAddr, Labels> = HashMap::new();
        let mut sorted: Vec<&HostView> = hosts.iter().collect();
        sorted.sort_by_key(|h| h.name);
        for h in sorted {
            let group = h
                .groups
                .iter()
                .filter(|g| g.as_str() != "all" && g.as_str() != "ungrouped")
                .min_by_key(|g| (sizes[g.as_str()], g.as_str()))
                .map_or(h.name, String::as_str);
            let labels = Labels { host: Arc::from(h.name), group: Arc::from(group) };
            for a in h.addresses {
                by_addr.entry(classify::norm(*a)).or_insert_with(|| labels.clone());
            }
        }
        AddrLabels { by_addr, hosts: hosts.iter().map(|h| Arc::from(h.name)).collect() }
    }
}

impl Engine {
    /// The inventory host `ip` belongs to, or [`OTHER`].
    pub fn host_label(&self, ip: IpAddr) -> &str {
        self.labels.by_addr.get(&classify::norm(ip)).map_or(OTHER, |l| &l.host)
    }

    /// The group `ip` is counted in: its inventory host's smallest group,
    /// else the matrix zone it falls in (`internet` outside every zone).
    pub fn group_label(&self, ip: IpAddr) -> &str {
        let ip = classify::norm(ip);
        match self.labels.by_addr.get(&ip) {
            Some(l) => &l.group,
            None => &self.entities[self.addrs.zone(ip) as usize],
        }
    }

    /// Whether `name` is a host of the inventory the engine was built with.
    pub fn has_host(&self, name: &str) -> bool {
        self.labels.hosts.contains(name)
    }
}
