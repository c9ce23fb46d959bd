//! Warnings about a matrix that loads: duplicate and overlapping rules,
//! rules that contradict an exposure constraint, zones without addresses,
//! unused definitions.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    expand::{eval_ports, format_ports, vars_defaults, Active},
    Diagnostic, Matrix, PlacementKind, ProtoSpec, Severity, When,
};

/// Profile subsets are enumerated to decide whether two conditional
/// entries can hold together; beyond this many profiles only the default
/// selection and each single profile are tried.
const MAX_ENUMERATED_PROFILES: usize = 10;

pub(super) fn lint(m: &Matrix) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let warn = |pos: &super::Pos, message: String| Diagnostic {
        pos: pos.clone(),
        severity: Severity::Warning,
        message,
    };
    let defaults = vars_defaults(m);
    let ports = |items| eval_ports(items, &defaults).unwrap_or_default();
    let selections = selections(m);

    // Duplicates and overlaps among rules with the same conditions.
    let rp: Vec<Vec<(u16, u16)>> = m.rules.iter().map(|r| ports(&r.ports)).collect();
    // One warning per rule, about the first earlier rule it repeats.
    for (j, b) in m.rules.iter().enumerate() {
        for (i, a) in m.rules[..j].iter().enumerate() {
            if !protos_overlap(a.proto, b.proto) || when_key(&a.when) != when_key(&b.when) {
                continue;
            }
            let pairs = |r: &super::Rule| -> BTreeSet<(String, String)> {
                r.from
                    .iter()
                    .flat_map(|f| r.to.iter().map(move |t| (f.name.clone(), t.name.clone())))
                    .collect()
            };
            let common: Vec<_> = pairs(a).intersection(&pairs(b)).cloned().collect();
            if common.is_empty() {
                continue;
            }
            let overlap = overlap(&rp[i], &rp[j]);
            let icmp = a.proto == ProtoSpec::Icmp && b.proto == ProtoSpec::Icmp;
            if overlap.is_empty() && !icmp {
                continue;
            }
            let (s, t) = &common[0];
            let msg = if rp[i] == rp[j] && a.proto == b.proto {
                format!(
                    "rule `{}` duplicates rule `{}` ({}) for {s} -> {t}; remove one or merge their purposes",
                    b.id,
                    a.id,
                    a.pos.provenance()
                )
            } else {
                format!(
                    "rule `{}` overlaps rule `{}` ({}) for {s} -> {t} on port(s) {}; a flow there matches both",
                    b.id,
                    a.id,
                    a.pos.provenance(),
                    if icmp { "icmp".to_string() } else { format_ports(&overlap) }
                )
            };
            out.push(warn(&b.pos, msg));
            break;
        }
    }

    // Rules that document a flow which an exposure constraint forbids.
    for x in &m.exposures {
        let xp = ports(&x.ports);
        let allowed: BTreeSet<&str> = x.only_from.iter().map(|n| n.name.as_str()).collect();
        for (i, r) in m.rules.iter().enumerate() {
            if !protos_overlap(r.proto, x.proto)
                || !r.to.iter().any(|t| x.to.iter().any(|xt| xt.name == t.name))
            {
                continue;
            }
            let ov = overlap(&rp[i], &xp);
            if ov.is_empty() && r.proto != ProtoSpec::Icmp {
                continue;
            }
            let bad: Vec<&str> =
                r.from.iter().map(|f| f.name.as_str()).filter(|f| !covered(m, f, &allowed)).collect();
            if bad.is_empty() {
                continue;
            }
            let Some(sel) = selections.iter().find(|a| a.holds(&r.when) && a.holds(&x.when)) else {
                continue;
            };
            let under = if sel.profiles.is_empty() {
                "by default".to_string()
            } else {
                format!("with profile(s) {}", sel.profiles.iter().cloned().collect::<Vec<_>>().join(", "))
            };
            out.push(warn(
                &r.pos,
                format!(
                    "rule `{}` documents {} -> port(s) {}, but exposure `{}` ({}) allows them only from {} ({under}); such flows will be reported exposed: fix the rule's `from`, its `when`, or the exposure",
                    r.id,
                    bad.join(", "),
                    format_ports(&ov),
                    x.id,
                    x.pos.provenance(),
                    allowed.iter().cloned().collect::<Vec<_>>().join(", "),
                ),
            ));
        }
    }

    // The same CIDR in two zones: the zone of its addresses is arbitrary.
    let mut zone_nets: BTreeMap<ipnet::IpNet, (&str, &super::Pos)> = BTreeMap::new();
    for (name, z) in &m.zones {
        for (t, pos) in &z.cidrs {
            let Ok(net) = t.eval(&defaults).and_then(|s| super::expand::parse_net(&s)) else { continue };
            match zone_nets.get(&net) {
                Some((other, _)) if *other != name.as_str() => out.push(warn(
                    pos,
                    format!("{net} is in zones `{other}` and `{name}`; an address has one zone, so give one of them a narrower CIDR"),
                )),
                _ => {
                    zone_nets.insert(net, (name.as_str(), pos));
                }
            }
        }
    }

    // A zone without addresses: the importer leaves an audience's zone so
    // for the user to fill in, and until then its rules match no client.
    for (name, z) in &m.zones {
        if let (true, Some(pos)) = (z.cidrs.is_empty(), &z.pos) {
            out.push(warn(
                pos,
                format!("zone `{name}` has no CIDRs, so no address is in it and its rules match nothing; fill in `cidrs:`"),
            ));
        }
    }

    // Definitions nothing uses.
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for r in &m.rules {
        used.extend(r.from.iter().chain(&r.to).map(|n| n.name.as_str()));
    }
    for x in &m.exposures {
        used.extend(x.to.iter().chain(&x.only_from).map(|n| n.name.as_str()));
    }
    for (name, s) in &m.services {
        if !used.contains(name.as_str()) {
            out.push(warn(
                &s.pos,
                format!("service `{name}` is used by no rule or exposure; remove it or add a rule"),
            ));
        }
    }
    let mut cond_names = Vec::new();
    for w in m.rules.iter().flat_map(|r| &r.when).chain(m.exposures.iter().flat_map(|x| &x.when)) {
        w.cond.names(&mut cond_names);
    }
    let mut var_used: BTreeSet<String> = cond_names.iter().cloned().collect();
    for it in m.rules.iter().flat_map(|r| &r.ports).chain(m.exposures.iter().flat_map(|x| &x.ports)) {
        var_used
            .extend(it.first.variables().chain(it.last.iter().flat_map(|l| l.variables())).map(String::from));
    }
    for t in m.zones.values().flat_map(|z| z.cidrs.iter().map(|(t, _)| t)).chain(
        m.services.values().flat_map(|s| {
            s.placements.iter().filter_map(|p| match &p.kind {
                PlacementKind::Cidr(t) => Some(t),
                _ => None,
            })
        }),
    ) {
        var_used.extend(t.variables().map(String::from));
    }
    for (name, v) in &m.variables {
        if !var_used.contains(name) {
            out.push(warn(&v.pos, format!("variable `{name}` is used by no port, CIDR or condition")));
        }
    }
    for (name, p) in &m.profiles {
        if !cond_names.contains(name) && p.set.is_empty() {
            out.push(warn(
                &p.pos,
                format!("profile `{name}` sets nothing and no `when:` names it, so it changes nothing"),
            ));
        }
    }
    out
}

fn when_key(w: &[When]) -> Vec<String> {
    let mut v: Vec<String> = w.iter().map(|w| w.text.split_whitespace().collect::<String>()).collect();
    v.sort();
    v
}

fn protos_overlap(a: ProtoSpec, b: ProtoSpec) -> bool {
    a.protos().iter().any(|p| b.protos().contains(p))
}

fn overlap(a: &[(u16, u16)], b: &[(u16, u16)]) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for &(a0, a1) in a {
        for &(b0, b1) in b {
            let (lo, hi) = (a0.max(b0), a1.min(b1));
            if lo <= hi {
                out.push((lo, hi));
            }
        }
    }
    out
}

/// Whether every address of `name` is, by name alone, inside the allowed set.
fn covered(m: &Matrix, name: &str, allowed: &BTreeSet<&str>) -> bool {
    if allowed.contains(name) || allowed.contains(super::ANY) {
        return true;
    }
    match m.services.get(name) {
        Some(s) => s
            .placements
            .iter()
            .all(|p| matches!(&p.kind, PlacementKind::Zone(z) if allowed.contains(z.as_str()))),
        None => false,
    }
}

/// Selections to try when asking "can these two hold together?".
fn selections(m: &Matrix) -> Vec<Active> {
    let names: Vec<&String> = m.profiles.keys().collect();
    let subsets: Vec<Vec<&String>> = if names.len() <= MAX_ENUMERATED_PROFILES {
        (0u32..(1 << names.len()))
            .map(|mask| {
                names.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, n)| *n).collect()
            })
            .collect()
    } else {
        std::iter::once(Vec::new()).chain(names.iter().map(|n| vec![*n])).collect()
    };
    let defaults = vars_defaults(m);
    subsets
        .into_iter()
        .map(|profs| {
            let mut vars: BTreeMap<String, String> = defaults.clone();
            for p in &profs {
                for (k, v, _) in &m.profiles[*p].set {
                    vars.insert(k.clone(), v.clone());
                }
            }
            Active { profiles: profs.into_iter().cloned().collect(), vars, bindings: BTreeMap::new() }
        })
        .collect()
}
