//! Size, node and depth limits for the YAML files the monitor reads (port
//! matrices and YAML inventories), one implementation for both.
//!
//! A YAML tree costs about 100 bytes of memory per node, whatever the
//! file's size per node: a 49.5 MB one-line list (`[1,1,1,...]`) took 6 s and
//! 2.45 GB to load before these limits, and five nested anchors can stand
//! for billions of nodes. So a file is refused before it is parsed when it
//! is larger than [`MAX_YAML_BYTES`], and while a quick pass over its parser
//! events counts nodes (every alias counting as the nodes it stands for, as
//! both loaders copy the anchored tree) and nesting, before any tree is
//! built, when it has more than [`MAX_YAML_NODES`] nodes or nests deeper
//! than [`MAX_YAML_DEPTH`]. The pass is linear in the file and keeps one
//! entry per open collection and per anchor.

use std::{collections::HashMap, io::Read, path::Path};

use saphyr_parser::{Event, Parser};

/// The largest matrix or YAML inventory read: 16 MiB. The largest real
/// matrices are tens of kilobytes; an inventory at the host limit (65,536
/// hosts) with an address and a few variables each is 6 to 12 MiB. A
/// larger inventory is better loaded as `ansible-inventory --list` JSON.
pub const MAX_YAML_BYTES: u64 = 16 * 1024 * 1024;

/// The most nodes (scalars, lists, mappings; an alias counting as the nodes
/// it copies) a matrix or YAML inventory may have: about 100 MB of tree,
/// and what a 65,536-host inventory with seven variables per host needs.
pub const MAX_YAML_NODES: usize = 1_000_000;

/// The deepest nesting of lists and mappings: matrices nest 4 levels,
/// inventories 2 per level of `children:` groups plus their variables'.
pub const MAX_YAML_DEPTH: usize = 64;

/// A limit a YAML file went past, with where (line from 1, column from 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}; {}", self.message(), self.hint())]
pub enum YamlLimit {
    TooLarge { size: u64, limit: u64 },
    TooManyNodes { line: usize, col: usize, limit: usize },
    TooDeep { line: usize, col: usize, limit: usize },
}

impl YamlLimit {
    /// Where the limit was reached: (line, column), none for the file size.
    pub fn position(&self) -> Option<(usize, usize)> {
        match *self {
            YamlLimit::TooLarge { .. } => None,
            YamlLimit::TooManyNodes { line, col, .. } | YamlLimit::TooDeep { line, col, .. } => {
                Some((line.max(1), col))
            }
        }
    }

    /// What is wrong.
    pub fn message(&self) -> String {
        match *self {
            YamlLimit::TooLarge { size, limit } => {
                format!("the file is {size} bytes, more than the limit of {limit} bytes for a YAML file")
            }
            YamlLimit::TooManyNodes { limit, .. } => format!(
                "the YAML has more than {limit} nodes (values, lists and mappings; an alias counts as what it copies)"
            ),
            YamlLimit::TooDeep { limit, .. } => {
                format!("the YAML nests lists and mappings more than {limit} levels deep")
            }
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            YamlLimit::TooDeep { .. } => "flatten it: no matrix or inventory needs that depth",
            _ => "split the file; an inventory that large loads as `ansible-inventory --list` JSON instead",
        }
    }
}

/// Why [`read`] gave no text.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Limit(YamlLimit),
}

/// Reads a YAML file of at most [`MAX_YAML_BYTES`], refusing a larger one
/// before reading it all (and a pipe that gives more, without reading past
/// the limit).
pub fn read(path: &Path) -> Result<String, ReadError> {
    let file = std::fs::File::open(path)?;
    let too_large = |size| ReadError::Limit(YamlLimit::TooLarge { size, limit: MAX_YAML_BYTES });
    let size = file.metadata()?.len();
    if size > MAX_YAML_BYTES {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_YAML_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_YAML_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes)
        .map_err(|e| ReadError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Checks `text` against the size, node and depth limits. A syntax error
/// ends the check without a complaint: the loader reports it.
pub fn check(text: &str) -> Result<(), YamlLimit> {
    if text.len() as u64 > MAX_YAML_BYTES {
        return Err(YamlLimit::TooLarge { size: text.len() as u64, limit: MAX_YAML_BYTES });
    }
    check_with(text, MAX_YAML_NODES, MAX_YAML_DEPTH)
}

/// One open list or mapping: the node count when it opened, its anchor,
/// and the height of its deepest child.
struct Open {
    nodes_before: usize,
    anchor: usize,
    height: usize,
}

/// [`check`] without the size limit, with the given limits.
pub fn check_with(text: &str, max_nodes: usize, max_depth: usize) -> Result<(), YamlLimit> {
    let mut nodes = 0usize;
    let mut stack: Vec<Open> = Vec::new();
    // anchor id -> (nodes, height) of what it names
    let mut anchors: HashMap<usize, (usize, usize)> = HashMap::new();
    for item in Parser::new_from_str(text) {
        let Ok((ev, span)) = item else { return Ok(()) };
        let (line, col) = (span.start.line(), span.start.col() + 1);
        // A leaf of `count` nodes and `height` levels at the current depth.
        let mut leaf = |stack: &mut Vec<Open>, count: usize, height: usize| {
            nodes = nodes.saturating_add(count);
            if nodes > max_nodes {
                return Err(YamlLimit::TooManyNodes { line, col, limit: max_nodes });
            }
            if stack.len() + height > max_depth {
                return Err(YamlLimit::TooDeep { line, col, limit: max_depth });
            }
            if let Some(top) = stack.last_mut() {
                top.height = top.height.max(height);
            }
            Ok(())
        };
        match ev {
            Event::Scalar(_, _, anchor, _) => {
                leaf(&mut stack, 1, 0)?;
                if anchor != 0 {
                    anchors.insert(anchor, (1, 0));
                }
            }
            Event::Alias(id) => {
                let (count, height) = anchors.get(&id).copied().unwrap_or((1, 0));
                leaf(&mut stack, count, height)?;
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                leaf(&mut stack, 1, 1)?;
                stack.push(Open { nodes_before: nodes - 1, anchor, height: 0 });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(open) = stack.pop() {
                    let height = open.height + 1;
                    if open.anchor != 0 {
                        anchors.insert(open.anchor, (nodes - open.nodes_before, height));
                    }
                    if let Some(top) = stack.last_mut() {
                        top.height = top.height.max(height);
                    }
                }
            }
            Event::StreamEnd => return Ok(()),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_yaml_passes() {
        assert_eq!(check("version: 1\nrules:\n  - {id: a, from: x, to: y, port: 443}\n"), Ok(()));
        assert_eq!(check(""), Ok(()));
        // A syntax error is the loader's to report.
        assert_eq!(check("a: {\n"), Ok(()));
    }

    #[test]
    fn node_count_names_the_line_where_it_is_passed() {
        let text = "a:\n  - 1\n  - 2\n  - 3\n  - 4\n";
        assert_eq!(check_with(text, 7, 64), Ok(()));
        assert_eq!(check_with(text, 6, 64), Err(YamlLimit::TooManyNodes { line: 5, col: 5, limit: 6 }));
    }

    #[test]
    fn aliases_count_what_they_copy() {
        // Each level doubles: 2^20 copies of the first list.
        let mut text = String::from("a0: &a0 [x, x]\n");
        for i in 1..=20 {
            text.push_str(&format!("a{i}: &a{i} [*a{}, *a{}]\n", i - 1, i - 1));
        }
        let e = check(&text).expect_err("an alias bomb");
        assert!(matches!(e, YamlLimit::TooManyNodes { limit: MAX_YAML_NODES, .. }), "{e:?}");
        assert!(e.position().is_some_and(|(l, _)| (2..=21).contains(&l)), "{e:?}");
    }

    #[test]
    fn depth_counts_block_flow_and_aliased_nesting() {
        let flow = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(matches!(check(&flow), Err(YamlLimit::TooDeep { line: 1, limit: 64, .. })));
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert_eq!(check(&ok), Ok(()));
        let block: String = (0..70).map(|i| format!("{}k{i}:\n", "  ".repeat(i))).collect();
        assert!(matches!(check(&block), Err(YamlLimit::TooDeep { line: 65, .. })), "{:?}", check(&block));
        let aliased = format!("a: &a {}{}\nb: [[*a]]\n", "[".repeat(62), "]".repeat(62));
        assert!(matches!(check(&aliased), Err(YamlLimit::TooDeep { line: 2, .. })), "{:?}", check(&aliased));
    }

    #[test]
    fn size_is_checked_first() {
        let text = "#".repeat(MAX_YAML_BYTES as usize + 1);
        assert_eq!(
            check(&text),
            Err(YamlLimit::TooLarge { size: MAX_YAML_BYTES + 1, limit: MAX_YAML_BYTES })
        );
    }
}
