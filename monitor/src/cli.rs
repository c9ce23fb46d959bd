//! The command line: clap's top-level parser and the dispatch to each
//! subcommand's `run`. It lives in the library so that the man pages and
//! shell completions are generated from the same definition the binary parses.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cmd;

/// `monitor --version`: the package version and the commit it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("MONITOR_GIT_COMMIT"), ")");

/// Watches the traffic of a Linux host with eBPF and checks it against a
/// vendor's documented port matrix.
#[derive(Debug, Parser)]
#[command(name = "monitor", version = VERSION, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a live table of every flow on the host (needs root or CAP_BPF+CAP_NET_ADMIN+CAP_PERFMON).
    Flows(cmd::flows::Args),
    /// Replay a pcap through the flow tracker and check every flow against a matrix.
    Check(cmd::check::Args),
    /// Lint or show a matrix file.
    Matrix(cmd::matrix::Args),
    /// Watch this host live and stream an alert wherever traffic departs from the matrix.
    Run(cmd::run::Args),
    /// Print the coverage report (every rule, its use, the rules never seen) of a running monitor.
    Report(cmd::report::Args),
    /// A live terminal view of a running monitor: rules, findings, busiest flows, groups.
    Top(cmd::top::Args),
    /// The fleet on Prometheus: scrape targets from the inventory, and the whole cluster's conformance report.
    Fleet(cmd::fleet::Args),
    /// Draw the matrix with the traffic seen against it (captures or the fleet): Mermaid, DOT or SVG.
    Graph(cmd::graph::Args),
    /// Propose the matrix rules the undocumented flows of captures need, as a patch or merged into the matrix.
    Learn(cmd::learn::Args),
    /// The host firewall against the matrix: audit the loaded nftables ruleset.
    Firewall(cmd::firewall::Args),
    /// Try every documented path from this host (TCP connect, UDP datagram) and report each as open, refused, ICMP-rejected (and by whom) or timed out.
    Probe(cmd::probe::Args),
    /// Print the shell completion script for bash, zsh or fish to stdout.
    Completions(cmd::generate::CompletionsArgs),
    /// Write the man pages of monitor and every subcommand into DIR (for packaging).
    #[command(hide = true)]
    Manpages(cmd::generate::ManpagesArgs),
}

impl Cli {
    /// Runs the parsed command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Flows(args) => cmd::flows::run(args),
            Command::Check(args) => cmd::check::run(args),
            Command::Matrix(args) => cmd::matrix::run(args),
            Command::Run(args) => cmd::run::run(args),
            Command::Report(args) => cmd::report::run(args),
            Command::Top(args) => cmd::top::run(args),
            Command::Fleet(args) => cmd::fleet::run(args),
            Command::Graph(args) => cmd::graph::run(args),
            Command::Learn(args) => cmd::learn::run(args),
            Command::Firewall(args) => cmd::firewall::run(args),
            Command::Probe(args) => cmd::probe::run(args),
            Command::Completions(args) => cmd::generate::completions(args),
            Command::Manpages(args) => cmd::generate::manpages(args),
        }
    }
}
