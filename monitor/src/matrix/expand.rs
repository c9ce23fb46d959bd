//! A matrix under one selection: profiles and `--set` applied, conditions
//! decided, templates filled, and rules expanded to one source, one
//! target and one protocol each.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use ipnet::IpNet;
use serde::Serialize;

use super::{expr::CondEnv, Matrix, MatrixError, PortItem, Pos, When};

/// What a run selects: profiles (in order) and `--set` variables. A key
/// `bind:NAME` binds a DNS name to comma-separated addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub profiles: Vec<String>,
    pub vars: BTreeMap<String, String>,
}

/// The protocol of an expanded rule. `icmp` covers ICMP and ICMPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleProto {
    Tcp,
    Udp,
    Icmp,
}

impl RuleProto {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleProto::Tcp => "tcp",
            RuleProto::Udp => "udp",
            RuleProto::Icmp => "icmp",
        }
    }
}

/// Prefix of `--set` keys that bind a DNS name: `--set bind:lvs.example.net=192.0.2.7,192.0.2.8`.
pub const BIND_PREFIX: &str = "bind:";

/// The profiles, variables and name bindings of one run.
#[derive(Clone, Debug, Default)]
pub struct Active {
    pub profiles: BTreeSet<String>,
    pub vars: BTreeMap<String, String>,
    /// Bindings from the matrix and from `--set bind:NAME=...`, lower-case names.
    pub bindings: BTreeMap<String, Vec<IpAddr>>,
}

impl Active {
    fn env(&self) -> CondEnv<'_> {
        CondEnv { profiles: &self.profiles, vars: &self.vars }
    }

    /// Whether every `when:` holds.
    pub fn holds(&self, when: &[When]) -> bool {
        when.iter().all(|w| w.cond.eval(&self.env()))
    }
}

/// One rule for one source, target and protocol.
#[derive(Clone, Debug, Serialize)]
pub struct ExpandedRule {
    pub id: String,
    pub source: String,
    pub target: String,
    /// Sorted, merged `[first, last]` ranges; empty for icmp.
    pub ports: Vec<(u16, u16)>,
    pub proto: RuleProto,
    pub purpose: String,
    /// The rule's conditions as written; empty when it always applies.
    pub when: Vec<String>,
    /// `file:line` of the rule.
    pub provenance: String,
    /// Whether its conditions hold under the selection.
    pub active: bool,
    /// The rule's id as written (or generated) before expansion.
    pub rule_id: String,
}

/// One exposure constraint for one protected target and protocol.
#[derive(Clone, Debug, Serialize)]
pub struct ExpandedExposure {
    pub id: String,
    pub target: String,
    pub ports: Vec<(u16, u16)>,
    pub proto: RuleProto,
    pub only_from: Vec<String>,
    pub purpose: String,
    pub when: Vec<String>,
    pub provenance: String,
    pub active: bool,
}

pub(super) fn vars_defaults(m: &Matrix) -> BTreeMap<String, String> {
    m.variables.iter().map(|(k, v)| (k.clone(), v.default.clone())).collect()
}

/// Evaluates port items to sorted, merged ranges; errors carry the item's position.
pub(crate) fn eval_ports(
    items: &[PortItem],
    vars: &BTreeMap<String, String>,
) -> Result<Vec<(u16, u16)>, (Pos, String)> {
    let mut out = Vec::new();
    for it in items {
        let port = |t: &super::Template| -> Result<u16, (Pos, String)> {
            let s = t.eval(vars).map_err(|e| (it.pos.clone(), e))?;
            match s.trim().parse::<u32>() {
                Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
                _ => Err((it.pos.clone(), format!("port {s:?} is not a number from 1 to 65535"))),
            }
        };
        let a = port(&it.first)?;
        let b = match &it.last {
            Some(l) => port(l)?,
            None => a,
        };
        if a > b {
            return Err((
                it.pos.clone(),
                format!("bad port range {a}-{b}: the first port is above the last; write {b}-{a}"),
            ));
        }
        out.push((a, b));
    }
    Ok(merge(out))
}

fn merge(mut r: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    r.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::with_capacity(r.len());
    for (a, b) in r {
        match out.last_mut() {
            Some(last) if a as u32 <= last.1 as u32 + 1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// A CIDR, or a bare address taken as a host prefix.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<IpNet>() {
        if n.network() != n.addr() {
            return Err(format!("{s} has host bits set; did you mean {}?", n.trunc()));
        }
        return Ok(n);
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not a CIDR (e.g. 10.0.1.0/24) or an IP address"))
}

fn ports_str(p: &[(u16, u16)]) -> String {
    p.iter()
        .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
        .collect::<Vec<_>>()
        .join(",")
}

impl Matrix {
    /// Applies a selection: defaults, then each profile's `set:` in the
    /// order given, then `--set`. Unknown profiles and variables are errors.
    pub fn activate(&self, sel: &Selection) -> Result<Active, MatrixError> {
        let mut a = Active { vars: vars_defaults(self), ..Active::default() };
        let mut set_by: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
        for p in &sel.profiles {
            let Some(prof) = self.profiles.get(p) else {
                return Err(MatrixError::Selection(format!(
                    "unknown profile `{p}`; {} defines: {}",
                    self.file,
                    self.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            };
            for (var, value, _) in &prof.set {
                if let Some((other, v)) = set_by.get(var.as_str()) {
                    if v != value && !sel.vars.contains_key(var) {
                        return Err(MatrixError::Selection(format!(
                            "profiles `{other}` and `{p}` set `{var}` to {v:?} and {value:?}; drop one or choose with --set {var}=VALUE"
                        )));
                    }
                }
                set_by.insert(var, (p, value));
                a.vars.insert(var.clone(), value.clone());
            }
            a.profiles.insert(p.clone());
        }
        for (name, b) in &self.bindings {
            a.bindings.insert(name.clone(), b.addresses.clone());
        }
        for (k, v) in &sel.vars {
            if let Some(name) = k.strip_prefix(BIND_PREFIX) {
                let mut addrs = Vec::new();
                for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    addrs.push(s.parse::<IpAddr>().map_err(|_| {
                        MatrixError::Selection(format!("--set {k}={v}: {s:?} is not an IP address"))
                    })?);
                }
                a.bindings.insert(name.trim_end_matches('.').to_ascii_lowercase(), addrs);
                continue;
            }
            if !self.variables.contains_key(k) {
                return Err(MatrixError::Selection(format!(
                    "--set {k}: no such variable in {}; variables: {} (or bind a name with --set {BIND_PREFIX}NAME=IP)",
                    self.file,
                    self.variables.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            a.vars.insert(k.clone(), v.clone());
        }
        Ok(a)
    }

    fn ports_for(&self, items: &[PortItem], a: &Active) -> Result<Vec<(u16, u16)>, MatrixError> {
        eval_ports(items, &a.vars).map_err(|(pos, msg)| {
            MatrixError::Invalid(vec![super::Diagnostic {
                pos,
                severity: super::Severity::Error,
                message: msg,
            }])
        })
    }

    /// Every rule expanded; with `only_active`, only those whose conditions hold.
    pub fn expand_rules(&self, a: &Active, only_active: bool) -> Result<Vec<ExpandedRule>, MatrixError> {
        let mut out = Vec::new();
        for r in &self.rules {
            let active = a.holds(&r.when);
            if only_active && !active {
                continue;
            }
            let ports = self.ports_for(&r.ports, a)?;
            let protos = r.proto.protos();
            for s in &r.from {
                for t in &r.to {
                    for &proto in protos {
                        let mut id = r.id.clone();
                        if r.from.len() > 1 {
                            id = format!("{id}/{}", s.name);
                        }
                        if r.to.len() > 1 {
                            id = format!("{id}/{}", t.name);
                        }
                        if protos.len() > 1 {
                            id = format!("{id}/{}", proto.as_str());
                        }
                        out.push(ExpandedRule {
                            id,
                            source: s.name.clone(),
                            target: t.name.clone(),
                            ports: if proto == RuleProto::Icmp { Vec::new() } else { ports.clone() },
                            proto,
                            purpose: r.purpose.clone(),
                            when: r.when.iter().map(|w| w.text.clone()).collect(),
                            provenance: r.pos.provenance(),
                            active,
                            rule_id: r.id.clone(),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every exposure constraint expanded per target and protocol.
    pub fn expand_exposures(
        &self,
        a: &Active,
        only_active: bool,
    ) -> Result<Vec<ExpandedExposure>, MatrixError> {
        let mut out = Vec::new();
        for x in &self.exposures {
            let active = a.holds(&x.when);
            if only_active && !active {
                continue;
            }
            let ports = self.ports_for(&x.ports, a)?;
            let protos = x.proto.protos();
            for t in &x.to {
                for &proto in protos {
                    let mut id = x.id.clone();
                    if x.to.len() > 1 {
                        id = format!("{id}/{}", t.name);
                    }
                    if protos.len() > 1 {
                        id = format!("{id}/{}", proto.as_str());
                    }
                    out.push(ExpandedExposure {
                        id,
                        target: t.name.clone(),
                        ports: if proto == RuleProto::Icmp { Vec::new() } else { ports.clone() },
                        proto,
                        only_from: x.only_from.iter().map(|n| n.name.clone()).collect(),
                        purpose: x.purpose.clone(),
                        when: x.when.iter().map(|w| w.text.clone()).collect(),
                        provenance: x.pos.provenance(),
                        active,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The CIDRs of each zone under the selection (built-in `loopback` included).
    pub fn zone_nets(&self, a: &Active) -> Result<Vec<(String, IpNet)>, MatrixError> {
        let mut out = Vec::new();
        for (name, z) in &self.zones {
            for (t, pos) in &z.cidrs {
                let net = t.eval(&a.vars).and_then(|s| parse_net(&s)).map_err(|message| {
                    MatrixError::Invalid(vec![super::Diagnostic {
                        pos: pos.clone(),
                        severity: super::Severity::Error,
                        message,
                    }])
                })?;
                out.push((name.clone(), net));
            }
        }
        Ok(out)
    }
}

/// Ports as text, e.g. `22,3389` or `7001-7012`.
pub fn format_ports(p: &[(u16, u16)]) -> String {
    ports_str(p)
}
