//! `monitor check`: replay a pcap through the flow tracker and the verdict engine.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`monitor check` is being built (issue 3)")
}
