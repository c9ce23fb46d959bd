//! The INI inventory format, read line by line as Ansible's `ini` plugin
//! does (ansible/plugins/inventory/ini.py): hosts before any section are in
//! `ungrouped`; `[g]` lists hosts, `[g:children]` groups, `[g:vars]` one
//! `key=value` per line; a `[g:children]` entry or `[g:vars]` section may come
//! before `[g]` but `g` must be declared somewhere.

use std::{path::Path, sync::LazyLock};

use regex::Regex;
use serde_json::Value;

use super::{
    builder::{Builder, UNGROUPED},
    pyliteral, shlex, InventoryError, LoadOptions, Loaded,
};

static SECTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$").expect("section regex"));
static GROUP_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([^:\]\s]+)\s*(?:#.*)?$").expect("group name regex"));

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Hosts,
    Children,
    Vars,
}

/// A group used before any `[g]` or `[g:children]` declared it.
struct Pending {
    name: String,
    line: usize,
    /// Parents waiting for this group (from `:children` sections), or none
    /// when the first use was a `[g:vars]` section.
    parents: Option<Vec<String>>,
}

/// Ansible's `_parse_value`: a Python literal if it is one, else the text.
fn value(text: &str) -> Value {
    pyliteral::literal_eval(text).unwrap_or_else(|| Value::String(text.to_string()))
}

pub(crate) fn parse(text: &str, file: &Path, opts: &LoadOptions) -> Result<Loaded, InventoryError> {
    let mut b = Builder::new(file, opts);
    let mut pending: Vec<Pending> = Vec::new();
    let mut group = UNGROUPED.to_string();
    let mut state = State::Hosts;
    let err =
        |line: usize, message: String, hint: &str| InventoryError::syntax(file, Some(line), message, hint);
    // Ansible reads a byte-order mark as part of the first line (a section
    // header then fails, a host gets it in its name).
    if text.starts_with('\u{feff}') {
        return Err(err(
            1,
            "the file starts with a UTF-8 byte-order mark".into(),
            "save it as UTF-8 without BOM",
        ));
    }

    for (index, raw) in text.lines().enumerate() {
        let n = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }

        if let Some(c) = SECTION.captures(line) {
            group = c[1].to_string();
            state = match c.get(2).map(|m| m.as_str()) {
                None | Some("hosts") => State::Hosts,
                Some("children") => State::Children,
                Some("vars") => State::Vars,
                Some(other) => {
                    return Err(err(
                        n,
                        format!("section [{group}:{other}] has unknown type {other:?}"),
                        &format!("use [{group}] for hosts, [{group}:children] for child groups or [{group}:vars] for variables"),
                    ))
                }
            };
            if !b.has_group(&group) {
                // [g:vars] alone does not declare g; remember to check.
                if state == State::Vars && !pending.iter().any(|p| p.name == group) {
                    pending.push(Pending { name: group.clone(), line: n, parents: None });
                }
                b.add_group(&group, Some(n))?;
            }
            if state != State::Vars {
                if let Some(i) = pending.iter().position(|p| p.name == group) {
                    resolve_pending(&mut b, &mut pending, i, n)?;
                }
            }
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            return Err(err(
                n,
                format!("invalid section header {line}"),
                "write [group], [group:children] or [group:vars] with no spaces and no ':' or ']' in the name",
            ));
        }

        match state {
            State::Hosts => host_line(&mut b, line, &group, n)?,
            State::Vars => {
                let Some((k, v)) = line.split_once('=') else {
                    return Err(err(
                        n,
                        format!("expected key=value in [{group}:vars], got {line:?}"),
                        "write one variable per line as key=value",
                    ));
                };
                b.set_group_var(&group, k.trim(), value(v.trim()), Some(n))?;
            }
            State::Children => {
                let Some(c) = GROUP_NAME.captures(line) else {
                    return Err(err(
                        n,
                        format!("expected a group name in [{group}:children], got {line:?}"),
                        "write one group name per line (comments start with #)",
                    ));
                };
                let child = &c[1];
                if b.has_group(child) {
                    b.add_child(&group, child, Some(n))?;
                } else if let Some(p) = pending.iter_mut().find(|p| p.name == child) {
                    p.parents.get_or_insert_with(Vec::new).push(group.clone());
                } else {
                    pending.push(Pending {
                        name: child.to_string(),
                        line: n,
                        parents: Some(vec![group.clone()]),
                    });
                }
            }
        }
    }

    if let Some(p) = pending.first() {
        let section = match &p.parents {
            None => format!("{}:vars", p.name),
            Some(parents) => format!("{}:children", parents.last().expect("a children entry has a parent")),
        };
        return Err(InventoryError::UndefinedGroup {
            file: file.to_path_buf(),
            line: p.line,
            section,
            group: p.name.clone(),
        });
    }
    b.finish()
}

/// The group at `pending[i]` was just declared: attach it to the parents
/// that named it, and do the same for parents that were waiting themselves
/// (Ansible's `_add_pending_children`).
fn resolve_pending(
    b: &mut Builder,
    pending: &mut Vec<Pending>,
    i: usize,
    line: usize,
) -> Result<(), InventoryError> {
    let p = pending.remove(i);
    for parent in p.parents.unwrap_or_default() {
        b.add_child(&parent, &p.name, Some(line))?;
        if let Some(j) = pending.iter().position(|q| q.name == parent && q.parents.is_some()) {
            resolve_pending(b, pending, j, line)?;
        }
    }
    Ok(())
}

fn host_line(b: &mut Builder, line: &str, group: &str, n: usize) -> Result<(), InventoryError> {
    let file = b.file();
    let words = shlex::split(line).map_err(|e| {
        let (message, hint) = match e {
            shlex::ShlexError::NoClosingQuotation { column } => (
                format!("quote opened at column {} is never closed", column + 1),
                "close the quote, or escape it with a backslash",
            ),
            shlex::ShlexError::NoEscapedCharacter => {
                ("line ends with a backslash".to_string(), "remove the trailing backslash")
            }
        };
        InventoryError::syntax(file, Some(n), message, hint)
    })?;
    let Some((host_pattern, assignments)) = words.split_first() else {
        return Ok(()); // not reached: the caller skips blank and comment lines
    };

    let (names, port) = b.expand_hosts(host_pattern, Some(n))?;
    if port.is_none() && host_pattern.trim().ends_with(':') {
        return Err(InventoryError::syntax(
            file,
            Some(n),
            format!("host pattern {host_pattern:?} ends in ':'"),
            "':' introduces a port: write host:22, or drop the ':'",
        ));
    }
    if names.iter().any(|h| h.trim() == "---") {
        return Err(InventoryError::syntax(
            file,
            Some(n),
            "'---' where a host was expected",
            "this looks like a YAML file: name it .yml, or remove the '---' line",
        ));
    }
    if names.is_empty() {
        b.warn(
            Some(n),
            format!("host range {host_pattern:?} expands to no hosts (its end comes before its begin); nothing added"),
        );
    }

    let mut vars: Vec<(&str, Value)> = Vec::new();
    for word in assignments {
        let Some((k, v)) = word.split_once('=') else {
            return Err(InventoryError::syntax(
                file,
                Some(n),
                format!("expected key=value after host {host_pattern:?}, got {word:?}"),
                "write host variables as key=value (quote values with spaces; comments start with #, not ;)",
            ));
        };
        // Later assignments of the same key win, as in the dict Ansible builds.
        vars.retain(|(existing, _)| *existing != k);
        vars.push((k, value(v)));
    }
    for name in &names {
        b.add_host(name, group, port, Some(n))?;
        for (k, v) in &vars {
            b.set_host_var(name, k, v.clone(), Some(n))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(text: &str) -> Loaded {
        parse(text, Path::new("t.ini"), &LoadOptions::default())
            .unwrap_or_else(|e| panic!("should parse: {e}"))
    }

    fn load_err(text: &str) -> InventoryError {
        match parse(text, Path::new("t.ini"), &LoadOptions::default()) {
            Ok(_) => panic!("should fail:\n{text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn host_lines_sections_and_vars() {
        let (inv, _) = load(
            "top ansible_host=10.0.0.9\n[web]\nnode[1:2] ansible_host=10.0.1.10 foo=\"a b\" port=22\n\
             [web:vars]\nhttp=8080 # comment\n[db]\ntop\n",
        );
        let n1 = &inv.hosts["node1"];
        assert_eq!(n1.vars["foo"], json!("a b"));
        assert_eq!(n1.vars["port"], json!(22));
        assert_eq!(n1.vars["http"], json!(8080));
        assert_eq!(n1.addresses, vec!["10.0.1.10".parse::<std::net::IpAddr>().unwrap()]);
        // `top` was ungrouped until [db] named it.
        assert_eq!(inv.hosts["top"].groups, ["all", "db"].map(String::from).into());
        assert!(inv.groups["ungrouped"].hosts.is_empty());
    }

    #[test]
    fn children_may_be_declared_later() {
        let (inv, _) = load("[a:children]\nb\n[b:children]\nc\n[c]\nh1\n[b:vars]\nx=1\n");
        assert_eq!(inv.hosts["h1"].groups, ["a", "all", "b", "c"].map(String::from).into());
        assert_eq!(inv.hosts["h1"].vars["x"], json!(1));
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("[web]\nnode1\n[web:badsuffix]\n", 3, "unknown type"),
            ("[web]\nnode[01:03\n", 2, "no closing"),
            ("[a:children]\nb\n[b:children]\na\n", 4, "a -> b -> a"),
            ("[a]\nh\n[a:children]\nnope\n", 4, "never declared"),
            ("[ghost:vars]\nx=1\n", 1, "never declared"),
            ("[web]\nh foo=\"a b\n", 2, "never closed"),
            ("[web]\nh foo ;c\n", 2, "expected key=value"),
            ("[web:vars]\njust text\n", 2, "expected key=value"),
            ("[web]\n[bad name]\n", 2, "invalid section"),
            ("[web:children]\na b\n", 2, "expected a group name"),
            ("[a:children]\na\n", 2, "a -> a"),
            ("\u{feff}[web]\nw1\n", 1, "byte-order mark"),
        ];
        for (text, line, needle) in cases {
            let e = load_err(text);
            let shown = e.to_string();
            assert_eq!(e.line(), Some(*line), "{text:?}: {shown}");
            assert!(shown.contains(needle), "{text:?}: {shown:?} should mention {needle:?}");
            assert!(shown.starts_with(&format!("t.ini:{line}: ")), "{shown}");
        }
    }

    #[test]
    fn empty_ranges_and_unaddressed_hosts_are_warned_about() {
        let (inv, warnings) = load("[web]\nn[3:1]\nweb.example.com\n");
        assert!(inv.groups["web"].hosts.iter().eq(["web.example.com"]));
        assert!(warnings.iter().any(|w| w.line == Some(2) && w.message.contains("no hosts")), "{warnings:?}");
        assert!(
            warnings.iter().any(|w| w.line == Some(3) && w.message.contains("no IP address")),
            "{warnings:?}"
        );
    }
}
