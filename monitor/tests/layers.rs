//! The module graph of `monitor/src`, as docs/architecture.md ("Layers")
//! states it: no module imports a module of a higher layer, and no two
//! files import each other, directly or round a loop.
//!
//! The graph is read from the source: every `use crate::...` and
//! `use super::...` (braces expanded) and every inline `crate::x::y` path,
//! with comments and `#[cfg(test)]` modules left out, resolved to the
//! longest module path that is a file.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// From the bottom; a module may import its own layer and those below.
const LAYERS: &[&[&str]] = &[
    &["yaml_limits", "counters", "flow", "alert"],
    &["siem"],
    &["ocsf", "falco"],
    &["matrix", "inventory"],
    &["engine", "host_paths"],
    &["verdict"],
    &["dns"],
    &["kernel"],
    &["replay", "live", "import", "fleet", "firewall", "probe"],
    &["graph", "learn"],
    &["report", "top"],
    &["cli", "cmd"],
];

type Module = Vec<String>;

fn modules(src: &Path) -> BTreeMap<Module, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(src).unwrap().with_extension("");
                let mut m: Module = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
                if m.last().is_some_and(|l| l == "mod") {
                    m.pop();
                }
                if m != ["lib"] && m != ["main"] {
                    out.insert(m, std::fs::read_to_string(&p).unwrap());
                }
            }
        }
    }
    out
}

/// The code without comments and without the unit-test module.
fn code(text: &str) -> String {
    let text = match text
        .find("#[cfg(test)]\nmod tests")
        .or_else(|| text.find("#[cfg(test)]\npub(crate) mod tests"))
    {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Every path a `use` tree names, braces expanded.
fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(inner) = tree.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        let (mut depth, mut item) = (0, String::new());
        for c in inner.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(prefix, &std::mem::take(&mut item), out);
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        expand(prefix, &item, out);
    } else if let Some((head, rest)) = tree.split_once("::") {
        let mut p = prefix.to_vec();
        p.push(head.trim().to_string());
        expand(&p, rest, out);
    } else if !tree.is_empty() {
        let mut p = prefix.to_vec();
        p.push(tree.split_whitespace().next().unwrap().to_string());
        out.push(p);
    }
}

/// The paths starting at `crate` or `super` that a file's code names.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let uses = regex::Regex::new(r"\buse\s+((?:crate|super)(?:::super)*)::([^;]*);").unwrap();
    for c in uses.captures_iter(code) {
        let base: Vec<String> = c[1].split("::").map(String::from).collect();
        expand(&base, &c[2], &mut out);
    }
    let inline =
        regex::Regex::new(r"(?:^|[^\w:])((?:crate|super)(?:::super)*)((?:::[a-z_][a-z0-9_]*)+)").unwrap();
    for c in inline.captures_iter(code) {
        let mut p: Vec<String> = c[1].split("::").map(String::from).collect();
        p.extend(c[2].split("::").filter(|s| !s.is_empty()).map(String::from));
        out.push(p);
    }
    out
}

fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    let mut g: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (me, text) in &mods {
        for p in paths(&code(text)) {
            let mut target: Module = if p[0] == "crate" {
                p[1..].to_vec()
            } else {
                let supers = p.iter().take_while(|s| *s == "super").count();
                let mut base = me[..me.len().saturating_sub(supers)].to_vec();
                base.extend(p[supers..].iter().cloned());
                base
            };
            while !target.is_empty() && !mods.contains_key(&target) {
                target.pop();
            }
            // A module's own ancestors hold it; not an import.
            if !target.is_empty() && &target != me && !me.starts_with(&target) {
                g.entry(me.clone()).or_default().insert(target);
            }
        }
    }
    g
}

fn layer(m: &Module) -> usize {
    LAYERS.iter().position(|l| l.contains(&m[0].as_str())).unwrap_or_else(|| {
        panic!("module `{}` is in no layer: add it to LAYERS and docs/architecture.md", m[0])
    })
}

fn name(m: &Module) -> String {
    m.join("::")
}

#[test]
fn no_module_imports_a_higher_layer() {
    let g = graph();
    assert!(g.len() > 30, "the graph was read: {} modules import others", g.len());
    let mut wrong = Vec::new();
    for (from, tos) in &g {
        for to in tos {
            if layer(to) > layer(from) {
                wrong.push(format!("{} imports {}", name(from), name(to)));
            }
        }
    }
    assert!(wrong.is_empty(), "imports up the layers (docs/architecture.md):\n{}", wrong.join("\n"));
    // The CLI is the top: no domain module reaches into it.
    for (from, tos) in &g {
        if !matches!(from[0].as_str(), "cli" | "cmd") {
            assert!(!tos.iter().any(|t| t[0] == "cmd" || t[0] == "cli"), "{} imports the CLI", name(from));
        }
    }
}

#[test]
fn there_are_no_import_cycles() {
    let g = graph();
    // A cycle exists iff some edge a -> b has b reaching a.
    let reaches = |from: &Module, to: &Module| {
        let (mut seen, mut todo) = (BTreeSet::new(), vec![from.clone()]);
        while let Some(m) = todo.pop() {
            if &m == to {
                return true;
            }
            if seen.insert(m.clone()) {
                todo.extend(g.get(&m).into_iter().flatten().cloned());
            }
        }
        false
    };
    let mut cycles = Vec::new();
    for (a, tos) in &g {
        for b in tos {
            if reaches(b, a) {
                cycles.push(format!("{} -> {} -> ... -> {}", name(a), name(b), name(a)));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}
