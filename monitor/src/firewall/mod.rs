//! A host's firewall written from its documented paths ([`HostPaths`]):
//! an nftables script, firewalld commands or Windows `New-NetFirewallRule`
//! lines (docs/firewall.md). Every rule cites its matrix rule id and the
//! matrix line it came from. DNS names are left as commented placeholders
//! unless [`resolve_names`] filled them, because firewalls match addresses.
//! [`audit`] reads a loaded nftables ruleset back and evaluates it for the
//! host's documented paths.

pub mod audit;

mod firewalld;
mod nft;

pub use nft::TABLE as NFT_TABLE;
mod windows;

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::host_paths::{Direction, HostPath, HostPaths};

/// The output's dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Nft,
    Firewalld,
    Windows,
}

/// What happens to traffic no documented path allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Drop,
    Reject,
    Accept,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Drop => "drop",
            Policy::Reject => "reject",
            Policy::Accept => "accept",
        }
    }
}

/// How to write the firewall.
#[derive(Clone, Debug)]
pub struct Options {
    pub format: Format,
    pub policy: Policy,
    /// Also filter outbound traffic to the documented outbound paths.
    pub egress: bool,
    /// Lines for the output's header comment (what it was generated from).
    pub header: Vec<String>,
}

/// A generated firewall and what the operator should know about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    pub text: String,
    /// One line each, e.g. a DNS name left as a placeholder.
    pub warnings: Vec<String>,
}

/// Writes the firewall for `hp`.
pub fn generate(hp: &HostPaths, opts: &Options) -> Generated {
    let mut warnings = Vec::new();
    let inbound = plan(hp, Direction::Inbound, &mut warnings);
    let outbound = if opts.egress { plan(hp, Direction::Outbound, &mut warnings) } else { Vec::new() };
    let text = match opts.format {
        Format::Nft => nft::render(hp, opts, &inbound, &outbound),
        Format::Firewalld => firewalld::render(hp, opts, &inbound, &outbound),
        Format::Windows => windows::render(hp, opts, &inbound, &outbound),
    };
    Generated { text, warnings }
}

/// Fills the addresses of the DNS names at the other end of each path
/// with `resolve` (e.g. the system resolver). Wildcards cannot be
/// resolved; they and failures come back as warnings and stay placeholders.
pub fn resolve_names(
    hp: &mut HostPaths,
    resolve: &mut dyn FnMut(&str) -> Result<Vec<IpAddr>, String>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut cache: std::collections::BTreeMap<String, Vec<IpAddr>> = Default::default();
    for p in &mut hp.paths {
        for n in &mut p.peer.names {
            if !n.bound.is_empty() || n.name.starts_with("*.") {
                continue;
            }
            let addrs = match cache.get(&n.name) {
                Some(a) => a.clone(),
                None => {
                    let a = match resolve(&n.name) {
                        Ok(a) => a,
                        Err(e) => {
                            warnings.push(format!("{}: cannot resolve {}: {e}", p.provenance, n.name));
                            Vec::new()
                        }
                    };
                    cache.insert(n.name.clone(), a.clone());
                    a
                }
            };
            let mut addrs = addrs;
            addrs.sort();
            addrs.dedup();
            n.bound = addrs;
        }
    }
    warnings
}

/// One path as the renderers need it.
pub(crate) struct Planned<'a> {
    pub path: &'a HostPath,
    pub v4: Vec<Ipv4Net>,
    pub v6: Vec<Ipv6Net>,
    /// Every address.
    pub any: bool,
    /// Only loopback at the other end, or this end is loopback: the
    /// loopback accept covers it.
    pub loopback_only: bool,
    /// DNS names without addresses: placeholders.
    pub unresolved: Vec<String>,
}

impl Planned<'_> {
    /// Whether the path can be written as a rule (it has addresses or is `any`).
    pub fn has_addresses(&self) -> bool {
        self.any || !self.v4.is_empty() || !self.v6.is_empty()
    }

    /// `rule:<id>`, the tag every generated rule carries.
    pub fn tag(&self) -> String {
        format!("rule:{}", self.path.rule_id)
    }

    /// `rule:<id> (file:line): purpose`, for a comment line.
    pub fn cite(&self) -> String {
        format!("{} ({}): {}", self.tag(), self.path.provenance, self.path.purpose)
    }

    /// The placeholder comment for the unresolved names.
    pub fn placeholder(&self) -> Option<String> {
        if self.unresolved.is_empty() {
            return None;
        }
        Some(format!(
            "{} not resolved: rerun with --resolve or --set bind:{}=IP",
            self.unresolved.join(", "),
            self.unresolved[0]
        ))
    }
}

fn plan<'a>(hp: &'a HostPaths, dir: Direction, warnings: &mut Vec<String>) -> Vec<Planned<'a>> {
    hp.by_direction(dir)
        .map(|p| {
            let nets = p.peer.nets_all();
            let v4 = Ipv4Net::aggregate(
                &nets.iter().filter_map(|n| if let IpNet::V4(n) = n { Some(*n) } else { None }).collect(),
            );
            let v6 = Ipv6Net::aggregate(
                &nets.iter().filter_map(|n| if let IpNet::V6(n) = n { Some(*n) } else { None }).collect(),
            );
            let unresolved: Vec<String> =
                p.peer.names.iter().filter(|n| n.bound.is_empty()).map(|n| n.name.clone()).collect();
            let loopback_only = p.local_loopback
                || (p.peer.loopback && !p.peer.any && v4.is_empty() && v6.is_empty() && unresolved.is_empty());
            if !unresolved.is_empty() && !loopback_only {
                warnings.push(format!(
                    "{}: warning: rule `{}`: {} not resolved, written as a commented placeholder; rerun with --resolve or bind the name with --set bind:{}=IP",
                    p.provenance,
                    p.rule_id,
                    unresolved.join(", "),
                    unresolved[0]
                ));
            }
            Planned { path: p, v4, v6, any: p.peer.any, loopback_only, unresolved }
        })
        .collect()
}

/// `7001-7012`-style ranges joined by `sep`.
pub(crate) fn ports(p: &[(u16, u16)], range_sep: &str, sep: &str) -> String {
    p.iter()
        .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}{range_sep}{b}") })
        .collect::<Vec<_>>()
        .join(sep)
}

#[cfg(test)]
mod tests;
