//! `monitor report`: the coverage report of a running monitor.

use std::{io::Write, path::PathBuf, process::ExitCode};

use anyhow::Context;

use crate::{
    live::{
        control::{request, DEFAULT_SOCKET},
        coverage::Report,
    },
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    Text,
    /// The report as one JSON object (docs/alerts.md, "Coverage report").
    Json,
    /// One self-contained HTML page: the rule coverage table, sortable (docs/report.md).
    Html,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let text = args.format == Format::Text;
    let mut body = rt.block_on(request(&args.socket, text))?;
    if args.format == Format::Html {
        let report: Report = serde_json::from_str(body.trim()).with_context(|| {
            format!("the monitor behind {} answered with no coverage report", args.socket.display())
        })?;
        body = html::render(&agent::page(&report, &args.socket.display().to_string()));
    }
    // Not `print!`, which panics when stdout is closed: the error goes to
    // main, which ends quietly then (cmd::pipe).
    let mut out = std::io::stdout().lock();
    out.write_all(body.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
