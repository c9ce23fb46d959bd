//! `monitor graph` end to end, on the binary: the RP-PAM example captures
//! (examples/rp-pam/pcaps) drawn as Mermaid and DOT and compared with the
//! golden files in tests/fixtures/graph/ (`MONITOR_BLESS=1` rewrites them);
//! the SVG rendered by Graphviz and read back as XML; the SVG the README
//! shows (docs/rp-pam-graph.svg) is the command's output; the fleet source
//! against a real Prometheus scraping stand-in agents (tests/fleet_support).

mod fleet_support;

use std::{
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
};

use fleet_support::{run, Prometheus, Response, StaticHttp};

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam").join(name).to_str().unwrap().to_string()
}

/// The HA example: the three HA captures in one graph.
fn ha_args() -> Vec<String> {
    let mut a: Vec<String> =
        ["graph", "--matrix", &example("matrix.yaml"), "--inventory", &example("inventory.ini")]
            .map(String::from)
            .to_vec();
    a.extend(["--profile", "ha"].map(String::from));
    for p in ["conforming.pcap", "blocked.pcapng", "unexpected.pcap"] {
        a.push("--pcap".into());
        a.push(example(&format!("pcaps/{p}")));
    }
    a
}

/// The single-node example, with its exposed gRPC port.
fn single_args() -> Vec<String> {
    [
        "graph",
        "--matrix",
        &example("matrix.yaml"),
        "--inventory",
        &example("inventory-single.ini"),
        "--pcap",
        &example("pcaps/exposed-single-node.pcap"),
    ]
    .map(String::from)
    .to_vec()
}

fn graph(args: &[String], extra: &[&str]) -> (String, String) {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend_from_slice(extra);
    let (ok, out, err) = run(&all);
    assert!(ok, "monitor {all:?} failed: {err}");
    (out, err)
}

fn golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/graph").join(name);
    if std::env::var_os("MONITOR_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).expect("create the fixtures directory");
        std::fs::write(&path, got).expect("write the golden file");
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(got, want, "{} differs (MONITOR_BLESS=1 rewrites it); got:\n{got}", path.display());
}

#[test]
fn the_rp_pam_examples_as_mermaid_and_dot_match_their_golden_files() {
    let (mmd, err) = graph(&ha_args(), &[]);
    assert!(
        err.contains("monitor graph: 12 nodes; rules: 3 used, 3 blocked, 7 never used; 1 undocumented and 0 exposed edge(s)"),
        "{err}"
    );
    golden("rp-pam-ha.mmd", &mmd);
    // Mermaid is the default form.
    assert_eq!(graph(&ha_args(), &["--format", "mermaid"]).0, mmd);
    golden("rp-pam-ha.dot", &graph(&ha_args(), &["--format", "dot"]).0);
    let (single, err) = graph(&single_args(), &[]);
    golden("rp-pam-single.mmd", &single);
    // What is not drawn is said, on standard error as in the graph's comments.
    assert!(
        err.contains("monitor: note: 1 flow to exposed ports went unanswered (the firewall held)")
            && single.contains("%% note: 1 flow to exposed ports went unanswered"),
        "{err}"
    );
    golden("rp-pam-single.dot", &graph(&single_args(), &["--format", "dot"]).0);
}

/// The SVG's `<g class=KIND>` groups: their `<title>` and their element with a `stroke`.
fn svg_groups(svg: &str, class: &str) -> Vec<(String, Option<String>)> {
    // Graphviz writes the SVG 1.1 DOCTYPE.
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..roxmltree::ParsingOptions::default() };
    let doc = roxmltree::Document::parse_with_options(svg, options).expect("the SVG is well-formed XML");
    doc.descendants()
        .filter(|n| n.has_tag_name("g") && n.attribute("class") == Some(class))
        .map(|g| {
            let title =
                g.children().find(|c| c.has_tag_name("title")).and_then(|t| t.text()).unwrap_or_default();
            let stroke = g.children().find(|c| c.has_tag_name("path")).and_then(|p| p.attribute("stroke"));
            (title.to_string(), stroke.map(String::from))
        })
        .collect()
}

#[test]
fn the_svg_holds_every_node_and_edge_and_the_blocked_edge_is_red() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("g.svg");
    let (out, _) = graph(&ha_args(), &["--format", "svg", "-o", file.to_str().unwrap()]);
    assert!(out.is_empty(), "-o writes the file, not standard output: {out}");
    let svg = std::fs::read_to_string(&file).expect("the SVG file");
    let nodes: Vec<String> = svg_groups(&svg, "node").into_iter().map(|(t, _)| t).collect();
    for n in ["service:rppam", "service:database", "service:redis", "zone:users", "host:ws01", "host:db1"] {
        assert!(nodes.iter().any(|t| t == n), "no node {n} in {nodes:?}");
    }
    let edges = svg_groups(&svg, "edge");
    let stroke = |title: &str| -> Vec<Option<String>> {
        edges.iter().filter(|(t, _)| t == title).map(|(_, s)| s.clone()).collect()
    };
    // The portal is used; Redis refused, PostgreSQL rejected by ICMP; ssh-proxy never
    // used; ws01 -> db1 undocumented.
    assert_eq!(stroke("zone:users->service:rppam"), [Some("black".to_string())], "{edges:?}");
    assert_eq!(stroke("service:rppam->service:redis"), [Some("red".to_string())], "{edges:?}");
    assert_eq!(stroke("service:rppam->service:database"), [Some("red".to_string())], "{edges:?}");
    assert_eq!(stroke("host:ws01->host:db1"), [Some("darkorange".to_string())], "{edges:?}");
    assert_eq!(stroke("service:rppam->service:linux-targets").len(), 1, "{edges:?}");
    assert!(svg.contains(">redis</text>") && svg.contains(">refused 1"), "the labels are in the SVG");
    // One SVG edge per graph edge.
    let dot = graph(&ha_args(), &["--format", "dot"]).0;
    assert_eq!(edges.len(), dot.matches(" -> ").count());
}

#[test]
fn the_readme_svg_is_what_the_command_draws() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rp-pam-graph.svg");
    let (svg, _) = graph(&ha_args(), &["--format", "svg"]);
    if std::env::var_os("MONITOR_BLESS").is_some() {
        std::fs::write(&committed, &svg).expect("write docs/rp-pam-graph.svg");
    }
    let want = std::fs::read_to_string(&committed).unwrap_or_else(|e| panic!("{}: {e}", committed.display()));
    assert!(
        svg == want,
        "docs/rp-pam-graph.svg is not what `monitor graph --format svg` draws for the README's command: \
         MONITOR_BLESS=1 cargo test --test graph rewrites it"
    );
}

#[test]
fn svg_without_graphviz_names_the_package_and_bad_calls_say_what_to_give() {
    let empty = tempfile::tempdir().expect("tempdir");
    let out = fleet_support::monitor()
        .args(ha_args())
        .args(["--format", "svg"])
        .env("PATH", empty.path())
        .output()
        .expect("run monitor");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty());
    assert!(
        err.contains("Graphviz's `dot`, which is not installed") && err.contains("Debian package `graphviz`"),
        "{err}"
    );

    let (ok, _, err) = run(&["graph", "--matrix", &example("matrix.yaml")]);
    assert!(!ok);
    assert!(
        err.contains(
            "nothing to draw: give --pcap FILE (a capture), --socket PATH (a running agent) or --prometheus URL"
        ),
        "{err}"
    );
    let (ok, _, err) = run(&[
        "graph",
        "--matrix",
        &example("matrix.yaml"),
        "--pcap",
        "x.pcap",
        "--prometheus",
        "http://p:9090",
    ]);
    assert!(!ok && err.contains("cannot be used with"), "{err}");
    let (ok, _, err) = run(&["graph", "--matrix", &example("matrix.yaml"), "--pcap", "/nonexistent.pcap"]);
    assert!(!ok && err.contains("/nonexistent.pcap"), "{err}");
    let mut args = single_args();
    args.extend(["-o", "/nonexistent/g.mmd"].map(String::from));
    let (ok, _, err) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok && err.contains("/nonexistent/g.mmd: cannot write the graph"), "{err}");
}

/// A stand-in agent's metrics page (docs/metrics.md): rule flows and
/// blocked flows, documented paths with outcomes, ICMP rejections and
/// undocumented flows by group pair.
fn page(
    node: &str,
    rules: &[(&str, u64, u64)],
    paths: &[(&str, &str, &str, &str, &str, u64)],
    icmp: &[(&str, &str, &str, u64)],
    unexpected: &[(&str, &str, u64)],
) -> String {
    let mut o = format!(
        "# TYPE monitor_agent_info gauge\nmonitor_agent_info{{node=\"{node}\",version=\"0.1.0\"}} 1\n"
    );
    o += "# TYPE monitor_rule_flows_total counter\n";
    for (r, f, _) in rules {
        o += &format!("monitor_rule_flows_total{{rule=\"{r}\"}} {f}\n");
    }
    o += "# TYPE monitor_rule_blocked_total counter\n";
    for (r, _, b) in rules {
        o += &format!("monitor_rule_blocked_total{{rule=\"{r}\"}} {b}\n");
    }
    o += "# TYPE monitor_path_attempts_total counter\n";
    for (rule, client, server, side, outcome, n) in paths {
        o += &format!(
            "monitor_path_attempts_total{{rule=\"{rule}\",client=\"{client}\",server=\"{server}\",side=\"{side}\",outcome=\"{outcome}\"}} {n}\n"
        );
    }
    o += "# TYPE monitor_path_icmp_rejected_total counter\n";
    for (rule, client, server, n) in icmp {
        o += &format!(
            "monitor_path_icmp_rejected_total{{rule=\"{rule}\",client=\"{client}\",server=\"{server}\",side=\"client\",sender=\"other\",origin=\"network\"}} {n}\n"
        );
    }
    o += "# TYPE monitor_findings_total counter\n";
    for (s, t, n) in unexpected {
        o += &format!(
            "monitor_findings_total{{kind=\"unexpected\",source_group=\"{s}\",target_group=\"{t}\"}} {n}\n"
        );
    }
    o
}

#[test]
fn the_fleet_from_prometheus_is_drawn_on_the_matrix() {
    // rppam1 uses the database and the gRPC of rppam2; its Redis attempts
    // go unanswered (redis1 runs no agent), its heartbeat to rppam2 is
    // rejected by ICMP from a router; db1 counts the database flows too,
    // and undocumented flows from the workstations.
    let rppam1 = page(
        "rppam1",
        &[("db-postgres", 10, 0), ("grpc-inter-node", 6, 0), ("redis", 4, 4), ("heartbeat", 2, 2)],
        &[
            ("db-postgres", "rppam1", "db1", "client", "answered", 10),
            ("redis", "rppam1", "redis1", "client", "unanswered", 4),
            ("heartbeat", "rppam1", "rppam2", "client", "icmp_rejected", 2),
        ],
        &[("heartbeat", "rppam1", "rppam2", 2)],
        &[],
    );
    let db1 = page(
        "db1",
        &[("db-postgres", 10, 0)],
        &[("db-postgres", "rppam1", "db1", "server", "answered", 10)],
        &[],
        &[("user_workstations", "database", 3)],
    );
    let first = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), 0)).expect("bind 127.0.0.2");
    let port = first.local_addr().expect("addr").port();
    let _agents = [
        StaticHttp::start(first, Response::metrics(rppam1)),
        StaticHttp::start(
            TcpListener::bind((Ipv4Addr::new(127, 0, 0, 3), port)).expect("bind"),
            Response::metrics(db1),
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let config: PathBuf = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: monitor\n    \
             static_configs:\n      - targets: ['127.0.0.2:{port}', '127.0.0.3:{port}']\n"
        ),
    )
    .expect("write config");
    let prom = Prometheus::start(dir.path(), &config);
    prom.wait_value("count(monitor_agent_info)", 2.0);
    let url = prom.url();
    let args: Vec<String> = [
        "graph",
        "--matrix",
        &example("matrix.yaml"),
        "--inventory",
        &example("inventory.ini"),
        "--profile",
        "ha",
        "--prometheus",
        &url,
        "--window",
        "1h",
    ]
    .map(String::from)
    .to_vec();
    let (dot, err) = graph(&args, &["--format", "dot"]);
    assert!(err.contains("rules: 2 used, 2 blocked"), "{err}");
    for want in [
        // Both agents counted the database flows.
        "\"service:rppam\" -> \"service:database\" [label=\"db-postgres\\ntcp/5432: 20 flows\", color=\"black\"];",
        "\"service:rppam\" -> \"service:redis\" [label=\"redis\\ntcp/6379: 4 flows, 4 blocked\\nunanswered where unknown 4\", color=\"red\"",
        "[label=\"heartbeat\\ntcp/5201: 2 flows, 2 blocked\\nicmp-rejected by other in the network 2\", color=\"red\"",
        "\"group:user_workstations\" -> \"group:database\" [label=\"undocumented: 3 flows\", color=\"darkorange\"",
        "[label=\"ssh-proxy\\ntcp/22: no flow\", color=\"grey60\"",
    ] {
        assert!(dot.contains(want), "no {want}\nin:\n{dot}");
    }
    golden("rp-pam-fleet.dot", &dot);
}
