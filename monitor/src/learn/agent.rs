//! Observations from a running agent (`monitor learn --socket`): its
//! `state json` answer, read once. Its `unexpected` findings become
//! [`Observed`] flows, and its coverage gives each documented rule's last
//! use, so that the same core proposes rules as it does for captures.
//!
//! What the agent keeps bounds what can be learnt: its newest findings
//! only (`live::state::MAX_FINDINGS`), one per client, server, port and
//! protocol with its repeats counted. Those pushed out of the list are
//! counted in [`Observations::pushed_out`] and named in the summary, so a
//! busy host's reviewer knows the proposals may be incomplete.

use std::{path::Path, time::SystemTime};

use super::{capture::Observations, server_port, usable, Observed, Unused};
use crate::{
    engine::RuleInfo,
    flow::{FlowState, Proto},
    live::{
        control::{self, StateError},
        state::{Finding, State, Verdict},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{socket}: the agent sent a finding with the unknown {what} `{value}`: is it a newer monitor than this one?")]
    Unknown { socket: String, what: &'static str, value: String },
}

/// Asks the agent at `socket` for its state and reads it against `rules`
/// (the active rules of the matrix the proposals are for).
pub fn observe(socket: &Path, rules: &[RuleInfo]) -> Result<Observations, AgentError> {
    let state = control::state(socket)?;
    from_state(&state, rules, SystemTime::now()).map_err(|(what, value)| AgentError::Unknown {
        socket: socket.display().to_string(),
        what,
        value,
    })
}

/// The observations in `state`, read at `now` (the end of the window).
/// A finding with a protocol or state this build does not know is an
/// error naming the field and the value.
pub fn from_state(
    state: &State,
    rules: &[RuleInfo],
    now: SystemTime,
) -> Result<Observations, (&'static str, String)> {
    let mut obs = Observations {
        rules: rules.to_vec(),
        end: Some(now),
        flows: state.status.flows_seen,
        pushed_out: state.findings_dropped,
        ..Observations::default()
    };
    for line in &state.coverage {
        if let Some(t) = line.usage.last_seen {
            obs.last_use.insert(line.id.clone(), t);
        }
    }
    for f in &state.findings {
        match f.kind {
            Verdict::Unexpected => match observed(f)? {
                Ok(o) => obs.observed.push(o),
                Err(Unused::Failed) => obs.left_out.failed += f.count,
                Err(Unused::Guessed) => obs.left_out.guessed += f.count,
            },
            Verdict::Exposed => obs.left_out.exposed += f.count,
            Verdict::Blocked | Verdict::Conforming => {}
        }
    }
    Ok(obs)
}

/// The observation one `unexpected` finding stands for, or why there is none.
fn observed(f: &Finding) -> Result<Result<Observed, Unused>, (&'static str, String)> {
    let proto = Proto::from_name(&f.proto).ok_or_else(|| ("protocol", f.proto.clone()))?;
    let state = FlowState::ALL
        .into_iter()
        .find(|s| crate::alert::state_name(*s) == f.state)
        .ok_or_else(|| ("flow state", f.state.clone()))?;
    Ok(usable(proto, state, f.initiator_seen).map(|()| Observed {
        client: f.client.ip.to_canonical(),
        server: f.server.ip.to_canonical(),
        port: server_port(proto, f.port),
        proto,
        flows: f.count.max(1),
        first_seen: f.first_seen,
        last_seen: f.last_seen,
    }))
}
