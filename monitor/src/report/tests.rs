//! The page model and its rendering: built from judged flows and from a
//! running agent's coverage report, then read back from the HTML with an
//! HTML parser (scraper), as a browser would read it.

use std::path::Path;

use scraper::{Html, Selector};

use super::{agent, capture::Collector, html, Count, Fact, Finding, Findings, Page, RuleRef, RuleRow};
use crate::{
    alert::Kind,
    engine::Engine,
    live::coverage::{RuleLine, RuleUse},
    replay::{
        judge::{Judged, Judgement},
        track::Stats,
        Summary, Tally,
    },
    verdict::{
        assess,
        tests::{engine, tcp, to_flow, APP, LOGS, RST, SYN, SYN_ACK},
    },
};
use monitor_common::tcp_flag;

fn select<'a>(doc: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    doc.select(&Selector::parse(css).unwrap()).collect()
}

fn text(e: &scraper::ElementRef<'_>) -> String {
    e.text().collect::<String>()
}

/// The test matrix's capture: a documented web flow, a refused one, an
/// unexpected one, and the admin port answering a client (exposed).
fn judged() -> (Collector, Judgement) {
    let e = engine();
    let mut c = Collector::default();
    let mut tally = Tally::default();
    for entry in [
        tcp(APP, 443, (SYN | tcp_flag::ACK, SYN_ACK), 10),
        tcp(APP, 443, (SYN, RST), 10),
        tcp(LOGS, 22, (SYN, SYN_ACK), 10),
        tcp(APP, 9000, (SYN | tcp_flag::ACK, SYN_ACK), 10),
    ] {
        let flow = to_flow(entry);
        let (verdict, outcome) = assess(&e, &flow);
        tally.add(&flow, &verdict, &outcome);
        c.add(&Judged { flow: &flow, verdict: &verdict, outcome: &outcome, engine: &e });
    }
    let summary = Summary::new("cap.pcap".into(), &Stats::default(), None, None, &tally, &e, Vec::new());
    (c, Judgement { summary, tally, engine: e })
}

fn capture_page() -> Page {
    let (c, j) = judged();
    c.page(&j, Path::new("test.yaml"), None)
}

#[test]
fn the_page_of_a_capture_has_every_rule_with_its_use() {
    let page = capture_page();
    let e: Engine = engine();
    let ids: Vec<&str> = page.rules.iter().map(|r| r.rule.id.as_str()).collect();
    let want: Vec<&str> = e.rules().iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, want, "every rule, in matrix order");
    let web = &page.rules[0];
    assert_eq!((web.rule.id.as_str(), web.seen), ("web", true));
    // Two documented flows (one refused), one packet each way each.
    assert_eq!((web.rule.usage.flows, web.rule.usage.blocked, web.rule.usage.packets), (2, 1, 4));
    assert!(web.rule.usage.last_seen.is_some());
    let syslog = page.rules.iter().find(|r| r.rule.id == "syslog").unwrap();
    assert!(!syslog.seen, "no flow used syslog");
    assert_eq!(syslog.last_seen(), "never");
    assert_eq!(syslog.what(), "514/udp");

    let doc = Html::parse_document(&html::render(&page));
    let rows = select(&doc, "#rule-table tbody tr");
    let shown: Vec<&str> = rows.iter().map(|r| r.value().attr("data-rule").unwrap()).collect();
    assert_eq!(shown, want, "the table has a row for every rule");
    let never: Vec<&str> =
        select(&doc, "#rule-table tr.never").iter().map(|r| r.value().attr("data-rule").unwrap()).collect();
    assert_eq!(never, ["syslog", "admin"], "the exposed flow to 9000 is documented by no rule");
    assert!(text(&rows[0]).contains("test.yaml:"), "each rule shows its document line: {}", text(&rows[0]));
}

#[test]
fn findings_are_grouped_by_kind_with_the_document_line_of_their_rule() {
    let page = capture_page();
    let Findings::Listed(all) = &page.findings else { panic!("a capture lists its findings") };
    let kinds: Vec<Kind> = all.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [Kind::Blocked, Kind::Unexpected, Kind::Exposed], "in the order the flows came");
    let groups = page.findings.groups();
    let grouped: Vec<(Kind, usize)> = groups.iter().map(|g| (g.kind, g.findings.len())).collect();
    assert_eq!(grouped, [(Kind::Unexpected, 1), (Kind::Blocked, 1), (Kind::Exposed, 1)]);

    let blocked = groups[1].findings[0];
    assert_eq!(blocked.rules.len(), 1);
    assert_eq!(blocked.rules[0].id, "web");
    assert!(!blocked.closest);
    let web_line = engine().rules()[0].provenance.clone();
    assert_eq!(blocked.rules[0].provenance.as_deref(), Some(web_line.as_str()));
    assert!(blocked.reason.starts_with("refused"), "{}", blocked.reason);
    let exposed = groups[2].findings[0];
    assert_eq!(exposed.rules[0].id, "admin-local");
    let exposure_line = engine().exposures()[0].provenance.clone();
    assert_eq!(exposed.rules[0].provenance.as_deref(), Some(exposure_line.as_str()), "the constraint's line");

    let doc = Html::parse_document(&html::render(&page));
    for g in select(&doc, "#findings section.group") {
        let kind = g.value().attr("data-kind").unwrap();
        let rows = select(&doc, &format!("#findings section.group[data-kind={kind}] tr.finding"));
        assert_eq!(rows.len(), 1, "{kind}");
        assert!(rows.iter().all(|r| r.value().attr("data-kind") == Some(kind)));
    }
    let blocked_row = text(&select(&doc, "tr.finding[data-kind=blocked]")[0]);
    assert!(blocked_row.contains(&web_line) && blocked_row.contains("refused"), "{blocked_row}");
    let buttons: Vec<String> = select(&doc, ".filter button").iter().map(text).collect();
    assert_eq!(buttons, ["all", "unexpected (1)", "blocked (1)", "exposed (1)"]);
}

fn rule(id: &str, purpose: &str, flows: u64) -> RuleLine {
    RuleLine {
        id: id.into(),
        source: "clients".into(),
        target: "app".into(),
        proto: "tcp".into(),
        ports: "443".into(),
        purpose: purpose.into(),
        provenance: "m.yaml:7".into(),
        usage: RuleUse { flows, packets: flows * 10, bytes: flows * 1000, ..RuleUse::default() },
    }
}

#[test]
fn every_text_from_the_inputs_is_escaped() {
    let evil = r#"<script>alert("x")</script> & 'quote' "dq" <img src=x onerror=alert(1)>"#;
    let finding = Finding {
        kind: Kind::Unexpected,
        proto: "tcp".into(),
        client: "10.0.0.1:1".into(),
        client_names: format!("host {evil}"),
        server: "10.0.0.2:2".into(),
        server_names: format!("service {evil}"),
        rules: vec![RuleRef { id: evil.into(), provenance: Some(format!("{evil}:3")) }],
        closest: true,
        reason: evil.into(),
        state: "closed".into(),
        first_seen: "2026-04-06T10:00:00Z".into(),
        packets: 1,
        bytes: 2,
        count: 1,
    };
    let page = Page {
        title: evil.into(),
        subtitle: evil.into(),
        counts: vec![Count { label: "flows", value: 1, tone: "" }],
        facts: vec![Fact { label: "capture", value: evil.into() }],
        graph: None,
        rules: vec![RuleRow { rule: rule(evil, evil, 1), seen: true }],
        findings: Findings::Listed(vec![finding]),
    };
    let out = html::render(&page);
    assert!(!out.contains("<script>alert"), "raw markup from an input reached the page");
    assert!(!out.contains("<img"), "raw markup from an input reached the page");
    assert!(!out.contains(r#""dq""#), "a double quote would end an attribute");
    // Only the page's own script element.
    let doc = Html::parse_document(&out);
    assert_eq!(select(&doc, "script").len(), 1);
    assert!(select(&doc, "img").is_empty());
    // The texts read back as they were written.
    assert_eq!(text(&select(&doc, "title")[0]), evil);
    assert_eq!(select(&doc, "#rule-table tbody tr")[0].value().attr("data-rule"), Some(evil));
    assert_eq!(text(&select(&doc, "#rule-table td.id code")[0]), evil);
    assert_eq!(text(&select(&doc, "td.reason")[0]), evil);
    assert_eq!(text(&select(&doc, ".facts dd")[0]), evil);
}

#[test]
fn the_graph_is_inlined_without_its_xml_prolog_or_said_to_be_missing() {
    let mut page = capture_page();
    let missing = html::render(&page);
    let doc = Html::parse_document(&missing);
    assert!(text(&select(&doc, "#graph-missing")[0]).contains("Graphviz"));
    assert!(select(&doc, "#graph svg").is_empty());

    page.graph = Some(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \"x.dtd\">\n\
         <!-- Generated by graphviz -->\n<svg width=\"10pt\"><g id=\"graph0\"><text>a &amp; b</text></g></svg>\n"
            .into(),
    );
    let out = html::render(&page);
    assert!(!out.contains("<?xml") && !out.contains("DOCTYPE svg"), "the prolog stays out");
    let doc = Html::parse_document(&out);
    assert_eq!(text(&select(&doc, "#graph svg text")[0]), "a & b");
    assert!(select(&doc, "#graph-missing").is_empty());
    assert_eq!(html::inline_svg("not an svg"), None, "something else is not inserted");
}

#[test]
fn a_capture_without_findings_says_so() {
    let e = engine();
    let mut c = Collector::default();
    let mut tally = Tally::default();
    let flow = to_flow(tcp(APP, 443, (SYN | tcp_flag::ACK, SYN_ACK), 10));
    let (verdict, outcome) = assess(&e, &flow);
    tally.add(&flow, &verdict, &outcome);
    c.add(&Judged { flow: &flow, verdict: &verdict, outcome: &outcome, engine: &e });
    let summary = Summary::new("ok.pcap".into(), &Stats::default(), None, None, &tally, &e, Vec::new());
    let page = c.page(&Judgement { summary, tally, engine: e }, Path::new("m.yaml"), None);
    let doc = Html::parse_document(&html::render(&page));
    assert_eq!(select(&doc, "#no-findings").len(), 1);
    assert!(select(&doc, "tr.finding").is_empty());
    assert!(select(&doc, ".filter").is_empty());
}

#[test]
fn an_agents_page_has_its_rules_and_its_newest_findings() {
    use crate::live::state::{Finding as StateFinding, Host, State, Status, Verdict};
    let at = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let host = |ip: &str, name: Option<&str>| Host { ip: ip.parse().unwrap(), host: name.map(String::from) };
    let finding = |kind, rule: Option<&str>, closest: &[&str], port, state: &str| StateFinding {
        kind,
        proto: "tcp".into(),
        client: host("10.0.2.7", Some("ws01")),
        server: host("10.0.1.10", None),
        port,
        reason: format!("{state}: why"),
        rule: rule.map(String::from),
        closest: closest.iter().map(|c| c.to_string()).collect(),
        provenance: Some("m.yaml:12".into()),
        count: 2,
        state: state.into(),
        packets: 3,
        bytes: 180,
        initiator_seen: true,
        first_seen: at,
        last_seen: at,
    };
    let state = State {
        record: "state".into(),
        status: Status { interfaces: vec!["eth0".into()], flows_seen: 9, conforming: 5, ..Status::default() },
        coverage: vec![rule("web", "the portal", 3), rule("ssh", "", 0)],
        findings: vec![
            finding(Verdict::Blocked, Some("web"), &[], 443, "refused"),
            finding(Verdict::Unexpected, None, &["web", "ssh"], 8080, "established"),
        ],
        findings_dropped: 4,
        flows: vec![],
        groups: vec![],
        groups_dropped: 0,
    };
    // The agent's JSON, read back as `monitor report --format html` reads it.
    let read: State = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
    assert_eq!(read, state);

    let page = agent::page(&read, "/run/monitor/monitor.sock", None);
    let doc = Html::parse_document(&html::render(&page));
    let ids: Vec<&str> =
        select(&doc, "#rule-table tbody tr").iter().map(|r| r.value().attr("data-rule").unwrap()).collect();
    assert_eq!(ids, ["web", "ssh"]);
    let never: Vec<&str> =
        select(&doc, "#rule-table tr.never").iter().map(|r| r.value().attr("data-rule").unwrap()).collect();
    assert_eq!(never, ["ssh"]);
    let kinds: Vec<&str> =
        select(&doc, "tr.finding").iter().map(|r| r.value().attr("data-kind").unwrap()).collect();
    assert_eq!(kinds, ["unexpected", "blocked"], "grouped by kind, in the page's order");
    let rows: Vec<String> = select(&doc, "tr.finding").iter().map(text).collect();
    assert!(
        rows[1].contains("10.0.1.10:443") && rows[1].contains("m.yaml:12") && rows[1].contains("refused"),
        "{rows:?}"
    );
    assert!(rows[0].contains("closest:") && rows[0].contains("ssh"), "{rows:?}");
    let facts: Vec<String> = select(&doc, ".facts dd").iter().map(text).collect();
    assert!(facts.contains(&"the newest 2 (older ones pushed out: 4)".to_string()), "{facts:?}");
    let counts: Vec<String> = select(&doc, ".count").iter().map(text).collect();
    assert_eq!(counts[..4], ["9flows", "5conforming", "2unexpected", "2blocked"], "{counts:?}");
}
