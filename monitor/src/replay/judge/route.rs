//! `--threads N` over a capture that is not mapped (a pipe, stdin): its
//! bytes can be read only once, so one thread reads the records, finds each
//! packet's shard ([`sharded::shard_of`]) and hands it over, in batches.
//!
//! A batch carries copies of its frames (at most [`MAX_COPIED`] bytes);
//! batches go back to the reader to be filled again, at most [`QUEUE`] in
//! flight per shard. The reader follows the single tracker's sweep schedule
//! and tells every shard when to sweep; each sweep's answers are gathered at
//! the next sweep (the shards work on meanwhile) and judged as the single
//! table would have judged them ([`sharded::judge_sweep`]).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::{
    sharded::{self, gone, Ended, Shard, Swept},
    *,
};
use crate::replay::{
    pcap::{prefetch, Capture},
    track::LinkKind,
};

/// Packets a batch holds before it is sent to its shard: small, so that
/// the reader hands work over early and the tail a sweep waits for is short.
const BATCH: usize = 4096;
/// Batches in flight to a shard: with the one being filled and those
/// coming back, the bound on the batches (and their copied frames)
/// between threads.
const QUEUE: usize = 4;
/// A batch is sent once its copied frames take this many bytes.
const MAX_COPIED: usize = 4 << 20;
/// A shard prefetches the headers of the frame this many records ahead:
/// the reader copied them on another core, so they are not in this one's cache.
const PREFETCH_RECS: usize = 16;

/// A packet for a shard: where its frame is in the batch's `frames` and
/// what the record said.
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

enum FromShard {
    Swept(Swept),
    Ended(Box<Ended>),
}

fn shard(rx: Receiver<ToShard>, tx: SyncSender<FromShard>, free: SyncSender<Batch>, timeout: Duration) {
    let mut table = Shard::new(timeout);
    while let Ok(msg) = rx.recv() {
        match msg {
            ToShard::Packets(mut b) => {
                for (j, r) in b.recs.iter().enumerate() {
                    if let Some(next) = b.recs.get(j + PREFETCH_RECS) {
                        let head = &b.frames[next.start..];
                        prefetch(head.as_ptr());
                        prefetch(head.as_ptr().wrapping_add(64));
                    }
                    let frame = &b.frames[r.start..r.start + r.len as usize];
                    table.push(r.number, r.ts_ns, r.link, frame, r.orig_len);
                }
                b.recs.clear();
                b.frames.clear();
                // The reader makes a new one when none comes back.
                let _ = free.try_send(b);
            }
            ToShard::Sweep(now) => {
                if tx.send(FromShard::Swept(table.sweep(now))).is_err() {
                    return;
                }
            }
            ToShard::End => {
                let _ = tx.send(FromShard::Ended(Box::new(table.end())));
                return;
            }
        }
    }
}

/// The reader's end of one shard.
struct Lane {
    to: SyncSender<ToShard>,
    from: Receiver<FromShard>,
    free: Receiver<Batch>,
    batch: Batch,
}

impl Lane {
    fn send(&mut self) -> bool {
        if self.batch.recs.is_empty() {
            return true;
        }
        let fresh = self.free.try_recv().unwrap_or_else(|_| Batch::new());
        let b = std::mem::replace(&mut self.batch, fresh);
        self.to.send(ToShard::Packets(b)).is_ok()
    }
}

/// Gathers the shards' answers to the sweep at `now` and judges them.
fn gather<F: FnMut(Judged<'_>) -> io::Result<()>>(
    lanes: &[Lane],
    now: u64,
    held: &mut InOrder,
    answers: &mut VecDeque<DnsMessage>,
    judge: &mut Judge<'_, F>,
) -> Result<(), JudgeError> {
    let mut swept = Vec::with_capacity(lanes.len());
    for lane in lanes {
        let Ok(FromShard::Swept(s)) = lane.from.recv() else { return Err(gone()) };
        swept.push(s);
    }
    sharded::judge_sweep(swept, now, held, answers, judge)
}

pub(super) fn judge<F: FnMut(Judged<'_>) -> io::Result<()>>(
    mut judge: Judge<'_, F>,
    capture: &Path,
    file: &Capture,
    threads: usize,
) -> Result<Judgement, JudgeError> {
    let timeout = judge.timeout;
    let judge_ref = &mut judge;
    let (stats, read) = std::thread::scope(|scope| {
        let mut lanes: Vec<Lane> = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (tx, rx) = sync_channel::<ToShard>(QUEUE);
            let (back_tx, back_rx) = sync_channel::<FromShard>(1);
            let (free_tx, free_rx) = sync_channel::<Batch>(QUEUE + 1);
            scope.spawn(move || shard(rx, back_tx, free_tx, timeout));
            lanes.push(Lane { to: tx, from: back_rx, free: free_rx, batch: Batch::new() });
        }
        let mut keyer = Tracker::new();
        let (mut now, mut next_sweep) = (0u64, 0u64);
        let mut held = InOrder::default();
        let mut answers: VecDeque<DnsMessage> = VecDeque::new();
        let mut failed: Option<JudgeError> = None;
        // The sweep sent and not yet gathered.
        let mut pending: Option<u64> = None;
        let read = file.for_each_packet(|r| {
            if failed.is_some() {
                return;
            }
            let lane = &mut lanes[sharded::shard_of(&mut keyer, r.link, r.data, r.orig_len, threads)];
            let b = &mut lane.batch;
            b.frames.extend_from_slice(r.data);
            b.recs.push(Rec {
                number: r.number,
                ts_ns: r.ts_ns,
                orig_len: r.orig_len,
                start: b.frames.len() - r.data.len(),
                len: r.data.len() as u32,
                link: r.link,
            });
            let full = b.recs.len() >= BATCH || b.frames.len() >= MAX_COPIED;
            if full && !lane.send() {
                failed = Some(gone());
                return;
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
            let mut ended = Vec::with_capacity(lanes.len());
            for lane in &lanes {
                let Ok(FromShard::Ended(e)) = lane.from.recv() else { return Err(gone()) };
                ended.push(*e);
            }
            let stats = sharded::judge_end(ended, &mut held, &mut answers, judge_ref)?;
            Ok((stats, read))
        })();
        // Dropping the senders ends any shard still waiting.
        drop(lanes);
        end
    })?;
    Ok(judge.finish(capture, &stats, read))
}
