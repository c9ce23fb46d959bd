//! `monitor check`: replay a pcap through the flow tracker and the verdict engine.
use std::{
    collections::BTreeMap,
    io::{self, BufWriter, Write},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, UNIX_EPOCH},
};

use anyhow::{bail, Context};
use clap::ValueEnum;

use crate::{
    check::{assess, Outcome, Summary, Tally},
    dns::{CacheOptions, NamedServices, Passive},
    engine::{Engine, Selection},
    inventory::Inventory,
    matrix::Matrix,
    pcap,
    track::Tracker,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line: the alerts, then a `"type":"summary"` line (docs/alerts.md).
    Json,
    /// One line per finding, then a summary, for people.
    Text,
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
    /// The port matrix (YAML).
    #[arg(long, value_name = "FILE")]
    pub matrix: PathBuf,
    /// Ansible inventory (INI, YAML or `ansible-inventory --list` JSON) placing services on hosts.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Matrix profile to activate; repeat for several, applied in order.
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// Matrix variable, `NAME=VALUE`; `bind:FQDN=IP[,IP]` gives a DNS name its addresses.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Capture to replay: pcap or pcapng; Ethernet, Linux cooked (v1, v2) or raw IP.
    #[arg(long, value_name = "FILE")]
    pub pcap: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Seconds a connection attempt may wait for an answer, measured to the
    /// end of the capture, before it counts as unanswered (blocked).
    #[arg(long, value_name = "SECS", default_value_t = 3.0, value_parser = parse_secs)]
    pub syn_timeout: f64,
    /// Seconds a DNS answer's binding holds past its TTL (docs/dns.md).
    #[arg(long, value_name = "SECS", default_value_t = 60.0, value_parser = parse_secs)]
    pub dns_grace: f64,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds (e.g. 3 or 0.5)")),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (matrix, warnings) = Matrix::load(&args.matrix)?;
    for w in &warnings {
        eprintln!("monitor: {w}");
    }
    let inventory = match &args.inventory {
        Some(path) => {
            let (inv, warnings) = Inventory::load(path)?;
            for w in &warnings {
                eprintln!("monitor: warning: {w}");
            }
            Some(inv)
        }
        None => None,
    };
    let mut vars = BTreeMap::new();
    for (k, v) in args.vars {
        if vars.insert(k.clone(), v).is_some() {
            bail!("--set {k} is given twice: give each variable once");
        }
    }
    let selection = Selection { profiles: args.profiles, vars };
    let mut engine = Engine::new(&matrix, inventory.as_ref(), &selection)
        .with_context(|| format!("{}: cannot compile the matrix", args.matrix.display()))?;
    for w in engine.warnings() {
        eprintln!("monitor: warning: {w}");
    }

    let mut tracker = Tracker::new();
    tracker.keep_dns();
    let read = pcap::replay(&args.pcap, &mut tracker)?;
    let timeout = Duration::from_secs_f64(args.syn_timeout);

    // DNS answers bind names as the capture goes: each flow is judged with
    // what the host had resolved when the flow started.
    let named = NamedServices::new(&matrix);
    let answers = tracker.take_dns();
    let mut passive = Passive::new(CacheOptions {
        grace: Duration::from_secs_f64(args.dns_grace),
        ..CacheOptions::default()
    });
    passive.cache.watch(named.patterns());
    let mut next_answer = 0;

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut tally = Tally::default();
    for flow in tracker.flows(timeout) {
        let started = flow.first_seen.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        while let Some(m) = answers.get(next_answer).filter(|m| m.ts_ns <= started) {
            passive.ingest(m);
            next_answer += 1;
        }
        passive.expire(started);
        if passive.cache.is_dirty(flow.client.ip) || passive.cache.is_dirty(flow.server.ip) {
            engine = Engine::with_resolver(&matrix, inventory.as_ref(), &selection, &passive.cache)
                .with_context(|| format!("{}: cannot compile the matrix", args.matrix.display()))?;
            passive.cache.take_dirty();
        }
        let (verdict, mut outcome) = assess(&engine, &flow);
        tally.add(&flow, &verdict, &outcome);
        if let Outcome::Finding(alert) = &mut outcome {
            named.annotate(alert, &engine, &passive.cache);
            match args.format {
                Format::Json => writeln!(out, "{}", alert.to_json())?,
                Format::Text => writeln!(out, "{alert}")?,
            }
        }
    }
    let summary = Summary::new(
        args.pcap.display().to_string(),
        tracker.stats(),
        read.first_ts_ns,
        read.last_ts_ns,
        &tally,
        &engine,
    );
    match args.format {
        Format::Json => writeln!(out, "{}", summary.to_json())?,
        Format::Text => {
            if tally.findings() > 0 {
                writeln!(out)?;
            }
            write!(out, "{}", summary.to_text())?
        }
    }
    out.flush()?;
    Ok(if tally.findings() > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
