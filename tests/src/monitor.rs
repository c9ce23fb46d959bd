//! The monitor binary, run inside a test namespace the way a user runs it,
//! and its `flows --format json` output.
//!
//! The binary is `$MONITOR_BIN`, else `<workspace>/target/release/monitor`
//! (built by `cargo xtask build`). Tests never build it themselves.
//!
//! Which lines are the final table: the monitor prints the whole table every
//! interval and once more on exit, so [`MonitorOutput::flows`] keeps the
//! *last* occurrence of each (proto, client, server). A flow printed earlier
//! but gone from later tables is therefore still reported with its last
//! counts; the tests' flows all live until the end.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _},
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::{Child, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::Deserialize;

use crate::{attach::Attachments, cmd, netns::NetNs};

/// Path of the monitor binary under test.
pub fn monitor_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MONITOR_BIN") {
        return PathBuf::from(p);
    }
    crate::target_dir().join("release/monitor")
}

/// Runs `monitor check ARGS` (on a pcap, outside any namespace) and returns
/// its standard output; the exit status must be 0 or 1 (findings), not 2.
pub fn check(args: &[&str]) -> String {
    let out = std::process::Command::new(monitor_bin())
        .arg("check")
        .args(args)
        .output()
        .expect("run monitor check");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "monitor check {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `monitor ARGS` (outside any namespace), which must succeed, and
/// returns its standard output.
pub fn run(args: &[&str]) -> String {
    let out = std::process::Command::new(require_monitor_bin()).args(args).output().expect("run monitor");
    assert!(
        out.status.success(),
        "`monitor {}` failed ({}):\n{}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Panics with what to do when the binary is not there.
pub fn require_monitor_bin() -> PathBuf {
    let bin = monitor_bin();
    assert!(
        bin.is_file(),
        "monitor binary {} not found: run `cargo xtask build` first (or set MONITOR_BIN)",
        bin.display()
    );
    bin
}

/// A running `monitor` process.
pub struct Monitor {
    child: Child,
    line: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stdout_reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<String>>,
}

impl Monitor {
    /// Starts `monitor <args>` inside `ns` with `ip netns exec` (which
    /// execs, so the child pid is the monitor's).
    pub fn start(ns: &NetNs, args: &[&str]) -> Monitor {
        let bin = require_monitor_bin();
        let mut command = ns.command(bin.to_str().expect("UTF-8 path"));
        command.args(args).env("RUST_LOG", "info").stdout(Stdio::piped()).stderr(Stdio::piped());
        let line = cmd::command_line(&command);
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run `{line}`: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout is piped");
        let sink = Arc::clone(&stdout);
        let stdout_reader = std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().expect("stdout lines").push(l);
            }
        });
        let mut err = child.stderr.take().expect("stderr is piped");
        let stderr_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Monitor {
            child,
            line,
            stdout,
            stdout_reader: Some(stdout_reader),
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Starts `monitor flows --iface <iface> --format json --interval 1 <extra>`
    /// in `ns`, waits until its programs are attached to `iface` and
    /// returns what is attached.
    pub fn flows(ns: &NetNs, iface: &str, extra: &[&str]) -> (Monitor, Attachments) {
        let mut args = vec!["flows", "--iface", iface, "--format", "json", "--interval", "1"];
        args.extend_from_slice(extra);
        let mut m = Monitor::start(ns, &args);
        let attached = m.wait_attached(ns, iface);
        (m, attached)
    }

    /// Waits until something of ours is attached to `iface` and the set of
    /// attachments has stopped changing (ingress and egress may come one
    /// after the other). Panics with the monitor's stderr if it exits first.
    pub fn wait_attached(&mut self, ns: &NetNs, iface: &str) -> Attachments {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last: Option<Attachments> = None;
        let mut stable = 0;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait monitor") {
                let err = self.stderr_reader.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
                panic!("`{}` exited ({status}) before attaching to {iface}:\n{err}", self.line);
            }
            let now = Attachments::of(ns, iface);
            if now.any() && last.as_ref() == Some(&now) {
                stable += 1;
                if stable >= 3 {
                    return now;
                }
            } else {
                stable = 0;
            }
            last = Some(now);
            assert!(Instant::now() < deadline, "`{}`: nothing attached to {iface} within 30 s", self.line);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stdout lines printed so far.
    pub fn lines_so_far(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout lines").clone()
    }

    /// Sends SIGTERM, waits (up to 15 s) for the exit and returns everything
    /// it printed.
    pub fn stop(self) -> MonitorOutput {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `signal` (SIGTERM, SIGINT), waits up to 15 s for the exit and
    /// returns everything it printed.
    pub fn stop_with(mut self, signal: i32) -> MonitorOutput {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        self.wait(Duration::from_secs(15))
    }

    /// Waits for the monitor to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> MonitorOutput {
        let status = match crate::wait_timeout(&mut self.child, timeout) {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.stderr_reader.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
                panic!("`{}` did not exit within {timeout:?}; killed. stderr:\n{err}", self.line);
            }
        };
        if let Some(h) = self.stdout_reader.take() {
            h.join().expect("stdout reader");
        }
        let stderr = self.stderr_reader.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        let lines = std::mem::take(&mut *self.stdout.lock().expect("stdout lines"));
        MonitorOutput { command: self.line.clone(), status, lines, stderr }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Everything a finished monitor printed.
#[derive(Debug)]
pub struct MonitorOutput {
    pub command: String,
    pub status: ExitStatus,
    pub lines: Vec<String>,
    pub stderr: String,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}

impl Endpoint {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct DirFlags {
    pub to_server: Vec<String>,
    pub to_client: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct IcmpInfo {
    #[serde(rename = "type")]
    pub icmp_type: u8,
    pub code: u8,
    pub name: String,
    pub about_client: bool,
    /// The error's source address; absent in the output when not known.
    #[serde(default)]
    pub sender: Option<IpAddr>,
}

/// One flow line of `monitor flows --format json` (docs/flows.md).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct FlowRecord {
    pub proto: String,
    pub client: Endpoint,
    pub server: Endpoint,
    pub to_server: Counters,
    pub to_client: Counters,
    pub tcp_flags: DirFlags,
    pub initiator_seen: bool,
    pub initiator_how: String,
    pub state: String,
    pub icmp_error: Option<IcmpInfo>,
    pub first_seen: String,
    pub last_seen: String,
    pub ifindex: u32,
}

impl FlowRecord {
    /// Whether this is the flow between `a` and `b` (either way round).
    pub fn joins(&self, proto: &str, a: SocketAddr, b: SocketAddr) -> bool {
        self.proto == proto
            && ((self.client.addr() == a && self.server.addr() == b)
                || (self.client.addr() == b && self.server.addr() == a))
    }
}

impl MonitorOutput {
    /// Panics with the command, status and stderr unless it exited 0.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "`{}` exited with {}; stderr:\n{}",
            self.command,
            self.status,
            self.stderr
        );
        self
    }

    /// Every stdout line as JSON; panics on a line that is not.
    fn json_lines(&self) -> Vec<serde_json::Value> {
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("`{}`: stdout line {} is not JSON ({e}): {l}", self.command, i + 1)
                })
            })
            .collect()
    }

    /// The final table: the last occurrence of each (proto, client, server).
    pub fn flows(&self) -> Vec<FlowRecord> {
        let mut last: BTreeMap<(String, Endpoint, Endpoint), FlowRecord> = BTreeMap::new();
        for (i, v) in self.json_lines().into_iter().enumerate() {
            if v.get("type").is_some() {
                continue;
            }
            let f: FlowRecord = serde_json::from_value(v.clone()).unwrap_or_else(|e| {
                panic!("`{}`: JSON line {} is not a flow ({e}): {v}", self.command, i + 1)
            });
            last.insert((f.proto.clone(), f.client, f.server), f);
        }
        last.into_values().collect()
    }

    /// The `{"type":"stats"}` line printed on exit. Panics when it is
    /// missing or not the last line.
    pub fn stats_line(&self) -> serde_json::Map<String, serde_json::Value> {
        let lines = self.json_lines();
        let pos = lines
            .iter()
            .rposition(|v| v.get("type").and_then(|t| t.as_str()) == Some("stats"))
            .unwrap_or_else(|| panic!("`{}`: no {{\"type\":\"stats\"}} line on stdout", self.command));
        assert_eq!(pos + 1, lines.len(), "`{}`: the stats line is not the last line", self.command);
        lines[pos].as_object().expect("stats line is an object").clone()
    }

    /// A counter of the stats line; panics naming the line when absent.
    pub fn stat(&self, name: &str) -> u64 {
        let stats = self.stats_line();
        stats
            .get(name)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or_else(|| panic!("`{}`: stats line has no counter {name:?}: {stats:?}", self.command))
    }

    /// The one flow between `a` and `b`; panics listing the table otherwise.
    pub fn flow(&self, proto: &str, a: SocketAddr, b: SocketAddr) -> FlowRecord {
        let flows = self.flows();
        let found: Vec<_> = flows.iter().filter(|f| f.joins(proto, a, b)).collect();
        match found.as_slice() {
            [one] => (*one).clone(),
            [] => panic!(
                "no {proto} flow between {a} and {b} in the final table of `{}`; table:\n{}",
                self.command,
                table(&flows)
            ),
            many => panic!("{} {proto} flows between {a} and {b}: {many:#?}", many.len()),
        }
    }
}

/// The flows one per line, for failure messages.
pub fn table(flows: &[FlowRecord]) -> String {
    flows
        .iter()
        .map(|f| {
            format!(
                "  {} {} -> {} state={} to_server={:?} to_client={:?} flags={:?} how={}",
                f.proto,
                f.client.addr(),
                f.server.addr(),
                f.state,
                f.to_server,
                f.to_client,
                f.tcp_flags,
                f.initiator_how
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;

    use super::*;

    fn flow_line(port: u16, packets: u64) -> String {
        format!(
            r#"{{"proto":"tcp","client":{{"ip":"10.200.0.1","port":{port}}},"server":{{"ip":"10.200.0.2","port":80}},"to_server":{{"packets":{packets},"bytes":{}}},"to_client":{{"packets":0,"bytes":0}},"tcp_flags":{{"to_server":["syn"],"to_client":[]}},"initiator_seen":true,"initiator_how":"tcp-syn","state":"awaiting","icmp_error":null,"first_seen":"2026-01-01T00:00:00Z","last_seen":"2026-01-01T00:00:00Z","ifindex":2}}"#,
            packets * 60
        )
    }

    fn output(lines: Vec<String>) -> MonitorOutput {
        MonitorOutput {
            command: "monitor flows".into(),
            status: ExitStatus::from_raw(0),
            lines,
            stderr: String::new(),
        }
    }

    #[test]
    fn final_table_keeps_the_last_print_of_each_flow() {
        let out = output(vec![
            flow_line(40000, 1),
            flow_line(40001, 1),
            flow_line(40000, 3),
            flow_line(40001, 2),
            r#"{"type":"stats","packets":9,"tracked":5}"#.into(),
        ]);
        let flows = out.flows();
        assert_eq!(flows.len(), 2);
        let a: SocketAddr = "10.200.0.1:40000".parse().unwrap();
        let b: SocketAddr = "10.200.0.2:80".parse().unwrap();
        assert_eq!(out.flow("tcp", b, a).to_server, Counters { packets: 3, bytes: 180 });
        assert_eq!((out.stat("packets"), out.stat("tracked")), (9, 5));
    }

    #[test]
    #[should_panic(expected = "the stats line is not the last line")]
    fn stats_must_come_last() {
        output(vec![r#"{"type":"stats","packets":1}"#.into(), flow_line(40000, 1)]).stats_line();
    }

    #[test]
    #[should_panic(expected = "is not JSON")]
    fn non_json_output_is_rejected() {
        output(vec!["PROTO CLIENT SERVER".into()]).flows();
    }
}
