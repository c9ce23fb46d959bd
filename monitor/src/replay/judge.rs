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
/// The reading thread walks the records and finds each packet's flow key
/// (the quoted flow's for an ICMP error): for the common frame (Ethernet,
/// IPv4 or IPv6, TCP or UDP) from the fixed header offsets, for any other by
/// the kernel parser. It hands the packet, in batches, to the shard of that
/// key's hash: every packet of a flow meets the same table, in capture
/// order. A batch carries where each frame lies in the mapped file, not the
/// frame: the shard parses it there, so the reader neither parses nor
/// copies it again (a pipe, which has no map, copies its frames into the
/// batch). Batches go back to the reader to be filled again, and the
/// reader keeps the pages that a shard has still to read mapped.
///
/// What else the single table's result depends on is kept global: the
/// reader follows the whole capture's clock and tells every shard when to
/// sweep for ended flows (the moment a single tracker would have, with the
/// same "now"); each sweep's ended flows, DNS answers (merged back into
/// capture order by packet number) and oldest open flow are gathered at the
/// next sweep (the shards work on meanwhile) and judged exactly as the single
/// table would have judged them. Counters are summed at the end.
mod sharded {
    use std::{
        cell::Cell,
        hash::BuildHasher,
        sync::{
            atomic::{AtomicU64, Ordering},
            mpsc::{sync_channel, Receiver, SyncSender},
        },
    };

    use monitor_common::{flow::make_key, proto};

    use super::*;
    use crate::replay::{
        pcap::{prefetch, Capture},
        track::LinkKind,
    };

    /// Packets a batch holds before it is sent to its shard: small, so that
    /// the reader hands work over early and the tail a sweep waits for is short.
    const BATCH: usize = 4096;
    /// Batches in flight to a shard: with the one being filled and those
    /// coming back, the bound on the batches (and, for a pipe, the copied
    /// frames) between threads.
    const QUEUE: usize = 4;
    /// A shard's batch is sent once its first frame is this far behind the
    /// reader, however few packets it holds: until its shard has read them,
    /// the pages from there on stay resident.
    const MAX_LAG: usize = 16 << 20;
    /// The reader recomputes what the map must keep every this many packets.
    const KEEP_EVERY: u64 = 256;
    /// A pipe's batch is sent once its copied frames take this many bytes.
    const MAX_COPIED: usize = 4 << 20;
    /// A shard prefetches the headers of the frame this many records ahead:
    /// the reader walked them on another core, so they are not in this one's cache.
    const PREFETCH_RECS: usize = 16;

    /// A packet for a shard: where its frame is (in the map, or in the
    /// batch's `frames` for a pipe) and what the record said.
    struct Rec {
        number: u64,
        ts_ns: u64,
        orig_len: u64,
        start: usize,
        len: u32,
        link: LinkKind,
    }

    struct Batch {
        recs: Vec<Rec>,
        /// The frames, copied, when the capture is not mapped.
        frames: Vec<u8>,
    }

    impl Batch {
        fn new() -> Batch {
            Batch { recs: Vec::with_capacity(BATCH), frames: Vec::new() }
        }
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

    /// The key [`Tracker::flow_key_of`] gives an Ethernet frame carrying
    /// TCP or UDP over IPv4 (not a later fragment) or over IPv6 without
    /// extension headers, read at fixed offsets; `None` for any other frame.
    /// A frame the kernel parser would count into no flow may get a key
    /// here: it is only counted, by any one shard.
    pub(super) fn fast_key(frame: &[u8]) -> Option<FlowKey> {
        let be16 = |b: &[u8], i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let word = |b: &[u8], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let ports = |proto: u8, l4: &[u8]| {
            let need = match proto {
                proto::TCP => 20,
                proto::UDP => 8,
                _ => return None,
            };
            (l4.len() >= need).then(|| (be16(l4, 0), be16(l4, 2)))
        };
        let ethertype = be16(frame.get(..14)?, 12);
        match ethertype {
            0x0800 => {
                let ip = frame.get(14..34)?;
                let ihl = (ip[0] & 0x0f) as usize * 4;
                if ip[0] >> 4 != 4 || ihl < 20 || be16(ip, 6) & 0x1fff != 0 {
                    return None;
                }
                let (sport, dport) = ports(ip[9], frame.get(14 + ihl..)?)?;
                let mapped = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
                let (src, dst) = ([0, 0, mapped, word(ip, 12)], [0, 0, mapped, word(ip, 16)]);
                Some(make_key(&src, sport, &dst, dport, ip[9]).0)
            }
            0x86dd => {
                let ip = frame.get(14..54)?;
                if ip[0] >> 4 != 6 {
                    return None;
                }
                let (sport, dport) = ports(ip[6], &frame[54..])?;
                let addr = |i: usize| [word(ip, i), word(ip, i + 4), word(ip, i + 8), word(ip, i + 12)];
                Some(make_key(&addr(8), sport, &addr(24), dport, ip[6]).0)
            }
            _ => None,
        }
    }

    fn shard(
        map: Option<&[u8]>,
        rx: Receiver<ToShard>,
        tx: SyncSender<FromShard>,
        free: SyncSender<Batch>,
        done: &AtomicU64,
        timeout: Duration,
    ) {
        let mut tracker = Tracker::new();
        tracker.keep_dns();
        tracker.expire_idle_when_told(Expiry::live(timeout));
        let mut dns = Vec::new();
        while let Ok(msg) = rx.recv() {
            match msg {
                ToShard::Packets(mut b) => {
                    let frames: &[u8] = map.unwrap_or(&b.frames);
                    for (j, r) in b.recs.iter().enumerate() {
                        if let Some(next) = b.recs.get(j + PREFETCH_RECS) {
                            let head = &frames[next.start..];
                            prefetch(head.as_ptr());
                            prefetch(head.as_ptr().wrapping_add(64));
                        }
                        let frame = &frames[r.start..r.start + r.len as usize];
                        tracker.push_captured(r.ts_ns, r.link, frame, r.orig_len);
                        if tracker.has_dns() {
                            dns.extend(tracker.take_dns().into_iter().map(|m| (r.number, m)));
                        }
                    }
                    done.fetch_add(1, Ordering::Release);
                    b.recs.clear();
                    b.frames.clear();
                    // The reader makes a new one when none comes back.
                    let _ = free.try_send(b);
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

    /// The reader's end of one shard.
    struct Lane<'a> {
        to: SyncSender<ToShard>,
        from: Receiver<FromShard>,
        free: Receiver<Batch>,
        /// Batches the shard has finished.
        done: &'a AtomicU64,
        batch: Batch,
        /// Map offset of the first frame of `batch`.
        first: usize,
        /// Map offsets of the first frames of the batches sent and not
        /// known to be finished, oldest first.
        sent: VecDeque<usize>,
        /// Batches known to be finished.
        finished: u64,
        /// The frames are read in the map (not copied): `sent` is kept.
        mapped: bool,
    }

    impl Lane<'_> {
        fn send(&mut self) -> bool {
            if self.batch.recs.is_empty() {
                return true;
            }
            let fresh = self.free.try_recv().unwrap_or_else(|_| Batch::new());
            let b = std::mem::replace(&mut self.batch, fresh);
            if self.mapped {
                self.sent.push_back(self.first);
            }
            self.to.send(ToShard::Packets(b)).is_ok()
        }

        /// The first map offset this shard has still to read, if any.
        fn keep(&mut self) -> Option<usize> {
            let done = self.done.load(Ordering::Acquire);
            while self.finished < done {
                self.sent.pop_front();
                self.finished += 1;
            }
            let pending = (!self.batch.recs.is_empty()).then_some(self.first);
            self.sent.front().copied().into_iter().chain(pending).min()
        }
    }

    /// Gathers the shards' answers to the sweep at `now` and judges them.
    fn gather<F: FnMut(Judged<'_>) -> io::Result<()>>(
        lanes: &[Lane<'_>],
        now: u64,
        held: &mut InOrder,
        answers: &mut VecDeque<DnsMessage>,
        judge: &mut Judge<'_, F>,
    ) -> Result<(), JudgeError> {
        let mut oldest: Option<u64> = None;
        let mut ended = Vec::new();
        let mut dns = Vec::new();
        for lane in lanes {
            let Ok(FromShard::Swept(s)) = lane.from.recv() else { return Err(gone()) };
            ended.extend(s.ended);
            dns.extend(s.dns);
            oldest = oldest.into_iter().chain(s.oldest).min();
        }
        // The single table hands DNS answers over only with ended flows.
        answers.extend(merged(dns));
        if ended.is_empty() {
            return Ok(());
        }
        held.add(ended);
        let ready = held.ready(oldest);
        judge.judge(ready, answers, now)
    }

    fn gone() -> JudgeError {
        JudgeError::Write(io::Error::other("a replay shard stopped"))
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
        let file = Capture::open(capture)?;
        let map = file.mapped();
        let base = map.map_or(0, |m| m.as_ptr() as usize);
        let done: Vec<AtomicU64> = (0..threads).map(|_| AtomicU64::new(0)).collect();
        let judge_ref = &mut judge;
        let (stats, read) = std::thread::scope(|scope| {
            let mut lanes: Vec<Lane<'_>> = Vec::with_capacity(threads);
            for done in &done {
                let (tx, rx) = sync_channel::<ToShard>(QUEUE);
                let (back_tx, back_rx) = sync_channel::<FromShard>(1);
                let (free_tx, free_rx) = sync_channel::<Batch>(QUEUE + 1);
                scope.spawn(move || shard(map, rx, back_tx, free_tx, done, timeout));
                lanes.push(Lane {
                    to: tx,
                    from: back_rx,
                    free: free_rx,
                    done,
                    batch: Batch::new(),
                    first: 0,
                    sent: VecDeque::new(),
                    finished: 0,
                    mapped: map.is_some(),
                });
            }
            let hasher = rustc_hash::FxBuildHasher;
            let mut keyer = Tracker::new();
            let (mut now, mut next_sweep) = (0u64, 0u64);
            let mut held = InOrder::default();
            let mut answers: VecDeque<DnsMessage> = VecDeque::new();
            let mut failed: Option<JudgeError> = None;
            // The sweep sent and not yet gathered.
            let mut pending: Option<u64> = None;
            let keep = Cell::new(usize::MAX);
            let read = file.for_each_packet(&keep, |r| {
                if failed.is_some() {
                    return;
                }
                let key = match r.link {
                    LinkKind::Ethernet => fast_key(r.data),
                    _ => None,
                }
                .or_else(|| keyer.flow_key_of(r.link, r.data, r.orig_len));
                let i = match key {
                    Some(k) => (hasher.hash_one(k) % threads as u64) as usize,
                    // Counted by reason only: any one shard counts it.
                    None => 0,
                };
                let lane = &mut lanes[i];
                let b = &mut lane.batch;
                let start = match map {
                    Some(_) => r.data.as_ptr() as usize - base,
                    None => {
                        b.frames.extend_from_slice(r.data);
                        b.frames.len() - r.data.len()
                    }
                };
                if b.recs.is_empty() {
                    lane.first = start;
                }
                b.recs.push(Rec {
                    number: r.number,
                    ts_ns: r.ts_ns,
                    orig_len: r.orig_len,
                    start,
                    len: r.data.len() as u32,
                    link: r.link,
                });
                let full = b.recs.len() >= BATCH || b.frames.len() >= MAX_COPIED;
                if full && !lane.send() {
                    failed = Some(gone());
                    return;
                }
                if map.is_some() && r.number % KEEP_EVERY == 0 {
                    let at = start;
                    let mut low = usize::MAX;
                    for lane in &mut lanes {
                        if lane.first.saturating_add(MAX_LAG) < at && !lane.send() {
                            failed = Some(gone());
                            return;
                        }
                        low = low.min(lane.keep().unwrap_or(usize::MAX));
                    }
                    // Frames sent from here on lie past this record.
                    keep.set(low.min(at));
                }
                // The single tracker's sweep schedule, after this packet.
                now = now.max(r.ts_ns);
                if now < next_sweep {
                    return;
                }
                next_sweep = now.saturating_add(Tracker::SWEEP_INTERVAL_NS);
                if !lanes.iter_mut().all(|l| l.send()) {
                    failed = Some(gone());
                    return;
                }
                if let Some(then) = pending.take() {
                    if let Err(e) = gather(&lanes, then, &mut held, &mut answers, judge_ref) {
                        failed = Some(e);
                        return;
                    }
                }
                if !lanes.iter().all(|l| l.to.send(ToShard::Sweep(now)).is_ok()) {
                    failed = Some(gone());
                    return;
                }
                pending = Some(now);
            });
            let end = (|| {
                // What the single tracker judged before the capture failed
                // (a cut-short record, a corrupt block) comes out first.
                if let Some(then) = pending.take().filter(|_| failed.is_none()) {
                    gather(&lanes, then, &mut held, &mut answers, judge_ref)?;
                }
                let read = read?;
                if let Some(e) = failed {
                    return Err(e);
                }
                for lane in &mut lanes {
                    if !lane.send() {
                        return Err(gone());
                    }
                    lane.to.send(ToShard::End).map_err(|_| gone())?;
                }
                let mut stats = Stats::default();
                let mut dns = Vec::new();
                let mut last = 0;
                for lane in &lanes {
                    let Ok(FromShard::Ended(e)) = lane.from.recv() else { return Err(gone()) };
                    held.add(e.entries);
                    dns.extend(e.dns);
                    stats.merge(&e.stats);
                    last = last.max(e.now_ns);
                }
                answers.extend(merged(dns));
                judge_ref.judge(held.ready(None), &mut answers, last)?;
                Ok((stats, read))
            })();
            // Dropping the senders ends any shard still waiting.
            drop(lanes);
            end
        })?;
        Ok(judge.finish(capture, &stats, read))
    }
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::{sharded::fast_key, *};
    use crate::replay::track::LinkKind;

    /// The reader's fixed-offset key is the kernel parser's key whenever
    /// both give one: the frames of one flow all meet one shard. Checked on
    /// frames of every kind and on thousands of damaged copies of them.
    #[test]
    fn the_fast_key_is_the_parsers_key() {
        let (c4, s4) = ([10, 200, 2, 50], [10, 200, 1, 11]);
        let (c6, s6) = ([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50], [0xfe; 16]);
        let eth = || PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let mut bases: Vec<Vec<u8>> = Vec::new();
        let mut push = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = Vec::new();
            f(&mut v);
            bases.push(v);
        };
        push(&|v| eth().ipv4(c4, s4, 64).tcp(40000, 443, 1, 1000).syn().write(v, &[]).unwrap());
        push(&|v| eth().ipv4(s4, c4, 64).tcp(443, 40000, 1, 1000).ack(2).write(v, &[7; 40]).unwrap());
        push(&|v| eth().ipv4(c4, s4, 64).udp(5000, 53).write(v, &[1; 20]).unwrap());
        push(&|v| eth().ipv4(c4, c4, 64).udp(5000, 5000).write(v, &[]).unwrap());
        push(&|v| eth().ipv6(c6, s6, 64).tcp(40000, 443, 1, 1000).syn().write(v, &[]).unwrap());
        push(&|v| eth().ipv6(s6, c6, 64).udp(53, 5000).write(v, &[1; 20]).unwrap());
        push(&|v| {
            eth().single_vlan(10.try_into().unwrap()).ipv4(c4, s4, 64).udp(1, 2).write(v, &[]).unwrap()
        });
        push(&|v| eth().ipv4(c4, s4, 64).icmpv4_echo_request(1, 1).write(v, &[]).unwrap());
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut keyer = Tracker::new();
        let (mut agreed, mut frames) = (0, 0);
        for base in &bases {
            for round in 0..3000 {
                let mut f = base.clone();
                if round > 0 {
                    for _ in 0..(next() % 4) {
                        let at = (next() as usize) % f.len().min(60);
                        f[at] = match next() % 4 {
                            0 => 0,
                            1 => 0xff,
                            2 => [4, 6, 0x45, 0x46, 0x4f, 0x20, 17, 6, 1, 0x08, 0x86, 0xdd]
                                [(next() % 12) as usize],
                            _ => next() as u8,
                        };
                    }
                    if next() % 3 == 0 {
                        f.truncate((next() as usize) % (f.len() + 1));
                    }
                }
                frames += 1;
                let parsed = keyer.flow_key_of(LinkKind::Ethernet, &f, f.len() as u64);
                if let (Some(fast), Some(slow)) = (fast_key(&f), parsed) {
                    assert_eq!(fast, slow, "frame {f:02x?}");
                    agreed += 1;
                }
            }
        }
        assert!(agreed > frames / 3, "only {agreed} of {frames} frames had both keys");
    }
}
