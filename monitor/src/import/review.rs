//! What the user reviews after an import: where each service was placed and
//! on what evidence (the document's mapping table, a perimeter table, DNS
//! names, or the name alone), the rules by kind, the profiles made from
//! conditions and notes, the audiences whose addresses the user must fill
//! in, and the warnings. A draft is the importer's reading of prose, so the
//! review says which parts are read and which are guessed. With an
//! inventory, each placement is also checked against real hosts: a group
//! the inventory lacks, or that has no hosts, and inventory hosts that no
//! service is placed on, are warnings naming the document line and the
//! inventory file (docs/import.md).

use std::{collections::BTreeSet, fmt::Write};

use serde::Serialize;

use super::{Draft, Placement, Warning};
use crate::inventory::Inventory;

/// The review of one import, in the shape `--review json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Review {
    pub document: String,
    pub format: &'static str,
    /// The inventory file the draft was checked against.
    pub inventory: Option<String>,
    pub services: Vec<ServiceReview>,
    pub rules: RuleCounts,
    pub exposures: usize,
    pub profiles: Vec<ProfileReview>,
    /// Zones standing for audiences outside the cluster, without CIDRs yet.
    pub audiences: Vec<AudienceReview>,
    pub warnings: Vec<Warning>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServiceReview {
    pub service: String,
    /// The names the document uses for it.
    pub names: Vec<String>,
    /// The inventory group, for a service placed on one.
    pub group: Option<String>,
    /// The inventory hosts, for a service placed on host names.
    pub hosts: Vec<String>,
    /// The DNS names, for a service placed by name.
    pub fqdns: Vec<String>,
    /// The line the document first names it on.
    pub line: usize,
    /// What placed it: "mapping table, line 5", "--group", "convention: ...".
    pub evidence: String,
    /// Placed by its name alone: nothing in the document says where it runs.
    pub name_only: bool,
    /// Hosts the inventory has in its group, or of its host names (`None`
    /// without `--inventory` or for DNS names).
    pub inventory_hosts: Option<usize>,
}

/// Rules by kind; each rule counts in exactly one of the first five.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RuleCounts {
    pub total: usize,
    /// From one service of the document to another (or to itself).
    pub between_services: usize,
    /// From an audience outside the cluster (a zone of the draft).
    pub from_audiences: usize,
    /// From `any` or `internet`.
    pub from_anywhere: usize,
    /// To DNS names or the internet.
    pub to_outside: usize,
    /// From or to `loopback`.
    pub on_loopback: usize,
    /// Rules with at least one condition (`when:`).
    pub conditional: usize,
}

impl ServiceReview {
    /// "group webtier", "hosts db01, db02", "fqdns a.example.com".
    pub fn placement(&self) -> String {
        match (&self.group, self.hosts.is_empty()) {
            (Some(g), _) => format!("group {g}"),
            (None, false) => format!("hosts {}", self.hosts.join(", ")),
            (None, true) => format!("fqdns {}", self.fqdns.join(", ")),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ProfileReview {
    pub profile: String,
    /// `note` (a note conditions a class of rules) or `condition` (rows or
    /// sections say so).
    pub origin: &'static str,
    /// The note's line, or the first line of the first rule with it.
    pub line: usize,
    pub rules: usize,
    pub description: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct AudienceReview {
    pub zone: String,
    /// As the document writes it.
    pub audience: String,
    pub line: usize,
    /// Rules from it, and exposure constraints that only it may reach.
    pub rules: usize,
    pub exposures: usize,
}

/// The services rules and exposure constraints name: the ones the draft writes.
pub(crate) fn used_services(d: &Draft) -> BTreeSet<&str> {
    d.rules
        .iter()
        .flat_map(|r| [r.from.as_str(), r.to.as_str()])
        .chain(
            d.exposures
                .iter()
                .flat_map(|x| std::iter::once(x.to.as_str()).chain(x.only_from.iter().map(String::as_str))),
        )
        .filter(|n| d.services.contains_key(*n))
        .collect()
}

/// Hosts of `group` in the inventory (`all`: every host).
fn hosts_in(inv: &Inventory, group: &str) -> usize {
    match group {
        "all" => inv.hosts.len(),
        g => inv.hosts_in_group(g).count(),
    }
}

/// Checks the draft's placements against an inventory: every group a
/// service uses exists and has hosts, and every inventory host belongs to
/// some service. Each mismatch is a warning with the document line (line 0
/// for hosts the document does not mention) naming the inventory file.
pub(crate) fn check_inventory(d: &Draft, inv: &Inventory, file: &str) -> Vec<Warning> {
    let mut out = Vec::new();
    let used: BTreeSet<&str> = used_services(d);
    let mut covered: BTreeSet<&str> = BTreeSet::new();
    // (line, service, the document's name for it, group, evidence)
    let mut unplaced: Vec<(usize, &str, &str, &str, &str)> = Vec::new();
    for name in &used {
        let s = &d.services[*name];
        match &s.placement {
            Placement::Group(g) => match hosts_in(inv, g) {
                0 => {
                    let doc_name = s.names.iter().next().map_or(*name, String::as_str);
                    unplaced.push((s.line, name, doc_name, g, &s.placed_by))
                }
                // A service on every host (a log shipper on `all`) says nothing of what a host is for.
                _ if g == "all" => {}
                _ => covered.extend(inv.hosts_in_group(g).map(|h| h.name.as_str())),
            },
            Placement::Hosts(hosts) => {
                let (known, missing): (Vec<&String>, Vec<&String>) =
                    hosts.iter().partition(|h| inv.hosts.contains_key(*h));
                covered.extend(known.into_iter().map(String::as_str));
                if !missing.is_empty() {
                    let missing: Vec<&str> = missing.into_iter().map(String::as_str).collect();
                    out.push(Warning {
                        line: s.line,
                        message: format!(
                            "service `{name}` is placed on hosts {} ({}), which {file} does not have: fix the names in the draft or in the inventory",
                            missing.join(", "),
                            s.placed_by
                        ),
                    });
                }
            }
            Placement::Fqdns(_) => {}
        }
    }
    // Inventory groups whose hosts no service holds: the likely right group for a misplaced service.
    let idle: Vec<String> = inv
        .groups
        .keys()
        .filter(|g| !matches!(g.as_str(), "all" | "ungrouped"))
        .filter(|g| {
            let mut hosts = inv.hosts_in_group(g).peekable();
            hosts.peek().is_some() && hosts.all(|h| !covered.contains(h.name.as_str()))
        })
        .cloned()
        .collect();
    let hint = match idle.as_slice() {
        [] => String::new(),
        g => format!("; groups with hosts no service is placed on: {}", g.join(", ")),
    };
    for (line, name, doc_name, g, by) in unplaced {
        let why = if inv.groups.contains_key(g) {
            "has no hosts in"
        } else if inv.hosts.contains_key(g) {
            "is a host, not a group, of"
        } else {
            "is not a group of"
        };
        out.push(Warning {
            line,
            message: format!(
                "service `{name}` is placed on group `{g}` ({by}), which {why} {file}: fix the group in the draft, or import again with --group \"{doc_name}=GROUP\"{hint}"
            ),
        });
    }
    for g in &idle {
        out.push(Warning {
            line: 0,
            message: format!(
                "{file}: the hosts of group `{g}` belong to no service of the draft (other than one on `all`), so no rule is written for them; place the service that runs there with --group NAME={g}"
            ),
        });
    }
    out
}

/// The review of a draft; `inventory` is the inventory and its file name when given.
pub(crate) fn review(
    d: &Draft,
    document: &str,
    format: &'static str,
    inventory: Option<(&Inventory, &str)>,
) -> Review {
    let used = used_services(d);
    let services = used
        .iter()
        .map(|name| {
            let s = &d.services[*name];
            let (group, hosts, fqdns) = match &s.placement {
                Placement::Group(g) => (Some(g.clone()), Vec::new(), Vec::new()),
                Placement::Hosts(h) => (None, h.clone(), Vec::new()),
                Placement::Fqdns(f) => (None, Vec::new(), f.clone()),
            };
            let inventory_hosts = inventory.and_then(|(inv, _)| match &s.placement {
                Placement::Group(g) => Some(hosts_in(inv, g)),
                Placement::Hosts(h) => Some(h.iter().filter(|h| inv.hosts.contains_key(*h)).count()),
                Placement::Fqdns(_) => None,
            });
            ServiceReview {
                service: name.to_string(),
                names: s.names.iter().cloned().collect(),
                inventory_hosts,
                group,
                hosts,
                fqdns,
                line: s.line,
                evidence: s.placed_by.clone(),
                name_only: s.placed_by.starts_with("convention"),
            }
        })
        .collect();
    let mut rules = RuleCounts { total: d.rules.len(), ..RuleCounts::default() };
    let outside = |n: &str| {
        n == "internet" || d.services.get(n).is_some_and(|s| matches!(s.placement, Placement::Fqdns(_)))
    };
    for r in &d.rules {
        let kind = if r.from == "loopback" || r.to == "loopback" {
            &mut rules.on_loopback
        } else if d.zones.contains_key(&r.from) {
            &mut rules.from_audiences
        } else if r.from == "any" || r.from == "internet" {
            &mut rules.from_anywhere
        } else if outside(&r.to) {
            &mut rules.to_outside
        } else {
            &mut rules.between_services
        };
        *kind += 1;
        rules.conditional += usize::from(!r.when.is_empty());
    }
    let profiles = d
        .profiles
        .iter()
        .map(|(name, desc)| {
            let with: Vec<usize> = d
                .rules
                .iter()
                .filter(|r| r.when.iter().any(|c| c.trim_start_matches('!') == name))
                .map(|r| r.sources[0].0)
                .collect();
            let (origin, line) = match d.profile_notes.get(name) {
                Some(&l) => ("note", l),
                None => ("condition", with.iter().copied().min().unwrap_or(0)),
            };
            ProfileReview {
                profile: name.clone(),
                origin,
                line,
                rules: with.len(),
                description: desc.clone(),
            }
        })
        .collect();
    let audiences = d
        .zones
        .iter()
        .map(|(zone, z)| AudienceReview {
            zone: zone.clone(),
            audience: z.name.clone(),
            line: z.line,
            rules: d.rules.iter().filter(|r| &r.from == zone).count(),
            exposures: d.exposures.iter().filter(|x| x.only_from.contains(zone)).count(),
        })
        .collect();
    Review {
        document: document.to_string(),
        format,
        inventory: inventory.map(|(_, f)| f.to_string()),
        services,
        rules,
        exposures: d.exposures.len(),
        profiles,
        audiences,
        warnings: d.warnings.clone(),
    }
}

impl Review {
    /// The review for people: one section per part, aligned columns.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let against = self.inventory.as_ref().map(|f| format!(", against {f}")).unwrap_or_default();
        let _ = writeln!(t, "review of {} ({}){against}:", self.document, self.format);
        let _ = writeln!(t, "  services ({}):", self.services.len());
        let rows: Vec<[String; 3]> = self
            .services
            .iter()
            .map(|s| {
                let mut why = if s.name_only {
                    format!("name only, line {}: check it against your inventory", s.line)
                } else {
                    s.evidence.clone()
                };
                if let Some(n) = s.inventory_hosts {
                    let _ = write!(why, "; inventory: {}", plural(n, "host"));
                }
                [s.service.clone(), s.placement(), why]
            })
            .collect();
        columns(&mut t, &rows);
        let r = &self.rules;
        let _ = writeln!(
            t,
            "  rules ({}): {} between services, {} from audiences, {} from anywhere, {} to DNS names or the internet, {} on loopback; {} with conditions",
            r.total, r.between_services, r.from_audiences, r.from_anywhere, r.to_outside, r.on_loopback, r.conditional
        );
        let _ = writeln!(t, "  exposure constraints: {}", self.exposures);
        let _ = writeln!(t, "  profiles ({}):", self.profiles.len());
        let rows: Vec<[String; 3]> = self
            .profiles
            .iter()
            .map(|p| {
                let from = match p.origin {
                    "note" => format!("note, line {}", p.line),
                    _ => format!("condition, line {}", p.line),
                };
                [p.profile.clone(), from, format!("on {}", plural(p.rules, "rule"))]
            })
            .collect();
        columns(&mut t, &rows);
        let _ = writeln!(t, "  audiences waiting for CIDRs ({}):", self.audiences.len());
        let rows: Vec<[String; 3]> = self
            .audiences
            .iter()
            .map(|a| {
                [
                    a.zone.clone(),
                    format!("{:?}, line {}", a.audience, a.line),
                    format!(
                        "fill in zones.{}.cidrs ({}, {})",
                        a.zone,
                        plural(a.rules, "rule"),
                        plural(a.exposures, "exposure constraint")
                    ),
                ]
            })
            .collect();
        columns(&mut t, &rows);
        let _ = writeln!(t, "  warnings: {}", self.warnings.len());
        t
    }
}

/// "1 rule", "2 rules".
fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// Three left-aligned columns, indented under a section title.
fn columns(t: &mut String, rows: &[[String; 3]]) {
    let w0 = rows.iter().map(|r| r[0].chars().count()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r[1].chars().count()).max().unwrap_or(0);
    for [a, b, c] in rows {
        let _ = writeln!(t, "    {a:<w0$}  {b:<w1$}  {c}");
    }
}
