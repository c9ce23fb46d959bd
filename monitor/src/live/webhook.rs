//! Alerts to an HTTP endpoint (`--webhook URL`): JSON arrays of alert
//! objects, POSTed in batches by one background task.
//!
//! The data path must never wait for a slow or dead endpoint, so [`Webhook::send`]
//! only puts the serialised alert on a bounded queue; when the queue is full
//! the alert is dropped and counted. Batches leave in order, one at a time,
//! retried with exponential backoff and jitter on connection errors,
//! timeouts, 429 and 5xx. Every alert is accounted for in [`WebhookStats`]:
//! delivered, dropped because the queue was full, dropped after the endpoint
//! refused it or the retries ran out, or lost at shutdown.

use std::{
    collections::hash_map::RandomState,
    hash::BuildHasher,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::{BufMut, Bytes, BytesMut};
use reqwest::{header, redirect, StatusCode, Url};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::{sink::Format, throttle::Throttle};
use crate::{
    alert::Alert,
    counters::{Counters, Emit, Family},
    siem::Reporter,
};

/// Attempts per batch, the first included: with the default backoff (0.5 s
/// doubling to 30 s) a batch is given up after about two minutes.
pub const MAX_ATTEMPTS: u32 = 10;
/// First retry delay; it doubles up to `max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// At most one warning per this interval about failed requests.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// After the first, at most one warning per this interval about alerts
/// dropped because the queue was full ([`WebhookOptions::drop_log_every`]).
pub const DROP_LOG_EVERY: Duration = Duration::from_secs(60);
/// How long [`Webhook::shutdown`] waits past its deadline for a worker
/// that has not said it finished (it keeps to the deadline itself).
const SHUTDOWN_GRACE: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
pub struct WebhookOptions {
    /// http:// or https:// endpoint.
    pub url: String,
    /// Alerts waiting to be sent; more are dropped (and counted).
    pub queue: usize,
    /// Alerts per POST at most.
    pub batch: usize,
    /// How long the first alert of a batch waits for more.
    pub linger: Duration,
    /// Per request, connecting included.
    pub timeout: Duration,
    /// Ceiling of the retry delay.
    pub max_backoff: Duration,
    /// Queue-full warnings: the first drop, then at most one per this, with
    /// the drops since the last one and in all.
    pub drop_log_every: Duration,
    /// How each alert is encoded (`--format`; text is sent as JSON). Falco
    /// events go one per POST, as falcosidekick takes them; the others in
    /// JSON arrays.
    pub format: Format,
    /// The node named in OCSF and Falco events.
    pub reporter: Reporter,
}

impl WebhookOptions {
    /// The defaults: a queue of 10,000, batches of up to 100 alerts or 1 s,
    /// 5 s per request, backoff up to 30 s.
    pub fn new(url: impl Into<String>) -> WebhookOptions {
        WebhookOptions {
            url: url.into(),
            queue: 10_000,
            batch: 100,
            linger: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(30),
            drop_log_every: DROP_LOG_EVERY,
            format: Format::Json,
            reporter: Reporter::local(),
        }
    }

    /// These options with alerts encoded as `format`.
    pub fn with_format(self, format: Format) -> WebhookOptions {
        WebhookOptions { format, ..self }
    }

    /// Whether each POST carries one event, not an array.
    fn one_per_post(&self) -> bool {
        self.format == Format::Falco
    }

    /// The body of one POST: the event alone (one per POST: `spawn` makes
    /// such batches of one), else the batch as a JSON array.
    fn body(&self, batch: &mut Vec<String>) -> Bytes {
        match batch.pop() {
            Some(event) if self.one_per_post() && batch.is_empty() => Bytes::from(event),
            last => {
                batch.extend(last);
                json_array(batch)
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(
        "--webhook `{url}` is not a URL: {reason}; give a full URL such as https://alerts.example.com/hook"
    )]
    NotAUrl { url: String, reason: String },
    #[error("--webhook `{url}`: the scheme must be http or https, not `{scheme}`")]
    Scheme { url: String, scheme: String },
    #[error("--webhook `{0}` names no host")]
    NoHost(String),
    #[error("--webhook: {0} must be above zero")]
    Zero(&'static str),
    #[error("--webhook: building the HTTP client failed: {0}")]
    Client(#[source] reqwest::Error),
}

/// What the webhook did with the alerts it was given. Every alert passed to
/// [`Webhook::send`] ends in exactly one of `sent` and the `dropped_*`
/// counters, or is still queued or in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WebhookStats {
    /// Alerts the endpoint accepted (2xx).
    pub sent: u64,
    pub batches_ok: u64,
    /// Batches given up: refused with a 4xx other than 429, redirected, or
    /// still failing after [`MAX_ATTEMPTS`].
    pub batches_failed: u64,
    /// Requests repeated after a retryable failure.
    pub retries: u64,
    /// Alerts dropped by `send` because the queue was full.
    pub dropped_queue_full: u64,
    /// Alerts in the failed batches.
    pub dropped_after_retries: u64,
    /// Alerts still queued or in flight when the shutdown deadline passed,
    /// or sent after shutdown began.
    pub dropped_at_shutdown: u64,
}

/// `monitor_webhook_sent_total`.
pub static WEBHOOK_SENT: Family =
    Family { name: "webhook_sent", help: "Alerts the webhook accepted.", label: "" };
/// `monitor_webhook_dropped_total{reason}`.
pub static WEBHOOK_DROPPED: Family =
    Family { name: "webhook_dropped", help: "Alerts the webhook lost, by reason.", label: "reason" };
/// `monitor_webhook_batches_total{result}`.
pub static WEBHOOK_BATCHES: Family = Family {
    name: "webhook_batches",
    help: "Batches the webhook delivered (ok) or gave up (failed), by result.",
    label: "result",
};
/// `monitor_webhook_retries_total`.
pub static WEBHOOK_RETRIES: Family = Family {
    name: "webhook_retries",
    help: "Webhook requests repeated after a retryable failure.",
    label: "",
};

impl Counters for WebhookStats {
    fn counters(&self, emit: &mut Emit<'_>) {
        let WebhookStats {
            sent,
            batches_ok,
            batches_failed,
            retries,
            dropped_queue_full,
            dropped_after_retries,
            dropped_at_shutdown,
        } = *self;
        emit(&WEBHOOK_SENT, "", sent);
        emit(&WEBHOOK_DROPPED, "queue_full", dropped_queue_full);
        emit(&WEBHOOK_DROPPED, "after_retries", dropped_after_retries);
        emit(&WEBHOOK_DROPPED, "shutdown", dropped_at_shutdown);
        emit(&WEBHOOK_BATCHES, "ok", batches_ok);
        emit(&WEBHOOK_BATCHES, "failed", batches_failed);
        emit(&WEBHOOK_RETRIES, "", retries);
    }
}

impl WebhookStats {
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_after_retries + self.dropped_at_shutdown
    }
}

#[derive(Default)]
struct Tallies {
    sent: AtomicU64,
    batches_ok: AtomicU64,
    batches_failed: AtomicU64,
    retries: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_after_retries: AtomicU64,
    dropped_at_shutdown: AtomicU64,
}

struct Shared {
    counters: Tallies,
    /// scheme://host:port only: paths and queries of webhooks often hold secrets.
    endpoint: String,
    /// Queue-full drops not yet warned about.
    drops: Throttle,
    /// Set by `shutdown`: from then on the worker sends what is queued
    /// without lingering, until this instant.
    stop: watch::Sender<Option<Instant>>,
    /// Set by the worker when it has finished.
    done: watch::Sender<bool>,
    /// How alerts are encoded before they are queued (the handle encodes).
    format: Format,
    reporter: Reporter,
}

/// A cheap handle to the webhook task.
#[derive(Clone)]
pub struct Webhook {
    tx: mpsc::Sender<String>,
    shared: Arc<Shared>,
}

impl Webhook {
    /// Checks the options and starts the background task (inside a Tokio
    /// runtime). The task ends after [`Webhook::shutdown`], or when every
    /// handle is dropped and the queue is sent.
    pub fn spawn(mut opts: WebhookOptions) -> Result<(Webhook, JoinHandle<()>), WebhookError> {
        let url = check_url(&opts.url)?;
        if opts.one_per_post() {
            opts.batch = 1;
        }
        for (name, zero) in [
            ("the queue size", opts.queue == 0),
            ("the batch size", opts.batch == 0),
            ("the request timeout", opts.timeout.is_zero()),
        ] {
            if zero {
                return Err(WebhookError::Zero(name));
            }
        }
        install_tls_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("monitor/", env!("CARGO_PKG_VERSION")))
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            // A redirected POST may turn into a GET without its body: refuse it.
            .redirect(redirect::Policy::none())
            .build()
            .map_err(WebhookError::Client)?;
        let (tx, rx) = mpsc::channel(opts.queue);
        let shared = Arc::new(Shared {
            counters: Tallies::default(),
            endpoint: endpoint(&url),
            drops: Throttle::new(opts.drop_log_every),
            stop: watch::channel(None).0,
            done: watch::channel(false).0,
            format: opts.format,
            reporter: opts.reporter.clone(),
        });
        let worker = Worker {
            client,
            url,
            opts,
            rx,
            shared: shared.clone(),
            jitter: RandomState::new(),
            attempts: 0,
            last_fail_log: None,
        };
        let task = tokio::spawn(worker.run());
        Ok((Webhook { tx, shared }, task))
    }

    /// Queues `alert`; never waits. A full queue drops it (counted, and
    /// warned about: the first, then at most once a minute with the counts).
    pub fn send(&self, alert: &Alert) {
        // Reserve first: a full queue costs no serialisation.
        match self.tx.try_reserve() {
            Ok(permit) => permit.send(self.shared.encode(alert)),
            Err(mpsc::error::TrySendError::Full(())) => {
                self.shared.counters.dropped_queue_full.fetch_add(1, Relaxed);
                if let Some(since) = self.shared.drops.hit() {
                    self.shared.warn_drops(since);
                }
            }
            Err(mpsc::error::TrySendError::Closed(())) => {
                self.shared.counters.dropped_at_shutdown.fetch_add(1, Relaxed);
            }
        }
    }

    pub fn stats(&self) -> WebhookStats {
        self.shared.stats()
    }

    /// Sends what is queued, without waiting for more, for at most
    /// `deadline`; what is left then is dropped and counted. Returns the
    /// final counts and logs them.
    pub async fn shutdown(self, deadline: Duration) -> WebhookStats {
        self.shutdown_by(Instant::now() + deadline).await
    }

    /// As [`Webhook::shutdown`], ending by `until`: the drain, a request
    /// in flight and its retries included, stop then (no request's own
    /// timeout runs past it), and the worker task ends with them.
    pub async fn shutdown_by(self, until: Instant) -> WebhookStats {
        self.shared.stop.send_replace(Some(until));
        let mut done = self.shared.done.subscribe();
        // The worker keeps to the deadline itself; the grace only guards
        // against a worker that is gone (panicked or aborted).
        let waited = tokio::time::timeout_at((until + SHUTDOWN_GRACE).into(), done.wait_for(|d| *d)).await;
        let stats = self.shared.stats();
        if !matches!(waited, Ok(Ok(_))) {
            log::error!("webhook {}: the sender task did not finish", self.shared.endpoint);
        }
        let level = if stats.dropped() > 0 { log::Level::Warn } else { log::Level::Info };
        log::log!(
            level,
            "webhook {}: {} alerts delivered in {} batches; dropped {} (queue full {}, refused or out of \
             retries {}, at shutdown {}); {} retries",
            self.shared.endpoint,
            stats.sent,
            stats.batches_ok,
            stats.dropped(),
            stats.dropped_queue_full,
            stats.dropped_after_retries,
            stats.dropped_at_shutdown,
            stats.retries
        );
        stats
    }
}

impl Shared {
    /// One alert as the webhook sends it: text is sent as JSON.
    fn encode(&self, alert: &Alert) -> String {
        match self.format {
            Format::Text => alert.to_json(),
            f => f.encode(alert, &self.reporter),
        }
    }

    fn warn_drops(&self, since: u64) {
        log::warn!(
            "webhook {}: queue full: {since} alerts dropped since the last warning, {} in all (the endpoint \
             is down or too slow)",
            self.endpoint,
            self.counters.dropped_queue_full.load(Relaxed)
        );
    }

    fn stats(&self) -> WebhookStats {
        let c = &self.counters;
        WebhookStats {
            sent: c.sent.load(Relaxed),
            batches_ok: c.batches_ok.load(Relaxed),
            batches_failed: c.batches_failed.load(Relaxed),
            retries: c.retries.load(Relaxed),
            dropped_queue_full: c.dropped_queue_full.load(Relaxed),
            dropped_after_retries: c.dropped_after_retries.load(Relaxed),
            dropped_at_shutdown: c.dropped_at_shutdown.load(Relaxed),
        }
    }
}

/// Makes ring the process's TLS crypto provider. reqwest is built without
/// one of its own (which would pull in aws-lc), and `reqwest::Client::new`
/// panics until one is installed: call this before building any client.
/// Idempotent; a provider installed earlier stays.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn check_url(raw: &str) -> Result<Url, WebhookError> {
    let url =
        Url::parse(raw).map_err(|e| WebhookError::NotAUrl { url: raw.to_string(), reason: e.to_string() })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(WebhookError::Scheme { url: raw.to_string(), scheme: url.scheme().to_string() });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(WebhookError::NoHost(raw.to_string()));
    }
    Ok(url)
}

/// The part of the URL that is safe to log.
fn endpoint(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{}://{host}:{p}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// How one attempt ended.
enum Attempt {
    Delivered,
    /// Worth trying again; `after` is the server's Retry-After, if any.
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// Trying again would not help.
    Refused(String),
}

struct Worker {
    client: reqwest::Client,
    url: Url,
    opts: WebhookOptions,
    rx: mpsc::Receiver<String>,
    shared: Arc<Shared>,
    jitter: RandomState,
    attempts: u64,
    last_fail_log: Option<Instant>,
}

impl Worker {
    async fn run(mut self) {
        let mut stop = self.shared.stop.subscribe();
        let mut batch: Vec<String> = Vec::with_capacity(self.opts.batch);
        loop {
            let deadline = *stop.borrow_and_update();
            if let Some(until) = deadline {
                self.flush(until).await;
                break;
            }
            // Wait for the first alert of a batch, or for shutdown.
            // Biased: queued alerts are taken before a shutdown is noticed,
            // so that batches stay full.
            let first = tokio::select! {
                biased;
                a = self.rx.recv() => a,
                _ = stop.changed() => continue,
            };
            let Some(first) = first else { break }; // every handle is gone and the queue is empty
            batch.push(first);
            let linger_until = tokio::time::Instant::now() + self.opts.linger;
            while batch.len() < self.opts.batch {
                tokio::select! {
                    biased;
                    a = self.rx.recv() => match a {
                        Some(a) => batch.push(a),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(linger_until) => break,
                    _ = stop.changed() => break,
                }
            }
            let n = batch.len() as u64;
            let body = self.opts.body(&mut batch);
            let stop_at = *stop.borrow();
            match stop_at {
                None => {
                    let shared = self.shared.clone();
                    let delivery = self.deliver(body, n);
                    tokio::pin!(delivery);
                    tokio::select! {
                        biased;
                        _ = &mut delivery => {}
                        // Shutdown while sending or retrying: the same delivery
                        // goes on (a request in flight is not sent twice),
                        // within the deadline.
                        _ = stop.changed() => {
                            let until = stop.borrow().unwrap_or_else(Instant::now);
                            let until = tokio::time::Instant::from_std(until);
                            if tokio::time::timeout_at(until, delivery).await.is_err() {
                                shared.counters.dropped_at_shutdown.fetch_add(n, Relaxed);
                            }
                        }
                    }
                }
                Some(until) => {
                    self.deliver_until(body, n, until).await;
                }
            }
            // Drops while this batch was out, if no send has warned of them.
            if let Some(since) = self.shared.drops.pending() {
                self.shared.warn_drops(since);
            }
        }
        self.shared.done.send_replace(true);
    }

    /// Shutdown: no more lingering; send full batches of what is queued
    /// until `until`, and count the rest as lost.
    async fn flush(&mut self, until: Instant) {
        // Alerts sent from now on are counted as dropped at shutdown by `send`.
        self.rx.close();
        let mut batch = Vec::with_capacity(self.opts.batch);
        loop {
            while batch.len() < self.opts.batch {
                match self.rx.try_recv() {
                    Ok(a) => batch.push(a),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
            let n = batch.len() as u64;
            let body = self.opts.body(&mut batch);
            if !self.deliver_until(body, n, until).await {
                let mut left = 0;
                while self.rx.try_recv().is_ok() {
                    left += 1;
                }
                self.shared.counters.dropped_at_shutdown.fetch_add(left, Relaxed);
                return;
            }
        }
    }

    /// [`Worker::deliver`] cut short at `until`; a batch still unsent then
    /// is lost at shutdown. False when the deadline passed.
    async fn deliver_until(&mut self, body: Bytes, n: u64, until: Instant) -> bool {
        let until = tokio::time::Instant::from_std(until);
        if tokio::time::timeout_at(until, self.deliver(body, n)).await.is_ok() {
            true
        } else {
            self.shared.counters.dropped_at_shutdown.fetch_add(n, Relaxed);
            false
        }
    }

    /// POSTs one batch, retrying with backoff; counts the outcome. A
    /// caller that cancels it counts the batch as lost.
    async fn deliver(&mut self, body: Bytes, n: u64) {
        let shared = self.shared.clone();
        let c = &shared.counters;
        let mut backoff = FIRST_BACKOFF.min(self.opts.max_backoff);
        for attempt in 1..=MAX_ATTEMPTS {
            let why = match self.attempt(body.clone()).await {
                Attempt::Delivered => {
                    c.sent.fetch_add(n, Relaxed);
                    c.batches_ok.fetch_add(1, Relaxed);
                    return;
                }
                Attempt::Refused(why) => {
                    self.give_up(n, &why);
                    return;
                }
                Attempt::Retry { why, after } if attempt < MAX_ATTEMPTS => {
                    let delay = after
                        .unwrap_or(Duration::ZERO)
                        .max(self.jittered(backoff))
                        .min(self.opts.max_backoff);
                    self.warn_failure(&format!("{why}; retrying in {:.1} s", delay.as_secs_f64()));
                    tokio::time::sleep(delay).await;
                    backoff = (backoff * 2).min(self.opts.max_backoff);
                    c.retries.fetch_add(1, Relaxed);
                    continue;
                }
                Attempt::Retry { why, .. } => why,
            };
            self.give_up(n, &format!("{why} (after {MAX_ATTEMPTS} attempts)"));
        }
    }

    async fn attempt(&mut self, body: Bytes) -> Attempt {
        self.attempts += 1;
        let mut request =
            self.client.post(self.url.clone()).header(header::CONTENT_TYPE, "application/json").body(body);
        // Shutting down: the request's own timeout ends by the deadline too.
        if let Some(until) = *self.shared.stop.borrow() {
            let left = until.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            request = request.timeout(left.min(self.opts.timeout));
        }
        let sent = request.send().await;
        let resp = match sent {
            Ok(r) => r,
            // Builder errors are ours and will not go away; the rest
            // (connect, timeout, reset) may.
            Err(e) if e.is_builder() => return Attempt::Refused(e.without_url().to_string()),
            Err(e) => return Attempt::Retry { why: error_chain(&e.without_url()), after: None },
        };
        let status = resp.status();
        if status.is_success() {
            return Attempt::Delivered;
        }
        let after = retry_after(resp.headers());
        let location = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = resp.text().await.unwrap_or_default();
        let detail: String = text.chars().take(200).collect();
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Attempt::Retry { why: format!("HTTP {status}: {detail}"), after }
        } else if status.is_redirection() {
            Attempt::Refused(format!(
                "HTTP {status}, redirected to {}: give --webhook the final URL",
                location.as_deref().unwrap_or("?")
            ))
        } else {
            Attempt::Refused(format!("HTTP {status}: {detail}"))
        }
    }

    fn give_up(&mut self, n: u64, why: &str) {
        let c = &self.shared.counters;
        c.batches_failed.fetch_add(1, Relaxed);
        c.dropped_after_retries.fetch_add(n, Relaxed);
        // Losing alerts is always worth a line, but not a flood of them.
        self.warn_failure(&format!("{why}; {n} alerts dropped"));
    }

    fn warn_failure(&mut self, what: &str) {
        if self.last_fail_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            self.last_fail_log = Some(Instant::now());
            let s = self.shared.stats();
            log::warn!("webhook {}: {what} ({} alerts dropped so far)", self.shared.endpoint, s.dropped());
        }
    }

    /// Half the delay fixed, half random: retries of many monitors behind
    /// one endpoint do not arrive in lockstep.
    fn jittered(&self, d: Duration) -> Duration {
        let r = self.jitter.hash_one(self.attempts) as f64 / u64::MAX as f64;
        d.mul_f64(0.5 + 0.5 * r)
    }
}

/// `[a,b,...]` from alerts already serialised; empties `batch`.
fn json_array(batch: &mut Vec<String>) -> Bytes {
    let len = batch.iter().map(|a| a.len() + 1).sum::<usize>() + 2;
    let mut b = BytesMut::with_capacity(len);
    b.put_u8(b'[');
    for (i, a) in batch.drain(..).enumerate() {
        if i > 0 {
            b.put_u8(b',');
        }
        b.put_slice(a.as_bytes());
    }
    b.put_u8(b']');
    b.freeze()
}

/// Retry-After in seconds (the HTTP-date form is rare for webhooks and
/// falls back to our own backoff).
fn retry_after(h: &header::HeaderMap) -> Option<Duration> {
    let secs: u64 = h.get(header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// reqwest's top error says "error sending request"; the cause says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_with_a_clear_error() {
        let err = |u: &str| check_url(u).unwrap_err().to_string();
        assert!(
            err("alerts.example.com/hook").contains("is not a URL"),
            "{}",
            err("alerts.example.com/hook")
        );
        assert!(err("ftp://h/x").contains("scheme must be http or https, not `ftp`"));
        assert!(check_url("https://h.example:8443/a?b=c").is_ok());
        assert!(check_url("http://127.0.0.1:9/").is_ok());
    }

    #[test]
    fn only_scheme_host_and_port_are_logged() {
        let u = Url::parse("https://user:secret@hooks.example.com/services/T0/B0/token?k=v").unwrap();
        assert_eq!(endpoint(&u), "https://hooks.example.com");
        let u = Url::parse("http://127.0.0.1:8080/x").unwrap();
        assert_eq!(endpoint(&u), "http://127.0.0.1:8080");
    }

    #[test]
    fn batches_are_json_arrays() {
        let mut b = vec![r#"{"a":1}"#.to_string(), r#"{"b":2}"#.to_string()];
        let body = json_array(&mut b);
        assert_eq!(&body[..], br#"[{"a":1},{"b":2}]"#);
        assert!(b.is_empty());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn retry_after_seconds() {
        let mut h = header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
