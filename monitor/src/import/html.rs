//! HTML: tables, list items, headings and paragraphs, parsed with scraper
//! (html5ever). The parser keeps no source positions, so an element's line
//! is that of the n-th `<tag` in the source for the n-th element of that
//! tag in document order.
//!
//! Limits (docs/import.md): the first [`MAX_HTML_BYTES`] are read, and
//! elements nested deeper than [`MAX_HTML_DEPTH`] are blanked out before
//! html5ever sees them (its scope checks walk the stack of open elements,
//! so parsing deep nesting is quadratic), each time with a warning naming
//! the line. The walk below is one pass over the tree.

use std::{borrow::Cow, collections::HashMap};

use regex::Regex;
use scraper::{node::Node as HtmlNode, ElementRef, Html};

use super::{markdown::LineIndex, Block, Row, Table, Warning};

/// The most HTML read: 16 MiB, far above any ports document (a long vendor
/// page is well under 1 MiB) and about a second of parsing.
pub(crate) const MAX_HTML_BYTES: usize = 16 * 1024 * 1024;

/// The deepest nesting of elements read (those with a required end tag:
/// `<li>`, `<p>`, `<td>` and other elements closed by their next sibling do
/// not count). Real documents nest a few dozen levels.
pub(crate) const MAX_HTML_DEPTH: usize = 256;

pub(crate) fn read(text: &str) -> (Vec<Block>, Vec<Warning>) {
    let mut warnings = Vec::new();
    let text = match text.len() > MAX_HTML_BYTES {
        true => {
            let mut end = MAX_HTML_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let line = LineIndex::new(text).line(end);
            warnings.push(Warning {
                line,
                message: format!(
                    "the document is {} bytes; only the first {MAX_HTML_BYTES} (16 MiB) are read, up to this line: \
                     split it and import the parts",
                    text.len()
                ),
            });
            &text[..end]
        }
        false => text,
    };
    let (text, deep) = limit_depth(text, MAX_HTML_DEPTH);
    if let Some(line) = deep {
        warnings.push(Warning {
            line,
            message: format!(
                "elements here are nested more than {MAX_HTML_DEPTH} deep; what lies deeper is skipped (here and \
                 wherever else the document nests that deep): flatten the document to import it"
            ),
        });
    }
    let doc = Html::parse_document(&text);
    let lines = TagLines::new(&text);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut blocks = Vec::new();
    // Document order, one pass: elements below a table or a paragraph are
    // read with it, once, and only counted here.
    let mut stack = vec![(*doc.root_element(), false)];
    while let Some((node, inside)) = stack.pop() {
        let Some(el) = ElementRef::wrap(node) else { continue };
        let tag = el.value().name().to_ascii_lowercase();
        let nth = {
            let n = seen.entry(tag.clone()).or_default();
            *n += 1;
            *n - 1
        };
        let mut below_inside = inside;
        if !inside {
            let line = lines.line(&tag, nth);
            match tag.as_str() {
                "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                    let level = tag[1..].parse().unwrap_or(2);
                    blocks.push(Block::Heading { line, level, text: text_of(el) });
                }
                "p" | "pre" | "blockquote" => {
                    for (k, l) in el_text_lines(el).into_iter().enumerate() {
                        if !l.is_empty() {
                            blocks.push(Block::Prose { line: line + k, text: l });
                        }
                    }
                    below_inside = true;
                }
                "li" => {
                    // A nested list's items are their own blocks.
                    let own: String = el
                        .children()
                        .filter(
                            |c| !matches!(c.value(), HtmlNode::Element(e) if matches!(e.name(), "ul" | "ol")),
                        )
                        .map(|c| {
                            ElementRef::wrap(c).map(text_of).unwrap_or_else(|| {
                                c.value().as_text().map(|t| t.to_string()).unwrap_or_default()
                            })
                        })
                        .collect::<Vec<_>>()
                        .join(" ");
                    blocks.push(Block::Item { line, text: squash(&own) });
                }
                "table" => {
                    blocks.push(Block::Table(table(el, line, &lines, &seen)));
                    below_inside = true;
                }
                _ => {}
            }
        }
        stack.extend(node.children().rev().map(|c| (c, below_inside)));
    }
    (blocks, warnings)
}

/// Elements whose end tag may be left out (the next sibling closes them),
/// and those that have none: not counted as nesting.
fn uncounted(tag: &str) -> bool {
    matches!(
        tag,
        "p" | "li"
            | "dt"
            | "dd"
            | "tr"
            | "td"
            | "th"
            | "thead"
            | "tbody"
            | "tfoot"
            | "option"
            | "optgroup"
            | "rb"
            | "rt"
            | "rtc"
            | "rp"
            | "colgroup"
            | "caption"
            | "html"
            | "head"
            | "body"
            | "area"
            | "base"
            | "br"
            | "col"
            | "embed"
            | "hr"
            | "img"
            | "input"
            | "link"
            | "meta"
            | "param"
            | "source"
            | "track"
            | "wbr"
    )
}

/// Blanks out (with spaces, keeping newlines, so that lines stay) every
/// element nested deeper than `max` counted elements, by a scan of the tags
/// as written. Returns the line of the first element blanked.
fn limit_depth(text: &str, max: usize) -> (Cow<'_, str>, Option<usize>) {
    let b = text.as_bytes();
    let mut open: Vec<&str> = Vec::new();
    // How many of `open` are <svg> or <math>, where `/>` closes an element.
    let mut foreign = 0usize;
    // Byte ranges to blank.
    let mut blank: Vec<(usize, usize)> = Vec::new();
    // Where the element being skipped began.
    let mut skip_from: Option<usize> = None;
    let mut i = 0;
    while let Some(off) = b[i..].iter().position(|&c| c == b'<') {
        let lt = i + off;
        let rest = &text[lt..];
        if rest.starts_with("<!--") {
            i = rest.find("-->").map_or(b.len(), |e| lt + e + 3);
            continue;
        }
        let closing = rest.starts_with("</");
        let name_at = lt + 1 + usize::from(closing);
        let name_len = b[name_at..].iter().take_while(|c| c.is_ascii_alphanumeric()).count();
        if name_len == 0 || !b[name_at].is_ascii_alphabetic() {
            i = lt + 1;
            continue;
        }
        let name = &text[name_at..name_at + name_len];
        let gt = tag_end(b, name_at + name_len);
        let end = gt.map_or(b.len(), |g| g + 1);
        if closing {
            // Searched among the innermost `max` only, so that stray end
            // tags under deep nesting cost no more than `max` each.
            let lowest = open.len().saturating_sub(max);
            let found = open[lowest..].iter().rposition(|o| o.eq_ignore_ascii_case(name)).map(|j| lowest + j);
            if let Some(j) = found {
                foreign -= open[j..].iter().filter(|o| is_foreign(o)).count();
                open.truncate(j);
                if let Some(from) = skip_from {
                    if j == max {
                        blank.push((from, end));
                        skip_from = None;
                    } else if j < max {
                        blank.push((from, lt));
                        skip_from = None;
                    }
                }
            }
            i = end;
            continue;
        }
        let lower = name.to_ascii_lowercase();
        // `<div/>` opens a div in HTML; only SVG and MathML elements close so.
        let self_closing = foreign > 0 && gt.is_some_and(|g| b[g - 1] == b'/');
        if matches!(
            lower.as_str(),
            "script" | "style" | "textarea" | "title" | "xmp" | "noembed" | "noframes"
        ) {
            // Raw text: no tags inside, up to its end tag.
            i = find_close(b, end, &lower).unwrap_or(b.len());
            continue;
        }
        if !self_closing && !uncounted(&lower) {
            foreign += usize::from(is_foreign(name));
            open.push(name);
            if open.len() > max && skip_from.is_none() {
                skip_from = Some(lt);
            }
        }
        i = end;
    }
    if let Some(from) = skip_from {
        blank.push((from, b.len()));
    }
    let Some(&(first, _)) = blank.first() else { return (Cow::Borrowed(text), None) };
    let mut out = b.to_vec();
    for (from, to) in blank {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    }
    let line = LineIndex::new(text).line(first);
    (Cow::Owned(String::from_utf8(out).expect("ASCII spaces in place of whole characters")), Some(line))
}

fn is_foreign(name: &str) -> bool {
    name.eq_ignore_ascii_case("svg") || name.eq_ignore_ascii_case("math")
}

/// Where `</name` (any case) starts at or after `from`.
fn find_close(b: &[u8], from: usize, name: &str) -> Option<usize> {
    let mut k = from;
    while let Some(off) = b[k..].windows(2).position(|w| w == b"</") {
        let at = k + off;
        if b.get(at + 2..at + 2 + name.len()).is_some_and(|s| s.eq_ignore_ascii_case(name.as_bytes())) {
            return Some(at);
        }
        k = at + 2;
    }
    None
}

/// The `>` ending a tag whose name ends at `from`, outside quoted attribute values.
fn tag_end(b: &[u8], from: usize) -> Option<usize> {
    let mut quote = None;
    for (k, &c) in b[from..].iter().enumerate() {
        match (quote, c) {
            (None, b'"' | b'\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, b'>') => return Some(from + k),
            _ => {}
        }
    }
    None
}

/// `seen` counts the elements before the table; its rows are counted by the caller's walk later.
fn table(el: ElementRef, line: usize, lines: &TagLines, seen: &HashMap<String, usize>) -> Table {
    let mut t = Table { line, header: Vec::new(), rows: Vec::new() };
    let before = seen.get("tr").copied().unwrap_or(0);
    let mut grid = super::spans::Grid::default();
    for (k, tr) in
        el.descendants().filter_map(ElementRef::wrap).filter(|e| e.value().name() == "tr").enumerate()
    {
        let nth = before + k;
        let cells: Vec<ElementRef> = tr
            .children()
            .filter_map(ElementRef::wrap)
            .filter(|c| matches!(c.value().name(), "td" | "th"))
            .collect();
        let span =
            |c: &ElementRef, a: &str| c.value().attr(a).and_then(|v| v.trim().parse().ok()).unwrap_or(1);
        let texts = grid.row(cells.iter().map(|c| (text_of(*c), span(c, "rowspan"), span(c, "colspan"))));
        let all_th = cells.iter().all(|c| c.value().name() == "th");
        // A second header row (the titles under a colspan) replaces the first.
        if t.rows.is_empty() && all_th && !cells.is_empty() {
            t.header = texts;
            continue;
        }
        let raw = format!("| {} |", texts.join(" | "));
        t.rows.push(Row { line: lines.line("tr", nth), cells: texts, raw });
    }
    if t.header.is_empty() && !t.rows.is_empty() {
        // No <th>: the first row is the header.
        t.header = t.rows.remove(0).cells;
    }
    t
}

fn text_of(el: ElementRef) -> String {
    squash(&el.text().collect::<Vec<_>>().join(" "))
}

fn el_text_lines(el: ElementRef) -> Vec<String> {
    el.text().collect::<String>().lines().map(squash).collect()
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Where each `<tag` starts in the source, by tag name.
struct TagLines {
    by_tag: HashMap<String, Vec<usize>>,
}

impl TagLines {
    fn new(text: &str) -> TagLines {
        let idx = LineIndex::new(text);
        let re = Regex::new(r"<([A-Za-z][A-Za-z0-9]*)[\s>/]").unwrap();
        let mut by_tag: HashMap<String, Vec<usize>> = HashMap::new();
        for c in re.captures_iter(text) {
            by_tag.entry(c[1].to_ascii_lowercase()).or_default().push(idx.line(c.get(0).unwrap().start()));
        }
        TagLines { by_tag }
    }

    /// The line of the n-th `<tag`; 1 when the parser made the element up.
    fn line(&self, tag: &str, n: usize) -> usize {
        self.by_tag.get(tag).and_then(|v| v.get(n)).copied().unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    const TABLE: &str =
        "<table><tr><th>Port</th><th>Service</th></tr><tr><td>22</td><td>SSH</td></tr></table>\n";

    fn nested(depth: usize, inner: &str) -> String {
        format!("{TABLE}{}{inner}\n{}", "<div>\n".repeat(depth), "</div>".repeat(depth))
    }

    fn items(blocks: &[Block]) -> Vec<&str> {
        blocks
            .iter()
            .filter_map(|b| match b {
                Block::Item { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn deep_nesting_is_skipped_with_one_warning_in_linear_time() {
        let src = nested(200_000, "<ul><li>deep item</li></ul>");
        let start = Instant::now();
        let (blocks, warnings) = read(&src);
        // A hang guard, not a benchmark: this took minutes when quadratic.
        assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
        assert!(matches!(&blocks[0], Block::Table(t) if t.rows[0].cells == ["22", "SSH"]), "{:?}", blocks[0]);
        assert!(items(&blocks).is_empty(), "the item lies 200,000 deep: {:?}", items(&blocks));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        // The table is line 1, the first <div> line 2: the 257th is line 258.
        assert_eq!(warnings[0].line, 2 + MAX_HTML_DEPTH, "{warnings:?}");
        assert!(warnings[0].message.contains("more than 256 deep"), "{}", warnings[0].message);
    }

    #[test]
    fn nesting_within_the_limit_is_read_whole() {
        let (blocks, warnings) = read(&nested(MAX_HTML_DEPTH - 1, "<ul><li>Port 53/udp to DNS</li></ul>"));
        assert!(warnings.is_empty(), "{warnings:?}");
        let line = 2 + MAX_HTML_DEPTH - 1;
        assert!(blocks.contains(&Block::Item { line, text: "Port 53/udp to DNS".into() }), "{blocks:?}");
    }

    #[test]
    fn elements_closed_by_their_siblings_are_not_nesting() {
        // 1,000 items and paragraphs without end tags are siblings, not depth.
        let src = format!("<ul>{}</ul>{}", "<li>Port 22 to SSH\n".repeat(1000), "<p>text\n".repeat(1000));
        let (blocks, warnings) = read(&src);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(items(&blocks).len(), 1000);
        let svg = format!("<div><svg>{}</svg></div><ul><li>after</li></ul>", "<path d='M0 0'/>".repeat(1000));
        let (blocks, warnings) = read(&svg);
        assert!(warnings.is_empty() && items(&blocks) == ["after"], "{warnings:?} {blocks:?}");
    }

    #[test]
    fn scripts_and_comments_hold_no_tags() {
        let src =
            format!("<script>{}</script><!-- {} -->{TABLE}", "<div>".repeat(1000), "<div>".repeat(1000));
        let (blocks, warnings) = read(&src);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(matches!(&blocks[0], Block::Table(_)), "{blocks:?}");
    }

    #[test]
    fn the_document_is_read_up_to_the_size_limit_with_a_warning() {
        let mut src = String::from(TABLE);
        while src.len() <= MAX_HTML_BYTES {
            src.push_str("<p>filler text of the document</p>\n");
        }
        let (blocks, warnings) = read(&src);
        assert!(matches!(&blocks[0], Block::Table(_)));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].message.contains("only the first 16777216"), "{}", warnings[0].message);
        assert!(warnings[0].line > 400_000, "{warnings:?}");
    }
}
