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

use super::{html, markdown, mermaid, text, Block};

fn edges(blocks: &[Block]) -> Vec<(usize, String, String, String, bool, Option<String>)> {
    blocks
        .iter()
        .filter_map(|b| match b {
            Block::Edge(e) => Some((
                e.line,
                e.from.label.clone(),
                e.to.label.clone(),
                e.label.clone(),
                e.both,
                e.from.subgraph.clone(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn mermaid_edges_labels_and_subgraphs() {
    let src = "flowchart LR\n\
        subgraph dc1 [\"Data centre 1\"]\n\
          A[\"Long Name\"]\n\
        end\n\
        A -->|8001| B(Other)\n\
        A <-- 8300,8301 --> C\n\
        A -- 443 --> dc1\n\
        B & C --> D\n\
        what is this\n";
    let (blocks, warnings) = mermaid::read(src, 10);
    let e = edges(&blocks);
    let dc = Some("Data centre 1".to_string());
    assert_eq!(e[0], (15, "Long Name".into(), "Other".into(), "8001".into(), false, dc.clone()));
    assert_eq!(e[1], (16, "Long Name".into(), "C".into(), "8300,8301".into(), true, dc.clone()));
    // An edge to a subgraph stands for the subgraph.
    assert_eq!(e[2], (17, "Long Name".into(), "Data centre 1".into(), "443".into(), false, dc));
    assert_eq!((e[3].1.as_str(), e[4].1.as_str(), e[3].2.as_str()), ("Other", "C", "D"));
    assert_eq!(e.len(), 5, "{e:?}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].line, 19, "the unreadable statement is warned about at its line");
}

fn tables(blocks: &[Block]) -> Vec<&super::Table> {
    blocks.iter().filter_map(|b| if let Block::Table(t) = b { Some(t) } else { None }).collect()
}

#[test]
fn text_rows_split_with_the_document_vocabulary() {
    let src = "Target Service Port Purpose / Notes Source Service\n\
        Consul Server 8300 RPC Consul Server\n\
        Consul Server 8301 Serf LAN (TCP + UDP) Consul Client\n\
        Consul Client 8301 Serf LAN Consul Server\n\
        Consul Server 8500 HTTP API Web UI\n";
    let (blocks, warnings) = text::read(src);
    let t = tables(&blocks);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].rows[1].cells, ["Consul Server", "8301", "Serf LAN (TCP + UDP)", "Consul Client"]);
    assert_eq!(t[0].rows.len(), 3, "the row with an unknown source is not guessed");
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].line, 5);
    assert!(warnings[0].message.contains("no known name ends the row"), "{}", warnings[0].message);
}

#[test]
fn text_port_first_rows_split_at_protocol_and_direction_words() {
    let src = "Port Protocol Service Direction Description\n\
        1433 TCP Microsoft SQL Server Outbound (from RP-PAM to DB) Database connections\n\
        7001 gRPC (mTLS) Vault Service Between cluster nodes Vault operations\n";
    let (blocks, warnings) = text::read(src);
    assert!(warnings.is_empty(), "{warnings:?}");
    let t = tables(&blocks);
    assert_eq!(
        t[0].rows[0].cells,
        ["1433", "TCP", "Microsoft SQL Server", "Outbound (from RP-PAM to DB)", "Database connections"]
    );
    assert_eq!(
        t[0].rows[1].cells,
        ["7001", "gRPC (mTLS)", "Vault Service", "Between cluster nodes", "Vault operations"]
    );
}

#[test]
fn markdown_rejoins_rows_broken_by_a_copy_and_keeps_lines() {
    let src = "Outbound Rules¶\n\
        | Rule | Source | Destination | Port | Protocol | Action |\n\
        |---|---|---|---|---|---|\n\
        | LVS check-in | RP-PAM server | lvs.ravenphyre.net |\n\
        443 | TCP (HTTPS) | Allow |\n\
        | AD | RP-PAM server | DCs | 636 | TCP | Allow |\n\
        A paragraph right after the table.\n";
    let (blocks, _) = markdown::read(src);
    let t = tables(&blocks);
    assert_eq!(t[0].rows.len(), 2, "{:?}", t[0].rows);
    assert_eq!(
        t[0].rows[0].cells,
        ["LVS check-in", "RP-PAM server", "lvs.ravenphyre.net", "443", "TCP (HTTPS)", "Allow"]
    );
    assert_eq!((t[0].rows[0].line, t[0].rows[1].line), (4, 6));
    assert!(blocks.contains(&Block::Heading { line: 1, level: 2, text: "Outbound Rules".into() }));
    assert!(
        blocks.contains(&Block::Prose { line: 7, text: "A paragraph right after the table.".into() }),
        "the paragraph after a table without a blank line is not a row: {blocks:?}"
    );
}

#[test]
fn html_rows_and_items_carry_their_source_lines() {
    let src =
        "<h2>Ports</h2>\n<table>\n<tr><th>Port</th><th>Service</th></tr>\n<tr><td>22</td><td>SSH</td></tr>\n\
        </table>\n<ul>\n<li>Port 53/udp to DNS</li>\n</ul>\n";
    let (blocks, _) = html::read(src);
    let t = tables(&blocks);
    assert_eq!(t[0].header, ["Port", "Service"]);
    assert_eq!(
        (t[0].rows[0].line, t[0].rows[0].cells.clone()),
        (4, vec!["22".to_string(), "SSH".to_string()])
    );
    assert!(blocks.contains(&Block::Item { line: 7, text: "Port 53/udp to DNS".into() }), "{blocks:?}");
}

#[test]
fn text_table_with_two_port_columns_is_a_warning_not_a_panic() {
    let (_, warnings) = text::read("Source Port Destination Port\nweb 1024 db 5432\n");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].message.contains("second port column"), "{}", warnings[0].message);
}

#[test]
fn text_mapping_table_with_merged_columns_ends_at_the_heading() {
    let src = "Service Ansible host group\nScheduler scheduler\nLog Shipper all\nFront-End webtier\nInternal ports¶\n";
    let (blocks, warnings) = text::read(src);
    assert!(warnings.is_empty(), "{warnings:?}");
    let t = tables(&blocks);
    assert_eq!(t[0].header, ["service", "ansible host group"]);
    let rows: Vec<(usize, Vec<String>)> = t[0].rows.iter().map(|r| (r.line, r.cells.clone())).collect();
    assert_eq!(
        rows,
        [
            (2, vec!["Scheduler".to_string(), "scheduler".to_string()]),
            (3, vec!["Log Shipper".into(), "all".into()]),
            (4, vec!["Front-End".into(), "webtier".into()]),
        ]
    );
    assert!(
        blocks.contains(&Block::Heading { line: 5, level: 2, text: "Internal ports".into() }),
        "{blocks:?}"
    );
}

#[test]
fn text_perimeter_rows_split_audience_group_purpose_and_notes() {
    let src = "Audience Host group Port Purpose Notes\n\
        Operators / Support staff scheduler 22 SSH maintenance Must be reachable only by Operators\n\
        Support staff brokers 15672 Broker management UI Optional\n\
        Everyone webtier 80 Redirect to HTTPS\n";
    let (blocks, warnings) = text::read(src);
    assert!(warnings.is_empty(), "{warnings:?}");
    let t = tables(&blocks);
    let cells: Vec<Vec<String>> = t[0].rows.iter().map(|r| r.cells.clone()).collect();
    assert_eq!(
        cells,
        [
            vec![
                "Operators / Support staff",
                "scheduler",
                "22",
                "SSH maintenance",
                "Must be reachable only by Operators"
            ],
            vec!["Support staff", "brokers", "15672", "Broker management UI", "Optional"],
            vec!["Everyone", "webtier", "80", "Redirect to HTTPS", ""],
        ]
    );
}

#[test]
fn note_conditions_are_named_after_the_feature() {
    use super::understand::note_condition;
    assert_eq!(note_condition("you enable feature X for the destination service"), "feature-x");
    assert_eq!(note_condition("push dispatch is enabled on the worker"), "push-dispatch");
    assert_eq!(note_condition("the metrics exporter is used"), "metrics-exporter");
    assert_eq!(note_condition("you use LDAP sync"), "ldap-sync");
}

fn import_md(src: &str) -> super::Imported {
    let opts = super::Options { doc_name: "doc.md".into(), ..Default::default() };
    super::import(src, None, &opts).unwrap_or_else(|e| panic!("{e}"))
}

/// The note's three scopes: from a source, to a target, on a port; a note
/// that matches no rule is a warning, not a silent drop.
#[test]
fn notes_condition_rules_from_a_source_to_a_target_or_on_a_port() {
    let table = "| Source | Destination | Port |\n|---|---|---|\n\
        | Broker | Worker | 7070 |\n| Worker | Broker | 5672 |\n| Worker | Store | 9000 |\n\n";
    let when = |src: &str| -> Vec<(String, Vec<String>)> {
        import_md(src).draft.rules.iter().map(|r| (format!("{}>{}", r.from, r.to), r.when.clone())).collect()
    };
    let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let got = when(&format!(
        "{table}Connections originating from the Broker are only necessary when you enable push dispatch.\n"
    ));
    assert_eq!(
        got,
        [
            ("broker>worker".into(), w(&["push-dispatch"])),
            ("worker>broker".into(), w(&[])),
            ("worker>store".into(), w(&[]))
        ]
    );
    let got = when(&format!("{table}Connections to the Broker are only needed if you use queues.\n"));
    assert_eq!(got[1], ("worker>broker".into(), w(&["queues"])));
    assert!(got[0].1.is_empty() && got[2].1.is_empty(), "{got:?}");
    let got = when(&format!("{table}Port 9000 is only required when object storage is enabled.\n"));
    assert_eq!(got[2], ("worker>store".into(), w(&["object-storage"])));
    let d = import_md(&format!(
        "{table}Connections from the Printer are only needed when you enable printing.\n"
    ))
    .draft;
    assert!(d.rules.iter().all(|r| r.when.is_empty()));
    assert!(d.profiles.is_empty());
    assert!(
        d.warnings.iter().any(|x| x.line == 7
            && x.message.starts_with(
                "the note restricts connections from \"Printer\", but no imported rule has them"
            )),
        "{:?}",
        d.warnings
    );
}

/// Audiences: `A / B`, `A & B`, `0.0.0.0/0` (not split at its slash),
/// `The Internet`; a name the tables already use as a service stays one,
/// and so does the service already on the host group.
#[test]
fn perimeter_audiences_split_and_builtins() {
    let src = "| Source | Destination | Port |\n|---|---|---|\n| Monitoring | Web | 9100 |\n\n\
        | Audience | Host group | Port | Notes |\n|---|---|---|---|\n\
        | Admins & Auditors | web | 22 | |\n| 0.0.0.0/0 | web | 443 | |\n| The Internet | web | 80 | |\n\
        | Monitoring / Admins | web | 9100 | Optional |\n";
    let d = import_md(src).draft;
    let rules: Vec<String> =
        d.rules.iter().map(|r| format!("{} {}>{} {:?}", r.sources[0].0, r.from, r.to, r.when)).collect();
    assert_eq!(
        rules,
        [
            "3 monitoring>web []",
            "7 admins>web []",
            "7 auditors>web []",
            "8 any>web []",
            "9 internet>web []",
            "10 monitoring>web [\"optional\"]",
            "10 admins>web [\"optional\"]",
        ]
    );
    assert_eq!(d.zones.keys().collect::<Vec<_>>(), ["admins", "auditors"]);
    // The host group `web` is where the service Web (placed by its name) runs.
    assert_eq!(format!("{:?}", d.services["web"].placement), "Group(\"web\")");
    assert!(!d.services.contains_key("web-hosts"));
}

/// A list item that documents a flow and restricts its port gives both the
/// rule and the exposure constraint; one that only restricts gives the
/// constraint alone.
#[test]
fn reachable_only_items_with_and_without_a_flow() {
    let src = "| Source | Destination | Port |\n|---|---|---|\n| Web | Cache | 6379 |\n\n\
        - Port 8443 from Operators to Web, reachable only by Operators\n\
        - Port 6379 on the Cache must be reachable only by Web\n";
    let d = import_md(src).draft;
    let rules: Vec<String> =
        d.rules.iter().map(|r| format!("{} {}>{}", r.sources[0].0, r.from, r.to)).collect();
    assert_eq!(rules, ["3 web>cache", "5 operators>web"]);
    let x: Vec<String> = d
        .exposures
        .iter()
        .map(|x| format!("{} {} {:?} {:?}", x.sources[0].0, x.to, x.ports, x.only_from))
        .collect();
    assert_eq!(x, ["5 web [(8443, 8443)] [\"operators\"]", "6 cache [(6379, 6379)] [\"web\"]"]);
}

/// HTML: the mapping table (a group `all`), a perimeter table and a note on
/// every rule to a target, as in copied text.
#[test]
fn html_mapping_perimeter_and_note() {
    let src = "<table><tr><th>Service</th><th>Ansible host group</th></tr>\n\
        <tr><td>Log Shipper</td><td>all</td></tr><tr><td>Front-End</td><td>webtier</td></tr></table>\n\
        <table><tr><th>Source</th><th>Destination</th><th>Port</th></tr>\n\
        <tr><td>Log Shipper</td><td>Front-End</td><td>5044</td></tr></table>\n\
        <table><tr><th>Audience</th><th>Host group</th><th>Port</th><th>Notes</th></tr>\n\
        <tr><td>Operators / Support staff</td><td>webtier</td><td>443</td><td>Optional</td></tr></table>\n\
        <p>Connections to the Front-End are only needed if you enable shipping.</p>\n";
    let opts = super::Options { doc_name: "p.html".into(), format: Some(Format::Html), ..Default::default() };
    let d = super::import(src, None, &opts).unwrap_or_else(|e| panic!("{e}")).draft;
    let rules: Vec<String> = d
        .rules
        .iter()
        .map(|r| format!("{} {}>{} {}", r.sources[0].0, r.from, r.to, r.when.join("&&")))
        .collect();
    assert_eq!(
        rules,
        [
            "4 log-shipper>front-end shipping",
            "6 operators>front-end optional&&shipping",
            "6 support-staff>front-end optional&&shipping"
        ]
    );
    let placed: Vec<String> =
        d.services.iter().map(|(k, s)| format!("{k} {} ({})", s.placement, s.placed_by)).collect();
    assert_eq!(
        placed,
        ["front-end group webtier (mapping table, line 2)", "log-shipper group all (mapping table, line 2)"]
    );
    assert_eq!(d.profile_notes.get("shipping"), Some(&7));
}
