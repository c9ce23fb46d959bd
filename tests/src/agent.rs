//! `monitor run`, the live monitor, run inside a test namespace as users run
//! it: its alert lines (stdout, or the `--alerts-out` file) are read as they
//! come and stamped with the time they were read, so tests can measure the
//! delay from a packet to its alert; its coverage report is asked for over
//! the control socket with `monitor report`; its metrics are scraped with
//! curl from inside the namespace.

use std::{
    fs::File,
    io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom},
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::Deserialize;
use serde_json::Value;

use crate::{
    attach::Attachments,
    cmd,
    monitor::{require_monitor_bin, MonitorOutput},
    netns::NetNs,
};

/// Lines read from the agent, each with the instant it was read.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<(Instant, String)>>,
    grew: Condvar,
}

impl Lines {
    fn push(&self, line: String) {
        self.lines.lock().expect("agent lines").push((Instant::now(), line));
        self.grew.notify_all();
    }
}

/// A running `monitor run`.
pub struct Agent {
    child: Child,
    pub command: String,
    pub socket: PathBuf,
    out: Arc<Lines>,
    err: Arc<Lines>,
    readers: Vec<JoinHandle<()>>,
    tail_stop: Arc<AtomicBool>,
}

/// One side of an alert (docs/alerts.md, "Alert fields").
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Side {
    pub ip: IpAddr,
    pub port: u16,
    pub host: Option<String>,
    pub service: Option<String>,
    pub zone: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Icmp {
    #[serde(rename = "type")]
    pub icmp_type: u8,
    pub code: u8,
    pub name: String,
    /// Absent when the sender is not known.
    #[serde(default)]
    pub sender: Option<IpAddr>,
}

/// One alert line, as documented in docs/alerts.md.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct AlertLine {
    pub kind: String,
    pub proto: String,
    pub src: Side,
    pub dst: Side,
    pub rule: Option<String>,
    pub closest: Vec<String>,
    pub reason: String,
    pub state: String,
    pub icmp: Option<Icmp>,
    pub initiator_seen: bool,
    pub packets: u64,
    pub bytes: u64,
    pub count: u64,
}

/// One rule of the coverage report.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct RuleUse {
    pub id: String,
    pub proto: String,
    pub ports: String,
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub blocked: u64,
    pub last_seen: Option<String>,
}

/// `{"type":"coverage",...}`: `monitor report --format json`, and the last
/// line the agent prints when it exits.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Coverage {
    #[serde(rename = "type")]
    pub record: String,
    pub rules: Vec<RuleUse>,
    pub unused: Vec<String>,
}

impl Coverage {
    pub fn rule(&self, id: &str) -> &RuleUse {
        self.rules.iter().find(|r| r.id == id).unwrap_or_else(|| {
            panic!(
                "no rule {id} in the coverage report: {:?}",
                self.rules.iter().map(|r| &r.id).collect::<Vec<_>>()
            )
        })
    }
}

/// What a finished agent printed: [`MonitorOutput`], read as alerts and
/// the coverage report.
impl MonitorOutput {
    pub fn alerts(&self) -> Vec<AlertLine> {
        self.lines.iter().filter_map(|l| parse_alert(&self.command, l)).collect()
    }

    /// The coverage report printed at exit: must be the last line.
    pub fn final_coverage(&self) -> Coverage {
        let last = self.lines.last().unwrap_or_else(|| panic!("`{}` printed nothing", self.command));
        let v: Value = serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("`{}`: last line is not JSON ({e}): {last}", self.command));
        assert_eq!(
            v["type"], "coverage",
            "`{}`: the last line is not the coverage report: {last}",
            self.command
        );
        serde_json::from_value(v)
            .unwrap_or_else(|e| panic!("`{}`: bad coverage line ({e}): {last}", self.command))
    }
}

fn parse_alert(command: &str, line: &str) -> Option<AlertLine> {
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("`{command}`: output line is not JSON ({e}): {line}"));
    if v["type"] != "alert" {
        return None;
    }
    assert_eq!(v["schema"], 1, "`{command}`: alert of an unknown schema: {line}");
    Some(serde_json::from_value(v).unwrap_or_else(|e| panic!("`{command}`: bad alert line ({e}): {line}")))
}

impl Agent {
    /// Starts `monitor run` in `ns` on `iface` against the bundled RP-PAM
    /// example with the `ha` profile (matrix.yaml, inventory.ini), JSON
    /// alerts and its control socket at `socket`, plus `extra`.
    pub fn rp_pam_ha(ns: &NetNs, iface: &str, socket: &Path, extra: &[&str]) -> Agent {
        Agent::rp_pam_ha_as(ns, iface, socket, "json", extra)
    }

    /// [`Agent::rp_pam_ha`] with alerts in `format` (`text` for people).
    pub fn rp_pam_ha_as(ns: &NetNs, iface: &str, socket: &Path, format: &str, extra: &[&str]) -> Agent {
        let (matrix, inventory) = (rp_pam("matrix.yaml"), rp_pam("inventory.ini"));
        let socket = socket.display().to_string();
        let mut args = vec![
            "--matrix",
            &matrix,
            "--inventory",
            &inventory,
            "--profile",
            "ha",
            "--iface",
            iface,
            "--socket",
            &socket,
            "--format",
            format,
        ];
        args.extend_from_slice(extra);
        Agent::start(ns, iface, &args)
    }

    /// Starts `monitor run <args>` in `ns` and waits until its programs are
    /// attached to `iface` and its control socket answers. `args` must hold
    /// `--iface`, `--socket` and whatever else the test wants; when they
    /// hold `--alerts-out FILE`, that file is followed instead of stdout.
    pub fn start(ns: &NetNs, iface: &str, args: &[&str]) -> Agent {
        let bin = require_monitor_bin();
        let socket = PathBuf::from(flag(args, "--socket").expect("Agent::start needs --socket PATH"));
        let alerts_out = flag(args, "--alerts-out").map(PathBuf::from);
        let mut command = ns.command(bin.to_str().expect("UTF-8 path"));
        command.arg("run").args(args).env("RUST_LOG", "info").stdout(Stdio::piped()).stderr(Stdio::piped());
        let line = cmd::command_line(&command);
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run `{line}`: {e}"));
        let out = Arc::new(Lines::default());
        let err = Arc::new(Lines::default());
        let tail_stop = Arc::new(AtomicBool::new(false));
        let mut readers = vec![
            read_lines(child.stdout.take().expect("stdout is piped"), Arc::clone(&out)),
            read_lines(child.stderr.take().expect("stderr is piped"), Arc::clone(&err)),
        ];
        if let Some(path) = alerts_out {
            readers.push(tail(path, Arc::clone(&out), Arc::clone(&tail_stop)));
        }
        let mut agent = Agent { child, command: line, socket, out, err, readers, tail_stop };
        agent.wait_ready(ns, iface);
        agent
    }

    fn wait_ready(&mut self, ns: &NetNs, iface: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stable = 0;
        let mut last = None;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait agent") {
                panic!("`{}` exited ({status}) before it was ready:\n{}", self.command, self.stderr());
            }
            let now = Attachments::of(ns, iface);
            stable = if now.any() && last.as_ref() == Some(&now) { stable + 1 } else { 0 };
            last = Some(now);
            if stable >= 2 && self.socket.exists() && self.stderr().contains("watching") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "`{}` not ready within 30 s:\n{}",
                self.command,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The agent's peak resident size so far (VmHWM), in KiB.
    pub fn peak_kib(&self) -> u64 {
        let pid = self.pid();
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
        s.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{s}"))
    }

    /// Output lines (stdout or the alerts file) read so far.
    pub fn lines(&self) -> Vec<String> {
        self.out.lines.lock().expect("agent lines").iter().map(|(_, l)| l.clone()).collect()
    }

    /// Alerts read so far.
    pub fn alerts(&self) -> Vec<AlertLine> {
        self.lines().iter().filter_map(|l| parse_alert(&self.command, l)).collect()
    }

    pub fn stderr(&self) -> String {
        self.err.lines.lock().expect("agent stderr").iter().map(|(_, l)| format!("{l}\n")).collect()
    }

    /// Waits up to `timeout` for an alert, among those read after the first
    /// `skip`, that satisfies `pred`; returns it with the instant its line
    /// was read.
    pub fn wait_alert(
        &self,
        skip: usize,
        timeout: Duration,
        pred: impl Fn(&AlertLine) -> bool,
    ) -> Option<(Instant, AlertLine)> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.out.lines.lock().expect("agent lines");
        let mut seen = 0;
        let mut alerts = 0;
        loop {
            for (at, line) in &guard[seen..] {
                if let Some(a) = parse_alert(&self.command, line) {
                    alerts += 1;
                    if alerts > skip && pred(&a) {
                        return Some((*at, a));
                    }
                }
            }
            seen = guard.len();
            let left = deadline.checked_duration_since(Instant::now())?;
            guard = self.out.grew.wait_timeout(guard, left).expect("agent lines").0;
        }
    }

    /// Waits up to `timeout` for `text` on stderr.
    pub fn wait_stderr(&self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.err.lines.lock().expect("agent stderr");
        loop {
            if guard.iter().any(|(_, l)| l.contains(text)) {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
            guard = self.err.grew.wait_timeout(guard, left).expect("agent stderr").0;
        }
    }

    /// `monitor report --socket <socket> --format json`, run in `ns`.
    pub fn report(&self, ns: &NetNs) -> Coverage {
        let bin = require_monitor_bin();
        let out = ns.exec(&[
            bin.to_str().expect("UTF-8 path"),
            "report",
            "--socket",
            self.socket.to_str().expect("UTF-8 path"),
            "--format",
            "json",
        ]);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| {
            panic!("`monitor report` printed something that is not a coverage report ({e}): {out}")
        })
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0, "kill {}", self.child.id());
    }

    /// SIGTERM, then waits up to 15 s for the exit.
    pub fn stop(mut self) -> MonitorOutput {
        self.signal(libc::SIGTERM);
        let status = match crate::wait_timeout(&mut self.child, Duration::from_secs(15)) {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "`{}` did not exit within 15 s of SIGTERM; killed. stderr:\n{}",
                    self.command,
                    self.stderr()
                );
            }
        };
        self.tail_stop.store(true, Ordering::Relaxed);
        for r in self.readers.drain(..) {
            r.join().expect("agent output reader");
        }
        MonitorOutput { command: self.command.clone(), status, lines: self.lines(), stderr: self.stderr() }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.tail_stop.store(true, Ordering::Relaxed);
    }
}

fn flag<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1])
}

fn read_lines(from: impl std::io::Read + Send + 'static, to: Arc<Lines>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for l in BufReader::new(from).lines().map_while(Result::ok) {
            to.push(l);
        }
    })
}

/// Follows `path` (polling every 2 ms) until told to stop, then reads what is left.
fn tail(path: PathBuf, to: Arc<Lines>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut pos = 0u64;
        let mut partial = String::new();
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if let Ok(mut f) = File::open(&path) {
                let mut chunk = String::new();
                if f.seek(SeekFrom::Start(pos)).is_ok() && f.read_to_string(&mut chunk).is_ok() {
                    pos += chunk.len() as u64;
                    partial.push_str(&chunk);
                    while let Some(i) = partial.find('\n') {
                        let line: String = partial.drain(..=i).collect();
                        to.push(line.trim_end().to_owned());
                    }
                }
            }
            if stopping {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

/// `curl http://<addr>/metrics` from inside `ns`.
pub fn scrape(ns: &NetNs, addr: &str) -> String {
    ns.exec(&["curl", "-sS", "--fail", "--max-time", "5", &format!("http://{addr}/metrics")])
}

/// The value of the sample `series` (name and labels exactly as exposed,
/// e.g. `monitor_alerts_total{kind="unexpected"}`) in a scrape.
pub fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_else(|| panic!("no sample {series} in the scrape:\n{scrape}"))
        .parse()
        .unwrap_or_else(|e| panic!("sample {series}: {e}"))
}

/// Path of a file in the example RP-PAM directory.
pub fn rp_pam(file: &str) -> String {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).join("examples/rp-pam").join(file).display().to_string()
}
