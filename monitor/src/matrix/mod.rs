//! The documented port matrix: a YAML file of services, zones, rules and
//! exposure constraints (format in docs/matrix.md, schema in
//! schema/matrix.schema.json). Loading checks everything it can without an
//! inventory and reports each problem at its file:line:column.

mod expand;
mod expr;
mod lint;
mod parse;
mod prefixes;

use std::{
    collections::BTreeMap,
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

pub use expand::{
    format_ports, parse_net, Active, ExpandedExposure, ExpandedRule, RuleProto, Selection, BIND_PREFIX,
};
pub use expr::{Cond, CondEnv, Template};
pub use ipnet::IpNet;

/// A place in a matrix file (line and column count from 1).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
}

impl Pos {
    /// `file:line`, as rules cite where they come from.
    pub fn provenance(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One finding about a matrix file, printed as `file:line:col: error: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub pos: Pos,
    pub severity: Severity,
    pub message: String,
}

/// A finding that does not stop the matrix from being used: duplicates,
/// contradictions, unused definitions.
pub type Warning = Diagnostic;

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}: {sev}: {}", self.pos, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("{path}: cannot read the matrix file: {source}")]
    Io { path: String, source: std::io::Error },
    /// Every error found in the file, in file order.
    #[error("{}", join_lines(.0))]
    Invalid(Vec<Diagnostic>),
    /// A `--profile` or `--set` that does not fit the matrix.
    #[error("{0}")]
    Selection(String),
}

fn join_lines(d: &[Diagnostic]) -> String {
    d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n")
}

/// Names with a fixed meaning; a matrix cannot define them.
pub const LOOPBACK: &str = "loopback";
pub const INTERNET: &str = "internet";
pub const ANY: &str = "any";

#[derive(Clone, Debug)]
pub struct Variable {
    pub default: String,
    pub description: String,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub struct Profile {
    pub description: String,
    /// Variables the profile sets, in file order.
    pub set: Vec<(String, String, Pos)>,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub struct Zone {
    pub description: String,
    pub cidrs: Vec<(Template, Pos)>,
    /// `None` for the built-in zones (`loopback`, `internet`).
    pub pos: Option<Pos>,
}

/// A DNS name, or `*.suffix` for any name below `suffix`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FqdnPattern(String);

impl FqdnPattern {
    pub fn new(s: &str) -> Result<FqdnPattern, String> {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let body = s.strip_prefix("*.").unwrap_or(&s);
        let ok = !body.is_empty()
            && body.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !ok {
            return Err(format!("{s:?} is not a DNS name; write e.g. lvs.example.net or *.example.net"));
        }
        Ok(FqdnPattern(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// Whether `name` is this name, or for `*.suffix`, any name ending in `.suffix`.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        match self.0.strip_prefix('*') {
            Some(dot_suffix) => {
                name.len() > dot_suffix.len()
                    && name
                        .get(name.len() - dot_suffix.len()..)
                        .is_some_and(|t| t.eq_ignore_ascii_case(dot_suffix))
            }
            None => name.eq_ignore_ascii_case(&self.0),
        }
    }
}

impl fmt::Display for FqdnPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a service runs.
#[derive(Clone, Debug)]
pub enum PlacementKind {
    /// Every host of an inventory group.
    Group(String),
    /// One inventory host.
    Host(String),
    /// Addresses in a CIDR (or one address).
    Cidr(Template),
    /// Addresses whose zone is this one.
    Zone(String),
    /// Addresses a DNS name resolves to (bindings, `--set bind:NAME=IP`, later a DNS cache).
    Fqdn(FqdnPattern),
    /// CIDRs loaded from a JSON file (e.g. Azure service tags).
    Prefixes { nets: Vec<IpNet>, source: String },
}

#[derive(Clone, Debug)]
pub struct Placement {
    pub kind: PlacementKind,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub struct Service {
    pub description: String,
    pub placements: Vec<Placement>,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub struct Binding {
    pub addresses: Vec<IpAddr>,
    pub pos: Pos,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtoSpec {
    Tcp,
    Udp,
    Both,
    Icmp,
}

impl ProtoSpec {
    pub fn protos(self) -> &'static [RuleProto] {
        match self {
            ProtoSpec::Tcp => &[RuleProto::Tcp],
            ProtoSpec::Udp => &[RuleProto::Udp],
            ProtoSpec::Both => &[RuleProto::Tcp, RuleProto::Udp],
            ProtoSpec::Icmp => &[RuleProto::Icmp],
        }
    }
}

/// One port or range as written; both ends may hold `${...}`.
#[derive(Clone, Debug)]
pub struct PortItem {
    pub first: Template,
    pub last: Option<Template>,
    pub pos: Pos,
}

/// A reference to a service or zone by name.
#[derive(Clone, Debug)]
pub struct NameRef {
    pub name: String,
    pub pos: Pos,
}

/// A `when:` condition with its text and place.
#[derive(Clone, Debug)]
pub struct When {
    pub cond: Cond,
    pub text: String,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub id: String,
    pub id_generated: bool,
    pub from: Vec<NameRef>,
    pub to: Vec<NameRef>,
    pub ports: Vec<PortItem>,
    pub proto: ProtoSpec,
    pub purpose: String,
    pub when: Vec<When>,
    /// Set when `monitor learn` proposed the rule: the traffic it was learnt from.
    pub learnt: Option<Learnt>,
    pub pos: Pos,
}

/// The `learnt:` provenance of a rule: what `monitor learn` saw when it
/// proposed it (docs/learn.md). Kept so that a reviewer, and later runs,
/// can tell a rule read from the vendor's document from one inferred from
/// traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learnt {
    /// Undocumented flows the rule was proposed for.
    pub flows: u64,
    /// The clients and servers seen (host names or addresses; long lists end in "+N more").
    pub clients: Vec<String>,
    pub servers: Vec<String>,
    /// RFC 3339, as written.
    pub first_seen: String,
    pub last_seen: String,
    /// The window the traffic was taken from, as written (`24h`, or `whole capture`).
    pub window: String,
    /// The captures (or agents) the flows came from.
    pub seen_in: Vec<String>,
    pub pos: Pos,
}

/// Ports of a service that only some zones or services may reach.
#[derive(Clone, Debug)]
pub struct Exposure {
    pub id: String,
    pub id_generated: bool,
    pub to: Vec<NameRef>,
    pub ports: Vec<PortItem>,
    pub proto: ProtoSpec,
    pub only_from: Vec<NameRef>,
    pub purpose: String,
    pub when: Vec<When>,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub struct Matrix {
    /// The path as given, used in every position.
    pub file: Arc<str>,
    pub description: String,
    pub variables: BTreeMap<String, Variable>,
    pub profiles: BTreeMap<String, Profile>,
    /// User zones plus the built-in `loopback` and `internet`.
    pub zones: BTreeMap<String, Zone>,
    pub services: BTreeMap<String, Service>,
    /// Static DNS answers: name → addresses.
    pub bindings: BTreeMap<String, Binding>,
    pub rules: Vec<Rule>,
    pub exposures: Vec<Exposure>,
}

impl Matrix {
    /// Reads and checks a matrix file. Errors carry every problem found;
    /// warnings (duplicates, contradictions, unused names) do not stop loading.
    pub fn load(path: &Path) -> Result<(Matrix, Vec<Warning>), MatrixError> {
        // Refused before it is read when larger than the limit (crate::yaml_limits).
        let text = crate::yaml_limits::read(path).map_err(|e| MatrixError::Io {
            path: path.display().to_string(),
            source: match e {
                crate::yaml_limits::ReadError::Io(e) => e,
                limit => std::io::Error::other(limit.to_string()),
            },
        })?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        Matrix::from_str(&text, &path.display().to_string(), &dir)
    }

    /// Parses matrix text; `file` names it in positions and `dir` is where
    /// relative `prefixes: file:` paths are looked up.
    pub fn from_str(text: &str, file: &str, dir: &Path) -> Result<(Matrix, Vec<Warning>), MatrixError> {
        let (m, mut warnings) = parse::parse(text, file, dir)?;
        warnings.extend(lint::lint(&m));
        warnings.sort_by(|a, b| a.pos.cmp(&b.pos));
        Ok((m, warnings))
    }

    /// Every DNS name or `*.suffix` pattern that services are placed on,
    /// with its service: what a DNS cache should watch for.
    pub fn fqdn_patterns(&self) -> Vec<(&str, &FqdnPattern)> {
        self.services
            .iter()
            .flat_map(|(name, s)| {
                s.placements.iter().filter_map(move |p| match &p.kind {
                    PlacementKind::Fqdn(f) => Some((name.as_str(), f)),
                    _ => None,
                })
            })
            .collect()
    }

    /// Whether `name` is a service, a zone, or `any`.
    pub fn is_entity(&self, name: &str) -> bool {
        name == ANY || self.services.contains_key(name) || self.zones.contains_key(name)
    }
}

#[cfg(test)]
mod tests;
