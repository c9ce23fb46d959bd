//! `monitor matrix import`: the project's own page in the shape of the RP-PAM
//! vendor document, eight documents of other shapes (tests/fixtures/import/,
//! each with a `.expected` rule set and placements), the review (text and
//! JSON) and the `--inventory` check, a round trip of an imported matrix
//! through `monitor check`, and the vendor's original RP-PAM document when
//! it is checked out beside the repository.

mod expected;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use monitor::{
    import::{import, DraftRule, Options},
    matrix::Matrix,
};

/// The vendor's original document, in the shared docs beside the repository.
const RP_PAM: &str = "rp-pam-network-and-firewall-requirements.md";
/// The project's own page in the vendor document's shape (copied from a
/// documentation site: `¶` headings, tables pasted without blank lines,
/// rows broken in two, firewall commands, tables without a port column).
const RP_PAM_SHAPE: &str = "rp-pam-copied-page.md";
/// The team's page copied as text with a merged service -> host group
/// table, a perimeter table and a note that conditions the Broker's rules.
const RELAY: &str = "relay-copied-page.txt";

/// The shared vendor documents: `../shared/docs` beside the repository (the
/// workspace root is CARGO_MANIFEST_DIR/..), as CI has them. The environment
/// variable `MONITOR_SHARED_DOCS` names another directory instead, e.g. an
/// empty one to run the tests as on a clone without `../shared`.
fn shared_docs() -> PathBuf {
    match std::env::var_os("MONITOR_SHARED_DOCS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("../shared/docs"),
    }
}

/// The vendor's RP-PAM document, or `None` after one line on standard error
/// naming the path looked for, when this clone has no `../shared` beside it.
/// The line goes to the process's stderr itself, not through `eprintln!`,
/// which the test harness captures and hides for a passing test.
fn vendor_doc() -> Option<PathBuf> {
    use std::io::Write;
    let p = shared_docs().join(RP_PAM);
    if p.exists() {
        return Some(p);
    }
    let line = format!("skipped: vendor document {} not found (a clone without ../shared)\n", p.display());
    std::io::stderr().write_all(line.as_bytes()).expect("stderr");
    None
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import").join(name)
}

fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam").join(file)
}

fn opts(doc: &Path, groups: &[(&str, &str)]) -> Options {
    Options {
        doc_name: doc.file_name().unwrap().to_string_lossy().into_owned(),
        format: None,
        groups: groups.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        product: None,
        inventory: None,
    }
}

/// `FIRST_LINE from -> to PORTS proto [when COND]`, the form of the `.expected` files.
fn fmt_rule(r: &DraftRule) -> String {
    let ports: Vec<String> =
        r.ports.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
    let when = if r.when.is_empty() { String::new() } else { format!(" when {}", r.when.join(" && ")) };
    format!("{} {} -> {} {} {}{when}", r.sources[0].0, r.from, r.to, ports.join(","), r.proto)
}

/// Imports a document, checks that the draft loads without errors, returns it.
fn import_ok(doc: &Path, groups: &[(&str, &str)]) -> monitor::import::Imported {
    let text = std::fs::read_to_string(doc).unwrap_or_else(|e| panic!("cannot read {}: {e}", doc.display()));
    let imported =
        import(&text, Some(doc), &opts(doc, groups)).unwrap_or_else(|e| panic!("import failed: {e}"));
    let (_, warnings) = Matrix::from_str(&imported.yaml, "draft.yaml", Path::new(".")).unwrap_or_else(|e| {
        panic!("the draft of {} does not load:\n{e}\n---\n{}", doc.display(), imported.yaml)
    });
    // The one lint warning a draft may carry: each audience's placeholder
    // zone has no CIDRs until the user fills them in.
    let placeholders: Vec<String> = imported
        .draft
        .zones
        .keys()
        .map(|z| format!("zone `{z}` has no CIDRs, so no address is in it and its rules match nothing; fill in `cidrs:`"))
        .collect();
    let warnings: Vec<String> = warnings.iter().map(|w| w.message.clone()).collect();
    assert_eq!(warnings, placeholders, "lint warnings on the draft of {}:\n{}", doc.display(), imported.yaml);
    imported
}

/// What a document in the RP-PAM shape must give, by its line numbers.
struct RpPamShape {
    /// Every port row of its tables: (line, from, to, ports, proto, conditions).
    rows: &'static [(usize, &'static str, &'static str, &'static str, &'static str, &'static str)],
    /// The line of the gRPC table's first row (7001); 7002-7012 follow it.
    grpc_first_line: usize,
    /// The HA table's "7001-7012" row, which folds into the per-port gRPC rules.
    folded_range_line: usize,
    /// The sentence saying the gRPC ports are blocked from external access.
    exposure_line: usize,
    /// Lines it cannot place: the TLS and troubleshooting tables, the
    /// firewall command examples, the "Same as single-node" reference.
    warning_lines: &'static [usize],
    /// A provenance comment of the draft.
    provenance: &'static str,
}

/// The vendor's original document.
const VENDOR: RpPamShape = RpPamShape {
    rows: &[
        // Client-facing ports
        (13, "any", "rppam", "7101", "tcp", ""),
        (14, "rppam", "internet", "443", "tcp", ""),
        // Internal gRPC: on localhost on one node, between the nodes in HA
        (19, "loopback", "loopback", "7001", "tcp", "!ha"),
        (19, "rppam", "rppam", "7001", "tcp", "ha"),
        (20, "loopback", "loopback", "7002", "tcp", "!ha"),
        (20, "rppam", "rppam", "7002", "tcp", "ha"),
        (21, "rppam", "rppam", "7003", "tcp", "ha"),
        (22, "rppam", "rppam", "7004", "tcp", "ha"),
        (23, "rppam", "rppam", "7005", "tcp", "ha"),
        (24, "rppam", "rppam", "7006", "tcp", "ha"),
        (25, "rppam", "rppam", "7007", "tcp", "ha"),
        (26, "rppam", "rppam", "7008", "tcp", "ha"),
        (27, "rppam", "rppam", "7009", "tcp", "ha"),
        (28, "rppam", "rppam", "7010", "tcp", "ha"),
        (29, "rppam", "rppam", "7011", "tcp", "ha"),
        (30, "loopback", "loopback", "7012", "tcp", "!ha"),
        (30, "rppam", "rppam", "7012", "tcp", "ha"),
        // Infrastructure
        (35, "rppam", "db", "1433", "tcp", "database-separate-server && mssql"),
        (36, "rppam", "db", "5432", "tcp", "database-separate-server && postgresql"),
        (37, "rppam", "dc", "636", "tcp", "active-directory"),
        (38, "rppam", "targets", "3389", "tcp", ""),
        (39, "rppam", "targets", "22", "tcp", ""),
        (40, "rppam", "graph-microsoft-com", "443", "tcp", "entra-id"),
        (41, "rppam", "rppam", "6379", "tcp", "ha"),
        (42, "rppam", "rppam", "5201", "tcp", "ha"),
        // Single-node firewall rules
        (48, "user-workstations-admin-network", "rppam", "7101", "tcp", "!ha"),
        (49, "dba-workstations", "rppam", "1433,5432", "tcp", "!ha && optional-database-remote-access"),
        (53, "rppam", "lvs-ravenphyre-net", "443", "tcp", "!ha"),
        (55, "rppam", "ai-api-endpoint", "443", "tcp", "!ha && ai-provider"),
        (56, "rppam", "domain-controllers", "636", "tcp", "!ha && active-directory"),
        (57, "rppam", "graph-microsoft-com", "443", "tcp", "!ha && entra-id"),
        // HA firewall rules (gRPC 7001-7012 and the heartbeat fold into the rows above)
        (77, "rppam", "rppam", "7001", "tcp", "ha"),
        (78, "rppam", "rppam", "5201", "tcp", "ha"),
        (79, "rppam", "redis-server", "6379", "tcp", "ha"),
        (83, "user-network", "load-balancer-vip", "443,7101", "tcp", "ha"),
        (84, "load-balancer", "rppam", "7101", "tcp", "ha"),
    ],
    grpc_first_line: 19,
    folded_range_line: 77,
    exposure_line: 60,
    warning_lines: &[63, 86, 102, 118, 120, 128, 151, 155],
    provenance: "  # line 36: | 5432 | TCP | PostgreSQL |",
};

/// The project's own page (fixture `rp-pam-copied-page.md`).
const FIXTURE: RpPamShape = RpPamShape {
    rows: &[
        // Ports users reach
        (13, "any", "rppam", "7101", "tcp", ""),
        (14, "rppam", "internet", "443", "tcp", ""),
        // gRPC between services: on localhost on one node, between the nodes in HA
        (19, "loopback", "loopback", "7001", "tcp", "!ha"),
        (19, "rppam", "rppam", "7001", "tcp", "ha"),
        (20, "loopback", "loopback", "7002", "tcp", "!ha"),
        (20, "rppam", "rppam", "7002", "tcp", "ha"),
        (21, "rppam", "rppam", "7003", "tcp", "ha"),
        (22, "rppam", "rppam", "7004", "tcp", "ha"),
        (23, "rppam", "rppam", "7005", "tcp", "ha"),
        (24, "rppam", "rppam", "7006", "tcp", "ha"),
        (25, "rppam", "rppam", "7007", "tcp", "ha"),
        (26, "rppam", "rppam", "7008", "tcp", "ha"),
        (27, "rppam", "rppam", "7009", "tcp", "ha"),
        (28, "rppam", "rppam", "7010", "tcp", "ha"),
        (29, "rppam", "rppam", "7011", "tcp", "ha"),
        (30, "loopback", "loopback", "7012", "tcp", "!ha"),
        (30, "rppam", "rppam", "7012", "tcp", "ha"),
        // Infrastructure
        (35, "rppam", "db", "1433", "tcp", "database-separate-server && mssql"),
        (36, "rppam", "db", "5432", "tcp", "database-separate-server && postgresql"),
        (37, "rppam", "dc", "636", "tcp", "active-directory"),
        (38, "rppam", "targets", "3389", "tcp", ""),
        (39, "rppam", "targets", "22", "tcp", ""),
        (40, "rppam", "graph-microsoft-com", "443", "tcp", "entra-id"),
        (41, "rppam", "rppam", "6379", "tcp", "ha"),
        (42, "rppam", "rppam", "5201", "tcp", "ha"),
        // Single-node firewall rules
        (48, "user-workstations-admin-network", "rppam", "7101", "tcp", "!ha"),
        (49, "dba-workstations", "rppam", "1433,5432", "tcp", "!ha && optional-remote-database-access"),
        (53, "rppam", "lvs-ravenphyre-net", "443", "tcp", "!ha"),
        (55, "rppam", "ai-api-endpoint", "443", "tcp", "!ha && ai-provider"),
        (56, "rppam", "domain-controllers", "636", "tcp", "!ha && active-directory"),
        (57, "rppam", "graph-microsoft-com", "443", "tcp", "!ha && entra-id"),
        // HA firewall rules (gRPC 7001-7012 and the heartbeat fold into the rows above)
        (74, "rppam", "rppam", "7001", "tcp", "ha"),
        (75, "rppam", "rppam", "5201", "tcp", "ha"),
        (76, "rppam", "redis-server", "6379", "tcp", "ha"),
        (80, "user-network", "load-balancer-vip", "443,7101", "tcp", "ha"),
        (81, "load-balancer", "rppam", "7101", "tcp", "ha"),
    ],
    grpc_first_line: 19,
    folded_range_line: 74,
    exposure_line: 60,
    warning_lines: &[63, 83, 99, 111, 113, 121, 140, 144],
    provenance: "  # line 36: | 5432 | TCP | PostgreSQL |",
};

/// Imports a document in the RP-PAM shape and checks every row, the
/// exposure constraint, the placements, the warnings and the provenance.
fn assert_rp_pam_shape(doc: &Path, want: &RpPamShape) {
    let imported = import_ok(doc, &[]);
    let d = &imported.draft;
    for &(line, from, to, ports, proto, when) in want.rows {
        let want_when: Vec<&str> = if when.is_empty() { vec![] } else { when.split(" && ").collect() };
        let found = d.rules.iter().any(|r| {
            r.sources.iter().any(|(l, _)| *l == line)
                && r.from == from
                && r.to == to
                && r.proto == proto
                && r.when == want_when
                && {
                    let p: Vec<String> = r
                        .ports
                        .iter()
                        .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
                        .collect();
                    // A folded range row (7001-7012) cites the rule of its first port.
                    p.join(",") == ports || (line == want.folded_range_line && r.ports == [(7001, 7001)])
                }
        });
        assert!(
            found,
            "{}: line {line}: no rule {from} -> {to} {ports}/{proto} when [{when}]; rules:\n{}",
            doc.display(),
            d.rules.iter().map(fmt_rule).collect::<Vec<_>>().join("\n")
        );
    }
    // Every row of the gRPC table also documents its port on localhost, on one node.
    for (line, port) in (want.grpc_first_line..).zip(7001u16..=7012) {
        assert!(
            d.rules.iter().any(|r| r.from == "loopback"
                && r.to == "loopback"
                && r.when == ["!ha"]
                && r.sources[0].0 == line
                && r.ports == [(port, port)]),
            "{}: line {line}: gRPC port {port} has no localhost rule",
            doc.display()
        );
    }
    // "... blocked from external access" (single node).
    let x = d.exposures.iter().find(|x| x.to == "rppam").expect("an exposure constraint for the gRPC ports");
    assert_eq!(
        (x.ports.as_slice(), x.only_from.as_slice(), x.when.as_slice()),
        (&[(7001, 7012)][..], &["loopback".to_string()][..], &["!ha".to_string()][..])
    );
    assert_eq!(x.sources[0].0, want.exposure_line);
    // Services: the product's nodes, DNS names, host groups.
    let placement =
        |s: &str| format!("{:?}", d.services.get(s).unwrap_or_else(|| panic!("no service {s}")).placement);
    assert_eq!(placement("rppam"), "Group(\"rppam_nodes\")");
    assert_eq!(placement("lvs-ravenphyre-net"), "Fqdns([\"lvs.ravenphyre.net\"])");
    assert_eq!(
        placement("graph-microsoft-com"),
        "Fqdns([\"graph.microsoft.com\", \"login.microsoftonline.com\"])"
    );
    assert_eq!(placement("redis-server"), "Group(\"redis_server\")");
    // What it could not place is a warning with its line.
    for &line in want.warning_lines {
        assert!(
            d.warnings.iter().any(|w| w.line == line),
            "{}: no warning for line {line}: {:?}",
            doc.display(),
            d.warnings
        );
    }
    // Provenance comments cite the document's rows.
    assert!(imported.yaml.contains(want.provenance), "{}", imported.yaml);
}

fn assert_deterministic(doc: &Path) {
    let a = import_ok(doc, &[]).yaml;
    let b = import_ok(doc, &[]).yaml;
    assert_eq!(a, b, "two imports of {} differ", doc.display());
}

#[test]
fn rp_pam_shape_every_port_row_is_imported() {
    assert_rp_pam_shape(&fixture(RP_PAM_SHAPE), &FIXTURE);
}

#[test]
fn rp_pam_shape_draft_is_deterministic() {
    assert_deterministic(&fixture(RP_PAM_SHAPE));
}

/// The vendor's original document, when it is beside the repository (CI):
/// every row, determinism and the round trip through `monitor check`.
#[test]
fn rp_pam_vendor_document() {
    let Some(doc) = vendor_doc() else { return };
    assert_rp_pam_shape(&doc, &VENDOR);
    assert_deterministic(&doc);
    assert_round_trip(&doc);
}

/// `@ SERVICE PLACEMENT (EVIDENCE)` (`ServiceReview::placement`: `group G`,
/// `hosts A, B`, `fqdns A, B`)
/// per service of the draft, EVIDENCE `name only` for a service placed by
/// its name alone; `z ZONE LINE AUDIENCE` per audience waiting for CIDRs.
fn placements(review: &monitor::import::Review) -> Vec<String> {
    let mut v: Vec<String> = review
        .services
        .iter()
        .map(|s| {
            let by = if s.name_only { "name only" } else { s.evidence.as_str() };
            format!("@ {} {} ({by})", s.service, s.placement())
        })
        .collect();
    v.extend(review.audiences.iter().map(|a| format!("z {} {} {}", a.zone, a.line, a.audience)));
    v
}

/// Compares a fixture's rules, exposure constraints, warning lines and
/// placements with its `.expected` file: one rule per line (`fmt_rule`),
/// `x LINE TO PORTS only FROM` per exposure constraint, `! LINE` per
/// warning, and the placements (`placements`).
fn check_fixture(name: &str, groups: &[(&str, &str)]) {
    let doc = fixture(name);
    let imported = import_ok(&doc, groups);
    let mut got: Vec<String> = imported.draft.rules.iter().map(fmt_rule).collect();
    got.extend(imported.draft.exposures.iter().map(|x| {
        let when = if x.when.is_empty() { String::new() } else { format!(" when {}", x.when.join(" && ")) };
        format!("x {} {} {:?} only {}{when}", x.sources[0].0, x.to, x.ports, x.only_from.join(","))
    }));
    got.extend(imported.draft.warnings.iter().map(|w| format!("! {}", w.line)));
    got.extend(placements(&imported.review));
    got.sort();
    let exp_path = fixture(&format!("{name}.expected"));
    let want = expected::expected_lines(&exp_path);
    assert_eq!(
        got,
        want,
        "{name}: imported rules differ from {}\nwarnings: {:#?}\nyaml:\n{}",
        exp_path.display(),
        imported.draft.warnings,
        imported.yaml
    );
}

#[test]
fn text_destination_first_with_multi_word_names() {
    check_fixture("consul-copy-paste.txt", &[]);
}

#[test]
fn text_port_first_with_directions() {
    check_fixture("gitlab-copy-paste.txt", &[]);
}

#[test]
fn mermaid_flowchart() {
    check_fixture("nomad.mmd", &[]);
}

#[test]
fn html_table_and_list() {
    check_fixture("vault.html", &[]);
}

#[test]
fn html_list_with_group_table() {
    check_fixture("kafka.html", &[]);
}

#[test]
fn markdown_table_and_diagram_merge() {
    check_fixture("app.md", &[]);
}

#[test]
fn markdown_copied_page_in_the_rp_pam_shape() {
    check_fixture(RP_PAM_SHAPE, &[]);
}

#[test]
fn mapping_table_places_services() {
    let d = import_ok(&fixture("consul-copy-paste.txt"), &[]).draft;
    let g = |s: &str| format!("{:?}", d.services[s].placement);
    assert_eq!(g("consul-server"), "Group(\"consul_servers\")");
    assert_eq!(g("consul-client"), "Group(\"consul_agents\")");
    // The document's own table wins over --group, with a warning; a --group that names nothing is reported.
    let d = import_ok(&fixture("consul-copy-paste.txt"), &[("Consul Server", "mine"), ("Nobody", "x")]).draft;
    assert_eq!(format!("{:?}", d.services["consul-server"].placement), "Group(\"consul_servers\")");
    assert!(
        d.warnings.iter().any(|w| w.message.starts_with("--group Consul Server=mine ignored")),
        "{:?}",
        d.warnings
    );
    assert!(
        d.warnings.iter().any(|w| w.line == 0 && w.message.contains("no service \"Nobody\"")),
        "{:?}",
        d.warnings
    );
    let d = import_ok(&fixture("nomad.mmd"), &[("Operator", "ops_workstations")]).draft;
    assert_eq!(
        format!("{:?}", d.services["operator"].placement),
        "Group(\"ops_workstations\")",
        "--group wins"
    );
    assert_eq!(
        format!("{:?}", d.services["nomad-server"].placement),
        "Group(\"nomad_servers\")",
        "subgraph = group"
    );
}

fn monitor() -> Command {
    Command::cargo_bin("monitor").expect("the monitor binary is built")
}

/// The kinds of the alert lines of `monitor check --format json`, with the rule of each.
fn findings(out: &std::process::Output) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v| v["type"] == "alert")
        .map(|v| (v["kind"].as_str().unwrap().to_string(), v["rule"].as_str().unwrap_or("-").to_string()))
        .collect()
}

#[test]
fn round_trip_imported_matrix_through_check() {
    assert_round_trip(&fixture(RP_PAM_SHAPE));
}

/// Imports a document in the RP-PAM shape with `monitor matrix import` and
/// checks the example captures of `examples/rp-pam/` against the draft.
fn assert_round_trip(doc: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let draft = dir.path().join("rp-pam.yaml");
    let out = monitor()
        .args(["matrix", "import"])
        .arg(doc)
        .args(["--group", "DB=database", "--group", "Redis server=redis", "-o"])
        .arg(&draft)
        .output()
        .unwrap();
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    let lint = monitor().args(["matrix", "lint"]).arg(&draft).output().unwrap();
    assert!(lint.status.success(), "lint of the draft failed: {}", String::from_utf8_lossy(&lint.stdout));

    let check = |inventory: &str, pcap: &str, profiles: &[&str]| {
        let mut c = monitor();
        c.args(["check", "--format", "json", "--matrix"]).arg(&draft);
        c.arg("--inventory").arg(example(inventory)).arg("--pcap").arg(example(&format!("pcaps/{pcap}")));
        for p in profiles {
            c.args(["--profile", p]);
        }
        let out = c.output().unwrap();
        assert!(out.status.code() != Some(2), "check failed: {}", String::from_utf8_lossy(&out.stderr));
        findings(&out)
    };
    let ha = ["ha", "postgresql", "database-separate-server"];
    // Portal, gRPC, heartbeat, Redis and PostgreSQL between the HA nodes: all documented.
    assert_eq!(check("inventory.ini", "conforming.pcap", &ha), vec![]);
    // A workstation straight to the database.
    assert_eq!(check("inventory.ini", "unexpected.pcap", &ha), vec![("unexpected".into(), "-".into())]);
    // Documented paths that fail: gRPC dropped, Redis refused, PostgreSQL rejected.
    let mut blocked = check("inventory.ini", "blocked.pcapng", &ha);
    blocked.sort();
    assert_eq!(
        blocked,
        vec![
            ("blocked".to_string(), "rppam-rppam-7002".to_string()),
            ("blocked".into(), "rppam-redis-server-6379".into()),
            ("blocked".into(), "rppam-db-5432".into()),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    // One node: gRPC 7003 answering a workstation breaks "blocked from external access".
    assert_eq!(
        check("inventory-single.ini", "exposed-single-node.pcap", &[]),
        vec![("exposed".into(), "exposure-rppam-7001".into())]
    );
}

#[test]
fn cli_format_override_warnings_and_empty_documents() {
    let dir = tempfile::tempdir().unwrap();
    // A Mermaid diagram saved as .txt: auto detection still sees `flowchart`;
    // forcing text finds no table and fails with a clear message.
    let doc = dir.path().join("diagram.txt");
    std::fs::copy(fixture("nomad.mmd"), &doc).unwrap();
    let out = monitor().args(["matrix", "import"]).arg(&doc).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("diagram.txt:11: warning: diagram edge without a port"),
        "warnings are DOC:LINE: warning: ...: {stderr}"
    );
    assert!(stderr.contains("imported as mermaid: 4 rules"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout)
        .starts_with("# Draft matrix imported from diagram.txt (mermaid)"));

    let out = monitor().args(["matrix", "import", "--format", "text"]).arg(&doc).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a document with nothing to import is an error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("diagram.txt: no port table") && stderr.contains("--format"), "{stderr}");
}

#[test]
fn text_mapping_perimeter_and_note() {
    check_fixture(RELAY, &[]);
}

/// `monitor matrix import DOC ...` run in the fixtures' directory, so that
/// file names in messages are as written.
fn import_in_fixtures(args: &[&str]) -> std::process::Output {
    monitor().current_dir(fixture("")).args(["matrix", "import"]).args(args).output().unwrap()
}

/// `--review json`: standard error is one JSON object (warnings included),
/// standard output the draft, which loads as a matrix.
#[test]
fn review_json_with_inventory() {
    let out = import_in_fixtures(&[RELAY, "--inventory", "relay-inventory.ini", "--review", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap_or_else(|e| {
        panic!("stderr is not one JSON object: {e}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    let want_path = fixture(&format!("{RELAY}.review.json"));
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&want_path).unwrap()).unwrap();
    assert_eq!(got, want, "the review differs from {}:\n{got:#}", want_path.display());
    let yaml = String::from_utf8(out.stdout).unwrap();
    Matrix::from_str(&yaml, "draft.yaml", Path::new(".")).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
}

/// The text review comes after the warnings and before the count line.
#[test]
fn review_text_lists_placements_rules_profiles_and_audiences() {
    let out = import_in_fixtures(&[RELAY, "-o", "/dev/null"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let review = stderr.split_once("review of ").map(|(_, r)| r).unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(
        review,
        "relay-copied-page.txt (text):
  services (6):
    broker         group brokers        mapping table, line 10
    front-end      group webtier        mapping table, line 9
    log-collector  group log_collector  name only, line 19: check it against your inventory
    log-shipper    group all            mapping table, line 8
    scheduler      group scheduler      mapping table, line 7
    worker-node    group workers        mapping table, line 11
  rules (12): 7 between services, 4 from audiences, 1 from anywhere, 0 to DNS names or the internet, 0 on loopback; 3 with conditions
  exposure constraints: 1
  profiles (2):
    optional       condition, line 18  on 2 rules
    push-dispatch  note, line 20       on 2 rules
  audiences waiting for CIDRs (2):
    operators      \"Operators\", line 23      fill in zones.operators.cidrs (2 rules, 1 exposure constraint)
    support-staff  \"Support staff\", line 25  fill in zones.support-staff.cidrs (2 rules, 1 exposure constraint)
  warnings: 3
relay-copied-page.txt: imported as text: 12 rules, 1 exposure constraints, 2 profiles, 3 warnings
"
    );
    assert!(
        stderr.starts_with("relay-copied-page.txt:19: warning: \"Log Collector\" placed by name only, no mapping in the document: check `log_collector` against your inventory"),
        "{stderr}"
    );
}

/// `--inventory`: a group the inventory lacks, one without hosts, and hosts
/// no service is placed on are warnings naming the document line and the
/// inventory file; placing the service with --group clears them.
#[test]
fn inventory_check_reports_mismatches() {
    let inv_warnings = |out: &std::process::Output| -> Vec<String> {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.contains(": warning: ") && l.contains(".ini"))
            .map(String::from)
            .collect()
    };
    let out = import_in_fixtures(&[RELAY, "--inventory", "relay-inventory.ini", "-o", "/dev/null"]);
    assert_eq!(
        inv_warnings(&out),
        [
            "relay-copied-page.txt: warning: relay-inventory.ini: the hosts of group `logs` belong to no service of the draft (other than one on `all`), so no rule is written for them; place the service that runs there with --group NAME=logs",
            "relay-copied-page.txt:19: warning: service `log-collector` is placed on group `log_collector` (convention: the name's slug), which is not a group of relay-inventory.ini: fix the group in the draft, or import again with --group \"Log Collector=GROUP\"; groups with hosts no service is placed on: logs",
        ]
    );
    let out = import_in_fixtures(&[
        RELAY,
        "--inventory",
        "relay-inventory.ini",
        "--group",
        "Log Collector=logs",
        "-o",
        "/dev/null",
    ]);
    assert_eq!(inv_warnings(&out), Vec::<String>::new());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("log-collector  group logs       --group; inventory: 1 host"));

    // A group that exists without hosts.
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("empty-brokers.ini");
    let text = std::fs::read_to_string(fixture("relay-inventory.ini")).unwrap();
    std::fs::write(&inv, text.replace("mq1 ansible_host=10.200.7.31\n", "")).unwrap();
    let out = monitor()
        .current_dir(fixture(""))
        .args(["matrix", "import", RELAY, "--group", "Log Collector=logs", "-o", "/dev/null", "--inventory"])
        .arg(&inv)
        .output()
        .unwrap();
    let w = inv_warnings(&out);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("relay-copied-page.txt:16: warning: service `broker` is placed on group `brokers` (mapping table, line 10), which has no hosts in ")
            && w[0].contains("empty-brokers.ini"),
        "{w:?}"
    );
}

#[test]
fn markdown_mapping_to_hosts_perimeter_and_note_on_a_target() {
    check_fixture("shop.md", &[]);
}

/// A service placed on host names: a name the inventory lacks is a warning;
/// a group that is a host name is told apart from a missing group.
#[test]
fn inventory_check_of_host_names() {
    let doc = fixture("shop.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let ini = "[web]\nweb1 ansible_host=10.200.5.1\n[dbservers]\ndb01 ansible_host=10.200.5.11\n\
        [search_index]\nsearch1 ansible_host=10.200.5.21\n[payment_gateway]\n[other]\nreporting_engine ansible_host=10.200.5.31\n";
    let (inv, _) = monitor::inventory::Inventory::from_ini(ini, Path::new("shop.ini")).unwrap();
    let mut o = opts(&doc, &[]);
    o.inventory = Some((inv, "shop.ini".into()));
    let d = import(&text, Some(&doc), &o).unwrap().draft;
    let inv_warnings: Vec<String> =
        d.warnings.iter().filter(|w| w.message.contains("shop.ini")).map(|w| w.to_string()).collect();
    assert_eq!(
        inv_warnings,
        [
            "shop.ini: the hosts of group `other` belong to no service of the draft (other than one on `all`), so no rule is written for them; place the service that runs there with --group NAME=other",
            "line 18: service `order-database` is placed on hosts db02 (mapping table, line 11), which shop.ini does not have: fix the names in the draft or in the inventory",
            "line 20: service `reporting-engine` is placed on group `reporting_engine` (convention: the name's slug), which is a host, not a group, of shop.ini: fix the group in the draft, or import again with --group \"Reporting Engine=GROUP\"; groups with hosts no service is placed on: other",
            "line 21: service `payment-gateway` is placed on group `payment_gateway` (convention: the name's slug), which has no hosts in shop.ini: fix the group in the draft, or import again with --group \"Payment Gateway=GROUP\"; groups with hosts no service is placed on: other",
        ]
    );
}
