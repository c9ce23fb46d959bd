//! `monitor fleet`: what the engines that watch many nodes need from the
//! monitor's files (docs/fleet.md).

use std::{io::Write as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;

use super::{duration::parse_duration, sources::InventoryLimits};
use crate::{
    fleet::{
        prometheus::Prometheus,
        report::{self, ReportOptions},
        targets::{self, DEFAULT_PORT},
    },
    inventory::Inventory,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write Prometheus file_sd JSON: one scrape target per inventory host, labelled with its node and groups.
    Targets(TargetsArgs),
    /// The whole cluster's conformance over a window, from Prometheus: every rule with the nodes that used it, blocked paths and where, undocumented flows, missing agents.
    Report(ReportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Prometheus's base URL (with its --web.route-prefix path, if any), e.g. http://prometheus:9090.
    #[arg(long, value_name = "URL")]
    pub prometheus: String,
    /// How far back to count, e.g. 24h, 7d, 30m (a plain number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub window: Duration,
    /// The scrape job of the agents (the shipped rules assume `monitor`).
    #[arg(long, value_name = "NAME", default_value = "monitor")]
    pub job: String,
    /// The inventory: its hosts that have no agent are reported, and agents that are no inventory host.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    #[command(flatten)]
    pub inventory_limits: InventoryLimits,
    /// How long each request to Prometheus may take.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The report's form.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// For a terminal.
    Text,
    /// One JSON object (docs/fleet.md, "fleet report").
    Json,
    /// Markdown tables, to paste into a change ticket.
    Markdown,
}

#[derive(Debug, clap::Args)]
pub struct TargetsArgs {
    /// Ansible inventory (INI, YAML or `ansible-inventory --list` JSON) listing the hosts that run an agent.
    #[arg(long, value_name = "FILE")]
    pub inventory: PathBuf,
    #[command(flatten)]
    pub inventory_limits: InventoryLimits,
    /// The agents' metrics port (their `--metrics` address).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Write the file here, atomically (Prometheus re-reads it when it changes); default standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Targets(args) => targets(args),
        Command::Report(args) => report(args),
    }
}

fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!args.window.is_zero(), "--window 0: the window is a duration above zero, e.g. 24h");
    anyhow::ensure!(!args.timeout.is_zero(), "--timeout 0: the timeout is a duration above zero, e.g. 30s");
    let inventory = match &args.inventory {
        Some(path) => {
            let (inventory, warnings) = Inventory::load_with(path, &args.inventory_limits.options())?;
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            Some(inventory.hosts.into_keys().collect())
        }
        None => None,
    };
    let prom = Prometheus::new(&args.prometheus, args.timeout)?;
    let opts =
        ReportOptions { window: args.window, job: args.job, time: std::time::SystemTime::now(), inventory };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let report = rt.block_on(report::collect(&prom, &opts))?;
    let body = match args.format {
        ReportFormat::Text => report.text(),
        ReportFormat::Json => report.json(),
        ReportFormat::Markdown => report.markdown(),
    };
    // Not `print!`, which panics when stdout is closed (cmd::pipe).
    let mut out = std::io::stdout().lock();
    out.write_all(body.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn targets(args: TargetsArgs) -> anyhow::Result<ExitCode> {
    let (inventory, warnings) = Inventory::load_with(&args.inventory, &args.inventory_limits.options())?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let (groups, left_out) = targets::file_sd(&inventory, args.port);
    for h in &left_out {
        eprintln!(
            "warning: {}: host {:?} has no ansible_host and its name is no address or DNS name: not a target; \
             give it ansible_host=ADDRESS",
            args.inventory.display(),
            h.host
        );
    }
    anyhow::ensure!(
        !groups.is_empty(),
        "{}: no host to scrape (the inventory lists {} host(s), none with an address); give each host ansible_host=ADDRESS",
        args.inventory.display(),
        inventory.hosts.len()
    );
    let mut json = serde_json::to_string_pretty(&groups)?;
    json.push('\n');
    match &args.output {
        Some(path) => {
            let dir =
                path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("{}: cannot create a file next to it", path.display()))?;
            tmp.write_all(json.as_bytes())?;
            tmp.as_file().sync_all()?;
            // Readable by a Prometheus that runs as another user.
            std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
            tmp.persist(path).with_context(|| format!("{}: cannot write it", path.display()))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(json.as_bytes())?;
            out.flush()?;
        }
    }
    eprintln!(
        "{} target(s) on port {}{}",
        groups.len(),
        args.port,
        if left_out.is_empty() { String::new() } else { format!(", {} host(s) left out", left_out.len()) }
    );
    Ok(ExitCode::SUCCESS)
}
