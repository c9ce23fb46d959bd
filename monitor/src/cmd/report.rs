//! `monitor report`: the coverage report of a running monitor.

use std::{io::Write, path::PathBuf, process::ExitCode};

use anyhow::Context;

use super::sources::OptionalEngineArgs;
use crate::{
    graph::{self, svg},
    live::control::{self, request, DEFAULT_SOCKET},
    report::{agent, html},
};

/// Print every rule of the matrix with its packets, bytes, flows and last
/// use, and the documented rules never seen, from a running `monitor run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The running monitor's control socket (its --socket).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// With --format html: the matrix the agent runs with (and its inventory, profiles and
    /// variables), to draw the graph of what it has seen; without it the page has no graph.
    #[command(flatten)]
    pub graph: OptionalEngineArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    Text,
    /// The report as one JSON object (docs/alerts.md, "Coverage report").
    Json,
    /// One self-contained HTML page: the summary, the graph (with --matrix), the rule coverage
    /// table (sortable) and the newest findings, filterable by kind (docs/report.md).
    Html,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let socket = args.socket.display().to_string();
    let body = match args.format {
        Format::Html => {
            let state = control::state(&args.socket)?;
            let graph = match args.graph.sources()? {
                Some(sources) => {
                    let g = graph::agent::graph(&sources, &state)?;
                    for w in &g.warnings {
                        eprintln!("monitor: {w}");
                    }
                    match svg::of_graph(&g.graph) {
                        Ok(svg) => Some(svg),
                        Err(e) => {
                            eprintln!("monitor: warning: the page has no graph: {e}");
                            None
                        }
                    }
                }
                None => None,
            };
            html::render(&agent::page(&state, &socket, graph))
        }
        Format::Text | Format::Json => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start the async runtime")?;
            rt.block_on(request(&args.socket, args.format == Format::Text))?
        }
    };
    // Not `print!`, which panics when stdout is closed: the error goes to
    // main, which ends quietly then (cmd::pipe).
    let mut out = std::io::stdout().lock();
    out.write_all(body.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
