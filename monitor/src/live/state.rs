//! The agent's state as `monitor top` shows it: the answer to `state json`
//! on the control socket (docs/top.md, "The state request").
//!
//! The coverage report answers "which rules were used"; a live view also
//! needs what is happening now: the newest findings, the busiest flows and
//! which groups talk to which. Each part is bounded whatever the traffic,
//! because the agent keeps it all the time and sends it every second:
//! [`MAX_FINDINGS`] findings (older ones pushed out, counted in
//! `findings_dropped`), [`MAX_FLOWS`] flows, [`MAX_CELLS`] cells of the
//! group grid (flows of further pairs counted in `groups_dropped`). The
//! coverage is bounded by the matrix.
//!
//! The collectors here ([`Findings`], [`Grid`], [`Busiest`]) are fed by the
//! pipeline as it judges flows; [`State`] is the serialised answer, read
//! back by [`super::control::state`].

use std::{
    cmp::{Ordering, Reverse},
    collections::{BTreeMap, BinaryHeap, HashMap},
    net::IpAddr,
    sync::Arc,
    time::{Instant, SystemTime},
};

use serde::{Deserialize, Serialize};

use super::{
    coverage::RuleLine,
    judge::{Judge, Judged},
};
use crate::{
    alert::{state_name, Alert, Kind},
    engine::{Engine, OTHER},
    flow::{Flow, Proto},
    verdict::Bucket,
};

/// Most findings the agent keeps and sends: the newest.
pub const MAX_FINDINGS: usize = 200;
/// Most flows sent: the busiest, by bytes.
pub const MAX_FLOWS: usize = 50;
/// Most source-group × target-group cells the grid holds.
pub const MAX_CELLS: usize = 1024;
/// Most closest rules a finding carries.
pub const MAX_CLOSEST: usize = 3;

/// The answer to `state json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Always "state".
    #[serde(rename = "type")]
    pub record: String,
    pub status: Status,
    /// Every rule in force with its use, as `report json` has it.
    pub coverage: Vec<RuleLine>,
    /// The newest findings first, at most [`MAX_FINDINGS`], one per kind,
    /// client, server, port and protocol (repeats counted in `count`).
    pub findings: Vec<Finding>,
    /// Findings pushed out of the list by newer ones since the start.
    pub findings_dropped: u64,
    /// The busiest flows of the last table read, most bytes first, at most
    /// [`MAX_FLOWS`].
    pub flows: Vec<FlowLine>,
    /// Flows by the group of their client and of their server, by source
    /// then target.
    pub groups: Vec<Cell>,
    /// Flows between groups past [`MAX_CELLS`] pairs: counted here only.
    pub groups_dropped: u64,
}

/// Whether the agent is watching, and what it has seen.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The interfaces the programs are attached to (as of the last table read).
    pub interfaces: Vec<String>,
    pub uptime_secs: f64,
    /// Flows judged since the start (network control traffic left out).
    pub flows_seen: u64,
    /// Of those, the documented ones that work (by their latest outcome).
    pub conforming: u64,
    /// Findings reported since the start, one per flow and kind (before
    /// de-duplication of the alerts).
    pub findings: u64,
    /// Since the newest packet of any flow seen; `None` before the first.
    pub secs_since_packet: Option<f64>,
    /// Since the last event from the kernel (a new flow, a first answer,
    /// an ICMP error); `None` before the first.
    pub secs_since_event: Option<f64>,
}

impl Status {
    /// One line for a terminal: `watching eth0 · 1,204 flows · 1,190
    /// conforming · 14 findings · last packet 2s ago`.
    pub fn line(&self) -> String {
        let watching = if self.interfaces.is_empty() {
            "attaching".to_string()
        } else {
            format!("watching {}", self.interfaces.join(", "))
        };
        let last = match self.secs_since_packet {
            None => "no packet yet".to_string(),
            Some(s) => format!("last packet {}s ago", s.floor() as u64),
        };
        format!(
            "{watching} · {} flows · {} conforming · {} findings · {last}",
            self.flows_seen, self.conforming, self.findings
        )
    }
}

/// A verdict, in the order of how bad it is: the grid shows a cell's worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Conforming,
    /// A documented flow that failed.
    Blocked,
    /// A flow no rule documents.
    Unexpected,
    /// A port that must stay internal answered from outside.
    Exposed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Conforming => "conforming",
            Verdict::Blocked => "blocked",
            Verdict::Unexpected => "unexpected",
            Verdict::Exposed => "exposed",
        }
    }

    /// The verdict of a finding; `None` for an overflow record, which is none.
    pub fn of(kind: Kind) -> Option<Verdict> {
        match kind {
            Kind::Unexpected => Some(Verdict::Unexpected),
            Kind::Blocked => Some(Verdict::Blocked),
            Kind::Exposed => Some(Verdict::Exposed),
            Kind::Overflow => None,
        }
    }
}

/// One end of a finding: its address and its inventory host, if any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub ip: IpAddr,
    pub host: Option<String>,
}

/// One finding, with its repeats folded in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: Verdict,
    pub proto: String,
    pub client: Host,
    pub server: Host,
    /// The server port (0 for ICMP).
    pub port: u16,
    /// Why it is a finding, as its alert says (the latest repeat's).
    pub reason: String,
    /// For `blocked` the rule documenting the flow, for `exposed` the
    /// constraint it breaks; none for `unexpected`.
    pub rule: Option<String>,
    /// For `unexpected`: the closest documented rules, at most [`MAX_CLOSEST`].
    pub closest: Vec<String>,
    /// `file:line` of `rule`, else of the first closest rule.
    pub provenance: Option<String>,
    /// Flows this finding stands for.
    pub count: u64,
    /// How the latest repeat's flow went (docs/flows.md: `refused`,
    /// `unanswered`, `established`, ...), and its packets and bytes.
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub packets: u64,
    #[serde(default)]
    pub bytes: u64,
    /// Whether the start of any of its flows was seen, so that client and
    /// server are known, not guessed from port numbers (`monitor learn
    /// --socket` learns from those only).
    #[serde(default)]
    pub initiator_seen: bool,
    #[serde(with = "rfc3339")]
    pub first_seen: SystemTime,
    #[serde(with = "rfc3339")]
    pub last_seen: SystemTime,
}

/// One end of a flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub ip: IpAddr,
    pub port: u16,
    /// Its inventory host; none outside the inventory.
    pub host: Option<String>,
}

/// One of the busiest flows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowLine {
    pub proto: String,
    pub client: End,
    pub server: End,
    /// As in docs/flows.md: `established`, `closed`, `refused`, ...
    pub state: String,
    /// Both directions.
    pub packets: u64,
    pub bytes: u64,
    /// The id of the rule documenting the flow, or `undocumented`.
    pub rule: String,
    /// `conforming`, `blocked`, `unexpected`, `exposed`,
    /// `exposed-unanswered`, `network-control`, or `pending` (held for a
    /// DNS rebuild, not judged yet).
    pub verdict: String,
}

/// The rule of a flow no rule documents, in [`FlowLine::rule`].
pub const UNDOCUMENTED: &str = "undocumented";

/// One cell of the group grid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// The client's group (its inventory host's smallest group, else its zone).
    pub source: String,
    /// The server's group.
    pub target: String,
    pub flows: u64,
    /// The worst verdict of the cell's flows: the worst finding, else
    /// `conforming`.
    pub worst: Verdict,
}

/// What one finding is folded under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FindingKey {
    kind: Verdict,
    proto: Proto,
    client: IpAddr,
    server: IpAddr,
    port: u16,
}

impl FindingKey {
    /// The key of the finding `alert` reports (an overflow record is none).
    fn of(alert: &Alert) -> Option<FindingKey> {
        Some(FindingKey {
            kind: Verdict::of(alert.kind)?,
            proto: alert.proto,
            client: alert.src.ip,
            server: alert.dst.ip,
            port: alert.dst.port,
        })
    }
}

/// The newest findings, at most `capacity`: a repeat moves its finding to
/// the front; a new one past the capacity pushes the oldest out, counted.
#[derive(Debug)]
pub struct Findings {
    capacity: usize,
    by_key: HashMap<FindingKey, (u64, Finding)>,
    /// Keys by the sequence number of their latest repeat: oldest first.
    order: BTreeMap<u64, FindingKey>,
    seq: u64,
    /// Findings offered since the start, repeats included.
    pub total: u64,
    /// Findings pushed out by newer ones.
    pub dropped: u64,
}

impl Default for Findings {
    fn default() -> Findings {
        Findings::new(MAX_FINDINGS)
    }
}

impl Findings {
    pub fn new(capacity: usize) -> Findings {
        Findings { capacity, by_key: HashMap::new(), order: BTreeMap::new(), seq: 0, total: 0, dropped: 0 }
    }

    /// Records the finding `alert` reports (an overflow record is none).
    pub fn offer(&mut self, alert: &Alert) {
        let Some(key) = FindingKey::of(alert) else { return };
        let kind = key.kind;
        self.total += 1;
        self.seq += 1;
        if let Some((seq, f)) = self.by_key.get_mut(&key) {
            self.order.remove(seq);
            *seq = self.seq;
            self.order.insert(self.seq, key);
            f.count += alert.count.max(1);
            f.first_seen = f.first_seen.min(alert.first_seen);
            follow(f, alert);
            return;
        }
        if self.by_key.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else { return };
            self.by_key.remove(&oldest);
            self.dropped += 1;
        }
        let f = Finding {
            kind,
            proto: alert.proto.to_string(),
            client: Host { ip: alert.src.ip, host: alert.src.names.host.clone() },
            server: Host { ip: alert.dst.ip, host: alert.dst.names.host.clone() },
            port: alert.dst.port,
            reason: alert.reason.clone(),
            rule: alert.rule.clone(),
            closest: alert.closest.iter().take(MAX_CLOSEST).cloned().collect(),
            provenance: None,
            count: alert.count.max(1),
            state: state_name(alert.state).to_string(),
            packets: alert.packets,
            bytes: alert.bytes,
            initiator_seen: alert.initiator_seen,
            first_seen: alert.first_seen,
            last_seen: alert.last_seen,
        };
        self.by_key.insert(key, (self.seq, f));
        self.order.insert(self.seq, key);
    }

    /// A finding already offered, judged again as its flow moved on: its
    /// state, traffic and last sight follow the flow; nothing is counted
    /// and its place in the list stays. A finding pushed out stays out.
    pub fn refresh(&mut self, alert: &Alert) {
        let Some(key) = FindingKey::of(alert) else { return };
        if let Some((_, f)) = self.by_key.get_mut(&key) {
            follow(f, alert);
        }
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The findings held, newest first.
    pub fn newest(&self) -> impl Iterator<Item = &Finding> {
        self.order.values().rev().map(|k| &self.by_key[k].1)
    }
}

/// What a finding takes from its latest flow.
fn follow(f: &mut Finding, alert: &Alert) {
    f.reason.clone_from(&alert.reason);
    f.state = state_name(alert.state).to_string();
    (f.packets, f.bytes) = (alert.packets, alert.bytes);
    f.initiator_seen |= alert.initiator_seen;
    f.last_seen = f.last_seen.max(alert.last_seen);
}

/// One source group's cells: flows and worst verdict by target group.
type GridRow = BTreeMap<Arc<str>, (u64, Verdict)>;

/// Flows by source group and target group, with the worst verdict of each
/// pair, at most `capacity` pairs.
#[derive(Debug)]
pub struct Grid {
    capacity: usize,
    /// By source, then target: looked up by `&str`, so a known pair costs
    /// no allocation.
    cells: BTreeMap<Arc<str>, GridRow>,
    len: usize,
    /// Flows of pairs past the capacity.
    pub dropped: u64,
}

impl Default for Grid {
    fn default() -> Grid {
        Grid::new(MAX_CELLS)
    }
}

impl Grid {
    pub fn new(capacity: usize) -> Grid {
        Grid { capacity, cells: BTreeMap::new(), len: 0, dropped: 0 }
    }

    /// A new flow from `source` to `target`.
    pub fn flow(&mut self, source: &str, target: &str) {
        match self.cell(source, target) {
            Some(c) => c.0 += 1,
            None => self.dropped += 1,
        }
    }

    /// A finding between `source` and `target`: the cell is at least as bad.
    pub fn finding(&mut self, source: &str, target: &str, verdict: Verdict) {
        if let Some(c) = self.cell(source, target) {
            c.1 = c.1.max(verdict);
        }
    }

    // The entry API would allocate both names on every lookup.
    #[allow(clippy::map_entry)]
    fn cell(&mut self, source: &str, target: &str) -> Option<&mut (u64, Verdict)> {
        let full = self.len >= self.capacity;
        if !self.cells.contains_key(source) {
            if full {
                return None;
            }
            self.cells.insert(Arc::from(source), BTreeMap::new());
        }
        let row = self.cells.get_mut(source)?;
        if !row.contains_key(target) {
            if full {
                return None;
            }
            row.insert(Arc::from(target), (0, Verdict::Conforming));
            self.len += 1;
        }
        row.get_mut(target)
    }

    /// Every cell, by source then target.
    pub fn cells(&self) -> Vec<Cell> {
        let mut out = Vec::with_capacity(self.len);
        for (s, row) in &self.cells {
            for (t, (flows, worst)) in row {
                out.push(Cell { source: s.to_string(), target: t.to_string(), flows: *flows, worst: *worst });
            }
        }
        out
    }
}

/// A flow ordered by its traffic, for [`Busiest`].
struct ByTraffic(Flow);

impl ByTraffic {
    fn weight(&self) -> (u64, u64) {
        let f = &self.0;
        (f.to_server.bytes + f.to_client.bytes, f.to_server.packets + f.to_client.packets)
    }
}

impl PartialEq for ByTraffic {
    fn eq(&self, other: &Self) -> bool {
        self.weight() == other.weight()
    }
}

impl Eq for ByTraffic {}

impl PartialOrd for ByTraffic {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByTraffic {
    fn cmp(&self, other: &Self) -> Ordering {
        self.weight().cmp(&other.weight())
    }
}

/// The `n` flows with the most bytes (then packets) of those offered: a
/// table read offers every flow, and only `n` are kept at any time.
pub struct Busiest {
    n: usize,
    heap: BinaryHeap<Reverse<ByTraffic>>,
}

impl Busiest {
    pub fn new(n: usize) -> Busiest {
        Busiest { n, heap: BinaryHeap::with_capacity(n + 1) }
    }

    pub fn offer(&mut self, flow: &Flow) {
        if self.n == 0 {
            return;
        }
        if self.heap.len() == self.n {
            let probe = (
                flow.to_server.bytes + flow.to_client.bytes,
                flow.to_server.packets + flow.to_client.packets,
            );
            match self.heap.peek() {
                Some(Reverse(least)) if probe <= least.weight() => return,
                _ => {}
            }
            self.heap.pop();
        }
        self.heap.push(Reverse(ByTraffic(flow.clone())));
    }

    /// The flows kept, most bytes first.
    pub fn into_sorted(self) -> Vec<Flow> {
        // Ascending order of `Reverse` is descending order of traffic.
        self.heap.into_sorted_vec().into_iter().map(|Reverse(f)| f.0).collect()
    }
}

/// What the pipeline keeps for `state json`, fed as it judges flows.
pub struct Recorder {
    started: Instant,
    findings: Findings,
    grid: Grid,
    flows: Vec<FlowLine>,
    last_event: Option<Instant>,
    last_packet: Option<SystemTime>,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            started: Instant::now(),
            findings: Findings::default(),
            grid: Grid::default(),
            flows: Vec::new(),
            last_event: None,
            last_packet: None,
        }
    }
}

impl Recorder {
    /// An event from the kernel about `flow`.
    pub fn event(&mut self, flow: &Flow) {
        self.last_event = Some(Instant::now());
        self.packet(flow);
    }

    /// `flow` was seen (in an event or a table read): its last packet counts.
    pub fn packet(&mut self, flow: &Flow) {
        if self.last_packet.is_none_or(|t| t < flow.last_seen) {
            self.last_packet = Some(flow.last_seen);
        }
    }

    /// What judging `flow` gave: a new flow in its groups' cell, a finding
    /// in the list and in the cell's verdict.
    pub fn judged(&mut self, engine: &Engine, flow: &Flow, judged: &Judged) {
        if let Some(alert) = &judged.refreshed {
            self.findings.refresh(alert);
        }
        if judged.new_flow.is_none() && judged.alert.is_none() {
            return;
        }
        let (source, target) = (engine.group_label(flow.client.ip), engine.group_label(flow.server.ip));
        if judged.new_flow.is_some() {
            self.grid.flow(source, target);
        }
        if let Some(alert) = &judged.alert {
            self.findings.offer(alert);
            if let Some(v) = Verdict::of(alert.kind) {
                self.grid.finding(source, target, v);
            }
        }
    }

    /// The busiest flows of a table read, as the judge stands after it.
    pub fn busiest(&mut self, busiest: Busiest, judge: &Judge) {
        let engine = judge.engine();
        let host = |ip| Some(engine.host_label(ip)).filter(|h| *h != OTHER).map(String::from);
        let end = |e: crate::flow::Endpoint| End { ip: e.ip, port: e.port, host: host(e.ip) };
        self.flows = busiest
            .into_sorted()
            .into_iter()
            .map(|f| {
                let (verdict, rule) = match judge.standing(&f.key) {
                    Some((bucket, rule)) => (bucket_name(bucket), rule.map(|r| r.to_string())),
                    None => ("pending", None),
                };
                FlowLine {
                    proto: f.proto.to_string(),
                    client: end(f.client),
                    server: end(f.server),
                    state: serde_json::to_value(f.state)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default(),
                    packets: f.to_server.packets + f.to_client.packets,
                    bytes: f.to_server.bytes + f.to_client.bytes,
                    rule: rule.unwrap_or_else(|| UNDOCUMENTED.to_string()),
                    verdict: verdict.to_string(),
                }
            })
            .collect();
    }

    /// The answer to `state json`; `interfaces` as of the last table read.
    /// Whether the agent is watching and what it has seen: the state's
    /// first part, and `monitor run`'s status line on a terminal.
    pub fn status(&self, judge: &Judge, interfaces: Vec<String>) -> Status {
        let now = SystemTime::now();
        let c = judge.counts;
        Status {
            interfaces,
            uptime_secs: self.started.elapsed().as_secs_f64(),
            flows_seen: c.flows.saturating_sub(c.network_control),
            conforming: c.conforming,
            findings: self.findings.total,
            secs_since_packet: self
                .last_packet
                .map(|t| now.duration_since(t).unwrap_or_default().as_secs_f64()),
            secs_since_event: self.last_event.map(|t| t.elapsed().as_secs_f64()),
        }
    }

    pub fn state(&self, judge: &Judge, interfaces: Vec<String>) -> State {
        let engine = judge.engine();
        let report = judge.coverage.report(engine);
        let mut provenance: HashMap<&str, &str> =
            engine.rules().iter().map(|r| (r.id.as_str(), r.provenance.as_str())).collect();
        provenance.extend(engine.exposures().iter().map(|x| (x.id.as_str(), x.provenance.as_str())));
        let findings = self
            .findings
            .newest()
            .map(|f| {
                let mut f = f.clone();
                let cited = f.rule.as_deref().or(f.closest.first().map(String::as_str));
                f.provenance = cited.and_then(|id| provenance.get(id)).map(|p| p.to_string());
                f
            })
            .collect();
        State {
            record: "state".into(),
            status: self.status(judge, interfaces),
            coverage: report.rules,
            findings,
            findings_dropped: self.findings.dropped,
            flows: self.flows.clone(),
            groups: self.grid.cells(),
            groups_dropped: self.grid.dropped,
        }
    }
}

fn bucket_name(b: Bucket) -> &'static str {
    match b {
        Bucket::Conforming => "conforming",
        Bucket::Unexpected => "unexpected",
        Bucket::Blocked => "blocked",
        Bucket::Exposed => "exposed",
        Bucket::ExposedUnanswered => "exposed-unanswered",
        Bucket::NetworkControl => "network-control",
    }
}

mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_nanos(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::{
        alert::Names,
        flow::{Endpoint, FlowState},
    };

    fn flow(client: &str, server: &str, port: u16, bytes: u64) -> Flow {
        let end = |ip: &str, port| Endpoint { ip: ip.parse().unwrap(), port };
        let mut f = Flow::attempt(Proto::Tcp, end(client, 40000), end(server, port), FlowState::Established);
        f.to_server.bytes = bytes;
        f.to_server.packets = bytes / 100;
        f
    }

    fn alert(kind: Kind, client: &str, server: &str, port: u16, at: u64) -> Alert {
        let mut f = flow(client, server, port, 100);
        f.first_seen = UNIX_EPOCH + Duration::from_secs(at);
        f.last_seen = f.first_seen;
        Alert::new(kind, &f, Names::default(), Names::default(), None, format!("reason at {at}"))
    }

    fn ports(f: &Findings) -> Vec<(u16, u64)> {
        f.newest().map(|f| (f.port, f.count)).collect()
    }

    #[test]
    fn findings_fold_repeats_keep_the_newest_and_count_what_they_push_out() {
        let mut f = Findings::new(3);
        f.offer(&alert(Kind::Unexpected, "10.0.0.1", "10.0.0.9", 1, 1));
        f.offer(&alert(Kind::Unexpected, "10.0.0.1", "10.0.0.9", 2, 2));
        f.offer(&alert(Kind::Unexpected, "10.0.0.1", "10.0.0.9", 3, 3));
        assert_eq!(ports(&f), [(3, 1), (2, 1), (1, 1)], "newest first");
        // A repeat of the oldest: folded, and moved to the front.
        f.offer(&alert(Kind::Unexpected, "10.0.0.1", "10.0.0.9", 1, 4));
        assert_eq!(ports(&f), [(1, 2), (3, 1), (2, 1)]);
        let one = f.newest().next().unwrap();
        assert_eq!(one.first_seen, UNIX_EPOCH + Duration::from_secs(1));
        assert_eq!(one.last_seen, UNIX_EPOCH + Duration::from_secs(4));
        assert_eq!(one.reason, "reason at 4", "the latest repeat's reason");
        assert_eq!(f.dropped, 0);
        // Another kind on the same port is another finding; it pushes out the oldest (port 2).
        f.offer(&alert(Kind::Exposed, "10.0.0.1", "10.0.0.9", 3, 5));
        assert_eq!(ports(&f), [(3, 1), (1, 2), (3, 1)]);
        assert_eq!((f.len(), f.dropped, f.total), (3, 1, 5));
        // Overflow records are no findings.
        let mut o = alert(Kind::Overflow, "10.0.0.1", "10.0.0.9", 9, 6);
        o.count = 7;
        f.offer(&o);
        assert_eq!((f.len(), f.dropped, f.total), (3, 1, 5));
    }

    #[test]
    fn a_refreshed_finding_follows_its_flow_without_counting_it_again() {
        let mut f = Findings::new(2);
        let mut first = alert(Kind::Unexpected, "10.0.0.1", "10.0.0.9", 22, 1);
        first.state = FlowState::Awaiting;
        f.offer(&first);
        f.offer(&alert(Kind::Unexpected, "10.0.0.1", "10.0.0.9", 23, 2));
        let mut later = alert(Kind::Unexpected, "10.0.0.1", "10.0.0.9", 22, 3);
        later.state = FlowState::Refused;
        f.refresh(&later);
        assert_eq!(ports(&f), [(23, 1), (22, 1)], "not counted, not moved");
        let refused = f.newest().find(|x| x.port == 22).unwrap();
        assert_eq!(refused.state, "refused");
        assert_eq!(refused.last_seen, UNIX_EPOCH + Duration::from_secs(3));
        assert_eq!(f.total, 2);
        // One pushed out stays out.
        f.offer(&alert(Kind::Unexpected, "10.0.0.1", "10.0.0.9", 24, 4));
        f.refresh(&alert(Kind::Unexpected, "10.0.0.1", "10.0.0.9", 22, 5));
        assert_eq!(ports(&f), [(24, 1), (23, 1)]);
    }

    #[test]
    fn findings_stay_bounded_under_a_flood_of_new_clients() {
        let mut f = Findings::default();
        for i in 0..10_000u32 {
            let client = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            f.offer(&alert(Kind::Unexpected, &client, "10.200.1.20", 22, u64::from(i)));
        }
        assert_eq!(f.len(), MAX_FINDINGS);
        assert_eq!(f.dropped, 10_000 - MAX_FINDINGS as u64);
        let newest = f.newest().next().unwrap();
        assert_eq!(newest.client.ip.to_string(), "10.0.39.15", "the last one offered comes first");
    }

    #[test]
    fn the_grid_counts_flows_by_pair_keeps_the_worst_verdict_and_counts_pairs_past_its_bound() {
        let mut g = Grid::new(2);
        g.flow("nodes", "database");
        g.flow("nodes", "database");
        g.finding("nodes", "database", Verdict::Blocked);
        g.flow("users", "nodes");
        g.finding("users", "nodes", Verdict::Exposed);
        g.finding("users", "nodes", Verdict::Unexpected);
        g.flow("internet", "nodes");
        g.finding("internet", "nodes", Verdict::Exposed);
        let cells = g.cells();
        let cells: Vec<(&str, &str, u64, Verdict)> =
            cells.iter().map(|c| (c.source.as_str(), c.target.as_str(), c.flows, c.worst)).collect();
        assert_eq!(
            cells,
            [("nodes", "database", 2, Verdict::Blocked), ("users", "nodes", 1, Verdict::Exposed)],
            "exposed stays the worst after a later unexpected"
        );
        assert_eq!(g.dropped, 1, "the third pair's flow is counted, not held");
        assert_eq!(g.cells()[1].worst.as_str(), "exposed");
    }

    #[test]
    fn busiest_keeps_the_n_flows_with_most_bytes_in_order() {
        let mut b = Busiest::new(3);
        for (i, bytes) in [500u64, 100, 900, 300, 700, 50].into_iter().enumerate() {
            b.offer(&flow("10.0.0.1", "10.0.0.2", 1000 + i as u16, bytes));
        }
        let got: Vec<u64> = b.into_sorted().iter().map(|f| f.to_server.bytes).collect();
        assert_eq!(got, [900, 700, 500]);
        let mut none = Busiest::new(0);
        none.offer(&flow("10.0.0.1", "10.0.0.2", 1, 1));
        assert!(none.into_sorted().is_empty());
    }

    #[test]
    fn the_status_line_says_what_is_watched_and_when_the_last_packet_came() {
        let mut s = Status { flows_seen: 12, conforming: 9, findings: 3, ..Status::default() };
        assert_eq!(s.line(), "attaching · 12 flows · 9 conforming · 3 findings · no packet yet");
        s.interfaces = vec!["eth0".into(), "eth1".into()];
        s.secs_since_packet = Some(2.7);
        assert_eq!(
            s.line(),
            "watching eth0, eth1 · 12 flows · 9 conforming · 3 findings · last packet 2s ago"
        );
    }
}
