//! The webhook against real HTTP servers on 127.0.0.1: batches arrive whole
//! and in order, 503 and 429 are retried, other 4xx are not, a dead endpoint
//! never blocks `send` and every dropped alert is counted, shutdown flushes.

mod common;

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use monitor::{
    alert::{Alert, Kind},
    falco,
    live::{
        sink::Format,
        webhook::{Webhook, WebhookOptions},
    },
    ocsf,
    siem::Reporter,
};
use tokio::{io::AsyncReadExt, net::TcpListener};

fn alert(i: u16) -> Alert {
    common::alert(i, Kind::ALL[i as usize % 3])
}

#[derive(Default)]
struct Recorder {
    /// Content-Type and body of every request, in arrival order.
    requests: Mutex<Vec<(String, Bytes)>>,
    /// Statuses to answer with before answering 200.
    fail: Mutex<VecDeque<(u16, Option<&'static str>)>>,
    /// How long to think before answering.
    delay: Mutex<Duration>,
}

impl Recorder {
    fn requests(&self) -> Vec<(String, Bytes)> {
        self.requests.lock().unwrap().clone()
    }

    /// Alerts of every request, in order, each request parsed as a JSON array.
    fn alerts(&self) -> Vec<Vec<serde_json::Value>> {
        self.requests()
            .iter()
            .map(|(_, body)| {
                let v: serde_json::Value = serde_json::from_slice(body)
                    .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(body)));
                v.as_array().unwrap_or_else(|| panic!("body is not a JSON array: {v}")).clone()
            })
            .collect()
    }
}

/// An HTTP server on 127.0.0.1 that records every request.
async fn server(fail: &[(u16, Option<&'static str>)]) -> (String, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    rec.fail.lock().unwrap().extend(fail.iter().copied());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let r = rec.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let r = r.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let r = r.clone();
                    async move {
                        let ct = req
                            .headers()
                            .get("content-type")
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        r.requests.lock().unwrap().push((ct, body));
                        let delay = *r.delay.lock().unwrap();
                        tokio::time::sleep(delay).await;
                        let answer = r.fail.lock().unwrap().pop_front();
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"")));
                        if let Some((status, retry_after)) = answer {
                            *resp.status_mut() = status.try_into().unwrap();
                            if let Some(s) = retry_after {
                                resp.headers_mut().insert("retry-after", s.parse().unwrap());
                            }
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (format!("http://{addr}/hook/secret-token"), rec)
}

fn options(url: &str) -> WebhookOptions {
    WebhookOptions { linger: Duration::from_millis(50), ..WebhookOptions::new(url) }
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_arrive_whole_and_in_order() {
    let (url, rec) = server(&[]).await;
    let (hook, task) = Webhook::spawn(WebhookOptions { batch: 10, ..options(&url) }).unwrap();
    let sent: Vec<Alert> = (0..35).map(alert).collect();
    for a in &sent {
        hook.send(a);
    }
    let stats = hook.shutdown(Duration::from_secs(5)).await;
    task.await.unwrap();

    let batches = rec.alerts();
    assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 10), "batch sizes {:?}", sizes(&batches));
    let got: Vec<serde_json::Value> = batches.into_iter().flatten().collect();
    let want: Vec<serde_json::Value> =
        sent.iter().map(|a| serde_json::from_str(&a.to_json()).unwrap()).collect();
    assert_eq!(got, want, "the endpoint must get every alert, intact, in the order sent");
    for (ct, _) in rec.requests() {
        assert_eq!(ct, "application/json");
    }
    assert_eq!(stats.sent, 35);
    assert_eq!(stats.batches_ok, rec.requests().len() as u64);
    assert_eq!((stats.dropped(), stats.retries, stats.batches_failed), (0, 0, 0), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falco_events_go_one_per_post_and_ocsf_events_in_arrays() {
    let node = Reporter::new("rppam1");
    let sent: Vec<Alert> = (0..7).map(alert).collect();
    for (format, one_per_post) in [(Format::Falco, true), (Format::Ocsf, false)] {
        let (url, rec) = server(&[]).await;
        let opts = WebhookOptions { reporter: node.clone(), ..options(&url).with_format(format) };
        let (hook, task) = Webhook::spawn(opts).unwrap();
        for a in &sent {
            hook.send(a);
        }
        let stats = hook.shutdown(Duration::from_secs(5)).await;
        task.await.unwrap();
        let want: Vec<serde_json::Value> = sent
            .iter()
            .map(|a| match format {
                Format::Falco => falco::to_json(a, &node),
                _ => ocsf::to_json(a, &node),
            })
            .map(|e| serde_json::from_str(&e).unwrap())
            .collect();
        let bodies: Vec<serde_json::Value> =
            rec.requests().iter().map(|(_, b)| serde_json::from_slice(b).expect("JSON body")).collect();
        let got: Vec<serde_json::Value> = if one_per_post {
            // falcosidekick takes one event per request: no arrays.
            assert!(bodies.iter().all(|b| b.is_object()), "{format:?}: bodies {bodies:?}");
            bodies
        } else {
            assert!(bodies.iter().all(|b| b.is_array()), "{format:?}: bodies {bodies:?}");
            assert!(bodies.len() < sent.len(), "{format:?}: OCSF events are batched");
            bodies.into_iter().flat_map(|b| b.as_array().unwrap().clone()).collect()
        };
        assert_eq!(got, want, "{format:?}: every event, as the encoder writes it, in order");
        assert_eq!((stats.sent, stats.dropped()), (7, 0), "{format:?}: {stats:?}");
    }
}

fn sizes(b: &[Vec<serde_json::Value>]) -> Vec<usize> {
    b.iter().map(Vec::len).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_batch_leaves_after_the_linger_time() {
    let (url, rec) = server(&[]).await;
    let (hook, _task) =
        Webhook::spawn(WebhookOptions { linger: Duration::from_millis(200), ..options(&url) }).unwrap();
    for i in 0..3 {
        hook.send(&alert(i));
    }
    // No shutdown: only the linger timer can send this batch of 3 (of 100).
    // `sent` counts once the endpoint has answered.
    wait_for("the lingering batch", Duration::from_secs(10), || hook.stats().sent == 3).await;
    assert_eq!(sizes(&rec.alerts()), [3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_and_rate_limited_answers_are_retried() {
    let (url, rec) = server(&[(503, None), (429, Some("1"))]).await;
    let (hook, task) = Webhook::spawn(options(&url)).unwrap();
    for i in 0..4 {
        hook.send(&alert(i));
    }
    wait_for("delivery after two refusals", Duration::from_secs(20), || hook.stats().sent == 4).await;
    let stats = hook.shutdown(Duration::from_secs(5)).await;
    task.await.unwrap();

    let reqs = rec.requests();
    assert_eq!(reqs.len(), 3, "503, 429, then 200");
    assert!(reqs.iter().all(|(_, b)| *b == reqs[0].1), "every retry must carry the same batch");
    assert_eq!(sizes(&rec.alerts()), [4, 4, 4]);
    assert_eq!(
        (stats.sent, stats.batches_ok, stats.retries, stats.batches_failed, stats.dropped()),
        (4, 1, 2, 0, 0),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_is_not_retried_and_its_alerts_are_counted() {
    let (url, rec) = server(&[(400, None)]).await;
    let (hook, task) = Webhook::spawn(options(&url)).unwrap();
    for i in 0..5 {
        hook.send(&alert(i));
    }
    wait_for("the refused batch", Duration::from_secs(10), || hook.stats().batches_failed == 1).await;
    // The next batch goes through: the endpoint is not given up on.
    hook.send(&alert(5));
    let stats = hook.shutdown(Duration::from_secs(5)).await;
    task.await.unwrap();
    assert_eq!(sizes(&rec.alerts()), [5, 1]);
    assert_eq!(
        (stats.sent, stats.batches_failed, stats.dropped_after_retries, stats.retries),
        (1, 1, 5, 0),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_never_blocks_and_every_drop_is_counted() {
    // A loopback port nobody listens on: connections are refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hook");
    let (queue, batch) = (4, 2);
    let (hook, task) = Webhook::spawn(WebhookOptions { queue, batch, ..options(&url) }).unwrap();
    let late = hook.clone();

    const N: u64 = 1000;
    let start = Instant::now();
    for i in 0..N {
        hook.send(&alert(i as u16));
    }
    eprintln!("{N} sends to a dead endpoint took {:?}", start.elapsed());

    let during = hook.stats();
    // The worker holds at most one batch; the queue holds the rest.
    assert!(
        during.dropped_queue_full >= N - queue as u64 - batch as u64,
        "only the queue ({queue}) and one batch ({batch}) may be kept: {during:?}"
    );
    let stats = hook.shutdown(Duration::from_millis(300)).await;
    task.await.unwrap();
    assert_eq!(stats.sent, 0);
    assert_eq!(
        stats.dropped_queue_full + stats.dropped_after_retries + stats.dropped_at_shutdown,
        N,
        "every alert must be counted exactly once: {stats:?}"
    );
    assert!(stats.dropped_at_shutdown > 0, "the batch being retried is lost at shutdown: {stats:?}");

    late.send(&alert(0));
    assert_eq!(
        late.stats().dropped_at_shutdown,
        stats.dropped_at_shutdown + 1,
        "a send after shutdown is counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_without_waiting_for_the_linger_time() {
    let (url, rec) = server(&[]).await;
    let (hook, task) =
        Webhook::spawn(WebhookOptions { linger: Duration::from_secs(3600), batch: 4, ..options(&url) })
            .unwrap();
    for i in 0..10 {
        hook.send(&alert(i));
    }
    let stats = hook.shutdown(Duration::from_secs(5)).await;
    task.await.unwrap();
    assert_eq!(sizes(&rec.alerts()), [4, 4, 2]);
    assert_eq!((stats.sent, stats.dropped()), (10, 0), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_at_shutdown_completes_once() {
    let (url, rec) = server(&[]).await;
    *rec.delay.lock().unwrap() = Duration::from_millis(500);
    let (hook, task) = Webhook::spawn(options(&url)).unwrap();
    for i in 0..3 {
        hook.send(&alert(i));
    }
    wait_for("the request to arrive", Duration::from_secs(10), || !rec.requests().is_empty()).await;
    // The server is still thinking: shutdown must wait for this request,
    // not send the batch again.
    let stats = hook.shutdown(Duration::from_secs(5)).await;
    task.await.unwrap();
    assert_eq!(sizes(&rec.alerts()), [3], "one request, not a second copy");
    assert_eq!((stats.sent, stats.dropped()), (3, 0), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoints_speak_tls() {
    // A plain TCP listener: enough to see the client open with a TLS
    // handshake record (0x16, version 3.x), which proves the TLS stack and
    // its crypto provider are in place.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let first = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut b = [0u8; 3];
        s.read_exact(&mut b).await.unwrap();
        b
    });
    let (hook, task) = Webhook::spawn(options(&format!("https://127.0.0.1:{}/hook", addr.port()))).unwrap();
    hook.send(&alert(0));
    let b = tokio::time::timeout(Duration::from_secs(10), first).await.expect("no connection").unwrap();
    assert_eq!((b[0], b[1]), (0x16, 0x03), "expected a TLS ClientHello, got {b:02x?}");
    let stats = hook.shutdown(Duration::from_millis(200)).await;
    task.await.unwrap();
    assert_eq!((stats.sent, stats.dropped()), (0, 1), "{stats:?}");
}

#[tokio::test]
async fn bad_options_are_refused_with_a_clear_error() {
    let err = |o: WebhookOptions| Webhook::spawn(o).err().expect("must be refused").to_string();
    assert!(err(WebhookOptions::new("hooks.example.com/x")).contains("is not a URL"));
    assert!(err(WebhookOptions::new("file:///tmp/x")).contains("must be http or https"));
    assert!(err(WebhookOptions { queue: 0, ..WebhookOptions::new("http://127.0.0.1:1/") })
        .contains("queue size must be above zero"));
}

/// Every log line of this test binary, for the tests that check what is
/// logged (each filters by its own endpoint).
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Recording;

impl log::Log for Recording {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        LOGGED.lock().unwrap().push(format!("{} {}", r.level(), r.args()));
    }
    fn flush(&self) {}
}

fn logged(needle: &str) -> Vec<String> {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let _ = log::set_logger(&Recording);
        log::set_max_level(log::LevelFilter::Info);
    });
    LOGGED.lock().unwrap().iter().filter(|l| l.contains(needle)).cloned().collect()
}

/// A server that accepts connections and never answers.
async fn stalled_server() -> (String, tokio::task::JoinHandle<()>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (format!("http://{addr}/hook"), task, accepted)
}

/// `(since, in all)` of each queue-full warning.
fn drop_warnings(endpoint: &str) -> Vec<(u64, u64)> {
    logged(endpoint)
        .iter()
        .filter_map(|l| {
            let rest = l.split_once("queue full: ")?.1;
            let (since, rest) = rest.split_once(" alerts dropped since the last warning, ")?;
            let total = rest.split_once(" in all")?.0;
            Some((since.parse().unwrap(), total.parse().unwrap()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_full_warnings_carry_the_real_counts() {
    let _ = logged("");
    let (url, server, accepted) = stalled_server().await;
    let endpoint = url.trim_end_matches("/hook").to_owned();
    let every = Duration::from_millis(300);
    let (hook, task) =
        Webhook::spawn(WebhookOptions { queue: 10, batch: 1, drop_log_every: every, ..options(&url) })
            .unwrap();
    // The worker takes one alert and stalls on its request (for the 5 s
    // request timeout): from then on nothing leaves the queue, so what is
    // dropped below does not depend on when the worker ran.
    hook.send(&alert(0));
    wait_for("the first request", Duration::from_secs(5), || accepted.load(Ordering::SeqCst) > 0).await;
    // A burst: the first drop is warned about at once, the rest wait.
    for i in 0..4_200 {
        hook.send(&alert(i));
    }
    let burst = hook.stats().dropped_queue_full;
    assert_eq!(burst, 4_200 - 10, "a queue of 10 takes 10: {:?}", hook.stats());
    assert_eq!(drop_warnings(&endpoint), [(1, 1)], "one warning for the burst: {:?}", logged(&endpoint));
    // Past the interval, the next drop reports every drop since.
    tokio::time::sleep(every + Duration::from_millis(50)).await;
    hook.send(&alert(1));
    let w = drop_warnings(&endpoint);
    let total = hook.stats().dropped_queue_full;
    assert_eq!(total, burst + 1);
    assert_eq!(w, [(1, 1), (total - 1, total)], "{:?}", logged(&endpoint));
    hook.shutdown(Duration::from_millis(100)).await;
    task.await.unwrap();
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_stalled_request_ends_by_the_deadline() {
    let (url, server, _) = stalled_server().await;
    // The request's own timeout (5 s) is longer than the deadline.
    let (hook, task) = Webhook::spawn(WebhookOptions { batch: 1, ..options(&url) }).unwrap();
    for i in 0..3 {
        hook.send(&alert(i));
    }
    // Let the first request go out and stall.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deadline = Duration::from_secs(1);
    let start = Instant::now();
    let stats = hook.shutdown(deadline).await;
    task.await.unwrap();
    let took = start.elapsed();
    assert!(
        took < deadline + Duration::from_millis(300),
        "shutdown took {took:?}, the deadline is {deadline:?}"
    );
    assert_eq!((stats.sent, stats.dropped_at_shutdown), (0, 3), "{stats:?}");
    server.abort();
}
