//! A whole capture judged: the loop of `monitor check`, kept in the library so
//! that every command that reads a capture (`check`, `graph`, `learn`, the
//! HTML report) sees the same flows with the same verdicts.
//!
//! Flows that ended (by the live stream's timeouts, in capture time) are
//! judged and dropped during the replay, so memory follows the flows open at
//! once, not every flow of the capture. DNS answers bind names as the capture
//! goes: each flow is judged with what the host had resolved when the flow
//! started.

use std::{collections::VecDeque, io, path::Path, time::Duration};

use monitor_common::{FlowKey, FlowValue};

use super::{
    pcap::{self, PcapError},
    track::{Expiry, Tracker},
    InOrder, Summary, Tally,
};
use crate::{
    dns::{CacheOptions, DnsMessage, NamedServices, Passive},
    engine::{Compiled, Engine, EngineError, Verdict},
    flow::{EpochClock, Flow, NoHint},
    verdict::{assess, Outcome},
};

/// How a capture is judged.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// How long a connection attempt may wait for an answer, measured to the
    /// end of the capture, before it counts as unanswered.
    pub syn_timeout: Duration,
    /// How long a DNS answer's binding holds past its TTL.
    pub dns_grace: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options { syn_timeout: Duration::from_secs(3), dns_grace: Duration::from_secs(60) }
    }
}

/// One flow as the engine judged it; a finding's alert carries its DNS names.
pub struct Judged<'a> {
    pub flow: &'a Flow,
    pub verdict: &'a Verdict,
    pub outcome: &'a Outcome,
    /// The engine the flow was judged with (names bound by DNS recompile it).
    pub engine: &'a Engine,
}

/// What a whole capture came to.
pub struct Judgement {
    pub summary: Summary,
    pub tally: Tally,
    /// The engine as it stood at the end of the capture.
    pub engine: Engine,
}

#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error(transparent)]
    Pcap(#[from] PcapError),
    #[error("{matrix}: cannot compile the matrix: {source}")]
    Compile { matrix: String, source: EngineError },
    #[error("cannot write the findings: {0}")]
    Write(#[from] io::Error),
}

/// Replays `capture` through the tracker and the engine of `compiled`, and
/// hands every judged flow to `each`, in the order the flows started.
/// `matrix` names the matrix file in errors.
pub fn judge_capture(
    compiled: Compiled,
    matrix: &Path,
    capture: &Path,
    options: Options,
    mut each: impl FnMut(Judged<'_>) -> io::Result<()>,
) -> Result<Judgement, JudgeError> {
    let Compiled { matrix: doc, inventory, selection, mut engine, .. } = compiled;
    let timeout = options.syn_timeout;
    let mut tracker = Tracker::new();
    tracker.keep_dns();
    tracker.expire_idle(Expiry::live(timeout));
    let mut held = InOrder::default();

    let named = NamedServices::new(&doc);
    let mut answers: VecDeque<DnsMessage> = VecDeque::new();
    let mut passive = Passive::new(CacheOptions { grace: options.dns_grace, ..CacheOptions::default() });
    passive.cache.watch(named.patterns());
    let mut tally = Tally::default();

    let mut judge = |entries: Vec<(FlowKey, FlowValue)>,
                     answers: &mut VecDeque<DnsMessage>,
                     now_ns: u64|
     -> Result<(), JudgeError> {
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
                engine = Engine::with_resolver(&doc, inventory.as_ref(), &selection, &passive.cache)
                    .map_err(|source| JudgeError::Compile { matrix: matrix.display().to_string(), source })?;
                passive.cache.take_dirty();
            }
            let (verdict, mut outcome) = assess(&engine, &flow);
            tally.add(&flow, &verdict, &outcome);
            if let Outcome::Finding(alert) = &mut outcome {
                named.annotate(alert, &engine, &passive.cache);
            }
            each(Judged { flow: &flow, verdict: &verdict, outcome: &outcome, engine: &engine })?;
        }
        Ok(())
    };
    let mut failed = None;
    let read = pcap::for_each_packet(capture, |r| {
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
        capture.display().to_string(),
        tracker.stats(),
        read.first_ts_ns,
        read.last_ts_ns,
        &tally,
        &engine,
        passive.summary_counters(),
    );
    Ok(Judgement { summary, tally, engine })
}
