//! Alert de-duplication: one alert per (kind, client, server address, port,
//! protocol) per window; repeats are counted and reported in a follow-up
//! alert when the window closes. A source that opens many distinct
//! off-matrix flows in one window (a port scan) is folded into one alert per
//! source.
//!
//! Memory is bounded, and a flood cannot hide real findings:
//!
//! - The client of the key is its first service name, else its address;
//!   but a client that is no inventory host is keyed by its prefix (IPv4
//!   /24, IPv6 /64), so that a spoofed flood of many sources costs one key
//!   per (prefix, server, port, protocol, kind). Such keys count the
//!   distinct sources they stand for: exactly for IPv4 (a /24 has 256
//!   addresses: one bit each), by linear counting over 256 bits for IPv6
//!   (approximate; saturates at [`V6_SOURCES_SATURATED`]).
//! - Keys are held in [`Class`]es with a budget each ([`DEFAULT_BUDGETS`]):
//!   findings from inventory hosts (`blocked`, `exposed`, and `inventory`:
//!   `unexpected` between two inventory hosts) never share a budget with
//!   findings from unknown clients, so traffic from unknown sources cannot
//!   exhaust them.
//! - Past a class's budget, new keys are folded: counted per class, and
//!   reported by an alert of kind `overflow` at once, then at most once per
//!   `overflow_interval` per class, carrying the counts folded since the
//!   previous one. Nothing is dropped without a number.

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use crate::{
    alert::{Alert, Fold, Kind, Overflow},
    counters::{Counters, Emit, Family},
    flow::Proto,
};

/// A de-duplication class: findings that share a key budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// `blocked`, the client an inventory host.
    Blocked,
    /// `exposed`, the client an inventory host.
    Exposed,
    /// `unexpected` between two inventory hosts.
    Inventory,
    /// `blocked` from a client that is no inventory host.
    UnknownBlocked,
    /// `exposed` to a client that is no inventory host.
    UnknownExposed,
    /// Any other `unexpected`: client or server unknown to the inventory.
    UnknownUnexpected,
}

impl Class {
    pub const ALL: [Class; 6] = [
        Class::Blocked,
        Class::Exposed,
        Class::Inventory,
        Class::UnknownBlocked,
        Class::UnknownExposed,
        Class::UnknownUnexpected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Blocked => "blocked",
            Class::Exposed => "exposed",
            Class::Inventory => "inventory",
            Class::UnknownBlocked => "unknown_blocked",
            Class::UnknownExposed => "unknown_exposed",
            Class::UnknownUnexpected => "unknown_unexpected",
        }
    }

    /// The class of a finding: by kind, and whether the inventory knows
    /// its client (and, for `unexpected`, its server too).
    pub fn of(a: &Alert) -> Class {
        let known_client = a.src.names.host.is_some();
        match a.kind {
            Kind::Blocked if known_client => Class::Blocked,
            Kind::Exposed if known_client => Class::Exposed,
            Kind::Unexpected if known_client && a.dst.names.host.is_some() => Class::Inventory,
            Kind::Blocked => Class::UnknownBlocked,
            Kind::Exposed => Class::UnknownExposed,
            Kind::Unexpected | Kind::Overflow => Class::UnknownUnexpected,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Keys each class may hold at once, in [`Class::ALL`] order: 50,000 in
/// all (as many as one shared table held before), most of them for
/// findings from inventory hosts. At most a few hundred bytes a key.
pub const DEFAULT_BUDGETS: [usize; 6] = [8_000, 8_000, 16_000, 3_000, 3_000, 12_000];

/// What an IPv6 prefix key reports once all 256 bits of its source sketch
/// are set: "at least this many" (256 ln 256, rounded).
pub const V6_SOURCES_SATURATED: u64 = 1_420;

#[derive(Clone, Debug)]
pub struct DedupOptions {
    pub window: Duration,
    /// Distinct unexpected keys one client may open per window before the
    /// rest are folded into a single scan alert.
    pub scan_threshold: u32,
    /// Keys each class may hold at once, in [`Class::ALL`] order; past
    /// this, its new keys are folded and counted.
    pub budgets: [usize; 6],
    /// At most one overflow alert per class per interval.
    pub overflow_interval: Duration,
}

impl Default for DedupOptions {
    fn default() -> Self {
        DedupOptions {
            window: Duration::from_secs(600),
            scan_threshold: 32,
            budgets: DEFAULT_BUDGETS,
            overflow_interval: Duration::from_secs(60),
        }
    }
}

/// An address prefix: IPv4 /24, IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Prefix(IpAddr);

impl Prefix {
    fn of(ip: IpAddr) -> Prefix {
        match ip {
            IpAddr::V4(v4) => Prefix(IpAddr::V4(Ipv4Addr::from(u32::from(v4) & 0xffff_ff00))),
            IpAddr::V6(v6) => Prefix(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX))))),
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => write!(f, "{ip}/24"),
            IpAddr::V6(ip) => write!(f, "{ip}/64"),
        }
    }
}

/// Who the client of a key is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Client {
    /// An inventory host's first service name.
    Service(String),
    /// An inventory host's address.
    Addr(IpAddr),
    /// A client no inventory host has: its prefix.
    Prefix(Prefix),
}

impl Client {
    fn of(a: &Alert) -> Client {
        if a.src.names.host.is_none() {
            return Client::Prefix(Prefix::of(a.src.ip));
        }
        match &a.src.names.service {
            Some(s) => Client::Service(s.clone()),
            None => Client::Addr(a.src.ip),
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::Service(s) => f.write_str(s),
            Client::Addr(ip) => write!(f, "{ip}"),
            Client::Prefix(p) => write!(f, "{p}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    kind: Kind,
    client: Client,
    server: IpAddr,
    port: u16,
    proto: Proto,
}

impl Key {
    fn of(a: &Alert) -> Key {
        Key { kind: a.kind, client: Client::of(a), server: a.dst.ip, port: a.dst.port, proto: a.proto }
    }
}

/// The distinct client addresses of a prefix, in 256 bits: the last octet
/// of an IPv4 address (exact), a hash of an IPv6 interface id (linear
/// counting).
#[derive(Clone, Copy, Debug, Default)]
struct Sources([u64; 4]);

impl Sources {
    fn add(&mut self, ip: IpAddr) {
        let bit = match ip {
            IpAddr::V4(v4) => usize::from(v4.octets()[3]),
            IpAddr::V6(v6) => (splitmix64(u128::from(v6) as u64) >> 56) as usize,
        };
        self.0[bit / 64] |= 1 << (bit % 64);
    }

    fn fold(&self, prefix: Prefix) -> Fold {
        let set: u32 = self.0.iter().map(|w| w.count_ones()).sum();
        let (sources, approximate) = match prefix.0 {
            IpAddr::V4(_) => (u64::from(set), false),
            IpAddr::V6(_) if set == 256 => (V6_SOURCES_SATURATED, true),
            IpAddr::V6(_) => {
                let empty = f64::from(256 - set) / 256.0;
                ((-256.0 * empty.ln()).round() as u64, true)
            }
        };
        Fold { prefix: prefix.to_string(), sources, approximate }
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Entry {
    opened: Instant,
    class: Class,
    repeats: u64,
    first: Alert,
    /// For a prefix key: the distinct sources seen.
    sources: Option<(Prefix, Sources)>,
}

struct Source {
    opened: Instant,
    distinct: u32,
    /// Once folding started: the first folded flow's own alert (the scan
    /// alerts name it) and how many flows were folded. Boxed: a source is
    /// held per client, up to the sum of the budgets, and few of them scan.
    scan: Option<Box<(Alert, u64)>>,
}

const _: () = assert!(std::mem::size_of::<Source>() <= 32, "Source is held once per client");

/// Findings a full class folded, not yet reported.
struct Pending {
    first: Alert,
    /// By kind: unexpected, blocked, exposed.
    by_kind: [u64; 3],
}

#[derive(Default)]
struct ClassState {
    held: usize,
    folded_total: u64,
    pending: Option<Pending>,
    last_report: Option<Instant>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DedupStats {
    /// Alerts handed to the de-duplicator.
    pub offered: u64,
    /// Alerts let through at once (scan and overflow alerts included).
    pub emitted: u64,
    /// Repeats held back (reported as counts later).
    pub repeats: u64,
    /// Flows folded into a per-source scan alert.
    pub scan_folded: u64,
    /// `unexpected` findings from a client scan detection could not track
    /// (as many clients as the budgets hold already were): judged by key
    /// alone.
    pub scan_untracked: u64,
    /// New keys folded because their class's budget was full (reported
    /// by overflow alerts), all classes.
    pub overflow: u64,
    /// The same, per class, in [`Class::ALL`] order.
    pub folded: [u64; 6],
}

/// `monitor_dedup_alerts_total{counter}`.
pub static DEDUP_ALERTS: Family = Family {
    name: "dedup_alerts",
    help: "Findings through the de-duplicator: offered, emitted, repeats held back, folded into scan or overflow alerts, by counter (docs/deploy.md).",
    label: "counter",
};

/// `monitor_dedup_folded_total{class}`.
pub static DEDUP_FOLDED: Family = Family {
    name: "dedup_folded",
    help: "Findings folded into overflow alerts because their de-duplication class held its budget of keys, by class.",
    label: "class",
};

impl Counters for DedupStats {
    fn counters(&self, emit: &mut Emit<'_>) {
        let DedupStats { offered, emitted, repeats, scan_folded, scan_untracked, overflow, folded } = *self;
        for (name, v) in [
            ("offered", offered),
            ("emitted", emitted),
            ("repeats", repeats),
            ("scan_folded", scan_folded),
            ("scan_untracked", scan_untracked),
            ("overflow", overflow),
        ] {
            emit(&DEDUP_ALERTS, name, v);
        }
        for c in Class::ALL {
            emit(&DEDUP_FOLDED, c.as_str(), folded[c.index()]);
        }
    }
}

pub struct Dedup {
    opts: DedupOptions,
    entries: HashMap<Key, Entry>,
    /// Per client, for scan detection; at most as many as the budgets hold.
    sources: HashMap<Client, Source>,
    classes: [ClassState; 6],
    pub stats: DedupStats,
}

impl Dedup {
    pub fn new(opts: DedupOptions) -> Dedup {
        Dedup {
            opts,
            entries: HashMap::new(),
            sources: HashMap::new(),
            classes: Default::default(),
            stats: DedupStats::default(),
        }
    }

    /// Keys currently held (bounded by the sum of the budgets).
    pub fn held(&self) -> usize {
        self.entries.len()
    }

    /// Keys a class holds (bounded by its budget).
    pub fn held_in(&self, class: Class) -> usize {
        self.classes[class.index()].held
    }

    /// Returns the alert to emit now, if any: the finding itself, a scan
    /// alert, or an overflow alert.
    pub fn offer(&mut self, mut alert: Alert, now: Instant) -> Option<Alert> {
        self.stats.offered += 1;
        let key = Key::of(&alert);
        if let Some(e) = self.entries.get_mut(&key) {
            e.repeats += 1;
            if let Some((_, s)) = &mut e.sources {
                s.add(alert.src.ip);
            }
            self.stats.repeats += 1;
            return None;
        }
        if alert.kind == Kind::Unexpected {
            let room = self.sources.len() < self.opts.budgets.iter().sum();
            let src = match self.sources.get_mut(&key.client) {
                Some(s) => Some(s),
                None if room => Some(self.sources.entry(key.client.clone()).or_insert(Source {
                    opened: now,
                    distinct: 0,
                    scan: None,
                })),
                // Every budget's worth of clients tracked: judged by key alone.
                None => {
                    self.stats.scan_untracked += 1;
                    None
                }
            };
            if let Some(src) = src {
                src.distinct += 1;
                if src.distinct > self.opts.scan_threshold {
                    self.stats.scan_folded += 1;
                    return match src.scan.as_deref_mut() {
                        Some((_, n)) => {
                            *n += 1;
                            None
                        }
                        None => {
                            let scan = scan_alert(
                                &key.client,
                                &alert,
                                self.opts.scan_threshold,
                                self.opts.window,
                                1,
                            );
                            src.scan = Some(Box::new((alert, 1)));
                            self.stats.emitted += 1;
                            Some(scan)
                        }
                    };
                }
            }
        }
        let class = Class::of(&alert);
        let budget = self.opts.budgets[class.index()];
        if self.classes[class.index()].held >= budget {
            return self.fold(class, alert, now);
        }
        self.classes[class.index()].held += 1;
        let sources = match key.client {
            Client::Prefix(p) => {
                let mut s = Sources::default();
                s.add(alert.src.ip);
                alert.fold = Some(s.fold(p));
                Some((p, s))
            }
            _ => None,
        };
        self.entries.insert(key, Entry { opened: now, class, repeats: 0, first: alert.clone(), sources });
        self.stats.emitted += 1;
        Some(alert)
    }

    /// Counts a finding its full class cannot hold; reports at once if the
    /// class has not reported within the interval.
    fn fold(&mut self, class: Class, alert: Alert, now: Instant) -> Option<Alert> {
        self.stats.overflow += 1;
        self.stats.folded[class.index()] += 1;
        let st = &mut self.classes[class.index()];
        st.folded_total += 1;
        let k = kind_index(alert.kind);
        match &mut st.pending {
            Some(p) => p.by_kind[k] += 1,
            None => {
                let mut by_kind = [0; 3];
                by_kind[k] = 1;
                st.pending = Some(Pending { first: alert, by_kind });
            }
        }
        let due = st.last_report.is_none_or(|t| now.duration_since(t) >= self.opts.overflow_interval);
        due.then(|| self.report_overflow(class, now)).flatten()
    }

    fn report_overflow(&mut self, class: Class, now: Instant) -> Option<Alert> {
        let capacity = self.opts.budgets[class.index()];
        let st = &mut self.classes[class.index()];
        let p = st.pending.take()?;
        st.last_report = Some(now);
        self.stats.emitted += 1;
        Some(overflow_alert(class, capacity, st.folded_total, p))
    }

    /// Closes the windows that have run out and reports the overflow
    /// counts that are due; returns the follow-up alerts.
    pub fn tick(&mut self, now: Instant) -> Vec<Alert> {
        let window = self.opts.window;
        let mut out = self.close(|opened| now.duration_since(opened) >= window);
        let interval = self.opts.overflow_interval;
        for class in Class::ALL {
            let st = &self.classes[class.index()];
            if st.last_report.is_none_or(|t| now.duration_since(t) >= interval) {
                out.extend(self.report_overflow(class, now));
            }
        }
        out
    }

    /// Closes every window and reports every overflow count (at exit), so
    /// that no count is lost.
    pub fn flush(&mut self) -> Vec<Alert> {
        let mut out = self.close(|_| true);
        let now = Instant::now();
        for class in Class::ALL {
            out.extend(self.report_overflow(class, now));
        }
        out
    }

    fn close(&mut self, expired: impl Fn(Instant) -> bool) -> Vec<Alert> {
        let mut out = Vec::new();
        let classes = &mut self.classes;
        self.entries.retain(|_, e| {
            if !expired(e.opened) {
                return true;
            }
            classes[e.class.index()].held -= 1;
            if e.repeats > 0 {
                let mut a = e.first.clone();
                a.count = e.repeats;
                match &e.sources {
                    Some((p, s)) => {
                        let fold = s.fold(*p);
                        a.reason = format!(
                            "{} (seen {} more times in this window, from {}{} distinct sources in {p})",
                            a.reason,
                            e.repeats,
                            if fold.approximate { "about " } else { "" },
                            fold.sources
                        );
                        a.fold = Some(fold);
                    }
                    None => a.reason = format!("{} (seen {} more times in this window)", a.reason, e.repeats),
                }
                out.push(a);
            }
            false
        });
        let (threshold, window) = (self.opts.scan_threshold, self.opts.window);
        self.sources.retain(|client, s| {
            if !expired(s.opened) {
                return true;
            }
            // The first folded flow was reported by the scan alert itself:
            // the follow-up stands for the rest, so that counts add up.
            if let Some((first, n)) = s.scan.as_deref() {
                if *n > 1 {
                    out.push(scan_alert(client, first, threshold, window, *n - 1));
                }
            }
            false
        });
        out
    }
}

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Unexpected | Kind::Overflow => 0,
        Kind::Blocked => 1,
        Kind::Exposed => 2,
    }
}

/// The alert standing for the findings a full class folded: the first of
/// them, with kind `overflow` and the counts.
fn overflow_alert(class: Class, capacity: usize, folded_total: u64, p: Pending) -> Alert {
    let [unexpected, blocked, exposed] = p.by_kind;
    let n = unexpected + blocked + exposed;
    let mut a = p.first;
    let first = format!("{} {} {} -> {}:{}: {}", a.kind, a.proto, a.src.ip, a.dst.ip, a.dst.port, a.reason);
    a.kind = Kind::Overflow;
    a.count = n;
    a.rule = None;
    a.closest.clear();
    a.fold = None;
    a.reason = format!(
        "de-duplication budget of class {class} is full ({capacity} keys held in this window): {n} \
         finding(s) folded since the last overflow alert (unexpected {unexpected}, blocked {blocked}, \
         exposed {exposed}); the first of them: {first}"
    );
    a.overflow = Some(Overflow {
        class: class.as_str(),
        capacity: capacity as u64,
        unexpected,
        blocked,
        exposed,
        folded_total,
    });
    a
}

/// One alert standing for the off-matrix flows a client opened past the
/// scan threshold.
fn scan_alert(client: &Client, first: &Alert, threshold: u32, window: Duration, count: u64) -> Alert {
    let mut a = first.clone();
    a.count = count;
    a.dst.port = 0;
    a.closest.clear();
    let who = match client {
        Client::Prefix(p) => p.to_string(),
        _ => first.src.ip.to_string(),
    };
    a.reason = format!(
        "port scan? {who} opened more than {threshold} distinct off-matrix flows within {}s; {count} flow(s) \
         folded into this alert (first: {}:{} {})",
        window.as_secs(),
        first.dst.ip,
        first.dst.port,
        first.proto
    );
    a
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use monitor_common::{initiator_how, proto, side, tcp_flag, FlowKey, FlowValue};

    use super::*;
    use crate::{
        alert::Names,
        flow::{addr_key, EpochClock, Flow, NoHint},
        live::metrics::Metrics,
    };

    fn flow_alert(kind: Kind, client: &str, sport: u16, server: &str, dport: u16, p: u8) -> Alert {
        let (key, dir) = FlowKey::canonical(
            addr_key(client.parse().unwrap()),
            sport,
            addr_key(server.parse().unwrap()),
            dport,
            p,
        );
        let mut v = FlowValue { first_seen_ns: 1, last_seen_ns: 1, ..FlowValue::default() };
        v.packets[dir] = 1;
        if p == proto::TCP {
            v.tcp_flags[dir] = tcp_flag::SYN;
            v.initiator_how = initiator_how::TCP_SYN;
        } else {
            v.initiator_how = initiator_how::FIRST_PACKET;
        }
        v.initiator = if dir == 0 { side::A } else { side::B };
        let flow =
            Flow::from_entry(&key, &v, &EpochClock { now_ns: 2 }, &NoHint, Duration::from_secs(3)).unwrap();
        Alert::new(kind, &flow, Names::default(), Names::default(), None, "off-matrix".into())
    }

    fn host(name: &str) -> Names {
        Names { host: Some(name.into()), ..Names::default() }
    }

    /// A finding between two inventory hosts.
    fn alert(kind: Kind, client: &str, sport: u16, server: &str, dport: u16) -> Alert {
        let mut a = flow_alert(kind, client, sport, server, dport, proto::TCP);
        (a.src.names, a.dst.names) = (host(&format!("h-{client}")), host("server"));
        a
    }

    /// A UDP finding from a client the inventory does not know, to an
    /// inventory host.
    fn unknown(kind: Kind, client: &str, sport: u16, server: &str, dport: u16) -> Alert {
        let mut a = flow_alert(kind, client, sport, server, dport, proto::UDP);
        a.dst.names = host("server");
        a
    }

    impl Dedup {
        fn counters_named(&self, name: &str) -> u64 {
            let all = crate::counters::collect(&self.stats);
            all.iter().find(|(f, k, _)| **f == DEDUP_ALERTS && *k == name).map_or(0, |(_, _, v)| *v)
        }
    }

    fn opts(window_s: u64, scan: u32, budget: usize) -> DedupOptions {
        DedupOptions {
            window: Duration::from_secs(window_s),
            scan_threshold: scan,
            budgets: [budget; 6],
            overflow_interval: Duration::from_secs(60),
        }
    }

    /// The i-th of many spoofed sources, each in its own /24.
    fn spoofed(i: u32) -> String {
        Ipv4Addr::from(0x0100_0000 + i * 256 + (i % 251)).to_string()
    }

    #[test]
    fn scan_tracking_holds_at_most_the_budgets_worth_of_clients_and_counts_the_rest() {
        // 6 budgets of 100: at most 600 clients tracked.
        let mut d = Dedup::new(opts(600, 32, 100));
        let t0 = Instant::now();
        for i in 0..5000u32 {
            d.offer(unknown(Kind::Unexpected, &spoofed(i), 40000, "10.200.1.11", 9999), t0);
        }
        assert_eq!(d.sources.len(), 600, "the cap holds");
        assert_eq!(d.stats.scan_untracked, 5000 - 600, "every client past the cap is counted");
        assert_eq!(d.counters_named("scan_untracked"), 4400);
        assert!(d.held() <= 600, "the entries stay within the budgets");
    }

    #[test]
    fn repeats_in_a_window_come_back_as_a_count() {
        let mut d = Dedup::new(opts(600, 100, 1000));
        let t0 = Instant::now();
        // The client port differs every time; it is not part of the key.
        assert!(d.offer(alert(Kind::Unexpected, "10.200.2.50", 40000, "10.200.1.11", 5432), t0).is_some());
        for p in 1..=4 {
            assert!(d
                .offer(alert(Kind::Unexpected, "10.200.2.50", 40000 + p, "10.200.1.11", 5432), t0)
                .is_none());
        }
        // Another kind or port is another key.
        assert!(d.offer(alert(Kind::Blocked, "10.200.2.50", 40010, "10.200.1.11", 5432), t0).is_some());
        assert!(d.offer(alert(Kind::Unexpected, "10.200.2.50", 40011, "10.200.1.11", 5433), t0).is_some());
        assert!(d.tick(t0 + Duration::from_secs(599)).is_empty(), "the window is still open");
        let follow = d.tick(t0 + Duration::from_secs(600));
        assert_eq!(follow.len(), 1, "only the key with repeats reports again: {follow:?}");
        assert_eq!(follow[0].count, 4);
        assert!(follow[0].reason.contains("4 more times"), "{}", follow[0].reason);
        assert_eq!(follow[0].fold, None, "an inventory host is keyed by its own address");
        assert_eq!(d.held(), 0, "closed windows are forgotten");
        assert_eq!(Class::ALL.map(|c| d.held_in(c)), [0; 6]);
        // A new window: the same key alerts at once again.
        assert!(d.offer(alert(Kind::Unexpected, "10.200.2.50", 41000, "10.200.1.11", 5432), t0).is_some());
        assert_eq!(d.stats.repeats, 4);
    }

    #[test]
    fn a_port_scan_folds_into_one_alert_per_source_without_losing_the_count() {
        let mut d = Dedup::new(opts(60, 32, 100_000));
        let t0 = Instant::now();
        let mut emitted = 0;
        for i in 0..100_000u32 {
            // 100,000 distinct (server, port) pairs: a sweep of a /16 on two ports.
            let server = format!("10.201.{}.{}", i / 2 / 256, i / 2 % 256);
            let a = alert(Kind::Unexpected, "10.200.9.9", 50000, &server, 22 + (i % 2) as u16);
            emitted += d.offer(a, t0).is_some() as u64;
        }
        // Another source is judged on its own.
        assert!(d.offer(alert(Kind::Unexpected, "10.200.9.10", 50000, "10.200.1.11", 22), t0).is_some());
        assert_eq!(emitted, 33, "32 distinct alerts, then one scan alert");
        let rest = d.flush();
        let scan: Vec<_> = rest.iter().filter(|a| a.reason.starts_with("port scan?")).collect();
        assert_eq!(scan.len(), 1, "{rest:?}");
        assert_eq!(scan[0].count, 100_000 - 33, "every folded flow past the first scan alert is counted");
        assert!(
            scan[0].reason.contains("(first: 10.201.0.16:22 tcp)"),
            "names the first folded flow: {}",
            scan[0].reason
        );
        assert_eq!(d.stats.scan_folded, 100_000 - 32);
        assert!(d.held() <= 33, "memory stays bounded: {} keys held", d.held());
    }

    #[test]
    fn past_a_class_budget_new_alerts_are_folded_counted_and_reported_once_per_interval() {
        let mut o = opts(600, u32::MAX, 10);
        o.overflow_interval = Duration::from_secs(60);
        let mut d = Dedup::new(o);
        let t0 = Instant::now();
        let mut out = Vec::new();
        for i in 0..25u16 {
            out.extend(d.offer(alert(Kind::Blocked, "10.200.2.50", 40000, "10.200.1.11", 1000 + i), t0));
        }
        let (findings, over): (Vec<_>, Vec<_>) = out.into_iter().partition(|a| a.kind == Kind::Blocked);
        assert_eq!(findings.len(), 10);
        assert_eq!(over.len(), 1, "the first fold reports at once, the rest wait: {over:?}");
        let o = over[0].overflow.as_ref().unwrap();
        assert_eq!(
            (over[0].kind, over[0].count, o.class, o.capacity, o.blocked),
            (Kind::Overflow, 1, "blocked", 10, 1)
        );
        assert!(over[0].reason.contains("class blocked is full (10 keys"), "{}", over[0].reason);
        assert!(over[0].reason.contains("blocked tcp 10.200.2.50 -> 10.200.1.11:1010"), "{}", over[0].reason);
        assert_eq!((d.stats.overflow, d.stats.folded[Class::Blocked.index()]), (15, 15));
        // Within the interval: nothing more, however many fold.
        for i in 25..40u16 {
            assert!(d
                .offer(alert(Kind::Blocked, "10.200.2.50", 40000, "10.200.1.11", 1000 + i), t0)
                .is_none());
        }
        assert!(d.tick(t0 + Duration::from_secs(59)).is_empty());
        // Past it: one overflow alert with the count since the last one.
        let due = d.tick(t0 + Duration::from_secs(60));
        assert_eq!(due.len(), 1, "{due:?}");
        let o = due[0].overflow.as_ref().unwrap();
        assert_eq!((due[0].count, o.blocked, o.unexpected, o.exposed, o.folded_total), (29, 29, 0, 0, 30));
        assert!(due[0].reason.contains("29 finding(s) folded"), "{}", due[0].reason);
        assert!(d.tick(t0 + Duration::from_secs(200)).is_empty(), "nothing new folded, nothing to say");
        // Another class is untouched by this one being full.
        assert!(d.offer(alert(Kind::Exposed, "10.200.2.50", 40000, "10.200.1.11", 1000), t0).is_some());
        let j: serde_json::Value = serde_json::from_str(&due[0].to_json()).unwrap();
        assert_eq!(j["kind"], "overflow");
        assert_eq!(j["overflow"]["class"], "blocked");
        assert_eq!(j["overflow"]["blocked"], 29);
        // At exit, what is pending is reported whatever the interval.
        assert!(d.offer(alert(Kind::Blocked, "10.200.2.50", 40000, "10.200.1.11", 2000), t0).is_none());
        let rest = d.flush();
        let over: Vec<_> = rest.iter().filter(|a| a.kind == Kind::Overflow).collect();
        assert_eq!(over.len(), 1, "{rest:?}");
        assert_eq!(over[0].count, 1);
    }

    #[test]
    fn unknown_sources_fold_per_prefix_with_a_count_of_distinct_sources() {
        let mut d = Dedup::new(opts(600, 32, 1000));
        let t0 = Instant::now();
        let first = d.offer(unknown(Kind::Unexpected, "198.51.100.1", 5000, "10.200.1.11", 161), t0).unwrap();
        let fold = first.fold.as_ref().expect("an unknown client's alert names its prefix");
        assert_eq!((fold.prefix.as_str(), fold.sources, fold.approximate), ("198.51.100.0/24", 1, false));
        // The rest of the /24, several times over: one key.
        for round in 0..3 {
            for i in 0..=255u8 {
                let src = format!("198.51.100.{i}");
                assert!(d
                    .offer(unknown(Kind::Unexpected, &src, 5000 + round, "10.200.1.11", 161), t0)
                    .is_none());
            }
        }
        // The next /24, another kind, another port: keys of their own.
        assert!(d.offer(unknown(Kind::Unexpected, "198.51.101.1", 5000, "10.200.1.11", 161), t0).is_some());
        assert!(d.offer(unknown(Kind::Unexpected, "198.51.100.1", 5000, "10.200.1.11", 162), t0).is_some());
        assert!(d.offer(unknown(Kind::Exposed, "198.51.100.1", 5000, "10.200.1.11", 161), t0).is_some());
        assert_eq!(d.held(), 4);
        assert_eq!(d.held_in(Class::UnknownUnexpected), 3);
        assert_eq!(d.held_in(Class::UnknownExposed), 1);
        // IPv6: per /64, the count an estimate.
        for i in 1..=100u16 {
            let src = format!("2001:db8:1:2::{i:x}");
            let emitted = d.offer(unknown(Kind::Unexpected, &src, 5000, "10.200.1.11", 161), t0).is_some();
            assert_eq!(emitted, i == 1, "{src}");
        }
        let rest = d.flush();
        let by_prefix =
            |p: &str| rest.iter().find(|a| a.fold.as_ref().is_some_and(|f| f.prefix == p)).unwrap();
        let v4 = by_prefix("198.51.100.0/24");
        assert_eq!(v4.count, 3 * 256);
        assert_eq!(v4.fold.as_ref().unwrap().sources, 256, "exact for IPv4");
        assert!(v4.reason.contains("from 256 distinct sources in 198.51.100.0/24"), "{}", v4.reason);
        let v6 = by_prefix("2001:db8:1:2::/64");
        let f6 = v6.fold.as_ref().unwrap();
        assert_eq!(v6.count, 99);
        assert!(f6.approximate);
        assert!((80..=125).contains(&f6.sources), "about 100 distinct sources: {}", f6.sources);
        assert!(v6.reason.contains("about "), "{}", v6.reason);
    }

    #[test]
    fn a_spoofed_flood_does_not_hide_findings_from_inventory_hosts() {
        let mut d = Dedup::new(DedupOptions::default());
        let metrics = Metrics::new();
        let t0 = Instant::now();
        let emit = |a: Option<Alert>, out: &mut Vec<Alert>| {
            if let Some(a) = a {
                metrics.alert(a.kind);
                out.push(a);
            }
        };
        let mut flood = Vec::new();
        // 100,000 distinct spoofed sources, each in its own /24, to one port.
        for i in 0..100_000u32 {
            let t = t0 + Duration::from_micros(u64::from(i) * 17); // 1.7 s
            emit(d.offer(unknown(Kind::Unexpected, &spoofed(i), 40000, "10.200.1.11", 514), t), &mut flood);
        }
        let budget = DEFAULT_BUDGETS[Class::UnknownUnexpected.index()];
        assert_eq!(d.held_in(Class::UnknownUnexpected), budget);
        assert_eq!(d.held(), budget, "the flood holds its own class's budget, no more");
        let over: Vec<_> = flood.iter().filter(|a| a.kind == Kind::Overflow).collect();
        assert_eq!(over.len(), 1, "one overflow alert in the interval");
        assert_eq!(over[0].overflow.as_ref().unwrap().class, "unknown_unexpected");
        assert_eq!(flood.len(), budget + 1);
        assert_eq!(d.stats.folded[Class::UnknownUnexpected.index()], 100_000 - budget as u64);

        // Then the real findings, still within the interval and the window.
        let t1 = t0 + Duration::from_secs(5);
        let mut real = Vec::new();
        emit(d.offer(alert(Kind::Exposed, "10.200.2.50", 51000, "10.200.1.11", 7003), t1), &mut real);
        emit(d.offer(alert(Kind::Blocked, "10.200.1.13", 40203, "10.200.1.20", 5432), t1), &mut real);
        emit(d.offer(alert(Kind::Unexpected, "10.200.2.50", 51011, "10.200.1.20", 5432), t1), &mut real);
        let kinds: Vec<_> = real.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [Kind::Exposed, Kind::Blocked, Kind::Unexpected], "{real:?}");
        assert!(real.iter().all(|a| a.count == 1 && a.overflow.is_none() && a.fold.is_none()));
        let text = metrics.encode();
        for (kind, n) in [("exposed", 1), ("blocked", 1), ("unexpected", budget + 1), ("overflow", 1)] {
            let line = format!("monitor_alerts_total{{kind=\"{kind}\"}} {n}\n");
            assert!(text.contains(&line), "{line:?} in:\n{text}");
        }
        // The trickle goes on: 300 new sources a second, for the window.
        let mut trickle = Vec::new();
        for s in 0..600u32 {
            for j in 0..300 {
                let t = t1 + Duration::from_secs(u64::from(s)) + Duration::from_millis(j * 3);
                let src = spoofed(100_000 + s * 300 + j as u32);
                emit(d.offer(unknown(Kind::Unexpected, &src, 40000, "10.200.1.11", 514), t), &mut trickle);
            }
            trickle.extend(d.tick(t1 + Duration::from_secs(u64::from(s) + 1)));
        }
        let over = trickle.iter().filter(|a| a.kind == Kind::Overflow).count();
        assert!((9..=11).contains(&over), "one overflow alert a minute over 10 minutes, not {over}");
        assert!(d.held() <= DEFAULT_BUDGETS.iter().sum(), "bounded: {}", d.held());
    }
}
