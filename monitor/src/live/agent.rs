//! The live agent behind `monitor run`: kernel flows to verdicts to alerts.
//!
//! One loop owns the judge, the de-duplicator and the coverage; the kernel
//! side runs in its own task (see `kernel::stream`), the webhook and the
//! metrics server in theirs, so that a slow consumer never stalls the kernel
//! side: what cannot be delivered is counted.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context;
use log::{error, info, warn};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::watch,
};

use super::{
    control::{self, ReportRequest},
    dedup::{Dedup, DedupOptions},
    judge::Judge,
    metrics::{Metrics, Snapshot},
    sink::{Format, Sink},
    webhook::{Webhook, WebhookOptions},
};
use crate::{
    alert::Alert,
    dns::{
        live::{Inputs, LiveNames},
        CacheOptions,
    },
    counters::Counters,
    engine::{Compiled, Sources},
    flow::{Clock, Flow},
    kernel::{
        stream::{self, FlowUpdate, StreamOptions, Table, UserStats},
        Kernel, KernelClock, KernelStats, LoadOptions,
    },
};

pub struct RunOptions {
    /// What to judge against, compiled at start and on every SIGHUP.
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
}

/// Everything an alert passes through on its way out.
struct Out {
    sink: Sink,
    webhook: Option<Webhook>,
    metrics: Metrics,
    dedup: Dedup,
}

impl Out {
    fn offer(&mut self, alert: Alert) {
        if let Some(a) = self.dedup.offer(alert, Instant::now()) {
            self.emit(&a);
        }
    }

    fn emit(&mut self, alert: &Alert) {
        self.metrics.alert(alert.kind);
        if let Ok(latency) = SystemTime::now().duration_since(alert.first_seen) {
            self.metrics.alert_latency(latency);
        }
        if let Err(e) = self.sink.write(alert) {
            error!("cannot write an alert: {e}");
        }
        if let Some(w) = &self.webhook {
            w.send(alert);
        }
    }
}

/// How long pending webhook deliveries may take after SIGTERM (docs/alerts.md).
const WEBHOOK_FLUSH: Duration = Duration::from_secs(5);

pub async fn run(opts: RunOptions) -> anyhow::Result<ExitCode> {
    let compiled = opts.sources.compile()?;
    for w in &compiled.warnings {
        warn!("{w}");
    }
    let metrics = Metrics::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(addr) = opts.metrics {
        // Bound here, so that a port in use is an error at start, not a log line later.
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("--metrics {addr}"))?;
        let (m, rx) = (metrics.clone(), stop_rx.clone());
        tokio::spawn(async move {
            if let Err(e) = m.serve_on(listener, rx).await {
                error!("metrics server on {addr}: {e}");
            }
        });
        info!("metrics on http://{addr}/metrics");
    }
    let webhook = match opts.webhook.clone() {
        Some(w) => Some(Webhook::spawn(w)?),
        None => None,
    };
    let (mut control_rx, _socket_guard) = match &opts.socket {
        Some(path) => {
            let (rx, guard) =
                control::serve(path).with_context(|| format!("control socket {}", path.display()))?;
            (Some(rx), Some(guard))
        }
        None => (None, None),
    };

    let kernel = Kernel::load(&opts.load)?;
    let (mut updates, stream_task) = stream::spawn(kernel, opts.stream.clone(), stop_rx)?;
    let sink = match &opts.alerts_out {
        Some(path) => {
            Sink::file(path, opts.format).with_context(|| format!("--alerts-out {}", path.display()))?
        }
        None => Sink::stdout(opts.format),
    };
    let mut out = Out {
        sink,
        webhook: webhook.as_ref().map(|(w, _)| w.clone()),
        metrics: metrics.clone(),
        dedup: Dedup::new(opts.dedup.clone()),
    };
    let Compiled { engine, matrix, inventory, selection, .. } = compiled;
    // Passive DNS: services placed by name bind what this host resolves.
    let mut names = LiveNames::new(Inputs { matrix, inventory, selection }, opts.dns);
    let clock = KernelClock::new();
    let mut judge = Judge::new(Arc::new(engine));

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // The kernel's and the reader's counters as of the last table read.
    let mut last_read: Option<(KernelStats, UserStats)> = None;
    // When SIGTERM or SIGINT came: the webhook's flush deadline counts from it.
    let mut stopping: Option<Instant> = None;
    info!(
        "watching; alerts go to {}",
        opts.alerts_out.as_ref().map_or("stdout".into(), |p| p.display().to_string())
    );

    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Some(FlowUpdate::Event(flow)) => {
                    if let Some(flow) = names.hold(&flow) {
                        judge_flow(&mut judge, &mut out, &names, flow);
                    }
                }
                Some(FlowUpdate::Table(table)) => {
                    judge_table(&mut judge, &mut out, &mut names, &table, clock.now_raw());
                    last_read = Some((table.kernel.clone(), table.user));
                    drop(table);
                    release_freed_memory();
                }
                Some(FlowUpdate::Dns(message)) => names.ingest(&message),
                None => break, // the stream ends after its last table
            },
            _ = sleep_until(names.due()) => {
                let (engine, flows) = names.rebuild();
                if let Some(engine) = engine {
                    judge.set_engine(Arc::new(engine));
                }
                for flow in &flows {
                    judge_flow(&mut judge, &mut out, &names, flow);
                }
            }
            _ = tick.tick() => {
                names.expire(clock.now_raw());
                for a in out.dedup.tick(Instant::now()) {
                    out.emit(&a);
                }
                publish(&judge, &out, &names, last_read.as_ref());
            }
            Some(req) = recv_request(&mut control_rx) => {
                let _ = req.reply.send(judge.coverage.report(judge.engine()));
            }
            _ = hup.recv() => reload(&opts.sources, &mut judge, &mut names, &out.metrics).await,
            _ = term.recv(), if stopping.is_none() => { stopping = Some(Instant::now()); let _ = stop_tx.send(true); }
            _ = int.recv(), if stopping.is_none() => { stopping = Some(Instant::now()); let _ = stop_tx.send(true); }
        }
    }
    // A stream that failed still leaves what was judged: flush and report it
    // below, then return the error (systemd restarts the agent).
    let streamed = match stream_task.await {
        Ok(r) => r.map_err(anyhow::Error::from),
        Err(e) => Err(anyhow::Error::from(e)),
    }
    .context("the flow stream stopped");
    if let Err(e) = &streamed {
        error!("{e:#}; writing the coverage report and pending alerts before exiting");
    }
    for a in out.dedup.flush() {
        out.emit(&a);
    }
    if let Some((w, task)) = webhook {
        drop(out.webhook.take());
        // The documented 5 s run from the signal, not from the end of the
        // last table read and the dedup flush.
        let stats = w.shutdown_by(stopping.unwrap_or_else(Instant::now) + WEBHOOK_FLUSH).await;
        let _ = task.await;
        info!("webhook: {stats:?}");
    }
    // The same coverage report `monitor report` gives, once more at exit.
    let report = judge.coverage.report(judge.engine());
    let line = match opts.format {
        Format::Json => serde_json::to_string(&report)?,
        Format::Text => report.to_text(),
    };
    out.sink.write_line(&line)?;
    let c = judge.counts;
    let blocked: u64 = judge.coverage.iter().map(|(_, u)| u.blocked).sum();
    info!(
        "{} flows: {} conforming, {} unexpected, {} exposed, {} exposed but unanswered, {} documented blocked; {} alerts emitted, {} repeats folded; losses: {}",
        c.flows, c.conforming, c.unexpected, c.exposed, c.exposed_unanswered, blocked, out.dedup.stats.emitted, out.dedup.stats.repeats, judge.coverage.losses
    );
    streamed.map(|()| ExitCode::SUCCESS)
}

/// A table pass allocates and frees tens of MB at 100k flows, across the
/// runtime's threads; glibc keeps freed arena memory mapped, so without
/// this the resident size stays at the peak of the largest pass.
fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn recv_request(rx: &mut Option<tokio::sync::mpsc::Receiver<ReportRequest>>) -> Option<ReportRequest> {
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

fn judge_flow(judge: &mut Judge, out: &mut Out, names: &LiveNames, flow: &Flow) {
    let judged = judge.observe(flow);
    if let Some(t) = judged.engine_time {
        out.metrics.engine_latency(t);
    }
    if let Some(v) = judged.new_flow {
        out.metrics.flow(v);
    }
    if let Some(mut alert) = judged.alert {
        names.annotate(&mut alert, judge.engine());
        out.offer(alert);
    }
}

fn judge_table(judge: &mut Judge, out: &mut Out, names: &mut LiveNames, table: &Table, now_ns: u64) {
    judge.begin_table();
    for flow in table.flows() {
        names.flow_seen(&flow, now_ns);
        match names.hold(&flow) {
            Some(flow) => judge_flow(judge, out, names, flow),
            // Held for a pending DNS rebuild: still in the table.
            None => judge.touch(&flow.key),
        }
    }
    // Evicted by the kernel from a full table since the last read: judged
    // once, as last known (their SYN may have timed out by now).
    for flow in table.evicted() {
        if let Some(flow) = names.hold(&flow) {
            judge_flow(judge, out, names, flow);
        }
    }
    judge.coverage.losses = table.losses();
    // Flows expired in the kernel are forgotten, but not on the last table:
    // its flows were not removed.
    if !table.last {
        judge.end_table();
    }
}

/// Publishes every total to the metrics: on the 1 s tick, whatever the
/// table interval.
fn publish(judge: &Judge, out: &Out, names: &LiveNames, read: Option<&(KernelStats, UserStats)>) {
    let webhook = out.webhook.as_ref().map(Webhook::stats);
    let mut parts: Vec<&dyn Counters> = Vec::with_capacity(5);
    if let Some((kernel, user)) = read {
        parts.extend([kernel as &dyn Counters, user]);
    }
    parts.extend([names as &dyn Counters, &out.dedup.stats, &webhook]);
    out.metrics.publish(&Snapshot {
        counters: &parts,
        rules: judge.coverage.in_force(judge.engine()),
        tracked_flows: judge.tracked(),
        interfaces: read.map(|(kernel, _)| kernel.interfaces.as_slice()),
    });
}

/// Reloads matrix and inventory together; a broken file keeps the old ones
/// in force. Counters are kept.
async fn reload(sources: &Sources, judge: &mut Judge, names: &mut LiveNames, metrics: &Metrics) {
    let sources = sources.clone();
    match tokio::task::spawn_blocking(move || sources.compile()).await {
        Ok(Ok(compiled)) => {
            for w in &compiled.warnings {
                warn!("reload: {w}");
            }
            let Compiled { engine, matrix, inventory, selection, .. } = compiled;
            // The new matrix may watch other names: compile again with what DNS bound.
            names.set_inputs(Inputs { matrix, inventory, selection });
            let engine = names.compile().unwrap_or(engine);
            judge.set_engine(Arc::new(engine));
            metrics.reload(true);
            info!("reloaded the matrix and the inventory (SIGHUP)");
        }
        Ok(Err(e)) => {
            metrics.reload(false);
            // As anyhow, `{:#}` prints the causes too.
            let e = anyhow::Error::from(e);
            error!("reload failed; the previous matrix and inventory stay in force: {e:#}");
        }
        Err(e) => {
            metrics.reload(false);
            error!("reload failed: {e}");
        }
    }
}
