//! Prometheus metrics of the live monitor (`--metrics ADDR`), served at
//! `GET /metrics`.
//!
//! Counters the monitor increments itself (verdicts, alerts, reloads) and the
//! latency histograms live in a `prometheus-client` registry. Totals kept
//! elsewhere (the kernel's counters, per-rule traffic, the webhook's
//! counts) are published as they are read, through a collector, so a
//! scrape shows exactly what the kernel counted.
//!
//! The exposition is OpenMetrics when the scraper asks for it (Prometheus
//! does), else the Prometheus text format 0.0.4 (curl, promtool, older
//! scrapers); docs/deploy.md lists every family.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    fmt::Write as _,
    io,
    net::SocketAddr,
    sync::{Arc, LazyLock, Mutex},
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
    sync::{watch, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};

use super::{dedup::Class, sink::Throttle, webhook::WebhookStats};
use crate::{
    alert::Kind,
    engine::VerdictKind,
    kernel::{stream::UserStats, AttachedIface, KernelStats},
};
use monitor_common::Stat;

/// The address `--metrics` suggests.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9469";

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
    #[error("--metrics {addr}: cannot listen: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Refuses to publish metrics beyond this host unless asked to.
pub fn check_listen_addr(addr: SocketAddr, public: bool) -> Result<(), MetricsError> {
    if public || addr.ip().to_canonical().is_loopback() {
        Ok(())
    } else {
        Err(MetricsError::NotLoopback(addr))
    }
}

type Label = [(&'static str, &'static str); 1];

/// How many connections a local server (the metrics port, the control
/// socket) holds at once, and how long a client may take to send its
/// request. Past the cap a new connection is accepted and closed at once
/// (counted in `monitor_connections_refused_total{server}`), so idle
/// clients cannot take the process's file descriptors: the two servers
/// hold at most `2 × max_connections` sockets besides their listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    pub max_connections: usize,
    /// A request (its head, for HTTP; keep-alive idle time included) must
    /// arrive within this; then the connection is closed.
    pub request_timeout: Duration,
}

impl ConnLimits {
    /// 64 connections, 10 s for a request.
    pub const DEFAULT: ConnLimits =
        ConnLimits { max_connections: 64, request_timeout: Duration::from_secs(10) };
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits::DEFAULT
    }
}

/// A local server, as the `server` label names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Metrics,
    Control,
}

impl Server {
    pub fn as_str(self) -> &'static str {
        match self {
            Server::Metrics => "metrics",
            Server::Control => "control",
        }
    }
}

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

/// Counters of parts that are built without a handle to [`Metrics`] (the
/// alert sink, the control socket): process-wide, registered in every
/// [`Metrics`].
struct ProcessCounters {
    connections_refused: Family<Label, Counter>,
    alert_write_failures: Family<Label, Counter>,
}

static PROCESS: LazyLock<ProcessCounters> = LazyLock::new(|| {
    let connections_refused = Family::<Label, Counter>::default();
    for s in [Server::Metrics, Server::Control] {
        let _ = connections_refused.get_or_create(&[("server", s.as_str())]);
    }
    let alert_write_failures = Family::<Label, Counter>::default();
    for s in [SinkKind::File, SinkKind::Stdout] {
        let _ = alert_write_failures.get_or_create(&[("sink", s.as_str())]);
    }
    ProcessCounters { connections_refused, alert_write_failures }
});

/// One connection to `server` closed at once: it held its cap.
pub fn connection_refused(server: Server) {
    PROCESS.connections_refused.get_or_create(&[("server", server.as_str())]).inc();
}

/// One alert the sink failed to write.
pub fn alert_write_failed(sink: SinkKind) {
    PROCESS.alert_write_failures.get_or_create(&[("sink", sink.as_str())]).inc();
}

/// Logs refused connections: the first, then at most one line a minute.
pub(crate) fn warn_refused(server: Server, throttle: &Throttle, limits: ConnLimits) {
    if let Some(n) = throttle.hit() {
        log::warn!(
            "{}: {n} connections refused since the last warning: {} were open, the cap \
             (monitor_connections_refused_total counts them all)",
            server.as_str(),
            limits.max_connections
        );
    }
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
    totals: Arc<Totals>,
    attached: Arc<Attached>,
}

/// The interfaces attached to at the last read; `None` before it.
#[derive(Debug, Default)]
struct Attached(Mutex<Option<Vec<AttachedIface>>>);

/// Totals counted elsewhere, published as read.
#[derive(Debug, Default)]
struct Totals(Mutex<TotalsState>);

#[derive(Debug)]
struct TotalsState {
    rules: BTreeMap<String, RuleTraffic>,
    counters: BTreeMap<String, u64>,
    webhook: Option<WebhookStats>,
    /// Findings the de-duplicator folded past each class's budget.
    dedup_folded: [(Class, u64); 6],
}

impl Default for TotalsState {
    fn default() -> Self {
        TotalsState {
            rules: BTreeMap::new(),
            counters: BTreeMap::new(),
            webhook: None,
            dedup_folded: Class::ALL.map(|c| (c, 0)),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct RuleTraffic {
    packets: u64,
    bytes: u64,
    flows: u64,
    last_seen: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
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
        registry.register(
            "build",
            "The monitor's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register(
            "connections_refused",
            "Connections to a local server closed at once because it held its cap of connections, by server",
            PROCESS.connections_refused.clone(),
        );
        registry.register(
            "alert_write_failures",
            "Alerts the sink failed to write (a full disk, a closed pipe), by sink",
            PROCESS.alert_write_failures.clone(),
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

    /// The running totals of one matrix rule since the monitor started
    /// (absolute values, not increments) and its last flow's time.
    pub fn rule_traffic(&self, rule_id: &str, packets: u64, bytes: u64, flows: u64, last_seen: SystemTime) {
        let t = RuleTraffic {
            packets,
            bytes,
            flows,
            last_seen: last_seen.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64(),
        };
        let mut st = self.inner.totals.lock();
        match st.rules.get_mut(rule_id) {
            Some(r) => *r = t,
            None => {
                st.rules.insert(rule_id.to_owned(), t);
            }
        }
    }

    /// Forgets the per-rule series (after a reload: rules may have gone).
    pub fn clear_rules(&self) {
        self.inner.totals.lock().rules.clear();
    }

    /// Sets `monitor_kernel_events_total{counter=NAME}` to absolute values.
    pub fn set_counters<'a>(&self, counters: impl IntoIterator<Item = (&'a str, u64)>) {
        let mut st = self.inner.totals.lock();
        for (name, v) in counters {
            match st.counters.get_mut(name) {
                Some(c) => *c = v,
                None => {
                    st.counters.insert(name.to_owned(), v);
                }
            }
        }
    }

    /// Every kernel counter ([`Stat::name`]) and every user-space counter
    /// ([`UserStats`] field names).
    pub fn kernel_counters(&self, kernel: &KernelStats, user: &UserStats) {
        self.set_counters(Stat::ALL.iter().map(|s| (s.name(), kernel.get(*s))));
        self.set_counters(user_counters(user).iter().map(|(n, v)| (n.as_str(), *v)));
        self.interfaces(&kernel.interfaces);
    }

    /// The interfaces the programs are attached to now (they come and go
    /// with the host's links): `monitor_interfaces_attached` and one
    /// `monitor_interface_attached{iface,ingress}` series each.
    pub fn interfaces(&self, attached: &[AttachedIface]) {
        *self.inner.attached.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(attached.to_vec());
    }

    pub fn engine_latency(&self, d: Duration) {
        self.inner.engine_latency.observe(d.as_secs_f64());
    }

    pub fn alert_latency(&self, d: Duration) {
        self.inner.alert_latency.observe(d.as_secs_f64());
    }

    /// Sets `monitor_dedup_folded_total{class}` to absolute values.
    pub fn dedup_folded(&self, folded: &[(Class, u64); 6]) {
        self.inner.totals.lock().dedup_folded = *folded;
    }

    pub fn webhook(&self, stats: &WebhookStats) {
        self.inner.totals.lock().webhook = Some(*stats);
    }

    pub fn reload(&self, ok: bool) {
        self.inner.reloads.get_or_create(&[("result", if ok { "ok" } else { "error" })]).inc();
    }

    pub fn tracked_flows(&self, n: usize) {
        self.inner.tracked.set(i64::try_from(n).unwrap_or(i64::MAX));
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

    /// Binds `addr` and serves until `shutdown` turns true (or its sender
    /// is dropped).
    pub async fn serve(self, addr: SocketAddr, shutdown: watch::Receiver<bool>) -> Result<(), MetricsError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| MetricsError::Bind { addr, source })?;
        self.serve_on(listener, shutdown).await
    }

    /// As [`Metrics::serve`], on a bound listener, with [`ConnLimits::DEFAULT`].
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
        mut shutdown: watch::Receiver<bool>,
        limits: ConnLimits,
    ) -> Result<(), MetricsError> {
        let mut conns = JoinSet::new();
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let refused = Throttle::new(Duration::from_secs(60));
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => match slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            let conn = self.clone().connection(stream, shutdown.clone(), limits.request_timeout, slot);
                            conns.spawn(conn);
                        }
                        Err(_) => {
                            drop(stream);
                            connection_refused(Server::Metrics);
                            warn_refused(Server::Metrics, &refused, limits);
                        }
                    },
                    Err(e) => {
                        // Out of file descriptors and the like: pass, do not spin.
                        log::warn!("metrics: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = stopped(&mut shutdown) => break,
            }
            while conns.try_join_next().is_some() {}
        }
        // Scrapes in flight get a moment to finish.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while conns.join_next().await.is_some() {}
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

/// Resolves when `shutdown` turns true or its sender is gone; holds no
/// borrow of the value across an await (that would make futures !Send).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn verdict_name(v: VerdictKind) -> &'static str {
    match v {
        VerdictKind::Conforming => "conforming",
        VerdictKind::Unexpected => "unexpected",
        VerdictKind::Exposed => "exposed",
    }
}

/// The user-space counters by field name, so that a new field is published
/// without touching this module.
fn user_counters(user: &UserStats) -> Vec<(String, u64)> {
    match serde_json::to_value(user) {
        Ok(serde_json::Value::Object(m)) => {
            m.into_iter().filter_map(|(k, v)| v.as_u64().map(|v| (k, v))).collect()
        }
        _ => Vec::new(),
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
        let rules: [RuleCounter; 3] = [
            ("rule_packets", "Packets of flows a matrix rule documents, both directions.", |r| r.packets),
            ("rule_bytes", "Bytes of flows a matrix rule documents, both directions.", |r| r.bytes),
            ("rule_flows", "Flows a matrix rule documents.", |r| r.flows),
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
                ConstGauge::new(r.last_seen).encode(m.encode_family(&[("rule", id.as_str())])?)?;
            }
        }
        if !st.counters.is_empty() {
            let mut m = enc.encode_descriptor(
                "kernel_events",
                "Counters of the kernel programs and of the flow reader, by name (docs/deploy.md).",
                None,
                MetricType::Counter,
            )?;
            for (name, v) in &st.counters {
                ConstCounter::new(*v).encode(m.encode_family(&[("counter", name.as_str())])?)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "dedup_folded",
            "Findings folded into overflow alerts because their de-duplication class held its budget of keys, by class.",
            None,
            MetricType::Counter,
        )?;
        for (class, v) in st.dedup_folded {
            ConstCounter::new(v).encode(m.encode_family(&[("class", class.as_str())])?)?;
        }
        if let Some(w) = st.webhook {
            let m = enc.encode_descriptor(
                "webhook_sent",
                "Alerts the webhook accepted.",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(w.sent).encode(m)?;
            let mut m = enc.encode_descriptor(
                "webhook_dropped",
                "Alerts the webhook lost, by reason.",
                None,
                MetricType::Counter,
            )?;
            for (reason, v) in [
                ("queue_full", w.dropped_queue_full),
                ("after_retries", w.dropped_after_retries),
                ("shutdown", w.dropped_at_shutdown),
            ] {
                ConstCounter::new(v).encode(m.encode_family(&[("reason", reason)])?)?;
            }
        }
        Ok(())
    }
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

    #[test]
    fn user_counters_are_the_field_names() {
        let u = UserStats { events: 1, events_dropped: 2, flows_evicted: 3, ..UserStats::default() };
        let c: BTreeMap<String, u64> = user_counters(&u).into_iter().collect();
        assert_eq!(c["events"], 1);
        assert_eq!(c["events_dropped"], 2);
        assert_eq!(c["flows_evicted"], 3);
        for s in Stat::ALL {
            assert!(!c.contains_key(s.name()), "user counter {} shadows the kernel's", s.name());
        }
    }

    #[test]
    fn attached_interfaces_are_gauges() {
        use crate::kernel::IngressHook;
        let m = Metrics::new();
        assert!(!m.encode().contains("interfaces_attached"), "published before the first read");
        let iface = |name: &str, index| AttachedIface { name: name.into(), index, ingress: IngressHook::Tc };
        m.interfaces(&[iface("veth-a", 12), iface("eth0", 2)]);
        let om = m.encode();
        assert!(
            om.contains("# TYPE monitor_interfaces_attached gauge\nmonitor_interfaces_attached 2\n"),
            "{om}"
        );
        assert!(om.contains("monitor_interface_attached{iface=\"veth-a\",ingress=\"tc\"} 1\n"), "{om}");
        // One that went away leaves no series behind.
        m.interfaces(&[iface("eth0", 2)]);
        let om = m.encode();
        assert!(om.contains("monitor_interfaces_attached 1\n") && !om.contains("veth-a"), "{om}");
    }
}
