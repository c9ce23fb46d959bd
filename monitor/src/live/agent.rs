//! The live agent behind `monitor run`: kernel flows to verdicts to alerts.
//!
//! One loop waits on every input and hands it to the [`Pipeline`], which
//! owns the judge, the de-duplicator and the coverage. The kernel side
//! runs in its own task (see `kernel::stream`), the webhook, the metrics
//! server and the control socket in theirs, so that a slow consumer never
//! stalls the kernel side: what cannot be delivered is counted. Every one
//! of those tasks is owned by one [`JoinSet`] and drained, with a
//! deadline, before [`run`] returns (a scrape in flight at SIGTERM is
//! answered). The signals are the caller's: [`run`] is given a shutdown
//! future and a stream of reload requests, as a server is given its
//! listener and its shutdown (mini-redis's `server::run`).

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context;
use log::{error, info, warn};
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
};

use super::{
    control::{self, Query},
    coverage::Report,
    dedup::{Dedup, DedupOptions},
    metrics::Metrics,
    pipeline::{Out, Pipeline},
    sink::{Format, Sink},
    tally::Tally,
    webhook::{Webhook, WebhookOptions},
};
use crate::{
    dns::CacheOptions,
    engine::Sources,
    kernel::{
        stream::{self, FlowUpdate, StreamOptions},
        Kernel, LoadOptions,
    },
};

pub struct RunOptions {
    /// What to judge against, compiled at start and on every reload.
    pub sources: Sources,
    pub load: LoadOptions,
    pub stream: StreamOptions,
    pub dedup: DedupOptions,
    pub format: Format,
    pub alerts_out: Option<PathBuf>,
    pub webhook: Option<WebhookOptions>,
    pub metrics: Option<SocketAddr>,
    pub socket: Option<PathBuf>,
    /// Passive DNS cache: grace past TTL, bounds.
    pub dns: CacheOptions,
    /// This host's name in the inventory and the fleet (`--node`).
    pub node: String,
    /// Most documented paths labelled in the metrics (`--max-paths`).
    pub max_paths: usize,
}

/// How long pending webhook deliveries may take after SIGTERM (docs/alerts.md).
const WEBHOOK_FLUSH: Duration = Duration::from_secs(5);

/// How long the background tasks get to end once told to, past the
/// webhook's flush: the servers' connections drain within
/// [`super::serve::DRAIN`].
const TASKS_DRAIN: Duration = Duration::from_secs(3);

/// The agent's background tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Task {
    Stream,
    Metrics,
    Control,
    Webhook,
}

type Tasks = JoinSet<(Task, anyhow::Result<()>)>;

/// Runs the live monitor until `shutdown` resolves (then it finishes the
/// last table, the pending alerts and the coverage report) or the flow
/// stream fails. Each message on `reload` reloads the matrix and the
/// inventory (a broken file keeps the old ones).
pub async fn run(
    opts: RunOptions,
    shutdown: impl Future<Output = ()>,
    reload: mpsc::Receiver<()>,
) -> anyhow::Result<ExitCode> {
    run_to_end(opts, shutdown, reload).await.map(|_| ExitCode::SUCCESS)
}

/// How the agent ended: the coverage report it wrote last, and the
/// summary line it logged.
#[derive(Debug)]
pub struct Finished {
    pub report: Report,
    pub summary: String,
}

/// [`run`], returning the last coverage report (for `monitor top`, which
/// prints it once it has given the terminal back).
pub async fn run_to_end(
    opts: RunOptions,
    shutdown: impl Future<Output = ()>,
    mut reload: mpsc::Receiver<()>,
) -> anyhow::Result<Finished> {
    let compiled = opts.sources.compile()?;
    for w in &compiled.warnings {
        warn!("{w}");
    }
    if compiled.inventory.is_some() && !compiled.engine.has_host(&opts.node) {
        warn!(
            "warning: --node {}: no such host in the inventory, so the per-path metrics count this \
             host's flows as seen in transit, neither as client nor as server (docs/metrics.md); \
             pass --node with this host's inventory name",
            opts.node
        );
    }
    let metrics = Metrics::for_node(&opts.node);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Tasks::new();
    if let Some(addr) = opts.metrics {
        // Bound here, so that a port in use is an error at start, not a log line later.
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("--metrics {addr}"))?;
        let (m, rx) = (metrics.clone(), stop_rx.clone());
        tasks.spawn(async move {
            let served = m.serve_on(listener, rx).await;
            (Task::Metrics, served.with_context(|| format!("metrics server on {addr}")))
        });
        info!("metrics on http://{addr}/metrics");
    }
    let webhook = match opts.webhook.clone() {
        Some(w) => {
            let (hook, task) = Webhook::spawn(w)?;
            tasks.spawn(async move { (Task::Webhook, task.await.context("the webhook task")) });
            Some(hook)
        }
        None => None,
    };
    let (mut control_rx, _socket_guard) = match &opts.socket {
        Some(path) => {
            let (rx, guard, server) =
                control::serve(path).with_context(|| format!("control socket {}", path.display()))?;
            let stop = stop_rx.clone();
            tasks.spawn(async move {
                server.run(stop).await;
                (Task::Control, Ok(()))
            });
            (Some(rx), Some(guard))
        }
        None => (None, None),
    };

    let kernel = Kernel::load(&opts.load)?;
    let (mut updates, stream_task) = stream::spawn(kernel, opts.stream.clone(), stop_rx)?;
    tasks.spawn(async move {
        let streamed = match stream_task.await {
            Ok(r) => r.map_err(anyhow::Error::from),
            Err(e) => Err(anyhow::Error::from(e)),
        };
        (Task::Stream, streamed.context("the flow stream stopped"))
    });
    let sink = match &opts.alerts_out {
        Some(path) => {
            Sink::file(path, opts.format).with_context(|| format!("--alerts-out {}", path.display()))?
        }
        None => Sink::stdout(opts.format),
    };
    let out = Out { sink, webhook: webhook.clone(), metrics, dedup: Dedup::new(opts.dedup.clone()) };
    let tally = Tally::new(&opts.node, opts.max_paths);
    let mut pipeline = Pipeline::new(compiled, opts.dns, out, tally);

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(shutdown);
    // When shutdown came: the webhook's flush deadline counts from it.
    let mut stopping: Option<Instant> = None;
    let mut reloading = true;
    info!(
        "watching; alerts go to {}",
        opts.alerts_out.as_ref().map_or("stdout".into(), |p| p.display().to_string())
    );

    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Some(FlowUpdate::Event(flow)) => pipeline.event(&flow),
                Some(FlowUpdate::Chunk(chunk)) => pipeline.chunk(&chunk),
                Some(FlowUpdate::TableEnd(end)) => {
                    pipeline.table_end(&end);
                    drop(end);
                    release_freed_memory();
                }
                Some(FlowUpdate::Dns(message)) => pipeline.dns(&message),
                None => break, // the stream ends after its last table
            },
            _ = sleep_until(pipeline.dns_due()) => pipeline.dns_rebuild(),
            _ = tick.tick() => pipeline.tick(),
            Some(query) = recv_request(&mut control_rx) => match query {
                Query::Report(reply) => {
                    let _ = reply.send(pipeline.report());
                }
                Query::State(reply) => {
                    let _ = reply.send(Box::new(pipeline.state()));
                }
            },
            asked = reload.recv(), if reloading => match asked {
                Some(()) => {
                    let sources = opts.sources.clone();
                    match tokio::task::spawn_blocking(move || sources.compile()).await {
                        Ok(compiled) => pipeline.reloaded(compiled),
                        Err(e) => pipeline.reload_failed(&e.to_string()),
                    }
                }
                None => reloading = false,
            },
            () = &mut shutdown, if stopping.is_none() => {
                stopping = Some(Instant::now());
                let _ = stop_tx.send(true);
            }
        }
    }
    // The stream ended (told to, or failed): the servers stop too.
    let _ = stop_tx.send(true);
    if let Some(hook) = pipeline.flush() {
        drop(webhook);
        // The documented 5 s run from the signal, not from the end of the
        // last table read and the dedup flush.
        let stats = hook.shutdown_by(stopping.unwrap_or_else(Instant::now) + WEBHOOK_FLUSH).await;
        info!("webhook: {stats:?}");
    }
    // A stream that failed still leaves what was judged: report it below,
    // then return the error (systemd restarts the agent).
    let streamed = drain(&mut tasks, Instant::now() + TASKS_DRAIN).await;
    let (report, summary) = pipeline.finish()?;
    info!("{summary}");
    streamed.map(|()| Finished { report, summary })
}

/// Waits for every task until `deadline`, logging those that failed;
/// aborts (and names) those still running then. Returns the stream's result.
async fn drain(tasks: &mut Tasks, deadline: Instant) -> anyhow::Result<()> {
    let mut streamed = Ok(());
    loop {
        match tokio::time::timeout_at(deadline.into(), tasks.join_next()).await {
            Ok(None) => break,
            Ok(Some(Ok((Task::Stream, r)))) => {
                if let Err(e) = &r {
                    error!("{e:#}; writing the coverage report before exiting");
                }
                streamed = r;
            }
            Ok(Some(Ok((task, Err(e))))) => error!("{task:?}: {e:#}"),
            Ok(Some(Ok((_, Ok(()))))) => {}
            Ok(Some(Err(e))) => error!("a background task failed: {e}"),
            Err(_) => {
                warn!("{} background tasks still running at the shutdown deadline: stopped", tasks.len());
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    streamed
}

/// A table pass allocates and frees memory across the runtime's threads
/// (its chunks, the evicted flows, the judge's maps); glibc keeps freed
/// arena memory mapped, so without this the resident size stays at the
/// peak of the largest pass.
fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn recv_request(rx: &mut Option<tokio::sync::mpsc::Receiver<Query>>) -> Option<Query> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
