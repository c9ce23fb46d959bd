//! Address → endpoint class. A class is one distinct set of memberships
//! (services, the zone, `any`), interned as a bitset over entities. Exact
//! host addresses are hashed; everything else falls into a sorted table of
//! disjoint address intervals, found by binary search.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use ipnet::IpNet;
use rustc_hash::FxHashMap;

/// Interned bitsets over entities, `words` u64s each, stored flat.
pub(super) struct Classes {
    pub words: usize,
    index: HashMap<Vec<u64>, u32>,
    pub bits: Vec<u64>,
}

impl Classes {
    pub fn new(entities: usize) -> Classes {
        Classes { words: entities.div_ceil(64).max(1), index: HashMap::new(), bits: Vec::new() }
    }

    pub fn empty(&self) -> Vec<u64> {
        vec![0; self.words]
    }

    pub fn intern(&mut self, b: Vec<u64>) -> u32 {
        if let Some(&c) = self.index.get(&b) {
            return c;
        }
        let c = self.index.len() as u32;
        self.bits.extend_from_slice(&b);
        self.index.insert(b, c);
        c
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    #[inline(always)]
    pub fn get(&self, c: u32) -> &[u64] {
        let s = c as usize * self.words;
        &self.bits[s..s + self.words]
    }
}

#[inline(always)]
pub(super) fn set(b: &mut [u64], e: u32) {
    b[e as usize / 64] |= 1 << (e % 64);
}

#[inline(always)]
pub(super) fn has(b: &[u64], e: u32) -> bool {
    b[e as usize / 64] >> (e % 64) & 1 != 0
}

/// What a CIDR contributes to the addresses inside it.
#[derive(Clone, Copy, Debug)]
pub(super) enum NetItem {
    /// A zone CIDR; the longest prefix decides an address's zone.
    Zone { zone: u32 },
    /// A service placed on a CIDR.
    Service(u32),
}

/// How memberships are derived beyond the CIDRs themselves.
pub(super) struct Memberships<'a> {
    pub any: u32,
    pub internet: u32,
    /// Services placed by zone, per zone entity.
    pub zone_services: &'a BTreeMap<u32, Vec<u32>>,
}

impl Memberships<'_> {
    fn bits(&self, classes: &Classes, zone: u32, services: impl Iterator<Item = u32>) -> Vec<u64> {
        let mut b = classes.empty();
        set(&mut b, self.any);
        set(&mut b, zone);
        for s in services.chain(self.zone_services.get(&zone).into_iter().flatten().copied()) {
            set(&mut b, s);
        }
        b
    }
}

pub(super) struct AddrTable {
    exact4: FxHashMap<u32, u32>,
    exact6: FxHashMap<u128, u32>,
    starts4: Vec<u32>,
    classes4: Vec<u32>,
    starts6: Vec<u128>,
    classes6: Vec<u32>,
    /// The zone entity of each interval, parallel to `classes4`/`classes6`.
    zones4: Vec<u32>,
    zones6: Vec<u32>,
}

impl AddrTable {
    pub fn build(
        nets: &[(IpNet, NetItem)],
        exact: &BTreeMap<IpAddr, Vec<u32>>,
        m: &Memberships,
        classes: &mut Classes,
    ) -> AddrTable {
        let v4: Vec<(u128, u128, u8, NetItem)> = nets
            .iter()
            .filter_map(|(n, it)| match n {
                IpNet::V4(n) => Some((
                    u32::from(n.network()) as u128,
                    u32::from(n.broadcast()) as u128,
                    n.prefix_len(),
                    *it,
                )),
                IpNet::V6(_) => None,
            })
            .collect();
        let v6: Vec<(u128, u128, u8, NetItem)> = nets
            .iter()
            .filter_map(|(n, it)| match n {
                IpNet::V6(n) => {
                    Some((u128::from(n.network()), u128::from(n.broadcast()), n.prefix_len(), *it))
                }
                IpNet::V4(_) => None,
            })
            .collect();
        let (starts4, classes4, zones4) = sweep(&v4, u32::MAX as u128, m, classes);
        let (starts6, classes6, zones6) = sweep(&v6, u128::MAX, m, classes);
        let mut t = AddrTable {
            exact4: FxHashMap::default(),
            exact6: FxHashMap::default(),
            starts4: starts4.into_iter().map(|s| s as u32).collect(),
            classes4,
            starts6,
            classes6,
            zones4,
            zones6,
        };
        for (ip, services) in exact {
            let (base, _) = t.interval(*ip);
            let mut b = classes.get(base).to_vec();
            for &s in services {
                set(&mut b, s);
            }
            let c = classes.intern(b);
            match norm(*ip) {
                IpAddr::V4(a) => t.exact4.insert(u32::from(a), c),
                IpAddr::V6(a) => t.exact6.insert(u128::from(a), c),
            };
        }
        t
    }

    /// The class and zone of the interval holding `ip`, ignoring exact hosts.
    fn interval(&self, ip: IpAddr) -> (u32, u32) {
        match norm(ip) {
            IpAddr::V4(a) => {
                let i = self.starts4.partition_point(|&s| s <= u32::from(a)) - 1;
                (self.classes4[i], self.zones4[i])
            }
            IpAddr::V6(a) => {
                let i = self.starts6.partition_point(|&s| s <= u128::from(a)) - 1;
                (self.classes6[i], self.zones6[i])
            }
        }
    }

    /// The zone entity of an address.
    pub fn zone(&self, ip: IpAddr) -> u32 {
        self.interval(ip).1
    }

    #[inline]
    pub fn classify(&self, ip: IpAddr) -> u32 {
        match ip {
            IpAddr::V4(a) => self.classify4(u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.classify4(u32::from(v4)),
                None => {
                    let k = u128::from(a);
                    if let Some(&c) = self.exact6.get(&k) {
                        return c;
                    }
                    self.classes6[self.starts6.partition_point(|&s| s <= k) - 1]
                }
            },
        }
    }

    #[inline(always)]
    fn classify4(&self, k: u32) -> u32 {
        if let Some(&c) = self.exact4.get(&k) {
            return c;
        }
        self.classes4[self.starts4.partition_point(|&s| s <= k) - 1]
    }

    pub fn exact_len(&self) -> usize {
        self.exact4.len() + self.exact6.len()
    }
}

/// IPv4-mapped IPv6 addresses count as IPv4.
pub(super) fn norm(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Cuts `[0, max]` into intervals of constant membership. Returns interval
/// starts (the first is 0), their classes and their zones.
fn sweep(
    nets: &[(u128, u128, u8, NetItem)],
    max: u128,
    m: &Memberships,
    classes: &mut Classes,
) -> (Vec<u128>, Vec<u32>, Vec<u32>) {
    let mut bounds: Vec<u128> = vec![0];
    for &(a, b, _, _) in nets {
        bounds.push(a);
        if b < max {
            bounds.push(b + 1);
        }
    }
    bounds.sort_unstable();
    bounds.dedup();
    let mut order: Vec<usize> = (0..nets.len()).collect();
    order.sort_by_key(|&i| nets[i].0);
    let mut next = 0;
    let mut active: Vec<usize> = Vec::new();
    let (mut starts, mut cls, mut zones) = (Vec::new(), Vec::new(), Vec::new());
    for &x in &bounds {
        while next < order.len() && nets[order[next]].0 <= x {
            active.push(order[next]);
            next += 1;
        }
        active.retain(|&i| nets[i].1 >= x);
        let mut zone = (m.internet, 0u8, false);
        let mut services = Vec::new();
        for &i in &active {
            match nets[i].3 {
                NetItem::Zone { zone: z } => {
                    let len = nets[i].2;
                    if !zone.2 || len > zone.1 {
                        zone = (z, len, true);
                    }
                }
                NetItem::Service(s) => services.push(s),
            }
        }
        let c = classes.intern(m.bits(classes, zone.0, services.into_iter()));
        if cls.last() == Some(&c) {
            continue;
        }
        starts.push(x);
        cls.push(c);
        zones.push(zone.0);
    }
    (starts, cls, zones)
}
