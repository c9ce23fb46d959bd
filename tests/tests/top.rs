//! `monitor top` as a user runs it: in a tmux pane of 80x24, attached to an
//! agent that watches a namespace with live traffic. The rules view shows
//! the rule the traffic uses with its flows, `2` shows the finding of a
//! planted undocumented connection, `q` exits and gives the terminal back
//! (out of the alternate screen, out of raw mode). And `monitor run
//! --format text` on a terminal keeps one status line under its alerts.
//! Needs root, tmux and the monitor binary (MONITOR_BIN).

use std::{
    net::TcpListener,
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use monitor_tests::{
    agent::{rp_pam, Agent},
    cluster::Cluster,
    monitor::require_monitor_bin,
    traffic,
};

const IF: &str = Cluster::IFACE;

/// A tmux server of the test's own (`-L`), killed on drop.
struct Tmux {
    server: String,
}

impl Tmux {
    /// `name` tells apart the servers of the tests of this file, which run
    /// at once in one process.
    fn new(name: &str) -> Tmux {
        Tmux { server: format!("monitor-{name}-test-{}", std::process::id()) }
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux")
            .args(["-L", &self.server, "-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run tmux (Debian's `tmux`): {e}"));
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    fn capture(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    /// The pane with its scrollback, for output longer than the pane.
    fn history(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-S", "-", "-t", "top"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn display(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", "top", format]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Polls the pane until `pred` holds of its text, for up to `timeout`.
    fn wait(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture();
            if pred(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "{what}: not on the screen within {timeout:?}:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.server, "kill-server"]).output();
    }
}

/// The FLOWS column of the rules view's line for `rule`.
fn flows_of(screen: &str, rule: &str) -> Option<u64> {
    screen
        .lines()
        .find(|l| l.split_whitespace().next() == Some(rule))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

#[test]
fn top_shows_live_rules_and_findings_and_gives_the_terminal_back() {
    let c = Cluster::new(&["rppam1", "db1", "ws01"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("rppam1.sock");
    let (matrix, inventory) = (rp_pam("matrix.yaml"), rp_pam("inventory.ini"));
    let sock = socket.display().to_string();
    let args = [
        "--matrix",
        &matrix,
        "--inventory",
        &inventory,
        "--profile",
        "ha",
        "--iface",
        IF,
        "--socket",
        &sock,
        "--format",
        "json",
    ];
    let agent = Agent::start(c.ns("rppam1"), IF, &args);

    // Documented: the node to its database. Undocumented: a workstation to port 8080 of the node.
    let db = traffic::TcpEchoServer::start(c.ns("db1"), c.addr("db1", 5432), 2);
    traffic::tcp_echo_client(c.ns("rppam1"), db.addr, 3, 200);
    traffic::tcp_echo_client(c.ns("rppam1"), db.addr, 3, 200);
    assert_eq!(db.join(), vec![600; 2]);
    let addr = c.addr("rppam1", 8080);
    let _planted = c.ns("rppam1").run(|| TcpListener::bind(addr)).expect("listen on 8080");
    let (_, r) = traffic::tcp_attempt(c.ns("ws01"), c.ip("ws01"), addr, Duration::from_secs(1));
    r.expect("connect to rppam1:8080");
    agent
        .wait_alert(0, Duration::from_secs(5), |a| a.dst.port == 8080)
        .unwrap_or_else(|| panic!("the agent did not see ws01 -> rppam1:8080; stderr:\n{}", agent.stderr()));

    let tmux = Tmux::new("top");
    let bin = require_monitor_bin();
    tmux.run(&["new-session", "-d", "-s", "top", "-x", "80", "-y", "24", "sh"]);
    tmux.run(&["set-option", "-t", "top", "status", "off"]);
    let line = format!("{} top --socket {} ; echo top-exit=$?; stty -a", bin.display(), sock);
    tmux.keys(&[&line, "Enter"]);

    // The interfaces are known from the agent's first table read (1 s).
    let screen = tmux.wait("db-postgres with flows, and the interface", Duration::from_secs(10), |s| {
        flows_of(s, "db-postgres").is_some_and(|n| n > 0) && s.lines().any(|l| l.starts_with(IF))
    });
    assert_eq!(flows_of(&screen, "db-postgres"), Some(2), "{screen}");
    assert!(screen.lines().any(|l| l.starts_with(IF)), "the status line names the interface:\n{screen}");
    assert!(screen.lines().count() <= 24 && screen.lines().all(|l| l.chars().count() <= 80), "{screen}");
    assert_eq!(tmux.display("#{alternate_on}"), "1", "top draws on the alternate screen");

    tmux.keys(&["2"]);
    let screen = tmux.wait("the 8080 finding", Duration::from_secs(5), |s| {
        s.lines().any(|l| {
            l.starts_with("unexpected") && l.contains("ws01") && l.split_whitespace().nth(3) == Some("8080")
        })
    });
    assert!(screen.contains("findings"), "{screen}");

    tmux.keys(&["q"]);
    // The exit status, then stty's local flags (its last line holds `echoke`).
    let screen = tmux.wait("the shell after top", Duration::from_secs(5), |s| {
        s.split_once("\ntop-exit=").is_some_and(|(_, after)| after.contains("echoke"))
    });
    assert!(screen.contains("top-exit=0"), "{screen}");
    assert_eq!(tmux.display("#{alternate_on}"), "0", "the alternate screen was left:\n{screen}");
    // Raw mode given back: the line discipline echoes and reads lines again.
    let termios: Vec<&str> =
        screen.split("top-exit=0").nth(1).unwrap_or_default().split_whitespace().collect();
    for flag in ["icanon", "echo", "isig", "icrnl"] {
        assert!(termios.contains(&flag), "stty shows `{flag}` off after top:\n{screen}");
    }
    assert!(!screen.contains("db-postgres"), "the view is gone from the screen:\n{screen}");
    agent.stop().assert_success();
    assert!(!Path::new(&sock).exists(), "the agent removed its socket");
}

/// The last line of the pane that holds anything.
fn last_line(screen: &str) -> &str {
    screen.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default()
}

#[test]
fn run_on_a_terminal_keeps_one_status_line_under_its_alerts() {
    let c = Cluster::new(&["rppam1", "ws01"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("rppam1.sock").display().to_string();
    let (matrix, inventory) = (rp_pam("matrix.yaml"), rp_pam("inventory.ini"));
    let bin = require_monitor_bin();
    let tmux = Tmux::new("status");
    tmux.run(&["new-session", "-d", "-s", "top", "-x", "120", "-y", "30", "sh"]);
    tmux.run(&["set-option", "-t", "top", "status", "off"]);
    let line = format!(
        "ip netns exec {} {} run --matrix {matrix} --inventory {inventory} --profile ha --iface {IF} \
         --socket {sock} --format text",
        c.ns("rppam1").name(),
        bin.display()
    );
    tmux.keys(&[&line, "Enter"]);
    let status = format!("watching {IF} · ");
    let screen = tmux.wait("the status line", Duration::from_secs(20), |s| last_line(s).starts_with(&status));
    assert!(
        last_line(&screen).ends_with("no packet yet") || last_line(&screen).contains("last packet"),
        "{screen}"
    );

    // An undocumented connection: its alert comes above, the status line stays last and counts it.
    let addr = c.addr("rppam1", 8080);
    let _planted = c.ns("rppam1").run(|| TcpListener::bind(addr)).expect("listen on 8080");
    let (_, r) = traffic::tcp_attempt(c.ns("ws01"), c.ip("ws01"), addr, Duration::from_secs(1));
    r.expect("connect to rppam1:8080");
    let screen = tmux.wait("the alert above the status line", Duration::from_secs(10), |s| {
        s.lines().any(|l| l.starts_with("UNEXPECTED") && l.contains(":8080"))
            && last_line(s).starts_with(&status)
            && !last_line(s).contains(" 0 findings")
    });
    let statuses = screen.lines().filter(|l| l.contains(&status)).count();
    assert_eq!(statuses, 1, "one status line, drawn in place:\n{screen}");
    assert!(last_line(&screen).contains("last packet"), "{screen}");

    // Ctrl-C: the coverage report replaces the status line.
    tmux.keys(&["C-c"]);
    let screen = tmux
        .wait("the coverage report", Duration::from_secs(15), |s| s.contains("documented rules never seen"));
    assert!(!screen.contains(&status), "the status line is gone at exit:\n{screen}");
}

#[test]
fn top_with_a_matrix_runs_its_own_agent_and_prints_the_coverage_when_it_ends() {
    let c = Cluster::new(&["rppam1", "db1", "ws01"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (matrix, inventory) = (rp_pam("matrix.yaml"), rp_pam("inventory.ini"));
    let alerts = dir.path().join("alerts.jsonl");
    let bin = require_monitor_bin();
    let tmux = Tmux::new("local");
    tmux.run(&["new-session", "-d", "-s", "top", "-x", "80", "-y", "24", "sh"]);
    tmux.run(&["set-option", "-t", "top", "status", "off"]);
    // The options are `monitor run`'s; no --socket: a private one.
    let line = format!(
        "ip netns exec {} {} top --matrix {matrix} --inventory {inventory} --profile ha --iface {IF} \
         --node rppam1 --alerts-out {} ; echo top-exit=$?",
        c.ns("rppam1").name(),
        bin.display(),
        alerts.display()
    );
    tmux.keys(&[&line, "Enter"]);
    // Attached once its programs are: the status line names the interface.
    tmux.wait("the view of its own agent", Duration::from_secs(30), |s| s.lines().any(|l| l.starts_with(IF)));

    let db = traffic::TcpEchoServer::start(c.ns("db1"), c.addr("db1", 5432), 1);
    traffic::tcp_echo_client(c.ns("rppam1"), db.addr, 3, 200);
    assert_eq!(db.join(), vec![600]);
    let addr = c.addr("rppam1", 8080);
    let _planted = c.ns("rppam1").run(|| TcpListener::bind(addr)).expect("listen on 8080");
    let (_, r) = traffic::tcp_attempt(c.ns("ws01"), c.ip("ws01"), addr, Duration::from_secs(1));
    r.expect("connect to rppam1:8080");
    tmux.wait("db-postgres used", Duration::from_secs(10), |s| flows_of(s, "db-postgres") == Some(1));
    tmux.keys(&["2"]);
    tmux.wait("the 8080 finding", Duration::from_secs(10), |s| {
        s.lines().any(|l| l.starts_with("unexpected") && l.split_whitespace().nth(3) == Some("8080"))
    });

    // q stops the agent too: the coverage report and where the alerts went.
    tmux.keys(&["q"]);
    tmux.wait("the shell after top", Duration::from_secs(20), |s| {
        s.lines().any(|l| l.starts_with("top-exit="))
    });
    let screen = tmux.history();
    assert!(screen.contains("\ntop-exit=0"), "{screen}");
    assert_eq!(tmux.display("#{alternate_on}"), "0", "the alternate screen was left:\n{screen}");
    assert!(screen.contains("documented rules never seen"), "the coverage report:\n{screen}");
    assert!(screen.contains(" flows: 1 conforming, 1 unexpected,"), "the agent's summary:\n{screen}");
    // The agent's log went to a file, not over the view.
    let log = screen
        .lines()
        .find_map(|l| l.strip_prefix("monitor: the agent's log in "))
        .unwrap_or_else(|| panic!("where the log is:\n{screen}"));
    let logged = std::fs::read_to_string(log).expect("the agent's log");
    assert!(logged.contains("watching"), "{log}:\n{logged}");
    std::fs::remove_dir_all(Path::new(log).parent().expect("the log's directory")).expect("remove it");
    assert!(screen.contains(&format!("alerts in {}", alerts.display())), "{screen}");
    let written = std::fs::read_to_string(&alerts).expect("the alerts file");
    let alert = written
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|a| a["type"] == "alert" && a["dst"]["port"] == 8080);
    assert!(
        alert.is_some_and(|a| a["kind"] == "unexpected"),
        "the 8080 alert in {}:\n{written}",
        alerts.display()
    );
    assert!(
        written.lines().last().is_some_and(|l| l.contains("\"coverage\"")),
        "the coverage report ends the file:\n{written}"
    );
    // Nothing of the agent is left: no process in the namespace.
    let left =
        Command::new("ip").args(["netns", "pids", c.ns("rppam1").name()]).output().expect("ip netns pids");
    assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty(), "processes left in the namespace");
}
