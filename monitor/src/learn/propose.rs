//! Observed undocumented flows -> proposed rules.
//!
//! Flows are taken per (protocol, server port). Their servers are named
//! ([`Places::cover`]); for each server name, the clients that reached it
//! are named. Proposals with the same sources, target and protocol then
//! share one rule, their ports folded into ranges; TCP and UDP proposals
//! alike in all else become one `proto: both` rule. Names the matrix lacks
//! (an inventory group no service stands for, a CIDR) become new services.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, SystemTime},
};

use ipnet::IpNet;

use super::{
    cover::{Name, Places},
    ports, Observed,
};
use crate::{
    flow::Proto,
    matrix::{Matrix, ProtoSpec, ANY, INTERNET, LOOPBACK},
};

/// What to learn from.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Only flows last seen within this long before `end`; all when `None`.
    pub window: Option<Duration>,
    /// The end of the window: the last packet of the captures, or now for
    /// a live source; the latest `last_seen` when `None`.
    pub end: Option<SystemTime>,
}

/// The evidence of one proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    pub flows: u64,
    pub clients: BTreeSet<IpAddr>,
    pub servers: BTreeSet<IpAddr>,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
}

impl Evidence {
    fn of(o: &Observed) -> Evidence {
        Evidence {
            flows: o.flows,
            clients: [o.client].into(),
            servers: [o.server].into(),
            first_seen: o.first_seen,
            last_seen: o.last_seen,
        }
    }

    fn add(&mut self, e: &Evidence) {
        self.flows += e.flows;
        self.clients.extend(&e.clients);
        self.servers.extend(&e.servers);
        self.first_seen = self.first_seen.min(e.first_seen);
        self.last_seen = self.last_seen.max(e.last_seen);
    }
}

/// One proposed rule, in the matrix's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub id: String,
    /// Services or zones (new services included), sorted.
    pub from: Vec<String>,
    pub to: String,
    /// `[first, last]` ranges of server ports; empty for ICMP.
    pub ports: Vec<(u16, u16)>,
    pub proto: ProtoSpec,
    pub evidence: Evidence,
}

/// Where a new service runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewPlacement {
    Group(String),
    Cidrs(Vec<IpNet>),
}

/// A service the proposals need that the matrix does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewService {
    pub name: String,
    pub placement: NewPlacement,
}

/// Everything proposed from one set of observations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learnt {
    pub rules: Vec<Proposal>,
    pub services: Vec<NewService>,
    /// The window's length (`None`: every flow given) and its bounds.
    pub window: Option<Duration>,
    pub start: Option<SystemTime>,
    pub end: Option<SystemTime>,
    /// Flows the proposals stand for, and flows left out as older than the window.
    pub flows: u64,
    pub outside_window: u64,
}

/// A proposal before its names are final: sources, target, protocol.
type Key = (Vec<Name>, Name, ProtoSpec);

/// Proposes rules for `observed` (see the module's doc); names and ids
/// never clash with those of `matrix`.
pub fn propose(observed: &[Observed], places: &Places, matrix: &Matrix, options: Options) -> Learnt {
    let end = options.end.or_else(|| observed.iter().map(|o| o.last_seen).max());
    let start = match (options.window, end) {
        (Some(w), Some(e)) => Some(e.checked_sub(w).unwrap_or(SystemTime::UNIX_EPOCH)),
        _ => None,
    };
    let mut outside_window = 0;
    let mut by_port: BTreeMap<(ProtoSpec, u16), Vec<&Observed>> = BTreeMap::new();
    for o in observed {
        if start.is_some_and(|s| o.last_seen < s) {
            outside_window += o.flows;
            continue;
        }
        let proto = match o.proto {
            Proto::Tcp => ProtoSpec::Tcp,
            Proto::Udp => ProtoSpec::Udp,
            Proto::Icmp | Proto::Icmpv6 => ProtoSpec::Icmp,
        };
        by_port.entry((proto, o.port)).or_default().push(o);
    }

    // (sources, target, proto) -> ports and evidence.
    let mut rules: BTreeMap<Key, (BTreeSet<u16>, Evidence)> = BTreeMap::new();
    let mut flows = 0;
    for ((proto, port), obs) in &by_port {
        let servers: BTreeSet<IpAddr> = obs.iter().map(|o| o.server).collect();
        for target in places.cover(&servers) {
            let mine: Vec<&&Observed> = obs.iter().filter(|o| target.addrs.contains(&o.server)).collect();
            let clients: BTreeSet<IpAddr> = mine.iter().map(|o| o.client).collect();
            let mut sources: Vec<Name> = places.cover(&clients).into_iter().map(|p| p.name).collect();
            sources.sort();
            let mut evidence: Option<Evidence> = None;
            for o in &mine {
                flows += o.flows;
                match &mut evidence {
                    Some(e) => e.add(&Evidence::of(o)),
                    None => evidence = Some(Evidence::of(o)),
                }
            }
            let Some(evidence) = evidence else { continue };
            let entry = match rules.entry((sources, target.name, *proto)) {
                std::collections::btree_map::Entry::Vacant(v) => v.insert((BTreeSet::new(), evidence)),
                std::collections::btree_map::Entry::Occupied(o) => {
                    let entry = o.into_mut();
                    entry.1.add(&evidence);
                    entry
                }
            };
            if *proto != ProtoSpec::Icmp {
                entry.0.insert(*port);
            }
        }
    }
    let rules = both(rules);

    let mut names = Names::new(matrix);
    let mut services = Vec::new();
    let mut out = Vec::new();
    for ((sources, target, proto), (ports, evidence)) in rules {
        let mut name = |n: &Name| names.name(n, &mut services);
        let mut from: Vec<String> = sources.iter().map(&mut name).collect();
        from.sort();
        from.dedup();
        let to = name(&target);
        let ranges = ports::fold(&ports);
        let id = names.id(&to, &ranges, proto);
        out.push(Proposal { id, from, to, ports: ranges, proto, evidence });
    }
    out.sort_by(|a, b| (&a.to, &a.ports, &a.from).cmp(&(&b.to, &b.ports, &b.from)));
    Learnt { rules: out, services, window: options.window, start, end, flows, outside_window }
}

/// TCP and UDP proposals with the same sources, target and ports as one
/// `both` rule.
fn both(rules: BTreeMap<Key, (BTreeSet<u16>, Evidence)>) -> BTreeMap<Key, (BTreeSet<u16>, Evidence)> {
    let mut out = rules.clone();
    for ((sources, target, proto), (ports, _)) in &rules {
        let udp = (sources.clone(), target.clone(), ProtoSpec::Udp);
        if *proto != ProtoSpec::Tcp || rules.get(&udp).is_none_or(|(p, _)| p != ports) {
            continue;
        }
        let (_, u) = out.remove(&udp).expect("the UDP proposal is there");
        let (p, mut e) = out
            .remove(&(sources.clone(), target.clone(), ProtoSpec::Tcp))
            .expect("the TCP proposal is there");
        e.add(&u);
        out.insert((sources.clone(), target.clone(), ProtoSpec::Both), (p, e));
    }
    out
}

/// The names and ids in use, and the new services given out so far.
struct Names {
    taken: BTreeSet<String>,
    ids: BTreeSet<String>,
    given: BTreeMap<Name, String>,
}

impl Names {
    fn new(m: &Matrix) -> Names {
        let mut taken: BTreeSet<String> = m.services.keys().chain(m.zones.keys()).cloned().collect();
        taken.extend([LOOPBACK, INTERNET, ANY].map(String::from));
        let ids =
            m.rules.iter().map(|r| r.id.clone()).chain(m.exposures.iter().map(|x| x.id.clone())).collect();
        Names { taken, ids, given: BTreeMap::new() }
    }

    /// The matrix name for `n`, adding a service for a group or CIDRs.
    fn name(&mut self, n: &Name, services: &mut Vec<NewService>) -> String {
        match n {
            Name::Service(s) | Name::Zone(s) => s.clone(),
            Name::Group(_) | Name::Cidrs(_) => {
                if let Some(s) = self.given.get(n) {
                    return s.clone();
                }
                let (base, placement) = match n {
                    Name::Group(g) => (clean(g), NewPlacement::Group(g.clone())),
                    Name::Cidrs(nets) => (cidr_name(nets), NewPlacement::Cidrs(nets.clone())),
                    _ => unreachable!("handled above"),
                };
                let name = unique(&base, "-hosts", &self.taken);
                self.taken.insert(name.clone());
                self.given.insert(n.clone(), name.clone());
                services.push(NewService { name: name.clone(), placement });
                name
            }
        }
    }

    /// `learnt-<target>-<ports>`, plus `-udp`/`-both`/`-icmp`, unique.
    fn id(&mut self, to: &str, ports: &[(u16, u16)], proto: ProtoSpec) -> String {
        let mut base = format!("learnt-{to}");
        if !ports.is_empty() {
            base = format!("{base}-{}", ports::id_part(ports));
        }
        match proto {
            ProtoSpec::Tcp => {}
            ProtoSpec::Udp => base.push_str("-udp"),
            ProtoSpec::Both => base.push_str("-both"),
            ProtoSpec::Icmp => base.push_str("-icmp"),
        }
        let id = unique(&base, "", &self.ids);
        self.ids.insert(id.clone());
        id
    }
}

/// `base` if free, else `base<suffix>`, then `base<suffix>-2`, ...
fn unique(base: &str, suffix: &str, taken: &BTreeSet<String>) -> String {
    if !taken.contains(base) {
        return base.to_string();
    }
    let first = format!("{base}{suffix}");
    let mut candidate = first.clone();
    let mut k = 2;
    while taken.contains(&candidate) {
        candidate = format!("{first}-{k}");
        k += 1;
    }
    candidate
}

/// A name the matrix accepts (letters, digits, `-`, `_`, `.`).
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

/// `net-10.200.5.0-24`, `net-203.0.113.7` for a host, `-and-N-more` for several.
fn cidr_name(nets: &[IpNet]) -> String {
    let one = |n: &IpNet| {
        let addr = clean(&n.network().to_string().replace(':', "_"));
        if n.prefix_len() == n.max_prefix_len() {
            format!("net-{addr}")
        } else {
            format!("net-{addr}-{}", n.prefix_len())
        }
    };
    match nets {
        [] => "net".into(),
        [n] => one(n),
        [n, rest @ ..] => format!("{}-and-{}-more", one(n), rest.len()),
    }
}
