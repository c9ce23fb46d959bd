//! Passive DNS: the answers this host received, so that matrix services
//! placed by name (`fqdn: graph.microsoft.com`, `*.microsoft.com`) match
//! the addresses the host itself resolved, without resolving anything.
//!
//! The kernel (or, for `monitor check`, the tracker) hands over every
//! payload sent from port 53 as a [`DnsMessage`]; [`Passive`] reassembles
//! TCP streams ([`tcp`]), decodes answers ([`parse`]) and keeps the address →
//! names [`cache`]. docs/dns.md describes the behaviour.

pub mod cache;
pub mod live;
pub mod parse;
pub mod tcp;

use std::collections::BTreeMap;

use monitor_common::{proto, FlowKey};

pub use cache::{CacheOptions, CacheStats, DnsCache};
pub use parse::{Binding, Parsed};
pub use tcp::{Reassembler, TcpStats};

use crate::{
    alert::{Alert, Kind},
    counters::{Counters, Emit, Family},
    engine::Engine,
    matrix::{FqdnPattern, Matrix},
};

/// TCP streams reassembled at once; more are dropped oldest first.
const MAX_TCP_STREAMS: usize = 4096;
/// A TCP DNS stream idle this long is forgotten.
const TCP_IDLE_NS: u64 = 30_000_000_000;

/// One payload sent from port 53: a whole DNS message over UDP, one segment
/// of the length-prefixed stream over TCP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsMessage {
    /// Nanoseconds on the caller's clock (kernel monotonic, or capture time).
    pub ts_ns: u64,
    /// The packet's canonical flow key (its protocol tells UDP from TCP).
    pub key: FlowKey,
    /// The side (`monitor_common::side`) that sent it: the server.
    pub sender: u32,
    /// TCP sequence number of the segment; 0 for UDP.
    pub tcp_seq: u32,
    /// The transport payload length; more than `payload.len()` when cut.
    pub orig_len: u32,
    pub payload: Vec<u8>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsStats {
    /// DNS messages decoded (UDP datagrams and reassembled TCP messages).
    pub messages: u64,
    /// Answers with at least one address bound.
    pub answers: u64,
    /// Answers cut short by the capture: the records before the cut were used.
    pub answers_cut: u64,
    /// Responses with an error code (NXDOMAIN, SERVFAIL...).
    pub negative: u64,
    /// Messages from port 53 that are not query responses.
    pub not_answers: u64,
    /// Messages that do not decode.
    pub malformed: u64,
    /// UDP messages copied cut short whose header did not survive.
    pub udp_cut_unusable: u64,
}

/// Messages in, bindings out: TCP reassembly, decoding and the cache.
pub struct Passive {
    pub cache: DnsCache,
    pub tcp: Reassembler,
    pub stats: DnsStats,
}

impl Passive {
    pub fn new(opts: CacheOptions) -> Passive {
        Passive {
            cache: DnsCache::new(opts),
            tcp: Reassembler::new(MAX_TCP_STREAMS),
            stats: DnsStats::default(),
        }
    }

    /// Takes one payload from port 53.
    pub fn ingest(&mut self, m: &DnsMessage) {
        if m.key.proto == proto::TCP {
            let messages = self.tcp.push(m.key, m.sender, m.tcp_seq, &m.payload, m.orig_len, m.ts_ns);
            for msg in messages {
                self.decode(&msg, m.ts_ns, false);
            }
            self.tcp.expire(m.ts_ns.saturating_sub(TCP_IDLE_NS));
        } else {
            self.decode(&m.payload, m.ts_ns, (m.payload.len() as u32) < m.orig_len);
        }
    }

    fn decode(&mut self, payload: &[u8], ts_ns: u64, cut: bool) {
        self.stats.messages += 1;
        match parse::parse(payload) {
            Ok(Parsed::Answer { bindings, cut: short }) => {
                if short {
                    self.stats.answers_cut += 1;
                }
                if !bindings.is_empty() {
                    self.stats.answers += 1;
                }
                for b in &bindings {
                    self.cache.insert(b, ts_ns);
                }
            }
            Ok(Parsed::Negative(_)) => self.stats.negative += 1,
            Ok(Parsed::NotAnswer) => self.stats.not_answers += 1,
            Err(_) if cut => self.stats.udp_cut_unusable += 1,
            Err(e) => {
                log::debug!("DNS message from port 53: {e}");
                self.stats.malformed += 1;
            }
        }
    }

    /// Ages the cache and idle TCP streams to `now_ns`.
    pub fn expire(&mut self, now_ns: u64) {
        self.cache.expire(now_ns);
        self.tcp.expire(now_ns.saturating_sub(TCP_IDLE_NS));
    }

    /// Every counter of decoding, reassembly and the cache, named as in
    /// the summary of `monitor check` (`dns_` and the counter's name).
    pub fn summary_counters(&self) -> Vec<(String, u64)> {
        crate::counters::collect(self).into_iter().map(|(_, name, v)| (format!("dns_{name}"), v)).collect()
    }
}

/// `monitor_dns_total{counter}`: passive DNS, from the message to the
/// binding (docs/dns.md).
pub static DNS: Family = Family {
    name: "dns",
    help: "Passive DNS: messages decoded, TCP reassembly, the name cache and engine rebuilds, by counter (docs/dns.md).",
    label: "counter",
};

impl Counters for Passive {
    fn counters(&self, emit: &mut Emit<'_>) {
        crate::emit_fields!(
            emit,
            &DNS,
            DnsStats { messages, answers, answers_cut, negative, not_answers, malformed, udp_cut_unusable } =
                self.stats
        );
        crate::emit_fields!(
            emit,
            &DNS,
            CacheStats {
                bindings_added,
                bindings_refreshed,
                bindings_expired,
                addrs_evicted,
                addrs_evicted_bindings,
                names_evicted
            } = self.cache.stats
        );
        crate::emit_fields!(
            emit,
            &DNS,
            TcpStats { tcp_messages, tcp_gaps, tcp_retransmits, tcp_streams_dropped, tcp_buffers_dropped } =
                self.tcp.stats
        );
    }
}

/// The services a matrix places by DNS name, and their names.
#[derive(Clone, Debug, Default)]
pub struct NamedServices {
    by_service: BTreeMap<String, Vec<FqdnPattern>>,
}

impl NamedServices {
    pub fn new(matrix: &Matrix) -> NamedServices {
        let mut by_service: BTreeMap<String, Vec<FqdnPattern>> = BTreeMap::new();
        for (service, pattern) in matrix.fqdn_patterns() {
            by_service.entry(service.to_string()).or_default().push(pattern.clone());
        }
        NamedServices { by_service }
    }

    /// Every watched name and wildcard.
    pub fn patterns(&self) -> Vec<FqdnPattern> {
        let mut v: Vec<FqdnPattern> = self.by_service.values().flatten().cloned().collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn is_empty(&self) -> bool {
        self.by_service.is_empty()
    }

    /// Adds what DNS knows to a finding: the names its server address was
    /// resolved from, and, when the flow is unexpected while a nearby rule
    /// names its target by DNS name, that no lookup bound this address.
    pub fn annotate(&self, alert: &mut Alert, engine: &Engine, cache: &DnsCache) {
        let ip = alert.dst.ip;
        alert.dst.dns_names = cache.names(ip);
        if alert.kind != Kind::Unexpected {
            return;
        }
        let mut missing: Vec<String> = Vec::new();
        for id in &alert.closest {
            let Some(rule) = engine.rules().iter().find(|r| &r.id == id) else { continue };
            for p in self.by_service.get(&rule.target).into_iter().flatten() {
                if !cache.binds(ip, p) && !missing.iter().any(|m| m == p.as_str()) {
                    missing.push(p.as_str().to_string());
                }
            }
        }
        if !missing.is_empty() {
            alert
                .reason
                .push_str(&format!("; no DNS lookup of {} was seen resolving to {ip}", or_list(&missing)));
        }
    }
}

/// `a`, `a or b`, `a, b or c`.
fn or_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
