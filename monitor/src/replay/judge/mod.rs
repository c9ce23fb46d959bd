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

/// [`judge_capture`] with the flow table sharded over `threads` trackers,
/// one thread each (see [`sharded`]): over a mapped file every shard walks
/// the records itself ([`walk`]), from a pipe one thread reads them and
/// hands each shard its packets ([`route`]). `threads` 1 (or 0) tracks on
/// the calling thread. The flows, their verdicts, their order, the summary
/// and any error are the same for any number of threads.
pub fn judge_capture_threads(
    compiled: Compiled,
    matrix: &Path,
    capture: &Path,
    options: Options,
    threads: usize,
    each: impl FnMut(Judged<'_>) -> io::Result<()>,
) -> Result<Judgement, JudgeError> {
    let judge = Judge::new(compiled, matrix, options, each);
    if threads > 1 {
        let file = pcap::Capture::open(capture)?;
        return match file.shared(threads) {
            Some(walk) => walk::judge(judge, capture, &walk, threads),
            None => route::judge(judge, capture, &file, threads),
        };
    }
    let mut judge = judge;
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

mod route;
mod sharded;
mod walk;

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::{sharded::fast_key, *};
    use crate::replay::track::LinkKind;

    /// The fixed-offset key is the kernel parser's key whenever
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
