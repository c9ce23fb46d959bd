//! `monitor top`: a live terminal view of a running monitor, or of an
//! agent it runs itself.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{bail, Context as _};

use super::{run::AgentArgs, sources::OptionalEngineArgs};
use crate::{
    live::control::DEFAULT_SOCKET,
    top::{self, local::LocalOptions, TopOptions},
};

/// A live view of the monitor: 1 rules (use of every rule), 2 findings
/// (newest first), 3 flows (the busiest), 4 groups (source group x target
/// group, by verdict).
///
/// Without --matrix it attaches to a running `monitor run` through its
/// control socket (--socket). With --matrix it runs the agent itself, with
/// every option of `monitor run`: the alerts go to --alerts-out (default: a
/// file in a private directory) and the agent's log to that directory; both
/// are named, with the coverage report, when the view ends.
///
/// Keys: 1-4 switch views; / filters (`port:5432`, `host:db1`, `rule:db-`,
/// `kind:blocked`, `proto:udp`, `group:nodes`; Enter applies, Esc clears);
/// s cycles the sort column; p pauses; q quits. See docs/top.md.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub engine: OptionalEngineArgs,
    #[command(flatten)]
    pub agent: AgentArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // The socket to attach to when no agent is run here.
    let attach = || args.agent.socket.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    if !std::io::stdout().is_terminal() {
        let socket = attach();
        bail!(
            "monitor top draws on a terminal and stdout is not one; for the same data as JSON, \
             send `state json` to {} (docs/top.md), or run `monitor run` for the alert stream",
            socket.display()
        );
    }
    let interval = args.agent.interval.max(Duration::from_millis(100));
    let Some(sources) = args.engine.sources()? else {
        top::run(TopOptions { socket: attach(), interval, ended: None })?;
        return Ok(ExitCode::SUCCESS);
    };
    let dir = tempfile::Builder::new()
        .prefix("monitor-top-")
        .tempdir()
        .context("make a private directory for the agent's socket and log")?
        .keep();
    let mut agent = args.agent;
    let socket = agent.socket.take().unwrap_or_else(|| dir.join("control.sock"));
    let alerts = agent.alerts_out.get_or_insert_with(|| dir.join("alerts.jsonl")).clone();
    let log = dir.join("agent.log");
    let opts = LocalOptions { agent: agent.options(sources, socket)?, interval, log: log.clone() };
    let finished = super::run::with_agent_runtime(|reload| async move {
        top::local::run(opts, super::wait_for_shutdown_signal(), reload).await.map_err(anyhow::Error::from)
    });
    let logged = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let finished = finished.with_context(|| format!("the agent's log: {}", log.display()))?;
    print!("{}", finished.report.to_text());
    println!("monitor: {}", finished.summary);
    println!("monitor: alerts in {}", alerts.display());
    if logged > 0 {
        println!("monitor: the agent's log in {}", log.display());
    }
    Ok(ExitCode::SUCCESS)
}
