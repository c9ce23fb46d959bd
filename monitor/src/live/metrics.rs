//! Prometheus metrics of the live monitor (`--metrics ADDR`), served at
//! `GET /metrics`.
//!
//! Counters the monitor increments itself (verdicts, alerts, reloads) and the
//! latency histograms live in a `prometheus-client` registry. Totals kept
//! elsewhere (the kernel's counters, the flow reader's, passive DNS, the
//! de-duplicator, the webhook, per-rule traffic) are handed over whole by
//! [`Metrics::publish`], each part through its [`Counters`], on the agent's
//! 1 s tick, and shown through a collector as they were last published: a
//! scrape shows exactly what the kernel counted, and a series whose source
//! is gone (a rule removed by a reload) is gone from the scrape.
//!
//! The exposition is OpenMetrics when the scraper asks for it (Prometheus
//! does), else the Prometheus text format 0.0.4 (curl, promtool, older
//! scrapers); docs/deploy.md lists every family.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    fmt::Write as _,
    net::SocketAddr,
    sync::{atomic::AtomicU64, Arc, LazyLock, Mutex},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, header, server::conn::http1, service::service_fn, Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
        info::Info,
        MetricType,
    },
    registry::{Registry, Unit},
};
use tokio::{
    net::TcpListener,
    sync::{watch, OwnedSemaphorePermit},
};

use super::{
    coverage::RuleUse,
    serve::{accept_loop, stopped, ConnLimits, Server, CONNECTIONS_REFUSED},
    tally::{Attempt, FindingKey, PathCounts, PathKey, Tally},
};
use crate::{
    alert::Kind,
    counters::{Counters, Family as CounterFamily},
    engine::VerdictKind,
    kernel::AttachedIface,
};

pub const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Per-flow verdict time: 1 µs to 10 ms.
const ENGINE_BUCKETS: [f64; 13] =
    [1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2];
/// First packet to alert: 1 ms to 10 s.
const ALERT_BUCKETS: [f64; 13] =
    [1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "--metrics {0}: not a loopback address. The endpoint has no authentication and shows your \
         matrix rule ids and traffic; serve it on 127.0.0.1 (or [::1]) and scrape through a proxy, or \
         add --metrics-public to serve it on {0} anyway"
    )]
    NotLoopback(SocketAddr),
}

/// Refuses to publish metrics beyond this host unless asked to.
pub fn check_listen_addr(addr: SocketAddr, public: bool) -> Result<(), MetricsError> {
    if public || addr.ip().to_canonical().is_loopback() {
        Ok(())
    } else {
        Err(MetricsError::NotLoopback(addr))
    }
}

pub(crate) type Label = [(&'static str, &'static str); 1];

/// Where an alert is written, as the `sink` label names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkKind {
    File,
    Stdout,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::File => "file",
            SinkKind::Stdout => "stdout",
        }
    }
}

/// Alerts the sink failed to write, by sink: counted where no handle to
/// [`Metrics`] is (the sink), process-wide, registered in every [`Metrics`].
static ALERT_WRITE_FAILURES: LazyLock<Family<Label, Counter>> = LazyLock::new(|| {
    let f = Family::<Label, Counter>::default();
    for s in [SinkKind::File, SinkKind::Stdout] {
        let _ = f.get_or_create(&[("sink", s.as_str())]);
    }
    f
});

/// One alert the sink failed to write.
pub fn alert_write_failed(sink: SinkKind) {
    ALERT_WRITE_FAILURES.get_or_create(&[("sink", sink.as_str())]).inc();
}

/// The monitor's metrics; clones share them.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    flows: Family<Label, Counter>,
    alerts: Family<Label, Counter>,
    reloads: Family<Label, Counter>,
    engine_latency: Histogram,
    alert_latency: Histogram,
    tracked: Gauge,
    read_seconds: Gauge<f64, AtomicU64>,
    read_interval: Gauge<f64, AtomicU64>,
    totals: Arc<Totals>,
    attached: Arc<Attached>,
}

/// The interfaces attached to at the last read; `None` before it.
#[derive(Debug, Default)]
struct Attached(Mutex<Option<Vec<AttachedIface>>>);

/// Totals counted elsewhere, as last published.
#[derive(Debug, Default)]
struct Totals(Mutex<TotalsState>);

#[derive(Debug, Default)]
struct TotalsState {
    rules: BTreeMap<String, RuleTraffic>,
    paths: BTreeMap<PathKey, PathCounts>,
    findings: BTreeMap<FindingKey, u64>,
    /// Each family in the order first published, with its samples.
    counters: Vec<(&'static CounterFamily, Vec<(&'static str, u64)>)>,
}

/// Everything [`Metrics::publish`] shows, as of one moment.
pub struct Snapshot<'a> {
    /// The parts' totals; a family appears once a part hands it over.
    pub counters: &'a [&'a dyn Counters],
    /// The rules of the matrix in force with their use since the start.
    pub rules: Vec<(&'a str, &'a RuleUse)>,
    /// The attempts by documented path and the findings; `None` shows
    /// neither.
    pub tally: Option<&'a Tally>,
    pub tracked_flows: usize,
    /// How long the last table read took, and the interval between reads
    /// in force after it; `None` before the first read.
    pub table_read: Option<(Duration, Duration)>,
    /// The interfaces attached to at the last read; `None` before it.
    pub interfaces: Option<&'a [AttachedIface]>,
}

#[derive(Clone, Copy, Debug)]
struct RuleTraffic {
    packets: u64,
    bytes: u64,
    flows: u64,
    blocked: u64,
    /// Unix time; `None` for a rule not used yet.
    last_seen: Option<f64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The metrics of no node in particular (tests, benches).
    pub fn new() -> Metrics {
        Metrics::build(None)
    }

    /// The agent's metrics, with `monitor_agent_info{node}`: the fleet rules
    /// tell from it which hosts run an agent that is up.
    pub fn for_node(node: &str) -> Metrics {
        Metrics::build(Some(node))
    }

    fn build(node: Option<&str>) -> Metrics {
        let mut registry = Registry::with_prefix("monitor");
        let flows = Family::<Label, Counter>::default();
        let alerts = Family::<Label, Counter>::default();
        let reloads = Family::<Label, Counter>::default();
        // Every label value from the start, so that the first increment is
        // a visible rise rather than a new series.
        for v in [VerdictKind::Conforming, VerdictKind::Unexpected, VerdictKind::Exposed] {
            let _ = flows.get_or_create(&[("verdict", verdict_name(v))]);
        }
        for k in Kind::ALL {
            let _ = alerts.get_or_create(&[("kind", k.as_str())]);
        }
        for r in ["ok", "error"] {
            let _ = reloads.get_or_create(&[("result", r)]);
        }
        let engine_latency = Histogram::new(ENGINE_BUCKETS);
        let alert_latency = Histogram::new(ALERT_BUCKETS);
        let tracked = Gauge::default();
        let read_seconds = Gauge::<f64, AtomicU64>::default();
        let read_interval = Gauge::<f64, AtomicU64>::default();
        let totals = Arc::new(Totals::default());

        registry.register("flows", "Flows judged against the matrix, by verdict", flows.clone());
        registry.register("alerts", "Alerts emitted, by kind", alerts.clone());
        registry.register_with_unit(
            "engine_latency",
            "Time to judge one flow against the matrix",
            Unit::Seconds,
            engine_latency.clone(),
        );
        registry.register_with_unit(
            "alert_latency",
            "Time from a flow's first packet to its alert",
            Unit::Seconds,
            alert_latency.clone(),
        );
        registry.register("reloads", "Matrix and inventory reloads, by result", reloads.clone());
        registry.register(
            "tracked_flows",
            "Flows in the kernel flow table at the last read",
            tracked.clone(),
        );
        registry.register_with_unit(
            "table_read",
            "How long the last read of the kernel flow table took, chunks and judging included",
            Unit::Seconds,
            read_seconds.clone(),
        );
        registry.register_with_unit(
            "table_read_interval",
            "The interval between table reads in force: --interval, or longer for a large table (docs/deploy.md)",
            Unit::Seconds,
            read_interval.clone(),
        );
        registry.register(
            "build",
            "The monitor's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        if let Some(node) = node {
            registry.register(
                "agent",
                "The agent on this node (--node), always 1",
                Info::new(vec![
                    ("node".to_owned(), node.to_owned()),
                    ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
                ]),
            );
        }
        registry.register(
            "connections_refused",
            "Connections to a local server closed at once because it held its cap of connections, by server",
            CONNECTIONS_REFUSED.clone(),
        );
        registry.register(
            "alert_write_failures",
            "Alerts the sink failed to write (a full disk, a closed pipe), by sink",
            ALERT_WRITE_FAILURES.clone(),
        );
        registry.register_collector(Box::new(totals.clone()));
        let attached = Arc::new(Attached::default());
        registry.register_collector(Box::new(attached.clone()));
        Metrics {
            inner: Arc::new(Inner {
                registry,
                flows,
                alerts,
                reloads,
                engine_latency,
                alert_latency,
                tracked,
                read_seconds,
                read_interval,
                totals,
                attached,
            }),
        }
    }

    /// One flow judged.
    pub fn flow(&self, verdict: VerdictKind) {
        self.inner.flows.get_or_create(&[("verdict", verdict_name(verdict))]).inc();
    }

    /// One alert emitted.
    pub fn alert(&self, kind: Kind) {
        self.inner.alerts.get_or_create(&[("kind", kind.as_str())]).inc();
    }

    /// Replaces every published total by `now`'s: the parts' counters,
    /// the per-rule series (only rules in force), the tracked flows and
    /// the attached interfaces (`monitor_interfaces_attached` and one
    /// `monitor_interface_attached{iface,ingress}` series each: they come
    /// and go with the host's links).
    pub fn publish(&self, now: &Snapshot<'_>) {
        let mut counters: Vec<(&'static CounterFamily, Vec<(&'static str, u64)>)> = Vec::new();
        for part in now.counters {
            part.counters(&mut |family, label, v| match counters
                .iter_mut()
                .find(|(f, _)| std::ptr::eq(*f, family))
            {
                Some((_, samples)) => samples.push((label, v)),
                None => counters.push((family, vec![(label, v)])),
            });
        }
        let rules: BTreeMap<String, RuleTraffic> = now
            .rules
            .iter()
            .map(|(id, u)| {
                let t = RuleTraffic {
                    packets: u.packets,
                    bytes: u.bytes,
                    flows: u.flows,
                    blocked: u.blocked,
                    last_seen: u
                        .last_seen
                        .map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64()),
                };
                (id.to_string(), t)
            })
            .collect();
        // A path or a blocked finding of a rule a reload removed leaves with
        // the rule's own series (its counts are kept, should it come back).
        let (paths, findings) = match now.tally {
            Some(t) => {
                let in_force = |id: &str| rules.contains_key(id);
                let paths = t.paths.iter().filter(|(k, _)| in_force(&k.rule));
                let findings = t.findings.iter().filter(|(k, _)| match k {
                    FindingKey::Rule(Kind::Blocked, id) => in_force(id),
                    _ => true,
                });
                (
                    paths.map(|(k, v)| (k.clone(), v.clone())).collect(),
                    findings.map(|(k, v)| (k.clone(), *v)).collect(),
                )
            }
            None => Default::default(),
        };
        *self.inner.totals.lock() = TotalsState { rules, paths, findings, counters };
        self.inner.tracked.set(i64::try_from(now.tracked_flows).unwrap_or(i64::MAX));
        if let Some((took, interval)) = now.table_read {
            self.inner.read_seconds.set(took.as_secs_f64());
            self.inner.read_interval.set(interval.as_secs_f64());
        }
        if let Some(ifaces) = now.interfaces {
            *self.inner.attached.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(ifaces.to_vec());
        }
    }

    pub fn engine_latency(&self, d: Duration) {
        self.inner.engine_latency.observe(d.as_secs_f64());
    }

    pub fn alert_latency(&self, d: Duration) {
        self.inner.alert_latency.observe(d.as_secs_f64());
    }

    pub fn reload(&self, ok: bool) {
        self.inner.reloads.get_or_create(&[("result", if ok { "ok" } else { "error" })]).inc();
    }

    /// The OpenMetrics exposition, `# EOF` included.
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(8192);
        prometheus_client::encoding::text::encode(&mut s, &self.inner.registry)
            .expect("writing to a String cannot fail");
        s
    }

    /// The Prometheus text format 0.0.4, for scrapers that do not ask for
    /// OpenMetrics.
    pub fn encode_text(&self) -> String {
        openmetrics_to_text(&self.encode())
    }

    /// Serves on a bound listener until `shutdown` turns true (or its
    /// sender is dropped), with [`ConnLimits::DEFAULT`].
    pub async fn serve_on(
        self,
        listener: TcpListener,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), MetricsError> {
        self.serve_on_with(listener, shutdown, ConnLimits::DEFAULT).await
    }

    /// As [`Metrics::serve_on`], with `limits`: past `max_connections` a
    /// connection is closed as soon as it is accepted.
    pub async fn serve_on_with(
        self,
        listener: TcpListener,
        shutdown: watch::Receiver<bool>,
        limits: ConnLimits,
    ) -> Result<(), MetricsError> {
        let stop = shutdown.clone();
        accept_loop(listener, Server::Metrics, limits, shutdown, move |stream, slot| {
            self.clone().connection(stream, stop.clone(), limits.request_timeout, slot)
        })
        .await;
        Ok(())
    }

    /// Serves one connection; its `slot` is freed when it ends.
    async fn connection(
        self,
        stream: tokio::net::TcpStream,
        mut shutdown: watch::Receiver<bool>,
        request_timeout: Duration,
        slot: OwnedSemaphorePermit,
    ) {
        let _slot = slot;
        let svc = service_fn(move |req| {
            let m = self.clone();
            async move { Ok::<_, Infallible>(m.respond(&req)) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            // From the connection's start and between keep-alive requests:
            // an idle client is closed after this.
            .header_read_timeout(request_timeout)
            .serve_connection(TokioIo::new(stream), svc);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => if let Err(e) = r { log::debug!("metrics connection: {e}") },
            _ = stopped(&mut shutdown) => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let plain = |status: u16, text: &str| {
            Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Full::new(Bytes::from(text.to_owned())))
                .expect("static response")
        };
        if req.uri().path() != "/metrics" {
            return plain(404, "not found: the metrics are at /metrics\n");
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = plain(405, "only GET and HEAD\n");
            r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        let (body, content_type) = if wants_openmetrics(accept) {
            (self.encode(), OPENMETRICS_TYPE)
        } else {
            (self.encode_text(), TEXT_TYPE)
        };
        Response::builder()
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("static response")
    }
}

fn verdict_name(v: VerdictKind) -> &'static str {
    match v {
        VerdictKind::Conforming => "conforming",
        VerdictKind::Unexpected => "unexpected",
        VerdictKind::Exposed => "exposed",
    }
}

impl Totals {
    fn lock(&self) -> std::sync::MutexGuard<'_, TotalsState> {
        // A panic while holding it leaves plain numbers behind: still good.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A per-rule counter family: name, help, and which total it shows.
type RuleCounter = (&'static str, &'static str, fn(&RuleTraffic) -> u64);

impl Collector for Totals {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let st = self.lock();
        let rules: [RuleCounter; 4] = [
            ("rule_packets", "Packets of flows a matrix rule documents, both directions.", |r| r.packets),
            ("rule_bytes", "Bytes of flows a matrix rule documents, both directions.", |r| r.bytes),
            ("rule_flows", "Flows a matrix rule documents.", |r| r.flows),
            (
                "rule_blocked",
                "Flows a matrix rule documents that were refused, unanswered or ICMP-rejected.",
                |r| r.blocked,
            ),
        ];
        if !st.rules.is_empty() {
            for (name, help, get) in rules {
                let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
                for (id, r) in &st.rules {
                    ConstCounter::new(get(r)).encode(m.encode_family(&[("rule", id.as_str())])?)?;
                }
            }
            let unit = Unit::Seconds;
            let mut m = enc.encode_descriptor(
                "rule_last_seen_timestamp",
                "Unix time of the last flow a matrix rule documents.",
                Some(&unit),
                MetricType::Gauge,
            )?;
            for (id, r) in &st.rules {
                if let Some(t) = r.last_seen {
                    ConstGauge::new(t).encode(m.encode_family(&[("rule", id.as_str())])?)?;
                }
            }
        }
        encode_findings(&mut enc, &st.findings)?;
        encode_paths(&mut enc, &st.paths)?;
        for (family, samples) in &st.counters {
            let mut m = enc.encode_descriptor(family.name, family.help, None, MetricType::Counter)?;
            if family.label.is_empty() {
                let total: u64 = samples.iter().map(|(_, v)| v).sum();
                ConstCounter::new(total).encode(m)?;
            } else {
                for (value, v) in samples {
                    ConstCounter::new(*v).encode(m.encode_family(&[(family.label, *value)])?)?;
                }
            }
        }
        Ok(())
    }
}

/// `monitor_findings_total`: by kind and rule, or for `unexpected` by the
/// groups of the ends.
fn encode_findings(
    enc: &mut DescriptorEncoder,
    findings: &BTreeMap<FindingKey, u64>,
) -> Result<(), std::fmt::Error> {
    if findings.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(
        "findings",
        "Findings, once per flow and kind before de-duplication: blocked and exposed by rule, unexpected by the groups of client and server.",
        None,
        MetricType::Counter,
    )?;
    for (key, n) in findings {
        let c = ConstCounter::new(*n);
        match key {
            FindingKey::Rule(kind, rule) => {
                c.encode(m.encode_family(&[("kind", kind.as_str()), ("rule", &**rule)])?)?
            }
            FindingKey::Groups(source, target) => c.encode(m.encode_family(&[
                ("kind", "unexpected"),
                ("source_group", &**source),
                ("target_group", &**target),
            ])?)?,
        }
    }
    Ok(())
}

/// `monitor_path_attempts_total` and `monitor_path_icmp_rejected_total`.
fn encode_paths(
    enc: &mut DescriptorEncoder,
    paths: &BTreeMap<PathKey, PathCounts>,
) -> Result<(), std::fmt::Error> {
    if paths.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(
        "path_attempts",
        "Attempts on a documented path (rule, client host, server host) seen from this host's side, by how they first ended.",
        None,
        MetricType::Counter,
    )?;
    for (k, c) in paths {
        for a in Attempt::ALL {
            let l = [
                ("rule", &*k.rule),
                ("client", &*k.client),
                ("server", &*k.server),
                ("side", k.side.as_str()),
                ("outcome", a.as_str()),
            ];
            ConstCounter::new(c.attempts[a as usize]).encode(m.encode_family(&l)?)?;
        }
    }
    if paths.values().all(|c| c.icmp.is_empty()) {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(
        "path_icmp_rejected",
        "Attempts on a documented path rejected by an ICMP error, by its sender (inventory host or other) and origin (server or network).",
        None,
        MetricType::Counter,
    )?;
    for (k, c) in paths {
        for ((sender, origin), n) in &c.icmp {
            let l = [
                ("rule", &*k.rule),
                ("client", &*k.client),
                ("server", &*k.server),
                ("side", k.side.as_str()),
                ("sender", &**sender),
                ("origin", origin.as_str()),
            ];
            ConstCounter::new(*n).encode(m.encode_family(&l)?)?;
        }
    }
    Ok(())
}

impl Collector for Attached {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(ifaces) = st.as_ref() else { return Ok(()) };
        let m = enc.encode_descriptor(
            "interfaces_attached",
            "Interfaces the kernel programs are attached to.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(ifaces.len()).unwrap_or(i64::MAX)).encode(m)?;
        let mut m = enc.encode_descriptor(
            "interface_attached",
            "1 for each interface the kernel programs are attached to, with its ingress hook.",
            None,
            MetricType::Gauge,
        )?;
        for i in ifaces {
            let labels = [("iface", i.name.as_str()), ("ingress", i.ingress.as_str())];
            ConstGauge::new(1i64).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Whether an Accept header prefers OpenMetrics to the text format
/// (Prometheus sends `application/openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5,...`).
pub fn wants_openmetrics(accept: &str) -> bool {
    let q_of = |wanted: &str| {
        accept
            .split(',')
            .filter_map(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next()?;
                if !media.eq_ignore_ascii_case(wanted) {
                    return None;
                }
                let q = parts
                    .filter_map(|p| p.strip_prefix("q="))
                    .find_map(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some(q)
            })
            .fold(None, |best: Option<f32>, q| Some(best.map_or(q, |b| b.max(q))))
    };
    match (q_of("application/openmetrics-text"), q_of("text/plain")) {
        (Some(om), Some(text)) => om > 0.0 && om >= text,
        (Some(om), None) => om > 0.0,
        (None, _) => false,
    }
}

/// Rewrites this module's OpenMetrics into the text format 0.0.4: counter
/// and info families take their sample names (`x_total`, `x_info`, the
/// latter as a gauge); `# UNIT` and `# EOF` go. Samples, labels and
/// escaping are the same in both formats.
pub fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut help: Option<(&str, &str)> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "unknown" => (name.to_owned(), "untyped"),
                k => (name.to_owned(), k),
            };
            if let Some((_, text)) = help.take() {
                let _ = writeln!(out, "# HELP {name} {text}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_public() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(check_listen_addr(a("127.0.0.1:9469"), false).is_ok());
        assert!(check_listen_addr(a("127.1.2.3:9469"), false).is_ok());
        assert!(check_listen_addr(a("[::1]:9469"), false).is_ok());
        assert!(check_listen_addr(a("[::ffff:127.0.0.1]:9469"), false).is_ok());
        for public in ["0.0.0.0:9469", "10.0.0.5:9469", "[::]:9469"] {
            let e = check_listen_addr(a(public), false).unwrap_err().to_string();
            assert!(e.contains("not a loopback address") && e.contains("--metrics-public"), "{e}");
            assert!(check_listen_addr(a(public), true).is_ok());
        }
    }

    #[test]
    fn accept_negotiation() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(prometheus));
        assert!(!wants_openmetrics(""));
        assert!(!wants_openmetrics("*/*"));
        assert!(!wants_openmetrics("text/plain"));
        assert!(!wants_openmetrics("application/openmetrics-text;q=0"));
        assert!(!wants_openmetrics("text/plain, application/openmetrics-text;q=0.5"));
    }

    #[test]
    fn text_format_names_families_by_their_samples() {
        let om = "# HELP monitor_flows Flows.\n# TYPE monitor_flows counter\nmonitor_flows_total{verdict=\"a\"} 1\n\
                  # HELP monitor_build Version.\n# TYPE monitor_build info\nmonitor_build_info{version=\"1\"} 1\n\
                  # HELP monitor_x_seconds X.\n# TYPE monitor_x_seconds histogram\n# UNIT monitor_x_seconds seconds\n\
                  monitor_x_seconds_count 0\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP monitor_flows_total Flows.\n# TYPE monitor_flows_total counter\nmonitor_flows_total{verdict=\"a\"} 1\n\
             # HELP monitor_build_info Version.\n# TYPE monitor_build_info gauge\nmonitor_build_info{version=\"1\"} 1\n\
             # HELP monitor_x_seconds X.\n# TYPE monitor_x_seconds histogram\nmonitor_x_seconds_count 0\n"
        );
    }

    fn snapshot<'a>(
        counters: &'a [&'a dyn Counters],
        interfaces: Option<&'a [AttachedIface]>,
    ) -> Snapshot<'a> {
        Snapshot { counters, rules: Vec::new(), tally: None, tracked_flows: 0, table_read: None, interfaces }
    }

    #[test]
    fn each_part_has_its_own_family_and_a_publish_replaces_the_last() {
        use crate::kernel::{stream::UserStats, KernelStats};
        let m = Metrics::new();
        let user = UserStats { events: 1, events_dropped: 2, flows_evicted: 3, ..UserStats::default() };
        let mut kernel = KernelStats::default();
        kernel.counts[monitor_common::Stat::RingBufFull as usize] = 5;
        m.publish(&snapshot(&[&kernel, &user], None));
        let om = m.encode();
        assert!(om.contains("monitor_flow_reader_total{counter=\"events_dropped\"} 2\n"), "{om}");
        assert!(om.contains("monitor_kernel_packets_total{counter=\"ringbuf_full\"} 5\n"), "{om}");
        assert!(!om.contains("monitor_kernel_packets_total{counter=\"events"), "families apart: {om}");
        // A part not handed over any more leaves no series behind.
        m.publish(&snapshot(&[&user], None));
        let om = m.encode();
        assert!(!om.contains("kernel_packets") && om.contains("flow_reader"), "{om}");
    }

    #[test]
    fn attached_interfaces_are_gauges() {
        use crate::kernel::IngressHook;
        let m = Metrics::new();
        assert!(!m.encode().contains("interfaces_attached"), "published before the first read");
        let iface = |name: &str, index| AttachedIface { name: name.into(), index, ingress: IngressHook::Tc };
        m.publish(&snapshot(&[], Some(&[iface("veth-a", 12), iface("eth0", 2)])));
        let om = m.encode();
        assert!(
            om.contains("# TYPE monitor_interfaces_attached gauge\nmonitor_interfaces_attached 2\n"),
            "{om}"
        );
        assert!(om.contains("monitor_interface_attached{iface=\"veth-a\",ingress=\"tc\"} 1\n"), "{om}");
        // One that went away leaves no series behind.
        m.publish(&snapshot(&[], Some(&[iface("eth0", 2)])));
        let om = m.encode();
        assert!(om.contains("monitor_interfaces_attached 1\n") && !om.contains("veth-a"), "{om}");
    }
}
