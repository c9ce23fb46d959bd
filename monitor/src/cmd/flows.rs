//! `monitor flows`: a live table of every flow on the host.

use std::{io::Write, process::ExitCode, time::Duration};

use anyhow::{Context, Result};
use tokio::sync::watch;

use super::duration::parse_duration;
use crate::{
    counters::Counters,
    flow::Flow,
    kernel::{
        stream::{self, Chunk, FlowUpdate, StreamOptions, TableEnd},
        AttachMode, Kernel, LoadOptions,
    },
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per flow per line (schema: docs/flows.md).
    Json,
    /// An aligned table for terminals.
    Text,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface to watch (repeatable). Default: every interface that is up, except loopback.
    #[arg(long = "iface", value_name = "IF")]
    pub ifaces: Vec<String>,
    /// How to attach the ingress program.
    #[arg(long, value_enum, default_value = "auto")]
    pub attach: AttachMode,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Print the table every DURATION, no more often than every 100ms, and
    /// once more on exit: `500ms`, `2s`, `1m`, or a plain number of seconds.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Flow table size (entries); the least recently used flow is evicted
    /// when it is full, and evictions are counted.
    #[arg(long, default_value_t = monitor_common::FLOWS_MAX_ENTRIES)]
    pub max_flows: u32,
    /// How long a client waits for an answer before its flow is `unanswered`.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub syn_timeout: Duration,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(run_async(args))
}

async fn run_async(args: Args) -> Result<ExitCode> {
    let kernel = Kernel::load(&LoadOptions {
        ifaces: args.ifaces.clone(),
        mode: args.attach,
        max_flows: args.max_flows,
    })?;
    let opts = StreamOptions {
        interval: args.interval.max(Duration::from_millis(100)),
        answer_timeout: args.syn_timeout,
        ..StreamOptions::default()
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let (mut rx, task) = stream::spawn(kernel, opts, stop_rx)?;
    tokio::spawn(async move {
        crate::cmd::wait_for_shutdown_signal().await;
        let _ = stop_tx.send(true);
    });

    let mut out = std::io::stdout().lock();
    let mut printer = Printer { format: args.format, rows: None };
    while let Some(update) = rx.recv().await {
        match update {
            FlowUpdate::Chunk(chunk) => printer.chunk(&mut out, &chunk)?,
            FlowUpdate::TableEnd(end) => printer.end(&mut out, &end)?,
            FlowUpdate::Event(_) | FlowUpdate::Dns(_) => {}
        }
    }
    drop(out);
    task.await.context("flow stream task")??;
    Ok(ExitCode::SUCCESS)
}

/// Prints each table read as its chunks come, and its end.
struct Printer {
    format: Format,
    /// The rows printed of the read under way, once its header is.
    rows: Option<usize>,
}

impl Printer {
    fn chunk(&mut self, out: &mut impl Write, chunk: &Chunk) -> Result<()> {
        let format = self.format;
        let rows = self.start(out)?;
        for f in chunk.flows() {
            match format {
                Format::Json => {
                    serde_json::to_writer(&mut *out, &f)?;
                    out.write_all(b"\n")?;
                }
                Format::Text => writeln!(out, "{}", text_row(&f))?,
            }
            *rows += 1;
        }
        Ok(())
    }

    /// The header of a text table, before its first row.
    fn start(&mut self, out: &mut impl Write) -> Result<&mut usize> {
        if self.rows.is_none() && self.format == Format::Text {
            writeln!(
                out,
                "{:<7} {:<45} {:<45} {:>16} {:>16} {:<16}",
                "PROTO", "CLIENT", "SERVER", "PKTS >/<", "BYTES >/<", "STATE"
            )?;
        }
        Ok(self.rows.get_or_insert(0))
    }

    fn end(&mut self, out: &mut impl Write, table: &TableEnd) -> Result<()> {
        let n = *self.start(out)?;
        self.rows = None;
        match self.format {
            Format::Json => {
                if table.last {
                    let mut stats = serde_json::Map::new();
                    stats.insert("type".into(), "stats".into());
                    for c in [&table.kernel as &dyn Counters, &table.user] {
                        c.counters(&mut |_, name, v| {
                            stats.insert(name.into(), v.into());
                        });
                    }
                    serde_json::to_writer(&mut *out, &stats)?;
                    out.write_all(b"\n")?;
                }
            }
            Format::Text => {
                // Evicted from the full table since the last read: those whose
                // state can still change as last known, every one in the count.
                for f in table.evicted() {
                    writeln!(out, "{} (evicted)", text_row(&f))?;
                }
                let evicted = match table.evicted_count {
                    0 => String::new(),
                    n => format!(", {n} evicted"),
                };
                writeln!(out, "-- {n} flows{evicted}{}", if table.last { " (final)" } else { "" })?;
            }
        }
        out.flush()?;
        Ok(())
    }
}

fn endpoint(ip: std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => format!("{v4}:{port}"),
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

fn text_row(f: &Flow) -> String {
    let state =
        serde_json::to_value(f.state).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
    format!(
        "{:<7} {:<45} {:<45} {:>16} {:>16} {}{}",
        f.proto.as_str(),
        endpoint(f.client.ip, f.client.port),
        endpoint(f.server.ip, f.server.port),
        format!("{}/{}", f.to_server.packets, f.to_client.packets),
        format!("{}/{}", f.to_server.bytes, f.to_client.bytes),
        state,
        if f.initiator_seen { "" } else { " (start not seen)" },
    )
}
