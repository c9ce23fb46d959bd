//! Turns a vendor's ports/firewall document into a draft port matrix
//! (docs/import.md). Each input format has its own reader that turns the
//! document into [`Block`]s with line numbers; [`understand`] reads rules,
//! services, conditions and exposure out of the blocks; [`emit`] writes the
//! draft YAML; [`review`] sums up what was read and on what evidence, and
//! checks the placements against an inventory when one is given. Anything
//! that cannot be placed becomes a [`Warning`] with its line, never a guess.

mod commands;
mod emit;
mod html;
mod markdown;
mod mermaid;
mod pages;
mod prose;
mod reshape;
mod review;
mod spans;
mod text;
mod understand;

use std::{fmt, path::Path};

pub use review::{AudienceReview, ProfileReview, Review, RuleCounts, ServiceReview};
pub use understand::{Draft, DraftExposure, DraftRule, DraftService, DraftZone, Placement};

/// The input formats `monitor matrix import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Guess from the file name, then from the content.
    Auto,
    /// Markdown with pipe tables; ```mermaid blocks are read as diagrams.
    Markdown,
    /// HTML tables, lists, headings and paragraphs.
    Html,
    /// Plain text copied from a web page (columns separated by single spaces).
    Text,
    /// A Mermaid flowchart whose edges carry ports.
    Mermaid,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Text => "text",
            Format::Mermaid => "mermaid",
        }
    }

    /// The format of a document: by extension first, then by content.
    pub fn detect(path: Option<&Path>, text: &str) -> Format {
        let ext = path.and_then(|p| p.extension()).and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("md" | "markdown") => return Format::Markdown,
            Some("html" | "htm") => return Format::Html,
            Some("mmd" | "mermaid") => return Format::Mermaid,
            _ => {}
        }
        let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("%%")).unwrap_or("");
        let lower = text.to_ascii_lowercase();
        if first.starts_with("flowchart") || first.starts_with("graph ") || first == "graph" {
            Format::Mermaid
        } else if lower.contains("<table") || lower.contains("<html") || lower.contains("<ul") {
            Format::Html
        } else if text.lines().any(is_md_table_separator) || text.contains("```mermaid") {
            Format::Markdown
        } else {
            Format::Text
        }
    }
}

fn is_md_table_separator(l: &str) -> bool {
    let t = l.trim();
    t.contains('-') && t.contains('|') && t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

/// What the readers hand to [`understand`]: the document's structure, each
/// piece with the line (from 1) it starts on.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Block {
    /// A section title; `level` 1 is the outermost.
    Heading {
        line: usize,
        level: u8,
        text: String,
    },
    /// A line or paragraph of running text.
    Prose {
        line: usize,
        text: String,
    },
    /// A list item.
    Item {
        line: usize,
        text: String,
    },
    Table(Table),
    /// A Mermaid edge.
    Edge(Edge),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Table {
    pub line: usize,
    pub header: Vec<String>,
    pub rows: Vec<Row>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row {
    pub line: usize,
    pub cells: Vec<String>,
    /// The row as written, for provenance comments.
    pub raw: String,
}

/// `from -->|label| to` in a Mermaid flowchart; `both` for `<-->`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Edge {
    pub line: usize,
    pub from: Node,
    pub to: Node,
    pub label: String,
    pub both: bool,
    pub raw: String,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub label: String,
    /// Title of the innermost subgraph holding the node.
    pub subgraph: Option<String>,
}

/// Something in the document the importer did not turn into the matrix;
/// line 0 for a problem with the options (an unused `--group`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => f.write_str(&self.message),
            l => write!(f, "line {l}: {}", self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "{doc}: no port table, port list or diagram edge with ports found; nothing to import (try --format)"
    )]
    Empty { doc: String },
    #[error("{doc}: --group {spec}: {why}")]
    BadGroup { doc: String, spec: String, why: String },
}

/// What the user tells the importer besides the document.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The document's name as cited in provenance.
    pub doc_name: String,
    pub format: Option<Format>,
    /// `--group NAME=GROUP`: place the service named NAME (as the document
    /// writes it, or its slug) on inventory group GROUP.
    pub groups: Vec<(String, String)>,
    /// The product the document is about (e.g. "RP-PAM"); found in the
    /// document when not given.
    pub product: Option<String>,
    /// `--inventory FILE`: the inventory to check the placements against,
    /// with the file's name as warnings cite it.
    pub inventory: Option<(crate::inventory::Inventory, String)>,
}

/// The draft matrix as YAML plus what was understood and what was not.
pub struct Imported {
    pub format: Format,
    pub draft: Draft,
    pub yaml: String,
    pub review: Review,
}

/// Imports a document. `path` is used for format detection only.
pub fn import(text: &str, path: Option<&Path>, opts: &Options) -> Result<Imported, ImportError> {
    let format = match opts.format {
        None | Some(Format::Auto) => Format::detect(path, text),
        Some(f) => f,
    };
    let (blocks, mut warnings) = read_blocks(text, format);
    let (blocks, mut reshaped) = reshape::reshape(blocks);
    warnings.append(&mut reshaped);
    let mut draft = understand::understand(&blocks, opts)?;
    warnings.append(&mut draft.warnings);
    if let Some((inv, file)) = &opts.inventory {
        warnings.extend(review::check_inventory(&draft, inv, file));
    }
    warnings.sort();
    warnings.dedup();
    draft.warnings = warnings;
    if draft.rules.is_empty() {
        return Err(ImportError::Empty { doc: opts.doc_name.clone() });
    }
    let yaml = emit::emit(&draft, &opts.doc_name, format);
    let inventory = opts.inventory.as_ref().map(|(inv, file)| (inv, file.as_str()));
    let review = review::review(&draft, &opts.doc_name, format.as_str(), inventory);
    Ok(Imported { format, draft, yaml, review })
}

fn read_blocks(text: &str, format: Format) -> (Vec<Block>, Vec<Warning>) {
    match format {
        Format::Markdown | Format::Auto => markdown::read(text),
        Format::Html => html::read(text),
        Format::Text => text::read(text),
        Format::Mermaid => mermaid::read(text, 0),
    }
}

#[cfg(test)]
mod tests;
