//! `monitor firewall audit`: the loaded nftables ruleset against the
//! host's documented paths (docs/firewall.md, "Audit").

use std::{io::Write, path::PathBuf, process::ExitCode};

use anyhow::Context;

use super::sources::HostArgs;
use crate::{
    firewall::audit::{self, model::Ruleset},
    matrix::Matrix,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Evaluate the loaded nftables ruleset (`nft -j list ruleset`, or --ruleset FILE) for every
    /// documented path to and from --host; exit 0 when clean, 1 on any finding.
    Audit(AuditArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// The port matrix (YAML; docs/matrix.md).
    #[arg(long, value_name = "FILE")]
    pub matrix: PathBuf,
    #[command(flatten)]
    pub host: HostArgs,
    /// A saved `nft -j list ruleset` to audit instead of running nft (offline, or another host's).
    #[arg(long, value_name = "FILE")]
    pub ruleset: Option<PathBuf>,
    /// The interface documented traffic uses (matched by iifname/oifname rules); default: any
    /// interface but loopback, so a rule on one named interface decides only part of a path.
    #[arg(long, value_name = "NAME")]
    pub interface: Option<String>,
    /// `text`: one finding a line; `json`: the whole report, every path with its status.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    match args.command {
        Command::Audit(a) => audit_cmd(&a, &mut stdout.lock()),
    }
}

fn read_ruleset(a: &AuditArgs) -> anyhow::Result<Ruleset> {
    let (text, origin) = match &a.ruleset {
        Some(p) => (
            std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read the ruleset", p.display()))?,
            p.display().to_string(),
        ),
        None => {
            let out = std::process::Command::new("nft").args(["-j", "list", "ruleset"]).output().context(
                "cannot run `nft -j list ruleset`: install nftables, or give a saved ruleset with --ruleset FILE",
            )?;
            if !out.status.success() {
                anyhow::bail!(
                    "`nft -j list ruleset` failed ({}): {}; run as root (CAP_NET_ADMIN) or give --ruleset FILE",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            (
                String::from_utf8(out.stdout).context("`nft -j list ruleset` printed non-UTF-8")?,
                "nft -j list ruleset".into(),
            )
        }
    };
    Ok(Ruleset::parse(&text, &origin)?)
}

fn audit_cmd(a: &AuditArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let (matrix, warnings) = Matrix::load(&a.matrix)?;
    for w in &warnings {
        eprintln!("{w}");
    }
    let (hp, _) = a.host.host_paths(&matrix, &mut std::io::stderr())?;
    let ruleset = read_ruleset(a)?;
    let report = audit::audit(&ruleset, &audit::Input::from_host_paths(&hp, a.interface.clone()));
    match a.format {
        Format::Text => out.write_all(audit::render_text(&report).as_bytes())?,
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &report)?;
            writeln!(out)?;
        }
    }
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
