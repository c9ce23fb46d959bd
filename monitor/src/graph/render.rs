//! A [`Graph`] as text: Mermaid (the language vendors draw their own
//! architecture diagrams in, which Markdown viewers render) and Graphviz
//! DOT (for `dot`, and for SVG through [`super::svg`]).
//!
//! Names and labels come from the matrix, the inventory and the traffic, so
//! they are escaped for each language: a quote, a `#`, a `|` or a newline
//! in a name cannot end a label or start a statement.

use std::fmt::Write as _;

use super::{Edge, EdgeKind, Graph, Node, NodeKind};

/// The first comment of both forms.
const HEADER: &str =
    "monitor graph: the documented rules and the traffic observed against them (docs/graph.md)";

/// A label's text inside a Mermaid `"..."` string: every character that
/// Mermaid reads as syntax there (`"`, `#` entity codes, `%%` comments,
/// `|` edge-label ends, `<` `>` `&` HTML, backtick Markdown strings) as
/// a numeric entity code; lines joined with `<br>`.
pub fn mermaid_text(lines: &[String]) -> String {
    let mut o = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            o.push_str("<br>");
        }
        for c in line.chars() {
            match c {
                '"' | '#' | '%' | '|' | '<' | '>' | '&' | '`' | '\\' | '[' | ']' | '{' | '}' => {
                    let _ = write!(o, "#{};", c as u32);
                }
                '\n' => o.push_str("<br>"),
                c if c.is_control() => {}
                c => o.push(c),
            }
        }
    }
    o
}

/// A DOT double-quoted string's content: `\` and `"` escaped (so that no
/// Graphviz escape such as `\N` or `\G` is read from a name), lines joined
/// with `\n` (centred lines).
pub fn dot_text(lines: &[String]) -> String {
    let mut o = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            o.push_str("\\n");
        }
        for c in line.chars() {
            match c {
                '\\' => o.push_str("\\\\"),
                '"' => o.push_str("\\\""),
                '\n' => o.push_str("\\n"),
                c if c.is_control() => {}
                c => o.push(c),
            }
        }
    }
    o
}

/// A node's label: its name, and for what the matrix does not name, its kind.
fn node_label(n: &Node) -> Vec<String> {
    match n.kind {
        NodeKind::Service | NodeKind::Zone | NodeKind::Any => vec![n.name.clone()],
        NodeKind::Group | NodeKind::Host | NodeKind::Address => {
            vec![n.name.clone(), format!("({})", n.kind.as_str())]
        }
    }
}

/// The Mermaid flowchart.
pub fn mermaid(g: &Graph) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "%% {HEADER}");
    for n in &g.notes {
        let _ = writeln!(o, "%% note: {}", n.replace('\n', " "));
    }
    o.push_str("flowchart LR\n");
    let index: std::collections::BTreeMap<&str, usize> =
        g.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    for (i, n) in g.nodes.iter().enumerate() {
        let text = mermaid_text(&node_label(n));
        let _ = match n.kind {
            NodeKind::Service => writeln!(o, "  n{i}[\"{text}\"]"),
            NodeKind::Zone => writeln!(o, "  n{i}([\"{text}\"])"),
            NodeKind::Any => writeln!(o, "  n{i}((\"{text}\"))"),
            NodeKind::Group => writeln!(o, "  n{i}[[\"{text}\"]]"),
            NodeKind::Host | NodeKind::Address => writeln!(o, "  n{i}[/\"{text}\"/]"),
        };
    }
    for e in &g.edges {
        let arrow = if e.kind == EdgeKind::Unused { "-.->" } else { "-->" };
        let _ = writeln!(
            o,
            "  n{} {arrow}|\"{}\"| n{}",
            index[e.from.as_str()],
            mermaid_text(&e.label),
            index[e.to.as_str()]
        );
    }
    // One linkStyle per kind, listing its edges (numbered in order).
    for kind in
        [EdgeKind::Used, EdgeKind::Unused, EdgeKind::Blocked, EdgeKind::Undocumented, EdgeKind::Exposed]
    {
        let of: Vec<String> =
            g.edges.iter().enumerate().filter(|(_, e)| e.kind == kind).map(|(i, _)| i.to_string()).collect();
        if !of.is_empty() {
            let _ = writeln!(o, "  linkStyle {} {}", of.join(","), mermaid_style(kind));
        }
    }
    o
}

fn mermaid_style(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::Used => "stroke:#333333,stroke-width:1.5px",
        EdgeKind::Unused => "stroke:#9e9e9e,stroke-width:1px,stroke-dasharray:5 5",
        EdgeKind::Blocked => "stroke:#d50000,stroke-width:2.5px",
        EdgeKind::Undocumented => "stroke:#ff8c00,stroke-width:2.5px",
        EdgeKind::Exposed => "stroke:#8e24aa,stroke-width:2.5px",
    }
}

/// The Graphviz DOT digraph.
pub fn dot(g: &Graph) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "// {HEADER}");
    for n in &g.notes {
        let _ = writeln!(o, "// note: {}", n.replace('\n', " "));
    }
    o.push_str("digraph monitor {\n");
    // Room between ranks for the edges' labels.
    o.push_str("  rankdir=LR;\n  ranksep=1.5;\n  nodesep=0.3;\n");
    o.push_str("  node [fontname=\"Helvetica\", fontsize=11];\n");
    o.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");
    for n in &g.nodes {
        let shape = match n.kind {
            NodeKind::Service => "shape=box, style=rounded",
            NodeKind::Zone => "shape=ellipse",
            NodeKind::Any => "shape=circle",
            NodeKind::Group => "shape=folder",
            NodeKind::Host | NodeKind::Address => "shape=box, style=dashed",
        };
        let _ = writeln!(
            o,
            "  \"{}\" [label=\"{}\", {shape}];",
            dot_text(std::slice::from_ref(&n.id)),
            dot_text(&node_label(n))
        );
    }
    // A node's loops (rules from a service to itself) above and below it
    // in turn: Graphviz stacks loops on one side with their labels overlapping.
    let mut loops: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for e in &g.edges {
        let ports = if e.from == e.to {
            let n = loops.entry(e.from.as_str()).or_default();
            *n += 1;
            if *n % 2 == 1 {
                ", tailport=n, headport=n"
            } else {
                ", tailport=s, headport=s"
            }
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "  \"{}\" -> \"{}\" [label=\"{}\", {}{ports}];",
            dot_text(std::slice::from_ref(&e.from)),
            dot_text(std::slice::from_ref(&e.to)),
            dot_text(&e.label),
            dot_style(e)
        );
    }
    o.push_str("}\n");
    o
}

fn dot_style(e: &Edge) -> &'static str {
    match e.kind {
        EdgeKind::Used => "color=\"black\"",
        EdgeKind::Unused => "color=\"grey60\", fontcolor=\"grey45\", style=dashed",
        EdgeKind::Blocked => "color=\"red\", fontcolor=\"red\", penwidth=2",
        EdgeKind::Undocumented => "color=\"darkorange\", fontcolor=\"darkorange3\", penwidth=2",
        EdgeKind::Exposed => "color=\"purple\", fontcolor=\"purple\", penwidth=2",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mermaid_labels_cannot_end_their_string_or_start_syntax() {
        let got = mermaid_text(&["a \"b\" | c #1 %% <i> & `x`".into(), "second".into()]);
        assert_eq!(got, "a #34;b#34; #124; c #35;1 #37;#37; #60;i#62; #38; #96;x#96;<br>second");
        assert!(!got.contains('"') && !got.contains('|'));
        assert_eq!(mermaid_text(&["one\ntwo\r".into()]), "one<br>two");
    }

    #[test]
    fn dot_labels_escape_quotes_and_backslashes() {
        let got = dot_text(&["a \"b\" \\N".into(), "x".into()]);
        assert_eq!(got, "a \\\"b\\\" \\\\N\\nx");
    }
}
