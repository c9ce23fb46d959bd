//! The four views of `monitor top` as table models: rows of text with a
//! tone each, filtered and sorted, built from the agent's state without a
//! terminal, so tests read them as well as the rendered screen
//! (`super::draw` renders them).

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet},
    time::{Duration, SystemTime},
};

use ratatui::layout::Constraint;

use super::filter::{parse_ports, Facts, Filter};
use crate::live::state::{Finding, FlowLine, State, Verdict, UNDOCUMENTED};

/// The four views, on the number keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Rules,
    Findings,
    Flows,
    Groups,
}

impl View {
    pub const ALL: [View; 4] = [View::Rules, View::Findings, View::Flows, View::Groups];

    pub fn name(self) -> &'static str {
        match self {
            View::Rules => "rules",
            View::Findings => "findings",
            View::Flows => "flows",
            View::Groups => "groups",
        }
    }

    /// The columns `s` cycles through, the first the default.
    pub fn sorts(self) -> &'static [&'static str] {
        match self {
            View::Rules => &["rule", "flows", "packets", "bytes", "blocked", "last use"],
            View::Findings => &["newest", "count", "kind", "port"],
            View::Flows => &["bytes", "packets", "port", "rule"],
            View::Groups => &["name", "flows"],
        }
    }

    pub fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }
}

/// How a view is asked for: the filter, the sort column, and when the
/// state was taken (ages count from it).
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    pub filter: &'a Filter,
    pub sort: &'a str,
    pub taken: SystemTime,
}

/// How a cell is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Plain,
    /// A rule never used.
    Dim,
    Conforming,
    Blocked,
    Unexpected,
    Exposed,
}

impl Tone {
    pub fn of(v: Verdict) -> Tone {
        match v {
            Verdict::Conforming => Tone::Conforming,
            Verdict::Blocked => Tone::Blocked,
            Verdict::Unexpected => Tone::Unexpected,
            Verdict::Exposed => Tone::Exposed,
        }
    }
}

/// One cell of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub tone: Tone,
}

impl Cell {
    fn new(text: impl Into<String>, tone: Tone) -> Cell {
        Cell { text: text.into(), tone }
    }
}

/// A view, ready to render.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub header: Vec<String>,
    pub widths: Vec<Constraint>,
    pub rows: Vec<Vec<Cell>>,
    /// Shown beside the tabs: how many rows of how many, what was dropped.
    pub note: String,
}

/// The model of `view` of `state` (none yet: an empty model saying so).
pub fn model(view: View, state: Option<&State>, ask: &Ask<'_>) -> Model {
    let Some(state) = state else {
        return Model { header: vec![], widths: vec![], rows: vec![], note: "waiting for the agent".into() };
    };
    match view {
        View::Rules => rules(ask, state),
        View::Findings => findings(ask, state),
        View::Flows => flows(ask, state),
        View::Groups => groups(ask, state),
    }
}

fn rules(ask: &Ask<'_>, state: &State) -> Model {
    let mut rules: Vec<_> = state
        .coverage
        .iter()
        .filter(|r| {
            let mut kinds = Vec::new();
            if r.usage.blocked > 0 {
                kinds.push("blocked");
            }
            if r.usage.flows == 0 {
                kinds.push("unused");
            }
            ask.filter.matches(&Facts {
                ports: Some(parse_ports(&r.ports)),
                hosts: Some(vec![&r.source, &r.target]),
                rules: Some(vec![&r.id]),
                kinds: Some(kinds),
                proto: Some(&r.proto),
                groups: None,
            })
        })
        .collect();
    match ask.sort {
        "flows" => rules.sort_by_key(|r| Reverse(r.usage.flows)),
        "packets" => rules.sort_by_key(|r| Reverse(r.usage.packets)),
        "bytes" => rules.sort_by_key(|r| Reverse(r.usage.bytes)),
        "blocked" => rules.sort_by_key(|r| Reverse(r.usage.blocked)),
        "last use" => rules.sort_by_key(|r| Reverse(r.usage.last_seen)),
        _ => rules.sort_by(|a, b| a.id.cmp(&b.id)),
    }
    let used = state.coverage.iter().filter(|r| r.usage.flows > 0).count();
    let note = format!("{} of {} rules, {used} used", rules.len(), state.coverage.len());
    let rows = rules
        .into_iter()
        .map(|r| {
            let tone = if r.usage.blocked > 0 {
                Tone::Blocked
            } else if r.usage.flows == 0 {
                Tone::Dim
            } else {
                Tone::Plain
            };
            let last = r.usage.last_seen.map_or("never".to_string(), |t| ago(ask.taken, t));
            [
                r.id.clone(),
                r.proto.clone(),
                r.ports.clone(),
                count(r.usage.flows),
                count(r.usage.packets),
                bytes(r.usage.bytes),
                count(r.usage.blocked),
                last,
            ]
            .into_iter()
            .map(|t| Cell::new(t, tone))
            .collect()
        })
        .collect();
    Model {
        header: strings(&["RULE", "PROTO", "PORTS", "FLOWS", "PACKETS", "BYTES", "BLOCKED", "LAST USE"]),
        widths: vec![
            Constraint::Fill(1),
            Constraint::Length(5),
            Constraint::Length(11),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(8),
        ],
        rows,
        note,
    }
}

fn finding_facts(f: &Finding) -> Facts<'_> {
    let mut hosts = Vec::new();
    for h in [&f.client, &f.server] {
        hosts.extend(h.host.as_deref());
    }
    let mut rules: Vec<&str> = f.rule.iter().map(String::as_str).collect();
    rules.extend(f.closest.iter().map(String::as_str));
    Facts {
        ports: Some(vec![(f.port, f.port)]),
        hosts: Some(hosts),
        rules: Some(rules),
        kinds: Some(vec![f.kind.as_str()]),
        proto: Some(&f.proto),
        groups: None,
    }
}

fn findings(ask: &Ask<'_>, state: &State) -> Model {
    // Addresses are matched as text too: `host:10.200.2.50`.
    let addrs: Vec<(String, String)> =
        state.findings.iter().map(|f| (f.client.ip.to_string(), f.server.ip.to_string())).collect();
    let mut shown: Vec<(usize, &Finding)> = state
        .findings
        .iter()
        .enumerate()
        .filter(|(i, f)| {
            let mut facts = finding_facts(f);
            if let Some(h) = &mut facts.hosts {
                h.extend([addrs[*i].0.as_str(), addrs[*i].1.as_str()]);
            }
            ask.filter.matches(&facts)
        })
        .collect();
    match ask.sort {
        "count" => shown.sort_by_key(|(i, f)| (Reverse(f.count), *i)),
        "kind" => shown.sort_by_key(|(i, f)| (Reverse(f.kind), *i)),
        "port" => shown.sort_by_key(|(i, f)| (f.port, *i)),
        _ => {} // newest first, as the agent sends them
    }
    let mut note = format!("{} of {} findings", shown.len(), state.findings.len());
    if state.findings_dropped > 0 {
        note.push_str(&format!(", {} older dropped", state.findings_dropped));
    }
    let rows = shown
        .into_iter()
        .map(|(_, f)| {
            let tone = Tone::of(f.kind);
            let end = |h: &crate::live::state::Host| h.host.clone().unwrap_or_else(|| h.ip.to_string());
            let reason = match (&f.rule, f.closest.first()) {
                (Some(rule), _) => format!("{rule}: {}", f.reason),
                (None, Some(close)) => format!("{} (closest {close})", f.reason),
                (None, None) => f.reason.clone(),
            };
            vec![
                Cell::new(f.kind.as_str(), tone),
                Cell::new(end(&f.client), Tone::Plain),
                Cell::new(end(&f.server), Tone::Plain),
                Cell::new(f.port.to_string(), Tone::Plain),
                Cell::new(reason, Tone::Plain),
                Cell::new(count(f.count), Tone::Plain),
            ]
        })
        .collect();
    Model {
        header: strings(&["KIND", "CLIENT", "SERVER", "PORT", "REASON", "COUNT"]),
        widths: vec![
            Constraint::Length(10),
            Constraint::Length(15),
            Constraint::Length(15),
            Constraint::Length(5),
            Constraint::Fill(1),
            Constraint::Length(5),
        ],
        rows,
        note,
    }
}

fn flows(ask: &Ask<'_>, state: &State) -> Model {
    let mut shown: Vec<&FlowLine> = state
        .flows
        .iter()
        .filter(|f| {
            let (ci, si) = (f.client.ip.to_string(), f.server.ip.to_string());
            let mut hosts = vec![ci.as_str(), si.as_str()];
            hosts.extend(f.client.host.as_deref());
            hosts.extend(f.server.host.as_deref());
            ask.filter.matches(&Facts {
                ports: Some(vec![(f.server.port, f.server.port)]),
                hosts: Some(hosts),
                rules: Some(vec![&f.rule]),
                kinds: Some(vec![&f.verdict]),
                proto: Some(&f.proto),
                groups: None,
            })
        })
        .collect();
    match ask.sort {
        "packets" => shown.sort_by_key(|f| Reverse(f.packets)),
        "port" => shown.sort_by_key(|f| f.server.port),
        "rule" => shown.sort_by(|a, b| a.rule.cmp(&b.rule)),
        _ => shown.sort_by_key(|f| Reverse(f.bytes)),
    }
    let note = format!("{} of the {} busiest flows", shown.len(), state.flows.len());
    let rows = shown
        .into_iter()
        .map(|f| {
            let end = |e: &crate::live::state::End| e.host.clone().unwrap_or_else(|| e.ip.to_string());
            let tone = match f.verdict.as_str() {
                "blocked" => Tone::Blocked,
                "unexpected" => Tone::Unexpected,
                "exposed" => Tone::Exposed,
                _ if f.rule == UNDOCUMENTED => Tone::Unexpected,
                _ => Tone::Plain,
            };
            vec![
                Cell::new(f.proto.clone(), Tone::Plain),
                Cell::new(format!("{}:{}", end(&f.client), f.client.port), Tone::Plain),
                Cell::new(end(&f.server), Tone::Plain),
                Cell::new(f.server.port.to_string(), Tone::Plain),
                Cell::new(count(f.packets), Tone::Plain),
                Cell::new(bytes(f.bytes), Tone::Plain),
                Cell::new(f.rule.clone(), tone),
            ]
        })
        .collect();
    Model {
        header: strings(&["PROTO", "CLIENT", "SERVER", "PORT", "PACKETS", "BYTES", "RULE"]),
        widths: vec![
            Constraint::Length(5),
            Constraint::Length(21),
            Constraint::Length(15),
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Fill(1),
        ],
        rows,
        note,
    }
}

/// Widest a group name is shown in the grid.
const GROUP_WIDTH: usize = 12;

fn groups(ask: &Ask<'_>, state: &State) -> Model {
    let cells: Vec<_> = state
        .groups
        .iter()
        .filter(|c| {
            ask.filter.matches(&Facts {
                ports: None,
                hosts: None,
                rules: None,
                kinds: Some(vec![c.worst.as_str()]),
                proto: None,
                groups: Some(vec![&c.source, &c.target]),
            })
        })
        .collect();
    let mut grid: BTreeMap<&str, BTreeMap<&str, (u64, Verdict)>> = BTreeMap::new();
    let mut targets: BTreeMap<&str, u64> = BTreeMap::new();
    for c in &cells {
        grid.entry(&c.source).or_default().insert(&c.target, (c.flows, c.worst));
        *targets.entry(&c.target).or_default() += c.flows;
    }
    let mut sources: Vec<(&str, u64)> =
        grid.iter().map(|(s, row)| (*s, row.values().map(|(n, _)| n).sum())).collect();
    let mut targets: Vec<(&str, u64)> = targets.into_iter().collect();
    if ask.sort == "flows" {
        sources.sort_by_key(|(s, n)| (Reverse(*n), *s));
        targets.sort_by_key(|(t, n)| (Reverse(*n), *t));
    }
    // As many target columns as fit 80 columns beside the source names.
    let fit = (80 - GROUP_WIDTH - 1) / (GROUP_WIDTH.min(8) + 1);
    let hidden = targets.len().saturating_sub(fit);
    targets.truncate(fit);
    let names: BTreeSet<&str> = targets.iter().map(|(t, _)| *t).collect();
    let rows = sources
        .iter()
        .map(|(s, _)| {
            let mut row = vec![Cell::new(short(s, GROUP_WIDTH), Tone::Plain)];
            row.extend(targets.iter().map(|(t, _)| match grid[s].get(t) {
                Some((n, worst)) => Cell::new(count(*n), Tone::of(*worst)),
                None => Cell::new("", Tone::Plain),
            }));
            row
        })
        .collect();
    let mut header = vec!["FROM \\ TO".to_string()];
    header.extend(targets.iter().map(|(t, _)| short(t, 8)));
    let mut widths = vec![Constraint::Length(GROUP_WIDTH as u16)];
    widths.extend(names.iter().map(|_| Constraint::Length(8)));
    let mut note = format!("{} sources x {} targets", sources.len(), names.len());
    if hidden > 0 {
        note.push_str(&format!(", {hidden} more targets"));
    }
    if state.groups_dropped > 0 {
        note.push_str(&format!(", {} flows past the grid", state.groups_dropped));
    }
    Model { header, widths, rows, note }
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

/// A name cut to `n` characters, its end marked with `~`.
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n - 1).collect();
    out.push('~');
    out
}

/// 999, 1.2k, 34k, 5.6M, ...
pub fn count(n: u64) -> String {
    scaled(n, 1000.0, &["", "k", "M", "G", "T"])
}

/// 512B, 1.5kB, 20MB, ...
pub fn bytes(n: u64) -> String {
    scaled(n, 1000.0, &["B", "kB", "MB", "GB", "TB"])
}

fn scaled(n: u64, base: f64, units: &[&str]) -> String {
    let mut v = n as f64;
    let mut i = 0;
    while v >= base && i + 1 < units.len() {
        v /= base;
        i += 1;
    }
    if i == 0 {
        format!("{n}{}", units[0])
    } else if v < 10.0 {
        format!("{v:.1}{}", units[i])
    } else {
        format!("{v:.0}{}", units[i])
    }
}

/// How long before `now` `t` was: `4s ago`, `3m ago`, `2h ago`, `5d ago`.
pub fn ago(now: SystemTime, t: SystemTime) -> String {
    format!("{} ago", span(now.duration_since(t).unwrap_or_default()))
}

/// `45s`, `3m`, `2h`, `5d`; under 10 s with a tenth.
pub fn span(d: Duration) -> String {
    let s = d.as_secs();
    if s < 10 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m", s / 60)
    } else if s < 2 * 86400 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86400)
    }
}
