//! YAML → [`Matrix`], with a position on every error. Walks saphyr's marked
//! tree by hand so that each node, not just the first syntax error, can be
//! blamed precisely.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::Arc,
};

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::{
    expr::{Cond, Template},
    prefixes, Binding, Diagnostic, Exposure, FqdnPattern, Learnt, Matrix, MatrixError, NameRef, Placement,
    PlacementKind, PortItem, Pos, Profile, ProtoSpec, Rule, Service, Severity, Variable, When, Zone, ANY,
    INTERNET, LOOPBACK,
};
use crate::matrix::expand::{eval_ports, vars_defaults};

type Y<'y> = MarkedYaml<'y>;

struct Parser<'d> {
    file: Arc<str>,
    dir: &'d Path,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

/// A mapping entry: key text, key node, value node.
type Entry<'a, 'y> = (String, &'a Y<'y>, &'a Y<'y>);

pub(super) fn parse(text: &str, file: &str, dir: &Path) -> Result<(Matrix, Vec<Diagnostic>), MatrixError> {
    let file: Arc<str> = Arc::from(file);
    let mut p = Parser { file: file.clone(), dir, errors: Vec::new(), warnings: Vec::new() };
    // Size, node and depth limits before any tree is built (docs/matrix.md).
    if let Err(e) = crate::yaml_limits::check(text) {
        let (line, col) = e.position().unwrap_or((1, 1));
        return Err(MatrixError::Invalid(vec![p.diag_at(line, col, e.to_string())]));
    }
    let docs = match MarkedYaml::load_from_str(text) {
        Ok(d) => d,
        Err(e) => {
            let m = e.marker();
            return Err(MatrixError::Invalid(vec![Diagnostic {
                pos: Pos { file, line: m.line(), col: m.col() + 1 },
                severity: Severity::Error,
                message: format!("invalid YAML: {}; fix the syntax here", e.info()),
            }]));
        }
    };
    let root = match docs.as_slice() {
        [] => {
            return Err(MatrixError::Invalid(vec![p.diag_at(
                1,
                1,
                "the file is empty; a matrix needs at least `version: 1` and `rules:`".into(),
            )]));
        }
        [root] => root,
        [_, second, ..] => {
            p.error(second, "a matrix file holds one YAML document; remove the `---` and what follows or split it into another file".into());
            return Err(MatrixError::Invalid(p.errors));
        }
    };
    let m = p.matrix(root);
    if p.errors.is_empty() {
        Ok((m, p.warnings))
    } else {
        p.errors.sort_by(|a, b| a.pos.cmp(&b.pos));
        Err(MatrixError::Invalid(p.errors))
    }
}

pub(super) const TOP_KEYS: &[&str] = &[
    "version",
    "description",
    "variables",
    "profiles",
    "zones",
    "services",
    "bindings",
    "rules",
    "exposure",
];
pub(super) const SERVICE_KEYS: &[&str] = &[
    "description",
    "group",
    "groups",
    "host",
    "hosts",
    "cidr",
    "cidrs",
    "zone",
    "zones",
    "fqdn",
    "fqdns",
    "prefixes",
];
pub(super) const RULE_KEYS: &[&str] =
    &["id", "from", "to", "port", "ports", "proto", "purpose", "when", "learnt"];
/// The evidence of a rule that `monitor learn` proposed (docs/learn.md).
pub(super) const LEARNT_KEYS: &[&str] =
    &["flows", "clients", "servers", "first_seen", "last_seen", "window", "seen_in"];
pub(super) const EXPOSURE_KEYS: &[&str] =
    &["id", "to", "port", "ports", "proto", "only_from", "purpose", "when"];

impl Parser<'_> {
    fn pos(&self, n: &Y) -> Pos {
        let m = n.span.start;
        Pos { file: self.file.clone(), line: m.line().max(1), col: m.col() + 1 }
    }

    fn diag_at(&self, line: usize, col: usize, message: String) -> Diagnostic {
        Diagnostic { pos: Pos { file: self.file.clone(), line, col }, severity: Severity::Error, message }
    }

    fn error(&mut self, n: &Y, message: String) {
        let pos = self.pos(n);
        self.error_at(pos, message);
    }

    fn error_at(&mut self, pos: Pos, message: String) {
        self.errors.push(Diagnostic { pos, severity: Severity::Error, message });
    }

    fn warn_at(&mut self, pos: Pos, message: String) {
        self.warnings.push(Diagnostic { pos, severity: Severity::Warning, message });
    }

    /// Entries of a mapping; `None` (with an error) if `n` is not one. Null is an empty mapping.
    fn map<'a, 'y>(&mut self, n: &'a Y<'y>, what: &str) -> Option<Vec<Entry<'a, 'y>>> {
        match &n.data {
            YamlData::Mapping(m) => {
                let mut out = Vec::with_capacity(m.len());
                for (k, v) in m.iter() {
                    match scalar_text(k) {
                        Some(s) => out.push((s, k, v)),
                        None => self.error(k, format!("{what}: keys must be plain names")),
                    }
                }
                Some(out)
            }
            YamlData::Value(Scalar::Null) => Some(Vec::new()),
            _ => {
                self.error(n, format!("{what} must be a mapping (`key: value` lines), not {}", kind(n)));
                None
            }
        }
    }

    fn check_keys(&mut self, entries: &[Entry], allowed: &[&str], what: &str) {
        for (k, kn, _) in entries {
            if !allowed.contains(&k.as_str()) {
                self.error(kn, format!("unknown key `{k}` in {what}; allowed keys: {}", allowed.join(", ")));
            }
        }
    }

    fn scalar(&mut self, n: &Y, what: &str) -> Option<String> {
        if let Some(tag) = custom_tag(n) {
            self.error(n, format!("YAML reads `{tag}` as a tag, not as text; quote it, e.g. \"{tag}\""));
            return None;
        }
        let s = scalar_text(n);
        if s.is_none() {
            self.error(n, format!("{what} must be a single value, not {}", kind(n)));
        }
        s
    }

    /// A string, or a list of strings.
    fn names(&mut self, n: &Y, what: &str) -> Vec<(String, Pos)> {
        match &n.data {
            YamlData::Sequence(items) => {
                items.iter().filter_map(|i| self.scalar(i, what).map(|s| (s, self.pos(i)))).collect()
            }
            _ => self.scalar(n, what).map(|s| vec![(s, self.pos(n))]).unwrap_or_default(),
        }
    }

    fn list<'a, 'y>(&mut self, n: &'a Y<'y>, what: &str) -> Vec<&'a Y<'y>> {
        match &n.data {
            YamlData::Sequence(items) => items.iter().collect(),
            YamlData::Value(Scalar::Null) => Vec::new(),
            _ => {
                self.error(n, format!("{what} must be a list (`- ...` lines), not {}", kind(n)));
                Vec::new()
            }
        }
    }

    fn template(&mut self, text: &str, pos: &Pos) -> Option<Template> {
        match Template::parse(text) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error_at(pos.clone(), e);
                None
            }
        }
    }

    fn matrix(&mut self, root: &Y) -> Matrix {
        let mut m = Matrix {
            file: self.file.clone(),
            description: String::new(),
            variables: BTreeMap::new(),
            profiles: BTreeMap::new(),
            zones: builtin_zones(),
            services: BTreeMap::new(),
            bindings: BTreeMap::new(),
            rules: Vec::new(),
            exposures: Vec::new(),
        };
        let Some(top) = self.map(root, "the matrix") else { return m };
        self.check_keys(&top, TOP_KEYS, "the matrix");
        let get = |k: &str| top.iter().find(|(key, _, _)| key == k).map(|(_, _, v)| *v);
        match get("version") {
            None => self.error(root, "missing `version: 1` at the top of the matrix".into()),
            Some(v) if scalar_text(v).as_deref() != Some("1") => {
                self.error(v, "unsupported matrix version; this monitor reads `version: 1`".into())
            }
            _ => {}
        }
        if let Some(d) = get("description") {
            m.description = self.scalar(d, "description").unwrap_or_default();
        }
        if let Some(v) = get("variables") {
            self.variables(v, &mut m);
        }
        if let Some(v) = get("profiles") {
            self.profiles(v, &mut m);
        }
        if let Some(v) = get("zones") {
            self.zones(v, &mut m);
        }
        if let Some(v) = get("services") {
            self.services(v, &mut m);
        }
        if let Some(v) = get("bindings") {
            self.bindings(v, &mut m);
        }
        if let Some(v) = get("rules") {
            for item in self.list(v, "rules") {
                if let Some(r) = self.rule(item) {
                    m.rules.push(r);
                }
            }
        }
        if let Some(v) = get("exposure") {
            for item in self.list(v, "exposure") {
                if let Some(x) = self.exposure(item) {
                    m.exposures.push(x);
                }
            }
        }
        self.check_names(&m);
        self.check_values_and_ids(&mut m);
        m
    }

    fn variables(&mut self, n: &Y, m: &mut Matrix) {
        for (name, kn, v) in self.map(n, "variables").unwrap_or_default() {
            if !super::expr::is_ident(&name) {
                self.error(
                    kn,
                    format!(
                        "variable name `{name}`: use letters, digits and `_`, starting with a letter or `_`"
                    ),
                );
                continue;
            }
            let (default, description) = match &v.data {
                YamlData::Mapping(_) => {
                    let e = self.map(v, "a variable").unwrap_or_default();
                    self.check_keys(&e, &["default", "description"], "a variable");
                    let d = e
                        .iter()
                        .find(|(k, _, _)| k == "default")
                        .and_then(|(_, _, v)| self.scalar(v, "default"));
                    let desc = e
                        .iter()
                        .find(|(k, _, _)| k == "description")
                        .and_then(|(_, _, v)| self.scalar(v, "description"))
                        .unwrap_or_default();
                    match d {
                        Some(d) => (d, desc),
                        None => {
                            self.error(v, format!("variable `{name}` needs a `default:` value"));
                            continue;
                        }
                    }
                }
                _ => match self.scalar(v, "a variable's value") {
                    Some(d) => (d, String::new()),
                    None => continue,
                },
            };
            m.variables.insert(name, Variable { default, description, pos: self.pos(kn) });
        }
    }

    fn profiles(&mut self, n: &Y, m: &mut Matrix) {
        for (name, kn, v) in self.map(n, "profiles").unwrap_or_default() {
            if !is_name(&name) {
                self.error(kn, format!("profile name `{name}`: use letters, digits, `-` and `_`"));
                continue;
            }
            let e = self.map(v, "a profile").unwrap_or_default();
            self.check_keys(&e, &["description", "set"], "a profile");
            let mut p = Profile { description: String::new(), set: Vec::new(), pos: self.pos(kn) };
            for (k, _, val) in &e {
                match k.as_str() {
                    "description" => p.description = self.scalar(val, "description").unwrap_or_default(),
                    "set" => {
                        for (var, vk, vv) in self.map(val, "a profile's `set`").unwrap_or_default() {
                            if let Some(value) = self.scalar(vv, "a variable's value") {
                                p.set.push((var, value, self.pos(vk)));
                            }
                        }
                    }
                    _ => {}
                }
            }
            m.profiles.insert(name, p);
        }
    }

    fn zones(&mut self, n: &Y, m: &mut Matrix) {
        for (name, kn, v) in self.map(n, "zones").unwrap_or_default() {
            if reserved(&name) {
                self.error(
                    kn,
                    format!("`{name}` is built in and cannot be redefined; choose another zone name"),
                );
                continue;
            }
            if !is_name(&name) {
                self.error(kn, format!("zone name `{name}`: use letters, digits, `-` and `_`"));
                continue;
            }
            let (cidrs_node, description) = match &v.data {
                YamlData::Mapping(_) => {
                    let e = self.map(v, "a zone").unwrap_or_default();
                    self.check_keys(&e, &["description", "cidrs"], "a zone");
                    let desc = e
                        .iter()
                        .find(|(k, _, _)| k == "description")
                        .and_then(|(_, _, v)| self.scalar(v, "description"))
                        .unwrap_or_default();
                    match e.iter().find(|(k, _, _)| k == "cidrs") {
                        Some((_, _, c)) => (*c, desc),
                        None => {
                            self.error(
                                v,
                                format!("zone `{name}` needs `cidrs:` (a list such as [10.0.1.0/24])"),
                            );
                            continue;
                        }
                    }
                }
                _ => (v, String::new()),
            };
            let mut cidrs = Vec::new();
            for (text, pos) in self.names(cidrs_node, "a CIDR") {
                if let Some(t) = self.template(&text, &pos) {
                    cidrs.push((t, pos));
                }
            }
            m.zones.insert(name, Zone { description, cidrs, pos: Some(self.pos(kn)) });
        }
    }

    fn services(&mut self, n: &Y, m: &mut Matrix) {
        for (name, kn, v) in self.map(n, "services").unwrap_or_default() {
            if reserved(&name) {
                self.error(kn, format!("`{name}` is built in; choose another service name"));
                continue;
            }
            if !is_name(&name) {
                self.error(kn, format!("service name `{name}`: use letters, digits, `-` and `_`"));
                continue;
            }
            let Some(e) = self.map(v, "a service") else { continue };
            self.check_keys(&e, SERVICE_KEYS, "a service");
            let mut s = Service { description: String::new(), placements: Vec::new(), pos: self.pos(kn) };
            let errors_before = self.errors.len();
            for (k, _, val) in &e {
                let k = match k.as_str() {
                    "groups" => "group",
                    "hosts" => "host",
                    "cidrs" => "cidr",
                    "zones" => "zone",
                    "fqdns" => "fqdn",
                    other => other,
                };
                if k == "description" {
                    s.description = self.scalar(val, "description").unwrap_or_default();
                    continue;
                }
                if k == "prefixes" {
                    let items = match &val.data {
                        YamlData::Sequence(items) => items.iter().collect(),
                        _ => vec![*val],
                    };
                    for item in items {
                        if let Some(p) = self.prefixes(item) {
                            s.placements.push(p);
                        }
                    }
                    continue;
                }
                for (text, pos) in self.names(val, &format!("`{k}`")) {
                    let kind = match k {
                        "group" => PlacementKind::Group(text),
                        "host" => PlacementKind::Host(text),
                        "zone" => PlacementKind::Zone(text),
                        "cidr" => match self.template(&text, &pos) {
                            Some(t) => PlacementKind::Cidr(t),
                            None => continue,
                        },
                        "fqdn" => match FqdnPattern::new(&text) {
                            Ok(f) => PlacementKind::Fqdn(f),
                            Err(e) => {
                                self.error_at(pos, e);
                                continue;
                            }
                        },
                        _ => continue,
                    };
                    s.placements.push(Placement { kind, pos });
                }
            }
            if s.placements.is_empty() && self.errors.len() == errors_before {
                self.error(
                    kn,
                    format!("service `{name}` runs nowhere; give it a group, hosts, cidrs, zone, fqdn or prefixes"),
                );
            }
            m.services.insert(name, s);
        }
    }

    fn prefixes(&mut self, n: &Y) -> Option<Placement> {
        let e = self.map(n, "`prefixes`")?;
        self.check_keys(&e, &["file", "path"], "`prefixes`");
        let field = |k: &str| e.iter().find(|(key, _, _)| key == k).map(|(_, _, v)| *v);
        let (Some(file), Some(path)) = (field("file"), field("path")) else {
            self.error(
                n,
                "`prefixes` needs `file:` (a JSON file) and `path:` (a JSONPath to its CIDRs)".into(),
            );
            return None;
        };
        let (file_s, path_s) = (self.scalar(file, "file")?, self.scalar(path, "path")?);
        match prefixes::load(self.dir, &file_s, &path_s) {
            Ok(nets) => Some(Placement {
                kind: PlacementKind::Prefixes { nets, source: format!("{file_s} {path_s}") },
                pos: self.pos(n),
            }),
            Err(prefixes::PrefixError::File(msg)) => {
                self.error(file, msg);
                None
            }
            Err(prefixes::PrefixError::Path(msg)) => {
                self.error(path, msg);
                None
            }
        }
    }

    fn bindings(&mut self, n: &Y, m: &mut Matrix) {
        for (name, kn, v) in self.map(n, "bindings").unwrap_or_default() {
            if let Err(e) = FqdnPattern::new(&name) {
                self.error(kn, e);
                continue;
            }
            let mut addresses = Vec::new();
            for (text, pos) in self.names(v, "an address") {
                match text.parse() {
                    Ok(a) => addresses.push(a),
                    Err(_) => self.error_at(
                        pos,
                        format!("{text:?} is not an IP address; bindings map names to addresses"),
                    ),
                }
            }
            m.bindings.insert(name.to_ascii_lowercase(), Binding { addresses, pos: self.pos(kn) });
        }
    }

    fn ports(&mut self, n: &Y) -> Vec<PortItem> {
        let items: Vec<&Y> = match &n.data {
            YamlData::Sequence(items) => items.iter().collect(),
            _ => vec![n],
        };
        let mut out = Vec::new();
        for i in items {
            let Some(text) = self.scalar(i, "a port") else { continue };
            let pos = self.pos(i);
            // Split "a-b" at a dash outside `${...}`.
            let mut depth = 0;
            let mut dash = None;
            for (idx, c) in text.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    '-' if depth == 0 => {
                        dash = Some(idx);
                        break;
                    }
                    _ => {}
                }
            }
            let (a, b) = match dash {
                Some(d) => (text[..d].trim(), Some(text[d + 1..].trim())),
                None => (text.trim(), None),
            };
            let Some(first) = self.template(a, &pos) else { continue };
            let last = match b {
                Some(b) => match self.template(b, &pos) {
                    Some(t) => Some(t),
                    None => continue,
                },
                None => None,
            };
            out.push(PortItem { first, last, pos });
        }
        out
    }

    fn proto(&mut self, e: &[Entry]) -> ProtoSpec {
        let Some((_, _, v)) = e.iter().find(|(k, _, _)| k == "proto") else { return ProtoSpec::Tcp };
        match self.scalar(v, "proto").as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("tcp") => ProtoSpec::Tcp,
            Some("udp") => ProtoSpec::Udp,
            Some("both") => ProtoSpec::Both,
            Some("icmp") => ProtoSpec::Icmp,
            Some(other) => {
                self.error(v, format!("unknown proto `{other}`; use tcp, udp, both or icmp"));
                ProtoSpec::Tcp
            }
            None => ProtoSpec::Tcp,
        }
    }

    fn when(&mut self, e: &[Entry]) -> Vec<When> {
        let Some((_, _, v)) = e.iter().find(|(k, _, _)| k == "when") else { return Vec::new() };
        let mut out = Vec::new();
        for (text, pos) in self.names(v, "a condition") {
            match Cond::parse(&text) {
                Ok(cond) => out.push(When { cond, text, pos }),
                Err(msg) => self.error_at(pos, msg),
            }
        }
        out
    }

    fn refs(&mut self, e: &[Entry], key: &str, owner: &Y, what: &str) -> Vec<NameRef> {
        match e.iter().find(|(k, _, _)| k == key) {
            Some((_, _, v)) => {
                let r: Vec<NameRef> = self
                    .names(v, "a service or zone name")
                    .into_iter()
                    .map(|(name, pos)| NameRef { name, pos })
                    .collect();
                if r.is_empty() {
                    self.error(v, format!("`{key}` of {what} is empty; name at least one service or zone"));
                }
                r
            }
            None => {
                self.error(
                    owner,
                    format!("{what} needs `{key}:` (a service or zone name, or a list of them)"),
                );
                Vec::new()
            }
        }
    }

    fn common_ports(&mut self, e: &[Entry], owner: &Y, proto: ProtoSpec, what: &str) -> Vec<PortItem> {
        let port_nodes: Vec<&Y> =
            e.iter().filter(|(k, _, _)| k == "port" || k == "ports").map(|(_, _, v)| *v).collect();
        if port_nodes.len() > 1 {
            self.error(port_nodes[1], format!("{what} has both `port` and `ports`; keep one"));
        }
        match (port_nodes.first(), proto) {
            (Some(p), ProtoSpec::Icmp) => {
                self.error(p, "icmp has no ports; remove `ports:` or change `proto:`".into());
                Vec::new()
            }
            (Some(p), _) => {
                let ports = self.ports(p);
                if ports.is_empty() && matches!(p.data, YamlData::Sequence(_) | YamlData::Value(Scalar::Null))
                {
                    self.error(p, format!("`ports` of {what} is empty; list at least one port"));
                }
                ports
            }
            (None, ProtoSpec::Icmp) => Vec::new(),
            (None, _) => {
                self.error(owner, format!("{what} needs `ports:` (e.g. 443, \"7001-7012\" or [22, 3389])"));
                Vec::new()
            }
        }
    }

    fn id(&mut self, e: &[Entry]) -> Option<String> {
        let (_, _, v) = e.iter().find(|(k, _, _)| k == "id")?;
        let id = self.scalar(v, "id")?;
        if !is_name(&id) {
            self.error(v, format!("id `{id}`: use letters, digits, `-`, `_` and `.`"));
        }
        Some(id)
    }

    fn text(&mut self, e: &[Entry], key: &str) -> String {
        e.iter().find(|(k, _, _)| k == key).and_then(|(_, _, v)| self.scalar(v, key)).unwrap_or_default()
    }

    fn rule(&mut self, n: &Y) -> Option<Rule> {
        let e = self.map(n, "a rule")?;
        self.check_keys(&e, RULE_KEYS, "a rule");
        let proto = self.proto(&e);
        let id = self.id(&e);
        Some(Rule {
            id_generated: id.is_none(),
            id: id.unwrap_or_default(),
            from: self.refs(&e, "from", n, "a rule"),
            to: self.refs(&e, "to", n, "a rule"),
            ports: self.common_ports(&e, n, proto, "a rule"),
            proto,
            purpose: self.text(&e, "purpose"),
            when: self.when(&e),
            learnt: self.learnt(&e),
            pos: self.pos(n),
        })
    }

    /// `learnt:`, the evidence `monitor learn` wrote: `flows` a count, the
    /// times RFC 3339 and in order, the host lists names or addresses.
    fn learnt(&mut self, e: &[Entry]) -> Option<Learnt> {
        let (_, _, v) = e.iter().find(|(k, _, _)| k == "learnt")?;
        let fields = self.map(v, "`learnt`")?;
        self.check_keys(&fields, LEARNT_KEYS, "`learnt`");
        let mut l = Learnt {
            flows: 0,
            clients: Vec::new(),
            servers: Vec::new(),
            first_seen: String::new(),
            last_seen: String::new(),
            window: String::new(),
            seen_in: Vec::new(),
            pos: self.pos(v),
        };
        let mut times: [Option<(std::time::SystemTime, &Y)>; 2] = [None, None];
        for (k, _, val) in &fields {
            match k.as_str() {
                "flows" => match self.scalar(val, "`flows`").map(|s| s.parse::<u64>()) {
                    Some(Ok(n)) => l.flows = n,
                    Some(Err(_)) => {
                        self.error(val, "`flows` of `learnt` is a count of flows, e.g. `flows: 12`".into())
                    }
                    None => {}
                },
                "clients" | "servers" | "seen_in" => {
                    let list = self.names(val, &format!("an entry of `{k}`")).into_iter().map(|(s, _)| s);
                    match k.as_str() {
                        "clients" => l.clients = list.collect(),
                        "servers" => l.servers = list.collect(),
                        _ => l.seen_in = list.collect(),
                    }
                }
                "first_seen" | "last_seen" => {
                    let Some(text) = self.scalar(val, &format!("`{k}`")) else { continue };
                    match humantime::parse_rfc3339_weak(&text) {
                        Ok(t) => times[usize::from(k == "last_seen")] = Some((t, *val)),
                        Err(_) => self.error(
                            val,
                            format!(
                                "`{k}` must be an RFC 3339 time such as 2026-12-03T08:50:00Z, not {text:?}"
                            ),
                        ),
                    }
                    if k == "first_seen" {
                        l.first_seen = text;
                    } else {
                        l.last_seen = text;
                    }
                }
                "window" => l.window = self.scalar(val, "`window`").unwrap_or_default(),
                _ => {}
            }
        }
        if let [Some((first, _)), Some((last, n))] = times {
            if last < first {
                self.error(n, "`last_seen` is before `first_seen`; swap them".into());
            }
        }
        Some(l)
    }

    fn exposure(&mut self, n: &Y) -> Option<Exposure> {
        let e = self.map(n, "an exposure constraint")?;
        self.check_keys(&e, EXPOSURE_KEYS, "an exposure constraint");
        let proto = self.proto(&e);
        let id = self.id(&e);
        Some(Exposure {
            id_generated: id.is_none(),
            id: id.unwrap_or_default(),
            to: self.refs(&e, "to", n, "an exposure constraint"),
            ports: self.common_ports(&e, n, proto, "an exposure constraint"),
            proto,
            only_from: self.refs(&e, "only_from", n, "an exposure constraint"),
            purpose: self.text(&e, "purpose"),
            when: self.when(&e),
            pos: self.pos(n),
        })
    }

    /// References between sections: services, zones, variables, profiles.
    fn check_names(&mut self, m: &Matrix) {
        let entities = || {
            let mut v: Vec<&str> = m.services.keys().chain(m.zones.keys()).map(String::as_str).collect();
            v.push(ANY);
            v.join(", ")
        };
        for name in m.services.keys() {
            if let Some(z) = m.zones.get(name) {
                let pos = z.pos.clone().unwrap_or_else(|| m.services[name].pos.clone());
                self.error_at(
                    pos,
                    format!("`{name}` is both a zone and a service; rename one (rules name either)"),
                );
            }
        }
        for name in m.profiles.keys() {
            if m.variables.contains_key(name) {
                self.error_at(
                    m.profiles[name].pos.clone(),
                    format!("`{name}` is both a profile and a variable; rename one so that `when: {name}` is unambiguous"),
                );
            }
        }
        for p in m.profiles.values() {
            for (var, _, pos) in &p.set {
                if !m.variables.contains_key(var) {
                    self.error_at(
                        pos.clone(),
                        format!("profile sets undefined variable `{var}`; declare it under `variables:`"),
                    );
                }
            }
        }
        for (sname, s) in &m.services {
            for pl in &s.placements {
                if let PlacementKind::Zone(z) = &pl.kind {
                    if !m.zones.contains_key(z) {
                        self.error_at(
                            pl.pos.clone(),
                            format!(
                                "service `{sname}` is placed in unknown zone `{z}`; define it under `zones:`"
                            ),
                        );
                    }
                }
            }
        }
        let refs = m
            .rules
            .iter()
            .flat_map(|r| r.from.iter().chain(&r.to))
            .chain(m.exposures.iter().flat_map(|x| x.to.iter().chain(&x.only_from)));
        for r in refs {
            if !m.is_entity(&r.name) {
                self.error_at(
                    r.pos.clone(),
                    format!("unknown service or zone `{}`; define it under `services:` or `zones:`, or use one of: {}", r.name, entities()),
                );
            }
        }
        for x in &m.exposures {
            for t in &x.to {
                if t.name == ANY {
                    self.error_at(
                        t.pos.clone(),
                        "an exposure constraint protects a service or zone, not `any`".into(),
                    );
                }
            }
        }
        let whens = m.rules.iter().flat_map(|r| &r.when).chain(m.exposures.iter().flat_map(|x| &x.when));
        for w in whens {
            let mut names = Vec::new();
            w.cond.names(&mut names);
            let mut compared = Vec::new();
            w.cond.comparisons(&mut compared);
            for n in names {
                let is_compared = compared.iter().any(|(c, _)| *c == n);
                if is_compared && !m.variables.contains_key(&n) {
                    self.error_at(
                        w.pos.clone(),
                        format!("condition compares undefined variable `{n}`; declare it under `variables:`"),
                    );
                } else if !m.profiles.contains_key(&n) && !m.variables.contains_key(&n) {
                    self.error_at(
                        w.pos.clone(),
                        format!(
                            "condition names unknown profile or variable `{n}`; define it under `profiles:` or `variables:` ({})",
                            if m.profiles.is_empty() {
                                "no profiles are defined".to_string()
                            } else {
                                format!("profiles: {}", m.profiles.keys().cloned().collect::<Vec<_>>().join(", "))
                            }
                        ),
                    );
                }
            }
        }
        let templates = m
            .rules
            .iter()
            .flat_map(|r| &r.ports)
            .chain(m.exposures.iter().flat_map(|x| &x.ports))
            .flat_map(|p| std::iter::once((&p.first, &p.pos)).chain(p.last.as_ref().map(|l| (l, &p.pos))))
            .chain(m.zones.values().flat_map(|z| z.cidrs.iter().map(|(t, p)| (t, p))))
            .chain(m.services.values().flat_map(|s| {
                s.placements.iter().filter_map(|p| match &p.kind {
                    PlacementKind::Cidr(t) => Some((t, &p.pos)),
                    _ => None,
                })
            }));
        let mut seen = BTreeSet::new();
        for (t, pos) in templates {
            for v in t.variables() {
                if !m.variables.contains_key(v) && seen.insert((pos.clone(), v.to_string())) {
                    self.error_at(
                        pos.clone(),
                        format!("undefined variable `{v}`; declare it under `variables:` with a default"),
                    );
                }
            }
        }
    }

    /// Evaluates every template with the defaults so that bad ports and
    /// CIDRs are reported now, and generates missing ids.
    fn check_values_and_ids(&mut self, m: &mut Matrix) {
        let vars = vars_defaults(m);
        let mut ids: BTreeMap<String, Pos> = BTreeMap::new();
        let mut generated: Vec<(usize, bool, String)> = Vec::new();
        for (i, r) in m.rules.iter().enumerate() {
            let ports = self.eval_ports_or_report(&r.ports, &vars);
            if r.id_generated {
                generated.push((i, true, gen_id(&r.to, &ports, r.proto)));
            } else if let Some(prev) = ids.insert(r.id.clone(), r.pos.clone()) {
                self.error_at(
                    r.pos.clone(),
                    format!("duplicate id `{}` (first used at {prev}); ids must be unique", r.id),
                );
            }
        }
        for (i, x) in m.exposures.iter().enumerate() {
            let ports = self.eval_ports_or_report(&x.ports, &vars);
            if x.id_generated {
                generated.push((i, false, format!("exposure-{}", gen_id(&x.to, &ports, x.proto))));
            } else if let Some(prev) = ids.insert(x.id.clone(), x.pos.clone()) {
                self.error_at(
                    x.pos.clone(),
                    format!("duplicate id `{}` (first used at {prev}); ids must be unique", x.id),
                );
            }
        }
        for (i, is_rule, base) in generated {
            let pos = if is_rule { m.rules[i].pos.clone() } else { m.exposures[i].pos.clone() };
            let mut id = base.clone();
            let mut k = 2;
            while ids.contains_key(&id) {
                id = format!("{base}-{k}");
                k += 1;
            }
            if id != base {
                self.warn_at(
                    pos.clone(),
                    format!("generated id `{base}` is taken, so this one is `{id}` and depends on file order; give it an explicit `id:`"),
                );
            }
            ids.insert(id.clone(), pos);
            if is_rule {
                m.rules[i].id = id;
            } else {
                m.exposures[i].id = id;
            }
        }
        let cidrs = m
            .zones
            .values()
            .flat_map(|z| z.cidrs.iter().map(|(t, p)| (t.clone(), p.clone())))
            .chain(m.services.values().flat_map(|s| {
                s.placements.iter().filter_map(|p| match &p.kind {
                    PlacementKind::Cidr(t) => Some((t.clone(), p.pos.clone())),
                    _ => None,
                })
            }))
            .collect::<Vec<_>>();
        for (t, pos) in cidrs {
            if !t.variables().all(|v| vars.contains_key(v)) {
                continue;
            }
            if let Err(e) = t.eval(&vars).and_then(|s| super::expand::parse_net(&s)) {
                self.error_at(pos, e);
            }
        }
    }

    fn eval_ports_or_report(
        &mut self,
        ports: &[PortItem],
        vars: &BTreeMap<String, String>,
    ) -> Vec<(u16, u16)> {
        // Undefined variables were reported by `check_names`.
        let defined = |t: &Template| t.variables().all(|v| vars.contains_key(v));
        let ports: Vec<PortItem> = ports
            .iter()
            .filter(|p| defined(&p.first) && p.last.as_ref().is_none_or(defined))
            .cloned()
            .collect();
        match eval_ports(&ports, vars) {
            Ok(p) => p,
            Err((pos, msg)) => {
                self.error_at(pos, msg);
                Vec::new()
            }
        }
    }
}

/// `{target}-{ports}` (e.g. `rppam-7001-7012`, `targets-22,3389`), plus
/// `-udp`/`-both`/`-icmp` when not TCP; ports as evaluated with the file's
/// defaults, so `--set` never changes an id.
fn gen_id(to: &[NameRef], ports: &[(u16, u16)], proto: ProtoSpec) -> String {
    let target = to.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join("+");
    let ports = ports
        .iter()
        .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
        .collect::<Vec<_>>()
        .join(",");
    let mut id = if ports.is_empty() { target } else { format!("{target}-{ports}") };
    match proto {
        ProtoSpec::Tcp => {}
        ProtoSpec::Udp => id.push_str("-udp"),
        ProtoSpec::Both => id.push_str("-both"),
        ProtoSpec::Icmp => id.push_str("-icmp"),
    }
    id
}

fn builtin_zones() -> BTreeMap<String, Zone> {
    let mut z = BTreeMap::new();
    z.insert(
        LOOPBACK.to_string(),
        Zone {
            description: "loopback addresses (127.0.0.0/8, ::1)".into(),
            cidrs: vec![
                (Template::literal("127.0.0.0/8"), builtin_pos()),
                (Template::literal("::1/128"), builtin_pos()),
            ],
            pos: None,
        },
    );
    z.insert(
        INTERNET.to_string(),
        Zone { description: "every address in no other zone".into(), cidrs: Vec::new(), pos: None },
    );
    z
}

fn builtin_pos() -> Pos {
    Pos { file: Arc::from("<built-in>"), line: 0, col: 0 }
}

fn reserved(name: &str) -> bool {
    [LOOPBACK, INTERNET, ANY].contains(&name)
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn scalar_text(n: &Y) -> Option<String> {
    match &n.data {
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
        YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        YamlData::Representation(s, _, _) => Some(s.to_string()),
        YamlData::Tagged(_, inner) => scalar_text(inner),
        _ => None,
    }
}

/// A `!name` tag that YAML took from what was meant as text (`when: !ha`).
fn custom_tag(n: &Y) -> Option<String> {
    let tag = match &n.data {
        YamlData::Tagged(tag, _) => tag.as_ref(),
        YamlData::Representation(_, _, Some(tag)) => tag.as_ref(),
        _ => return None,
    };
    (!tag.is_yaml_core_schema()).then(|| format!("{}{}", tag.handle, tag.suffix))
}

fn kind(n: &Y) -> &'static str {
    match &n.data {
        YamlData::Mapping(_) => "a mapping",
        YamlData::Sequence(_) => "a list",
        YamlData::Value(Scalar::Null) => "empty",
        YamlData::Alias(_) => "an alias",
        _ => "a single value",
    }
}
