//! The page of a running agent (`monitor report --format html`), from the
//! coverage report its control socket answers with ([`Report`]): the
//! rules' use and the rules never seen. That report carries no findings
//! and no graph, so the page says so in their sections rather than show
//! them empty.

use super::{Count, Fact, Findings, Page, RuleRow};
use crate::live::coverage::Report;

/// What the findings section says on a running agent's page.
pub const NO_FINDINGS: &str = "The running agent's findings are not in this report yet: \
     its alert stream (`monitor run`'s output, file or webhook) has them.";

/// The page of `report`, read from the agent at `socket`.
pub fn page(report: &Report, socket: &str) -> Page {
    let rules: Vec<RuleRow> = report
        .rules
        .iter()
        .map(|r| RuleRow { rule: r.clone(), seen: !report.unused.contains(&r.id) })
        .collect();
    let sum = |f: fn(&RuleRow) -> u64| rules.iter().map(f).sum::<u64>();
    let (flows, packets, bytes, blocked) = (
        sum(|r| r.rule.usage.flows),
        sum(|r| r.rule.usage.packets),
        sum(|r| r.rule.usage.bytes),
        sum(|r| r.rule.usage.blocked),
    );
    let losses: Vec<String> = report
        .losses
        .fields()
        .iter()
        .filter(|(_, n, _)| *n > 0)
        .map(|(k, n, _)| format!("{k} {n}"))
        .collect();
    Page {
        title: format!("monitor report: {socket}"),
        subtitle: format!("the coverage of the monitor running behind {socket}, since it started"),
        counts: vec![
            Count { label: "documented flows", value: flows, tone: "ok" },
            Count { label: "blocked", value: blocked, tone: "blocked" },
            Count { label: "rules", value: rules.len() as u64, tone: "" },
            Count { label: "rules never seen", value: report.unused.len() as u64, tone: "never" },
        ],
        facts: vec![
            Fact { label: "control socket", value: socket.to_string() },
            Fact { label: "packets of documented flows", value: packets.to_string() },
            Fact { label: "bytes of documented flows", value: bytes.to_string() },
            Fact {
                label: "lost on the way from the kernel",
                value: if losses.is_empty() { "nothing".into() } else { losses.join(", ") },
            },
        ],
        graph: None,
        rules,
        findings: Findings::NotAvailable(NO_FINDINGS.into()),
    }
}
