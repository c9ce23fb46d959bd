//! Passive DNS in `monitor run`: answers feed the cache; when a name the
//! matrix watches gains or loses an address, the engine is recompiled
//! with the cache as its resolver, at most every [`REBUILD_EVERY`].
//!
//! A flow whose client or server address has a change not yet compiled
//! waits for that rebuild (at most [`REBUILD_EVERY`]) instead of being
//! judged against stale bindings: a connection opened right after its
//! lookup must see the lookup. Flows already judged keep their verdicts.
//! An address stays bound while flows to it are open ([`DnsCache::keep_alive`]),
//! so that a long connection does not turn unexpected when its TTL ends.

use std::{
    collections::HashSet,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{CacheOptions, DnsCache, DnsMessage, NamedServices, Passive, DNS};
use crate::{
    alert::Alert,
    counters::{Counters, Emit},
    engine::{Engine, EngineError},
    flow::{Flow, FlowMap, FlowState},
    inventory::Inventory,
    matrix::{Matrix, Selection},
};

/// Shortest time between two engine rebuilds caused by DNS.
pub const REBUILD_EVERY: Duration = Duration::from_millis(200);

/// What an engine is compiled from.
pub struct Inputs {
    pub matrix: Matrix,
    pub inventory: Option<Inventory>,
    pub selection: Selection,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Engine rebuilds because watched names changed addresses.
    pub dns_rebuilds: u64,
    /// Flows held back until a rebuild, because an address of theirs had just changed.
    pub dns_flows_deferred: u64,
    /// Rebuilds that failed (the previous engine stays in force).
    pub dns_rebuild_errors: u64,
}

/// The passive DNS counters, then the rebuilds'.
impl Counters for LiveNames {
    fn counters(&self, emit: &mut Emit<'_>) {
        self.passive.counters(emit);
        let LiveStats { dns_rebuilds, dns_flows_deferred, dns_rebuild_errors } = self.stats;
        emit(&DNS, "rebuilds", dns_rebuilds);
        emit(&DNS, "flows_deferred", dns_flows_deferred);
        emit(&DNS, "rebuild_errors", dns_rebuild_errors);
    }
}

pub struct LiveNames {
    pub passive: Passive,
    named: NamedServices,
    inputs: Inputs,
    /// Addresses whose watched names changed since the engine was built.
    pending: HashSet<IpAddr>,
    /// Flows waiting for the next rebuild, latest state of each.
    deferred: FlowMap<Flow>,
    last_build: Option<Instant>,
    pub stats: LiveStats,
}

impl LiveNames {
    pub fn new(inputs: Inputs, opts: CacheOptions) -> LiveNames {
        let named = NamedServices::new(&inputs.matrix);
        let mut passive = Passive::new(opts);
        passive.cache.watch(named.patterns());
        LiveNames {
            passive,
            named,
            inputs,
            pending: HashSet::new(),
            deferred: FlowMap::default(),
            last_build: None,
            stats: LiveStats::default(),
        }
    }

    /// A reloaded matrix: watch its names from now on. The caller swaps in
    /// the engine [`LiveNames::compile`] gives.
    pub fn set_inputs(&mut self, inputs: Inputs) {
        self.named = NamedServices::new(&inputs.matrix);
        self.passive.cache.watch(self.named.patterns());
        self.inputs = inputs;
    }

    pub fn cache(&self) -> &DnsCache {
        &self.passive.cache
    }

    pub fn ingest(&mut self, m: &DnsMessage) {
        self.passive.ingest(m);
        self.pending.extend(self.passive.cache.take_dirty());
    }

    /// Ages the cache to `now_ns` (the kernel's monotonic clock).
    pub fn expire(&mut self, now_ns: u64) {
        self.passive.expire(now_ns);
        self.pending.extend(self.passive.cache.take_dirty());
    }

    /// Keeps the server address of a flow still open bound (closed and
    /// failed flows linger in the table a while; they keep nothing alive).
    pub fn flow_seen(&mut self, flow: &Flow, now_ns: u64) {
        if !matches!(flow.state, FlowState::Closed) && !flow.state.is_failure() {
            self.passive.cache.keep_alive(flow.server.ip, now_ns);
        }
    }

    /// Holds `flow` back if an address of its own changed since the engine
    /// was built; returns it otherwise, to be judged now.
    pub fn hold<'a>(&mut self, flow: &'a Flow) -> Option<&'a Flow> {
        let touched = self.pending.contains(&flow.client.ip.to_canonical())
            || self.pending.contains(&flow.server.ip.to_canonical());
        if !touched {
            return Some(flow);
        }
        if self.deferred.insert(flow.key, flow.clone()).is_none() {
            self.stats.dns_flows_deferred += 1;
        }
        None
    }

    /// When the next rebuild is due, if one is.
    pub fn due(&self) -> Option<Instant> {
        if self.pending.is_empty() {
            return None;
        }
        Some(self.last_build.map_or_else(Instant::now, |t| t + REBUILD_EVERY))
    }

    /// Compiles the engine with the static bindings and what DNS bound.
    pub fn compile(&self) -> Result<Engine, EngineError> {
        let i = &self.inputs;
        Engine::with_resolver(&i.matrix, i.inventory.as_ref(), &i.selection, &self.passive.cache)
    }

    /// Rebuilds the engine for the pending changes; returns it and the
    /// flows that waited for it. On failure (which a matrix that compiled
    /// once cannot cause) the flows are returned to be judged as they stand.
    pub fn rebuild(&mut self) -> (Option<Engine>, Vec<Flow>) {
        self.last_build = Some(Instant::now());
        self.pending.clear();
        let flows = self.deferred.drain().map(|(_, f)| f).collect();
        match self.compile() {
            Ok(e) => {
                self.stats.dns_rebuilds += 1;
                (Some(e), flows)
            }
            Err(e) => {
                self.stats.dns_rebuild_errors += 1;
                log::error!("recompiling the matrix for new DNS answers failed: {e}");
                (None, flows)
            }
        }
    }

    /// Adds the DNS names of the server, and a missing lookup, to a finding.
    pub fn annotate(&self, alert: &mut Alert, engine: &Arc<Engine>) {
        self.named.annotate(alert, engine, &self.passive.cache);
    }
}
