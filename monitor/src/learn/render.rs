//! Proposals as matrix YAML: each rule and new service as the lines a
//! matrix holds (for [`super::merge`] to indent and insert), and the whole
//! proposal as a patch file of `services:` and `rules:` that a reviewer
//! reads, edits and merges. The rules documented but unused in the window
//! are listed as comments, for review: nothing is deleted.

use std::time::{Duration, SystemTime};

use super::{
    cover::Places,
    ports,
    propose::{Learnt, NewPlacement, NewService, Proposal},
};
use crate::{alert::NAMES_SHOWN, matrix::ProtoSpec, replay::UnusedRule};

/// `24h`, `90m`, `45s`; `whole capture` without a window.
pub fn window_text(window: Option<Duration>) -> String {
    let Some(w) = window else { return "whole capture".into() };
    let s = w.as_secs();
    if s > 0 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s > 0 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else if w.subsec_millis() == 0 {
        format!("{s}s")
    } else {
        format!("{}ms", w.as_millis())
    }
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A scalar YAML reads back as this text: plain when that is safe, else
/// double-quoted (JSON's quoting is YAML's).
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && !["true", "false", "null", "yes", "no", "on", "off", "y", "n"]
            .contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string serialises")
    }
}

/// `[a, b, c]`, the first [`NAMES_SHOWN`] and `+N more` past them.
fn list(items: &[String]) -> String {
    let mut shown: Vec<String> = items.iter().take(NAMES_SHOWN).map(|s| scalar(s)).collect();
    if items.len() > NAMES_SHOWN {
        shown.push(scalar(&format!("+{} more", items.len() - NAMES_SHOWN)));
    }
    format!("[{}]", shown.join(", "))
}

/// A rule's lines, the first `- id: ...`, the others indented under it.
pub fn rule_lines(p: &Proposal, places: &Places, window: &str, seen_in: &[String]) -> Vec<String> {
    let names = |v: &[String]| if v.len() == 1 { v[0].clone() } else { format!("[{}]", v.join(", ")) };
    let mut l =
        vec![format!("- id: {}", p.id), format!("  from: {}", names(&p.from)), format!("  to: {}", p.to)];
    if !p.ports.is_empty() {
        let key = if p.ports.len() == 1 && p.ports[0].0 == p.ports[0].1 { "port" } else { "ports" };
        l.push(format!("  {key}: {}", ports::yaml(&p.ports)));
    }
    let proto = match p.proto {
        ProtoSpec::Tcp => "tcp",
        ProtoSpec::Udp => "udp",
        ProtoSpec::Both => "both",
        ProtoSpec::Icmp => "icmp",
    };
    l.push(format!("  proto: {proto}"));
    let e = &p.evidence;
    l.push(format!(
        "  purpose: {}",
        scalar(&format!(
            "proposed by monitor learn from {} undocumented flow(s); review and describe",
            e.flows
        ))
    ));
    let hosts = |a: &std::collections::BTreeSet<std::net::IpAddr>| {
        let mut v: Vec<String> = a.iter().map(|ip| places.host_name(*ip)).collect();
        v.sort();
        v.dedup();
        v
    };
    l.push("  learnt:".into());
    l.push(format!("    flows: {}", e.flows));
    l.push(format!("    clients: {}", list(&hosts(&e.clients))));
    l.push(format!("    servers: {}", list(&hosts(&e.servers))));
    l.push(format!("    first_seen: {}", time(e.first_seen)));
    l.push(format!("    last_seen: {}", time(e.last_seen)));
    l.push(format!("    window: {}", scalar(window)));
    if !seen_in.is_empty() {
        l.push(format!("    seen_in: {}", list(seen_in)));
    }
    l
}

/// A new service's lines, the first `name:`.
pub fn service_lines(s: &NewService) -> Vec<String> {
    match &s.placement {
        NewPlacement::Group(g) => vec![
            format!("{}:", s.name),
            format!("  description: {}", scalar(&format!("inventory group {g} (added by monitor learn)"))),
            format!("  group: {}", scalar(g)),
        ],
        NewPlacement::Cidrs(nets) => vec![
            format!("{}:", s.name),
            "  description: addresses in no service, group or zone (added by monitor learn)".into(),
            format!("  cidrs: [{}]", nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")),
        ],
    }
}

/// The comment that heads what `learn` writes, one line per item.
pub fn header(learnt: &Learnt, seen_in: &[String]) -> Vec<String> {
    let span = match (learnt.start, learnt.end) {
        (Some(a), Some(b)) => format!(", {} to {}", time(a), time(b)),
        (None, Some(b)) => format!(", up to {}", time(b)),
        _ => String::new(),
    };
    let mut h = vec![format!(
        "# monitor learn: {} rule(s) proposed for {} undocumented flow(s) in {} (window: {}{span}).",
        learnt.rules.len(),
        learnt.flows,
        if seen_in.is_empty() { "the observations".to_string() } else { seen_in.join(", ") },
        window_text(learnt.window),
    )];
    h.push("# Review each rule: describe its purpose, narrow or widen its names, then keep it.".into());
    h
}

/// The comment lines listing documented rules unused in the window.
pub fn unused_lines(unused: &[UnusedRule]) -> Vec<String> {
    if unused.is_empty() {
        return vec!["# Every documented rule was used in the window.".into()];
    }
    let mut l = vec![format!(
        "# Documented rules no flow used in the window ({}): review them; nothing is deleted.",
        unused.len()
    )];
    for r in unused {
        let what = if r.ports.is_empty() { r.proto.to_string() } else { format!("{}/{}", r.ports, r.proto) };
        l.push(format!("#   {} {} -> {} {what} ({})", r.id, r.source, r.target, r.provenance));
    }
    l
}

/// The patch file: header, `services:` (if any), `rules:`, unused rules.
pub fn patch(learnt: &Learnt, places: &Places, unused: &[UnusedRule], seen_in: &[String]) -> String {
    let window = window_text(learnt.window);
    let mut out: Vec<String> = header(learnt, seen_in);
    if !learnt.services.is_empty() {
        out.push("services:".into());
        for s in &learnt.services {
            out.extend(service_lines(s).into_iter().map(|l| format!("  {l}")));
        }
    }
    if learnt.rules.is_empty() {
        out.push("rules: []".into());
    } else {
        out.push("rules:".into());
        for p in &learnt.rules {
            out.extend(rule_lines(p, places, &window, seen_in).into_iter().map(|l| format!("  {l}")));
        }
    }
    out.extend(unused_lines(unused));
    let mut s = out.join("\n");
    s.push('\n');
    s
}
