use super::{understand::parse_ports, Format};

#[test]
fn ports_ranges_and_lists() {
    assert_eq!(parse_ports("7001-7012").unwrap(), vec![(7001, 7012)]);
    assert_eq!(parse_ports("1433 or 5432").unwrap(), vec![(1433, 1433), (5432, 5432)]);
    assert_eq!(parse_ports("8300, 8301/udp").unwrap(), vec![(8300, 8300), (8301, 8301)]);
    assert!(parse_ports("70000").is_err(), "70000 is not a port");
    assert!(parse_ports("9000-8000").is_err(), "a backwards range is an error");
}

#[test]
fn detects_formats() {
    assert_eq!(Format::detect(None, "flowchart LR\n A -->|1| B\n"), Format::Mermaid);
    assert_eq!(Format::detect(None, "<table><tr><td>1</td></tr></table>"), Format::Html);
    assert_eq!(Format::detect(None, "| a | b |\n|---|---|\n| 1 | 2 |\n"), Format::Markdown);
    assert_eq!(Format::detect(None, "Target Service Port Purpose\nA 1 x\n"), Format::Text);
}
