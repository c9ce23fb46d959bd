//! The metrics endpoint, checked by the real Prometheus tools: every family
//! is exercised, `promtool check metrics` lints the exposition, and a real
//! Prometheus server (on 127.0.0.1) scrapes it and answers queries with our
//! values. Prometheus is Debian's `prometheus` package (`cargo xtask setup`
//! installs it).

use std::{
    collections::BTreeMap,
    io::Write,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use monitor::{
    alert::Kind,
    dns::{CacheOptions, Passive},
    engine::{Engine, VerdictKind},
    kernel::{stream::UserStats, KernelStats},
    live::{
        coverage::{Coverage, RuleUse},
        dedup::DedupStats,
        metrics::{Metrics, Snapshot, OPENMETRICS_TYPE, TEXT_TYPE},
        tally::{FindingKey, Origin, PathCounts, PathKey, Side, Tally},
        webhook::WebhookStats,
    },
    matrix::{Matrix, Selection},
};
use monitor_common::Stat;
use tokio::{net::TcpListener, sync::watch};

/// Attempts on two paths, one rejected by a router, and findings of each kind.
fn tally() -> Tally {
    let mut t = Tally::new("rppam1", 10);
    let path = |rule: &str, client: &str, server: &str, side| PathKey {
        rule: rule.into(),
        client: client.into(),
        server: server.into(),
        side,
    };
    let answered = PathCounts { attempts: [5, 0, 0, 0], icmp: BTreeMap::new() };
    let rejected = PathCounts {
        attempts: [0, 1, 2, 3],
        icmp: BTreeMap::from([(("router1".into(), Origin::Network), 2)]),
    };
    t.paths.insert(path("db-postgres", "rppam1", "db1", Side::Client), answered);
    t.paths.insert(path("heartbeat", "rppam2", "rppam1", Side::Server), rejected);
    t.findings.insert(FindingKey::Rule(Kind::Blocked, "heartbeat".into()), 6);
    t.findings.insert(FindingKey::Groups("user_workstations".into(), "database".into()), 4);
    t.paths_overflow = 7;
    t
}

/// Metrics with every family set to known values.
fn exercised() -> Metrics {
    let m = Metrics::for_node("rppam1");
    for (v, n) in [(VerdictKind::Conforming, 7), (VerdictKind::Unexpected, 3), (VerdictKind::Exposed, 1)] {
        for _ in 0..n {
            m.flow(v);
        }
    }
    for (k, n) in [(Kind::Unexpected, 3), (Kind::Blocked, 2), (Kind::Exposed, 1)] {
        for _ in 0..n {
            m.alert(k);
        }
    }
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_775_469_600);
    let rule = |packets, bytes, flows, last_seen| RuleUse {
        packets,
        bytes,
        flows,
        blocked: 0,
        last_seen: Some(last_seen),
    };
    let (db, users) = (rule(120, 48_000, 4, t), rule(10, 1_500, 2, t + Duration::from_millis(1500)));
    m.publish(&Snapshot {
        counters: &[],
        rules: vec![("db-postgres", &db), ("web-portal/users", &users)],
        tally: None,
        tracked_flows: 0,
        table_read: None,
        interfaces: None,
    });
    let db = rule(130, 49_000, 5, t + Duration::from_secs(2)); // totals replace
    let mut kernel = KernelStats::default();
    for (i, c) in kernel.counts.iter_mut().enumerate() {
        *c = 100 + i as u64;
    }
    let user = UserStats {
        events: 50,
        events_dropped: 1,
        flows_evicted: 4,
        flows_expired: 9,
        ..UserStats::default()
    };
    let dedup = DedupStats {
        offered: 12,
        emitted: 8,
        repeats: 3,
        folded: [0, 0, 0, 1, 0, 0],
        ..DedupStats::default()
    };
    let mut dns = Passive::new(CacheOptions::default());
    dns.stats.messages = 17;
    for us in [2, 4, 40, 900] {
        m.engine_latency(Duration::from_micros(us));
    }
    for ms in [3, 250, 1200] {
        m.alert_latency(Duration::from_millis(ms));
    }
    let webhook = WebhookStats {
        sent: 40,
        batches_ok: 4,
        batches_failed: 1,
        retries: 3,
        dropped_queue_full: 6,
        dropped_after_retries: 10,
        dropped_at_shutdown: 2,
    };
    m.reload(true);
    m.reload(true);
    m.reload(false);
    // The agent's publish, with every part it hands over.
    let tally = tally();
    let unused = RuleUse::default();
    m.publish(&Snapshot {
        counters: &[&kernel, &user, &dns, &dedup, &webhook, &tally],
        rules: vec![
            ("db-postgres", &db),
            ("web-portal/users", &users),
            ("never", &unused),
            ("heartbeat", &unused),
        ],
        tally: Some(&tally),
        tracked_flows: 42,
        table_read: Some((std::time::Duration::from_millis(250), std::time::Duration::from_secs(2))),
        interfaces: Some(&kernel.interfaces),
    });
    m
}

/// Sample lines by name and labels, from either format.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {l:?}"));
            (k.to_string(), v.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")))
        })
        .collect()
}

#[test]
fn every_family_carries_its_values() {
    let om = exercised().encode();
    assert!(om.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let s = samples(&om);
    let want = [
        (r#"monitor_flows_total{verdict="conforming"}"#, 7.0),
        (r#"monitor_flows_total{verdict="unexpected"}"#, 3.0),
        (r#"monitor_flows_total{verdict="exposed"}"#, 1.0),
        (r#"monitor_alerts_total{kind="unexpected"}"#, 3.0),
        (r#"monitor_alerts_total{kind="blocked"}"#, 2.0),
        (r#"monitor_alerts_total{kind="exposed"}"#, 1.0),
        (r#"monitor_rule_packets_total{rule="db-postgres"}"#, 130.0),
        (r#"monitor_rule_bytes_total{rule="db-postgres"}"#, 49_000.0),
        (r#"monitor_rule_flows_total{rule="db-postgres"}"#, 5.0),
        (r#"monitor_rule_flows_total{rule="web-portal/users"}"#, 2.0),
        (r#"monitor_rule_last_seen_timestamp_seconds{rule="db-postgres"}"#, 1_775_469_602.0),
        (r#"monitor_rule_last_seen_timestamp_seconds{rule="web-portal/users"}"#, 1_775_469_601.5),
        (r#"monitor_flow_reader_total{counter="events"}"#, 50.0),
        (r#"monitor_flow_reader_total{counter="flows_evicted"}"#, 4.0),
        (r#"monitor_flow_reader_total{counter="flows_expired"}"#, 9.0),
        (r#"monitor_dns_total{counter="messages"}"#, 17.0),
        (r#"monitor_dns_total{counter="bindings_added"}"#, 0.0),
        (r#"monitor_dedup_alerts_total{counter="offered"}"#, 12.0),
        (r#"monitor_dedup_alerts_total{counter="repeats"}"#, 3.0),
        (r#"monitor_dedup_folded_total{class="unknown_blocked"}"#, 1.0),
        (r#"monitor_webhook_batches_total{result="failed"}"#, 1.0),
        (r#"monitor_webhook_retries_total"#, 3.0),
        (r#"monitor_engine_latency_seconds_count"#, 4.0),
        (r#"monitor_engine_latency_seconds_bucket{le="0.000001"}"#, 0.0),
        (r#"monitor_engine_latency_seconds_bucket{le="0.000005"}"#, 2.0),
        (r#"monitor_engine_latency_seconds_bucket{le="0.001"}"#, 4.0),
        (r#"monitor_alert_latency_seconds_count"#, 3.0),
        (r#"monitor_alert_latency_seconds_bucket{le="0.25"}"#, 2.0),
        (r#"monitor_alert_latency_seconds_bucket{le="+Inf"}"#, 3.0),
        (r#"monitor_webhook_sent_total"#, 40.0),
        (r#"monitor_webhook_dropped_total{reason="queue_full"}"#, 6.0),
        (r#"monitor_webhook_dropped_total{reason="after_retries"}"#, 10.0),
        (r#"monitor_webhook_dropped_total{reason="shutdown"}"#, 2.0),
        (r#"monitor_reloads_total{result="ok"}"#, 2.0),
        (r#"monitor_reloads_total{result="error"}"#, 1.0),
        (r#"monitor_tracked_flows"#, 42.0),
        (r#"monitor_table_read_seconds"#, 0.25),
        (r#"monitor_table_read_interval_seconds"#, 2.0),
        (&format!(r#"monitor_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION")), 1.0),
        (&format!(r#"monitor_agent_info{{node="rppam1",version="{}"}}"#, env!("CARGO_PKG_VERSION")), 1.0),
        // A rule in force that no flow used yet: zeros, and no last-seen time.
        (r#"monitor_rule_flows_total{rule="never"}"#, 0.0),
        (r#"monitor_rule_blocked_total{rule="never"}"#, 0.0),
        (r#"monitor_findings_total{kind="blocked",rule="heartbeat"}"#, 6.0),
        (
            r#"monitor_findings_total{kind="unexpected",source_group="user_workstations",target_group="database"}"#,
            4.0,
        ),
        (
            r#"monitor_path_attempts_total{rule="db-postgres",client="rppam1",server="db1",side="client",outcome="answered"}"#,
            5.0,
        ),
        (
            r#"monitor_path_attempts_total{rule="db-postgres",client="rppam1",server="db1",side="client",outcome="unanswered"}"#,
            0.0,
        ),
        (
            r#"monitor_path_attempts_total{rule="heartbeat",client="rppam2",server="rppam1",side="server",outcome="refused"}"#,
            1.0,
        ),
        (
            r#"monitor_path_attempts_total{rule="heartbeat",client="rppam2",server="rppam1",side="server",outcome="icmp_rejected"}"#,
            2.0,
        ),
        (
            r#"monitor_path_attempts_total{rule="heartbeat",client="rppam2",server="rppam1",side="server",outcome="unanswered"}"#,
            3.0,
        ),
        (
            r#"monitor_path_icmp_rejected_total{rule="heartbeat",client="rppam2",server="rppam1",side="server",sender="router1",origin="network"}"#,
            2.0,
        ),
        (r#"monitor_path_overflow_total"#, 7.0),
    ];
    for (k, v) in want {
        assert_eq!(s.get(k), Some(&v), "{k} in\n{om}");
    }
    assert!(!om.contains(r#"monitor_rule_last_seen_timestamp_seconds{rule="never"}"#), "{om}");
    for stat in Stat::ALL {
        let k = format!(r#"monitor_kernel_packets_total{{counter="{}"}}"#, stat.name());
        assert_eq!(s.get(&k), Some(&(100.0 + stat as u32 as f64)), "{k} in\n{om}");
    }
}

const MATRIX: &str = r#"
version: 1
zones:
  clients: {cidrs: ["10.0.2.0/24"]}
services:
  app: {cidr: 10.0.1.10/32}
rules:
  - {id: web, from: clients, to: app, port: 443}
  - {id: admin, from: clients, to: app, port: 9000}
"#;

fn engine(matrix: &str) -> Engine {
    let (m, _) = Matrix::from_str(matrix, "matrix.yaml", Path::new(".")).expect("test matrix");
    Engine::new(&m, None, &Selection::default()).expect("engine")
}

/// The agent publishes the coverage of the rules in force: a rule a reload
/// removed (its coverage kept, by id, in case it comes back) leaves
/// `/metrics`, and one that comes back returns with its totals.
#[test]
fn a_rule_removed_by_a_reload_leaves_the_metrics() {
    let (before, after) = (engine(MATRIX), engine(&MATRIX.replace("  - {id: admin", "  # - {id: admin")));
    let mut coverage = Coverage::default();
    let seen = SystemTime::UNIX_EPOCH + Duration::from_secs(1_775_469_600);
    for id in ["web", "admin"] {
        let slot = coverage.slot(id);
        coverage.add_flow(slot);
        coverage.add_traffic(slot, 3, 300, seen);
    }
    let m = Metrics::new();
    let publish = |e: &Engine| {
        m.publish(&Snapshot {
            counters: &[],
            rules: coverage.in_force(e),
            tally: None,
            tracked_flows: 0,
            table_read: None,
            interfaces: None,
        });
        samples(&m.encode())
    };
    let s = publish(&before);
    for rule in ["web", "admin"] {
        for family in ["packets_total", "bytes_total", "flows_total", "last_seen_timestamp_seconds"] {
            let k = format!(r#"monitor_rule_{family}{{rule="{rule}"}}"#);
            assert!(s.contains_key(&k), "{k} before the reload");
        }
    }
    let s = publish(&after);
    assert_eq!(s.get(r#"monitor_rule_packets_total{rule="web"}"#), Some(&3.0));
    assert!(!s.keys().any(|k| k.contains(r#"rule="admin""#)), "a removed rule is gone: {s:?}");
    let s = publish(&before);
    assert_eq!(s.get(r#"monitor_rule_bytes_total{rule="admin"}"#), Some(&300.0), "back, totals kept");
}

#[test]
fn the_text_format_has_the_same_samples() {
    let m = exercised();
    let (om, text) = (m.encode(), m.encode_text());
    assert_eq!(samples(&om), samples(&text));
    assert!(text.contains("# TYPE monitor_alerts_total counter\n"), "{text}");
    assert!(text.contains("# TYPE monitor_build_info gauge\n"), "{text}");
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
}

struct Server {
    addr: std::net::SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), monitor::live::metrics::MetricsError>>,
}

async fn serve(m: Metrics) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(m.serve_on(listener, rx));
    Server { addr, stop, task }
}

impl Server {
    async fn stop(self) {
        self.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the metrics server must stop when told")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn promtool_finds_no_problem() {
    monitor::live::webhook::install_tls_provider();
    let srv = serve(exercised()).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/metrics", srv.addr);

    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], TEXT_TYPE, "no Accept header: the text format");
    let text = resp.text().await.unwrap();

    let resp = client
        .get(&url)
        .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], OPENMETRICS_TYPE);
    assert!(resp.text().await.unwrap().ends_with("# EOF\n"));

    let resp = client.get(format!("http://{}/other", srv.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = client.post(&url).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    srv.stop().await;

    // promtool 2.x lints the text format only; the OpenMetrics form is
    // checked by the real Prometheus scrape below.
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool: {e} (apt-get install prometheus, or cargo xtask setup)"));
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}\non:\n{text}"
    );
}

/// Kills Prometheus however the test ends.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_prometheus(dir: &Path, target: std::net::SocketAddr) -> (Prometheus, u16) {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: monitor\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("prometheus: {e} (apt-get install prometheus, or cargo xtask setup)"));
    (Prometheus(child), port)
}

/// `query`'s result as labels → value, or None while Prometheus is not up
/// or has not scraped yet.
async fn query(client: &reqwest::Client, port: u16, q: &str) -> Option<Vec<(serde_json::Value, f64)>> {
    let url =
        reqwest::Url::parse_with_params(&format!("http://127.0.0.1:{port}/api/v1/query"), [("query", q)])
            .unwrap();
    let body = client.get(url).send().await.ok()?.text().await.ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    Some(
        result
            .iter()
            .map(|r| (r["metric"].clone(), r["value"][1].as_str().unwrap().parse::<f64>().unwrap()))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_it() {
    monitor::live::webhook::install_tls_provider();
    let srv = serve(exercised()).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut prom, port) = start_prometheus(dir.path(), srv.addr);
    let client = reqwest::Client::new();

    let start = Instant::now();
    let alerts = loop {
        if let Some(r) = query(&client, port, "monitor_alerts_total").await.filter(|r| r.len() == 3) {
            break r;
        }
        if let Ok(Some(status)) = prom.0.try_wait() {
            panic!("prometheus exited ({status}):\n{}", log(dir.path()));
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "prometheus did not scrape our alerts within 20 s:\n{}",
            log(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let by_kind: BTreeMap<String, f64> =
        alerts.iter().map(|(m, v)| (m["kind"].as_str().unwrap().to_string(), *v)).collect();
    assert_eq!(
        by_kind,
        BTreeMap::from([("blocked".into(), 2.0), ("exposed".into(), 1.0), ("unexpected".into(), 3.0)])
    );
    for (m, _) in &alerts {
        assert_eq!(
            (m["job"].as_str(), m["instance"].as_str()),
            (Some("monitor"), Some(&*srv.addr.to_string()))
        );
    }

    let one = |r: Option<Vec<(serde_json::Value, f64)>>, q: &str| match r.as_deref() {
        Some([(_, v)]) => *v,
        other => panic!("{q}: expected one series, got {other:?}\n{}", log(dir.path())),
    };
    for (q, want) in [
        (r#"up{job="monitor"}"#, 1.0),
        (r#"monitor_kernel_packets_total{counter="ringbuf_full"}"#, 100.0 + Stat::RingBufFull as u32 as f64),
        (r#"monitor_flow_reader_total{counter="flows_evicted"}"#, 4.0),
        (r#"monitor_rule_bytes_total{rule="db-postgres"}"#, 49_000.0),
        (r#"monitor_rule_last_seen_timestamp_seconds{rule="web-portal/users"}"#, 1_775_469_601.5),
        ("monitor_engine_latency_seconds_count", 4.0),
        (r#"monitor_alert_latency_seconds_bucket{le="0.25"}"#, 2.0),
        (r#"monitor_webhook_dropped_total{reason="queue_full"}"#, 6.0),
        ("monitor_tracked_flows", 42.0),
        (r#"monitor_reloads_total{result="error"}"#, 1.0),
        ("monitor_build_info", 1.0),
    ] {
        assert_eq!(one(query(&client, port, q).await, q), want, "{q}");
    }

    // The scrape itself: healthy, no parse error.
    let body = client
        .get(format!("http://127.0.0.1:{port}/api/v1/targets"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let targets: serde_json::Value = serde_json::from_str(&body).unwrap();
    let t = &targets["data"]["activeTargets"][0];
    assert_eq!((t["health"].as_str(), t["lastError"].as_str()), (Some("up"), Some("")), "{t}");

    drop(prom);
    srv.stop().await;
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
}

/// A scrape in flight when the agent is told to stop is answered whole:
/// the server gives open connections a moment, and the agent joins the
/// server's task before its runtime goes (dropping the runtime would cut
/// the answer off mid-body).
#[test]
fn shutdown_waits_for_an_in_flight_scrape() {
    use std::{
        io::Read,
        net::TcpStream,
        sync::{mpsc, Arc},
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // Enough rules for an answer far larger than the sockets' buffers.
    let ids: Vec<String> = (0..50_000).map(|i| format!("rule-{i:05}")).collect();
    let used = RuleUse {
        packets: 1,
        bytes: 2,
        flows: 3,
        blocked: 0,
        last_seen: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_775_469_600)),
    };
    let m = Metrics::new();
    m.publish(&Snapshot {
        counters: &[],
        rules: ids.iter().map(|id| (id.as_str(), &used)).collect(),
        tally: None,
        tracked_flows: 0,
        table_read: None,
        interfaces: None,
    });
    let (addr, stop, task) = rt.block_on(async {
        let srv = serve(m).await;
        (srv.addr, srv.stop, srv.task)
    });

    let (started_tx, started) = mpsc::channel();
    let go = Arc::new(std::sync::Barrier::new(2));
    let client = std::thread::spawn({
        let go = go.clone();
        move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: monitor\r\nConnection: close\r\n\r\n").unwrap();
            let mut first = [0u8; 1024];
            let n = s.read(&mut first).unwrap();
            started_tx.send(()).unwrap();
            go.wait(); // the shutdown has begun, the rest of the answer not yet read
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
            let mut answer = first[..n].to_vec();
            answer.extend(rest);
            answer
        }
    });
    started.recv().unwrap();
    stop.send_replace(true);
    go.wait();
    // What the agent does at shutdown: join the server, then drop the runtime.
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await })
        .expect("the server ends once its connections have")
        .unwrap()
        .unwrap();
    drop(rt);
    let answer = client.join().unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let head = String::from_utf8_lossy(&answer[..split]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a content-length")
        .trim()
        .parse()
        .unwrap();
    assert!(length > 4 << 20, "an answer larger than the buffers: {length} bytes");
    assert_eq!(answer.len() - split, length, "the whole body arrived");
    assert!(answer.ends_with(b"\n"), "ends with a whole line");
}
