//! `monitor graph`: the documented matrix drawn with the traffic observed
//! against it, from captures or from the fleet's Prometheus (docs/graph.md).

use std::{io::Write as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{bail, Context as _};
use clap::ValueEnum;

use super::{duration::parse_duration, sources::EngineArgs};
use crate::{
    fleet::{prometheus::Prometheus, report::ReportOptions},
    graph::{self, render, svg, EdgeKind, Graph},
    replay::judge,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A Mermaid flowchart (Markdown viewers draw it).
    Mermaid,
    /// A Graphviz DOT digraph.
    Dot,
    /// SVG, laid out by Graphviz's `dot -Tsvg` (Debian package `graphviz`).
    Svg,
}

/// Draw the matrix's documented rules with the traffic seen against them:
/// used rules solid with their ports and flows, rules never used dashed
/// grey, blocked rules red with how they failed, undocumented flows orange
/// (exposed ports that answered purple).
///
/// The traffic comes from captures (`--pcap`, judged as `monitor check`
/// judges them) or from the fleet's Prometheus (`--prometheus`, as
/// `monitor fleet report` reads it).
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit status: 0 the graph was written, 2 error.\n\
    Edges, nodes and formats are documented in docs/graph.md.")]
pub struct Args {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Capture to judge: pcap or pcapng (repeatable: the flows of every capture in one graph).
    #[arg(long = "pcap", value_name = "FILE", conflicts_with = "prometheus")]
    pub pcaps: Vec<PathBuf>,
    /// With --pcap: how long a connection attempt may wait for an answer, measured to the end
    /// of the capture, before it counts as unanswered (blocked).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub syn_timeout: Duration,
    /// With --pcap: how long a DNS answer's binding holds past its TTL (docs/dns.md).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub dns_grace: Duration,
    /// Draw the fleet's traffic instead, from this Prometheus (its base URL, with its
    /// --web.route-prefix path if any, e.g. http://prometheus:9090), as `monitor fleet report` reads it.
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// With --prometheus: how far back to count, e.g. 24h, 7d, 30m (a plain number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub window: Duration,
    /// With --prometheus: the scrape job of the agents.
    #[arg(long, value_name = "NAME", default_value = "monitor")]
    pub job: String,
    /// With --prometheus: how long each request to Prometheus may take.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[arg(long, value_enum, default_value_t = Format::Mermaid)]
    pub format: Format,
    /// Write the graph to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sources = args.engine.sources()?;
    let (graph, warnings) = match (&args.prometheus, args.pcaps.is_empty()) {
        (Some(url), true) => {
            anyhow::ensure!(
                !args.window.is_zero(),
                "--window 0: the window is a duration above zero, e.g. 24h"
            );
            anyhow::ensure!(
                !args.timeout.is_zero(),
                "--timeout 0: the timeout is a duration above zero, e.g. 30s"
            );
            let prom = Prometheus::new(url, args.timeout)?;
            let opts = ReportOptions {
                window: args.window,
                job: args.job.clone(),
                time: std::time::SystemTime::now(),
                inventory: None,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start the async runtime")?;
            let g = rt.block_on(graph::fleet::graph(&sources, &prom, &opts))?;
            (g.graph, g.warnings)
        }
        (None, false) => {
            let options = judge::Options { syn_timeout: args.syn_timeout, dns_grace: args.dns_grace };
            let g = graph::capture::graph(&sources, &args.pcaps, options)?;
            (g.graph, g.warnings)
        }
        (None, true) => {
            bail!("nothing to draw: give --pcap FILE (a capture) or --prometheus URL (the fleet)")
        }
        (Some(_), false) => unreachable!("clap rejects --pcap with --prometheus"),
    };
    for w in &warnings {
        eprintln!("monitor: {w}");
    }
    let body = match args.format {
        Format::Mermaid => render::mermaid(&graph).into_bytes(),
        Format::Dot => render::dot(&graph).into_bytes(),
        Format::Svg => svg::render(&render::dot(&graph))?,
    };
    match &args.output {
        Some(path) => std::fs::write(path, &body)
            .with_context(|| format!("{}: cannot write the graph", path.display()))?,
        None => {
            // Not `print!`, which panics when stdout is closed (cmd::pipe).
            let mut out = std::io::stdout().lock();
            out.write_all(&body)?;
            out.flush()?;
        }
    }
    eprintln!("monitor graph: {}", summary(&graph));
    for n in &graph.notes {
        eprintln!("monitor: note: {n}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One line for the terminal: what the edges are.
fn summary(g: &Graph) -> String {
    format!(
        "{} nodes; rules: {} used, {} blocked, {} never used; {} undocumented and {} exposed edge(s)",
        g.nodes.len(),
        g.count(EdgeKind::Used),
        g.count(EdgeKind::Blocked),
        g.count(EdgeKind::Unused),
        g.count(EdgeKind::Undocumented),
        g.count(EdgeKind::Exposed)
    )
}
