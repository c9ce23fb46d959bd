//! Plain text copied from a web page. Table columns are separated by single
//! spaces and headings run into the rows, so a table is found by its header
//! line ("Target Service Port Purpose / Notes Source Service") and each row
//! is split around its port with the help of a vocabulary learned from the
//! document itself: the names that stand alone in some column (the text
//! before the port in a destination-first table, the services of a
//! service → group table) tell where a multi-word name starts or ends. A row
//! that cannot be split that way is a warning, not a guess.

use std::sync::LazyLock;

use regex::Regex;

use super::{Block, Row, Table, Warning};

/// Column titles, longest first so that "Target Service" wins over "Target".
const COLUMNS: &[&str] = &[
    "ansible host group",
    "purpose / notes",
    "description / notes",
    "destination service",
    "inventory group",
    "source service",
    "target service",
    "host group",
    "destination",
    "description",
    "direction",
    "condition",
    "protocol",
    "purpose",
    "service",
    "runs on",
    "audience",
    "action",
    "source",
    "target",
    "group",
    "notes",
    "ports",
    "proto",
    "port",
    "rule",
    "name",
    "from",
    "to",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Port,
    Proto,
    Direction,
    Action,
    /// A service, host or group name.
    Name,
    /// An inventory group: one word.
    Group,
    /// Free text.
    Text,
}

fn kind(col: &str) -> Kind {
    match col {
        "port" | "ports" => Kind::Port,
        "protocol" | "proto" => Kind::Proto,
        "direction" => Kind::Direction,
        "action" => Kind::Action,
        "host group" | "ansible host group" | "inventory group" | "group" | "runs on" => Kind::Group,
        "purpose / notes"
        | "description / notes"
        | "description"
        | "purpose"
        | "notes"
        | "condition"
        | "rule"
        | "name" => Kind::Text,
        _ => Kind::Name,
    }
}

static PORT_TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\d{1,5}(?:-\d{1,5})?(?:/(?:tcp|udp|TCP|UDP))?(?:,\d{1,5}(?:-\d{1,5})?)*,?$").unwrap()
});

const PROTO_WORDS: &[&str] = &[
    "tcp", "udp", "https", "http", "grpc", "icmp", "tls", "mtls", "ldaps", "ssh", "rdp", "+", "and", "/",
    "tcp/udp",
];
const DIRECTIONS: &[&str] = &["inbound", "outbound", "bidirectional", "between", "both", "ingress", "egress"];
/// Words that start a Notes column after a Purpose column, as written (capitalised).
const NOTE_WORDS: &[&str] =
    &["Optional", "Optional:", "Required", "Only", "Must", "Recommended", "Not", "Needed"];
const ACTIONS: &[&str] = &["allow", "deny", "block", "accept", "drop", "reject"];

pub(crate) fn read(text: &str) -> (Vec<Block>, Vec<Warning>) {
    let lines: Vec<&str> = text.lines().collect();
    // First pass: find tables (header + rows) and learn names.
    let mut tables: Vec<(usize, Vec<&'static str>, Vec<usize>)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some(cols) = header(lines[i]) {
            let has_port = cols.iter().any(|c| kind(c) == Kind::Port);
            let mut rows = Vec::new();
            let mut j = i + 1;
            while j < lines.len() {
                let t = lines[j].trim();
                if t.is_empty() || header(t).is_some() {
                    break;
                }
                if super::pages::is_page_furniture(t) {
                    j += 1;
                    continue;
                }
                let toks: Vec<&str> = t.split_whitespace().collect();
                // A service -> group row ends with a group name ("Internal ports¶" does not).
                let fits = if has_port {
                    toks.iter().any(|w| PORT_TOKEN.is_match(w))
                } else {
                    toks.len() >= 2
                        && toks[toks.len() - 1]
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                };
                if !fits {
                    break;
                }
                rows.push(j);
                j += 1;
            }
            tables.push((i, cols, rows));
            i = j;
        } else {
            i += 1;
        }
    }
    let mut vocab: Vec<String> = vec!["any".into(), "internet".into()];
    for (_, cols, rows) in &tables {
        for &r in rows {
            let toks: Vec<&str> = lines[r].split_whitespace().collect();
            let p = port_span(&toks);
            let kinds: Vec<Kind> = cols.iter().map(|c| kind(c)).collect();
            match (kinds.iter().position(|&k| k == Kind::Port), p) {
                // The only column before the port holds exactly the name.
                (Some(1), Some((a, _))) if kinds[0] == Kind::Name && a > 0 => vocab.push(toks[..a].join(" ")),
                // service → group table: the group is the last word.
                (None, _)
                    if kinds.len() == 2
                        && kinds[0] == Kind::Name
                        && kinds[1] == Kind::Group
                        && toks.len() >= 2 =>
                {
                    vocab.push(toks[..toks.len() - 1].join(" "))
                }
                _ => {}
            }
        }
    }
    vocab.sort_by_key(|v| std::cmp::Reverse(v.len()));
    vocab.dedup();

    let mut blocks = Vec::new();
    let mut warnings = Vec::new();
    let mut in_table = vec![false; lines.len()];
    for (h, cols, rows) in &tables {
        in_table[*h] = true;
        let mut t =
            Table { line: h + 1, header: cols.iter().map(|c| c.to_string()).collect(), rows: Vec::new() };
        for &r in rows {
            in_table[r] = true;
            match split_row(lines[r], cols, &vocab) {
                Ok(cells) => t.rows.push(Row { line: r + 1, cells, raw: lines[r].trim().to_string() }),
                // A sentence after the table ("... listens on port 9100 localhost only.")
                // is read as text below.
                Err(_) if lines[r].trim_end().ends_with('.') => in_table[r] = false,
                Err(why) => warnings.push(Warning {
                    line: r + 1,
                    message: format!(
                        "cannot split this row into the columns {cols:?}: {why}; row skipped: {}",
                        lines[r].trim()
                    ),
                }),
            }
        }
        blocks.push(Block::Table(t));
    }
    for (k, l) in lines.iter().enumerate() {
        let t = l.trim();
        if in_table[k] || t.is_empty() {
            continue;
        }
        let line = k + 1;
        if let Some(h) = t.strip_suffix('¶') {
            blocks.push(Block::Heading { line, level: 2, text: h.trim().to_string() });
        } else if let Some(item) =
            t.strip_prefix("- ").or_else(|| t.strip_prefix("• ")).or_else(|| t.strip_prefix("* "))
        {
            blocks.push(Block::Item { line, text: item.trim().to_string() });
        } else if looks_like_heading(t) {
            blocks.push(Block::Heading { line, level: 2, text: t.to_string() });
        } else {
            blocks.push(Block::Prose { line, text: t.to_string() });
        }
    }
    blocks.sort_by_key(super::markdown::block_line);
    (blocks, warnings)
}

/// A short capitalised line without closing punctuation or ports.
fn looks_like_heading(t: &str) -> bool {
    let words = t.split_whitespace().count();
    words <= 8
        && t.chars().next().is_some_and(char::is_uppercase)
        && !t.ends_with(['.', ':', ',', ';'])
        && !t.split_whitespace().any(|w| PORT_TOKEN.is_match(w))
}

/// The column titles of a header line, if the whole line is made of them.
fn header(line: &str) -> Option<Vec<&'static str>> {
    let mut rest = super::pages::without_continued(line.trim()).to_ascii_lowercase();
    let mut cols = Vec::new();
    while !rest.is_empty() {
        let c = COLUMNS
            .iter()
            .find(|c| rest.starts_with(**c) && rest[c.len()..].chars().next().is_none_or(|ch| ch == ' '))?;
        cols.push(*c);
        rest = rest[c.len()..].trim_start().to_string();
    }
    let kinds: Vec<Kind> = cols.iter().map(|c| kind(c)).collect();
    let port_table = kinds.contains(&Kind::Port);
    let group_table = kinds.len() == 2 && kinds[0] == Kind::Name && kinds[1] == Kind::Group;
    (cols.len() >= 2 && (port_table || group_table)).then_some(cols)
}

/// The tokens holding the port(s): one port token, or several joined by "or", "and", ",".
fn port_span(toks: &[&str]) -> Option<(usize, usize)> {
    let a = toks.iter().position(|w| PORT_TOKEN.is_match(w))?;
    let mut b = a + 1;
    while b + 1 < toks.len()
        && matches!(toks[b], "or" | "and" | "," | "/")
        && PORT_TOKEN.is_match(toks[b + 1])
    {
        b += 2;
    }
    Some((a, b))
}

fn is_proto_word(w: &str) -> bool {
    let w = w.trim_matches(['(', ')', ',']).to_ascii_lowercase();
    PROTO_WORDS.contains(&w.as_str())
}

/// Splits a row into one cell per column.
fn split_row(line: &str, cols: &[&str], vocab: &[String]) -> Result<Vec<String>, String> {
    let toks: Vec<&str> = line.split_whitespace().collect();
    let kinds: Vec<Kind> = cols.iter().map(|c| kind(c)).collect();
    let mut cells = vec![String::new(); cols.len()];
    let Some(pc) = kinds.iter().position(|&k| k == Kind::Port) else {
        // service → group: the group is one word.
        if toks.len() < 2 {
            return Err("expected a name and a group".into());
        }
        cells[0] = toks[..toks.len() - 1].join(" ");
        cells[1] = toks[toks.len() - 1].to_string();
        return Ok(cells);
    };
    if kinds.iter().filter(|&&k| k == Kind::Port).count() > 1 {
        return Err("a second port column is not supported".into());
    }
    let (pa, pb) = port_span(&toks).ok_or("no port in the row")?;
    cells[pc] = toks[pa..pb].join(" ");
    // Before the port.
    fill(&toks[..pa], &cols[..pc], &kinds[..pc], vocab, &mut cells[..pc])?;
    fill(&toks[pb..], &cols[pc + 1..], &kinds[pc + 1..], vocab, &mut cells[pc + 1..])?;
    Ok(cells)
}

/// Spreads `toks` over the columns left to right.
fn fill(
    toks: &[&str],
    cols: &[&str],
    kinds: &[Kind],
    vocab: &[String],
    cells: &mut [String],
) -> Result<(), String> {
    let mut rest = toks;
    for k in 0..kinds.len() {
        let last = k + 1 == kinds.len();
        if last {
            if kinds[k] == Kind::Name && !rest.is_empty() && name_len(rest, vocab) != Some(rest.len()) {
                // The whole rest should be a name; accept it when no vocabulary
                // says otherwise (the name column is alone here).
                if k > 0 && kinds[k - 1] == Kind::Text {
                    return Err(format!("{:?} is not a name seen elsewhere in the document", rest.join(" ")));
                }
            }
            cells[k] = rest.join(" ");
            rest = &[];
            break;
        }
        let n = match kinds[k] {
            Kind::Proto => {
                let mut n = 0;
                let mut depth = 0i32;
                while n < rest.len() && (depth > 0 || is_proto_word(rest[n])) {
                    depth += rest[n].matches('(').count() as i32 - rest[n].matches(')').count() as i32;
                    n += 1;
                }
                n
            }
            Kind::Direction => {
                let first = rest.first().map(|w| w.to_ascii_lowercase()).unwrap_or_default();
                if !DIRECTIONS.contains(&first.as_str()) {
                    return Err(format!(
                        "no direction word (Inbound, Outbound, Between nodes) where column {:?} is",
                        cols[k]
                    ));
                }
                let mut n = 1;
                if first == "between" {
                    while n < rest.len()
                        && matches!(rest[n].to_ascii_lowercase().as_str(), "nodes" | "cluster" | "all")
                    {
                        n += 1;
                    }
                }
                if rest.get(n).is_some_and(|w| w.starts_with('(')) {
                    while n < rest.len() && !rest[n].ends_with(')') {
                        n += 1;
                    }
                    n += 1;
                }
                n.min(rest.len())
            }
            Kind::Action => {
                usize::from(rest.first().is_some_and(|w| ACTIONS.contains(&w.to_ascii_lowercase().as_str())))
            }
            Kind::Group => 1.min(rest.len()),
            Kind::Name => match kinds[k + 1] {
                // An audience before the one-word host group and the port: all but the group.
                Kind::Group if k + 2 == kinds.len() && rest.len() >= 2 => rest.len() - 1,
                // A name followed by a direction: up to the direction word.
                Kind::Direction => rest
                    .iter()
                    .position(|w| DIRECTIONS.contains(&w.to_ascii_lowercase().as_str()))
                    .ok_or_else(|| format!("no direction word after column {:?}", cols[k]))?,
                _ => name_len(rest, vocab).ok_or_else(|| {
                    format!("no known name starts {:?} (column {:?})", rest.join(" "), cols[k])
                })?,
            },
            Kind::Text => {
                // Free text up to the name that ends the row.
                let tail = &kinds[k + 1..];
                if tail == [Kind::Text] {
                    // "Web console Optional": the last column starts at a note word.
                    (1..rest.len()).find(|&i| NOTE_WORDS.contains(&rest[i])).unwrap_or(rest.len())
                } else if tail.iter().all(|&t| t == Kind::Name) && tail.len() == 1 {
                    let n = suffix_name_len(rest, vocab).ok_or_else(|| {
                        format!(
                            "cannot tell where {:?} ends and {:?} starts: no known name ends the row",
                            cols[k],
                            cols[k + 1]
                        )
                    })?;
                    rest.len() - n
                } else {
                    return Err(format!("free text in column {:?} is followed by several columns", cols[k]));
                }
            }
            // "Source Port Destination Port": the first port column is the one read.
            Kind::Port => return Err(format!("a second port column {:?} is not supported", cols[k])),
        };
        cells[k] = rest[..n].join(" ");
        rest = &rest[n..];
    }
    if !rest.is_empty() {
        return Err(format!("{:?} left over", rest.join(" ")));
    }
    Ok(())
}

/// Length of the longest known name (or list of names) that starts `toks`.
fn name_len(toks: &[&str], vocab: &[String]) -> Option<usize> {
    (1..=toks.len()).rev().find(|&n| is_name_list(&toks[..n].join(" "), vocab))
}

/// Length of the longest known name (or list of names) that ends `toks`, leaving some text before it.
fn suffix_name_len(toks: &[&str], vocab: &[String]) -> Option<usize> {
    (1..toks.len()).rev().find(|&n| is_name_list(&toks[toks.len() - n..].join(" "), vocab))
}

/// "Consul Server", or "Consul Client, Consul Server", "A and B", "A / B".
fn is_name_list(s: &str, vocab: &[String]) -> bool {
    static SEP: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s*(?:,|\band\b|\bor\b|/)\s*").unwrap());
    let known = |p: &str| vocab.iter().any(|v| v.eq_ignore_ascii_case(p.trim()));
    known(s) || SEP.split(s).all(|p| !p.trim().is_empty() && known(p))
}
