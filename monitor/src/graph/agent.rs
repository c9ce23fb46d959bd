//! The graph of a running agent: its answer to `state json`
//! ([`crate::live::state::State`]), drawn on the rules of the matrix given.
//!
//! A rule's flows and blocked flows are the agent's coverage since it
//! started. Findings come from the newest the agent keeps (at most
//! [`crate::live::state::MAX_FINDINGS`]); what it pushed out is counted in
//! the state's `findings_dropped`, and the graph's notes say so. How a
//! blocked flow failed is read from the first words of its reason
//! (`unanswered`, `refused`, `icmp admin-prohibited`).

use super::{Graph, NodeKind, Observations, Party, Port};
use crate::{
    engine::{Sources, SourcesError},
    flow::Proto,
    live::state::{Finding, Host, State, Verdict},
};

/// The graph and what compiling the sources warned of.
pub struct AgentGraph {
    pub graph: Graph,
    pub warnings: Vec<String>,
}

/// Draws `state` on the rules of `sources`.
pub fn graph(sources: &Sources, state: &State) -> Result<AgentGraph, SourcesError> {
    let compiled = sources.compile()?;
    let obs = observations(state);
    let mut graph = Graph::build(&compiled.matrix, compiled.engine.rules(), &obs);
    if state.findings_dropped > 0 {
        graph.notes.push(format!(
            "{} older finding(s) were pushed out of the agent's newest {} and are not drawn",
            state.findings_dropped,
            state.findings.len()
        ));
    }
    Ok(AgentGraph { graph, warnings: compiled.warnings })
}

/// The agent's coverage and findings as observations.
pub fn observations(state: &State) -> Observations {
    let mut obs = Observations::default();
    for line in &state.coverage {
        let u = obs.rule(&line.id);
        u.flows += line.usage.flows;
        u.blocked += line.usage.blocked;
    }
    for f in &state.findings {
        finding(&mut obs, f);
    }
    obs
}

fn finding(obs: &mut Observations, f: &Finding) {
    let proto =
        [Proto::Tcp, Proto::Udp, Proto::Icmp, Proto::Icmpv6].into_iter().find(|p| p.as_str() == f.proto);
    let port = proto.map(|proto| Port { proto, port: f.port });
    let (source, target) = (party(&f.client), party(&f.server));
    match f.kind {
        Verdict::Unexpected => obs.undocumented(source, target, port, f.count),
        Verdict::Exposed => obs.exposed(source, target, f.rule.as_deref().unwrap_or("?"), port, f.count),
        Verdict::Blocked => {
            let how = failure(&f.reason);
            *obs.rule(f.rule.as_deref().unwrap_or("?")).failures.entry(how).or_default() += f.count;
        }
        Verdict::Conforming => {}
    }
}

/// How a blocked flow failed, in the words a capture's graph uses, from
/// its reason's first words (`refused: ...`, `icmp admin-prohibited: ...`).
fn failure(reason: &str) -> String {
    let head = reason.split(':').next().unwrap_or_default().trim();
    match head.strip_prefix("icmp ") {
        Some(name) => format!("icmp-rejected ({name})"),
        None => head.to_string(),
    }
}

/// An end by its inventory host, else its address (the state names no zone).
fn party(h: &Host) -> Party {
    match &h.host {
        Some(name) => Party { kind: NodeKind::Host, name: name.clone() },
        None => Party { kind: NodeKind::Address, name: h.ip.to_string() },
    }
}
