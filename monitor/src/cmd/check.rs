//! `monitor check`: replay a pcap through the flow tracker and the verdict engine.
use std::{
    io::{self, BufWriter, Write},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use clap::ValueEnum;

use super::{duration::parse_duration, sources::EngineArgs};
use crate::{
    falco, ocsf,
    replay::judge,
    report::{capture::Collector, html},
    siem::Reporter,
    verdict::Outcome,
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
    /// One self-contained HTML page: the summary, the graph, the rule coverage table (sortable) and
    /// the findings (filterable by kind), each with the document line of its rule (docs/report.md).
    Html,
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
    /// Track flows on N threads, each holding the flows whose key hashes to
    /// it; the output is the same for any N (docs/bench-replay.md).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sources = args.engine.sources()?;
    let compiled = sources.compile()?;
    for w in &compiled.warnings {
        eprintln!("monitor: {w}");
    }
    let options = judge::Options { syn_timeout: args.syn_timeout, dns_grace: args.dns_grace };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let reporter = Reporter::local();
    let mut page = Collector::default();
    // The page's graph draws the matrix as compiled before the capture, as `monitor graph` does.
    let drawn =
        (args.format == Format::Html).then(|| (compiled.matrix.clone(), compiled.engine.rules().to_vec()));
    let threads = args.threads as usize;
    let judged =
        judge::judge_capture_threads(compiled, &sources.matrix, &args.pcap, options, threads, |j| {
            if args.format == Format::Html {
                page.add(&j);
                return Ok(());
            }
            let Outcome::Finding(alert) = j.outcome else { return Ok(()) };
            match args.format {
                Format::Json => writeln!(out, "{}", alert.to_json()),
                Format::Text => writeln!(out, "{alert}"),
                Format::Ocsf => writeln!(out, "{}", ocsf::to_json(alert, &reporter)),
                Format::Falco => writeln!(out, "{}", falco::to_json(alert, &reporter)),
                Format::Html => Ok(()),
            }
        })?;
    let (summary, tally) = (&judged.summary, &judged.tally);
    match args.format {
        Format::Html => {
            let (matrix, rules) = drawn.as_ref().expect("drawn for html");
            let svg = page
                .svg(matrix, rules)
                .map_err(|e| eprintln!("monitor: {e}; the page says the graph is not available"))
                .ok();
            out.write_all(html::render(&page.page(&judged, &sources.matrix, svg)).as_bytes())?
        }
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
