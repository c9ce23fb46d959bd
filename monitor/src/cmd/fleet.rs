//! `monitor fleet`: what the engines that watch many nodes need from the
//! monitor's files (docs/fleet.md).

use std::{io::Write as _, path::PathBuf, process::ExitCode};

use anyhow::Context as _;

use super::sources::InventoryLimits;
use crate::{
    fleet::targets::{self, DEFAULT_PORT},
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
    }
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
