//! The verdict engine: a matrix, an inventory and a selection compiled into
//! an index that judges a flow (client, server, server port, protocol) in
//! a few hash and binary-search steps, without allocating.
//!
//! Layout: every address maps to an endpoint *class* (its services, its
//! zone and `any`, as a bitset over entities; see [`classify`]). For each
//! (server class, protocol) a sorted port-interval table lists the rules
//! whose target the class holds, each with the one source entity the
//! client class must hold, and the exposure constraints with the mask of
//! entities allowed to reach them.

mod classify;
mod explain;
mod labels;
mod resolve;
mod sources;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use serde::Serialize;

use crate::{
    flow::Proto,
    inventory::Inventory,
    matrix::{Matrix, MatrixError, PlacementKind, RuleProto, Selection, ANY, INTERNET},
};
use classify::{has, set, AddrTable, Classes, Memberships, NetItem};
pub use labels::OTHER;
pub use resolve::{NameResolver, NoResolver, StaticResolver};
pub use sources::{Compiled, Sources, SourcesError};

/// One flow as the engine sees it. Only the server port matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowQuery {
    pub client: IpAddr,
    pub server: IpAddr,
    pub port: u16,
    pub proto: Proto,
    /// Whether the flow's start was seen; if not, client and server were guessed.
    pub initiator_seen: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    /// A rule documents the flow.
    Conforming,
    /// No rule documents the flow.
    Unexpected,
    /// The flow reaches a port that must not be reachable from the client
    /// (an exposure constraint); wins over `Conforming`.
    Exposed,
}

/// Index of an active expanded rule in [`Engine::rules`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RuleIdx(pub u32);

/// Index of an active expanded exposure constraint in [`Engine::exposures`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ExposureIdx(pub u32);

/// Cheap, allocation-free result of the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub kind: VerdictKind,
    /// The first rule that documents the flow (also set for `Exposed` when
    /// a rule documents what an exposure forbids).
    pub rule: Option<RuleIdx>,
    /// For `Exposed`: the constraint that the flow breaks.
    pub exposure: Option<ExposureIdx>,
    /// Endpoint classes, so that [`Engine::explain`] need not classify again.
    pub client_class: u32,
    pub server_class: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SideInfo {
    /// Inventory hosts with this address.
    pub hosts: Vec<String>,
    pub services: Vec<String>,
    /// The address's zone (most specific CIDR; `internet` if none).
    pub zones: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Ids of every rule that documents the flow.
    pub rules: Vec<String>,
    /// For `Unexpected`: ids of the rules closest to the flow (same port to
    /// the same server, same port elsewhere, or other ports between the same sides).
    pub closest: Vec<String>,
    /// For `Exposed`: the id of the broken constraint.
    pub exposure: Option<String>,
    pub reason: String,
    pub client: SideInfo,
    pub server: SideInfo,
}

/// An active expanded rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleInfo {
    pub id: String,
    pub source: String,
    pub target: String,
    /// `[first, last]` ranges; empty for icmp.
    pub ports: Vec<(u16, u16)>,
    /// `Icmp` stands for ICMP and ICMPv6.
    pub proto: Proto,
    pub purpose: String,
    pub when: Vec<String>,
    /// `file:line` of the rule.
    pub provenance: String,
}

/// An active expanded exposure constraint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExposureInfo {
    pub id: String,
    pub target: String,
    pub ports: Vec<(u16, u16)>,
    pub proto: Proto,
    pub only_from: Vec<String>,
    pub purpose: String,
    pub provenance: String,
}

/// Something compiling noticed that makes part of the matrix match nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineWarning {
    /// The matrix node concerned, if any.
    pub pos: Option<crate::matrix::Pos>,
    pub message: String,
}

impl EngineWarning {
    fn at(pos: &crate::matrix::Pos, message: String) -> EngineWarning {
        EngineWarning { pos: Some(pos.clone()), message }
    }
}

impl std::fmt::Display for EngineWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.pos {
            Some(p) => write!(f, "{p}: warning: {}", self.message),
            None => write!(f, "warning: {}", self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Matrix(#[from] MatrixError),
}

const PROTOS: usize = 3;

#[inline(always)]
fn proto_slot(p: Proto) -> usize {
    match p {
        Proto::Tcp => 0,
        Proto::Udp => 1,
        Proto::Icmp | Proto::Icmpv6 => 2,
    }
}

fn rule_proto(p: RuleProto) -> Proto {
    match p {
        RuleProto::Tcp => Proto::Tcp,
        RuleProto::Udp => Proto::Udp,
        RuleProto::Icmp => Proto::Icmp,
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    rules: (u32, u32),
    exposures: (u32, u32),
}

/// For one (server class, protocol): port intervals and what applies there.
#[derive(Debug, Default)]
struct PortTable {
    /// Interval starts, sorted; the first is 0.
    starts: Vec<u16>,
    slots: Vec<Slot>,
}

#[derive(Clone, Copy, Debug)]
struct RuleCand {
    rule: u32,
    /// The entity the client class must hold.
    source: u32,
}

#[derive(Clone, Copy, Debug)]
struct ExpCand {
    exposure: u32,
    /// Offset of the allowed-entities mask in `masks`.
    mask: u32,
}

pub struct Engine {
    entities: Vec<String>,
    /// Entities that are zones (the rest are services or `any`).
    is_zone: Vec<bool>,
    classes: Classes,
    addrs: AddrTable,
    tables: Vec<PortTable>,
    rule_cands: Vec<RuleCand>,
    exp_cands: Vec<ExpCand>,
    masks: Vec<u64>,
    rules: Vec<RuleInfo>,
    rule_entities: Vec<(u32, u32)>,
    exposures: Vec<ExposureInfo>,
    hosts_by_addr: BTreeMap<IpAddr, Vec<String>>,
    labels: labels::AddrLabels,
    warnings: Vec<EngineWarning>,
}

impl Engine {
    /// Compiles with the matrix's bindings and `--set bind:` only.
    pub fn new(
        matrix: &Matrix,
        inventory: Option<&Inventory>,
        sel: &Selection,
    ) -> Result<Engine, EngineError> {
        Engine::with_resolver(matrix, inventory, sel, &NoResolver)
    }

    /// Compiles; FQDN services also take the addresses `resolver` knows.
    pub fn with_resolver(
        matrix: &Matrix,
        inventory: Option<&Inventory>,
        sel: &Selection,
        resolver: &dyn NameResolver,
    ) -> Result<Engine, EngineError> {
        let hosts: Vec<HostView> = match inventory {
            Some(inv) => inv
                .hosts
                .values()
                .map(|h| HostView { name: &h.name, groups: &h.groups, addresses: &h.addresses })
                .collect(),
            None => Vec::new(),
        };
        Engine::build(matrix, inventory.is_some(), &hosts, sel, resolver)
    }

    fn build(
        matrix: &Matrix,
        have_inventory: bool,
        hosts: &[HostView],
        sel: &Selection,
        resolver: &dyn NameResolver,
    ) -> Result<Engine, EngineError> {
        let active = matrix.activate(sel)?;
        let mut warnings = Vec::new();
        let expanded = matrix.expand_rules(&active, true)?;
        let xs = matrix.expand_exposures(&active, true)?;
        // Only services that an active rule or exposure names are worth a warning.
        let used: BTreeSet<&str> = expanded
            .iter()
            .flat_map(|r| [r.source.as_str(), r.target.as_str()])
            .chain(xs.iter().flat_map(|x| {
                std::iter::once(x.target.as_str()).chain(x.only_from.iter().map(String::as_str))
            }))
            .collect();

        // Entities: services, then zones, then `any`.
        let mut entities: Vec<String> = matrix.services.keys().cloned().collect();
        let n_services = entities.len();
        entities.extend(matrix.zones.keys().cloned());
        entities.push(ANY.to_string());
        let id_of: BTreeMap<&str, u32> =
            entities.iter().enumerate().map(|(i, n)| (n.as_str(), i as u32)).collect();
        let is_zone: Vec<bool> =
            (0..entities.len()).map(|i| i >= n_services && i + 1 < entities.len()).collect();
        let any = id_of[ANY];
        let internet = id_of[INTERNET];

        let mut nets: Vec<(ipnet::IpNet, NetItem)> = Vec::new();
        for (zone, net) in matrix.zone_nets(&active)? {
            nets.push((net, NetItem::Zone { zone: id_of[zone.as_str()] }));
        }
        let mut exact: BTreeMap<IpAddr, Vec<u32>> = BTreeMap::new();
        let mut hosts_by_addr: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
        for h in hosts {
            if h.addresses.is_empty() {
                warnings.push(EngineWarning {
                    pos: None,
                    message: format!(
                        "inventory host `{}` has no IP address; flows cannot be matched to it",
                        h.name
                    ),
                });
            }
            for a in h.addresses {
                let a = classify::norm(*a);
                exact.entry(a).or_default();
                hosts_by_addr.entry(a).or_default().push(h.name.to_string());
            }
        }
        let mut by_group: BTreeMap<&str, Vec<&HostView>> = BTreeMap::new();
        for h in hosts {
            for g in h.groups {
                by_group.entry(g.as_str()).or_default().push(h);
            }
        }
        let mut zone_services: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let mut resolved = Vec::new();
        let statics = StaticResolver { names: active.bindings.clone() };
        for (sname, s) in &matrix.services {
            let sid = id_of[sname.as_str()];
            let used = used.contains(sname.as_str());
            for p in &s.placements {
                let mut add_exact = |a: IpAddr| {
                    let v = exact.entry(classify::norm(a)).or_default();
                    if !v.contains(&sid) {
                        v.push(sid);
                    }
                };
                match &p.kind {
                    PlacementKind::Group(g) => {
                        let members = by_group.get(g.as_str()).map(Vec::as_slice).unwrap_or_default();
                        for h in members {
                            h.addresses.iter().for_each(|a| add_exact(*a));
                        }
                        if members.is_empty() && used {
                            warnings.push(EngineWarning::at(
                                &p.pos,
                                if have_inventory {
                                    format!("service `{sname}`: inventory group `{g}` has no hosts")
                                } else {
                                    format!(
                                        "service `{sname}` runs on group `{g}`, but no inventory was given"
                                    )
                                },
                            ));
                        }
                    }
                    PlacementKind::Host(name) => match hosts.iter().find(|h| h.name == name) {
                        Some(h) => h.addresses.iter().for_each(|a| add_exact(*a)),
                        None if used => warnings.push(EngineWarning::at(
                            &p.pos,
                            format!("service `{sname}`: no inventory host `{name}`"),
                        )),
                        None => {}
                    },
                    PlacementKind::Fqdn(f) => {
                        resolved.clear();
                        statics.resolve(f, &mut resolved);
                        resolver.resolve(f, &mut resolved);
                        if resolved.is_empty() && used {
                            warnings.push(EngineWarning::at(
                                &p.pos,
                                format!(
                                    "service `{sname}`: no address known for {f}; bind it under `bindings:` or with --set bind:{f}=IP"
                                ),
                            ));
                        }
                        resolved.iter().for_each(|a| add_exact(*a));
                    }
                    PlacementKind::Cidr(t) => {
                        let net = t
                            .eval(&active.vars)
                            .and_then(|s| crate::matrix::parse_net(&s))
                            .map_err(|message| invalid(&p.pos, message))?;
                        nets.push((net, NetItem::Service(sid)));
                    }
                    PlacementKind::Prefixes { nets: list, .. } => {
                        nets.extend(list.iter().map(|n| (*n, NetItem::Service(sid))));
                    }
                    PlacementKind::Zone(z) => zone_services.entry(id_of[z.as_str()]).or_default().push(sid),
                }
            }
        }

        let mut classes = Classes::new(entities.len());
        let m = Memberships { any, internet, zone_services: &zone_services };
        let addrs = AddrTable::build(&nets, &exact, &m, &mut classes);

        // Active rules and exposures.
        let rules: Vec<RuleInfo> = expanded
            .iter()
            .map(|r| RuleInfo {
                id: r.id.clone(),
                source: r.source.clone(),
                target: r.target.clone(),
                ports: r.ports.clone(),
                proto: rule_proto(r.proto),
                purpose: r.purpose.clone(),
                when: r.when.clone(),
                provenance: r.provenance.clone(),
            })
            .collect();
        let rule_entities: Vec<(u32, u32)> =
            expanded.iter().map(|r| (id_of[r.source.as_str()], id_of[r.target.as_str()])).collect();
        let mut masks = Vec::new();
        let mut exposures = Vec::new();
        let mut exp_target = Vec::new();
        let mut exp_mask = Vec::new();
        for x in &xs {
            let mut mask = classes.empty();
            for n in &x.only_from {
                set(&mut mask, id_of[n.as_str()]);
            }
            exp_mask.push(masks.len() as u32);
            masks.extend_from_slice(&mask);
            exp_target.push(id_of[x.target.as_str()]);
            exposures.push(ExposureInfo {
                id: x.id.clone(),
                target: x.target.clone(),
                ports: x.ports.clone(),
                proto: rule_proto(x.proto),
                only_from: x.only_from.clone(),
                purpose: x.purpose.clone(),
                provenance: x.provenance.clone(),
            });
        }

        // Rules and exposures per target entity and protocol.
        let mut by_target: Vec<[Vec<u32>; PROTOS]> = vec![Default::default(); entities.len()];
        for (i, r) in expanded.iter().enumerate() {
            by_target[rule_entities[i].1 as usize][proto_slot(rule_proto(r.proto))].push(i as u32);
        }
        let mut exp_by_target: Vec<[Vec<u32>; PROTOS]> = vec![Default::default(); entities.len()];
        for (i, x) in xs.iter().enumerate() {
            exp_by_target[exp_target[i] as usize][proto_slot(rule_proto(x.proto))].push(i as u32);
        }

        let mut tables = Vec::with_capacity(classes.len() * PROTOS);
        let mut rule_cands = Vec::new();
        let mut exp_cands = Vec::new();
        let ranges = |ports: &[(u16, u16)], icmp: bool| -> Vec<(u16, u16)> {
            if icmp {
                vec![(0, u16::MAX)]
            } else {
                ports.to_vec()
            }
        };
        for c in 0..classes.len() as u32 {
            let bits = classes.get(c).to_vec();
            for p in 0..PROTOS {
                let icmp = p == 2;
                let mut items: Vec<(u16, u16, bool, u32)> = Vec::new();
                for e in (0..entities.len() as u32).filter(|&e| has(&bits, e)) {
                    for &r in &by_target[e as usize][p] {
                        for (a, b) in ranges(&expanded[r as usize].ports, icmp) {
                            items.push((a, b, true, r));
                        }
                    }
                    for &x in &exp_by_target[e as usize][p] {
                        for (a, b) in ranges(&xs[x as usize].ports, icmp) {
                            items.push((a, b, false, x));
                        }
                    }
                }
                tables.push(port_table(&items, &rule_entities, &exp_mask, &mut rule_cands, &mut exp_cands));
            }
        }
        Ok(Engine {
            entities,
            is_zone,
            classes,
            addrs,
            tables,
            rule_cands,
            exp_cands,
            masks,
            rules,
            rule_entities,
            exposures,
            hosts_by_addr,
            labels: labels::AddrLabels::new(hosts),
            warnings,
        })
    }

    /// Hot path: no allocation.
    #[inline]
    pub fn verdict(&self, q: &FlowQuery) -> Verdict {
        let cc = self.addrs.classify(q.client);
        let sc = self.addrs.classify(q.server);
        let p = proto_slot(q.proto);
        let port = if p == 2 { 0 } else { q.port };
        let slot = self.slot(sc, p, port);
        let cbits = self.classes.get(cc);
        let mut rule = None;
        for c in &self.rule_cands[slot.rules.0 as usize..slot.rules.1 as usize] {
            if has(cbits, c.source) {
                rule = Some(RuleIdx(c.rule));
                break;
            }
        }
        for x in &self.exp_cands[slot.exposures.0 as usize..slot.exposures.1 as usize] {
            let mask = &self.masks[x.mask as usize..x.mask as usize + cbits.len()];
            if !cbits.iter().zip(mask).any(|(a, b)| a & b != 0) {
                return Verdict {
                    kind: VerdictKind::Exposed,
                    rule,
                    exposure: Some(ExposureIdx(x.exposure)),
                    client_class: cc,
                    server_class: sc,
                };
            }
        }
        Verdict {
            kind: if rule.is_some() { VerdictKind::Conforming } else { VerdictKind::Unexpected },
            rule,
            exposure: None,
            client_class: cc,
            server_class: sc,
        }
    }

    #[inline(always)]
    fn slot(&self, class: u32, p: usize, port: u16) -> Slot {
        let t = &self.tables[class as usize * PROTOS + p];
        t.slots[t.starts.partition_point(|&s| s <= port) - 1]
    }

    /// Active expanded rules (for coverage: documented rules never used).
    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    pub fn rule(&self, idx: RuleIdx) -> &RuleInfo {
        &self.rules[idx.0 as usize]
    }

    pub fn exposures(&self) -> &[ExposureInfo] {
        &self.exposures
    }

    pub fn exposure(&self, idx: ExposureIdx) -> &ExposureInfo {
        &self.exposures[idx.0 as usize]
    }

    /// What compiling noticed: groups without hosts, names without
    /// addresses, hosts without addresses.
    pub fn warnings(&self) -> &[EngineWarning] {
        &self.warnings
    }

    /// Sizes of the index, for logs and benchmarks.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            entities: self.entities.len(),
            classes: self.classes.len(),
            exact_addresses: self.addrs.exact_len(),
            rules: self.rules.len(),
            exposures: self.exposures.len(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    pub entities: usize,
    pub classes: usize,
    pub exact_addresses: usize,
    pub rules: usize,
    pub exposures: usize,
}

/// What the engine reads of an inventory host.
struct HostView<'a> {
    name: &'a str,
    groups: &'a BTreeSet<String>,
    addresses: &'a [IpAddr],
}

fn invalid(pos: &crate::matrix::Pos, message: String) -> EngineError {
    EngineError::Matrix(MatrixError::Invalid(vec![crate::matrix::Diagnostic {
        pos: pos.clone(),
        severity: crate::matrix::Severity::Error,
        message,
    }]))
}

/// Cuts the port space into intervals of constant candidates, by a sweep
/// over the range ends. `items`: (first, last, is_rule, index). Candidates
/// of an interval are in file order, so a verdict names the first rule.
fn port_table(
    items: &[(u16, u16, bool, u32)],
    rule_entities: &[(u32, u32)],
    exp_mask: &[u32],
    rule_cands: &mut Vec<RuleCand>,
    exp_cands: &mut Vec<ExpCand>,
) -> PortTable {
    let mut bounds: Vec<u32> = vec![0];
    for &(a, b, _, _) in items {
        bounds.push(a as u32);
        bounds.push(b as u32 + 1);
    }
    bounds.sort_unstable();
    bounds.dedup();
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items[i].0);
    let mut next = 0;
    let mut active: Vec<(bool, u32, u16)> = Vec::new();
    let mut t = PortTable::default();
    for &x in bounds.iter().filter(|&&x| x <= u16::MAX as u32) {
        while next < order.len() && items[order[next]].0 as u32 <= x {
            let (_, b, is_rule, i) = items[order[next]];
            active.push((!is_rule, i, b));
            next += 1;
        }
        active.retain(|&(_, _, b)| b as u32 >= x);
        active.sort_unstable();
        let r0 = rule_cands.len() as u32;
        let x0 = exp_cands.len() as u32;
        for &(is_exposure, i, _) in &active {
            if is_exposure {
                exp_cands.push(ExpCand { exposure: i, mask: exp_mask[i as usize] });
            } else {
                rule_cands.push(RuleCand { rule: i, source: rule_entities[i as usize].0 });
            }
        }
        t.starts.push(x as u16);
        t.slots.push(Slot { rules: (r0, rule_cands.len() as u32), exposures: (x0, exp_cands.len() as u32) });
    }
    t
}

#[cfg(test)]
mod tests;
