//! Alert de-duplication: one alert per (kind, client service or address,
//! server address, port, protocol) per window; repeats are counted and
//! reported in a follow-up alert when the window closes. A source that opens
//! many distinct off-matrix flows in one window (a port scan) is folded into
//! one alert per source. Memory is bounded; whatever is folded is counted.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use crate::{
    alert::{Alert, Kind},
    flow::Proto,
};

#[derive(Clone, Debug)]
pub struct DedupOptions {
    pub window: Duration,
    /// Distinct unexpected keys one source may open per window before the
    /// rest are folded into a single scan alert.
    pub scan_threshold: u32,
    /// Keys held at once; past this, new keys are folded and counted.
    pub max_keys: usize,
}

impl Default for DedupOptions {
    fn default() -> Self {
        DedupOptions { window: Duration::from_secs(600), scan_threshold: 32, max_keys: 50_000 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    kind: Kind,
    /// The client's first service name, else its address.
    client: String,
    server: IpAddr,
    port: u16,
    proto: Proto,
}

impl Key {
    fn of(a: &Alert) -> Key {
        let client = a.src.names.service.clone().unwrap_or_else(|| a.src.ip.to_string());
        Key { kind: a.kind, client, server: a.dst.ip, port: a.dst.port, proto: a.proto }
    }
}

struct Entry {
    opened: Instant,
    repeats: u64,
    first: Alert,
}

struct Source {
    opened: Instant,
    distinct: u32,
    /// Once folding started: the first folded flow's own alert (the scan
    /// alerts name it) and how many flows were folded.
    scan: Option<(Alert, u64)>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DedupStats {
    /// Alerts handed to the de-duplicator.
    pub offered: u64,
    /// Alerts let through at once.
    pub emitted: u64,
    /// Repeats held back (reported as counts later).
    pub repeats: u64,
    /// Flows folded into a per-source scan alert.
    pub scan_folded: u64,
    /// New keys folded because `max_keys` were held (reported as a count).
    pub overflow: u64,
}

pub struct Dedup {
    opts: DedupOptions,
    entries: HashMap<Key, Entry>,
    sources: HashMap<IpAddr, Source>,
    /// Overflowed alerts not yet reported, with the first of them.
    overflow: Option<(Alert, u64)>,
    pub stats: DedupStats,
}

impl Dedup {
    pub fn new(opts: DedupOptions) -> Dedup {
        Dedup {
            opts,
            entries: HashMap::new(),
            sources: HashMap::new(),
            overflow: None,
            stats: DedupStats::default(),
        }
    }

    /// Keys currently held (bounded by `max_keys`).
    pub fn held(&self) -> usize {
        self.entries.len()
    }

    /// Returns the alert to emit now, if any.
    pub fn offer(&mut self, alert: Alert, now: Instant) -> Option<Alert> {
        self.stats.offered += 1;
        let key = Key::of(&alert);
        if let Some(e) = self.entries.get_mut(&key) {
            e.repeats += 1;
            self.stats.repeats += 1;
            return None;
        }
        if alert.kind == Kind::Unexpected {
            let src =
                self.sources.entry(alert.src.ip).or_insert(Source { opened: now, distinct: 0, scan: None });
            src.distinct += 1;
            if src.distinct > self.opts.scan_threshold {
                self.stats.scan_folded += 1;
                return match &mut src.scan {
                    Some((_, n)) => {
                        *n += 1;
                        None
                    }
                    None => {
                        let scan = scan_alert(&alert, self.opts.scan_threshold, self.opts.window, 1);
                        src.scan = Some((alert, 1));
                        self.stats.emitted += 1;
                        Some(scan)
                    }
                };
            }
        }
        if self.entries.len() >= self.opts.max_keys {
            self.stats.overflow += 1;
            match &mut self.overflow {
                Some((_, n)) => *n += 1,
                None => self.overflow = Some((alert, 1)),
            }
            return None;
        }
        self.entries.insert(key, Entry { opened: now, repeats: 0, first: alert.clone() });
        self.stats.emitted += 1;
        Some(alert)
    }

    /// Closes the windows that have run out; returns the follow-up alerts
    /// that carry their repeat counts.
    pub fn tick(&mut self, now: Instant) -> Vec<Alert> {
        let window = self.opts.window;
        self.close(|opened| now.duration_since(opened) >= window)
    }

    /// Closes every window (at exit), so that no count is lost.
    pub fn flush(&mut self) -> Vec<Alert> {
        self.close(|_| true)
    }

    fn close(&mut self, expired: impl Fn(Instant) -> bool) -> Vec<Alert> {
        let mut out = Vec::new();
        self.entries.retain(|_, e| {
            if !expired(e.opened) {
                return true;
            }
            if e.repeats > 0 {
                let mut a = e.first.clone();
                a.count = e.repeats;
                a.reason = format!("{} (seen {} more times in this window)", a.reason, e.repeats);
                out.push(a);
            }
            false
        });
        let (threshold, window) = (self.opts.scan_threshold, self.opts.window);
        self.sources.retain(|_, s| {
            if !expired(s.opened) {
                return true;
            }
            // The first folded flow was reported by the scan alert itself:
            // the follow-up stands for the rest, so that counts add up.
            if let Some((first, n)) = &s.scan {
                if *n > 1 {
                    out.push(scan_alert(first, threshold, window, *n - 1));
                }
            }
            false
        });
        if let Some((first, n)) = self.overflow.take() {
            let mut a = first;
            a.count = n;
            a.reason = format!(
                "{n} further alerts were folded into this one because {} distinct alert keys were already \
                 held in this window; the first of them: {}",
                self.opts.max_keys, a.reason
            );
            out.push(a);
        }
        out
    }
}

/// One alert standing for the off-matrix flows a source opened past the
/// scan threshold.
fn scan_alert(first: &Alert, threshold: u32, window: Duration, count: u64) -> Alert {
    let mut a = first.clone();
    a.count = count;
    a.dst.port = 0;
    a.closest.clear();
    a.reason = format!(
        "port scan? {} opened more than {threshold} distinct off-matrix flows within {}s; {count} flow(s) \
         folded into this alert (first: {}:{} {})",
        first.src.ip,
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
    };

    fn alert(kind: Kind, client: &str, sport: u16, server: &str, dport: u16) -> Alert {
        let (key, dir) = FlowKey::canonical(
            addr_key(client.parse().unwrap()),
            sport,
            addr_key(server.parse().unwrap()),
            dport,
            proto::TCP,
        );
        let mut v = FlowValue { first_seen_ns: 1, last_seen_ns: 1, ..FlowValue::default() };
        v.packets[dir] = 1;
        v.tcp_flags[dir] = tcp_flag::SYN;
        v.initiator = if dir == 0 { side::A } else { side::B };
        v.initiator_how = initiator_how::TCP_SYN;
        let flow =
            Flow::from_entry(&key, &v, &EpochClock { now_ns: 2 }, &NoHint, Duration::from_secs(3)).unwrap();
        Alert::new(kind, &flow, Names::default(), Names::default(), None, "off-matrix".into())
    }

    fn opts(window_s: u64, scan: u32, max_keys: usize) -> DedupOptions {
        DedupOptions { window: Duration::from_secs(window_s), scan_threshold: scan, max_keys }
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
        assert_eq!(d.held(), 0, "closed windows are forgotten");
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
    fn past_max_keys_new_alerts_are_folded_and_counted() {
        let mut d = Dedup::new(opts(600, u32::MAX, 10));
        let t0 = Instant::now();
        let mut emitted = 0;
        for i in 0..25u16 {
            emitted += d
                .offer(alert(Kind::Blocked, "10.200.2.50", 40000, "10.200.1.11", 1000 + i), t0)
                .is_some() as u32;
        }
        assert_eq!(emitted, 10);
        assert_eq!(d.stats.overflow, 15);
        let rest = d.flush();
        let over: Vec<_> = rest.iter().filter(|a| a.count == 15).collect();
        assert_eq!(over.len(), 1, "{rest:?}");
        assert!(over[0].reason.contains("15 further alerts were folded"), "{}", over[0].reason);
    }
}
