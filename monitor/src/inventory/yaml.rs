//! The YAML inventory format, with the structure rules of Ansible's `yaml`
//! plugin (ansible/plugins/inventory/yaml.py): top-level keys are groups,
//! each a mapping (or null) of `hosts`, `children` and `vars`; a string in
//! place of one of those mappings names a single entry.
//!
//! Scalars are typed the way Ansible's loader (PyYAML, YAML 1.1) types them,
//! not by YAML 1.2: `yes`/`on` are booleans, `0755` is octal, `1:30` is 90.
//! That matters for the variables kept on each host and is checked against
//! `ansible-inventory`. The tree is built from saphyr-parser events so that
//! every node keeps its line for messages. Timestamps stay the text written.

use std::{collections::HashMap, path::Path, sync::LazyLock};

use regex::Regex;
use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};
use serde_json::{Map, Number, Value};

use super::{builder::Builder, InventoryError, LoadOptions, Loaded};

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    line: usize,
    column: usize,
    /// A scalar as written, for messages about what YAML made of it.
    raw: Option<String>,
}

#[derive(Debug, Clone)]
enum Kind {
    Scalar(Value),
    /// The plain key `<<`.
    Merge,
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar(Value::String(_)) => "a string",
            Kind::Scalar(Value::Number(_)) => "a number",
            Kind::Scalar(Value::Bool(_)) => "a boolean",
            Kind::Scalar(Value::Null) => "null",
            Kind::Scalar(_) => "a scalar",
            Kind::Merge => "a merge key",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Scalar(Value::Null))
    }

    fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// Python truthiness, for Ansible's `host_vars or {}`.
    fn is_falsy(&self) -> bool {
        match &self.kind {
            Kind::Scalar(Value::Null) => true,
            Kind::Scalar(Value::Bool(b)) => !b,
            Kind::Scalar(Value::Number(n)) => n.as_f64() == Some(0.0),
            Kind::Scalar(Value::String(s)) => s.is_empty(),
            Kind::Seq(items) => items.is_empty(),
            Kind::Map(entries) => entries.is_empty(),
            _ => false,
        }
    }

    fn to_value(&self) -> Value {
        match &self.kind {
            Kind::Scalar(v) => v.clone(),
            Kind::Merge => Value::String("<<".into()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Kind::Map(entries) => Value::Object(
                entries.iter().map(|(k, v)| (k.key_text(), v.to_value())).collect::<Map<_, _>>(),
            ),
        }
    }

    /// How Python's json module writes this node as a dict key.
    fn key_text(&self) -> String {
        match &self.kind {
            Kind::Scalar(Value::String(s)) => s.clone(),
            Kind::Scalar(Value::Null) => "null".into(),
            Kind::Scalar(v) => v.to_string(),
            _ => self.to_value().to_string(),
        }
    }
}

static YAML11_INT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$")
        .expect("int regex")
});
static YAML11_FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
        .expect("float regex")
});

/// PyYAML's construct_yaml_int.
fn yaml11_int(text: &str) -> Option<Value> {
    let t = text.replace('_', "");
    let (neg, body) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t.as_str()),
    };
    let magnitude: i128 = if body == "0" {
        0
    } else if let Some(b) = body.strip_prefix("0b") {
        i128::from_str_radix(b, 2).ok()?
    } else if let Some(h) = body.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()?
    } else if body.starts_with('0') {
        i128::from_str_radix(body, 8).ok()?
    } else if body.contains(':') {
        body.split(':').try_fold(0i128, |acc, part| Some(acc * 60 + part.parse::<i128>().ok()?))?
    } else {
        body.parse().ok()?
    };
    let v = if neg { -magnitude } else { magnitude };
    i64::try_from(v)
        .map(Value::from)
        .or_else(|_| u64::try_from(v).map(Value::from))
        .ok()
        .or_else(|| Number::from_f64(v as f64).map(Value::Number))
}

/// PyYAML's construct_yaml_float; infinities and NaN have no JSON form and
/// stay as written.
fn yaml11_float(text: &str) -> Value {
    let t = text.replace('_', "").to_ascii_lowercase();
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t.as_str()),
    };
    let magnitude = if body.contains(':') {
        body.split(':').fold(0f64, |acc, part| acc * 60.0 + part.parse::<f64>().unwrap_or(f64::NAN))
    } else {
        body.parse::<f64>().unwrap_or(f64::NAN)
    };
    let v = if neg { -magnitude } else { magnitude };
    Number::from_f64(v).map(Value::Number).unwrap_or_else(|| Value::String(text.to_string()))
}

/// The value of a plain (unquoted, untagged) scalar under YAML 1.1 rules.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Value::Bool(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Value::Bool(false),
        _ if YAML11_FLOAT.is_match(text) => yaml11_float(text),
        _ if YAML11_INT.is_match(text) => yaml11_int(text).unwrap_or_else(|| Value::String(text.into())),
        _ => Value::String(text.to_string()),
    }
}

const CORE: &str = "tag:yaml.org,2002:";

/// The value of an explicitly tagged scalar.
fn resolve_tagged(text: &str, tag: &Tag) -> Result<Value, String> {
    let bad = |what: &str| format!("{text:?} is not {what} as its tag !!{} says", tag.suffix);
    if tag.handle == CORE {
        return match tag.suffix.as_str() {
            "str" => Ok(Value::String(text.into())),
            "int" => yaml11_int(text).filter(|_| YAML11_INT.is_match(text)).ok_or_else(|| bad("an integer")),
            "float" => match resolve_plain(text) {
                Value::Number(n) => Number::from_f64(n.as_f64().unwrap_or(f64::NAN))
                    .map(Value::Number)
                    .ok_or_else(|| bad("a float")),
                _ => Err(bad("a float")),
            },
            "bool" => match resolve_plain(text) {
                Value::Bool(b) => Ok(Value::Bool(b)),
                _ => Err(bad("a boolean")),
            },
            "null" => Ok(Value::Null),
            other => Err(format!("tag !!{other} is not supported on a scalar")),
        };
    }
    match tag.suffix.as_str() {
        // Ansible's own tags: a string not to be templated, an encrypted string.
        "unsafe" | "vault" => Ok(Value::String(text.into())),
        other => Err(format!("unknown tag !{other}")),
    }
}

/// Builds the node tree of a single-document stream.
struct TreeReader<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, Node>,
    file: &'a Path,
    /// (line, message) of duplicate keys, which PyYAML resolves to the last one.
    duplicates: Vec<(usize, String)>,
}

impl<'a> TreeReader<'a> {
    fn new(text: &'a str, file: &'a Path) -> Self {
        TreeReader {
            parser: Parser::new_from_str(text),
            anchors: HashMap::new(),
            file,
            duplicates: Vec::new(),
        }
    }

    fn scan_error(&self, e: ScanError) -> InventoryError {
        InventoryError::Syntax {
            file: self.file.to_path_buf(),
            line: Some(e.marker().line()),
            column: Some(e.marker().col() + 1),
            message: format!("YAML syntax error: {}", e.info()),
            hint: "fix the YAML (indentation, quotes, ':' after keys)".into(),
        }
    }

    fn error(&self, line: usize, column: usize, message: String, hint: &str) -> InventoryError {
        InventoryError::Syntax {
            file: self.file.to_path_buf(),
            line: Some(line),
            column: Some(column),
            message,
            hint: hint.into(),
        }
    }

    fn next(&mut self) -> Result<(Event<'a>, Span), InventoryError> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(self.scan_error(e)),
            None => Ok((Event::StreamEnd, Span::default())),
        }
    }

    /// The document's root node, or `None` for an empty stream.
    fn document(&mut self) -> Result<Option<Node>, InventoryError> {
        let mut root = None;
        loop {
            let (ev, span) = self.next()?;
            match ev {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(root),
                Event::DocumentStart(_) if root.is_some() => {
                    return Err(self.error(
                        span.start.line(),
                        span.start.col() + 1,
                        "a second YAML document ('---') in the inventory".into(),
                        "keep one document per inventory file",
                    ))
                }
                Event::DocumentStart(_) => {
                    let (ev, span) = self.next()?;
                    root = Some(self.node(ev, span)?);
                }
                other => unreachable!("the parser emits a document before {other:?}"),
            }
        }
    }

    fn node(&mut self, ev: Event<'a>, span: Span) -> Result<Node, InventoryError> {
        let (line, column) = (span.start.line(), span.start.col() + 1);
        let (node, anchor) = match ev {
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().ok_or_else(|| {
                    self.error(
                        line,
                        column,
                        "alias to an unknown anchor".into(),
                        "define the &anchor before using *alias",
                    )
                })?;
                return Ok(Node { line, column, ..node });
            }
            Event::Scalar(text, style, anchor, tag) => {
                let kind = match (tag, style) {
                    (Some(tag), _) => Kind::Scalar(
                        resolve_tagged(&text, &tag)
                            .map_err(|m| self.error(line, column, m, "remove or fix the tag"))?,
                    ),
                    (None, ScalarStyle::Plain) if text == "<<" => Kind::Merge,
                    (None, ScalarStyle::Plain) => Kind::Scalar(resolve_plain(&text)),
                    (None, _) => Kind::Scalar(Value::String(text.to_string())),
                };
                (Node { kind, line, column, raw: Some(text.into_owned()) }, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, span)?);
                }
                (Node { kind: Kind::Seq(items), line, column, raw: None }, anchor)
            }
            Event::MappingStart(anchor, _) => {
                let mut entries = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::MappingEnd) {
                        break;
                    }
                    let key = self.node(ev, span)?;
                    let (ev, span) = self.next()?;
                    let value = self.node(ev, span)?;
                    entries.push((key, value));
                }
                (Node { kind: Kind::Map(self.flatten(entries)?), line, column, raw: None }, anchor)
            }
            other => unreachable!("the parser emits a node, not {other:?}"),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    /// Applies `<<` merge keys and resolves duplicate keys as PyYAML does:
    /// merged entries first (earlier sources win), then the mapping's own,
    /// a later key replacing an earlier one in place.
    fn flatten(&mut self, entries: Vec<(Node, Node)>) -> Result<Vec<(Node, Node)>, InventoryError> {
        let mut merged: Vec<(Node, Node)> = Vec::new();
        let mut own: Vec<(Node, Node)> = Vec::new();
        for (k, v) in entries {
            if !matches!(k.kind, Kind::Merge) {
                own.push((k, v));
                continue;
            }
            let sources = match v.kind {
                Kind::Map(m) => vec![m],
                Kind::Seq(items) => {
                    let mut maps = Vec::new();
                    for item in items {
                        match item.kind {
                            Kind::Map(m) => maps.push(m),
                            _ => {
                                return Err(self.error(
                                    item.line,
                                    item.column,
                                    "a '<<' merge list holds something other than mappings".into(),
                                    "merge only mappings (&anchors of mappings)",
                                ))
                            }
                        }
                    }
                    maps
                }
                _ => {
                    return Err(self.error(
                        v.line,
                        v.column,
                        "'<<' must merge a mapping or a list of mappings".into(),
                        "point '<<' at a mapping anchor",
                    ))
                }
            };
            for m in sources.into_iter().rev() {
                merged.extend(m);
            }
        }
        let mut out: Vec<(Node, Node)> = Vec::new();
        // key -> (index in out, whether it came from a merge)
        let mut index: HashMap<String, (usize, bool)> = HashMap::new();
        let from_merge = merged.len();
        for (i, (k, v)) in merged.into_iter().chain(own).enumerate() {
            let merging = i < from_merge;
            match index.get_mut(&k.key_text()) {
                Some((slot, slot_merged)) => {
                    // Overriding a merged key is what merges are for; only a
                    // key written twice in the same mapping is a mistake.
                    if !merging && !*slot_merged {
                        let first = out[*slot].0.line;
                        self.duplicates.push((
                            k.line,
                            format!("duplicate key {:?} (first at line {first}); the last one is used, as Ansible does", k.key_text()),
                        ));
                    }
                    *slot_merged = merging;
                    out[*slot].1 = v;
                }
                None => {
                    index.insert(k.key_text(), (out.len(), merging));
                    out.push((k, v));
                }
            }
        }
        Ok(out)
    }
}

/// True when `text` is a YAML document whose root is a mapping (how `load`
/// decides that an extension-less file is YAML, not INI).
pub(crate) fn is_mapping_document(text: &str) -> bool {
    // Past a limit: YAML, so that `parse` says which limit.
    if crate::yaml_limits::check(text).is_err() {
        return true;
    }
    let mut r = TreeReader::new(text, Path::new(""));
    matches!(r.document(), Ok(Some(Node { kind: Kind::Map(_), .. })))
}

pub(crate) fn parse(text: &str, file: &Path, opts: &LoadOptions) -> Result<Loaded, InventoryError> {
    // Size, node (aliases expanded) and depth limits before any tree is built.
    if let Err(e) = crate::yaml_limits::check(text) {
        let (line, column) = e.position().unzip();
        return Err(InventoryError::Syntax {
            file: file.to_path_buf(),
            line,
            column,
            message: e.message(),
            hint: e.hint().into(),
        });
    }
    let mut reader = TreeReader::new(text, file);
    let root = reader.document()?;
    let mut b = Builder::new(file, opts);
    for (line, message) in std::mem::take(&mut reader.duplicates) {
        b.warn(Some(line), message);
    }
    let err =
        |line: usize, message: String, hint: &str| InventoryError::syntax(file, Some(line), message, hint);
    let root = match root {
        Some(root) if !root.is_falsy() => root,
        _ => {
            return Err(InventoryError::syntax(
                file,
                None,
                "the YAML file is empty",
                "add groups, e.g. `all: {hosts: {node1: {ansible_host: 10.0.0.1}}}`",
            ))
        }
    };
    let Kind::Map(groups) = &root.kind else {
        return Err(err(
            root.line,
            format!("the YAML inventory is {}, not a mapping of groups", root.type_name()),
            "start with `all:` and put hosts, children and vars under it",
        ));
    };
    if let Some((_, v)) = groups.iter().find(|(k, _)| k.as_str() == Some("plugin")) {
        if !v.is_falsy() {
            return Err(err(
                v.line,
                "this is an inventory plugin configuration (it has `plugin:`), not an inventory".into(),
                "run `ansible-inventory -i FILE --list > inventory.json` and load the JSON instead",
            ));
        }
    }
    for (name, data) in groups {
        parse_group(&mut b, name, data)?;
    }
    b.finish()
}

/// One group and everything under it; returns the group's name (Ansible
/// returns it even when the group's data was skipped).
fn parse_group(b: &mut Builder, name_node: &Node, data: &Node) -> Result<String, InventoryError> {
    let file = b.file();
    let name = match name_node.as_str() {
        Some(n) => n.to_string(),
        None if matches!(data.kind, Kind::Map(_)) || data.is_null() => {
            return Err(InventoryError::syntax(
                file,
                Some(name_node.line),
                format!(
                    "group name {} is read by YAML as {} {}, not a string",
                    name_node.raw.as_deref().unwrap_or("?"),
                    name_node.type_name(),
                    name_node.key_text()
                ),
                "quote the group name",
            ))
        }
        None => name_node.key_text(),
    };
    let entries = match &data.kind {
        Kind::Map(entries) => entries,
        Kind::Scalar(Value::Null) => {
            b.add_group(&name, Some(name_node.line))?;
            return Ok(name);
        }
        _ => {
            b.warn(
                Some(data.line),
                format!(
                    "skipped {name:?}: a group must be a mapping (hosts/children/vars) or empty, this is {}",
                    data.type_name()
                ),
            );
            return Ok(name);
        }
    };
    b.add_group(&name, Some(name_node.line))?;

    // A string in place of a section's mapping names one entry.
    let mut sections: Vec<(&str, Node)> = Vec::new();
    for (key, value) in entries {
        let Some(k) = key.as_str().filter(|k| matches!(*k, "hosts" | "children" | "vars")) else {
            let what = if matches!(value.kind, Kind::Map(_)) || value.is_null() {
                ""
            } else {
                " and its value is not a mapping"
            };
            b.warn(
                Some(key.line),
                format!(
                    "skipped key {} in group {name:?}: only hosts, children and vars are read{what}",
                    key.key_text()
                ),
            );
            continue;
        };
        let normalized = match &value.kind {
            Kind::Scalar(Value::String(_)) => Node {
                kind: Kind::Map(vec![(
                    value.clone(),
                    Node { kind: Kind::Scalar(Value::Null), ..value.clone() },
                )]),
                ..value.clone()
            },
            Kind::Map(_) | Kind::Scalar(Value::Null) => value.clone(),
            _ => {
                return Err(InventoryError::syntax(
                    file,
                    Some(value.line),
                    format!("{k} of group {name:?} is {}, but must be a mapping", value.type_name()),
                    format!(
                        "write {k} as `name:` entries, one per line (e.g. `node1:` with a trailing colon){}",
                        if matches!(value.kind, Kind::Seq(_)) { ", not as a list" } else { "" }
                    ),
                ))
            }
        };
        sections.push((k, normalized));
    }

    for (section, node) in sections {
        let Kind::Map(items) = &node.kind else { continue }; // null: nothing to add
        match section {
            "vars" => {
                for (k, v) in items {
                    b.set_group_var(&name, &k.key_text(), v.to_value(), Some(k.line))?;
                }
            }
            "children" => {
                for (child, child_data) in items {
                    let child_name = parse_group(b, child, child_data)?;
                    b.add_child_group_or_host(&name, &child_name, Some(child.line))?;
                }
            }
            _ => {
                for (pattern_node, host_data) in items {
                    let Some(host_pattern) = pattern_node.as_str() else {
                        return Err(InventoryError::syntax(
                            file,
                            Some(pattern_node.line),
                            format!(
                                "host {} is read by YAML as {} {}, not a string",
                                pattern_node.raw.as_deref().unwrap_or("?"),
                                pattern_node.type_name(),
                                pattern_node.key_text()
                            ),
                            format!("quote it: \"{}\":", pattern_node.raw.as_deref().unwrap_or("")),
                        ));
                    };
                    let (names, port) = b.expand_hosts(host_pattern, Some(pattern_node.line))?;
                    if names.is_empty() {
                        b.warn(Some(pattern_node.line), format!("host range {host_pattern:?} expands to no hosts (its end comes before its begin); nothing added"));
                    }
                    let vars: &[(Node, Node)] =
                        match &host_data.kind {
                            Kind::Map(vars) => vars,
                            _ if host_data.is_falsy() => &[],
                            _ => return Err(InventoryError::syntax(
                                file,
                                Some(host_data.line),
                                format!(
                                    "host {host_pattern:?} has {} where its variables should be",
                                    host_data.type_name()
                                ),
                                "give the host a mapping of variables (`ansible_host: 10.0.0.1`) or nothing",
                            )),
                        };
                    for host in &names {
                        b.add_host(host, &name, port, Some(pattern_node.line))?;
                        for (k, v) in vars {
                            b.set_host_var(host, &k.key_text(), v.to_value(), Some(k.line))?;
                        }
                    }
                }
            }
        }
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(text: &str) -> Loaded {
        parse(text, Path::new("t.yml"), &LoadOptions::default())
            .unwrap_or_else(|e| panic!("should parse: {e}"))
    }

    #[test]
    fn scalars_follow_yaml_1_1() {
        for (text, want) in [
            ("yes", json!(true)),
            ("Off", json!(false)),
            ("0755", json!(493)),
            ("1:30", json!(90)),
            ("0x1F", json!(31)),
            ("1_000", json!(1000)),
            ("1.5", json!(1.5)),
            ("1e3", json!("1e3")),
            ("~", json!(null)),
            ("10.0.1.10", json!("10.0.1.10")),
            ("2024-01-02", json!("2024-01-02")),
        ] {
            assert_eq!(resolve_plain(text), want, "{text:?}");
        }
    }

    #[test]
    fn groups_hosts_children_and_vars() {
        let (inv, _) = load(
            "all:\n  vars:\n    v: 1\n  children:\n    web:\n      hosts:\n        node[1:2]:\n          ansible_host: 10.0.0.1\n    \
             db:\n      hosts: dbhost\n      children:\n        web:\n",
        );
        assert_eq!(inv.hosts["node1"].groups, ["all", "db", "web"].map(String::from).into());
        assert_eq!(inv.hosts["dbhost"].vars["v"], json!(1));
        assert_eq!(inv.hosts["node2"].ansible_host.as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn anchors_merges_and_duplicates() {
        let (inv, warnings) = load(
            "all:\n  hosts:\n    a: &base {ansible_host: 10.0.0.1, role: x}\n    b:\n      <<: *base\n      role: y\n      role: z\n",
        );
        assert_eq!(inv.hosts["b"].vars["ansible_host"], json!("10.0.0.1"));
        assert_eq!(inv.hosts["b"].vars["role"], json!("z"));
        // `role: y` overriding the merged `role: x` is not a duplicate; `role: z` is.
        let duplicates: Vec<_> = warnings.iter().filter(|w| w.message.contains("duplicate key")).collect();
        assert!(duplicates.len() == 1 && duplicates[0].line == Some(7), "{warnings:?}");
    }

    #[test]
    fn structure_errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("all:\n  children:\n    web:\n      hosts:\n        - a\n", 5, "must be a mapping"),
            ("all:\n  hosts:\n    node[01:03:\n", 3, "no closing"),
            ("all:\n  hosts:\n    10.5:\n", 3, "host 10.5 is read by YAML as a number 10.5"),
            (
                "all:\n  hosts:\n    2001:0:0:1:\n",
                3,
                "as a number 432216001, not a string; quote it: \"2001:0:0:1\":",
            ),
            ("all:\n  hosts:\n    a: [1]\n", 3, "where its variables should be"),
            ("plugin: aws_ec2\n", 1, "plugin configuration"),
            ("all:\n  hosts:\n    a: {\n", 4, "YAML syntax error"),
            // b's child a is attached first; the loop closes when b becomes a's child.
            ("a:\n  children:\n    b:\n      children:\n        a:\n", 3, "b -> a -> b"),
        ];
        for (text, line, needle) in cases {
            let e = match parse(text, Path::new("t.yml"), &LoadOptions::default()) {
                Ok(_) => panic!("should fail:\n{text}"),
                Err(e) => e,
            };
            assert_eq!(e.line(), Some(*line), "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{text:?}: {e} should mention {needle:?}");
        }
    }
}
