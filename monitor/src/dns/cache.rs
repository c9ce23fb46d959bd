//! Address → names, as this host resolved them: each binding lives for its
//! TTL plus a grace period (clients keep using an address a little past
//! its TTL, and a connection opened just before expiry is still fair).
//!
//! The cache is bounded in addresses and in (address, name) bindings: any
//! packet from port 53 is read, so spoofed answers can carry as many names
//! as a sender likes. Past either bound the least recently refreshed
//! address goes with all its names, and is counted. It also tracks which addresses
//! changed names that the matrix watches, so that the engine is rebuilt
//! only when a verdict could change.
//!
//! Time is a plain nanosecond counter given by the caller: the kernel's
//! monotonic clock live, capture timestamps in `monitor check`, a fake one
//! in tests.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use super::parse::Binding;
use crate::{
    engine::{NameResolver, StaticResolver},
    matrix::FqdnPattern,
};

/// The default bound on bindings: far above what a host resolves within a
/// TTL and a minute. Measured: 1,000,000 spoofed answers with 248-byte
/// names left the cache at 16.5 MiB resident (65,536 bindings held 51 MiB).
pub const DEFAULT_MAX_BINDINGS: usize = 16_384;
/// How many of the oldest addresses the bindings bound looks through for
/// one that holds no watched name.
const SPARE_WATCHED: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheOptions {
    /// How long past its TTL a binding still holds.
    pub grace: Duration,
    /// Most addresses held.
    pub max_addrs: usize,
    /// Most names held per address (a CDN address serves thousands).
    pub max_names_per_addr: usize,
    /// Most (address, name) bindings held in all. Names are at most 253
    /// bytes, so this bounds the cache's memory; one address alone may
    /// still hold `max_names_per_addr`.
    pub max_bindings: usize,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            grace: Duration::from_secs(60),
            max_addrs: 100_000,
            max_names_per_addr: 64,
            max_bindings: DEFAULT_MAX_BINDINGS,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// (address, name) pairs learnt.
    pub bindings_added: u64,
    /// Pairs seen again, their expiry moved.
    pub bindings_refreshed: u64,
    /// Pairs gone past TTL and grace.
    pub bindings_expired: u64,
    /// Addresses dropped to stay within `max_addrs`.
    pub addrs_evicted: u64,
    /// Addresses dropped, with their names, to stay within `max_bindings`.
    pub addrs_evicted_bindings: u64,
    /// Names dropped from an address to stay within `max_names_per_addr`.
    pub names_evicted: u64,
}

struct Entry {
    /// Name and the end of its TTL (ns); the grace comes on top.
    names: Vec<(Arc<str>, u64)>,
    /// Position in `lru`.
    stamp: u64,
}

pub struct DnsCache {
    opts: CacheOptions,
    by_addr: HashMap<IpAddr, Entry>,
    by_name: HashMap<Arc<str>, HashSet<IpAddr>>,
    /// Refresh order: stamp → address, the oldest first.
    lru: BTreeMap<u64, IpAddr>,
    next_stamp: u64,
    /// (address, name) pairs held: the sum of every entry's names.
    bindings: usize,
    watched: Vec<FqdnPattern>,
    /// Addresses whose watched names changed since [`DnsCache::take_dirty`].
    dirty: HashSet<IpAddr>,
    pub stats: CacheStats,
}

impl DnsCache {
    pub fn new(opts: CacheOptions) -> DnsCache {
        DnsCache {
            opts,
            by_addr: HashMap::new(),
            by_name: HashMap::new(),
            lru: BTreeMap::new(),
            next_stamp: 0,
            bindings: 0,
            watched: Vec::new(),
            dirty: HashSet::new(),
            stats: CacheStats::default(),
        }
    }

    /// The names and wildcards the matrix places services on.
    pub fn watch(&mut self, patterns: Vec<FqdnPattern>) {
        self.watched = patterns;
    }

    fn is_watched(&self, name: &str) -> bool {
        self.watched.iter().any(|p| p.matches(name))
    }

    fn grace_ns(&self) -> u64 {
        self.opts.grace.as_nanos() as u64
    }

    /// Learns one answer's binding, received at `now_ns`.
    pub fn insert(&mut self, b: &Binding, now_ns: u64) {
        let ttl_end = now_ns.saturating_add(u64::from(b.ttl) * 1_000_000_000);
        if !self.by_addr.contains_key(&b.addr) && self.by_addr.len() >= self.opts.max_addrs {
            self.evict_oldest();
            self.stats.addrs_evicted += 1;
        }
        // How many bindings this answer adds: its new names, up to what the
        // address may still hold (past that a name replaces another).
        let (held, new) = match self.by_addr.get(&b.addr) {
            Some(e) => (
                e.names.len(),
                b.names.iter().filter(|n| !e.names.iter().any(|(m, _)| **m == *n.as_str())).count(),
            ),
            None => (0, b.names.len()),
        };
        let growth = (held + new).min(self.opts.max_names_per_addr.max(held)) - held;
        while self.bindings + growth > self.opts.max_bindings && self.evict_for_room(b.addr) {
            self.stats.addrs_evicted_bindings += 1;
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let e = self.by_addr.entry(b.addr).or_insert_with(|| Entry { names: Vec::new(), stamp });
        self.lru.remove(&e.stamp);
        e.stamp = stamp;
        self.lru.insert(stamp, b.addr);
        for name in &b.names {
            if let Some(slot) = e.names.iter_mut().find(|(n, _)| &**n == name.as_str()) {
                // A later answer may carry a shorter TTL (a cache counting
                // down): the latest answer is what the host now holds.
                slot.1 = ttl_end;
                self.stats.bindings_refreshed += 1;
                continue;
            }
            if e.names.len() >= self.opts.max_names_per_addr {
                let (i, _) = e.names.iter().enumerate().min_by_key(|(_, (_, t))| *t).expect("a full list");
                let (gone, _) = e.names.swap_remove(i);
                unlink(&mut self.by_name, &gone, b.addr);
                if self.watched.iter().any(|p| p.matches(&gone)) {
                    self.dirty.insert(b.addr);
                }
                self.stats.names_evicted += 1;
                self.bindings -= 1;
            }
            let name: Arc<str> = match self.by_name.get_key_value(name.as_str()) {
                Some((k, _)) => k.clone(),
                None => Arc::from(name.as_str()),
            };
            self.by_name.entry(name.clone()).or_default().insert(b.addr);
            let watched = self.watched.iter().any(|p| p.matches(&name));
            e.names.push((name, ttl_end));
            self.bindings += 1;
            self.stats.bindings_added += 1;
            if watched {
                self.dirty.insert(b.addr);
            }
        }
    }

    /// Drops bindings past TTL and grace at `now_ns`.
    pub fn expire(&mut self, now_ns: u64) {
        let grace = self.grace_ns();
        let mut emptied = Vec::new();
        for (addr, e) in self.by_addr.iter_mut() {
            let before = e.names.len();
            let mut i = 0;
            while i < e.names.len() {
                if e.names[i].1.saturating_add(grace) <= now_ns {
                    let (gone, _) = e.names.swap_remove(i);
                    unlink(&mut self.by_name, &gone, *addr);
                    if self.watched.iter().any(|p| p.matches(&gone)) {
                        self.dirty.insert(*addr);
                    }
                } else {
                    i += 1;
                }
            }
            self.stats.bindings_expired += (before - e.names.len()) as u64;
            self.bindings -= before - e.names.len();
            if e.names.is_empty() {
                emptied.push((*addr, e.stamp));
            }
        }
        for (addr, stamp) in emptied {
            self.by_addr.remove(&addr);
            self.lru.remove(&stamp);
        }
    }

    /// Keeps the bindings of `addr` alive until `now_ns` plus grace at least:
    /// an address stays bound while connections to it are open, as a client
    /// keeps a connection made while the name pointed there.
    pub fn keep_alive(&mut self, addr: IpAddr, now_ns: u64) {
        if let Some(e) = self.by_addr.get_mut(&addr) {
            for (_, t) in e.names.iter_mut() {
                *t = (*t).max(now_ns);
            }
        }
    }

    /// The names `addr` was resolved from and that still hold, sorted.
    pub fn names(&self, addr: IpAddr) -> Vec<String> {
        let mut v: Vec<String> = self
            .by_addr
            .get(&addr.to_canonical())
            .map(|e| e.names.iter().map(|(n, _)| n.to_string()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Whether `addr` is bound to a name that `pattern` matches.
    pub fn binds(&self, addr: IpAddr, pattern: &FqdnPattern) -> bool {
        self.by_addr
            .get(&addr.to_canonical())
            .is_some_and(|e| e.names.iter().any(|(n, _)| pattern.matches(n)))
    }

    /// Addresses whose watched names changed since the last call.
    pub fn take_dirty(&mut self) -> HashSet<IpAddr> {
        std::mem::take(&mut self.dirty)
    }

    pub fn is_dirty(&self, addr: IpAddr) -> bool {
        self.dirty.contains(&addr.to_canonical())
    }

    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The watched names and their addresses, detached from the cache so that
    /// an engine can compile from it on another thread.
    pub fn snapshot(&self) -> StaticResolver {
        let mut names: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for (name, addrs) in &self.by_name {
            if self.is_watched(name) {
                let mut a: Vec<IpAddr> = addrs.iter().copied().collect();
                a.sort();
                names.insert(name.to_string(), a);
            }
        }
        StaticResolver { names }
    }

    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// (address, name) bindings held.
    pub fn bindings(&self) -> usize {
        self.bindings
    }

    /// Drops one address, not `keep`, to make room for bindings: the least
    /// recently refreshed one that holds no watched name, among the oldest
    /// [`SPARE_WATCHED`], else the least recently refreshed. A flood of
    /// made-up names then pushes out its own kind first, not the bindings
    /// the matrix places services on. False when only `keep` is left.
    fn evict_for_room(&mut self, keep: IpAddr) -> bool {
        let watched = |e: &Entry| e.names.iter().any(|(n, _)| self.is_watched(n));
        let candidates = self.lru.iter().filter(|(_, a)| **a != keep);
        let mut oldest = None;
        let mut victim = None;
        for (&stamp, &addr) in candidates.take(SPARE_WATCHED) {
            oldest.get_or_insert((stamp, addr));
            if !self.by_addr.get(&addr).is_some_and(watched) {
                victim = Some((stamp, addr));
                break;
            }
        }
        match victim.or(oldest) {
            Some(at) => {
                self.evict(at);
                true
            }
            None => false,
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((&stamp, &addr)) = self.lru.iter().next() {
            self.evict((stamp, addr));
        }
    }

    fn evict(&mut self, (stamp, addr): (u64, IpAddr)) {
        self.lru.remove(&stamp);
        if let Some(e) = self.by_addr.remove(&addr) {
            self.bindings -= e.names.len();
            for (n, _) in &e.names {
                unlink(&mut self.by_name, n, addr);
                if self.watched.iter().any(|p| p.matches(n)) {
                    self.dirty.insert(addr);
                }
            }
        }
    }
}

fn unlink(by_name: &mut HashMap<Arc<str>, HashSet<IpAddr>>, name: &str, addr: IpAddr) {
    if let Some(set) = by_name.get_mut(name) {
        set.remove(&addr);
        if set.is_empty() {
            by_name.remove(name);
        }
    }
}

/// The cache as the engine's resolver: every address a matching name holds.
impl NameResolver for DnsCache {
    fn resolve(&self, pattern: &FqdnPattern, out: &mut Vec<IpAddr>) {
        if pattern.is_wildcard() {
            for (name, addrs) in &self.by_name {
                if pattern.matches(name) {
                    out.extend(addrs.iter().copied());
                }
            }
        } else if let Some(addrs) = self.by_name.get(pattern.as_str()) {
            out.extend(addrs.iter().copied());
        }
    }
}
