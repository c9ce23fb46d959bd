//! Real Prometheus and Alertmanager (Debian's `prometheus` and
//! `prometheus-alertmanager`, `cargo xtask setup` installs them) run inside
//! a test namespace: each with its own data directory and log file under
//! the test's temporary directory, on an address of that namespace, polled
//! until `/-/ready` answers, and killed and reaped when dropped (and, as
//! everything in the namespace, killed when the namespace goes). Their HTTP
//! APIs are read with curl from inside the same namespace.

use std::{
    collections::BTreeMap,
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use serde::Deserialize;
use serde_json::Value;

use crate::{cmd, netns::NetNs};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// How long a daemon may take to answer `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A server process started in a namespace; killed and reaped on drop.
struct Daemon<'a> {
    what: &'static str,
    ns: &'a NetNs,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    command: String,
}

impl<'a> Daemon<'a> {
    fn spawn(
        what: &'static str,
        ns: &'a NetNs,
        program: &str,
        args: &[String],
        addr: SocketAddr,
        log: PathBuf,
    ) -> Self {
        assert!(
            Path::new(program).is_file(),
            "{program} is missing: install Debian's {what} (`cargo xtask setup` does)"
        );
        let mut command = ns.command(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display())));
        let line = cmd::command_line(&command);
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot run `{line}`: {e}"));
        let mut d = Daemon { what, ns, child, addr, log, command: line };
        d.wait_ready();
        d
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("({}: {e})", self.log.display()))
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("`{}` exited ({status}) before it was ready; its log:\n{}", self.command, self.log());
            }
            if self.get_raw("/-/ready", &[]).is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} at {} not ready within {READY_TIMEOUT:?}; `{}` logged:\n{}",
                self.what,
                self.addr,
                self.command,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// GET `path` (with `params` URL-encoded into the query string), from
    /// inside the namespace; the body, or `None` when the request failed.
    fn get_raw(&self, path: &str, params: &[(&str, &str)]) -> Option<String> {
        let mut c = self.ns.command("curl");
        c.args(["-sS", "--fail", "--max-time", "5", "-G"]);
        for (k, v) in params {
            c.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        c.arg(self.url(path));
        let out = cmd::output(&mut c);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// GET `path` as JSON; panics (naming the request and the daemon's log) on failure.
    fn get_json(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let body = self.get_raw(path, params).unwrap_or_else(|| {
            panic!("GET {}{path} {params:?} failed; {} logged:\n{}", self.url(""), self.what, self.log())
        });
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a test's Prometheus does: scrape `job` through a `file_sd` file,
/// evaluate rule files and send alerts to an Alertmanager, all every second.
#[derive(Clone, Debug)]
pub struct PrometheusConfig {
    pub job: String,
    pub file_sd: PathBuf,
    pub rule_files: Vec<PathBuf>,
    pub alertmanager: Option<SocketAddr>,
}

impl PrometheusConfig {
    /// prometheus.yml: scrape and evaluation every 1 s, file_sd refreshed
    /// every 1 s (the file is also watched).
    pub fn render(&self) -> String {
        let mut s =
            String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n");
        if !self.rule_files.is_empty() {
            s.push_str("rule_files:\n");
            for f in &self.rule_files {
                s.push_str(&format!("  - {}\n", f.display()));
            }
        }
        if let Some(am) = self.alertmanager {
            s.push_str(&format!(
                "alerting:\n  alertmanagers:\n    - timeout: 2s\n      static_configs:\n        - targets: [\"{am}\"]\n"
            ));
        }
        s.push_str(&format!(
            "scrape_configs:\n  - job_name: {}\n    file_sd_configs:\n      - files: [{}]\n        refresh_interval: 1s\n",
            self.job,
            self.file_sd.display()
        ));
        s
    }
}

/// A running Prometheus.
pub struct Prometheus<'a> {
    d: Daemon<'a>,
}

/// One active target of `/api/v1/targets`.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub labels: BTreeMap<String, String>,
    pub discovered: BTreeMap<String, String>,
    pub health: String,
    pub last_error: String,
}

impl<'a> Prometheus<'a> {
    /// Starts Prometheus in `ns` on `addr` with `config`, its data and log
    /// in `dir`, and waits until it is ready.
    pub fn start(ns: &'a NetNs, dir: &Path, addr: SocketAddr, config: &PrometheusConfig) -> Prometheus<'a> {
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config.render()).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        let data = dir.join("prometheus-data");
        let args = vec![
            format!("--config.file={}", file.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address={addr}"),
            // The first notification of an alert goes out at once; resends every second.
            "--rules.alert.resend-delay=1s".to_string(),
            "--log.level=info".to_string(),
        ];
        Prometheus { d: Daemon::spawn("prometheus", ns, PROMETHEUS, &args, addr, dir.join("prometheus.log")) }
    }

    /// `http://ADDR` (reachable from inside its namespace).
    pub fn url(&self) -> String {
        self.d.url("")
    }

    pub fn log(&self) -> String {
        self.d.log()
    }

    /// `/api/v1/targets?state=active`.
    pub fn targets(&self) -> Vec<Target> {
        let v = self.d.get_json("/api/v1/targets", &[("state", "active")]);
        let labels = |v: &Value| -> BTreeMap<String, String> {
            v.as_object()
                .map(|o| {
                    o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect()
                })
                .unwrap_or_default()
        };
        v["data"]["activeTargets"]
            .as_array()
            .unwrap_or_else(|| panic!("/api/v1/targets has no data.activeTargets: {v}"))
            .iter()
            .map(|t| Target {
                labels: labels(&t["labels"]),
                discovered: labels(&t["discoveredLabels"]),
                health: t["health"].as_str().unwrap_or_default().to_owned(),
                last_error: t["lastError"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// An instant query's `data.result` (`/api/v1/query`).
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let v = self.d.get_json("/api/v1/query", &[("query", promql)]);
        assert_eq!(v["status"], "success", "query {promql}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// `/api/v1/rules`: every rule group as loaded, with its rules' health.
    pub fn rules(&self) -> Value {
        self.d.get_json("/api/v1/rules", &[])
    }
}

/// A running Alertmanager: one receiver without integrations (alerts are
/// only held, for `/api/v2/alerts`), grouped by every label, sent at once.
pub struct Alertmanager<'a> {
    d: Daemon<'a>,
}

/// One alert of `/api/v2/alerts`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub status: AlertStatus,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct AlertStatus {
    pub state: String,
}

impl Alert {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

impl<'a> Alertmanager<'a> {
    /// Starts Alertmanager in `ns` on `addr` (clustering off), its data and
    /// log in `dir`, and waits until it is ready.
    pub fn start(ns: &'a NetNs, dir: &Path, addr: SocketAddr) -> Alertmanager<'a> {
        let file = dir.join("alertmanager.yml");
        let config =
            "route:\n  receiver: hold\n  group_by: ['...']\n  group_wait: 1s\n  group_interval: 1s\n  \
                      repeat_interval: 1h\nreceivers:\n  - name: hold\n";
        std::fs::write(&file, config).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        let data = dir.join("alertmanager-data");
        let args = vec![
            format!("--config.file={}", file.display()),
            format!("--storage.path={}", data.display()),
            format!("--web.listen-address={addr}"),
            // No gossip port: one instance, nothing to cluster with.
            "--cluster.listen-address=".to_string(),
            "--log.level=info".to_string(),
        ];
        Alertmanager {
            d: Daemon::spawn("alertmanager", ns, ALERTMANAGER, &args, addr, dir.join("alertmanager.log")),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.d.addr
    }

    pub fn log(&self) -> String {
        self.d.log()
    }

    /// `/api/v2/alerts`: every alert Alertmanager holds (active, silenced or inhibited).
    pub fn alerts(&self) -> Vec<Alert> {
        let v = self.d.get_json("/api/v2/alerts", &[]);
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("/api/v2/alerts: {e}: {v}"))
    }
}
