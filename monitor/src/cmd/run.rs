//! `monitor run`: the live monitor. Watches the host's traffic and streams an
//! alert for every flow that departs from the documented matrix.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::mpsc,
};

use super::{duration::parse_duration, sources::EngineArgs};
use crate::{
    dns::CacheOptions,
    engine::Sources,
    kernel::{stream::StreamOptions, AttachMode, LoadOptions},
    live::{
        control::DEFAULT_SOCKET, dedup::DedupOptions, metrics::check_listen_addr, sink::Format,
        webhook::WebhookOptions, RunOptions,
    },
};

/// Watch this host's traffic and report, live, where it departs from the matrix.
///
/// Alerts (docs/alerts.md) go to stdout as JSON lines, or to --alerts-out, and
/// to --webhook. SIGHUP reloads the matrix and the inventory; SIGINT/SIGTERM
/// stop, after the last alerts and the coverage report.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// The agent's options besides what it judges against: `monitor run`'s,
/// and `monitor top`'s when it runs the agent itself. Those only an agent
/// has require `--matrix`, so that `monitor top` without one (attached to
/// a running agent) refuses them instead of ignoring them.
#[derive(Clone, Debug, clap::Args)]
pub struct AgentArgs {
    /// Interface to watch (repeatable). Default: every interface that is up, except loopback.
    #[arg(long = "iface", value_name = "IF", requires = "matrix")]
    pub ifaces: Vec<String>,
    /// How to attach the ingress program (docs/flows.md).
    #[arg(long, value_enum, default_value = "auto", requires = "matrix")]
    pub attach: AttachMode,
    /// How alerts are written: JSON lines, text, OCSF or Falco events (docs/alerts.md).
    #[arg(long, value_enum, default_value = "json", requires = "matrix")]
    pub format: Format,
    /// Append alerts to FILE instead of writing them to stdout.
    #[arg(long, value_name = "FILE", requires = "matrix")]
    pub alerts_out: Option<PathBuf>,
    /// Also POST alerts to URL: JSON arrays of the --format's events (Falco: one per POST); retries with backoff, a bounded queue, drops counted.
    #[arg(long, value_name = "URL", requires = "matrix")]
    pub webhook: Option<String>,
    /// How long a connection attempt may wait for an answer before a documented path counts as
    /// blocked: `500ms`, `2s`, `1m30s`, or a plain number of seconds.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration, requires = "matrix")]
    pub syn_timeout: Duration,
    /// One alert per (kind, client, server, port, protocol) per window of DURATION; repeats are counted.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration, requires = "matrix")]
    pub dedup_window: Duration,
    /// Distinct off-matrix flows one source may open per window before they fold into one scan alert.
    #[arg(long, value_name = "N", default_value_t = 32, requires = "matrix")]
    pub scan_threshold: u32,
    /// Time between reads of the whole flow table (counters, timeouts), at least 50ms;
    /// longer while a read takes more than an eighth of it (8 times the read's wall or
    /// process CPU time, the longer, up to 10s: `monitor_table_read_interval_seconds`). `monitor top` redraws at this pace
    /// (attached, at least 100ms).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Flow table size (entries).
    #[arg(long, default_value_t = monitor_common::FLOWS_MAX_ENTRIES, requires = "matrix")]
    pub max_flows: u32,
    /// Serve Prometheus metrics on ADDR (e.g. 127.0.0.1:9469). Off by default.
    #[arg(long, value_name = "ADDR", requires = "matrix")]
    pub metrics: Option<SocketAddr>,
    /// Allow --metrics on an address other than loopback.
    #[arg(long, requires = "matrix")]
    pub metrics_public: bool,
    /// How long a DNS answer's binding holds past its TTL (docs/dns.md).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration, requires = "matrix")]
    pub dns_grace: Duration,
    /// Control socket for `monitor report` and `monitor top` [default: /run/monitor/monitor.sock;
    /// `monitor top --matrix` makes a private one].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// This host's name in the inventory, for the fleet metrics (docs/metrics.md). Default: the host name.
    #[arg(long, value_name = "NAME", requires = "matrix")]
    pub node: Option<String>,
    /// Most documented paths (rule, client, server) labelled in the metrics; attempts past it are counted in monitor_path_overflow_total.
    #[arg(long, value_name = "N", default_value_t = crate::live::tally::MAX_PATHS, requires = "matrix")]
    pub max_paths: usize,
}

impl AgentArgs {
    /// The agent's options, judging against `sources`, with its control
    /// socket at `socket`.
    pub fn options(self, sources: Sources, socket: PathBuf) -> anyhow::Result<RunOptions> {
        if let Some(addr) = self.metrics {
            check_listen_addr(addr, self.metrics_public)?;
        }
        Ok(RunOptions {
            sources,
            load: LoadOptions { ifaces: self.ifaces, mode: self.attach, max_flows: self.max_flows },
            stream: StreamOptions {
                interval: self.interval.max(Duration::from_millis(50)),
                answer_timeout: self.syn_timeout,
                ..StreamOptions::default()
            },
            dedup: DedupOptions {
                window: self.dedup_window,
                scan_threshold: self.scan_threshold,
                ..DedupOptions::default()
            },
            format: self.format,
            alerts_out: self.alerts_out,
            webhook: self.webhook.map(|url| WebhookOptions::new(url).with_format(self.format)),
            metrics: self.metrics,
            socket: Some(socket),
            dns: CacheOptions { grace: self.dns_grace, ..CacheOptions::default() },
            node: match self.node {
                Some(node) => node,
                None => host_name().context("read the host name for --node (or pass --node NAME)")?,
            },
            max_paths: self.max_paths,
        })
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let socket = args.agent.socket.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let opts = args.agent.options(args.engine.sources()?, socket)?;
    with_agent_runtime(|reload| crate::live::run(opts, super::wait_for_shutdown_signal(), reload))
}

/// Runs `agent` on the agent's runtime, with its process-wide settings
/// (allocator, open files) made first. The signals are installed here, not
/// in the agent: SIGINT and SIGTERM are its shutdown (the caller passes
/// [`super::wait_for_shutdown_signal`]), SIGHUP a reload, sent on the
/// receiver `agent` is given.
pub fn with_agent_runtime<F, T>(agent: impl FnOnce(mpsc::Receiver<()>) -> F) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    pin_malloc_thresholds();
    match raise_nofile_limit() {
        Ok((before, after)) => {
            log::debug!("open files limit (RLIMIT_NOFILE): soft {before} raised to {after}")
        }
        Err(e) => log::warn!("cannot raise the open files limit (RLIMIT_NOFILE) to its hard limit: {e}"),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async {
        let mut hup = signal(SignalKind::hangup()).context("install the SIGHUP handler")?;
        let (reload_tx, reload) = mpsc::channel(1);
        let reloads = async move {
            while hup.recv().await.is_some() {
                // One pending reload covers any number of SIGHUPs meanwhile.
                let _ = reload_tx.try_send(());
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            done = agent(reload) => done,
            () = reloads => unreachable!("the SIGHUP loop never ends"),
        }
    })
}

/// The host name (`uname -n`), the default `--node`.
fn host_name() -> std::io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Raises the soft limit on open files to the hard one (systemd and most
/// shells leave it at 1024): the servers' connections are capped
/// (`ConnLimits`), but the kernel objects, interfaces and DNS sockets
/// should never meet a low soft limit at a reload. Returns the soft limit
/// before and after.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write `lim`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let before = lim.rlim_cur;
        if lim.rlim_cur != lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok((before, lim.rlim_cur))
    }
}

/// glibc raises its mmap threshold to the size of each large block freed
/// (up to 32 MiB) and its trim threshold to twice that, so after the first
/// table pass the per-pass tables (tens of MB at 100k flows) land in the
/// worker threads' arenas, whose free top is then never given back: the
/// resident size stayed ~19 MiB above the live heap. Pinned thresholds keep
/// large blocks in their own mappings, returned to the kernel when freed.
///
/// Each thread that allocates also gets an arena of its own (up to eight
/// per core), and under a long spoofed-source flood their fragments added
/// up: the peak grew with the flood's length, 97 MiB after 200,000 sources,
/// 109 MiB after 1,000,000, 128 MiB after 3,000,000 (`--max-flows 65536`).
/// Two arenas hold it at 96-98 MiB after 3,000,000 (tests/tests/sources.rs
/// with more sources). The environment (`MALLOC_ARENA_MAX`, ...) still wins.
fn pin_malloc_thresholds() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
