//! The page of a running agent (`monitor report --format html`), from its
//! answer to `state json` ([`State`]): the rules' use since it started,
//! the newest findings it keeps (at most
//! [`crate::live::state::MAX_FINDINGS`], folded by kind, client, server
//! and port; what it pushed out is counted on the page), and the graph
//! when the caller could draw one (it needs the matrix).

use std::net::IpAddr;

use super::{Count, Fact, Finding, Findings, Page, RuleRef, RuleRow};
use crate::{
    alert::Kind,
    live::state::{self, State, Verdict},
};

/// The page of `state`, read from the agent at `socket`; `graph` is its
/// SVG when there is one.
pub fn page(state: &State, socket: &str, graph: Option<String>) -> Page {
    let rules: Vec<RuleRow> = state
        .coverage
        .iter()
        .map(|r| RuleRow { rule: r.clone(), seen: r.usage.flows > 0 || r.usage.packets > 0 })
        .collect();
    let never = rules.iter().filter(|r| !r.seen).count() as u64;
    let findings: Vec<Finding> = state.findings.iter().filter_map(finding).collect();
    let of = |kind: Kind| findings.iter().filter(|f| f.kind == kind).map(|f| f.count).sum::<u64>();
    let s = &state.status;
    Page {
        title: format!("monitor report: {socket}"),
        subtitle: format!("what the monitor running behind {socket} has seen since it started"),
        counts: vec![
            Count { label: "flows", value: s.flows_seen, tone: "" },
            Count { label: "conforming", value: s.conforming, tone: "ok" },
            Count { label: "unexpected", value: of(Kind::Unexpected), tone: "unexpected" },
            Count { label: "blocked", value: of(Kind::Blocked), tone: "blocked" },
            Count { label: "exposed", value: of(Kind::Exposed), tone: "exposed" },
            Count { label: "rules never seen", value: never, tone: "never" },
        ],
        facts: vec![
            Fact { label: "control socket", value: socket.to_string() },
            Fact { label: "interfaces", value: s.interfaces.join(", ") },
            Fact { label: "up for", value: format!("{:.0} s", s.uptime_secs) },
            Fact {
                label: "findings shown",
                value: format!(
                    "the newest {} (older ones pushed out: {})",
                    state.findings.len(),
                    state.findings_dropped
                ),
            },
        ],
        graph,
        rules,
        findings: Findings::Listed(findings),
    }
}

fn finding(f: &state::Finding) -> Option<Finding> {
    let kind = match f.kind {
        Verdict::Unexpected => Kind::Unexpected,
        Verdict::Blocked => Kind::Blocked,
        Verdict::Exposed => Kind::Exposed,
        Verdict::Conforming => return None,
    };
    let (ids, closest) = match &f.rule {
        Some(rule) => (vec![rule.clone()], false),
        None => (f.closest.clone(), true),
    };
    // The state carries the document line of the rule, else of the first
    // closest rule.
    let rules = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| RuleRef { id, provenance: if i == 0 { f.provenance.clone() } else { None } })
        .collect();
    let server = match f.server.ip {
        IpAddr::V6(ip) => format!("[{ip}]:{}", f.port),
        IpAddr::V4(ip) => format!("{ip}:{}", f.port),
    };
    let host = |h: &state::Host| h.host.as_ref().map(|n| format!("host {n}")).unwrap_or_default();
    Some(Finding {
        kind,
        proto: f.proto.clone(),
        client: f.client.ip.to_string(),
        client_names: host(&f.client),
        server,
        server_names: host(&f.server),
        rules,
        closest,
        reason: f.reason.clone(),
        state: f.state.clone(),
        first_seen: humantime::format_rfc3339_seconds(f.first_seen).to_string(),
        packets: f.packets,
        bytes: f.bytes,
        count: f.count,
    })
}
