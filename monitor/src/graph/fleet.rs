//! The graph of the fleet over a window: what `monitor fleet report` reads
//! from Prometheus ([`crate::fleet::report`]), drawn on the matrix's rules.
//!
//! A rule's flows, and the undocumented flows between two groups, are the
//! agents' counts added up: a flow seen by the agents of both its client
//! and its server counts twice (the report lists them by node; the graph
//! has one number). How blocked flows failed comes
//! from the report's blocked paths: the outcome the evidence names and
//! where the report places the block, the largest count of one piece of
//! evidence per path (both ends' agents may count the same attempts).

use super::{Graph, Observations, Party};
use crate::{
    engine::{Sources, SourcesError},
    fleet::{
        prometheus::Prometheus,
        report::{collect, At, Report, ReportError, ReportOptions},
    },
    matrix::Matrix,
};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Sources(#[from] SourcesError),
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// The graph and the warnings of compiling the sources and of the report.
pub struct FleetGraph {
    pub graph: Graph,
    pub warnings: Vec<String>,
    pub report: Report,
}

/// Reads the fleet's report from `prom` and draws it on the rules of `sources`.
pub async fn graph(
    sources: &Sources,
    prom: &Prometheus,
    opts: &ReportOptions,
) -> Result<FleetGraph, FleetError> {
    let compiled = sources.compile()?;
    let report = collect(prom, opts).await?;
    let obs = observations(&report, &compiled.matrix);
    let graph = Graph::build(&compiled.matrix, compiled.engine.rules(), &obs);
    let mut warnings = compiled.warnings;
    warnings.extend(report.warnings.iter().map(|w| format!("warning: {w}")));
    Ok(FleetGraph { graph, warnings, report })
}

fn at(a: At) -> &'static str {
    match a {
        At::Server => "at the server",
        At::Network => "in the network",
        At::Unknown => "where unknown",
    }
}

/// The report's numbers as observations; `matrix` tells groups from zones.
pub fn observations(report: &Report, matrix: &Matrix) -> Observations {
    let mut obs = Observations::default();
    for r in &report.rules {
        let u = obs.rule(&r.rule);
        u.flows += r.flows.values().sum::<u64>();
        u.blocked += r.blocked.values().sum::<u64>();
        for p in &r.blocked_paths {
            let mut by_how: std::collections::BTreeMap<String, u64> = Default::default();
            for e in p.evidence.iter().filter(|e| e.outcome != "answered") {
                let how = match (e.outcome.as_str(), &e.sender) {
                    ("icmp_rejected", Some(s)) => format!("icmp-rejected by {s} {}", at(p.at)),
                    (o, _) => format!("{} {}", o.replace('_', "-"), at(p.at)),
                };
                let n = by_how.entry(how).or_default();
                *n = (*n).max(e.attempts);
            }
            for (how, n) in by_how {
                *u.failures.entry(how).or_default() += n;
            }
        }
    }
    for d in &report.undocumented {
        let (s, t) =
            (Party::group_or_zone(&d.source_group, matrix), Party::group_or_zone(&d.target_group, matrix));
        obs.undocumented(s, t, None, d.flows.values().sum());
    }
    obs
}
