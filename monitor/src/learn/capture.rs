//! Observations from captures: each pcap judged by
//! [`judge_capture`] (the loop of `monitor check`), its `unexpected` flows
//! kept as [`Observed`], and each documented rule's last use recorded, so
//! that the rules unused in the window can be listed for review.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use super::{Observed, Unused};
use crate::{
    alert::Kind,
    engine::{RuleInfo, Sources, SourcesError},
    replay::{
        judge::{judge_capture, JudgeError, Options},
        UnusedRule,
    },
    verdict::Outcome,
};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Sources(#[from] SourcesError),
    #[error(transparent)]
    Judge(#[from] JudgeError),
}

/// What the captures showed.
#[derive(Debug, Default)]
pub struct Observations {
    /// One per undocumented flow that can stand for a rule.
    pub observed: Vec<Observed>,
    /// The active rules, and when each was last used (by id).
    pub rules: Vec<RuleInfo>,
    pub last_use: BTreeMap<String, SystemTime>,
    /// The last packet of all captures.
    pub end: Option<SystemTime>,
    /// Flows judged, and the flows of each kind left out.
    pub flows: u64,
    pub left_out: LeftOut,
    /// A running agent's findings pushed out of its bounded list before
    /// they were read: flows that may have needed rules (0 for captures).
    pub pushed_out: u64,
}

/// Undocumented or forbidden flows that no rule is proposed for, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeftOut {
    /// Unexpected, but the attempt failed (refused, unanswered, ICMP-rejected).
    pub failed: u64,
    /// Unexpected, but client and server were guessed (start not seen).
    pub guessed: u64,
    /// Exposed: an exposure constraint forbids them, so no rule may document them.
    pub exposed: u64,
}

/// Judges every capture in turn with the sources compiled afresh.
pub fn observe(sources: &Sources, pcaps: &[PathBuf], options: Options) -> Result<Observations, CaptureError> {
    let mut obs = Observations::default();
    for pcap in pcaps {
        let compiled = sources.compile()?;
        let judged = judge_capture(compiled, &sources.matrix, pcap, options, |j| {
            obs.flows += 1;
            if *j.outcome == Outcome::NetworkControl {
                return Ok(());
            }
            if let Some(r) = j.verdict.rule {
                let t = obs.last_use.entry(j.engine.rule(r).id.clone()).or_insert(j.flow.last_seen);
                *t = (*t).max(j.flow.last_seen);
            }
            let Outcome::Finding(alert) = j.outcome else { return Ok(()) };
            match alert.kind {
                Kind::Unexpected => match Observed::from_flow(j.flow) {
                    Ok(o) => obs.observed.push(o),
                    Err(Unused::Failed) => obs.left_out.failed += 1,
                    Err(Unused::Guessed) => obs.left_out.guessed += 1,
                },
                Kind::Exposed => obs.left_out.exposed += 1,
                Kind::Blocked | Kind::Overflow => {}
            }
            Ok(())
        })?;
        obs.end = obs.end.max(judged.summary.last_packet);
        obs.rules = judged.engine.rules().to_vec();
    }
    Ok(obs)
}

impl Observations {
    /// The active rules no flow used since `start` (every flow when `None`), in matrix order.
    pub fn unused_since(&self, start: Option<SystemTime>) -> Vec<UnusedRule> {
        self.rules
            .iter()
            .filter(|r| match self.last_use.get(&r.id) {
                None => true,
                Some(t) => start.is_some_and(|s| *t < s),
            })
            .map(UnusedRule::of)
            .collect()
    }

    /// The window's start for a window of `window` ending at the last packet.
    pub fn start(&self, window: Option<Duration>) -> Option<SystemTime> {
        let (w, e) = (window?, self.end?);
        Some(e.checked_sub(w).unwrap_or(SystemTime::UNIX_EPOCH))
    }
}
