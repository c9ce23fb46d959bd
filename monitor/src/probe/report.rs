//! The probe's report: one line (text) or one object (JSON) per probed
//! path, then the paths not probed. The JSON schema is in docs/firewall.md
//! ("Probe").

use serde::Serialize;

use super::{
    plan::{Plan, Probe, Skipped},
    prober::Outcome,
};

/// One probed path and what came back.
#[derive(Clone, Debug, Serialize)]
pub struct Result {
    #[serde(flatten)]
    pub probe: Probe,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub host: String,
    /// Whether every probed path is open (the exit status is 0 then).
    pub ok: bool,
    pub probed: usize,
    pub open: usize,
    pub results: Vec<Result>,
    pub not_probed: Vec<Skipped>,
}

pub fn report(plan: Plan, outcomes: Vec<Outcome>) -> Report {
    let results: Vec<Result> =
        plan.probes.into_iter().zip(outcomes).map(|(probe, outcome)| Result { probe, outcome }).collect();
    let open = results.iter().filter(|r| r.outcome.passes()).count();
    Report {
        host: plan.host,
        ok: open == results.len(),
        probed: results.len(),
        open,
        results,
        not_probed: plan.skipped,
    }
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::IcmpRejected { from, icmp_type, icmp_code, meaning } => {
            format!("icmp-rejected by {from} ({meaning}, type {icmp_type} code {icmp_code})")
        }
        Outcome::Error { message } => format!("error: {message}"),
        o => o.name().to_string(),
    }
}

fn probe_line(p: &Probe) -> String {
    let note = p.port_note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default();
    format!("{} {}/{}{} -> {}  [{}]", p.rule, p.proto.as_str(), p.addr, note, p.target, p.provenance)
}

fn skipped_lines(out: &mut String, skipped: &[Skipped]) {
    for s in skipped {
        out.push_str(&format!(
            "  {} {}/{} -> {}  [{}]  {}\n",
            s.rule, s.proto, s.ports, s.target, s.provenance, s.reason
        ));
    }
}

/// The plan, for `--dry-run`.
pub fn plan_text(plan: &Plan) -> String {
    let mut out = format!("probe plan for {}: {} probes\n", plan.host, plan.probes.len());
    for p in &plan.probes {
        out.push_str(&format!("  {}\n", probe_line(p)));
    }
    if !plan.skipped.is_empty() {
        out.push_str(&format!("not probed: {}\n", plan.skipped.len()));
        skipped_lines(&mut out, &plan.skipped);
    }
    out
}

pub fn text(r: &Report) -> String {
    let mut out = format!("probe from {}: {} of {} paths open\n", r.host, r.open, r.probed);
    for x in &r.results {
        let mark = if x.outcome.passes() { "ok  " } else { "FAIL" };
        out.push_str(&format!("{mark} {}  {}\n", probe_line(&x.probe), outcome_text(&x.outcome)));
    }
    if !r.not_probed.is_empty() {
        out.push_str(&format!("not probed: {}\n", r.not_probed.len()));
        skipped_lines(&mut out, &r.not_probed);
    }
    out
}
