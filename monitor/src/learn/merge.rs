//! Proposals written into a matrix file by editing its text: the new
//! services go at the end of its `services:` block, the rules at the end
//! of its `rules:` block, each at the indentation the file already uses,
//! and every other byte (comments, blank lines, quoting, order) stays as
//! it was. Re-serialising the YAML would lose the comments that carry
//! most of a hand-written matrix's explanations.
//!
//! The result is loaded again before it is returned: it must parse, lint
//! without errors, and hold every proposed rule.

use std::path::Path;

use crate::matrix::{Matrix, MatrixError, Warning};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{file}:{line}: `{key}:` is written in flow style ({{...}} or [...]); write it as a block (one `- ...` or `name:` line per entry) to merge into it")]
    FlowStyle { file: String, line: usize, key: &'static str },
    #[error("the merged matrix does not load where it is to be written, so nothing was written:\n{0}")]
    Invalid(MatrixError),
    #[error("{file}: the merged matrix lacks the proposed rule `{id}`, so nothing was written; is `rules:` a top-level key at the start of a line?")]
    Lost { file: String, id: String },
}

/// What to add: comment lines that head the rules, then each service and
/// rule as [`super::render`] writes them (without indentation).
pub struct Additions<'a> {
    pub header: &'a [String],
    pub services: &'a [Vec<String>],
    pub rules: &'a [Vec<String>],
    /// The ids of the rules, checked in the result.
    pub ids: &'a [String],
}

/// `text` (the matrix file `file`, in `dir`) with `add` merged in, and the
/// warnings of the merged matrix.
pub fn merge(
    text: &str,
    file: &str,
    dir: &Path,
    add: &Additions,
) -> Result<(String, Vec<Warning>), MergeError> {
    let mut out = text.to_string();
    if !add.services.is_empty() {
        out = insert(&out, file, "services", &[], add.services)?;
    }
    if !add.rules.is_empty() {
        out = insert(&out, file, "rules", add.header, add.rules)?;
    }
    let (m, warnings) = Matrix::from_str(&out, file, dir).map_err(MergeError::Invalid)?;
    for id in add.ids {
        if !m.rules.iter().any(|r| &r.id == id) {
            return Err(MergeError::Lost { file: file.to_string(), id: id.clone() });
        }
    }
    Ok((out, warnings))
}

/// How the top-level `key:` line stands.
enum Head {
    /// `key:` with its block below (or nothing yet).
    Block,
    /// `key: []` or `key: {}`: empty, in flow style.
    EmptyFlow,
    /// `key: [ ... ]` with entries.
    Flow,
}

fn head(line: &str, key: &str) -> Option<Head> {
    let rest = line.strip_prefix(key)?.strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n'])) {
        return None;
    }
    let value = rest.split(" #").next().unwrap_or("").trim();
    Some(match value {
        "" => Head::Block,
        "[]" | "{}" => Head::EmptyFlow,
        _ if value.starts_with('#') => Head::Block,
        _ => Head::Flow,
    })
}

/// Whether `line` belongs to the block of the top-level key above it.
fn in_block(line: &str) -> bool {
    let t = line.trim_end_matches(['\r', '\n']);
    if t.trim().is_empty() || t.trim_start().starts_with('#') {
        return true;
    }
    if t == "---" || t.starts_with("--- ") || t == "..." {
        return false;
    }
    t.starts_with([' ', '\t']) || t == "-" || t.starts_with("- ")
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// `text` with `items` appended to the block of the top-level `key`.
fn insert(
    text: &str,
    file: &str,
    key: &'static str,
    header: &[String],
    items: &[Vec<String>],
) -> Result<String, MergeError> {
    let nl = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    if let Some(last) = lines.last_mut() {
        if !last.ends_with('\n') {
            last.push_str(nl);
        }
    }
    let at = lines.iter().position(|l| head(l, key).is_some());
    let render = |indent: &str| -> Vec<String> {
        let mut v: Vec<String> = header.iter().map(|h| format!("{indent}{h}{nl}")).collect();
        for item in items {
            v.extend(item.iter().map(|l| format!("{indent}{l}{nl}")));
        }
        v
    };
    let Some(at) = at else {
        // No such key: a new block, before `rules:` for the services, else at the end.
        let mut block = vec![format!("{key}:{nl}")];
        block.extend(render("  "));
        let before =
            if key == "rules" { None } else { lines.iter().position(|l| head(l, "rules").is_some()) };
        match before {
            Some(i) => {
                block.push(nl.to_string());
                lines.splice(i..i, block);
            }
            None => lines.extend(block),
        }
        return Ok(lines.concat());
    };
    match head(&lines[at], key).expect("found above") {
        Head::Flow => return Err(MergeError::FlowStyle { file: file.to_string(), line: at + 1, key }),
        Head::EmptyFlow => {
            let comment =
                lines[at].find(" #").map(|i| lines[at][i..].trim_end().to_string()).unwrap_or_default();
            lines[at] = format!("{key}:{comment}{nl}");
        }
        Head::Block => {}
    }
    let mut last = at;
    let mut indent: Option<String> = None;
    for (i, l) in lines.iter().enumerate().skip(at + 1) {
        if !in_block(l) {
            break;
        }
        if is_content(l) {
            last = i;
            if indent.is_none() {
                indent = Some(l.chars().take_while(|c| *c == ' ').collect());
            }
        }
    }
    let indent = indent.unwrap_or_else(|| "  ".to_string());
    lines.splice(last + 1..last + 1, render(&indent));
    Ok(lines.concat())
}
