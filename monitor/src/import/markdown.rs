//! Markdown: pulldown-cmark finds the pipe tables and fenced code blocks;
//! the lines around them are headings, list items and prose.
//!
//! Pages copied from a site often put the `¶` permalink mark after each
//! title instead of `#`; when a document has such lines they are its
//! headings, and `#` lines are shell comments of unfenced examples.

use std::ops::Range;

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

use super::{mermaid, Block, Row, Table, Warning};

pub(crate) fn read(original: &str) -> (Vec<Block>, Vec<Warning>) {
    let (spaced, map) = space_tables(original);
    let text = spaced.as_str();
    let line_of = Mapped(LineIndex::new(text), map);
    let mut blocks = Vec::new();
    let mut warnings = Vec::new();
    let mut claimed: Vec<Range<usize>> = Vec::new(); // lines owned by tables and code blocks

    let mut table: Option<(Table, Vec<usize>)> = None; // table, raw cell count per row
    let mut row: Option<(usize, Vec<String>, Range<usize>)> = None;
    let mut cell: Option<String> = None;
    let mut mermaid_src: Option<(usize, String)> = None; // first content line, text
    for (ev, range) in Parser::new_ext(text, Options::ENABLE_TABLES).into_offset_iter() {
        match ev {
            Event::Start(Tag::Table(_)) => {
                let line = line_of.line(range.start);
                claimed.push(line..line_of.line(range.end.saturating_sub(1)) + 1);
                table = Some((Table { line, header: Vec::new(), rows: Vec::new() }, Vec::new()));
            }
            Event::Start(Tag::TableHead) | Event::Start(Tag::TableRow) => {
                row = Some((line_of.line(range.start), Vec::new(), range.clone()));
            }
            Event::Start(Tag::TableCell) => cell = Some(String::new()),
            Event::End(TagEnd::TableCell) => {
                if let (Some(c), Some((_, cells, _))) = (cell.take(), row.as_mut()) {
                    cells.push(c.trim().to_string());
                }
            }
            Event::End(TagEnd::TableHead) | Event::End(TagEnd::TableRow) => {
                let (Some((line, cells, r)), Some((t, counts))) = (row.take(), table.as_mut()) else {
                    continue;
                };
                let raw = text[r].trim_end().to_string();
                if t.header.is_empty() && counts.is_empty() && t.rows.is_empty() && line == t.line {
                    t.header = cells;
                    continue;
                }
                let n_raw = raw_cells(&raw);
                // A row broken over two lines by a copy-paste: "| a | b | c |" then
                // "d | e | f |". The second part does not start with a pipe.
                let width = t.header.len();
                if let (Some(prev), Some(&prev_n)) = (t.rows.last_mut(), counts.last()) {
                    if !raw.trim_start().starts_with('|') && prev_n < width && prev_n + n_raw <= width {
                        prev.cells.truncate(prev_n);
                        prev.cells.extend(cells.into_iter().take(n_raw));
                        prev.cells.resize(width, String::new());
                        prev.raw = format!("{} {}", prev.raw, raw.trim());
                        *counts.last_mut().unwrap() = prev_n + n_raw;
                        continue;
                    }
                }
                counts.push(n_raw);
                t.rows.push(Row { line, cells, raw });
            }
            Event::End(TagEnd::Table) => {
                if let Some((t, _)) = table.take() {
                    blocks.push(Block::Table(t));
                }
            }
            Event::Text(s) | Event::Code(s) => {
                if let Some(c) = cell.as_mut() {
                    c.push_str(&s);
                } else if let Some((_, src)) = mermaid_src.as_mut() {
                    src.push_str(&s);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some(c) = cell.as_mut() {
                    c.push(' ');
                }
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                let start = line_of.line(range.start);
                claimed.push(start..line_of.line(range.end.saturating_sub(1)) + 1);
                let is_mermaid = matches!(&kind, CodeBlockKind::Fenced(lang) if lang.trim() == "mermaid");
                if is_mermaid {
                    mermaid_src = Some((start + 1, String::new()));
                } else {
                    // Other code (firewall commands) is read line by line as prose, so
                    // its port mentions are reported, not lost.
                    claimed.pop();
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                if let Some((first, src)) = mermaid_src.take() {
                    let (mut b, mut w) = mermaid::read(&src, first - 1);
                    blocks.append(&mut b);
                    warnings.append(&mut w);
                }
            }
            _ => {}
        }
    }

    let text = original;
    let para_headings = text.lines().any(|l| l.trim_end().ends_with('¶'));
    let mut in_fence = false;
    for (i, l) in text.lines().enumerate() {
        let line = i + 1;
        if claimed.iter().any(|r| r.contains(&line)) {
            continue;
        }
        let t = l.trim();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if t.is_empty() {
            continue;
        }
        if !in_fence && para_headings && t.ends_with('¶') {
            let text = t.trim_end_matches('¶').trim().to_string();
            blocks.push(Block::Heading { line, level: 2, text });
        } else if !in_fence && !para_headings && t.starts_with('#') {
            let level = t.chars().take_while(|&c| c == '#').count().min(6) as u8;
            let text = t.trim_start_matches('#').trim().to_string();
            blocks.push(Block::Heading { line, level, text });
        } else if let Some(item) = list_item(t).filter(|_| !in_fence) {
            blocks.push(Block::Item { line, text: item.to_string() });
        } else {
            blocks.push(Block::Prose { line, text: t.to_string() });
        }
    }
    blocks.sort_by_key(block_line);
    (blocks, warnings)
}

pub(crate) fn block_line(b: &Block) -> usize {
    match b {
        Block::Heading { line, .. } | Block::Prose { line, .. } | Block::Item { line, .. } => *line,
        Block::Table(t) => t.line,
        Block::Edge(e) => e.line,
    }
}

fn list_item(t: &str) -> Option<&str> {
    if let Some(rest) = t.strip_prefix("- ").or_else(|| t.strip_prefix("* ")).or_else(|| t.strip_prefix("+ "))
    {
        return Some(rest.trim());
    }
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && digits < 4 {
        if let Some(rest) = t[digits..].strip_prefix(". ").or_else(|| t[digits..].strip_prefix(") ")) {
            return Some(rest.trim());
        }
    }
    None
}

/// How many cells a pipe-table line holds as written (escaped `\|` kept).
fn raw_cells(raw: &str) -> usize {
    let t = raw.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = t.strip_suffix('|').unwrap_or(t);
    let mut n = 1;
    let mut esc = false;
    for c in t.chars() {
        match c {
            '\\' => esc = !esc,
            '|' if !esc => n += 1,
            _ => esc = false,
        }
    }
    n
}

/// Pages copied without blank lines run tables into the paragraphs around
/// them, which a table then swallows as rows: put a blank line around every
/// run of pipe-table lines. Returns the text and, per line of it, the
/// original line (0 for an added blank line).
fn space_tables(text: &str) -> (String, Vec<usize>) {
    let mut out = String::new();
    let mut map = vec![0]; // line numbers count from 1
    let mut prev_pipe = false;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        let pipe = t.starts_with('|') || (prev_pipe && t.contains('|') && t.ends_with('|'));
        if pipe != prev_pipe {
            out.push('\n');
            map.push(0);
        }
        out.push_str(l);
        out.push('\n');
        map.push(i + 1);
        prev_pipe = pipe;
    }
    (out, map)
}

/// Line numbers of the spaced text mapped back to the original.
struct Mapped(LineIndex, Vec<usize>);

impl Mapped {
    fn line(&self, offset: usize) -> usize {
        let l = self.0.line(offset);
        self.1.get(l).copied().filter(|&o| o > 0).unwrap_or_else(|| self.1.get(l + 1).copied().unwrap_or(l))
    }
}

/// Byte offset → line number (from 1).
pub(crate) struct LineIndex(Vec<usize>);

impl LineIndex {
    pub(crate) fn new(text: &str) -> LineIndex {
        LineIndex(std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect())
    }

    pub(crate) fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&s| s <= offset)
    }
}
