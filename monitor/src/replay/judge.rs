//! A whole capture judged: the loop of `monitor check`, kept in the library so
//! that every command that reads a capture (`check`, `graph`, `learn`, the
//! HTML report) sees the same flows with the same verdicts.
//!
//! Flows that ended (by the live stream's timeouts, in capture time) are
//! judged and dropped during the replay, so memory follows the flows open at
//! once, not every flow of the capture. DNS answers bind names as the capture
//! goes: each flow is judged with what the host had resolved when the flow
//! started.

use std::{collections::VecDeque, io, path::Path, time::Duration};

use monitor_common::{FlowKey, FlowValue};

use super::{
    pcap::{self, PcapError},
    track::{Expiry, Stats, Tracker},
    InOrder, Summary, Tally,
};
use crate::{
    dns::{CacheOptions, DnsMessage, NamedServices, Passive},
    engine::{Compiled, Engine, EngineError, Verdict},
    flow::{EpochClock, Flow, NoHint},
    verdict::{assess, Outcome},
};

/// How a capture is judged.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// How long a connection attempt may wait for an answer, measured to the
    /// end of the capture, before it counts as unanswered.
    pub syn_timeout: Duration,
    /// How long a DNS answer's binding holds past its TTL.
    pub dns_grace: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options { syn_timeout: Duration::from_secs(3), dns_grace: Duration::from_secs(60) }
    }
}

/// One flow as the engine judged it; a finding's alert carries its DNS names.
pub struct Judged<'a> {
    pub flow: &'a Flow,
    pub verdict: &'a Verdict,
    pub outcome: &'a Outcome,
    /// The engine the flow was judged with (names bound by DNS recompile it).
    pub engine: &'a Engine,
}

/// What a whole capture came to.
pub struct Judgement {
    pub summary: Summary,
    pub tally: Tally,
    /// The engine as it stood at the end of the capture.
    pub engine: Engine,
}

#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error(transparent)]
    Pcap(#[from] PcapError),
    #[error("{matrix}: cannot compile the matrix: {source}")]
    Compile { matrix: String, source: EngineError },
    #[error("cannot write the findings: {0}")]
    Write(#[from] io::Error),
}

/// Replays `capture` through the tracker and the engine of `compiled`, and
/// hands every judged flow to `each`, in the order the flows started.
/// `matrix` names the matrix file in errors.
pub fn judge_capture(
    compiled: Compiled,
    matrix: &Path,
    capture: &Path,
    options: Options,
    each: impl FnMut(Judged<'_>) -> io::Result<()>,
) -> Result<Judgement, JudgeError> {
    judge_capture_threads(compiled, matrix, capture, options, 1, each)
}

/// [`judge_capture`] with the flow table sharded over `threads` trackers
/// (see [`sharded`]); `threads` 1 (or 0) tracks on the calling thread. The
/// flows, their verdicts, their order and the summary are the same for
/// any number of threads.
pub fn judge_capture_threads(
    compiled: Compiled,
    matrix: &Path,
    capture: &Path,
    options: Options,
    threads: usize,
    each: impl FnMut(Judged<'_>) -> io::Result<()>,
) -> Result<Judgement, JudgeError> {
    let mut judge = Judge::new(compiled, matrix, options, each);
    if threads > 1 {
        return sharded::judge(judge, capture, threads);
    }
    let mut tracker = Tracker::new();
    tracker.keep_dns();
    tracker.expire_idle(Expiry::live(options.syn_timeout));
    let mut held = InOrder::default();
    let mut answers: VecDeque<DnsMessage> = VecDeque::new();
    let mut failed = None;
    let read = pcap::for_each_packet(capture, |r| {
        tracker.push_captured(r.ts_ns, r.link, r.data, r.orig_len);
        let ended = tracker.take_ended();
        if ended.is_empty() || failed.is_some() {
            return;
        }
        held.add(ended);
        answers.extend(tracker.take_dns());
        let ready = held.ready(tracker.oldest_start_ns());
        if let Err(e) = judge.judge(ready, &mut answers, tracker.now_ns()) {
            failed = Some(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    // The end of the capture: every flow still open, aged to the last packet.
    held.add(tracker.entries().map(|(k, v)| (*k, *v)));
    answers.extend(tracker.take_dns());
    judge.judge(held.ready(None), &mut answers, tracker.now_ns())?;
    Ok(judge.finish(capture, tracker.stats(), read))
}

/// The judging half of a replay: passive DNS, the engine (recompiled when
/// DNS binds a name), the tally; fed ended flows in start order.
struct Judge<'m, F> {
    doc: crate::matrix::Matrix,
    inventory: Option<crate::inventory::Inventory>,
    selection: crate::matrix::Selection,
    engine: Engine,
    matrix: &'m Path,
    timeout: Duration,
    named: NamedServices,
    passive: Passive,
    tally: Tally,
    each: F,
}

impl<'m, F: FnMut(Judged<'_>) -> io::Result<()>> Judge<'m, F> {
    fn new(compiled: Compiled, matrix: &'m Path, options: Options, each: F) -> Self {
        let Compiled { matrix: doc, inventory, selection, engine, .. } = compiled;
        let named = NamedServices::new(&doc);
        let mut passive = Passive::new(CacheOptions { grace: options.dns_grace, ..CacheOptions::default() });
        passive.cache.watch(named.patterns());
        Judge {
            doc,
            inventory,
            selection,
            engine,
            matrix,
            timeout: options.syn_timeout,
            named,
            passive,
            tally: Tally::default(),
            each,
        }
    }

    /// Judges `entries` (in start order) at capture time `now_ns`, with the
    /// DNS answers of `answers` sent before each flow started.
    fn judge(
        &mut self,
        entries: Vec<(FlowKey, FlowValue)>,
        answers: &mut VecDeque<DnsMessage>,
        now_ns: u64,
    ) -> Result<(), JudgeError> {
        let clock = EpochClock { now_ns };
        for (k, v) in entries {
            let Some(flow) = Flow::from_entry(&k, &v, &clock, &NoHint, self.timeout) else { continue };
            let started = v.first_seen_ns;
            while let Some(m) = answers.front().filter(|m| m.ts_ns <= started) {
                self.passive.ingest(m);
                answers.pop_front();
            }
            self.passive.expire(started);
            let cache = &mut self.passive.cache;
            if cache.is_dirty(flow.client.ip) || cache.is_dirty(flow.server.ip) {
                self.engine =
                    Engine::with_resolver(&self.doc, self.inventory.as_ref(), &self.selection, cache)
                        .map_err(|source| JudgeError::Compile {
                            matrix: self.matrix.display().to_string(),
                            source,
                        })?;
                cache.take_dirty();
            }
            let (verdict, mut outcome) = assess(&self.engine, &flow);
            self.tally.add(&flow, &verdict, &outcome);
            if let Outcome::Finding(alert) = &mut outcome {
                self.named.annotate(alert, &self.engine, &self.passive.cache);
            }
            (self.each)(Judged { flow: &flow, verdict: &verdict, outcome: &outcome, engine: &self.engine })?;
        }
        Ok(())
    }

    fn finish(self, capture: &Path, stats: &Stats, read: pcap::ReadSummary) -> Judgement {
        let summary = Summary::new(
            capture.display().to_string(),
            stats,
            read.first_ts_ns,
            read.last_ts_ns,
            &self.tally,
            &self.engine,
            self.passive.summary_counters(),
        );
        Judgement { summary, tally: self.tally, engine: self.engine }
    }
}

/// A replay over several trackers, one thread each.
///
/// The reading thread parses each packet as far as its flow key (the
/// quoted flow's for an ICMP error) and hands it, in batches, to the shard
/// of that key's hash: every packet of a flow meets the same table, in
/// capture order. What else the single table's result depends on is kept
/// global: the reader follows the whole capture's clock and tells every
/// shard when to sweep for ended flows (the moment a single tracker would
/// have, with the same "now"); at each sweep it gathers the shards'
/// ended flows, their DNS answers (merged back into capture order by packet
/// number) and their oldest open flow, and judges exactly what the single
/// table would have judged then. Counters are summed at the end.
mod sharded {
    use std::{
        hash::BuildHasher,
        sync::mpsc::{sync_channel, Receiver, SyncSender},
    };

    use super::*;
    use crate::replay::track::LinkKind;

    /// Packets a batch holds before it is sent to its shard.
    const BATCH: usize = 2048;
    /// Batches in flight to a shard: the bound on the memory between threads.
    const QUEUE: usize = 8;

    struct Rec {
        number: u64,
        ts_ns: u64,
        link: LinkKind,
        start: usize,
        len: usize,
        orig_len: u64,
    }

    #[derive(Default)]
    struct Batch {
        frames: Vec<u8>,
        recs: Vec<Rec>,
    }

    enum ToShard {
        Packets(Batch),
        /// Sweep with the capture's clock at this time, and report.
        Sweep(u64),
        /// The capture ended: hand over the table.
        End,
    }

    /// A shard's answer to a sweep.
    struct Swept {
        ended: Vec<(FlowKey, FlowValue)>,
        /// DNS answers since the last report, with their packet numbers.
        dns: Vec<(u64, DnsMessage)>,
        oldest: Option<u64>,
    }

    struct Ended {
        entries: Vec<(FlowKey, FlowValue)>,
        dns: Vec<(u64, DnsMessage)>,
        stats: Stats,
        now_ns: u64,
    }

    enum FromShard {
        Swept(Swept),
        Ended(Box<Ended>),
    }

    fn shard(rx: Receiver<ToShard>, tx: SyncSender<FromShard>, timeout: Duration) {
        let mut tracker = Tracker::new();
        tracker.keep_dns();
        tracker.expire_idle_when_told(Expiry::live(timeout));
        let mut dns = Vec::new();
        while let Ok(msg) = rx.recv() {
            match msg {
                ToShard::Packets(b) => {
                    for r in &b.recs {
                        tracker.push_captured(
                            r.ts_ns,
                            r.link,
                            &b.frames[r.start..r.start + r.len],
                            r.orig_len,
                        );
                        dns.extend(tracker.take_dns().into_iter().map(|m| (r.number, m)));
                    }
                }
                ToShard::Sweep(now) => {
                    tracker.sweep_at(now);
                    let swept = Swept {
                        ended: tracker.take_ended(),
                        dns: std::mem::take(&mut dns),
                        oldest: tracker.oldest_start_ns(),
                    };
                    if tx.send(FromShard::Swept(swept)).is_err() {
                        return;
                    }
                }
                ToShard::End => {
                    let ended = Ended {
                        entries: tracker.entries().map(|(k, v)| (*k, *v)).collect(),
                        dns: std::mem::take(&mut dns),
                        stats: *tracker.stats(),
                        now_ns: tracker.now_ns(),
                    };
                    let _ = tx.send(FromShard::Ended(Box::new(ended)));
                    return;
                }
            }
        }
    }

    /// The shards' DNS answers in capture order (a stable sort keeps a
    /// packet's own answers in order).
    fn merged(mut dns: Vec<(u64, DnsMessage)>) -> impl Iterator<Item = DnsMessage> {
        dns.sort_by_key(|(n, _)| *n);
        dns.into_iter().map(|(_, m)| m)
    }

    pub(super) fn judge<F: FnMut(Judged<'_>) -> io::Result<()>>(
        mut judge: Judge<'_, F>,
        capture: &Path,
        threads: usize,
    ) -> Result<Judgement, JudgeError> {
        let timeout = judge.timeout;
        let judge_ref = &mut judge;
        let (stats, read) = std::thread::scope(|scope| {
            let mut to = Vec::with_capacity(threads);
            let mut from = Vec::with_capacity(threads);
            for _ in 0..threads {
                let (tx, rx) = sync_channel::<ToShard>(QUEUE);
                let (back_tx, back_rx) = sync_channel::<FromShard>(1);
                scope.spawn(move || shard(rx, back_tx, timeout));
                to.push(tx);
                from.push(back_rx);
            }
            let hasher = rustc_hash::FxBuildHasher;
            let mut keyer = Tracker::new();
            let mut batches: Vec<Batch> = (0..threads).map(|_| Batch::default()).collect();
            let (mut now, mut next_sweep) = (0u64, 0u64);
            let mut held = InOrder::default();
            let mut answers: VecDeque<DnsMessage> = VecDeque::new();
            let mut failed: Option<JudgeError> = None;
            let gone = || JudgeError::Write(io::Error::other("a replay shard stopped"));
            let send =
                |to: &[SyncSender<ToShard>], i: usize, b: Batch| to[i].send(ToShard::Packets(b)).is_ok();
            let read = pcap::for_each_packet(capture, |r| {
                if failed.is_some() {
                    return;
                }
                let i = match keyer.flow_key_of(r.link, r.data, r.orig_len) {
                    Some(k) => (hasher.hash_one(k) % threads as u64) as usize,
                    // Counted by reason only: any one shard counts it.
                    None => 0,
                };
                let b = &mut batches[i];
                b.recs.push(Rec {
                    number: r.number,
                    ts_ns: r.ts_ns,
                    link: r.link,
                    start: b.frames.len(),
                    len: r.data.len(),
                    orig_len: r.orig_len,
                });
                b.frames.extend_from_slice(r.data);
                if b.recs.len() >= BATCH && !send(&to, i, std::mem::take(b)) {
                    failed = Some(gone());
                    return;
                }
                // The single tracker's sweep schedule, after this packet.
                now = now.max(r.ts_ns);
                if now < next_sweep {
                    return;
                }
                next_sweep = now.saturating_add(Tracker::SWEEP_INTERVAL_NS);
                let mut oldest: Option<u64> = None;
                let mut ended = Vec::new();
                let mut dns = Vec::new();
                for (i, b) in batches.iter_mut().enumerate() {
                    if !b.recs.is_empty() && !send(&to, i, std::mem::take(b)) {
                        failed = Some(gone());
                        return;
                    }
                    if to[i].send(ToShard::Sweep(now)).is_err() {
                        failed = Some(gone());
                        return;
                    }
                }
                for rx in &from {
                    let Ok(FromShard::Swept(s)) = rx.recv() else {
                        failed = Some(gone());
                        return;
                    };
                    ended.extend(s.ended);
                    dns.extend(s.dns);
                    oldest = match (oldest, s.oldest) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                // The single table hands DNS answers over only with ended flows.
                answers_pending(&mut answers, dns);
                if ended.is_empty() {
                    return;
                }
                held.add(ended);
                let ready = held.ready(oldest);
                if let Err(e) = judge_ref.judge(ready, &mut answers, now) {
                    failed = Some(e);
                }
            });
            let end = (|| {
                let read = read?;
                if let Some(e) = failed {
                    return Err(e);
                }
                for (i, b) in batches.into_iter().enumerate() {
                    if !b.recs.is_empty() && !send(&to, i, b) {
                        return Err(gone());
                    }
                    to[i].send(ToShard::End).map_err(|_| gone())?;
                }
                let mut stats = Stats::default();
                let mut dns = Vec::new();
                let mut last = 0;
                for rx in &from {
                    let Ok(FromShard::Ended(e)) = rx.recv() else { return Err(gone()) };
                    held.add(e.entries);
                    dns.extend(e.dns);
                    stats.merge(&e.stats);
                    last = last.max(e.now_ns);
                }
                answers_pending(&mut answers, dns);
                judge_ref.judge(held.ready(None), &mut answers, last)?;
                Ok((stats, read))
            })();
            // Dropping the senders ends any shard still waiting.
            drop(to);
            end
        })?;
        Ok(judge.finish(capture, &stats, read))
    }

    fn answers_pending(answers: &mut VecDeque<DnsMessage>, dns: Vec<(u64, DnsMessage)>) {
        answers.extend(merged(dns));
    }
}
