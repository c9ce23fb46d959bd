//! `monitor learn`: propose the matrix rules that the undocumented flows of
//! captures need, as a patch or merged into the matrix (docs/learn.md).

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;

use super::{duration::parse_duration, sources::EngineArgs};
use crate::{
    learn::{
        agent,
        capture::{self, Observations},
        cover::Places,
        merge::{self, Additions},
        propose, render, Learnt, Options,
    },
    replay::{judge, UnusedRule},
};

/// Propose matrix rules for the undocumented flows of captures or of a
/// running agent, in the
/// matrix's own names: the smallest service or inventory group that holds
/// every client (or server) seen, else their zone, a CIDR last; server
/// ports folded into ranges (the clients' ephemeral ports never appear).
///
/// Each proposed rule carries a `learnt:` field with its evidence (flows,
/// clients, servers, first and last seen, window). The documented rules
/// that no flow used in the window are listed for review, not deleted.
/// Without --merge-into the output is a patch (`services:` and `rules:`)
/// to review; with it, the whole matrix with the proposals added, its
/// comments and layout kept.
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit status: 0 the proposals (possibly none) were written, 2 error.\n\
    The output, the choice of names and the `learnt:` field are documented in docs/learn.md.")]
pub struct Args {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Capture to learn from: pcap or pcapng (repeatable: the flows of every capture together).
    #[arg(long = "pcap", value_name = "FILE", required_unless_present = "socket", conflicts_with = "socket")]
    pub pcaps: Vec<PathBuf>,
    /// Learn from a running `monitor run` instead: its control socket. It reads the agent's
    /// newest findings (it keeps 200, repeats counted) and each rule's last use.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Learn only from flows last seen within this long before the captures' last packet (or,
    /// with --socket, before now), e.g. 24h, 30m (a plain number is seconds); rules unused
    /// within it are listed. Default: every flow.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub window: Option<Duration>,
    /// Write this matrix file with the proposals added (its text kept, comments included)
    /// instead of the patch; usually the --matrix file itself.
    #[arg(long, value_name = "FILE")]
    pub merge_into: Option<PathBuf>,
    /// Write the patch (or, with --merge-into, the merged matrix) to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// How long a connection attempt may wait for an answer, measured to the end of the
    /// capture, before it counts as unanswered (such attempts are not learnt from).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration, conflicts_with = "socket")]
    pub syn_timeout: Duration,
    /// How long a DNS answer's binding holds past its TTL (docs/dns.md).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration, conflicts_with = "socket")]
    pub dns_grace: Duration,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.window.is_none_or(|w| !w.is_zero()),
        "--window 0: the window is a duration above zero, e.g. 24h"
    );
    let sources = args.engine.sources()?;
    let compiled = sources.compile()?;
    for w in &compiled.warnings {
        eprintln!("monitor: {w}");
    }
    let (obs, seen_in) = match &args.socket {
        Some(socket) => {
            let obs = agent::observe(socket, compiled.engine.rules())?;
            (obs, vec![format!("agent {}", socket.display())])
        }
        None => {
            let options = judge::Options { syn_timeout: args.syn_timeout, dns_grace: args.dns_grace };
            let obs = capture::observe(&sources, &args.pcaps, options)?;
            (obs, args.pcaps.iter().map(|p| p.display().to_string()).collect())
        }
    };
    let places =
        Places::new(&compiled.matrix, compiled.inventory.as_ref(), &compiled.selection, &compiled.engine)
            .with_context(|| format!("{}: cannot name the observed addresses", sources.matrix.display()))?;
    let learnt =
        propose(&obs.observed, &places, &compiled.matrix, Options { window: args.window, end: obs.end });
    let unused = obs.unused_since(learnt.start);

    let body = match &args.merge_into {
        None => render::patch(&learnt, &places, &unused, &seen_in),
        Some(target) => merged(target, args.output.as_deref(), &learnt, &places, &seen_in)?,
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, &body).with_context(|| format!("{}: cannot write", path.display()))?
        }
        None => {
            // Not `print!`, which panics when stdout is closed (cmd::pipe).
            let mut out = std::io::stdout().lock();
            out.write_all(body.as_bytes())?;
            out.flush()?;
        }
    }
    eprint!("{}", summary(&learnt, &obs, &unused, args.merge_into.is_none()));
    Ok(ExitCode::SUCCESS)
}

/// The matrix `target` with the proposals added; its warnings go to stderr.
fn merged(
    target: &Path,
    output: Option<&Path>,
    learnt: &Learnt,
    places: &Places,
    seen_in: &[String],
) -> anyhow::Result<String> {
    let text = crate::yaml_limits::read(target)
        .map_err(|e| anyhow::anyhow!("{}: cannot read the matrix: {e}", target.display()))?;
    let window = render::window_text(learnt.window);
    let rules: Vec<Vec<String>> =
        learnt.rules.iter().map(|p| render::rule_lines(p, places, &window, seen_in)).collect();
    let services: Vec<Vec<String>> = learnt.services.iter().map(render::service_lines).collect();
    let ids: Vec<String> = learnt.rules.iter().map(|r| r.id.clone()).collect();
    let header = render::header(learnt, seen_in);
    let add = Additions { header: &header, services: &services, rules: &rules, ids: &ids };
    // Checked where it will live: `prefixes: file:` paths are relative to it.
    let at = output.unwrap_or(target);
    let dir = at.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let (out, warnings) = merge::merge(&text, &at.display().to_string(), dir, &add)?;
    for w in &warnings {
        eprintln!("monitor: {w}");
    }
    Ok(out)
}

/// What was proposed and left out, for the terminal.
fn summary(learnt: &Learnt, obs: &Observations, unused: &[UnusedRule], in_patch: bool) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "monitor learn: {} rule(s) and {} new service(s) proposed for {} undocumented flow(s), of {} flow(s) judged",
        learnt.rules.len(),
        learnt.services.len(),
        learnt.flows,
        obs.flows
    );
    let l = obs.left_out;
    let _ = writeln!(
        s,
        "  left out: {} failed attempt(s), {} flow(s) whose start was not seen, {} exposed flow(s), {} older than the window",
        l.failed, l.guessed, l.exposed, learnt.outside_window
    );
    if obs.pushed_out > 0 {
        let _ = writeln!(
            s,
            "  {} older finding(s) had been pushed out of the agent's list (it keeps the newest {}): \
             not learnt from; learn more often, or from captures",
            obs.pushed_out,
            crate::live::state::MAX_FINDINGS
        );
    }
    if in_patch {
        let _ = writeln!(
            s,
            "  {} documented rule(s) unused in the window, listed at the end of the patch",
            unused.len()
        );
    } else {
        for line in render::unused_lines(unused) {
            let _ = writeln!(s, "  {}", line.trim_start_matches("# ").trim_start_matches('#'));
        }
    }
    s
}
