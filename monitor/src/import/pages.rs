//! What a page break leaves in text copied from a PDF or a print view: the
//! page number line ("Orrery Installation Guide Page 12 of 30", "12 / 30")
//! and the table header repeated on the next page, often marked
//! "(continued)". The text reader skips the first inside a table and reads
//! the second as the header it repeats, so a table split over two pages
//! keeps every row.

use std::sync::LazyLock;

use regex::Regex;

/// A line that only numbers the page (inside a table, a bare number is one too: it is no row).
pub(crate) fn is_page_furniture(line: &str) -> bool {
    static PAGE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)(?:^|\s)page \d+(?: (?:of|/) \d+)?$|^\d+ ?/ ?\d+$|^[-–—] ?\d+ ?[-–—]$|^\d{1,4}$")
            .unwrap()
    });
    PAGE.is_match(line.trim())
}

/// A header line without its "(continued)" mark.
pub(crate) fn without_continued(line: &str) -> &str {
    static CONTINUED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)\s*\((?:continued|cont\.?|cont'd)\)$").unwrap());
    match CONTINUED.find(line) {
        Some(m) => &line[..m.start()],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_numbers_and_continued_headers() {
        assert!(is_page_furniture("Orrery 4.2 Installation Guide Page 12 of 30"));
        assert!(is_page_furniture("12 / 30") && is_page_furniture("- 7 -") && is_page_furniture("13"));
        assert!(!is_page_furniture("4646 TCP Orrery Client Orrery Server HTTP API"));
        assert!(!is_page_furniture("8080 TCP Web UI page"));
        assert_eq!(without_continued("Port Protocol Source (continued)"), "Port Protocol Source");
        assert_eq!(without_continued("Port Protocol"), "Port Protocol");
    }
}
