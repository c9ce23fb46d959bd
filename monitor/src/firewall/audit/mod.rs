//! `monitor firewall audit`: the nftables ruleset really loaded on a host,
//! evaluated for each documented path to and from it (docs/firewall.md, "Audit").
//!
//! [`model`] reads `nft -j list ruleset`; [`eval`] walks a class of packets
//! (family, protocol, source and destination addresses, ports, interfaces,
//! a new connection) through the base chains of a hook in priority order,
//! splitting it at every match; this module builds the classes from the
//! documented paths and turns the walk into findings.

pub mod eval;
pub mod model;
pub mod space;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use eval::{Decision, Evaluator, RuleRef, Verdict};
use model::{ChainId, Ruleset};
use space::{
    address_prefixes, all_addresses, family_of, ip_value, port_list, prefix_range, split, Class, Element,
    Family, Field, Ranges, FIELDS,
};

/// Which way a documented path goes, seen from the audited host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

/// A documented path to or from the host, as the audit needs it.
#[derive(Clone, Debug)]
pub struct DocumentedPath {
    /// The matrix rule id.
    pub rule: String,
    /// Where the rule was written (file:line), for the report.
    pub provenance: String,
    pub direction: Direction,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    /// Inclusive port ranges.
    pub ports: Vec<(u16, u16)>,
    /// The other end's addresses and prefixes.
    pub peers: Vec<ipnet::IpNet>,
    /// Peers named only by DNS name: not evaluated, listed.
    pub unresolved: Vec<String>,
}

/// What to audit.
#[derive(Clone, Debug)]
pub struct Input {
    pub host: String,
    /// The host's own addresses.
    pub addresses: Vec<IpAddr>,
    pub paths: Vec<DocumentedPath>,
    /// The interface documented traffic arrives on and leaves by; None: any
    /// interface but loopback.
    pub interface: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Accepted,
    Blocked,
    NotUnderstood,
    NotEvaluated,
}

/// A part of a path, its addresses and ports, and the rule that decided it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Part {
    pub peers: Vec<String>,
    pub ports: Vec<String>,
    pub decision: Decision,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PathResult {
    pub rule: String,
    pub provenance: String,
    pub direction: Direction,
    pub proto: &'static str,
    pub ports: Vec<String>,
    pub peers: Vec<String>,
    pub status: Status,
    /// The parts not accepted, each with the chain and rule that decided.
    pub parts: Vec<Part>,
    /// Why part of the path was not evaluated (a DNS name, no address of a family).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Ports the ruleset accepts new connections to from sources no documented path names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Opening {
    pub family: Family,
    pub proto: &'static str,
    pub ports: Vec<String>,
    /// The undocumented sources, as prefixes.
    pub sources: Vec<String>,
    /// When shorter: the sources are every address of the family but these.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_but: Option<Vec<String>>,
    /// The accept that lets them in (the last rule that accepted, or a policy).
    pub decision: Decision,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RuleInfo {
    #[serde(flatten)]
    pub rule: RuleRef,
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub host: String,
    pub paths: Vec<PathResult>,
    pub undocumented_openings: Vec<Opening>,
    /// Accept, jump and goto rules that new traffic can reach and no documented path uses.
    pub unused_rules: Vec<RuleInfo>,
    /// Rules the evaluation reached and could not evaluate.
    pub not_understood: Vec<RuleInfo>,
    /// Base chains on hooks the host's own paths do not pass (forward, netdev, bridge, ...).
    pub chains_not_evaluated: Vec<ChainId>,
}

impl Report {
    /// Whether the audit found nothing to report.
    pub fn is_clean(&self) -> bool {
        self.paths.iter().all(|p| matches!(p.status, Status::Accepted | Status::NotEvaluated))
            && self.undocumented_openings.is_empty()
            && self.unused_rules.is_empty()
            && self.not_understood.is_empty()
    }
}

const EPHEMERAL: (u128, u128) = (1024, 65535);

fn proto_name(p: u8) -> &'static str {
    match p {
        6 => "tcp",
        17 => "udp",
        _ => "other",
    }
}

fn hooks(d: Direction) -> [&'static str; 2] {
    match d {
        Direction::Inbound => ["prerouting", "input"],
        Direction::Outbound => ["output", "postrouting"],
    }
}

/// Every part of `class` through the hooks in turn, with the decisions of
/// every base chain it passed.
fn walk(ev: &mut Evaluator, d: Direction, class: &Class) -> Vec<(Class, Vec<Decision>)> {
    let mut pending = vec![(class.clone(), Vec::new())];
    let mut done = Vec::new();
    for h in hooks(d) {
        let mut next = Vec::new();
        let none = ev.base_chains(h, class.family).is_empty();
        for (c, trail) in pending {
            if none {
                // No base chain on the hook: the kernel accepts.
                let mut all = trail;
                all.push(Decision {
                    verdict: Verdict::Accept,
                    chain: ChainId {
                        family: String::new(),
                        table: String::new(),
                        chain: format!("no base chain on hook {h}"),
                    },
                    handle: None,
                    comment: None,
                    reason: None,
                });
                next.push((c, all));
                continue;
            }
            for (part, t) in ev.hook(h, &c) {
                let mut all = trail.clone();
                all.extend(t);
                if all.last().is_none_or(|d| d.verdict == Verdict::Accept) {
                    next.push((part, all));
                } else {
                    done.push((part, all));
                }
            }
        }
        pending = next;
    }
    done.extend(pending);
    done
}

/// The decision reported for a part: the last one, but for an accepted
/// part the last accept by a rule rather than a policy.
fn deciding(trail: &[Decision]) -> Option<Decision> {
    let last = trail.last()?;
    if last.verdict == Verdict::Accept {
        return trail.iter().rev().find(|d| d.handle.is_some()).or(Some(last)).cloned();
    }
    Some(last.clone())
}

fn interfaces(ev: &Evaluator, iface: Option<&str>) -> Ranges {
    match iface {
        Some(i) => Ranges::point(ev.names.id(i)),
        None => ev
            .names
            .all()
            .subtract(&Ranges::point(ev.names.id("lo")))
            .subtract(&Ranges::point(ev.names.id(""))),
    }
}

#[allow(clippy::too_many_arguments)]
fn class(
    ev: &Evaluator,
    input: &Input,
    d: Direction,
    family: Family,
    proto: u8,
    peers: Ranges,
    locals: Ranges,
    dports: Ranges,
) -> Class {
    let mut dims: [Ranges; FIELDS] = Default::default();
    let (s, dst) = match d {
        Direction::Inbound => (peers, locals),
        Direction::Outbound => (locals, peers),
    };
    dims[Field::Saddr as usize] = s;
    dims[Field::Daddr as usize] = dst;
    dims[Field::Sport as usize] = Ranges::range(EPHEMERAL.0, EPHEMERAL.1);
    dims[Field::Dport as usize] = dports;
    dims[Field::L4proto as usize] = Ranges::point(proto as u128);
    let ifs = interfaces(ev, input.interface.as_deref());
    let none = Ranges::point(ev.names.id(""));
    match d {
        Direction::Inbound => {
            dims[Field::Iif as usize] = ifs;
            dims[Field::Oif as usize] = none;
        }
        Direction::Outbound => {
            dims[Field::Iif as usize] = none;
            dims[Field::Oif as usize] = ifs;
        }
    }
    Class { family, dims }
}

fn ports_ranges(ports: &[(u16, u16)]) -> Ranges {
    Ranges::from_ranges(ports.iter().map(|(a, b)| (*a as u128, *b as u128)).collect())
}

fn locals_of(input: &Input, f: Family) -> Ranges {
    Ranges::from_ranges(
        input
            .addresses
            .iter()
            .filter(|a| family_of(**a) == f)
            .map(|a| (ip_value(*a), ip_value(*a)))
            .collect(),
    )
}

fn peers_of(p: &DocumentedPath, f: Family) -> Ranges {
    p.peers
        .iter()
        .filter(|n| family_of(n.addr()) == f)
        .fold(Ranges::empty(), |acc, n| acc.union(&prefix_range(n.trunc())))
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::Ipv4 => "IPv4",
        Family::Ipv6 => "IPv6",
    }
}

/// Audits `ruleset` for `input`'s documented paths.
pub fn audit(ruleset: &Ruleset, input: &Input) -> Report {
    let extra: Vec<&str> = input.interface.iter().map(String::as_str).collect();
    let mut ev = Evaluator::new(ruleset, &extra);
    let mut paths = Vec::new();
    let families = [Family::Ipv4, Family::Ipv6];
    for p in &input.paths {
        let mut notes: Vec<String> =
            p.unresolved.iter().map(|n| format!("{n}: a DNS name, not evaluated")).collect();
        let mut parts: Vec<(Class, Decision)> = Vec::new();
        let mut evaluated = false;
        for f in families {
            let peers = peers_of(p, f);
            if peers.is_empty() {
                continue;
            }
            let locals = locals_of(input, f);
            // The host to itself goes over loopback, not through the rules
            // for other hosts: left out.
            let peers = peers.subtract(&locals);
            if peers.is_empty() {
                continue;
            }
            if locals.is_empty() {
                notes.push(format!(
                    "{}: {} has no {} address, not evaluated",
                    address_prefixes(f, &peers).join(","),
                    input.host,
                    family_name(f)
                ));
                continue;
            }
            evaluated = true;
            let c = class(&ev, input, p.direction, f, p.proto, peers, locals, ports_ranges(&p.ports));
            for (part, trail) in walk(&mut ev, p.direction, &c) {
                if let Some(d) = deciding(&trail) {
                    if d.verdict != Verdict::Accept {
                        parts.push((part, d));
                    }
                }
            }
        }
        let status = if !evaluated {
            Status::NotEvaluated
        } else if parts.iter().any(|(_, d)| d.verdict == Verdict::NotUnderstood) {
            Status::NotUnderstood
        } else if parts.is_empty() {
            Status::Accepted
        } else {
            Status::Blocked
        };
        let peer_field = match p.direction {
            Direction::Inbound => Field::Saddr,
            Direction::Outbound => Field::Daddr,
        };
        let mut grouped: BTreeMap<(Decision, Family, Ranges), Ranges> = BTreeMap::new();
        for (c, d) in parts {
            let e = grouped.entry((d, c.family, c.get(Field::Dport).clone())).or_default();
            *e = e.union(c.get(peer_field));
        }
        let parts = grouped
            .into_iter()
            .map(|((decision, f, ports), peers)| Part {
                peers: address_prefixes(f, &peers),
                ports: port_list(&ports),
                decision,
            })
            .collect();
        paths.push(PathResult {
            rule: p.rule.clone(),
            provenance: p.provenance.clone(),
            direction: p.direction,
            proto: proto_name(p.proto),
            ports: port_list(&ports_ranges(&p.ports)),
            peers: p.peers.iter().map(|n| n.to_string()).chain(p.unresolved.iter().cloned()).collect(),
            status,
            parts,
            notes,
        });
    }
    let documented_hits = std::mem::take(&mut ev.hits);

    // Everything new that may arrive, and everything new the host may send.
    let mut openings: BTreeMap<(Decision, Family, u8, Ranges), Ranges> = BTreeMap::new();
    for f in families {
        let locals = locals_of(input, f);
        if locals.is_empty() {
            continue;
        }
        for proto in [6u8, 17] {
            let all_ports = Ranges::range(0, 65535);
            let c = class(
                &ev,
                input,
                Direction::Inbound,
                f,
                proto,
                all_addresses(f),
                locals.clone(),
                all_ports.clone(),
            );
            let documented: Vec<Element> = input
                .paths
                .iter()
                .filter(|p| p.direction == Direction::Inbound && p.proto == proto)
                .map(|p| {
                    Element(vec![(Field::Saddr, peers_of(p, f)), (Field::Dport, ports_ranges(&p.ports))])
                })
                .collect();
            for (part, trail) in walk(&mut ev, Direction::Inbound, &c) {
                let Some(d) = deciding(&trail) else { continue };
                if d.verdict != Verdict::Accept {
                    continue;
                }
                for rest in split(&part, &documented).1 {
                    let e =
                        openings.entry((d.clone(), f, proto, rest.get(Field::Dport).clone())).or_default();
                    *e = e.union(rest.get(Field::Saddr));
                }
            }
            let c =
                class(&ev, input, Direction::Outbound, f, proto, all_addresses(f), locals.clone(), all_ports);
            walk(&mut ev, Direction::Outbound, &c);
        }
    }
    let mut by_sources: BTreeMap<(Decision, Family, u8, Ranges), Ranges> = BTreeMap::new();
    for ((d, f, proto, ports), sources) in openings {
        let e = by_sources.entry((d, f, proto, sources)).or_default();
        *e = e.union(&ports);
    }
    let undocumented_openings = by_sources
        .into_iter()
        .map(|((decision, family, proto, sources), ports)| {
            let listed = address_prefixes(family, &sources);
            let rest = address_prefixes(family, &all_addresses(family).subtract(&sources));
            Opening {
                family,
                proto: proto_name(proto),
                ports: port_list(&ports),
                all_but: (!rest.is_empty() && rest.len() < listed.len()).then_some(rest),
                sources: listed,
                decision,
            }
        })
        .collect();

    let comment = |r: &RuleRef| {
        ruleset
            .chain(&r.chain.family, &r.chain.table, &r.chain.chain)
            .and_then(|c| c.rules.iter().find(|x| x.handle == r.handle))
            .and_then(|x| x.comment.clone())
    };
    let unused_rules = ev
        .hits
        .iter()
        .filter(|r| !documented_hits.contains(r))
        .map(|r| RuleInfo { rule: r.clone(), comment: comment(r), reason: None })
        .collect();
    let not_understood = ev
        .not_understood
        .iter()
        .map(|(r, why)| RuleInfo { rule: r.clone(), comment: comment(r), reason: Some(why.clone()) })
        .collect();
    let evaluated_hooks: BTreeSet<&str> = ["prerouting", "input", "output", "postrouting"].into();
    let chains_not_evaluated = ruleset
        .chains
        .iter()
        .filter(|c| {
            c.hook.as_deref().is_some_and(|h| {
                !evaluated_hooks.contains(h) || !matches!(c.id.family.as_str(), "inet" | "ip" | "ip6")
            })
        })
        .map(|c| c.id.clone())
        .collect();
    Report {
        host: input.host.clone(),
        paths,
        undocumented_openings,
        unused_rules,
        not_understood,
        chains_not_evaluated,
    }
}

fn where_(d: &Decision) -> String {
    if d.chain.family.is_empty() {
        return d.chain.chain.clone();
    }
    let mut s = format!("{} {} {}", d.chain.family, d.chain.table, d.chain.chain);
    match d.handle {
        Some(h) => s.push_str(&format!(" handle {h}")),
        None => s.push_str(" policy"),
    }
    if let Some(c) = &d.comment {
        s.push_str(&format!(" ({c:?})"));
    }
    s
}

fn verdict_word(v: &Verdict) -> &'static str {
    match v {
        Verdict::Accept => "accepted",
        Verdict::Drop => "dropped",
        Verdict::Reject => "rejected",
        Verdict::NotUnderstood => "not understood",
    }
}

/// The report as text, one finding a line.
pub fn render_text(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let count = |st: Status| r.paths.iter().filter(|p| p.status == st).count();
    let _ = writeln!(
        s,
        "firewall audit of {}: {} documented paths, {} accepted, {} blocked, {} not understood, {} not evaluated",
        r.host,
        r.paths.len(),
        count(Status::Accepted),
        count(Status::Blocked),
        count(Status::NotUnderstood),
        count(Status::NotEvaluated)
    );
    let dir = |d: Direction| match d {
        Direction::Inbound => "from",
        Direction::Outbound => "to",
    };
    let bad: Vec<&PathResult> =
        r.paths.iter().filter(|p| matches!(p.status, Status::Blocked | Status::NotUnderstood)).collect();
    if !bad.is_empty() {
        s.push_str("\ndocumented paths not accepted:\n");
        for p in bad {
            let _ = writeln!(
                s,
                "  {} ({}) {} {} {} {} {}",
                p.rule,
                p.provenance,
                p.direction.as_str(),
                p.proto,
                p.ports.join(","),
                dir(p.direction),
                p.peers.join(",")
            );
            for part in &p.parts {
                let _ = write!(
                    s,
                    "    {} {} {}: {} by {}",
                    p.proto,
                    part.ports.join(","),
                    part.peers.join(","),
                    verdict_word(&part.decision.verdict),
                    where_(&part.decision)
                );
                if let Some(why) = &part.decision.reason {
                    let _ = write!(s, ": {why}");
                }
                s.push('\n');
            }
        }
    }
    let notes: Vec<&PathResult> = r.paths.iter().filter(|p| !p.notes.is_empty()).collect();
    if !notes.is_empty() {
        s.push_str("\nnot evaluated:\n");
        for p in notes {
            for n in &p.notes {
                let _ =
                    writeln!(s, "  {} ({}) {} {}: {n}", p.rule, p.provenance, p.direction.as_str(), p.proto);
            }
        }
    }
    if !r.undocumented_openings.is_empty() {
        s.push_str("\nports open to sources the matrix does not document:\n");
        for o in &r.undocumented_openings {
            let from = match &o.all_but {
                Some(but) => format!("any {} address but {}", family_name(o.family), but.join(",")),
                None => o.sources.join(","),
            };
            let _ = writeln!(
                s,
                "  {} {} from {from}: accepted by {}",
                o.proto,
                o.ports.join(","),
                where_(&o.decision)
            );
        }
    }
    if !r.unused_rules.is_empty() {
        s.push_str("\nrules no documented path uses:\n");
        for u in &r.unused_rules {
            let c = u.comment.as_ref().map(|c| format!(" ({c:?})")).unwrap_or_default();
            let _ = writeln!(
                s,
                "  {} {} {} handle {}{c}",
                u.rule.chain.family, u.rule.chain.table, u.rule.chain.chain, u.rule.handle
            );
        }
    }
    if !r.not_understood.is_empty() {
        s.push_str("\nrules not understood (the paths that reach them are not judged):\n");
        for u in &r.not_understood {
            let _ = writeln!(
                s,
                "  {} {} {} handle {}: {}",
                u.rule.chain.family,
                u.rule.chain.table,
                u.rule.chain.chain,
                u.rule.handle,
                u.reason.as_deref().unwrap_or("")
            );
        }
    }
    if !r.chains_not_evaluated.is_empty() {
        s.push_str("\nbase chains not evaluated (no path to or from this host passes them):\n");
        for c in &r.chains_not_evaluated {
            let _ = writeln!(s, "  {} {} {}", c.family, c.table, c.chain);
        }
    }
    s
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl Input {
    /// The audit's view of the host's documented paths: ICMP paths and
    /// paths that never leave the host (loopback) are left out; `any` is
    /// every address; DNS names without bound addresses and inventory
    /// hosts without addresses are listed as not evaluated.
    pub fn from_host_paths(hp: &crate::host_paths::HostPaths, interface: Option<String>) -> Input {
        use crate::{host_paths, matrix::RuleProto};
        let mut paths = Vec::new();
        for p in &hp.paths {
            let proto = match p.proto {
                RuleProto::Tcp => 6,
                RuleProto::Udp => 17,
                RuleProto::Icmp => continue,
            };
            if p.local_loopback || (p.peer.loopback && !p.peer.any) {
                continue;
            }
            let mut peers = p.peer.nets_all();
            if p.peer.any {
                peers = vec!["0.0.0.0/0".parse().expect("a prefix"), "::/0".parse().expect("a prefix")];
            }
            let mut unresolved: Vec<String> =
                p.peer.names.iter().filter(|n| n.bound.is_empty()).map(|n| n.name.clone()).collect();
            unresolved.extend(
                p.peer
                    .hosts
                    .iter()
                    .filter(|h| h.addresses.is_empty())
                    .map(|h| format!("{} (no address)", h.name)),
            );
            paths.push(DocumentedPath {
                rule: p.rule_id.clone(),
                provenance: p.provenance.clone(),
                direction: match p.direction {
                    host_paths::Direction::Inbound => Direction::Inbound,
                    host_paths::Direction::Outbound => Direction::Outbound,
                },
                proto,
                ports: p.ports.clone(),
                peers,
                unresolved,
            });
        }
        Input { host: hp.host.clone(), addresses: hp.addresses.clone(), paths, interface }
    }
}

#[cfg(test)]
mod tests;
