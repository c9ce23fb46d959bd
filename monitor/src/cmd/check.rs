//! `monitor check`: replay a pcap through the flow tracker and the verdict engine.
use std::{
    collections::VecDeque,
    io::{self, BufWriter, Write},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;
use clap::ValueEnum;
use monitor_common::{FlowKey, FlowValue};

use super::{duration::parse_duration, sources::EngineArgs};
use crate::{
    dns::{CacheOptions, DnsMessage, NamedServices, Passive},
    engine::Engine,
    falco,
    flow::{EpochClock, Flow, NoHint},
    ocsf,
    replay::{
        pcap,
        track::{Expiry, Tracker},
        InOrder, Summary, Tally,
    },
    siem::Reporter,
    verdict::{assess, Outcome},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line: the alerts, then a `"type":"summary"` line (docs/alerts.md).
    Json,
    /// One line per finding, then a summary, for people.
    Text,
    /// One OCSF Network Activity event per finding; the summary goes to stderr (docs/alerts.md, "OCSF").
    Ocsf,
    /// One Falco-shaped event per finding; the summary goes to stderr (docs/alerts.md, "Falco").
    Falco,
}

/// Check every flow of a capture against a port matrix, without root.
///
/// Exit status: 0 when every flow conforms, 1 when there is at least one
/// finding (unexpected, blocked or exposed), 2 on error (bad matrix,
/// inventory or capture file).
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit status: 0 every flow conforms, 1 at least one finding, 2 error.\n\
    Alerts and the summary line are documented in docs/alerts.md.")]
pub struct Args {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Capture to replay: pcap or pcapng; Ethernet, Linux cooked (v1, v2) or raw IP.
    #[arg(long, value_name = "FILE")]
    pub pcap: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How long a connection attempt may wait for an answer, measured to the
    /// end of the capture, before it counts as unanswered (blocked): `500ms`,
    /// `2s`, `1m30s`, or a plain number of seconds.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub syn_timeout: Duration,
    /// How long a DNS answer's binding holds past its TTL (docs/dns.md).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub dns_grace: Duration,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sources = args.engine.sources()?;
    let compiled = sources.compile()?;
    for w in &compiled.warnings {
        eprintln!("monitor: {w}");
    }
    let (matrix, inventory, selection) = (compiled.matrix, compiled.inventory, compiled.selection);
    let mut engine = compiled.engine;

    // Flows that ended (by the live stream's timeouts, in capture time) are
    // judged and dropped during the replay: memory follows the flows open at
    // once, not every flow of the capture.
    let timeout = args.syn_timeout;
    let mut tracker = Tracker::new();
    tracker.keep_dns();
    tracker.expire_idle(Expiry::live(timeout));
    let mut held = InOrder::default();

    // DNS answers bind names as the capture goes: each flow is judged with
    // what the host had resolved when the flow started.
    let named = NamedServices::new(&matrix);
    let mut answers: VecDeque<DnsMessage> = VecDeque::new();
    let mut passive = Passive::new(CacheOptions { grace: args.dns_grace, ..CacheOptions::default() });
    passive.cache.watch(named.patterns());

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut tally = Tally::default();
    let reporter = Reporter::local();
    let mut judge = |entries: Vec<(FlowKey, FlowValue)>,
                     answers: &mut VecDeque<DnsMessage>,
                     now_ns: u64|
     -> anyhow::Result<()> {
        let clock = EpochClock { now_ns };
        for (k, v) in entries {
            let Some(flow) = Flow::from_entry(&k, &v, &clock, &NoHint, timeout) else { continue };
            let started = v.first_seen_ns;
            while let Some(m) = answers.front().filter(|m| m.ts_ns <= started) {
                passive.ingest(m);
                answers.pop_front();
            }
            passive.expire(started);
            if passive.cache.is_dirty(flow.client.ip) || passive.cache.is_dirty(flow.server.ip) {
                engine = Engine::with_resolver(&matrix, inventory.as_ref(), &selection, &passive.cache)
                    .with_context(|| format!("{}: cannot compile the matrix", sources.matrix.display()))?;
                passive.cache.take_dirty();
            }
            let (verdict, mut outcome) = assess(&engine, &flow);
            tally.add(&flow, &verdict, &outcome);
            if let Outcome::Finding(alert) = &mut outcome {
                named.annotate(alert, &engine, &passive.cache);
                match args.format {
                    Format::Json => writeln!(out, "{}", alert.to_json())?,
                    Format::Text => writeln!(out, "{alert}")?,
                    Format::Ocsf => writeln!(out, "{}", ocsf::to_json(alert, &reporter))?,
                    Format::Falco => writeln!(out, "{}", falco::to_json(alert, &reporter))?,
                }
            }
        }
        Ok(())
    };
    let mut failed = None;
    let read = pcap::for_each_packet(&args.pcap, |r| {
        tracker.push_captured(r.ts_ns, r.link, r.data, r.orig_len);
        let ended = tracker.take_ended();
        if ended.is_empty() || failed.is_some() {
            return;
        }
        held.add(ended);
        answers.extend(tracker.take_dns());
        let ready = held.ready(tracker.oldest_start_ns());
        if let Err(e) = judge(ready, &mut answers, tracker.now_ns()) {
            failed = Some(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    // The end of the capture: every flow still open, aged to the last packet.
    held.add(tracker.entries().map(|(k, v)| (*k, *v)));
    answers.extend(tracker.take_dns());
    judge(held.ready(None), &mut answers, tracker.now_ns())?;
    let summary = Summary::new(
        args.pcap.display().to_string(),
        tracker.stats(),
        read.first_ts_ns,
        read.last_ts_ns,
        &tally,
        &engine,
        passive.summary_counters(),
    );
    match args.format {
        Format::Json => writeln!(out, "{}", summary.to_json())?,
        Format::Text => {
            if tally.findings() > 0 {
                writeln!(out)?;
            }
            write!(out, "{}", summary.to_text())?
        }
        // Standard output holds the events alone, for the engine reading them.
        Format::Ocsf | Format::Falco => eprint!("{}", summary.to_text()),
    }
    out.flush()?;
    Ok(if tally.findings() > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
