//! `monitor fleet report`: the whole cluster's conformance over a window,
//! read from Prometheus (docs/fleet.md, "fleet report").
//!
//! The agents' series are those of the fleet metrics contract
//! (docs/metrics.md): per rule, per documented path and outcome, the ICMP
//! errors with their sender, the findings, and `monitor_agent_info`. A few
//! instant queries fetch their increase over the window; the attribution of
//! each blocked path (at the server, in the network, unknown) is computed
//! here from those numbers, with the logic the shipped rules
//! (deploy/prometheus-rules.yaml) use, so the report does not depend on
//! the rules being loaded.
//!
//! A counter's count over the window is the counter's increase, except for
//! a series created inside the window: its first value is already a count
//! (a path's series are created at its first attempt), which `increase()`
//! does not see, so such a series counts its whole value (its maximum over
//! the window). In PromQL, for a selector `x` and window `w`:
//! `(max_over_time(x[w]) unless x offset w) or increase(x[w])`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    time::{Duration, SystemTime},
};

use serde::Serialize;

use super::prometheus::{Prometheus, PrometheusError, Sample};

/// The version of the JSON form; a change that removes or renames a field raises it.
pub const JSON_VERSION: u32 = 1;

/// What to report on.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// How far back from `time` to count.
    pub window: Duration,
    /// The scrape job of the agents (`job="monitor"` in the shipped rules).
    pub job: String,
    /// The evaluation time (the window's end).
    pub time: SystemTime,
    /// The inventory's host names, when the caller gave one: hosts with no
    /// agent are then reported, and agents that are no inventory host.
    pub inventory: Option<BTreeSet<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Prometheus(#[from] PrometheusError),
    #[error(
        "no monitor_agent_info series with job=\"{job}\" in the last {window} at {url}: is Prometheus scraping \
         the agents? see docs/fleet.md{targets}"
    )]
    NoAgents { url: String, job: String, window: String, targets: String },
    #[error("the window is zero: give --window a duration such as 24h")]
    ZeroWindow,
}

/// Where a blocked path is blocked (docs/metrics.md, "Attribution").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum At {
    /// The server's agent saw the attempts arrive and they were not
    /// answered, or refused; or the server itself sent the ICMP error.
    Server,
    /// The server's agent is up and saw no failed arrival; or a router or
    /// firewall on the way sent the ICMP error.
    Network,
    /// The client's attempts failed, nobody sent an ICMP error, and the
    /// server runs no agent that reported in the window.
    Unknown,
}

impl At {
    pub fn as_str(self) -> &'static str {
        match self {
            At::Server => "server",
            At::Network => "network",
            At::Unknown => "unknown",
        }
    }
}

/// One count behind an attribution: `attempts` of the path that the agent
/// on `node`, standing at `side`, counted with `outcome`; for an ICMP
/// rejection, who sent it and whether that was the server.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Evidence {
    pub node: String,
    pub side: String,
    /// `answered`, `refused`, `icmp_rejected` or `unanswered`.
    pub outcome: String,
    pub attempts: u64,
    /// The ICMP error's sender (an inventory host, or `other`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// `server` or `network`, for an ICMP error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// A documented path (rule, client host, server host) blocked in the
/// window, with one attribution; a path blocked in two places has two.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockedPath {
    pub client: String,
    pub server: String,
    pub at: At,
    /// The counts the attribution rests on.
    pub evidence: Vec<Evidence>,
    /// The node name of the server's agent when one reported in the
    /// window, else null.
    pub server_agent: Option<String>,
}

/// One documented rule across the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleReport {
    pub rule: String,
    /// False when no agent counted a flow of the rule in the window.
    pub used: bool,
    /// Flows by node, the nodes that counted some (a flow is counted by
    /// every agent that saw it: the client's, the server's, a router's).
    pub flows: BTreeMap<String, u64>,
    /// Blocked flows by node, the nodes that counted some.
    pub blocked: BTreeMap<String, u64>,
    pub blocked_paths: Vec<BlockedPath>,
}

/// Undocumented flows from one group to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Undocumented {
    pub source_group: String,
    pub target_group: String,
    /// Flows by the node that counted them.
    pub flows: BTreeMap<String, u64>,
}

/// An agent that reported (exported `monitor_agent_info`) in the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Agent {
    pub node: String,
    pub instance: String,
    /// Scraped successfully at the report's time.
    pub up: bool,
}

/// A scrape target of the job that Prometheus fails to scrape now.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DownTarget {
    pub instance: String,
    /// The target's `node` label, null when it has none.
    pub node: Option<String>,
    /// The fraction of the window's scrapes that succeeded (0 to 1).
    pub up_ratio: f64,
}

/// An inventory host that no agent reported for in the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostWithoutAgent {
    pub host: String,
    /// `down`: a target with its `node` label exists and is down now;
    /// `none`: no target of the job carries its name.
    pub target: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InventoryCheck {
    pub hosts_without_agent: Vec<HostWithoutAgent>,
    /// Agents whose node name is no inventory host: they place every flow
    /// as `transit` (their `--node` should be their inventory name).
    pub agents_not_in_inventory: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Missing {
    pub targets_down: Vec<DownTarget>,
    /// Targets of the job that are up but export no `monitor_agent_info`
    /// (not a monitor agent, or the wrong port).
    pub targets_without_agent_info: Vec<String>,
    /// Null without `--inventory`.
    pub inventory: Option<InventoryCheck>,
}

/// The fleet's conformance report (its JSON form is documented in docs/fleet.md).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub version: u32,
    pub prometheus: String,
    pub job: String,
    /// The window's end, RFC 3339 UTC.
    pub time: String,
    /// The window as PromQL writes it (`24h`).
    pub window: String,
    pub window_seconds: f64,
    pub agents: Vec<Agent>,
    pub rules: Vec<RuleReport>,
    pub undocumented: Vec<Undocumented>,
    pub missing: Missing,
    pub warnings: Vec<String>,
}

/// A PromQL duration: whole hours, minutes or seconds when it is one, else milliseconds.
pub fn promql_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// A PromQL string literal.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The queries the report makes, in the order [`collect`] reads them.
pub struct Queries {
    pub agents: String,
    pub up: String,
    pub up_ratio: String,
    pub flows: String,
    pub blocked: String,
    pub attempts: String,
    pub icmp: String,
    pub unexpected: String,
    pub overflow: String,
}

impl Queries {
    pub fn new(job: &str, window: Duration) -> Queries {
        let w = promql_duration(window);
        let j = format!("job={}", quote(job));
        // A counter's count over the window (see the module's doc).
        let count = |sel: &str| {
            format!("(max_over_time({sel}[{w}]) unless {sel} offset {w}) or increase({sel}[{w}])")
        };
        Queries {
            agents: format!("max_over_time(monitor_agent_info{{{j}}}[{w}])"),
            up: format!("up{{{j}}}"),
            up_ratio: format!("avg_over_time(up{{{j}}}[{w}])"),
            flows: count(&format!("monitor_rule_flows_total{{{j}}}")),
            blocked: count(&format!("monitor_rule_blocked_total{{{j}}}")),
            attempts: count(&format!("monitor_path_attempts_total{{{j}}}")),
            icmp: count(&format!("monitor_path_icmp_rejected_total{{{j}}}")),
            unexpected: count(&format!("monitor_findings_total{{{j},kind=\"unexpected\"}}")),
            overflow: count(&format!("monitor_path_overflow_total{{{j}}}")),
        }
    }
}

/// The query results the report is computed from.
#[derive(Clone, Debug, Default)]
pub struct Results {
    pub agents: Vec<Sample>,
    pub up: Vec<Sample>,
    pub up_ratio: Vec<Sample>,
    pub flows: Vec<Sample>,
    pub blocked: Vec<Sample>,
    pub attempts: Vec<Sample>,
    pub icmp: Vec<Sample>,
    pub unexpected: Vec<Sample>,
    pub overflow: Vec<Sample>,
}

/// Queries Prometheus (all queries at once, at `opts.time`) and builds the report.
pub async fn collect(prom: &Prometheus, opts: &ReportOptions) -> Result<Report, ReportError> {
    if opts.window.is_zero() {
        return Err(ReportError::ZeroWindow);
    }
    let q = Queries::new(&opts.job, opts.window);
    let t = opts.time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    // The agents' query first, alone: a Prometheus that fails every query
    // then always fails this one, and the error is always the same.
    let agents = prom.query(&q.agents, t).await?;
    let (up, up_ratio, flows, blocked, attempts, icmp, unexpected, overflow) = tokio::try_join!(
        prom.query(&q.up, t),
        prom.query(&q.up_ratio, t),
        prom.query(&q.flows, t),
        prom.query(&q.blocked, t),
        prom.query(&q.attempts, t),
        prom.query(&q.icmp, t),
        prom.query(&q.unexpected, t),
        prom.query(&q.overflow, t),
    )?;
    let r = Results { agents, up, up_ratio, flows, blocked, attempts, icmp, unexpected, overflow };
    build(prom.url(), opts, &r)
}

fn no_agents(url: &str, opts: &ReportOptions, up: &[Sample]) -> ReportError {
    let down = up.iter().filter(|s| s.value != 1.0).count();
    let targets = if up.is_empty() {
        format!(" (Prometheus has no target with job=\"{}\")", opts.job)
    } else {
        format!(" ({} target(s) with job=\"{}\", {down} of them down)", up.len(), opts.job)
    };
    ReportError::NoAgents {
        url: url.to_string(),
        job: opts.job.clone(),
        window: promql_duration(opts.window),
        targets,
    }
}

/// A count from a (possibly extrapolated) increase: whole, and at least 1 when above 0.
fn count(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        (v.round() as u64).max(1)
    } else {
        0
    }
}

/// Which node a series comes from, by its scrape target (`job`, `instance`).
struct Nodes {
    by_target: BTreeMap<(String, String), String>,
}

impl Nodes {
    fn of(&self, s: &Sample) -> String {
        let key = (s.label("job").to_string(), s.label("instance").to_string());
        if let Some(n) = self.by_target.get(&key) {
            return n.clone();
        }
        [s.label("exported_node"), s.label("node"), s.label("instance")]
            .into_iter()
            .find(|n| !n.is_empty())
            .unwrap_or("?")
            .to_string()
    }
}

/// The report from query results (no I/O: unit-tested on hand-made results).
pub fn build(url: &str, opts: &ReportOptions, r: &Results) -> Result<Report, ReportError> {
    let window = promql_duration(opts.window);
    let mut warnings = Vec::new();

    // The agents and their node names. The target's `node` label (from
    // `monitor fleet targets`) wins over the scraped one, which becomes
    // `exported_node`; the agent's own (`--node`) is what its `side`
    // labels are relative to, so it is the one used.
    let up_now: BTreeMap<(String, String), bool> =
        r.up.iter()
            .map(|s| ((s.label("job").to_string(), s.label("instance").to_string()), s.value == 1.0))
            .collect();
    let mut by_target = BTreeMap::new();
    let mut agents = Vec::new();
    for s in &r.agents {
        let (target, exported) = (s.label("node"), s.label("exported_node"));
        let node = if exported.is_empty() { target } else { exported };
        let instance = s.label("instance").to_string();
        if node.is_empty() {
            warnings.push(format!(
                "the agent at {instance} exports monitor_agent_info without a node name: it is shown by its \
                 address; give it --node (its inventory name)"
            ));
        }
        if !exported.is_empty() && !target.is_empty() && exported != target {
            warnings.push(format!(
                "the agent at {instance} calls itself {exported:?} (--node) but its scrape target is labelled \
                 node={target:?}: the report uses {exported:?}; make them equal (monitor fleet targets labels \
                 each target with its inventory name)"
            ));
        }
        let node = if node.is_empty() { instance.clone() } else { node.to_string() };
        let key = (s.label("job").to_string(), instance.clone());
        let up = up_now.get(&key).copied().unwrap_or(false);
        if by_target.insert(key, node.clone()).is_none() {
            agents.push(Agent { node, instance, up });
        }
    }
    agents.sort_by(|a, b| (&a.node, &a.instance).cmp(&(&b.node, &b.instance)));
    if agents.is_empty() {
        return Err(no_agents(url, opts, &r.up));
    }
    let nodes = Nodes { by_target };
    let agent_nodes: BTreeSet<&str> = agents.iter().map(|a| a.node.as_str()).collect();
    // Agents up now and at every scrape of the window: only those can say
    // that no attempt arrived (the fleet rules' `monitor:agent_up:10m`).
    let up_all_window: BTreeSet<(String, String)> = r
        .up_ratio
        .iter()
        .filter(|s| s.value >= 1.0)
        .map(|s| (s.label("job").to_string(), s.label("instance").to_string()))
        .collect();
    let agents_up: BTreeSet<&str> = nodes
        .by_target
        .iter()
        .filter(|(key, _)| up_now.get(*key) == Some(&true) && up_all_window.contains(*key))
        .map(|(_, node)| node.as_str())
        .collect();
    let mut seen_names = BTreeMap::<&str, usize>::new();
    for a in &agents {
        *seen_names.entry(a.node.as_str()).or_default() += 1;
    }
    for (n, k) in seen_names {
        if k > 1 {
            warnings.push(format!("{k} agents call themselves {n:?}: give each its own --node"));
        }
    }

    // Per rule.
    let mut rules: BTreeMap<String, RuleReport> = BTreeMap::new();
    fn entry<'a>(rules: &'a mut BTreeMap<String, RuleReport>, name: &str) -> &'a mut RuleReport {
        rules.entry(name.to_string()).or_insert_with(|| RuleReport {
            rule: name.to_string(),
            used: false,
            flows: BTreeMap::new(),
            blocked: BTreeMap::new(),
            blocked_paths: Vec::new(),
        })
    }
    for s in &r.flows {
        let rr = entry(&mut rules, s.label("rule"));
        let n = count(s.value);
        if n > 0 {
            *rr.flows.entry(nodes.of(s)).or_default() += n;
            rr.used = true;
        }
    }
    for s in &r.blocked {
        let rr = entry(&mut rules, s.label("rule"));
        let n = count(s.value);
        if n > 0 {
            *rr.blocked.entry(nodes.of(s)).or_default() += n;
        }
    }

    // Per documented path: the counts, then the attribution.
    type PathKey = (String, String, String);
    let mut paths: BTreeMap<PathKey, (Vec<Evidence>, Vec<Evidence>)> = BTreeMap::new();
    let key = |s: &Sample| -> PathKey {
        (s.label("rule").to_string(), s.label("client").to_string(), s.label("server").to_string())
    };
    for s in &r.attempts {
        let n = count(s.value);
        if n == 0 {
            continue;
        }
        paths.entry(key(s)).or_default().0.push(Evidence {
            node: nodes.of(s),
            side: s.label("side").to_string(),
            outcome: s.label("outcome").to_string(),
            attempts: n,
            sender: None,
            origin: None,
        });
    }
    for s in &r.icmp {
        let n = count(s.value);
        if n == 0 {
            continue;
        }
        paths.entry(key(s)).or_default().1.push(Evidence {
            node: nodes.of(s),
            side: s.label("side").to_string(),
            outcome: "icmp_rejected".to_string(),
            attempts: n,
            sender: Some(s.label("sender").to_string()),
            origin: Some(s.label("origin").to_string()),
        });
    }
    for ((rule_id, client, server), (attempts, icmp)) in paths {
        let server_agent = agent_nodes.contains(server.as_str()).then(|| server.clone());
        let found = attribute(&attempts, &icmp, agents_up.contains(server.as_str()));
        if found.is_empty() {
            continue;
        }
        let rr = entry(&mut rules, &rule_id);
        for (at, mut evidence) in found {
            evidence.sort();
            rr.blocked_paths.push(BlockedPath {
                client: client.clone(),
                server: server.clone(),
                at,
                evidence,
                server_agent: server_agent.clone(),
            });
        }
    }

    // Attempts of paths past an agent's --max-paths carry no path labels.
    let mut overflowed: BTreeMap<String, u64> = BTreeMap::new();
    for s in &r.overflow {
        let n = count(s.value);
        if n > 0 {
            *overflowed.entry(nodes.of(s)).or_default() += n;
        }
    }
    for (node, n) in overflowed {
        warnings.push(format!(
            "the agent on {node} counted {n} attempt(s) of paths past its --max-paths: blocked paths it saw may be \
             missing here; raise its --max-paths"
        ));
    }

    // Undocumented flows by group pair.
    let mut undocumented: BTreeMap<(String, String), BTreeMap<String, u64>> = BTreeMap::new();
    for s in &r.unexpected {
        let n = count(s.value);
        if n > 0 {
            *undocumented
                .entry((s.label("source_group").to_string(), s.label("target_group").to_string()))
                .or_default()
                .entry(nodes.of(s))
                .or_default() += n;
        }
    }

    // Missing agents.
    let ratio: BTreeMap<(String, String), f64> = r
        .up_ratio
        .iter()
        .map(|s| ((s.label("job").to_string(), s.label("instance").to_string()), s.value))
        .collect();
    let mut targets_down = Vec::new();
    let mut targets_without_agent_info = Vec::new();
    let mut down_nodes = BTreeSet::new();
    for s in &r.up {
        let key = (s.label("job").to_string(), s.label("instance").to_string());
        let node = Some(s.label("node").to_string()).filter(|n| !n.is_empty());
        if s.value != 1.0 {
            if let Some(n) = &node {
                down_nodes.insert(n.clone());
            }
            targets_down.push(DownTarget {
                instance: key.1.clone(),
                node,
                up_ratio: ratio.get(&key).copied().unwrap_or(0.0),
            });
        } else if !nodes.by_target.contains_key(&key) {
            targets_without_agent_info.push(key.1.clone());
        }
    }
    targets_down.sort_by(|a, b| (&a.node, &a.instance).cmp(&(&b.node, &b.instance)));
    targets_without_agent_info.sort();
    let inventory = opts.inventory.as_ref().map(|hosts| InventoryCheck {
        hosts_without_agent: hosts
            .iter()
            .filter(|h| !agent_nodes.contains(h.as_str()))
            .map(|h| HostWithoutAgent {
                host: h.clone(),
                target: if down_nodes.contains(h) { "down" } else { "none" }.to_string(),
            })
            .collect(),
        agents_not_in_inventory: agent_nodes
            .iter()
            .filter(|n| !hosts.contains(**n))
            .map(|n| n.to_string())
            .collect(),
    });

    Ok(Report {
        version: JSON_VERSION,
        prometheus: url.to_string(),
        job: opts.job.clone(),
        time: humantime::format_rfc3339_seconds(opts.time).to_string(),
        window,
        window_seconds: opts.window.as_secs_f64(),
        agents,
        rules: rules.into_values().collect(),
        undocumented: undocumented
            .into_iter()
            .map(|((source_group, target_group), flows)| Undocumented { source_group, target_group, flows })
            .collect(),
        missing: Missing { targets_down, targets_without_agent_info, inventory },
        warnings,
    })
}

/// Where a path's failed attempts were blocked, with the counts each
/// attribution rests on: the same decisions as the fleet rules
/// (`monitor:path_blocked:10m` in deploy/prometheus-rules.yaml, explained
/// in docs/metrics.md, "Where a blocked path is blocked"), so that the
/// report and the alerts tell one story.
///
/// - the server's agent saw failures on arrival (refused or unanswered, or
///   an ICMP error from the server or of unknown origin), or the client saw
///   an ICMP error from the server's own address: **server**;
/// - an ICMP error from another address, seen on either side: **network**,
///   naming its sender; else the client's failures (refused, unanswered, an
///   ICMP error of unknown origin) while the server's agent was up for the
///   whole window and saw none fail: **network** too (none arrived, or the
///   answers were lost on the way back);
/// - the same client failures when the server runs no agent that was up for
///   the whole window, and no ICMP error of known origin: **unknown**.
///
/// Transit agents' counts are not used, as in the rules.
pub fn attribute(
    attempts: &[Evidence],
    icmp: &[Evidence],
    server_agent_up: bool,
) -> Vec<(At, Vec<Evidence>)> {
    let on = |side: &'static str, outcomes: &'static [&'static str]| {
        attempts.iter().filter(move |e| e.side == side && outcomes.contains(&e.outcome.as_str())).cloned()
    };
    let icmp_of = |sides: &'static [&'static str], origins: &'static [&'static str]| {
        icmp.iter()
            .filter(move |e| {
                sides.contains(&e.side.as_str())
                    && origins.contains(&e.origin.as_deref().unwrap_or("unknown"))
            })
            .cloned()
    };
    let server_failed: Vec<Evidence> = on("server", &["refused", "unanswered"])
        .chain(icmp_of(&["server"], &["server", "unknown"]))
        .collect();
    let client_failed: Vec<Evidence> =
        on("client", &["refused", "unanswered"]).chain(icmp_of(&["client"], &["unknown"])).collect();
    let network_icmp: Vec<Evidence> = icmp_of(&["client", "server"], &["network"]).collect();
    let known_icmp = icmp_of(&["client", "server"], &["server", "network"]).next().is_some();

    let mut out = Vec::new();
    let server: Vec<Evidence> =
        server_failed.iter().cloned().chain(icmp_of(&["client"], &["server"])).collect();
    if !server.is_empty() {
        out.push((At::Server, server));
    }
    if !network_icmp.is_empty() {
        out.push((At::Network, network_icmp));
    } else if !client_failed.is_empty() && server_agent_up && server_failed.is_empty() {
        let answered = on("server", &["answered"]);
        out.push((At::Network, client_failed.iter().cloned().chain(answered).collect()));
    }
    if !client_failed.is_empty() && !server_agent_up && server_failed.is_empty() && !known_icmp {
        out.push((At::Unknown, client_failed));
    }
    out
}

// ---- the three forms ----

impl Report {
    pub fn json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a report serializes");
        s.push('\n');
        s
    }

    fn used_rules(&self) -> usize {
        self.rules.iter().filter(|r| r.used).count()
    }

    fn blocked_rules(&self) -> usize {
        self.rules.iter().filter(|r| !r.blocked.is_empty() || !r.blocked_paths.is_empty()).count()
    }

    /// For a terminal.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "Fleet conformance report, Prometheus {} (job {:?})", self.prometheus, self.job);
        let _ = writeln!(o, "Window: {} to {}", self.window, self.time);
        let up = self.agents.iter().filter(|a| a.up).count();
        let _ = writeln!(
            o,
            "Agents: {} reported ({}), {up} up now",
            self.agents.len(),
            self.agents.iter().map(|a| a.node.as_str()).collect::<Vec<_>>().join(", ")
        );
        for w in &self.warnings {
            let _ = writeln!(o, "warning: {w}");
        }
        let _ = writeln!(
            o,
            "\nDocumented rules: {}, {} used, {} never used, {} with blocked flows",
            self.rules.len(),
            self.used_rules(),
            self.rules.len() - self.used_rules(),
            self.blocked_rules()
        );
        let width = self.rules.iter().map(|r| r.rule.len()).max().unwrap_or(0);
        for r in &self.rules {
            let _ = write!(o, "  {:width$}  ", r.rule);
            if r.used {
                let _ = write!(o, "used by {}", by_node(&r.flows, "flows"));
            } else {
                let _ = write!(o, "never used");
            }
            if !r.blocked.is_empty() {
                let _ = write!(o, "; blocked: {}", by_node(&r.blocked, "flows"));
            }
            o.push('\n');
            for p in &r.blocked_paths {
                let _ = writeln!(
                    o,
                    "  {:width$}    {} -> {}: blocked {}: {}",
                    "",
                    p.client,
                    p.server,
                    at_phrase(p.at),
                    how(p)
                );
            }
        }
        let _ = writeln!(o, "\nUndocumented flows: {} group pair(s)", self.undocumented.len());
        for u in &self.undocumented {
            let _ = writeln!(o, "  {} -> {}: {}", u.source_group, u.target_group, by_node(&u.flows, "flows"));
        }
        let m = &self.missing;
        let missing = missing_lines(m);
        let strays = m.inventory.as_ref().map_or(0, |i| i.agents_not_in_inventory.len());
        let _ =
            writeln!(o, "\nMissing agents:{}", if missing.is_empty() && strays == 0 { " none" } else { "" });
        for (what, state) in missing {
            let _ = writeln!(o, "  {what}: {state}");
        }
        if let Some(inv) = &m.inventory {
            for a in &inv.agents_not_in_inventory {
                let _ = writeln!(
                    o,
                    "  agent {a}: no inventory host of that name (it sees every flow as transit; set --node)"
                );
            }
        }
        o
    }

    /// Tables to paste into a change ticket.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "## Fleet conformance report\n");
        let _ = writeln!(
            o,
            "Prometheus `{}`, job `{}`, window {} to {}. Agents reporting: {} ({}).\n",
            self.prometheus,
            self.job,
            self.window,
            self.time,
            self.agents.len(),
            self.agents.iter().map(|a| cell(&a.node)).collect::<Vec<_>>().join(", ")
        );
        for w in &self.warnings {
            let _ = writeln!(o, "> warning: {}\n", cell(w));
        }
        let _ = writeln!(
            o,
            "### Documented rules\n\n{} rules: {} used, {} never used, {} with blocked flows.\n",
            self.rules.len(),
            self.used_rules(),
            self.rules.len() - self.used_rules(),
            self.blocked_rules()
        );
        let _ = writeln!(o, "| rule | used by (flows) | blocked (flows) |\n|---|---|---|");
        for r in &self.rules {
            let used = if r.used { cell(&by_node(&r.flows, "")) } else { "**never used**".to_string() };
            let _ = writeln!(o, "| `{}` | {used} | {} |", cell(&r.rule), cell(&by_node(&r.blocked, "")));
        }
        let _ = writeln!(o, "\n### Blocked paths\n");
        let blocked: Vec<(&RuleReport, &BlockedPath)> =
            self.rules.iter().flat_map(|r| r.blocked_paths.iter().map(move |p| (r, p))).collect();
        if blocked.is_empty() {
            let _ = writeln!(o, "None.");
        } else {
            let _ = writeln!(o, "| rule | client | server | blocked at | how |\n|---|---|---|---|---|");
            for (r, p) in blocked {
                let _ = writeln!(
                    o,
                    "| `{}` | {} | {} | {} | {} |",
                    cell(&r.rule),
                    cell(&p.client),
                    cell(&p.server),
                    p.at.as_str(),
                    cell(&how(p))
                );
            }
        }
        let _ = writeln!(o, "\n### Undocumented flows\n");
        if self.undocumented.is_empty() {
            let _ = writeln!(o, "None.");
        } else {
            let _ = writeln!(o, "| source group | target group | flows (by node) |\n|---|---|---|");
            for u in &self.undocumented {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} |",
                    cell(&u.source_group),
                    cell(&u.target_group),
                    cell(&by_node(&u.flows, ""))
                );
            }
        }
        let _ = writeln!(o, "\n### Missing agents\n");
        let missing = missing_lines(&self.missing);
        let strays = self.missing.inventory.as_ref().map_or(&[][..], |i| &i.agents_not_in_inventory[..]);
        if missing.is_empty() && strays.is_empty() {
            let _ = writeln!(o, "None.");
        } else {
            let _ = writeln!(o, "| target or host | state |\n|---|---|");
            for (what, state) in missing {
                let _ = writeln!(o, "| {} | {} |", cell(&what), cell(&state));
            }
            for a in strays {
                let _ = writeln!(
                    o,
                    "| agent {} | no inventory host of that name (it sees every flow as transit; set --node) |",
                    cell(a)
                );
            }
        }
        o
    }
}

/// `app1 (10 flows), db1 (10 flows)`; `app1 (10)` with no unit.
fn by_node(m: &BTreeMap<String, u64>, unit: &str) -> String {
    m.iter()
        .map(|(n, c)| if unit.is_empty() { format!("{n} ({c})") } else { format!("{n} ({c} {unit})") })
        .collect::<Vec<_>>()
        .join(", ")
}

fn at_phrase(at: At) -> &'static str {
    match at {
        At::Server => "at the server",
        At::Network => "in the network",
        At::Unknown => "where unknown",
    }
}

/// How a path was blocked, in words: the counts, who counted them, and
/// what the server's agent saw.
fn how(p: &BlockedPath) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in p.evidence.iter().filter(|e| e.outcome != "answered") {
        let from = match (&e.sender, &e.origin) {
            (Some(s), _) => format!(" from {s}"),
            _ => String::new(),
        };
        parts.push(format!("{} {}{from} (seen by {}, {} side)", e.outcome, e.attempts, e.node, e.side));
    }
    match p.at {
        At::Network if p.evidence.iter().any(|e| e.sender.is_none()) => {
            let answered: u64 =
                p.evidence.iter().filter(|e| e.outcome == "answered").map(|e| e.attempts).sum();
            let agent = p.server_agent.as_deref().unwrap_or("?");
            parts.push(if answered > 0 {
                format!(
                    "the server's agent ({agent}) answered {answered}: the answers were lost on the way back"
                )
            } else {
                format!("the server's agent ({agent}) saw none arrive")
            });
        }
        At::Unknown => parts.push(format!("{} runs no agent", p.server)),
        _ => {}
    }
    parts.join("; ")
}

/// The missing agents as (what, state) lines.
fn missing_lines(m: &Missing) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in &m.targets_down {
        let what = match &t.node {
            Some(n) => format!("target {} (node {n})", t.instance),
            None => format!("target {}", t.instance),
        };
        out.push((
            what,
            format!("down now; {:.0}% of its scrapes in the window succeeded", t.up_ratio * 100.0),
        ));
    }
    for t in &m.targets_without_agent_info {
        out.push((
            format!("target {t}"),
            "up, but exports no monitor_agent_info: not a monitor agent?".into(),
        ));
    }
    if let Some(inv) = &m.inventory {
        for h in inv.hosts_without_agent.iter().filter(|h| h.target != "down") {
            out.push((
                format!("inventory host {}", h.host),
                "no agent reported and no scrape target has its name (run monitor fleet targets; deploy the agent)"
                    .into(),
            ));
        }
    }
    out
}

/// A Markdown table cell: no `|` or newline breaks the row.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(node: &str, side: &str, outcome: &str, n: u64) -> Evidence {
        Evidence {
            node: node.into(),
            side: side.into(),
            outcome: outcome.into(),
            attempts: n,
            sender: None,
            origin: None,
        }
    }

    fn icmp(node: &str, sender: &str, origin: &str, n: u64) -> Evidence {
        Evidence {
            node: node.into(),
            side: "client".into(),
            outcome: "icmp_rejected".into(),
            attempts: n,
            sender: Some(sender.into()),
            origin: Some(origin.into()),
        }
    }

    fn ats(v: &[(At, Vec<Evidence>)]) -> Vec<At> {
        v.iter().map(|(a, _)| *a).collect()
    }

    #[test]
    fn every_branch_of_the_attribution() {
        // The server's agent counted refused arrivals.
        let a = [ev("c", "client", "refused", 3), ev("s", "server", "refused", 3)];
        assert_eq!(ats(&attribute(&a, &[], true)), [At::Server]);
        // Arrived unanswered at the server.
        let a = [ev("c", "client", "unanswered", 2), ev("s", "server", "unanswered", 2)];
        assert_eq!(ats(&attribute(&a, &[], true)), [At::Server]);
        // The server itself sent the ICMP error.
        assert_eq!(
            ats(&attribute(&[ev("c", "client", "icmp_rejected", 1)], &[icmp("c", "s", "server", 1)], false)),
            [At::Server]
        );
        // Unanswered at the client, the server's agent up and silent.
        let n = attribute(&[ev("c", "client", "unanswered", 4)], &[], true);
        assert_eq!(ats(&n), [At::Network]);
        // ... or it answered: the answers were lost.
        let a = [ev("c", "client", "unanswered", 4), ev("s", "server", "answered", 4)];
        let n = attribute(&a, &[], true);
        assert_eq!(n, vec![(At::Network, vec![a[0].clone(), a[1].clone()])]);
        // A router's ICMP error.
        let i = [icmp("c", "r1", "network", 2)];
        assert_eq!(
            attribute(&[ev("c", "client", "icmp_rejected", 2)], &i, false),
            vec![(At::Network, i.to_vec())]
        );
        // No agent on the server, no ICMP.
        assert_eq!(ats(&attribute(&[ev("c", "client", "unanswered", 5)], &[], false)), [At::Unknown]);
        // Refused at the client and no server agent: unknown too.
        assert_eq!(ats(&attribute(&[ev("c", "client", "refused", 5)], &[], false)), [At::Unknown]);
        // Answered everywhere: not blocked.
        assert!(attribute(&[ev("c", "client", "answered", 5), ev("s", "server", "answered", 5)], &[], true)
            .is_empty());
        // Blocked in two places in the window: both.
        let a = [ev("c", "client", "unanswered", 1), ev("s", "server", "refused", 1)];
        assert_eq!(ats(&attribute(&a, &[icmp("c", "r1", "network", 1)], true)), [At::Server, At::Network]);
        // Transit agents' counts are not used (as in the fleet rules).
        assert!(attribute(&[ev("r", "transit", "unanswered", 1)], &[], true).is_empty());
        assert!(attribute(&[ev("r", "transit", "unanswered", 1)], &[], false).is_empty());
        // A router rejecting the server's answers, seen by the server's agent.
        let mut on_server = icmp("s", "r1", "network", 1);
        on_server.side = "server".into();
        let n = attribute(&[ev("c", "client", "unanswered", 1)], std::slice::from_ref(&on_server), true);
        assert_eq!(n, vec![(At::Network, vec![on_server])]);
        // An ICMP error of unknown origin says no more than an unanswered
        // attempt: network with the server's agent up, unknown without.
        let i = [icmp("c", "other", "unknown", 1)];
        let a = [ev("c", "client", "icmp_rejected", 1)];
        assert_eq!(ats(&attribute(&a, &i, true)), [At::Network]);
        assert_eq!(ats(&attribute(&a, &i, false)), [At::Unknown]);
        // Failures the server's agent saw and then went down: server, not
        // also unknown.
        let a = [ev("c", "client", "unanswered", 2), ev("s", "server", "unanswered", 2)];
        assert_eq!(ats(&attribute(&a, &[], false)), [At::Server]);
        // A router's ICMP error and no server agent: network, not unknown.
        let a = [ev("c", "client", "unanswered", 1)];
        assert_eq!(ats(&attribute(&a, &[icmp("c", "r1", "network", 1)], false)), [At::Network]);
    }

    fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
        Sample { labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), value }
    }

    fn opts(inventory: Option<&[&str]>) -> ReportOptions {
        ReportOptions {
            window: Duration::from_secs(3600),
            job: "monitor".into(),
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            inventory: inventory.map(|h| h.iter().map(|h| h.to_string()).collect()),
        }
    }

    #[test]
    fn a_series_is_placed_by_its_target_whichever_label_names_the_node() {
        let j = ("job", "monitor");
        let r = Results {
            agents: vec![
                // A target labelled by file_sd: the agent's own name is `exported_node`.
                sample(&[j, ("instance", "10.0.0.1:9469"), ("node", "a1"), ("exported_node", "a1")], 1.0),
                // A static target: `node` is the agent's own.
                sample(&[j, ("instance", "10.0.0.2:9469"), ("node", "b1")], 1.0),
                // Labelled differently by the two: the agent's own wins, with a warning.
                sample(
                    &[j, ("instance", "10.0.0.3:9469"), ("node", "c-target"), ("exported_node", "c1")],
                    1.0,
                ),
            ],
            up: vec![
                sample(&[j, ("instance", "10.0.0.1:9469"), ("node", "a1")], 1.0),
                sample(&[j, ("instance", "10.0.0.2:9469")], 0.0),
                sample(&[j, ("instance", "10.0.0.3:9469"), ("node", "c-target")], 1.0),
                sample(&[j, ("instance", "10.0.0.9:9469")], 1.0),
            ],
            flows: vec![
                sample(&[j, ("instance", "10.0.0.1:9469"), ("node", "a1"), ("rule", "r")], 2.0),
                sample(&[j, ("instance", "10.0.0.2:9469"), ("rule", "r")], 1.2),
                sample(&[j, ("instance", "10.0.0.3:9469"), ("node", "c-target"), ("rule", "r")], 0.0),
            ],
            overflow: vec![
                sample(&[j, ("instance", "10.0.0.1:9469"), ("node", "a1")], 0.0),
                sample(&[j, ("instance", "10.0.0.2:9469")], 12.0),
            ],
            ..Results::default()
        };
        let rep = build("http://p", &opts(Some(&["a1", "b1", "d1"])), &r).unwrap();
        assert_eq!(rep.time, "2027-01-15T08:00:00Z");
        assert_eq!(
            rep.agents.iter().map(|a| (a.node.as_str(), a.up)).collect::<Vec<_>>(),
            [("a1", true), ("b1", false), ("c1", true)]
        );
        assert_eq!(rep.rules[0].flows, BTreeMap::from([("a1".to_string(), 2), ("b1".to_string(), 1)]));
        assert_eq!(rep.warnings.len(), 2, "{:?}", rep.warnings);
        assert_eq!(
            rep.warnings[1],
            "the agent on b1 counted 12 attempt(s) of paths past its --max-paths: blocked paths it saw may be \
             missing here; raise its --max-paths"
        );
        assert!(rep.warnings[0].contains("calls itself \"c1\" (--node) but its scrape target is labelled"));
        assert_eq!(rep.missing.targets_down.len(), 1);
        assert_eq!(rep.missing.targets_down[0].node, None);
        assert_eq!(rep.missing.targets_without_agent_info, ["10.0.0.9:9469"]);
        let inv = rep.missing.inventory.as_ref().unwrap();
        assert_eq!(inv.hosts_without_agent, [HostWithoutAgent { host: "d1".into(), target: "none".into() }]);
        assert_eq!(inv.agents_not_in_inventory, ["c1"]);
        let md = rep.markdown();
        assert!(
            md.contains("| target 10.0.0.2:9469 | down now; 0% of its scrapes in the window succeeded |"),
            "{md}"
        );
        assert!(md.contains("| agent c1 | no inventory host of that name"), "{md}");
        assert!(md.contains("### Blocked paths\n\nNone.\n"), "{md}");

        let none = Results { up: r.up.clone(), ..Results::default() };
        let e = build("http://p", &opts(None), &none).unwrap_err().to_string();
        assert_eq!(
            e,
            "no monitor_agent_info series with job=\"monitor\" in the last 1h at http://p: is Prometheus scraping \
             the agents? see docs/fleet.md (4 target(s) with job=\"monitor\", 1 of them down)"
        );
    }

    #[test]
    fn windows_are_written_as_promql_reads_them() {
        assert_eq!(promql_duration(Duration::from_secs(86400)), "24h");
        assert_eq!(promql_duration(Duration::from_secs(600)), "10m");
        assert_eq!(promql_duration(Duration::from_secs(90)), "90s");
        assert_eq!(promql_duration(Duration::from_millis(1500)), "1500ms");
        let q = Queries::new("mon\"itor", Duration::from_secs(3600));
        assert_eq!(q.up, "up{job=\"mon\\\"itor\"}");
        assert_eq!(
            q.flows,
            "(max_over_time(monitor_rule_flows_total{job=\"mon\\\"itor\"}[1h]) unless \
             monitor_rule_flows_total{job=\"mon\\\"itor\"} offset 1h) or increase(monitor_rule_flows_total{job=\"mon\\\"itor\"}[1h])"
        );
    }

    #[test]
    fn counts_are_whole_and_a_small_increase_is_one() {
        assert_eq!(count(0.0), 0);
        assert_eq!(count(-1.0), 0);
        assert_eq!(count(f64::NAN), 0);
        assert_eq!(count(0.2), 1);
        assert_eq!(count(2.6), 3);
    }
}
