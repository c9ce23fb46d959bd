//! The graph of one or more captures: each judged by
//! [`judge_capture`] (the loop of `monitor check`, so the graph shows the
//! same flows with the same verdicts), all added to one [`Observations`].

use std::path::PathBuf;

use super::{Graph, Observations};
use crate::{
    engine::{Sources, SourcesError},
    replay::judge::{judge_capture, JudgeError, Options},
};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Sources(#[from] SourcesError),
    #[error(transparent)]
    Judge(#[from] JudgeError),
    #[error("no capture given: give at least one pcap or pcapng file")]
    NoCapture,
}

/// The graph and what compiling the sources warned of (once, not per capture).
pub struct CaptureGraph {
    pub graph: Graph,
    pub warnings: Vec<String>,
    /// Flows judged, over every capture.
    pub flows: u64,
}

/// Judges every capture in `captures` against `sources` (compiled afresh
/// for each, since DNS answers in a capture bind names for that capture
/// only) and draws what they saw.
pub fn graph(
    sources: &Sources,
    captures: &[PathBuf],
    options: Options,
) -> Result<CaptureGraph, CaptureError> {
    if captures.is_empty() {
        return Err(CaptureError::NoCapture);
    }
    let mut obs = Observations::default();
    let mut warnings = None;
    let mut flows = 0;
    let mut drawn = None;
    for capture in captures {
        let compiled = sources.compile()?;
        warnings.get_or_insert_with(|| compiled.warnings.clone());
        if drawn.is_none() {
            drawn = Some((compiled.matrix.clone(), compiled.engine.rules().to_vec()));
        }
        let judged = judge_capture(compiled, &sources.matrix, capture, options, |j| {
            obs.judged(&j);
            Ok(())
        })?;
        flows += judged.tally.counts.flows;
    }
    let (matrix, rules) = drawn.expect("at least one capture");
    Ok(CaptureGraph {
        graph: Graph::build(&matrix, &rules, &obs),
        warnings: warnings.unwrap_or_default(),
        flows,
    })
}
