//! `monitor top` without a terminal: every view of a known state rendered
//! at 80x24 into ratatui's TestBackend against goldens in
//! tests/fixtures/top/ (MONITOR_BLESS=1 rewrites them), the colours that
//! carry meaning, and what each key does.

use std::{
    net::IpAddr,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use monitor::{
    live::{
        coverage::{RuleLine, RuleUse},
        state::{Cell, End, Finding, FlowLine, Host, State, Status, Verdict},
    },
    top::{views::Tone, App, View},
};
use ratatui::{
    backend::TestBackend,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    style::{Color, Modifier},
    Terminal,
};

/// When the fixture state was taken.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_288_400) // 2026-12-03T09:00:00Z
}

fn ago(secs: u64) -> SystemTime {
    now() - Duration::from_secs(secs)
}

fn rule(
    id: &str,
    proto: &str,
    ports: &str,
    flows: u64,
    packets: u64,
    blocked: u64,
    last: Option<u64>,
) -> RuleLine {
    RuleLine {
        id: id.into(),
        source: "rppam_nodes".into(),
        target: if id.starts_with("db") { "database".into() } else { "rppam_nodes".into() },
        proto: proto.into(),
        ports: ports.into(),
        purpose: String::new(),
        provenance: "examples/rp-pam/matrix.yaml:174".into(),
        usage: RuleUse { packets, bytes: packets * 420, flows, blocked, last_seen: last.map(ago) },
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn host(addr: &str, name: Option<&str>) -> Host {
    Host { ip: ip(addr), host: name.map(String::from) }
}

#[allow(clippy::too_many_arguments)]
fn finding(
    kind: Verdict,
    client: Host,
    server: Host,
    port: u16,
    rule: Option<&str>,
    closest: &[&str],
    reason: &str,
    count: u64,
    last: u64,
) -> Finding {
    Finding {
        kind,
        proto: "tcp".into(),
        client,
        server,
        port,
        reason: reason.into(),
        rule: rule.map(String::from),
        closest: closest.iter().map(|s| s.to_string()).collect(),
        provenance: Some("examples/rp-pam/matrix.yaml:226".into()),
        count,
        state: "established".into(),
        packets: 10,
        bytes: 1000,
        initiator_seen: true,
        first_seen: ago(last + 30),
        last_seen: ago(last),
    }
}

fn flow(
    client: (&str, Option<&str>, u16),
    server: (&str, Option<&str>, u16),
    bytes: u64,
    rule: &str,
    verdict: &str,
) -> FlowLine {
    FlowLine {
        proto: "tcp".into(),
        client: End { ip: ip(client.0), port: client.2, host: client.1.map(String::from) },
        server: End { ip: ip(server.0), port: server.2, host: server.1.map(String::from) },
        state: "established".into(),
        packets: bytes / 600 + 1,
        bytes,
        rule: rule.into(),
        verdict: verdict.into(),
    }
}

fn cell(source: &str, target: &str, flows: u64, worst: Verdict) -> Cell {
    Cell { source: source.into(), target: target.into(), flows, worst }
}

/// An RP-PAM node a few minutes into its run.
fn state() -> State {
    let node1 = ("10.200.1.11", Some("rppam1"));
    State {
        record: "state".into(),
        status: Status {
            interfaces: vec!["eth0".into()],
            uptime_secs: 754.0,
            flows_seen: 1234,
            conforming: 1228,
            findings: 6,
            secs_since_packet: Some(0.4),
            secs_since_event: Some(2.5),
        },
        coverage: vec![
            rule("db-postgres", "tcp", "5432", 812, 95_000, 0, Some(1)),
            rule("grpc-inter-node", "tcp", "7001-7012", 0, 0, 0, None),
            rule("heartbeat", "tcp", "5201", 400, 12_000, 0, Some(3)),
            rule("lb-to-nodes", "tcp", "7101", 0, 0, 0, None),
            rule("redis", "tcp", "6379", 16, 2_100, 2, Some(45)),
            rule("web-portal/users", "tcp", "7101", 3, 310, 0, Some(600)),
        ],
        findings: vec![
            finding(
                Verdict::Unexpected,
                host("10.200.2.50", Some("ws01")),
                host("10.200.1.12", Some("rppam2")),
                8080,
                None,
                &["web-portal/users"],
                "no rule allows users to reach rppam on 8080/tcp",
                1,
                2,
            ),
            finding(
                Verdict::Blocked,
                host(node1.0, node1.1),
                host("10.200.1.21", Some("redis1")),
                6379,
                Some("redis"),
                &[],
                "refused (RST)",
                2,
                45,
            ),
            finding(
                Verdict::Exposed,
                host("192.0.2.9", None),
                host(node1.0, node1.1),
                7003,
                Some("grpc-cluster-only"),
                &[],
                "only the cluster may reach 7003/tcp; the server answered (syn-ack)",
                3,
                120,
            ),
        ],
        findings_dropped: 0,
        flows: vec![
            flow(
                (node1.0, node1.1, 40112),
                ("10.200.1.20", Some("db1"), 5432),
                4_200_000,
                "db-postgres",
                "conforming",
            ),
            flow(
                (node1.0, node1.1, 40544),
                ("10.200.1.12", Some("rppam2"), 5201),
                96_000,
                "heartbeat",
                "conforming",
            ),
            flow(
                ("10.200.2.50", Some("ws01"), 51234),
                ("10.200.1.12", Some("rppam2"), 8080),
                5_400,
                "undocumented",
                "unexpected",
            ),
            flow((node1.0, node1.1, 40998), ("10.200.1.21", Some("redis1"), 6379), 120, "redis", "blocked"),
        ],
        groups: vec![
            cell("internet", "rppam_nodes", 3, Verdict::Exposed),
            cell("rppam_nodes", "database", 812, Verdict::Conforming),
            cell("rppam_nodes", "redis", 16, Verdict::Blocked),
            cell("rppam_nodes", "rppam_nodes", 400, Verdict::Conforming),
            cell("users", "rppam_nodes", 4, Verdict::Unexpected),
        ],
        groups_dropped: 0,
    }
}

fn app() -> App {
    let mut app = App::new("/run/monitor/monitor.sock");
    app.update(Ok(state()), now());
    app
}

fn key(app: &mut App, code: KeyCode) {
    app.handle_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn terminal(app: &App) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| app.draw(f)).unwrap();
    t
}

fn screen(app: &App) -> String {
    let t = terminal(app);
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let line: String = (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/top").join(name);
    if std::env::var_os("MONITOR_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(got, want, "{} differs (MONITOR_BLESS=1 rewrites it); got:\n{got}", path.display());
}

/// The first column of every row of the current view.
fn firsts(app: &App) -> Vec<String> {
    app.model().rows.iter().map(|r| r[0].text.clone()).collect()
}

#[test]
fn every_view_at_80x24_matches_its_golden() {
    let mut app = app();
    for (k, name) in [('1', "rules"), ('2', "findings"), ('3', "flows"), ('4', "groups")] {
        key(&mut app, KeyCode::Char(k));
        assert_eq!(app.view().name(), name);
        let got = screen(&app);
        assert_eq!(got.lines().count(), 24);
        assert!(got.lines().all(|l| l.chars().count() <= 80));
        golden(&format!("{name}.txt"), &got);
    }
    // Before the first state, and with the agent gone.
    let mut empty = App::new("/run/monitor/monitor.sock");
    golden("waiting.txt", &screen(&empty));
    empty.update(Err("cannot reach a running monitor at /run/monitor/monitor.sock".into()), now());
    assert!(screen(&empty).starts_with("cannot reach a running monitor"), "{}", screen(&empty));
}

#[test]
fn never_used_rules_are_dimmed_blocked_ones_red_and_grid_cells_coloured_by_verdict() {
    let mut app = app();
    let t = terminal(&app);
    let buf = t.backend().buffer();
    let row_of = |id: &str| {
        (0..buf.area.height)
            .find(|&y| (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect::<String>().starts_with(id))
            .unwrap_or_else(|| panic!("no row {id}"))
    };
    assert!(buf[(0, row_of("lb-to-nodes"))].modifier.contains(Modifier::DIM));
    assert_eq!(buf[(0, row_of("redis"))].fg, Color::Red);
    let used = &buf[(0, row_of("db-postgres"))];
    assert!(!used.modifier.contains(Modifier::DIM) && used.fg == Color::Reset);

    key(&mut app, KeyCode::Char('4'));
    let m = app.model();
    assert_eq!(m.header, ["FROM \\ TO", "database", "redis", "rppam_n~"]);
    let row = |s: &str| m.rows.iter().find(|r| r[0].text == s).unwrap();
    let tones = |s: &str| row(s)[1..].iter().map(|c| (c.text.as_str(), c.tone)).collect::<Vec<_>>();
    assert_eq!(
        tones("rppam_nodes"),
        [("812", Tone::Conforming), ("16", Tone::Blocked), ("400", Tone::Conforming)]
    );
    assert_eq!(tones("internet"), [("", Tone::Plain), ("", Tone::Plain), ("3", Tone::Exposed)]);
    assert_eq!(tones("users")[2], ("4", Tone::Unexpected));
}

#[test]
fn the_filter_applies_on_enter_to_every_view_and_esc_clears_it() {
    let mut app = app();
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "port:5432");
    assert_eq!(app.editing(), Some("port:5432"));
    assert!(screen(&app).contains("filter: port:5432_"), "the filter is shown as it is typed");
    assert_eq!(firsts(&app).len(), 6, "not applied before Enter");
    key(&mut app, KeyCode::Enter);
    assert_eq!(firsts(&app), ["db-postgres"]);
    key(&mut app, KeyCode::Char('3'));
    assert_eq!(app.model().rows.len(), 1);
    assert_eq!(app.model().rows[0][6].text, "db-postgres");
    key(&mut app, KeyCode::Char('2'));
    assert!(firsts(&app).is_empty(), "no finding on 5432");
    assert!(screen(&app).contains("[port:5432]"));
    // A term the view has no field for (port, on the grid) is ignored there.
    key(&mut app, KeyCode::Char('4'));
    assert_eq!(firsts(&app).len(), 3);

    // `/` starts from the filter in force; Backspace edits it.
    key(&mut app, KeyCode::Char('/'));
    for _ in 0.."port:5432".len() {
        key(&mut app, KeyCode::Backspace);
    }
    typed(&mut app, "kind:blocked");
    key(&mut app, KeyCode::Enter);
    assert_eq!(firsts(&app), ["rppam_nodes"], "the grid: the one blocked cell");
    key(&mut app, KeyCode::Char('1'));
    assert_eq!(firsts(&app), ["redis"], "rules: blocked ones");
    key(&mut app, KeyCode::Char('2'));
    assert_eq!(firsts(&app), ["blocked"]);

    key(&mut app, KeyCode::Esc);
    assert!(app.filter().is_empty());
    assert_eq!(firsts(&app).len(), 3);

    // host: and rule: match parts, addresses too; Esc while typing clears.
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "host:192.0.2");
    key(&mut app, KeyCode::Enter);
    assert_eq!(firsts(&app), ["exposed"]);
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, " rule:db-");
    key(&mut app, KeyCode::Esc);
    assert!(app.filter().is_empty() && app.editing().is_none());
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "rule:db-");
    key(&mut app, KeyCode::Enter);
    assert_eq!(firsts(&app), ["db-postgres"]);

    // A bad filter says why and leaves the one in force.
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, " prt:1");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.filter().text(), "rule:db-");
    assert!(screen(&app).contains("unknown field `prt:`"), "{}", screen(&app));
}

#[test]
fn s_cycles_the_sort_column_of_the_current_view() {
    let mut app = app();
    assert_eq!(app.sort(), "rule");
    key(&mut app, KeyCode::Char('s'));
    assert_eq!(app.sort(), "flows");
    assert_eq!(firsts(&app)[..3], ["db-postgres", "heartbeat", "redis"]);
    key(&mut app, KeyCode::Char('s'));
    key(&mut app, KeyCode::Char('s'));
    key(&mut app, KeyCode::Char('s'));
    assert_eq!(app.sort(), "blocked");
    assert_eq!(firsts(&app)[0], "redis");
    key(&mut app, KeyCode::Char('s'));
    assert_eq!(app.sort(), "last use");
    assert_eq!(firsts(&app)[..4], ["db-postgres", "heartbeat", "redis", "web-portal/users"]);
    key(&mut app, KeyCode::Char('s'));
    assert_eq!(app.sort(), "rule", "back to the first");

    // Each view keeps its own.
    key(&mut app, KeyCode::Char('2'));
    assert_eq!(app.sort(), "newest");
    assert_eq!(firsts(&app), ["unexpected", "blocked", "exposed"]);
    key(&mut app, KeyCode::Char('s'));
    assert_eq!(app.sort(), "count");
    assert_eq!(firsts(&app), ["exposed", "blocked", "unexpected"]);
    key(&mut app, KeyCode::Char('3'));
    key(&mut app, KeyCode::Char('s'));
    key(&mut app, KeyCode::Char('s'));
    assert_eq!(app.sort(), "port");
    let ports: Vec<String> = app.model().rows.iter().map(|r| r[3].text.clone()).collect();
    assert_eq!(ports, ["5201", "5432", "6379", "8080"]);
    key(&mut app, KeyCode::Char('4'));
    key(&mut app, KeyCode::Char('s'));
    assert_eq!(firsts(&app), ["rppam_nodes", "users", "internet"], "sources by flows");
    key(&mut app, KeyCode::Char('1'));
    assert_eq!(app.sort(), "rule");
    assert!(screen(&app).contains("s sort (rule)"));
}

#[test]
fn p_pauses_the_view_and_q_quits() {
    let mut app = app();
    key(&mut app, KeyCode::Char('p'));
    assert!(app.paused());
    let mut newer = state();
    newer.coverage[1].usage.flows = 9;
    app.update(Ok(newer.clone()), now() + Duration::from_secs(1));
    assert_eq!(app.state().unwrap().coverage[1].usage.flows, 0, "paused: the state shown stays");
    assert_eq!(app.taken(), now());
    assert!(screen(&app).lines().nth(1).unwrap().contains("PAUSED"));
    key(&mut app, KeyCode::Char('p'));
    app.update(Ok(newer), now() + Duration::from_secs(2));
    assert_eq!(app.state().unwrap().coverage[1].usage.flows, 9);
    assert!(!screen(&app).contains("PAUSED"));

    // Keys typed into the filter are text, not commands.
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "q2p");
    assert!(!app.should_quit() && !app.paused() && app.view() == View::Rules);
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('q'));
    assert!(app.should_quit());
    let mut other = self::app();
    other.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(other.should_quit(), "Ctrl-C quits too (raw mode sends it as a key)");
}
