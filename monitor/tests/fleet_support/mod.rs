//! What the fleet tests share (`mod fleet_support;` in each): the monitor
//! binary, a small HTTP server answering every request with one fixed
//! response (a stand-in agent's metrics page, or a fake Prometheus's
//! error), and a real `prometheus` (Debian's, installed by `cargo xtask
//! setup`) on loopback with its own data directory.

// Each test crate uses a part of it.
#![allow(dead_code)]

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener},
    path::Path,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use assert_cmd::cargo::CommandCargoExt as _;
use serde_json::Value;

pub fn monitor() -> Command {
    Command::cargo_bin("monitor").expect("the monitor binary")
}

/// Runs `monitor ARGS`; returns (success, stdout, stderr).
pub fn run(args: &[&str]) -> (bool, String, String) {
    let out = monitor().args(args).output().expect("run monitor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The fixed response of a [`StaticHttp`].
#[derive(Clone, Debug)]
pub struct Response {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    /// A metrics page in the Prometheus text format 0.0.4.
    pub fn metrics(body: impl Into<String>) -> Response {
        Response { status: "200 OK", content_type: "text/plain; version=0.0.4", body: body.into() }
    }
}

/// Answers every request on its listener with one response (which the test
/// may change); the requests' heads (request line and headers) are kept for
/// the test to look at.
/// Stopped and joined on drop.
pub struct StaticHttp {
    stop: Arc<AtomicBool>,
    response: Arc<Mutex<Response>>,
    requests: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl StaticHttp {
    pub fn start(listener: TcpListener, response: Response) -> StaticHttp {
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let response = Arc::new(Mutex::new(response));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, resp, reqs) = (Arc::clone(&stop), Arc::clone(&response), Arc::clone(&requests));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).expect("blocking");
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                        let mut r = BufReader::new(conn.try_clone().expect("clone"));
                        let mut first = String::new();
                        let _ = r.read_line(&mut first);
                        let mut head = first.trim_end().to_string();
                        let mut line = String::new();
                        let mut length = 0usize;
                        while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                            head.push('\n');
                            head.push_str(line.trim_end());
                            line.clear();
                        }
                        reqs.lock().expect("lock").push(head);
                        let mut body = vec![0; length];
                        let _ = r.read_exact(&mut body);
                        let Response { status, content_type, body } = resp.lock().expect("lock").clone();
                        let _ = write!(
                            conn,
                            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        StaticHttp { stop, response, requests, thread: Some(thread), addr }
    }

    pub fn set(&self, response: Response) {
        *self.response.lock().expect("lock") = response;
    }

    /// The heads of the requests received so far (`GET /path HTTP/1.1`, then
    /// one line per header, as sent).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

impl Drop for StaticHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A real Prometheus on loopback, killed and reaped on drop.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Prometheus {
    pub fn start(dir: &Path, config: &Path) -> Prometheus {
        let addr = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr");
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("prometheus: {e} (apt-get install prometheus, or cargo xtask setup)"));
        Prometheus { child, addr, log }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "5", &format!("http://{}{path}", self.addr)])
            .output()
            .expect("curl");
        out.status.success().then(|| serde_json::from_slice(&out.stdout).expect("Prometheus answers JSON"))
    }

    /// An instant query's result series, none while Prometheus is not up.
    pub fn query(&self, query: &str) -> Vec<Value> {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "5", "-G", "--data-urlencode"])
            .arg(format!("query={query}"))
            .arg(format!("http://{}/api/v1/query", self.addr))
            .output()
            .expect("curl");
        if !out.status.success() {
            return Vec::new();
        }
        let v: Value = serde_json::from_slice(&out.stdout).expect("Prometheus answers JSON");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits up to 30 s for `query`'s first value to be at least `min`.
    pub fn wait_value(&self, query: &str, min: f64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = Vec::new();
        while Instant::now() < deadline {
            last = self.query(query);
            let v = last.first().and_then(|s| s["value"][1].as_str()).and_then(|v| v.parse::<f64>().ok());
            if v.is_some_and(|v| v >= min) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("`{query}` is {last:?}, not {min} or more\nprometheus.log:\n{}", self.log());
    }

    /// The active targets as (node, groups, health), sorted.
    pub fn targets(&self) -> Vec<(String, String, String)> {
        let Some(v) = self.get("/api/v1/targets?state=active") else { return Vec::new() };
        let mut t: Vec<(String, String, String)> = v["data"]["activeTargets"]
            .as_array()
            .expect("activeTargets")
            .iter()
            .map(|t| {
                let s = |k: &str| t["labels"][k].as_str().unwrap_or_default().to_owned();
                (s("node"), s("groups"), t["health"].as_str().unwrap_or_default().to_owned())
            })
            .collect();
        t.sort();
        t
    }

    /// Waits up to 30 s for the targets to be `want`.
    pub fn wait_targets(&self, want: &[(&str, &str, &str)]) {
        let want: Vec<(String, String, String)> =
            want.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = Vec::new();
        while Instant::now() < deadline {
            last = self.targets();
            if last == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("Prometheus's targets are {last:?}, not {want:?}\nprometheus.log:\n{}", self.log());
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
