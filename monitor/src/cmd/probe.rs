//! `monitor probe`: the clap arguments, and their conversion into the
//! domain's plan and limits (crate::probe).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;

use super::{duration::parse_duration, sources::HostArgs};
use crate::{
    host_paths::Direction,
    matrix::Matrix,
    probe::{plan, prober, report},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The port matrix (YAML; docs/matrix.md).
    #[arg(long, value_name = "FILE")]
    pub matrix: PathBuf,
    #[command(flatten)]
    pub host: HostArgs,
    /// How long each probe waits for an answer, e.g. 2s, 500ms.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Most probes in flight at once.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Most probes started per second, e.g. 100/s or 100.
    #[arg(long, value_name = "N/s", default_value = "100/s", value_parser = parse_rate)]
    pub rate: f64,
    /// Print the plan (what would be probed, what not and why) and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The report's form.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For a terminal.
    Text,
    /// One JSON object (docs/firewall.md, "Probe").
    Json,
}

/// `100/s` or `100`: probes per second, more than 0.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.trim().strip_suffix("/s").unwrap_or(s.trim());
    match n.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("`{s}` is not a rate: write probes per second, e.g. 100/s or 0.5/s")),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (matrix, warnings) = Matrix::load(&args.matrix)
        .with_context(|| format!("cannot load matrix {}", args.matrix.display()))?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let (paths, _) = args.host.host_paths(&matrix, &mut std::io::stderr())?;
    let plan = plan::plan(&args.host.host, &paths.addresses, paths.by_direction(Direction::Outbound));
    if args.dry_run {
        match args.format {
            Format::Text => print!("{}", report::plan_text(&plan)),
            Format::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let limits = prober::Limits {
        timeout: args.timeout,
        concurrency: args.concurrency as usize,
        rate: Some(args.rate),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let outcomes = rt.block_on(prober::run_all(&plan.probes, limits));
    let r = report::report(plan, outcomes);
    match args.format {
        Format::Text => print!("{}", report::text(&r)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
    }
    Ok(if r.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
