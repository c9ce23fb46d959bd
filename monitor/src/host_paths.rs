//! The documented paths to and from one inventory host: every active
//! expanded rule whose target (inbound) or source (outbound) covers the
//! host, with the other end resolved to what a firewall or a probe needs
//! (inventory hosts and their addresses, CIDRs, DNS names, `any`,
//! loopback).
//!
//! Coverage follows the engine's rules (`engine::Engine::build`): a host is
//! in a service when one of the service's placements names its group or its
//! name, or holds one of its addresses (CIDR, prefixes, bound DNS name, or a
//! zone placement matching its zone); a host is in a zone when the most
//! specific zone CIDR holding one of its addresses is that zone (`internet`
//! when none does); every host is in `any`; every host has a `loopback`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use ipnet::IpNet;
use serde::Serialize;

use crate::{
    inventory::{Host, Inventory},
    matrix::{
        parse_net, Active, FqdnPattern, Matrix, MatrixError, PlacementKind, RuleProto, Selection, ANY,
        INTERNET, LOOPBACK,
    },
};

/// Which way a path runs, seen from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The host is the server: the rule's target covers it.
    Inbound,
    /// The host is the client: the rule's source covers it.
    Outbound,
}

/// An inventory host at the other end of a path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PeerHost {
    pub name: String,
    /// Empty when the inventory gives the host no IP address.
    pub addresses: Vec<IpAddr>,
}

/// A DNS name (or `*.suffix`) at the other end, with the addresses the
/// matrix's `bindings:` and `--set bind:` give it (nothing is resolved here).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PeerName {
    /// As the matrix writes it, lower case; `*.suffix` for a wildcard.
    pub name: String,
    pub bound: Vec<IpAddr>,
}

/// The other end of a path: the union of everything its entity stands for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Peer {
    /// The matrix entity (service, zone, `any`) as the rule names it.
    pub entity: String,
    /// Inventory hosts in the entity (for a zone: hosts whose zone it is).
    pub hosts: Vec<PeerHost>,
    /// Address ranges: zone CIDRs, `cidr:` and `prefixes:` placements.
    /// For a zone these are its own CIDRs; more specific zones inside them
    /// are not cut out.
    pub nets: Vec<IpNet>,
    /// DNS names, unresolved.
    pub names: Vec<PeerName>,
    /// `any` or `internet`: every address (a firewall cannot tell the
    /// internet from the zones without listing them all).
    pub any: bool,
    /// Only for the `internet` zone: every address outside the zones.
    pub internet: bool,
    /// The `loopback` zone (127.0.0.0/8, ::1).
    pub loopback: bool,
}

impl Peer {
    /// Every address and range the peer names, hosts first (as host
    /// prefixes), then CIDRs and bound names; loopback and `any` excluded.
    pub fn nets_all(&self) -> Vec<IpNet> {
        let mut out: BTreeSet<IpNet> = BTreeSet::new();
        for h in &self.hosts {
            out.extend(h.addresses.iter().map(|a| IpNet::from(*a)));
        }
        out.extend(self.nets.iter().copied());
        for n in &self.names {
            out.extend(n.bound.iter().map(|a| IpNet::from(*a)));
        }
        out.into_iter().collect()
    }
}

/// One documented path to or from the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostPath {
    pub direction: Direction,
    /// The expanded rule id (as coverage and alerts name it).
    pub rule_id: String,
    /// The rule's id as written, before expansion.
    pub matrix_rule: String,
    /// `file:line` of the rule.
    pub provenance: String,
    pub proto: RuleProto,
    /// Sorted, merged `[first, last]` server ports; empty for icmp.
    pub ports: Vec<(u16, u16)>,
    pub purpose: String,
    /// The entity that covers this host (the rule's target when inbound,
    /// its source when outbound).
    pub local_entity: String,
    /// Whether this end is the host's loopback (`loopback` zone): such a
    /// path never leaves the host.
    pub local_loopback: bool,
    pub peer: Peer,
}

/// The documented paths of one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostPaths {
    pub host: String,
    /// The host's addresses from the inventory.
    pub addresses: Vec<IpAddr>,
    /// The zones of the host's addresses (most specific CIDR; `internet` if none).
    pub zones: Vec<String>,
    /// Inbound paths first, then outbound, each in matrix order.
    pub paths: Vec<HostPath>,
}

#[derive(Debug, thiserror::Error)]
pub enum HostPathsError {
    #[error(transparent)]
    Matrix(#[from] MatrixError),
    #[error("{inventory}: no host `{host}` in the inventory{}; give --host one of the inventory's host names", close_text(.close))]
    UnknownHost { inventory: String, host: String, close: Vec<String> },
    #[error("{provenance}: {message}")]
    Placement { provenance: String, message: String },
}

fn close_text(close: &[String]) -> String {
    if close.is_empty() {
        String::new()
    } else {
        format!(" (close names: {})", close.join(", "))
    }
}

impl HostPaths {
    /// The paths of `host` under `sel`. `inventory_file` names the
    /// inventory in errors.
    pub fn compute(
        matrix: &Matrix,
        inventory: &Inventory,
        inventory_file: &str,
        sel: &Selection,
        host: &str,
    ) -> Result<HostPaths, HostPathsError> {
        let Some(h) = inventory.hosts.get(host) else {
            return Err(HostPathsError::UnknownHost {
                inventory: inventory_file.to_string(),
                host: host.to_string(),
                close: close_names(host, inventory.hosts.keys().map(String::as_str)),
            });
        };
        let active = matrix.activate(sel)?;
        let ctx = Ctx::new(matrix, inventory, &active)?;
        let zones: Vec<String> = {
            let mut z: BTreeSet<String> = BTreeSet::new();
            for a in &h.addresses {
                z.extend(ctx.zones_of(*a));
            }
            if z.is_empty() {
                z.insert(INTERNET.to_string());
            }
            z.into_iter().collect()
        };
        let rules = matrix.expand_rules(&active, true)?;
        let mut inbound = Vec::new();
        let mut outbound = Vec::new();
        for r in &rules {
            for (dir, local, other, out) in [
                (Direction::Inbound, &r.target, &r.source, &mut inbound),
                (Direction::Outbound, &r.source, &r.target, &mut outbound),
            ] {
                let local_loopback = local == LOOPBACK;
                if !local_loopback && !ctx.covers(local, h, &zones)? {
                    continue;
                }
                out.push(HostPath {
                    direction: dir,
                    rule_id: r.id.clone(),
                    matrix_rule: r.rule_id.clone(),
                    provenance: r.provenance.clone(),
                    proto: r.proto,
                    ports: r.ports.clone(),
                    purpose: r.purpose.clone(),
                    local_entity: local.clone(),
                    local_loopback,
                    peer: ctx.peer(other)?,
                });
            }
        }
        inbound.extend(outbound);
        Ok(HostPaths { host: h.name.clone(), addresses: h.addresses.clone(), zones, paths: inbound })
    }

    /// The paths that run one way.
    pub fn by_direction(&self, dir: Direction) -> impl Iterator<Item = &HostPath> {
        self.paths.iter().filter(move |p| p.direction == dir)
    }
}

struct Ctx<'a> {
    matrix: &'a Matrix,
    inventory: &'a Inventory,
    active: &'a Active,
    zone_nets: Vec<(String, IpNet)>,
}

impl<'a> Ctx<'a> {
    fn new(matrix: &'a Matrix, inventory: &'a Inventory, active: &'a Active) -> Result<Self, MatrixError> {
        let zone_nets = matrix.zone_nets(active)?;
        Ok(Ctx { matrix, inventory, active, zone_nets })
    }

    /// The most specific zones holding `a` (none: `internet`, left to the caller).
    fn zones_of(&self, a: IpAddr) -> Vec<String> {
        let best = self.zone_nets.iter().filter(|(_, n)| n.contains(&a)).map(|(_, n)| n.prefix_len()).max();
        match best {
            Some(len) => self
                .zone_nets
                .iter()
                .filter(|(_, n)| n.contains(&a) && n.prefix_len() == len)
                .map(|(z, _)| z.clone())
                .collect(),
            None => Vec::new(),
        }
    }

    fn host_zones(&self, h: &Host) -> BTreeSet<String> {
        let mut z: BTreeSet<String> = h.addresses.iter().flat_map(|a| self.zones_of(*a)).collect();
        if z.is_empty() {
            z.insert(INTERNET.to_string());
        }
        z
    }

    fn eval_net(
        &self,
        t: &crate::matrix::Template,
        pos: &crate::matrix::Pos,
    ) -> Result<IpNet, HostPathsError> {
        t.eval(&self.active.vars)
            .and_then(|s| parse_net(&s))
            .map_err(|message| HostPathsError::Placement { provenance: pos.to_string(), message })
    }

    fn bound(&self, f: &FqdnPattern) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = self
            .active
            .bindings
            .iter()
            .filter(|(name, _)| f.matches(name))
            .flat_map(|(_, a)| a.iter().copied())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether entity `e` covers host `h` (whose zones are `zones`).
    fn covers(&self, e: &str, h: &Host, zones: &[String]) -> Result<bool, HostPathsError> {
        if e == ANY {
            return Ok(true);
        }
        if self.matrix.zones.contains_key(e) {
            return Ok(zones.iter().any(|z| z == e));
        }
        let Some(s) = self.matrix.services.get(e) else { return Ok(false) };
        for p in &s.placements {
            let hit = match &p.kind {
                PlacementKind::Group(g) => h.groups.contains(g),
                PlacementKind::Host(n) => *n == h.name,
                PlacementKind::Cidr(t) => {
                    let net = self.eval_net(t, &p.pos)?;
                    h.addresses.iter().any(|a| net.contains(a))
                }
                PlacementKind::Prefixes { nets, .. } => {
                    h.addresses.iter().any(|a| nets.iter().any(|n| n.contains(a)))
                }
                PlacementKind::Zone(z) => zones.iter().any(|hz| hz == z),
                PlacementKind::Fqdn(f) => self.bound(f).iter().any(|a| h.addresses.contains(a)),
            };
            if hit {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn peer(&self, e: &str) -> Result<Peer, HostPathsError> {
        let mut p = Peer { entity: e.to_string(), ..Peer::default() };
        let mut hosts: BTreeMap<&str, &Host> = BTreeMap::new();
        let mut nets: BTreeSet<IpNet> = BTreeSet::new();
        let mut names: BTreeMap<FqdnPattern, Vec<IpAddr>> = BTreeMap::new();
        if e == ANY {
            p.any = true;
        } else if e == LOOPBACK {
            p.loopback = true;
        } else if e == INTERNET {
            p.any = true;
            p.internet = true;
        } else if let Some(z) = self.matrix.zones.get(e) {
            for (t, pos) in &z.cidrs {
                nets.insert(self.eval_net(t, pos)?);
            }
            for h in self.inventory.hosts.values() {
                if self.host_zones(h).contains(e) {
                    hosts.insert(&h.name, h);
                }
            }
        } else if let Some(s) = self.matrix.services.get(e) {
            for pl in &s.placements {
                match &pl.kind {
                    PlacementKind::Group(g) => {
                        for h in self.inventory.hosts.values().filter(|h| h.groups.contains(g)) {
                            hosts.insert(&h.name, h);
                        }
                    }
                    PlacementKind::Host(n) => {
                        if let Some(h) = self.inventory.hosts.get(n) {
                            hosts.insert(&h.name, h);
                        }
                    }
                    PlacementKind::Cidr(t) => {
                        nets.insert(self.eval_net(t, &pl.pos)?);
                    }
                    PlacementKind::Prefixes { nets: list, .. } => nets.extend(list.iter().copied()),
                    PlacementKind::Zone(z) => {
                        let zp = self.peer(z)?;
                        nets.extend(zp.nets);
                        p.any |= zp.any;
                        p.internet |= zp.internet;
                        p.loopback |= zp.loopback;
                        for h in self.inventory.hosts.values() {
                            if self.host_zones(h).contains(z.as_str()) {
                                hosts.insert(&h.name, h);
                            }
                        }
                    }
                    PlacementKind::Fqdn(f) => {
                        names.insert(f.clone(), self.bound(f));
                    }
                }
            }
        }
        p.hosts = hosts
            .values()
            .map(|h| PeerHost { name: h.name.clone(), addresses: h.addresses.clone() })
            .collect();
        p.nets = nets.into_iter().collect();
        p.names = names.into_iter().map(|(name, bound)| PeerName { name: name.to_string(), bound }).collect();
        Ok(p)
    }
}

/// Names within a small edit distance of `want` (or sharing its prefix), best first.
pub fn close_names<'a>(want: &str, names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = names
        .map(|n| (edit_distance(want, n), n))
        .filter(|(d, n)| *d <= 2.max(want.len() / 3) || n.starts_with(want) || want.starts_with(*n))
        .collect();
    scored.sort();
    scored.into_iter().take(5).map(|(_, n)| n.to_string()).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn load(profiles: &[&str]) -> (Matrix, Inventory, Selection) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam");
        let (m, _) = Matrix::load(&root.join("matrix.yaml")).unwrap();
        let (inv, _) = Inventory::load(&root.join("inventory.ini")).unwrap();
        let sel =
            Selection { profiles: profiles.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        (m, inv, sel)
    }

    fn ids(hp: &HostPaths, dir: Direction) -> Vec<&str> {
        hp.by_direction(dir).map(|p| p.rule_id.as_str()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ha_node_paths() {
        let (m, inv, sel) = load(&["ha"]);
        let hp = HostPaths::compute(&m, &inv, "inventory.ini", &sel, "rppam1").unwrap();
        assert_eq!(hp.addresses, vec![ip("10.200.1.11")]);
        assert_eq!(hp.zones, vec!["cluster".to_string()]);
        assert_eq!(
            ids(&hp, Direction::Inbound),
            [
                "web-portal/users",
                "web-portal/admins",
                "lb-to-nodes",
                "grpc-local",
                "grpc-inter-node",
                "heartbeat"
            ]
        );
        assert_eq!(
            ids(&hp, Direction::Outbound),
            [
                "lvs-checkin",
                "grpc-local",
                "grpc-inter-node",
                "db-postgres",
                "rdp-proxy",
                "ssh-proxy",
                "redis",
                "heartbeat"
            ]
        );
        let web = &hp.paths[0];
        assert_eq!(web.provenance, format!("{}:110", m.file));
        assert_eq!(web.proto, RuleProto::Tcp);
        assert_eq!(web.ports, vec![(7101, 7101)]);
        assert_eq!(web.peer.nets, vec!["10.200.2.0/24".parse::<IpNet>().unwrap()]);
        // admin01 (10.200.2.60) is in the more specific `admins` zone, not `users`.
        assert_eq!(web.peer.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["ws01"]);
        let grpc = hp.paths.iter().find(|p| p.rule_id == "grpc-inter-node").unwrap();
        assert_eq!(grpc.ports, vec![(7001, 7012)]);
        assert_eq!(
            grpc.peer.hosts,
            ["rppam1", "rppam2", "rppam3"]
                .iter()
                .zip(["10.200.1.11", "10.200.1.12", "10.200.1.13"])
                .map(|(n, a)| PeerHost { name: n.to_string(), addresses: vec![ip(a)] })
                .collect::<Vec<_>>()
        );
        let local = hp.paths.iter().find(|p| p.rule_id == "grpc-local").unwrap();
        assert!(local.local_loopback && local.peer.loopback);
        let lvs = hp.by_direction(Direction::Outbound).next().unwrap();
        assert_eq!(lvs.peer.names.len(), 1);
        assert_eq!(lvs.peer.names[0].name, "lvs.ravenphyre.net");
        assert!(lvs.peer.names[0].bound.is_empty());
        assert!(lvs.peer.hosts.is_empty() && lvs.peer.nets.is_empty() && !lvs.peer.any);
    }

    #[test]
    fn workstation_and_database() {
        let (m, inv, sel) = load(&["ha"]);
        let ws = HostPaths::compute(&m, &inv, "inventory.ini", &sel, "ws01").unwrap();
        assert_eq!(ws.zones, vec!["users".to_string()]);
        assert_eq!(ids(&ws, Direction::Inbound), ["grpc-local"]);
        assert_eq!(ids(&ws, Direction::Outbound), ["web-portal/users", "web-portal-vip/users", "grpc-local"]);
        let vip = ws.paths.iter().find(|p| p.rule_id == "web-portal-vip/users").unwrap();
        assert_eq!(vip.ports, vec![(443, 443), (7101, 7101)]);
        assert_eq!(vip.peer.hosts[0].name, "rppam-vip");
        let db = HostPaths::compute(&m, &inv, "inventory.ini", &sel, "db1").unwrap();
        assert_eq!(ids(&db, Direction::Inbound), ["grpc-local", "db-postgres"]);
        let p = db.paths.iter().find(|p| p.rule_id == "db-postgres").unwrap();
        assert_eq!(
            p.peer.nets_all(),
            ["10.200.1.11/32", "10.200.1.12/32", "10.200.1.13/32"]
                .iter()
                .map(|s| s.parse::<IpNet>().unwrap())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn internet_and_bindings() {
        let (m, inv, mut sel) = load(&["ha", "webhooks"]);
        sel.vars.insert("bind:lvs.ravenphyre.net".into(), "192.0.2.7".into());
        let hp = HostPaths::compute(&m, &inv, "inventory.ini", &sel, "rppam2").unwrap();
        let w = hp.paths.iter().find(|p| p.rule_id == "webhooks").unwrap();
        assert!(w.peer.any && w.peer.internet);
        let lvs = hp.paths.iter().find(|p| p.rule_id == "lvs-checkin").unwrap();
        assert_eq!(lvs.peer.names[0].bound, vec![ip("192.0.2.7")]);
    }

    #[test]
    fn unknown_host_lists_close_names() {
        let (m, inv, sel) = load(&["ha"]);
        let e = HostPaths::compute(&m, &inv, "inventory.ini", &sel, "rppam4").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("inventory.ini: no host `rppam4`"), "{s}");
        assert!(s.contains("close names: rppam1, rppam2, rppam3"), "{s}");
        let e = HostPaths::compute(
            &m,
            &inv,
            "inventory.ini",
            &Selection { profiles: vec!["hq".into()], ..Default::default() },
            "rppam1",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown profile `hq`"), "{e}");
    }
}
