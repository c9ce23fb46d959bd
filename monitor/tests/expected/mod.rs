//! The `.expected` files of the import tests (`mod expected;` in each).

/// The lines of an `.expected` file, trimmed, sorted, without blank lines
/// and `#` comments.
pub fn expected_lines(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    lines.sort();
    lines
}
