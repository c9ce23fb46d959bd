//! `monitor top`: a live terminal view of a running monitor.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::bail;

use super::duration::parse_duration;
use crate::{
    live::control::DEFAULT_SOCKET,
    top::{self, TopOptions},
};

/// A live view of a running `monitor run` through its control socket:
/// 1 rules (use of every rule), 2 findings (newest first), 3 flows (the
/// busiest), 4 groups (source group x target group, by verdict).
///
/// Keys: 1-4 switch views; / filters (`port:5432`, `host:db1`, `rule:db-`,
/// `kind:blocked`, `proto:udp`, `group:nodes`; Enter applies, Esc clears);
/// s cycles the sort column; p pauses; q quits. See docs/top.md.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The running monitor's control socket (its --socket).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Ask the monitor for its state every DURATION (at least 100ms):
    /// `500ms`, `2s`, or a plain number of seconds.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !std::io::stdout().is_terminal() {
        bail!(
            "monitor top draws on a terminal and stdout is not one; for the same data as JSON, \
             send `state json` to {} (docs/top.md)",
            args.socket.display()
        );
    }
    top::run(TopOptions { socket: args.socket, interval: args.interval.max(Duration::from_millis(100)) })?;
    Ok(ExitCode::SUCCESS)
}
