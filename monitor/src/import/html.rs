//! HTML: tables, list items, headings and paragraphs, parsed with scraper
//! (html5ever). The parser keeps no source positions, so an element's line
//! is that of the n-th `<tag` in the source for the n-th element of that
//! tag in document order.

use std::collections::HashMap;

use regex::Regex;
use scraper::{node::Node as HtmlNode, ElementRef, Html};

use super::{markdown::LineIndex, Block, Row, Table, Warning};

pub(crate) fn read(text: &str) -> (Vec<Block>, Vec<Warning>) {
    let doc = Html::parse_document(text);
    let lines = TagLines::new(text);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut blocks = Vec::new();
    // Elements below a table or list item are read with it, once.
    let mut inside = Vec::new();
    for node in doc.root_element().descendants() {
        let Some(el) = ElementRef::wrap(node) else { continue };
        let tag = el.value().name().to_ascii_lowercase();
        let nth = {
            let n = seen.entry(tag.clone()).or_default();
            *n += 1;
            *n - 1
        };
        if el.ancestors().any(|a| inside.contains(&a.id())) {
            continue;
        }
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
                inside.push(el.id());
            }
            "li" => {
                // A nested list's items are their own blocks.
                let own: String = el
                    .children()
                    .filter(|c| !matches!(c.value(), HtmlNode::Element(e) if matches!(e.name(), "ul" | "ol")))
                    .map(|c| {
                        ElementRef::wrap(c)
                            .map(text_of)
                            .unwrap_or_else(|| c.value().as_text().map(|t| t.to_string()).unwrap_or_default())
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                blocks.push(Block::Item { line, text: squash(&own) });
            }
            "table" => {
                blocks.push(Block::Table(table(el, line, &lines, &seen)));
                inside.push(el.id());
            }
            _ => {}
        }
    }
    (blocks, Vec::new())
}

/// `seen` counts the elements before the table; its rows are counted by the caller's walk later.
fn table(el: ElementRef, line: usize, lines: &TagLines, seen: &HashMap<String, usize>) -> Table {
    let mut t = Table { line, header: Vec::new(), rows: Vec::new() };
    let before = seen.get("tr").copied().unwrap_or(0);
    for (k, tr) in
        el.descendants().filter_map(ElementRef::wrap).filter(|e| e.value().name() == "tr").enumerate()
    {
        let nth = before + k;
        let cells: Vec<ElementRef> = tr
            .children()
            .filter_map(ElementRef::wrap)
            .filter(|c| matches!(c.value().name(), "td" | "th"))
            .collect();
        let texts: Vec<String> = cells.iter().map(|c| text_of(*c)).collect();
        let all_th = cells.iter().all(|c| c.value().name() == "th");
        if t.header.is_empty() && t.rows.is_empty() && all_th {
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
