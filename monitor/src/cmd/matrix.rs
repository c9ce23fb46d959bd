//! `monitor matrix lint|show`: check and expand a matrix file.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`monitor matrix` is being built (issue 3)")
}
