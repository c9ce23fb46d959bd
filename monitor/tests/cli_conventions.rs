//! The conventions people expect of a Unix tool, on the real binary:
//! durations take units (`500ms`, `2s`, `10m`, `1h`) as well as plain
//! seconds, and a closed stdout (`monitor ... | head`) ends a command quietly
//! with status 0.

use std::{
    io::{Read, Write},
    os::unix::net::UnixListener,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use clap::{CommandFactory, Parser};
use monitor::cli::{Cli, Command as Sub};
use serde_json::Value;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam").join(name)
}

fn monitor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_monitor"))
}

fn check_args(pcap: &str) -> Vec<String> {
    [
        "check",
        "--matrix",
        example("matrix.yaml").to_str().unwrap(),
        "--inventory",
        example("inventory.ini").to_str().unwrap(),
        "--profile",
        "ha",
        "--pcap",
        example(&format!("pcaps/{pcap}")).to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

/// `monitor check --format json` on an example capture; the summary line.
fn check_summary(pcap: &str, extra: &[&str]) -> Value {
    let out = monitor().args(check_args(pcap)).args(["--format", "json"]).args(extra).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0 | 1)), "monitor check {extra:?} failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let summary: Value = serde_json::from_str(stdout.lines().last().expect("a summary line")).unwrap();
    assert_eq!(summary["type"], "summary", "{summary}");
    summary
}

const EXAMPLE: &str = "use a number of seconds (`2.5`) or a number with a unit (`500ms`, `2s`, `10m`, `1h`)";

// ---- durations ----

#[test]
fn check_takes_the_syn_timeout_with_a_unit() {
    // blocked.pcapng ends 1 to 10 s after one unanswered SYN: with a 10 s
    // timeout it is still awaiting, with the default 3 s it is blocked.
    let default = check_summary("blocked.pcapng", &[]);
    assert_eq!((default["blocked"].as_u64(), default["awaiting"].as_u64()), (Some(3), Some(0)), "{default}");
    for ten in ["10", "10.0", "10s", "10000ms", "0m10s"] {
        let s = check_summary("blocked.pcapng", &["--syn-timeout", ten]);
        assert_eq!((s["blocked"].as_u64(), s["awaiting"].as_u64()), (Some(2), Some(1)), "{ten}: {s}");
    }
    for three in ["3", "3s", "3000ms", "0.05m"] {
        assert_eq!(check_summary("blocked.pcapng", &["--syn-timeout", three]), default, "{three}");
    }
}

#[test]
fn check_accepts_every_form_of_duration() {
    for d in ["2s", "500ms", "10m", "1h", "1m30s", "0.5", "2", "0"] {
        let out = monitor()
            .args(check_args("conforming.pcap"))
            .args(["--syn-timeout", d, "--dns-grace", d])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{d}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn a_bad_duration_fails_with_an_example_of_a_good_one() {
    for (bad, why) in [("2x", "is not a duration"), ("nan", "is not a duration"), ("-1", "is negative")] {
        let out = monitor()
            .args(check_args("conforming.pcap"))
            .arg(format!("--syn-timeout={bad}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(out.stdout.is_empty(), "{bad}");
        assert!(stderr.contains(&format!("`{bad}` {why}")), "{bad}: {stderr}");
        assert!(stderr.contains(EXAMPLE), "{bad}: {stderr}");
        assert!(stderr.contains("--syn-timeout <DURATION>"), "{bad}: {stderr}");
    }
    // The same parser on every command, rejected before anything is loaded
    // (`run` and `flows` would need root past parsing).
    for args in [
        &["run", "--matrix", "m.yaml", "--interval", "2x"][..],
        &["run", "--matrix", "m.yaml", "--dedup-window", "2x"],
        &["run", "--matrix", "m.yaml", "--dns-grace", "2x"],
        &["run", "--matrix", "m.yaml", "--syn-timeout", "2x"],
        &["flows", "--interval", "2x"],
        &["flows", "--syn-timeout", "2x"],
        &["check", "--matrix", "m.yaml", "--pcap", "p.pcap", "--dns-grace", "2x"],
    ] {
        let out = monitor().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("`2x` is not a duration: {EXAMPLE}")), "{args:?}: {stderr}");
    }
}

/// Every option of every command whose value is a duration, found by its
/// value name: none is left taking only seconds (`SECS`), and each takes
/// units, decimals and plain seconds.
#[test]
fn every_duration_option_takes_units() {
    fn walk(cmd: &clap::Command, path: &str, found: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let names: Vec<&str> =
                arg.get_value_names().unwrap_or_default().iter().map(|n| n.as_str()).collect();
            let name = format!("{path} --{}", arg.get_long().unwrap_or_else(|| arg.get_id().as_str()));
            assert!(!names.iter().any(|n| n.contains("SEC")), "{name} still takes {names:?}");
            if names == ["DURATION"] {
                // Parsed alone: the command's other required options, and those it requires, relaxed.
                let parse = |value: &str| {
                    let long = arg.get_long().expect("a long option");
                    cmd.clone()
                        .mut_args(|a| {
                            let reset = clap::builder::Resettable::<clap::Id>::Reset;
                            a.required(false).requires(reset.clone()).required_unless_present(reset)
                        })
                        .try_get_matches_from([cmd.get_name().to_string(), format!("--{long}={value}")])
                        .map(|m| *m.get_one::<Duration>(arg.get_id().as_str()).expect("a Duration"))
                };
                for (good, d) in [
                    ("500ms", Duration::from_millis(500)),
                    ("2s", Duration::from_secs(2)),
                    ("10m", Duration::from_secs(600)),
                    ("1h", Duration::from_secs(3600)),
                    ("1m30s", Duration::from_secs(90)),
                    ("0.5", Duration::from_millis(500)),
                    ("3", Duration::from_secs(3)),
                ] {
                    assert_eq!(parse(good).map_err(|e| e.to_string()), Ok(d), "{name} {good}");
                }
                assert!(parse("2x").unwrap_err().to_string().contains(EXAMPLE), "{name}");
                found.push(name);
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), found);
        }
    }
    let mut found = Vec::new();
    walk(&Cli::command(), "monitor", &mut found);
    found.sort();
    assert_eq!(
        found,
        [
            "monitor check --dns-grace",
            "monitor check --syn-timeout",
            "monitor fleet report --timeout",
            "monitor fleet report --window",
            "monitor flows --interval",
            "monitor flows --syn-timeout",
            "monitor graph --dns-grace",
            "monitor graph --syn-timeout",
            "monitor graph --timeout",
            "monitor graph --window",
            "monitor learn --dns-grace",
            "monitor learn --syn-timeout",
            "monitor learn --window",
            "monitor probe --timeout",
            "monitor run --dedup-window",
            "monitor run --dns-grace",
            "monitor run --interval",
            "monitor run --syn-timeout",
            "monitor top --dedup-window",
            "monitor top --dns-grace",
            "monitor top --interval",
            "monitor top --syn-timeout",
        ]
    );
}

/// Each option reaches its command as the duration written, and the
/// defaults are what they were in seconds.
#[test]
fn durations_reach_the_commands_as_written() {
    let parse = |args: &[&str]| Cli::try_parse_from([&["monitor"][..], args].concat()).unwrap().command;
    let Sub::Run(run) = parse(&["run", "--matrix", "m.yaml"]) else { panic!() };
    assert_eq!(
        (run.agent.syn_timeout, run.agent.dedup_window, run.agent.interval, run.agent.dns_grace),
        (Duration::from_secs(3), Duration::from_secs(600), Duration::from_secs(1), Duration::from_secs(60))
    );
    let Sub::Run(run) = parse(&[
        "run",
        "--matrix",
        "m.yaml",
        "--syn-timeout",
        "500ms",
        "--dedup-window",
        "1h",
        "--interval",
        "0.25",
        "--dns-grace",
        "1m30s",
    ]) else {
        panic!()
    };
    assert_eq!(
        (run.agent.syn_timeout, run.agent.dedup_window, run.agent.interval, run.agent.dns_grace),
        (
            Duration::from_millis(500),
            Duration::from_secs(3600),
            Duration::from_millis(250),
            Duration::from_secs(90)
        )
    );

    let Sub::Flows(flows) = parse(&["flows"]) else { panic!() };
    assert_eq!((flows.interval, flows.syn_timeout), (Duration::from_secs(2), Duration::from_secs(3)));
    let Sub::Flows(flows) = parse(&["flows", "--interval", "10m", "--syn-timeout", "2s"]) else { panic!() };
    assert_eq!((flows.interval, flows.syn_timeout), (Duration::from_secs(600), Duration::from_secs(2)));

    let check = ["check", "--matrix", "m.yaml", "--pcap", "p.pcap"];
    let Sub::Check(c) = parse(&check) else { panic!() };
    assert_eq!((c.syn_timeout, c.dns_grace), (Duration::from_secs(3), Duration::from_secs(60)));
    let Sub::Check(c) = parse(&[&check[..], &["--syn-timeout", "1.5", "--dns-grace", "10m"][..]].concat())
    else {
        panic!()
    };
    assert_eq!((c.syn_timeout, c.dns_grace), (Duration::from_millis(1500), Duration::from_secs(600)));
}

#[test]
fn help_names_durations() {
    for cmd in ["check", "run", "flows"] {
        let out = monitor().args([cmd, "--help"]).output().unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{cmd}");
        assert!(help.contains("--syn-timeout <DURATION>"), "{cmd}: {help}");
        assert!(!help.contains("SECS"), "{cmd}: {help}");
    }
}

// ---- a closed stdout ----

/// Runs the monitor with stdout a pipe whose read end is closed before it
/// starts: its first write to stdout fails with EPIPE.
fn stdout_closed(cmd: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(writer).stderr(Stdio::piped()).output().unwrap()
}

/// Runs the monitor, reads the first `n` bytes of its stdout, then closes
/// the pipe; returns them with the outcome.
fn stdout_closed_after(cmd: &mut Command, n: usize) -> (Vec<u8>, Output) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut head = vec![0; n];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    (head, child.wait_with_output().unwrap())
}

/// Exit status 0 and nothing on stderr but `allowed` lines: no error, no panic.
fn assert_quiet(what: &str, out: &Output, allowed: impl Fn(&str) -> bool) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{what}: {:?}, stderr: {stderr}", out.status);
    for line in stderr.lines() {
        assert!(allowed(line), "{what}: unexpected stderr line: {line}\n{stderr}");
    }
    assert!(!stderr.contains("error") && !stderr.contains("panicked"), "{what}: {stderr}");
}

fn nothing(_: &str) -> bool {
    false
}

/// A matrix of `n` rules with long purposes, whose `show` runs past any
/// pipe buffer (64 KiB by default). Few rules: loading is superlinear in them.
fn big_matrix(dir: &Path, n: usize) -> PathBuf {
    let mut yaml = String::from(
        "version: 1\nzones:\n  a:\n    cidrs: [10.0.0.0/24]\n  b:\n    cidrs: [10.0.1.0/24]\nrules:\n",
    );
    let filler = "to fill a pipe ".repeat(30);
    for i in 0..n {
        yaml += &format!(
            "  - id: rule-{i}\n    from: a\n    to: b\n    port: {}\n    purpose: rule {i} {filler}\n",
            1 + i
        );
    }
    let path = dir.join("big.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn matrix_show_ends_quietly_when_its_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = big_matrix(dir.path(), 1500);
    for format in ["json", "text"] {
        let full = monitor().args(["matrix", "show", "--format", format]).arg(&matrix).output().unwrap();
        assert!(full.status.success(), "{}", String::from_utf8_lossy(&full.stderr));
        assert!(
            full.stdout.len() > 512 << 10,
            "{format}: only {} bytes: not past a pipe buffer",
            full.stdout.len()
        );

        // `monitor matrix show M --format json | head -c 300`
        let (head, out) =
            stdout_closed_after(monitor().args(["matrix", "show", "--format", format]).arg(&matrix), 300);
        assert_eq!(head, full.stdout[..300], "{format}");
        assert_quiet(&format!("matrix show --format {format} | head"), &out, nothing);

        let out = stdout_closed(monitor().args(["matrix", "show", "--format", format]).arg(&matrix));
        assert_quiet(&format!("matrix show --format {format} >&-"), &out, nothing);
    }
    // The example, small: the first write already meets the closed pipe.
    let out =
        stdout_closed(monitor().args(["matrix", "show", "--format", "json"]).arg(example("matrix.yaml")));
    assert_quiet("matrix show example", &out, nothing);
}

#[test]
fn matrix_lint_ends_quietly_when_its_reader_goes_away() {
    let out = stdout_closed(monitor().args(["matrix", "lint"]).arg(example("matrix.yaml")));
    assert_quiet("matrix lint", &out, nothing);
}

#[test]
fn check_ends_quietly_when_its_reader_goes_away() {
    // With findings (exit 1 when read to the end) and without, in both formats.
    for pcap in ["unexpected.pcap", "conforming.pcap"] {
        for format in ["json", "text"] {
            let out = stdout_closed(monitor().args(check_args(pcap)).args(["--format", format]));
            // The example leaves one DNS name unbound: a warning, on stderr,
            // as `monitor: FILE:LINE:COL: warning: ...`.
            assert_quiet(&format!("check {pcap} --format {format}"), &out, |l| {
                l.starts_with("monitor: ") && l.matches(": warning: ").count() == 1
            });
        }
    }
}

#[test]
fn import_ends_quietly_when_its_reader_goes_away() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import/kafka.html");
    let full = monitor().args(["matrix", "import"]).arg(&doc).output().unwrap();
    assert!(full.status.success(), "{}", String::from_utf8_lossy(&full.stderr));
    assert!(!full.stdout.is_empty());
    // The importer's warnings still go to stderr before the draft is written.
    let out = stdout_closed(monitor().args(["matrix", "import"]).arg(&doc));
    assert_quiet("matrix import", &out, |l| l.contains(": warning: "));
}

/// A stand-in for `monitor run`'s control socket: answers one request with `body`.
fn serve_once(socket: &Path, body: Vec<u8>) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0u8; 12]; // "report json\n"
        conn.read_exact(&mut request).unwrap();
        assert_eq!(&request, b"report json\n");
        conn.write_all(&body).unwrap();
    })
}

#[test]
fn report_ends_quietly_when_its_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("monitor.sock");
    // A coverage report as large as a big matrix's: megabytes.
    let body: Vec<u8> =
        format!("{{\"type\":\"coverage\",\"rules\":[{}],\"unused\":[]}}\n", "{},".repeat(1 << 20) + "{}")
            .into_bytes();

    let server = serve_once(&socket, body.clone());
    let (head, out) =
        stdout_closed_after(monitor().args(["report", "--format", "json", "--socket"]).arg(&socket), 100);
    server.join().unwrap();
    assert_eq!(head, body[..100]);
    assert_quiet("report | head", &out, nothing);

    std::fs::remove_file(&socket).unwrap();
    let server = serve_once(&socket, body);
    let out = stdout_closed(monitor().args(["report", "--format", "json", "--socket"]).arg(&socket));
    server.join().unwrap();
    assert_quiet("report >&-", &out, nothing);
}

/// `--profile` and `--set` are one option set with one parser in every
/// command that takes them: a variable given twice is an error everywhere
/// (it was last-wins in `matrix show` and `matrix lint`), before any file
/// is read or anything attached.
#[test]
fn a_repeated_set_is_an_error_in_every_command() {
    let matrix = example("matrix.yaml");
    let matrix = matrix.to_str().unwrap();
    let pcap = example("pcaps/blocked.pcapng");
    let twice = ["--set", "db=mssql", "--set", "db=postgres"];
    let commands: [Vec<&str>; 4] = [
        vec!["check", "--matrix", matrix, "--pcap", pcap.to_str().unwrap()],
        vec!["run", "--matrix", matrix, "--socket", "/nonexistent/monitor.sock"],
        vec!["matrix", "show", matrix],
        vec!["matrix", "lint", matrix],
    ];
    for args in commands {
        let out = monitor().args(&args).args(twice).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--set db is given twice: give each variable once"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing printed before the error");
        // Once is fine, and a value is trimmed the same way everywhere.
        if args[0] != "run" {
            let out = monitor().args(&args).args(["--set", "db = mssql "]).output().unwrap();
            assert_ne!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// `monitor top` without `--matrix` attaches to an agent: an option only
/// an agent has is refused, not ignored, and the learn sources exclude
/// each other.
#[test]
fn options_that_need_an_agent_or_a_capture_say_so() {
    for args in
        [&["top", "--iface", "eth0"][..], &["top", "--alerts-out", "a.jsonl"], &["top", "--format", "text"]]
    {
        let out = monitor().args(args).output().expect("run monitor");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("--matrix <FILE>"), "{args:?} names what it needs: {err}");
    }
    let m = example("matrix.yaml");
    let m = m.to_str().unwrap();
    let out = monitor().args(["learn", "--matrix", m, "--pcap", "a.pcap", "--socket", "s"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be used with"), "{err}");
    let out = monitor().args(["learn", "--matrix", m]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--pcap <FILE>"), "{err}");
}
