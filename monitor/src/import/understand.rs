//! Reads the meaning out of a document's blocks: which columns hold ports,
//! sources and targets; what "Outbound (from RP-PAM to DB)", "HA only",
//! "TCP + UDP" or "must be blocked from external access" say; which names are
//! the product's own nodes, other host groups or DNS names. Naming
//! conventions are in docs/import.md.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::LazyLock,
};

use regex::Regex;

use super::{Block, Edge, ImportError, Options, Row, Table, Warning};

/// The importer's reading of a document.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    /// The product's name as the document writes it (e.g. "RP-PAM").
    pub product: Option<String>,
    /// By slug.
    pub services: BTreeMap<String, DraftService>,
    /// Profile name → what the document said.
    pub profiles: BTreeMap<String, String>,
    pub rules: Vec<DraftRule>,
    pub exposures: Vec<DraftExposure>,
    /// Audiences outside the cluster (a perimeter table's "Operators"), by
    /// zone name: placeholders whose CIDRs the user fills in.
    pub zones: BTreeMap<String, DraftZone>,
    /// Profile → the line of the note it was made from ("Connections
    /// originating from the Broker are only necessary when ...").
    pub profile_notes: BTreeMap<String, usize>,
    pub warnings: Vec<Warning>,
}

/// A zone standing for people outside the cluster, without addresses yet.
#[derive(Clone, Debug)]
pub struct DraftZone {
    /// The audience as the document writes it.
    pub name: String,
    pub line: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    Group(String),
    /// Inventory host names, from a mapping table's Hosts column ("db01, db02").
    Hosts(Vec<String>),
    Fqdns(Vec<String>),
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::Group(g) => write!(f, "group {g}"),
            Placement::Hosts(h) => write!(f, "hosts {}", h.join(", ")),
            Placement::Fqdns(n) => write!(f, "fqdns {}", n.join(", ")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct DraftService {
    /// The names the document uses for it.
    pub names: BTreeSet<String>,
    pub placement: Placement,
    /// Where the placement came from: a mapping table line, `--group`, or the naming convention.
    pub placed_by: String,
    pub line: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftRule {
    /// A service slug, or `any`, `internet`, `loopback`.
    pub from: String,
    pub to: String,
    pub ports: Vec<(u16, u16)>,
    /// `tcp`, `udp` or `both`.
    pub proto: &'static str,
    pub purpose: String,
    /// Conditions, all of which must hold (`ha`, `!ha`, profile names).
    pub when: Vec<String>,
    /// Every document line this rule was read from, with its text.
    pub sources: Vec<(usize, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftExposure {
    pub to: String,
    pub ports: Vec<(u16, u16)>,
    pub proto: &'static str,
    pub only_from: Vec<String>,
    pub purpose: String,
    pub when: Vec<String>,
    pub sources: Vec<(usize, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Port,
    Proto,
    Service,
    Source,
    Target,
    Direction,
    Action,
    Group,
    /// People outside the cluster: a perimeter table's "Audience".
    Audience,
    Text,
}

pub(crate) fn role(col: &str) -> Role {
    let c = col.trim().to_ascii_lowercase();
    match c.as_str() {
        "port" | "ports" | "port(s)" | "port number" | "port range" => Role::Port,
        "protocol" | "proto" | "protocols" => Role::Proto,
        "service" | "component" => Role::Service,
        "source" | "source service" | "from" | "client" | "source host" => Role::Source,
        "destination" | "target" | "target service" | "destination service" | "to" | "server" => Role::Target,
        "direction" => Role::Direction,
        "action" => Role::Action,
        "host group" | "inventory group" | "group" | "runs on" | "hosts" | "ansible group"
        | "ansible host group" | "host groups" | "host names" | "hostnames" => Role::Group,
        "audience" | "audiences" | "who" | "accessed by" => Role::Audience,
        _ => Role::Text,
    }
}

static FQDN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:\*\.)?(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:com|net|org|io|ai|local|corp|internal|cloud|dev|app|co|us|eu|de|uk|gov|edu)\b").unwrap()
});
static FROM_TO: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\(?from ([^()]+?) to ([^()]+?)\)").unwrap());
static ALL_NODES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)\ball ([\w-]+) nodes\b").unwrap());
static GLOBAL_PROTO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\ball ([\w -]+?) traffic (?:is|uses|runs over) (tcp (?:and|\+|&) udp|udp (?:and|\+|&) tcp|both tcp and udp|udp|tcp)").unwrap()
});
static PORT_MENTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:\bports?\b[ :=]*|LocalPort |port=)\x22?(\d{1,5}(?:\s*-\s*\d{1,5})?)").unwrap()
});
static BETWEEN_NODES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"between (?:all )?(?:the )?(?:cluster )?nodes").unwrap());
static HA_WORDS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\bha\b|multi-node|high availability").unwrap());
static PARENS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s*\([^)]*\)").unwrap());
static NUMBERS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d{1,5}(?:\s*-\s*\d{1,5})?").unwrap());
/// "Same as single-node (LVS, AI, AD, Entra ID) — apply to all nodes."
static SAME_AS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)^same (?:rules )?as\b").unwrap());
pub(crate) static EXPOSURE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)blocked from (?:external|outside)|localhost only|only (?:on|from) localhost|must not be (?:exposed|reachable)|never (?:be )?exposed")
        .unwrap()
});

struct Ctx<'a> {
    opts: &'a Options,
    draft: Draft,
    /// Document name → placement, from the document's mapping table (wins) and `--group`.
    mapping: Vec<(String, Placement, String)>, // (name, placement, placed_by)
    product: Option<String>,
    global_proto: Vec<(Vec<String>, &'static str, usize)>,
    /// `--group` names that placed a service.
    used_groups: BTreeSet<String>,
    /// Notes that condition a class of rules, applied once every rule is read.
    notes: Vec<Note>,
    /// Sentences saying ports must be reachable only by some audience,
    /// applied once every service is known.
    reach: Vec<Reach>,
}

/// "Port 22 on the scheduler hosts must be reachable only by Operators."
struct Reach {
    line: usize,
    text: String,
    ports: Vec<(u16, u16)>,
    who: String,
    when: Vec<String>,
}

/// "Connections originating from the Broker are only necessary when you
/// enable feature X": the rules it restricts get the condition.
struct Note {
    line: usize,
    text: String,
    scope: Scope,
    /// The profile's name, from the condition's words (`feature-x`).
    cond: String,
}

enum Scope {
    From(String),
    To(String),
    Ports(Vec<(u16, u16)>),
}

pub(crate) fn understand(blocks: &[Block], opts: &Options) -> Result<Draft, ImportError> {
    let mut ctx = Ctx {
        opts,
        draft: Draft::default(),
        mapping: Vec::new(),
        product: None,
        global_proto: Vec::new(),
        used_groups: BTreeSet::new(),
        notes: Vec::new(),
        reach: Vec::new(),
    };
    ctx.prescan(blocks)?;
    ctx.draft.product = ctx.product.clone();

    // Section conditions: (heading level, is a top-level heading, conditions).
    let mut section: Option<(u8, Vec<String>)> = None;
    let mut intro: Vec<(usize, String)> = Vec::new();
    let mut table_rules = 0usize;
    let mut edge_rules: Vec<(usize, DraftRule)> = Vec::new();
    for b in blocks {
        match b {
            Block::Heading { level, text, .. } => {
                intro.clear();
                let top = *level == 1
                    || text.contains('—')
                    || text.contains(':')
                    || text.to_lowercase().contains("deployment");
                let cond = deployment_cond(text);
                let ends = match &section {
                    Some((l, _)) => *level <= *l && (top || cond.is_some()),
                    None => false,
                };
                if ends {
                    section = None;
                }
                if let Some(c) = cond {
                    section = Some((*level, vec![c.to_string()]));
                }
            }
            Block::Prose { line, text } => {
                ctx.prose(*line, text, section.as_ref().map(|s| s.1.clone()).unwrap_or_default());
                intro.push((*line, text.clone()));
            }
            Block::Item { line, text } => {
                ctx.item(*line, text, section.as_ref().map(|s| s.1.clone()).unwrap_or_default());
            }
            Block::Table(t) => {
                let before = ctx.draft.rules.len();
                ctx.table(t, &intro, section.as_ref().map(|s| s.1.clone()).unwrap_or_default());
                table_rules += ctx.draft.rules.len() - before;
            }
            Block::Edge(e) => {
                for r in ctx.edge(e) {
                    edge_rules.push((e.line, r));
                }
            }
        }
    }
    // Diagram edges: merged into the table rules when they agree, reported when not.
    let have_tables = table_rules > 0;
    let n_text_rules = ctx.draft.rules.len();
    for (line, r) in edge_rules {
        if have_tables {
            let same_pair: Vec<&DraftRule> =
                ctx.draft.rules[..n_text_rules].iter().filter(|t| t.from == r.from && t.to == r.to).collect();
            if same_pair.is_empty() {
                ctx.warn(line, format!("the diagram shows {} -> {} on {}, which no table documents; imported from the diagram", r.from, r.to, fmt_ports(&r.ports)));
            } else {
                let covered: Vec<(u16, u16)> = same_pair.iter().flat_map(|t| t.ports.clone()).collect();
                if !subset(&r.ports, &covered) {
                    ctx.warn(
                        line,
                        format!(
                            "the diagram shows {} -> {} on {}, the tables on {}; both imported",
                            r.from,
                            r.to,
                            fmt_ports(&r.ports),
                            fmt_ports(&covered)
                        ),
                    );
                } else if let Some(t) =
                    same_pair.iter().find(|t| overlaps(&t.ports, &r.ports) && t.proto != r.proto)
                {
                    ctx.warn(
                        line,
                        format!(
                            "the diagram says {} for {} -> {} on {}, the table (line {}) says {}",
                            r.proto,
                            r.from,
                            r.to,
                            fmt_ports(&r.ports),
                            t.sources[0].0,
                            t.proto
                        ),
                    );
                }
            }
        }
        ctx.add_rule(r);
    }
    for note in std::mem::take(&mut ctx.notes) {
        ctx.apply_note(note);
    }
    for r in std::mem::take(&mut ctx.reach) {
        ctx.apply_reach(r);
    }
    for (name, group) in &opts.groups {
        if !ctx.used_groups.contains(name) {
            ctx.warn(0, format!("--group {name}={group}: the document names no service {name:?}"));
        }
    }
    Ok(ctx.draft)
}

fn deployment_cond(heading: &str) -> Option<&'static str> {
    let h = heading.to_lowercase();
    if h.contains("single-node") || h.contains("single node") || h.contains("standalone") {
        Some("!ha")
    } else if h.contains("multi-node") || HA_WORDS.is_match(&h) || h.contains("high availability") {
        Some("ha")
    } else {
        None
    }
}

impl Ctx<'_> {
    fn warn(&mut self, line: usize, message: String) {
        self.draft.warnings.push(Warning { line, message });
    }

    /// Finds the product, the service → group mapping and global protocol notes.
    fn prescan(&mut self, blocks: &[Block]) -> Result<(), ImportError> {
        for (name, group) in &self.opts.groups {
            if !group.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') || group.is_empty() {
                return Err(ImportError::BadGroup {
                    doc: self.opts.doc_name.clone(),
                    spec: format!("{name}={group}"),
                    why: "an inventory group name uses letters, digits, `_` and `-`".into(),
                });
            }
        }
        self.product = self.opts.product.clone();
        for b in blocks {
            match b {
                Block::Table(t) => {
                    let roles: Vec<Role> = t.header.iter().map(|h| role(h)).collect();
                    let gi = roles.iter().position(|&r| r == Role::Group);
                    let ni =
                        roles.iter().position(|&r| matches!(r, Role::Service | Role::Target | Role::Text));
                    if let (Some(gi), Some(ni), false) = (gi, ni, roles.contains(&Role::Port)) {
                        for r in &t.rows {
                            let (Some(n), Some(g)) = (r.cells.get(ni), r.cells.get(gi)) else { continue };
                            if n.is_empty() || g.trim().is_empty() {
                                continue;
                            }
                            match mapping_cell(&t.header[gi], g) {
                                Ok(p) => self.mapping.push((
                                    n.clone(),
                                    p,
                                    format!("mapping table, line {}", r.line),
                                )),
                                Err(why) => {
                                    self.warn(r.line, format!("{why}; {n:?} is not placed by this row"))
                                }
                            }
                        }
                    }
                    for r in &t.rows {
                        for c in &r.cells {
                            if self.product.is_none() {
                                if let Some(m) = FROM_TO.captures(c) {
                                    self.product = Some(m[1].trim().to_string());
                                } else if let Some(m) = ALL_NODES.captures(c) {
                                    self.product = Some(m[1].to_string());
                                }
                            }
                        }
                    }
                }
                Block::Prose { line, text } | Block::Item { line, text } => {
                    if let Some(m) = GLOBAL_PROTO.captures(text) {
                        let words = m[1].split_whitespace().map(str::to_lowercase).collect();
                        let p = proto_words(&m[2]).unwrap_or("tcp");
                        self.global_proto.push((words, p, *line));
                    }
                }
                _ => {}
            }
        }
        for (name, group) in &self.opts.groups {
            self.mapping.push((name.clone(), Placement::Group(group.clone()), "--group".into()));
        }
        Ok(())
    }

    /// A service, zone or built-in name for a name in the document.
    fn entity(&mut self, name: &str, line: usize, subgraph: Option<&str>) -> Option<String> {
        let name = name.trim().trim_matches(['*', '`', '"']).trim();
        let plain = strip_paren(name);
        let lower = plain.to_lowercase();
        match lower.as_str() {
            "" => return None,
            "any" | "anywhere" | "all" | "everyone" | "0.0.0.0/0" | "any source" | "clients"
            | "all clients" => return Some("any".into()),
            "internet" | "the internet" | "public internet" => return Some("internet".into()),
            "localhost" | "127.0.0.1" | "loopback" | "same host" => return Some("loopback".into()),
            _ => {}
        }
        let fqdns: Vec<String> = FQDN.find_iter(name).map(|m| m.as_str().to_lowercase()).collect();
        if !fqdns.is_empty() {
            return Some(self.fqdn_service(&fqdns, line));
        }
        let base = base_name(&plain);
        let is_product = self.product.as_ref().is_some_and(|p| base.eq_ignore_ascii_case(p));
        let slug = if is_product {
            self.product
                .as_ref()
                .map(|p| p.to_lowercase().chars().filter(char::is_ascii_alphanumeric).collect())
                .unwrap()
        } else {
            slug(&without_article(&plain))
        };
        if slug.is_empty() {
            return None;
        }
        if self.draft.zones.contains_key(&slug) {
            return Some(slug);
        }
        if !self.draft.services.contains_key(&slug) {
            // The document's mapping table wins, then --group, then subgraphs, then the convention.
            let names_it = |n: &str| {
                n.eq_ignore_ascii_case(name)
                    || n.eq_ignore_ascii_case(&base)
                    || base_name(&strip_paren(n)).eq_ignore_ascii_case(&base)
                    || slug_of(n) == slug
                    || n == slug
            };
            let from_doc = self.mapping.iter().find(|(n, _, by)| by != "--group" && names_it(n)).cloned();
            let from_cli =
                self.mapping.iter().rev().find(|(n, _, by)| by == "--group" && names_it(n)).cloned();
            if let Some((n, g, _)) = &from_cli {
                self.used_groups.insert(n.clone());
                if let Some((_, dg, by)) = from_doc.as_ref().filter(|(_, dg, _)| dg != g) {
                    self.warn(
                        line,
                        format!(
                            "--group {n}={} ignored: the document's {by} places it on {}",
                            group_text(g),
                            group_text(dg)
                        ),
                    );
                }
            }
            let mapped = from_doc.or(from_cli);
            let mapped = mapped.as_ref();
            let (placement, by) = match (mapped, subgraph) {
                (Some((_, p, by)), _) => (p.clone(), by.clone()),
                (None, Some(sg)) => (
                    Placement::Group(sg.trim().replace(['-', ' '], "_").to_lowercase()),
                    format!("subgraph {sg:?}"),
                ),
                (None, None) if is_product => (
                    Placement::Group(format!("{}_nodes", slug.replace('-', "_"))),
                    "convention: <product>_nodes".into(),
                ),
                (None, None) => {
                    (Placement::Group(slug.replace('-', "_")), "convention: the name's slug".into())
                }
            };
            if let (true, Placement::Group(group)) = (by.starts_with("convention"), &placement) {
                self.warn(line, format!("{plain:?} placed by name only, no mapping in the document: check `{group}` against your inventory (or place it with --group \"{plain}=GROUP\")"));
            }
            self.draft.services.insert(
                slug.clone(),
                DraftService { names: BTreeSet::new(), placement, placed_by: by, line },
            );
        }
        self.draft.services.get_mut(&slug).unwrap().names.insert(plain.to_string());
        Some(slug)
    }

    fn fqdn_service(&mut self, fqdns: &[String], line: usize) -> String {
        let existing = self.draft.services.iter().find_map(|(k, s)| match &s.placement {
            Placement::Fqdns(f) if fqdns.iter().any(|q| f.contains(q)) => Some(k.clone()),
            _ => None,
        });
        let key = existing.unwrap_or_else(|| slug(&fqdns[0]));
        let s = self.draft.services.entry(key.clone()).or_insert_with(|| DraftService {
            names: BTreeSet::new(),
            placement: Placement::Fqdns(Vec::new()),
            placed_by: "DNS names in the document".into(),
            line,
        });
        if let Placement::Fqdns(f) = &mut s.placement {
            for q in fqdns {
                s.names.insert(q.clone());
                if !f.contains(q) {
                    f.push(q.clone());
                }
            }
        }
        key
    }

    fn product_slug(&mut self, line: usize) -> Option<String> {
        let p = self.product.clone()?;
        self.entity(&p, line, None)
    }

    fn table(&mut self, t: &Table, intro: &[(usize, String)], section: Vec<String>) {
        let roles: Vec<Role> = t.header.iter().map(|h| role(h)).collect();
        let Some(pi) = roles.iter().position(|&r| r == Role::Port) else {
            if !roles.contains(&Role::Group) {
                for r in &t.rows {
                    if let Some(m) = PORT_MENTION.captures(&r.cells.join(" ")) {
                        self.warn(
                            r.line,
                            format!(
                                "mentions port {} in a table without a port column ({}); not imported",
                                &m[1],
                                t.header.join(" | ")
                            ),
                        );
                    }
                }
            }
            return;
        };
        for r in &t.rows {
            self.row(t, &roles, pi, r, intro, &section);
        }
    }

    fn row(
        &mut self,
        t: &Table,
        roles: &[Role],
        pi: usize,
        r: &Row,
        intro: &[(usize, String)],
        section: &[String],
    ) {
        let cell = |role: Role| cell_of(roles, r, role);
        let port_cell = r.cells.get(pi).cloned().unwrap_or_default();
        let ports = match parse_ports(&port_cell) {
            Ok(p) if !p.is_empty() => p,
            Ok(_) => {
                self.warn(
                    r.line,
                    format!("no port in the {:?} column; row not imported: {}", t.header[pi], r.raw),
                );
                return;
            }
            Err(e) => {
                self.warn(r.line, format!("{e}; row not imported: {}", r.raw));
                return;
            }
        };
        if let Some(a) = cell(Role::Action) {
            if matches!(a.to_lowercase().as_str(), "deny" | "block" | "drop" | "reject") {
                self.warn(r.line, format!("a {a} rule is not a documented flow; not imported (add an exposure constraint if it protects a port): {}", r.raw));
                return;
            }
        }
        let texts: Vec<String> = roles
            .iter()
            .zip(&r.cells)
            .filter(|(ro, _)| matches!(ro, Role::Text | Role::Service | Role::Direction | Role::Proto))
            .map(|(_, c)| c.clone())
            .collect();
        let all_text = r.cells.join(" ");
        let mut proto = proto_words(&cell(Role::Proto).unwrap_or_default())
            .or_else(|| proto_words(&texts.join(" ")))
            .unwrap_or("tcp");
        for (words, p, _) in &self.global_proto {
            let lt = all_text.to_lowercase();
            if words.iter().all(|w| lt.contains(w.as_str())) {
                proto = p;
            }
        }
        let service = cell(Role::Service);
        let text = cell(Role::Text);
        let purpose = match (&service, &text) {
            (Some(s), Some(t)) => format!("{s}: {t}"),
            (Some(s), None) => s.clone(),
            (None, Some(t)) => t.clone(),
            (None, None) => String::new(),
        };
        let mut when = section.to_vec();
        for c in roles
            .iter()
            .zip(&r.cells)
            .filter(|(ro, _)| matches!(ro, Role::Text | Role::Direction))
            .map(|(_, c)| c)
        {
            for (cond, desc) in conditions(c) {
                self.draft.profiles.entry(cond.trim_start_matches('!').to_string()).or_insert(desc);
                when.push(cond);
            }
        }
        let source = (r.line, r.raw.clone());
        if roles.contains(&Role::Audience) {
            self.perimeter_row(roles, r, Perimeter { ports, proto, purpose, when, source });
            return;
        }
        // Who talks to whom.
        let mut pairs: Vec<(String, String)> = Vec::new();
        let src = cell(Role::Source);
        let dst = cell(Role::Target);
        if src.is_some() || dst.is_some() {
            // "Consul Client, Consul Server": one rule per name (FQDN lists stay one service).
            let split = |s: &str| -> Vec<String> {
                if FQDN.is_match(s) {
                    vec![s.to_string()]
                } else {
                    s.split(", ").map(str::to_string).collect()
                }
            };
            let froms: Vec<Option<String>> = match &src {
                Some(s) => split(s).iter().map(|n| self.entity(n, r.line, None)).collect(),
                None => vec![Some("any".to_string())],
            };
            let tos: Vec<Option<String>> = match &dst {
                Some(d) => split(d).iter().map(|n| self.entity(n, r.line, None)).collect(),
                None => vec![self.product_slug(r.line)],
            };
            for f in &froms {
                for t in &tos {
                    match (f, t) {
                        (Some(f), Some(t)) => pairs.push((f.clone(), t.clone())),
                        _ => {
                            self.warn(
                                r.line,
                                format!(
                                    "cannot tell the source and destination; row not imported: {}",
                                    r.raw
                                ),
                            );
                            return;
                        }
                    }
                }
            }
        } else if let Some(dir) = cell(Role::Direction) {
            let ld = dir.to_lowercase();
            if let Some(m) = FROM_TO.captures(&dir) {
                let (f, t) = (m[1].to_string(), m[2].to_string());
                if let (Some(f), Some(t)) = (self.entity(&f, r.line, None), self.entity(&t, r.line, None)) {
                    pairs.push((f, t));
                }
            } else if ld.starts_with("inbound") || ld.starts_with("ingress") {
                if let Some(p) = self.product_slug(r.line) {
                    pairs.push(("any".into(), p));
                }
            } else if ld.starts_with("outbound") || ld.starts_with("egress") {
                let fq: Vec<String> = FQDN.find_iter(&all_text).map(|m| m.as_str().to_lowercase()).collect();
                let target = if !fq.is_empty() {
                    Some(self.fqdn_service(&fq, r.line))
                } else {
                    match &service {
                        Some(s) if !s.to_lowercase().contains("outbound") => self.entity(s, r.line, None),
                        _ => Some("internet".into()),
                    }
                };
                if let (Some(p), Some(t)) = (self.product_slug(r.line), target) {
                    pairs.push((p, t));
                }
            } else if ld.starts_with("between") || ld.starts_with("bidirectional") || ld.contains("cluster") {
                if let Some(p) = self.product_slug(r.line) {
                    pairs.push((p.clone(), p));
                }
            }
            if pairs.is_empty() {
                self.warn(r.line, format!("direction {dir:?} not understood (or no product name: use --product); row not imported: {}", r.raw));
                return;
            }
        } else {
            // No direction column: the section's text says where these ports are used.
            for (_, s) in intro {
                for sentence in s.split(". ") {
                    let ls = sentence.to_lowercase();
                    let mut w = when.clone();
                    if let Some(c) = sentence_cond(&ls) {
                        w.push(c.into());
                    }
                    let pair = if ls.contains("localhost") && !EXPOSURE.is_match(sentence) {
                        Some(("loopback".to_string(), "loopback".to_string()))
                    } else if BETWEEN_NODES.is_match(&ls) {
                        self.product_slug(r.line).map(|p| (p.clone(), p))
                    } else {
                        None
                    };
                    if let Some((f, t)) = pair {
                        self.add_rule(DraftRule {
                            from: f,
                            to: t,
                            ports: ports.clone(),
                            proto,
                            purpose: purpose.clone(),
                            when: w,
                            sources: vec![source.clone()],
                        });
                        pairs.push((String::new(), String::new()));
                    }
                }
            }
            if pairs.is_empty() {
                self.warn(r.line, format!("the table has no source, destination or direction column and the text before it does not say; row not imported: {}", r.raw));
            }
            return;
        }
        if src.is_none() && dst.is_some() && cell(Role::Direction).is_none() {
            self.warn(r.line, "no source column: the rule allows any source".into());
        }
        for (f, t) in pairs {
            let rule = DraftRule {
                from: f,
                to: t,
                ports: ports.clone(),
                proto,
                purpose: purpose.clone(),
                when: when.clone(),
                sources: vec![source.clone()],
            };
            self.add_rule(rule);
        }
    }

    fn prose(&mut self, line: usize, text: &str, section: Vec<String>) {
        if self.note(line, text, &section) {
            return;
        }
        let ports: Vec<&str> = PORT_MENTION.captures_iter(text).map(|c| c.get(1).unwrap().as_str()).collect();
        if EXPOSURE.is_match(text) {
            let parsed = parse_ports(&ports.join(","));
            match (parsed, self.product_slug(line)) {
                (Ok(p), Some(to)) if !p.is_empty() => {
                    let mut when = section;
                    if let Some(c) = sentence_cond(&text.to_lowercase()) {
                        when.push(c.into());
                    }
                    when.dedup();
                    self.draft.exposures.push(DraftExposure {
                        to,
                        ports: p,
                        proto: "tcp",
                        only_from: vec!["loopback".into()],
                        purpose: text.to_string(),
                        when,
                        sources: vec![(line, text.to_string())],
                    });
                }
                _ => self.warn(line, format!("says ports must not be reachable, but names no port or product; not imported: {text}")),
            }
            return;
        }
        if SAME_AS.is_match(text) {
            self.warn(
                line,
                format!("refers to rules given elsewhere; they are imported only with the conditions of their own section, review them: {text}"),
            );
            return;
        }
        if !ports.is_empty() && !GLOBAL_PROTO.is_match(text) {
            self.warn(
                line,
                format!("mentions port {} outside a port table; not imported: {}", ports.join(", "), text),
            );
        }
    }

    /// A list item such as "Port 5432/tcp from the API servers to PostgreSQL (HA only)".
    fn item(&mut self, line: usize, text: &str, section: Vec<String>) {
        if self.note(line, text, &section) {
            return;
        }
        static ITEM_PORTS: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"(?i)(?:\bports?\s+)?(\d{1,5}(?:\s*-\s*\d{1,5})?(?:\s*(?:,|and|or)\s*\d{1,5}(?:\s*-\s*\d{1,5})?)*)(?:/(tcp|udp))?").unwrap()
        });
        static FROM: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"(?i)\bfrom (?:the )?([^,;()]+?)(?: to |\s*[,;(]|\s*$)").unwrap());
        static TO: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"(?i)\bto (?:the )?([^,;()]+?)(?:\s*[,;(]|\s*$| from )").unwrap());
        static PORT_WORD: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"(?i)\bports?\b|\d/(?:tcp|udp)").unwrap());
        let has_port_word = PORT_WORD.is_match(text);
        if !has_port_word {
            return;
        }
        let Some(m) =
            ITEM_PORTS.captures_iter(text).find(|c| parse_ports(&c[1]).is_ok_and(|p| !p.is_empty()))
        else {
            self.warn(line, format!("mentions a port but none could be read; not imported: {text}"));
            return;
        };
        let ports = parse_ports(&m[1]).unwrap();
        let proto = m
            .get(2)
            .map(|p| if p.as_str().eq_ignore_ascii_case("udp") { "udp" } else { "tcp" })
            .or_else(|| proto_words(text))
            .unwrap_or("tcp");
        let from = FROM.captures(text).map(|c| c[1].trim().to_string());
        let to = TO.captures(text).map(|c| c[1].trim().to_string());
        let Some(to_name) = to.clone().or_else(|| self.product.clone()) else {
            self.warn(
                line,
                format!("no destination (\"to ...\") and no product name (--product); not imported: {text}"),
            );
            return;
        };
        let f = match &from {
            Some(f) => self.entity(f, line, None),
            None => Some("any".into()),
        };
        let t = self.entity(&to_name, line, None);
        let (Some(f), Some(t)) = (f, t) else {
            self.warn(line, format!("cannot tell the source and destination; not imported: {text}"));
            return;
        };
        if from.is_none() {
            self.warn(line, "no source (\"from ...\"): the rule allows any source".into());
        }
        let mut when = section;
        for (cond, desc) in conditions(text) {
            self.draft.profiles.entry(cond.trim_start_matches('!').to_string()).or_insert(desc);
            when.push(cond);
        }
        self.add_rule(DraftRule {
            from: f,
            to: t,
            ports,
            proto,
            purpose: text.to_string(),
            when,
            sources: vec![(line, text.to_string())],
        });
    }

    fn edge(&mut self, e: &Edge) -> Vec<DraftRule> {
        let numbers: Vec<String> = NUMBERS.find_iter(&e.label).map(|m| m.as_str().to_string()).collect();
        let ports = match parse_ports(&numbers.join(",")) {
            Ok(p) if !p.is_empty() => p,
            _ => {
                self.warn(e.line, format!("diagram edge without a port; not imported: {}", e.raw));
                return Vec::new();
            }
        };
        let proto = proto_words(&e.label).unwrap_or("tcp");
        let (Some(a), Some(b)) = (
            self.entity(&e.from.label, e.line, e.from.subgraph.as_deref()),
            self.entity(&e.to.label, e.line, e.to.subgraph.as_deref()),
        ) else {
            self.warn(e.line, format!("diagram edge between unnamed nodes; not imported: {}", e.raw));
            return Vec::new();
        };
        let mut when = Vec::new();
        for (cond, desc) in conditions(&e.label) {
            self.draft.profiles.entry(cond.trim_start_matches('!').to_string()).or_insert(desc);
            when.push(cond);
        }
        let purpose = format!("{} -> {}: {}", e.from.label, e.to.label, e.label);
        let mk = |f: &str, t: &str| DraftRule {
            from: f.into(),
            to: t.into(),
            ports: ports.clone(),
            proto,
            purpose: purpose.clone(),
            when: when.clone(),
            sources: vec![(e.line, e.raw.clone())],
        };
        let mut v = vec![mk(&a, &b)];
        if e.both && a != b {
            v.push(mk(&b, &a));
        }
        v
    }

    /// A perimeter table's row ("Operators / Support staff | webtier | 443 |
    /// Web console | Optional"): a rule from each audience (a zone waiting
    /// for its CIDRs, or `any` for "Everyone") to the host group, and an
    /// exposure constraint when a cell says the port must be reachable only
    /// by some audience.
    fn perimeter_row(&mut self, roles: &[Role], r: &Row, p: Perimeter) {
        let target = match (cell_of(roles, r, Role::Group), cell_of(roles, r, Role::Target)) {
            (Some(g), _) => self.group_service(&g, r.line),
            (None, Some(t)) => self.entity(&t, r.line, None),
            (None, None) => self.product_slug(r.line),
        };
        let froms = self.audiences(&cell_of(roles, r, Role::Audience).unwrap_or_default(), r.line);
        let Some(to) = target.filter(|_| !froms.is_empty()) else {
            self.warn(
                r.line,
                format!("cannot tell the audience and the host group; row not imported: {}", r.raw),
            );
            return;
        };
        for f in froms {
            self.add_rule(DraftRule {
                from: f,
                to: to.clone(),
                ports: p.ports.clone(),
                proto: p.proto,
                purpose: p.purpose.clone(),
                when: p.when.clone(),
                sources: vec![p.source.clone()],
            });
        }
        let texts: Vec<&String> =
            roles.iter().zip(&r.cells).filter(|(ro, _)| **ro == Role::Text).map(|(_, c)| c).collect();
        for c in texts {
            let Some(m) = REACHABLE_ONLY.captures(c) else { continue };
            let who = m.iter().skip(1).flatten().next().map(|g| g.as_str()).unwrap_or_default();
            let only_from = self.audiences(who, r.line);
            if only_from.is_empty() {
                self.warn(r.line, format!("says the port is reachable only by someone it does not name; no exposure constraint: {c}"));
                continue;
            }
            self.draft.exposures.push(DraftExposure {
                to: to.clone(),
                ports: p.ports.clone(),
                proto: p.proto,
                only_from,
                purpose: format!("{}: {c}", p.purpose),
                when: p.when.clone(),
                sources: vec![p.source.clone()],
            });
        }
    }

    /// The service for a host group a perimeter table names directly: the
    /// service already placed there (by the document's mapping), else a new
    /// one named after the group.
    fn group_service(&mut self, group: &str, line: usize) -> Option<String> {
        let g = strip_paren(group.trim().trim_matches('`'));
        if g.is_empty() || !g.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            self.warn(line, format!("{group:?} is not an inventory group name (letters, digits, `_`, `-`)"));
            return None;
        }
        let placed = Placement::Group(g.clone());
        if let Some(k) =
            self.draft.services.iter().find(|(_, s)| s.placement == placed).map(|(k, _)| k.clone())
        {
            return Some(k);
        }
        let mapped =
            self.mapping.iter().find(|(_, mp, by)| *mp == placed && by != "--group").map(|m| m.0.clone());
        if let Some(name) = mapped {
            return self.entity(&name, line, None);
        }
        let mut key = slug(&g);
        if self.draft.services.contains_key(&key) || self.draft.zones.contains_key(&key) {
            key = format!("{key}-hosts");
        }
        self.draft.services.insert(
            key.clone(),
            DraftService {
                names: BTreeSet::from([g]),
                placement: placed,
                placed_by: format!("perimeter table, line {line}: the host group itself"),
                line,
            },
        );
        Some(key)
    }

    /// The entities for an audience cell: "Operators / Support staff" gives
    /// two zones (placeholders without CIDRs, each with a warning),
    /// "Everyone" gives `any`; a name that is already a service stays one.
    fn audiences(&mut self, cell: &str, line: usize) -> Vec<String> {
        static SEP: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"\s*(?:/|,|;|&|\band\b|\bor\b)\s*").unwrap());
        let mut out = Vec::new();
        // "0.0.0.0/0" is not "0.0.0.0" and "0".
        let parts: Vec<&str> = match cell.trim() {
            c @ ("0.0.0.0/0" | "::/0") => vec![c],
            c => SEP.split(c).collect(),
        };
        for a in parts {
            let a = strip_paren(a.trim().trim_matches(['*', '`', '"']).trim());
            let name = match a.to_lowercase().as_str() {
                "" => continue,
                "everyone" | "anyone" | "anybody" | "any" | "all" | "all users" | "public" | "0.0.0.0/0"
                | "::/0" => "any".to_string(),
                "internet" | "the internet" | "public internet" => "internet".to_string(),
                _ => {
                    let z = slug(&without_article(&a));
                    if z.is_empty() {
                        continue;
                    }
                    if !self.draft.services.contains_key(&z) && !self.draft.zones.contains_key(&z) {
                        self.draft.zones.insert(z.clone(), DraftZone { name: a.clone(), line });
                        self.warn(line, format!("audience {a:?} is outside the cluster: zone `{z}` has no addresses yet; fill in its `cidrs:` in the draft (until then its rules match no client)"));
                    }
                    z
                }
            };
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    /// Reads a note that conditions a class of rules, or that says ports
    /// must be reachable only by some audience; true when `text` is one and
    /// says nothing else (a list item "Port 8443 from A to B, reachable only
    /// by A" is read as a flow too).
    fn note(&mut self, line: usize, text: &str, section: &[String]) -> bool {
        static SIDE: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"(?i)^(?:note:\s*)?(?:all\s+)?(?:connections|traffic|flows|requests)\s+(?:(?:originating|coming|initiated|sent)\s+)?(from|to)\s+(?:the\s+)?(.+?)\s+(?:are|is)\s+only\s+(?:necessary|needed|required|used)\s+(?:when|if)\s+(.+?)\.?$").unwrap()
        });
        static PORT: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"(?i)^(?:note:\s*)?(?:connections\s+(?:on|to)\s+)?ports?\s+(\d[\d\s,/a-z-]*?)\s+(?:are|is)\s+only\s+(?:necessary|needed|required|used)\s+(?:when|if)\s+(.+?)\.?$").unwrap()
        });
        let t = text.trim();
        if let Some(m) = REACHABLE_ONLY.captures(t) {
            let mentioned: Vec<&str> =
                PORT_MENTION.captures_iter(t).map(|c| c.get(1).unwrap().as_str()).collect();
            if let Ok(ports) = parse_ports(&mentioned.join(",")).and_then(|p| match p.is_empty() {
                true => Err(String::new()),
                false => Ok(p),
            }) {
                static FROM: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)\bfrom\b").unwrap());
                let whole = m.get(0).unwrap();
                let flow_too = FROM.is_match(&format!("{} {}", &t[..whole.start()], &t[whole.end()..]));
                let who = m.iter().skip(1).flatten().next().map_or("", |g| g.as_str()).to_string();
                self.reach.push(Reach { line, text: t.to_string(), ports, who, when: section.to_vec() });
                return !flow_too;
            }
        }
        let (scope, clause) = if let Some(m) = SIDE.captures(t) {
            let name = m[2].to_string();
            (
                if m[1].eq_ignore_ascii_case("from") { Scope::From(name) } else { Scope::To(name) },
                m[3].to_string(),
            )
        } else if let Some(m) = PORT.captures(t) {
            match parse_ports(&m[1]) {
                Ok(p) if !p.is_empty() => (Scope::Ports(p), m[2].to_string()),
                _ => return false,
            }
        } else {
            return false;
        };
        let cond = note_condition(&clause);
        if cond.is_empty() {
            self.warn(
                line,
                format!("a note conditions some rules, but its condition has no name; not applied: {t}"),
            );
        } else {
            self.notes.push(Note { line, text: t.to_string(), scope, cond });
        }
        true
    }

    /// Puts a note's condition on every rule it restricts, and cites the note.
    fn apply_note(&mut self, n: Note) {
        let (what, key) = match &n.scope {
            Scope::From(name) => (format!("connections from {name:?}"), self.known_entity(name)),
            Scope::To(name) => (format!("connections to {name:?}"), self.known_entity(name)),
            Scope::Ports(p) => (format!("port {}", fmt_ports(p)), None),
        };
        let hits = |r: &DraftRule| match &n.scope {
            Scope::From(_) => key.as_deref() == Some(r.from.as_str()),
            Scope::To(_) => key.as_deref() == Some(r.to.as_str()),
            Scope::Ports(p) => overlaps(&r.ports, p),
        };
        let mut count = 0;
        for r in self.draft.rules.iter_mut().filter(|r| hits(r)) {
            r.when.push(n.cond.clone());
            r.when.sort();
            r.when.dedup();
            let cite = (n.line, n.text.clone());
            if !r.sources.contains(&cite) {
                r.sources.push(cite);
            }
            count += 1;
        }
        if count == 0 {
            self.warn(
                n.line,
                format!("the note restricts {what}, but no imported rule has them; not applied: {}", n.text),
            );
            return;
        }
        self.draft.profiles.entry(n.cond.clone()).or_insert(n.text);
        self.draft.profile_notes.entry(n.cond).or_insert(n.line);
    }

    /// An exposure constraint from a sentence: the one service (or host
    /// group of one) the sentence names, on the ports it names, only from
    /// the audiences it names. Naming none or several is a warning.
    fn apply_reach(&mut self, r: Reach) {
        let named_in = |text: &str, n: &str| {
            Regex::new(&format!(r"(?i)(?:^|[^\w-]){}(?:$|[^\w-])", regex::escape(n)))
                .is_ok_and(|re| re.is_match(text))
        };
        let named = |n: &str| named_in(&r.text, n) && !named_in(&r.who, n);
        let targets: Vec<String> = self
            .draft
            .services
            .iter()
            .filter(|(_, s)| {
                s.names.iter().any(|n| named(n)) || matches!(&s.placement, Placement::Group(g) if named(g))
            })
            .map(|(k, _)| k.clone())
            .collect();
        let only_from = match targets.len() {
            1 => self.audiences(&r.who, r.line),
            _ => Vec::new(),
        };
        match (targets.as_slice(), only_from.is_empty()) {
            ([to], false) => self.draft.exposures.push(DraftExposure {
                to: to.clone(),
                ports: r.ports,
                proto: proto_words(&r.text).unwrap_or("tcp"),
                only_from,
                purpose: r.text.clone(),
                when: r.when,
                sources: vec![(r.line, r.text)],
            }),
            _ => {
                let which = if targets.is_empty() {
                    "no service or host group".to_string()
                } else {
                    format!("several services ({})", targets.join(", "))
                };
                self.warn(r.line, format!("says port {} must be reachable only by {:?}, but names {which} of the document; no exposure constraint: {}", fmt_ports(&r.ports), r.who, r.text));
            }
        }
    }

    /// The service or zone a name already stands for, without creating one.
    fn known_entity(&self, name: &str) -> Option<String> {
        let plain = strip_paren(name.trim());
        let base = base_name(&plain);
        if self.product.as_ref().is_some_and(|p| base.eq_ignore_ascii_case(p)) {
            return self
                .product
                .as_ref()
                .map(|p| p.to_lowercase().chars().filter(char::is_ascii_alphanumeric).collect());
        }
        let key = slug_of(&plain);
        if self.draft.services.contains_key(&key) || self.draft.zones.contains_key(&key) {
            return Some(key);
        }
        self.draft
            .services
            .iter()
            .find(|(_, s)| s.names.iter().any(|n| base_name(&strip_paren(n)).eq_ignore_ascii_case(&base)))
            .map(|(k, _)| k.clone())
    }

    /// Adds a rule unless rules with the same sides, protocol and conditions already cover its ports.
    fn add_rule(&mut self, mut r: DraftRule) {
        r.when.sort();
        r.when.dedup();
        if r.when.iter().any(|c| c == "ha") && r.when.iter().any(|c| c == "!ha") {
            let line = r.sources[0].0;
            self.warn(line, "the row is both HA-only and single-node-only; imported with both conditions, so it never applies".into());
        }
        for c in &r.when {
            if c.trim_start_matches('!') == "ha" {
                self.draft
                    .profiles
                    .entry("ha".into())
                    .or_insert_with(|| "high-availability (multi-node) deployment".into());
            }
        }
        let same: Vec<usize> = (0..self.draft.rules.len())
            .filter(|&i| {
                let x = &self.draft.rules[i];
                x.from == r.from && x.to == r.to && x.proto == r.proto && x.when == r.when
            })
            .collect();
        let covered: Vec<(u16, u16)> = same.iter().flat_map(|&i| self.draft.rules[i].ports.clone()).collect();
        if !same.is_empty() && subset(&r.ports, &covered) {
            let i =
                *same.iter().find(|&&i| overlaps(&self.draft.rules[i].ports, &r.ports)).unwrap_or(&same[0]);
            for s in r.sources {
                if !self.draft.rules[i].sources.contains(&s) {
                    self.draft.rules[i].sources.push(s);
                }
            }
            return;
        }
        self.draft.rules.push(r);
    }
}

/// "HA only", "Only required if ...", "(if used)", "(Optional)": conditions
/// named after what they depend on, with the words that said so.
fn conditions(text: &str) -> Vec<(String, String)> {
    static HA: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\bHA only\b|\bonly (?:required |needed )?(?:for|in) (?:an? )?(?:HA|high.availability|multi-node)\b|\brequired only for (?:HA|high.availability|multi-node)\b|\(HA\)").unwrap()
    });
    static IF: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)\bonly (?:required|needed|used) (?:if|when) ([^.;)]+)").unwrap());
    static USED_IF: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\bused only (?:if|when) ([^.;)]+?) is (?:selected|enabled|used|configured)").unwrap()
    });
    static WHEN_USING: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)\bwhen using ([A-Za-z][\w-]*)").unwrap());
    static MODULE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)\brequired for the ([^.;]+?) module\b").unwrap());
    static IF_USED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)^([^(]+?)\s*\((?:if enabled|if used|if configured)\)").unwrap());
    static OPTIONAL: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)^\(?optional\)?:?\s*(.*)$").unwrap());
    let mut v: Vec<(String, String)> = Vec::new();
    let t = text.trim();
    if HA.is_match(t) {
        v.push(("ha".into(), "high-availability (multi-node) deployment".into()));
    }
    for re in [&*IF, &*USED_IF] {
        if let Some(c) = re.captures(t) {
            v.push((slug_words(&c[1]), c[0].to_string()));
        }
    }
    // "Required only for WAN federation": the tab or Description column's condition (not HA, read above).
    static ONLY_FOR: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\b(?:required|needed|used) only (?:for|with) ([^.;)]+)|\bonly (?:required|needed|used) (?:for|with) ([^.;)]+)").unwrap()
    });
    if let Some(c) = ONLY_FOR.captures(t).filter(|_| !HA.is_match(t)) {
        v.push((slug_words(c.get(1).or(c.get(2)).unwrap().as_str()), c[0].to_string()));
    }
    if let Some(c) = WHEN_USING.captures(t) {
        v.push((slug_words(&c[1]), c[0].to_string()));
    }
    if let Some(c) = MODULE.captures(t) {
        v.push((slug_words(&c[1]), c[0].to_string()));
    }
    if let Some(c) = IF_USED.captures(t) {
        v.push((slug_words(&c[1]), c[0].to_string()));
    }
    if let Some(c) = OPTIONAL.captures(t) {
        let what = slug_words(&c[1]);
        let name = if what.is_empty() { "optional".to_string() } else { format!("optional-{what}") };
        v.push((name, t.to_string()));
    } else if t.to_lowercase().contains("(optional)") {
        v.push(("optional".into(), t.to_string()));
    }
    v.retain(|(n, _)| !n.is_empty());
    v
}

fn sentence_cond(lower: &str) -> Option<&'static str> {
    if lower.contains("single-node") || lower.contains("single node") {
        Some("!ha")
    } else if HA_WORDS.is_match(lower) {
        Some("ha")
    } else {
        None
    }
}

/// The protocol a text names: both TCP and UDP, UDP, ICMP, or TCP (also
/// for HTTPS, gRPC, LDAPS...). `None` when it names none.
fn proto_words(text: &str) -> Option<&'static str> {
    let t = text.to_lowercase();
    let words: Vec<&str> = t.split(|c: char| !(c.is_ascii_alphanumeric() || c == '/')).collect();
    let has = |w: &str| words.iter().any(|x| *x == w || x.split('/').any(|p| p == w));
    let (tcp, udp) = (has("tcp"), has("udp"));
    if (tcp && udp) || has("tcp/udp") {
        Some("both")
    } else if udp {
        Some("udp")
    } else if has("icmp") {
        Some("icmp")
    } else if tcp
        || ["https", "http", "grpc", "ldaps", "ssh", "rdp", "tls", "mtls", "smtp"].iter().any(|w| has(w))
    {
        Some("tcp")
    } else {
        None
    }
}

/// Ports and ranges in a cell: "443", "7001-7012", "1433 or 5432", "8300, 8301", "53/udp".
pub(crate) fn parse_ports(cell: &str) -> Result<Vec<(u16, u16)>, String> {
    static ITEM: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\d+)\s*(?:-|–|to)\s*(\d+)|(\d+)").unwrap());
    static NOISE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)/(tcp|udp)|\((?:[^)]*)\)").unwrap());
    let cleaned = NOISE.replace_all(cell, " ");
    let mut out = Vec::new();
    for c in ITEM.captures_iter(&cleaned) {
        let (a, b) = match (c.get(1), c.get(2), c.get(3)) {
            (Some(a), Some(b), _) => (a.as_str(), b.as_str()),
            (_, _, Some(a)) => (a.as_str(), a.as_str()),
            _ => continue,
        };
        let (a, b): (u32, u32) = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
        if !(1..=65535).contains(&a) || !(1..=65535).contains(&b) {
            return Err(format!("{cell:?} holds a port outside 1-65535"));
        }
        if a > b {
            return Err(format!("{cell:?}: range {a}-{b} runs backwards"));
        }
        out.push((a as u16, b as u16));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn subset(a: &[(u16, u16)], b: &[(u16, u16)]) -> bool {
    a.iter().all(|&(x, y)| (x..=y).all(|p| b.iter().any(|&(s, e)| s <= p && p <= e)))
}

fn overlaps(a: &[(u16, u16)], b: &[(u16, u16)]) -> bool {
    a.iter().any(|&(x, y)| b.iter().any(|&(s, e)| x <= e && s <= y))
}

pub(crate) fn fmt_ports(p: &[(u16, u16)]) -> String {
    p.iter()
        .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
        .collect::<Vec<_>>()
        .join(",")
}

fn strip_paren(s: &str) -> String {
    PARENS.replace_all(s, "").trim().to_string()
}

/// "All RP-PAM nodes" → "RP-PAM"; "Redis server" → "Redis".
fn base_name(s: &str) -> String {
    let mut w: Vec<&str> = s.split_whitespace().collect();
    if w.len() > 1 && matches!(w[0].to_lowercase().as_str(), "all" | "the" | "each" | "every" | "any") {
        w.remove(0);
    }
    if w.len() > 1
        && matches!(
            w[w.len() - 1].to_lowercase().as_str(),
            "server" | "servers" | "node" | "nodes" | "host" | "hosts" | "instance" | "instances"
        )
    {
        w.pop();
    }
    w.join(" ")
}

/// Lower-case words joined by `-`: a service or profile name.
pub(crate) fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

fn slug_of(name: &str) -> String {
    slug(&without_article(&strip_paren(name)))
}

/// "All Consul Servers" → "Consul Servers": a host-group name keeps its words.
fn without_article(s: &str) -> String {
    let w: Vec<&str> = s.split_whitespace().collect();
    match w.first().map(|f| f.to_lowercase()) {
        Some(f) if w.len() > 1 && matches!(f.as_str(), "all" | "the" | "each" | "every") => w[1..].join(" "),
        _ => w.join(" "),
    }
}

/// A condition's name: the words that matter, at most four.
fn slug_words(s: &str) -> String {
    const STOP: &[&str] = &[
        "your", "the", "a", "an", "is", "are", "on", "in", "of", "to", "be", "if", "you", "it", "its",
        "being", "for",
    ];
    let words: Vec<String> = s
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty() && !STOP.contains(&w.to_lowercase().as_str()))
        .take(4)
        .map(str::to_lowercase)
        .collect();
    words.join("-")
}

/// A perimeter row's ports, protocol, purpose, conditions and provenance.
struct Perimeter {
    ports: Vec<(u16, u16)>,
    proto: &'static str,
    purpose: String,
    when: Vec<String>,
    source: (usize, String),
}

/// "Must be reachable only by Operators", "only accessible from the admin
/// network", "reachable from support staff only": group 1, 2 or 3 names who.
static REACHABLE_ONLY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:reachable|accessible|open) only (?:to|by|from) (?:the )?([^.;()]+)|\bonly (?:be )?(?:reachable|accessible|open) (?:to|by|from) (?:the )?([^.;()]+)|\b(?:reachable|accessible|open) (?:to|by|from) (?:the )?([^.;()]+?) only\b").unwrap()
});

/// The trimmed cell of the first column with `role`, if not empty.
fn cell_of(roles: &[Role], r: &Row, role: Role) -> Option<String> {
    roles
        .iter()
        .position(|&x| x == role)
        .and_then(|i| r.cells.get(i))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A note's condition as a profile name: "you enable feature X for the
/// destination service" → `feature-x` (the verb and what follows "for",
/// "on", "in", "with" dropped; at most four words).
pub(crate) fn note_condition(clause: &str) -> String {
    static LEAD: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^(?:you\s+|users?\s+|an? admin(?:istrator)?\s+)?(?:enable|use|turn on|activate|configure|install|deploy|run)s?\s+(?:the\s+|an?\s+)?").unwrap()
    });
    static TAIL: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\s+(?:for|on|in|with|at|across|between)\s+.*$|\s+(?:is|are)\s+(?:enabled|used|configured|installed|active|turned on|on)\b.*$").unwrap()
    });
    let c = LEAD.replace(clause.trim(), "");
    slug_words(&TAIL.replace(&c, ""))
}

/// A placement as `--group` messages name it: the group alone, else "hosts a, b".
fn group_text(p: &Placement) -> String {
    match p {
        Placement::Group(g) => g.clone(),
        other => other.to_string(),
    }
}

/// A mapping table's cell as a placement: `webtier`, "`web` group", "the
/// [mq] group" give a group; under a Hosts column, several names ("db01,
/// db02") give those hosts (one name stays a group, as inventories name
/// groups there too). Anything else is not guessed.
fn mapping_cell(title: &str, cell: &str) -> Result<Placement, String> {
    static QUOTED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[`\[]([A-Za-z0-9_-]+)[`\]]").unwrap());
    static GROUP_WORD: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^(?:the\s+)?([A-Za-z0-9_-]+)\s+(?:ansible |inventory |host )?group$").unwrap()
    });
    let c = cell.trim();
    let is_group =
        |s: &str| !s.is_empty() && s.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
    let named = QUOTED.captures(c).or_else(|| GROUP_WORD.captures(c)).and_then(|m| m.get(1));
    if let Some(g) = named {
        return Ok(Placement::Group(g.as_str().to_string()));
    }
    let hosts_column =
        matches!(title.trim().to_lowercase().as_str(), "hosts" | "host names" | "hostnames" | "servers");
    if hosts_column {
        let names: Vec<&str> = c
            .split(|ch: char| ch == ',' || ch == ';' || ch.is_whitespace())
            .map(|s| s.trim_matches(['`', '[', ']']))
            .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("and"))
            .collect();
        let is_host =
            |s: &&str| s.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'));
        if names.len() > 1 && names.iter().all(is_host) {
            return Ok(Placement::Hosts(names.into_iter().map(String::from).collect()));
        }
    }
    if is_group(c) {
        Ok(Placement::Group(c.to_string()))
    } else {
        Err(format!(
            "{cell:?} is not an inventory group name (letters, digits, `_`, `-`) nor a list of host names"
        ))
    }
}
