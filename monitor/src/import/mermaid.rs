//! Mermaid flowcharts: nodes (`X["Long Name"]`), subgraphs, and edges
//! whose labels carry ports (`A -->|8001| B`, `A <-- 8300,8301 --> B`).
//! Nodes take their label as service name and their innermost subgraph's
//! title as host group; an edge that names a subgraph stands for the group.

use std::{collections::HashMap, sync::LazyLock};

use regex::Regex;

use super::{Block, Edge, Node, Warning};

/// A link with its label between the dashes: `-- 443 -->`, `<-- 8300 -->`, `-. 53 .->`.
static LINK_INLINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(<)?(?:--|==|-\.)\s+([^<>|]+?)\s+(?:-{2,}|={2,}|\.-)([>ox])?\s*").unwrap()
});
/// A link, with an optional `|label|` after it: `-->`, `<-->|x|`, `-.->`, `==>`, `---`.
static LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*(<)?(?:-{2,}|={2,}|-\.+-)([>ox])?\s*(?:\|([^|]*)\|)?\s*").unwrap());
static NODE_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\s*([A-Za-z0-9_][A-Za-z0-9_.]*)").unwrap());

struct RawEdge {
    line: usize,
    from: String,
    to: String,
    label: String,
    both: bool,
    raw: String,
}

/// Reads a flowchart; `offset` is added to line numbers (for a block inside Markdown).
pub(crate) fn read(text: &str, offset: usize) -> (Vec<Block>, Vec<Warning>) {
    let mut warnings = Vec::new();
    let mut labels: HashMap<String, String> = HashMap::new();
    let mut member_of: HashMap<String, String> = HashMap::new(); // node id → subgraph id
    let mut subgraph_titles: HashMap<String, String> = HashMap::new();
    let mut stack: Vec<String> = Vec::new();
    let mut edges = Vec::new();

    for (i, l) in text.lines().enumerate() {
        let line = i + 1 + offset;
        let t = l.trim().trim_end_matches(';').trim();
        let word = t.split_whitespace().next().unwrap_or("");
        if t.is_empty()
            || t.starts_with("%%")
            || matches!(
                word,
                "flowchart" | "graph" | "classDef" | "class" | "style" | "linkStyle" | "click" | "direction"
            )
        {
            continue;
        }
        if word == "subgraph" {
            let rest = t["subgraph".len()..].trim();
            let (id, title) = match NODE_ID.captures(rest) {
                Some(c) if rest[c[0].len()..].trim_start().starts_with('[') => {
                    let id = c[1].to_string();
                    (id, unquote(strip_shape(rest[c[0].len()..].trim())))
                }
                Some(c) if c[0].trim().len() == rest.len() => (c[1].to_string(), c[1].to_string()),
                _ => {
                    let title = unquote(rest);
                    (title.clone(), title)
                }
            };
            subgraph_titles.insert(id.clone(), title);
            stack.push(id);
            continue;
        }
        if t == "end" {
            if stack.pop().is_none() {
                warnings.push(Warning { line, message: "`end` without a `subgraph`; ignored".into() });
            }
            continue;
        }
        match statement(t) {
            Ok((groups, links)) => {
                for g in &groups {
                    for (id, label) in g {
                        if let Some(label) = label {
                            labels.entry(id.clone()).or_insert_with(|| label.clone());
                        }
                        if let Some(sg) = stack.last() {
                            if sg != id {
                                member_of.entry(id.clone()).or_insert_with(|| sg.clone());
                            }
                        }
                    }
                }
                for (k, (label, both)) in links.into_iter().enumerate() {
                    for (from, _) in &groups[k] {
                        for (to, _) in &groups[k + 1] {
                            edges.push(RawEdge {
                                line,
                                from: from.clone(),
                                to: to.clone(),
                                label: label.clone(),
                                both,
                                raw: t.to_string(),
                            });
                        }
                    }
                }
            }
            Err(why) => warnings
                .push(Warning { line, message: format!("Mermaid statement not understood ({why}): {t}") }),
        }
    }
    if !stack.is_empty() {
        warnings.push(Warning {
            line: text.lines().count() + offset,
            message: format!("subgraph {} is never closed with `end`", stack.join(", ")),
        });
    }

    let node = |id: &str| -> Node {
        if let Some(title) = subgraph_titles.get(id) {
            return Node { label: title.clone(), subgraph: None };
        }
        Node {
            label: labels.get(id).cloned().unwrap_or_else(|| id.to_string()),
            subgraph: member_of
                .get(id)
                .map(|sg| subgraph_titles.get(sg).cloned().unwrap_or_else(|| sg.clone())),
        }
    };
    let blocks = edges
        .into_iter()
        .map(|e| {
            Block::Edge(Edge {
                line: e.line,
                from: node(&e.from),
                to: node(&e.to),
                label: e.label,
                both: e.both,
                raw: e.raw,
            })
        })
        .collect();
    (blocks, warnings)
}

/// Nodes joined by `&`: id and label, if the statement gives one.
type NodeGroup = Vec<(String, Option<String>)>;
/// A link's label, and whether it goes both ways.
type Link = (String, bool);

/// `A & B --> C -->|x| D`: the node groups and, between each pair, the link's label and whether it goes both ways.
fn statement(t: &str) -> Result<(Vec<NodeGroup>, Vec<Link>), String> {
    let mut rest = t;
    let mut groups = Vec::new();
    let mut links = Vec::new();
    loop {
        let mut group = Vec::new();
        loop {
            let (id, label, r) = node_ref(rest)?;
            group.push((id, label));
            rest = r.trim_start();
            match rest.strip_prefix('&') {
                Some(r) => rest = r,
                None => break,
            }
        }
        groups.push(group);
        if rest.is_empty() {
            break;
        }
        let (label, left, right, len) = if let Some(c) = LINK_INLINE.captures(rest) {
            (
                c[2].trim().to_string(),
                c.get(1).is_some(),
                c.get(3).is_some_and(|m| m.as_str() == ">"),
                c[0].len(),
            )
        } else if let Some(c) = LINK.captures(rest) {
            let label = c.get(3).map(|m| m.as_str().trim().to_string()).unwrap_or_default();
            (label, c.get(1).is_some(), c.get(2).is_some_and(|m| m.as_str() == ">"), c[0].len())
        } else {
            return Err(format!("expected a link such as --> at {rest:?}"));
        };
        // `<--` alone is unusual: flip it into a forward edge.
        if left && !right {
            return Err("left-pointing link `<--`; write B --> A".into());
        }
        links.push((unquote(&label), left || !right));
        rest = &rest[len..];
        if rest.is_empty() {
            return Err("link without a target node".into());
        }
    }
    Ok((groups, links))
}

/// A node id with its optional shape and label; returns the rest of the text.
fn node_ref(s: &str) -> Result<(String, Option<String>, &str), String> {
    let c = NODE_ID.captures(s).ok_or_else(|| format!("expected a node id at {:?}", s.trim()))?;
    let id = c[1].to_string();
    let rest = &s[c[0].len()..];
    let Some(open) = rest.chars().next().filter(|c| matches!(c, '[' | '(' | '{' | '>')) else {
        return Ok((id, None, rest));
    };
    let close = match open {
        '[' => ']',
        '(' => ')',
        '{' => '}',
        _ => ']',
    };
    // The label ends at the last closing bracket of the shape, before the next link.
    let quoted = rest[1..].trim_start_matches(['[', '(', '{', '/', '\\']).starts_with('"');
    let end = if quoted {
        let q1 = rest.find('"').unwrap();
        let q2 = rest[q1 + 1..].find('"').map(|i| i + q1 + 1).ok_or("unclosed quote in a node label")?;
        rest[q2..].find(close).map(|i| i + q2)
    } else {
        rest.find(close)
    }
    .ok_or_else(|| format!("node {id}: `{open}` is never closed"))?;
    let mut end = end + 1;
    while rest[end..].starts_with(close) {
        end += 1;
    }
    let label = unquote(strip_shape(&rest[..end]));
    Ok((id, Some(label), &rest[end..]))
}

/// `[(x)]`, `((x))`, `{x}`, `>x]`, `[/x/]` → `x`.
fn strip_shape(s: &str) -> &str {
    s.trim()
        .trim_start_matches(['[', '(', '{', '>'])
        .trim_end_matches([']', ')', '}'])
        .trim_matches(['/', '\\'])
        .trim()
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    let s = s.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(s);
    s.replace("<br>", " ").replace("<br/>", " ").trim().to_string()
}
