//! `--threads N` over a mapped capture: every shard walks every record of
//! the map itself and tracks only the packets of its own flows
//! ([`sharded::shard_of`]); no record crosses threads.
//!
//! One reading thread that hands each shard its packets is a third busy
//! thread beside two shards, and its walk, key and hand-over cost about as
//! much as a shard's tracking: on two cores it left no time to spare. Here
//! the walk and the key are done once per shard instead (cheap next to
//! parsing and tracking a packet: the record header and a few words of the
//! frame), and the pages are mapped once for all and dropped behind the
//! slowest shard ([`SharedWalk`]).
//!
//! Every shard sees every record's timestamp, so each follows the single
//! tracker's sweep schedule itself and, at each sweep, sends what it swept
//! to the calling thread; that thread takes one answer from every shard per
//! sweep, in order, and judges them as the single table would have
//! ([`sharded::judge_sweep`]). A capture that is cut short or corrupt stops
//! every walk at the same record with the same error, after the sweeps
//! before it were judged: the single tracker's findings, then its error.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::{
    sharded::{self, gone, Ended, Shard, Swept},
    *,
};
use crate::replay::pcap::{ReadSummary, SharedWalk};

/// Sweeps a shard may be ahead of the judging: the bound on the ended
/// flows waiting between threads.
const QUEUE: usize = 4;

enum FromShard {
    Swept(Swept, u64),
    /// The capture ended: the table, and what the walk read.
    Ended(Box<Ended>, ReadSummary),
    /// The walk stopped at damage in the file.
    Failed(PcapError),
}

/// Shard `me` of `shards`: walks every record of `walk`, tracks its own,
/// and reports at every sweep of the single tracker's schedule.
fn shard(walk: &SharedWalk<'_>, me: usize, shards: usize, tx: SyncSender<FromShard>, timeout: Duration) {
    let mut table = Shard::new(timeout);
    let (mut now, mut next_sweep) = (0u64, 0u64);
    let mut gone = false;
    let read = walk.walk(me, |r| {
        if gone {
            return;
        }
        if sharded::shard_of(table.keyer(), r.link, r.data, r.orig_len, shards) == me {
            table.push(r.number, r.ts_ns, r.link, r.data, r.orig_len);
        }
        // The single tracker's sweep schedule, after this packet.
        now = now.max(r.ts_ns);
        if now < next_sweep {
            return;
        }
        next_sweep = now.saturating_add(Tracker::SWEEP_INTERVAL_NS);
        if tx.send(FromShard::Swept(table.sweep(now), now)).is_err() {
            // The judging thread gave up: so do the others.
            gone = true;
            walk.stop();
        }
    });
    if gone {
        return;
    }
    let last = match read {
        Ok(read) => FromShard::Ended(Box::new(table.end()), read),
        Err(e) => FromShard::Failed(e),
    };
    let _ = tx.send(last);
}

pub(super) fn judge<F: FnMut(Judged<'_>) -> io::Result<()>>(
    mut judge: Judge<'_, F>,
    capture: &Path,
    walk: &SharedWalk<'_>,
    shards: usize,
) -> Result<Judgement, JudgeError> {
    let timeout = judge.timeout;
    let judge_ref = &mut judge;
    let (stats, read) = std::thread::scope(|scope| {
        let mut from = Vec::with_capacity(shards);
        for me in 0..shards {
            let (tx, rx) = sync_channel::<FromShard>(QUEUE);
            scope.spawn(move || shard(walk, me, shards, tx, timeout));
            from.push(rx);
        }
        let end = gather(&from, judge_ref);
        if end.is_err() {
            // A shard that has not ended yet stops at its next step.
            walk.stop();
        }
        // Dropping the receivers ends any shard still sending.
        drop(from);
        end
    })?;
    Ok(judge.finish(capture, &stats, read))
}

/// Takes one answer from every shard per sweep, in order, and judges them,
/// until every shard has ended.
fn gather<F: FnMut(Judged<'_>) -> io::Result<()>>(
    from: &[Receiver<FromShard>],
    judge: &mut Judge<'_, F>,
) -> Result<(Stats, ReadSummary), JudgeError> {
    let mut held = InOrder::default();
    let mut answers: VecDeque<DnsMessage> = VecDeque::new();
    // A judgement that failed (the findings could not be written): as the
    // single tracker does, the capture is still read to its end, so that
    // damage in the file is the error reported.
    let mut failed: Option<JudgeError> = None;
    loop {
        let (mut swept, mut ended, mut damage) = (Vec::new(), Vec::new(), None);
        let mut now = 0;
        for rx in from {
            match rx.recv().map_err(|_| gone())? {
                FromShard::Swept(s, at) => {
                    swept.push(s);
                    now = at;
                }
                FromShard::Ended(e, read) => ended.push((*e, read)),
                // Every shard stops at the same record: shard 0's error.
                FromShard::Failed(e) => {
                    damage.get_or_insert(e);
                }
            }
        }
        if let Some(e) = damage {
            return Err(e.into());
        }
        if ended.len() == from.len() {
            if let Some(e) = failed {
                return Err(e);
            }
            let read = ended[0].1;
            let stats =
                sharded::judge_end(ended.into_iter().map(|(e, _)| e), &mut held, &mut answers, judge)?;
            return Ok((stats, read));
        }
        if swept.len() != from.len() {
            // The shards walked different records: not one capture.
            return Err(gone());
        }
        if failed.is_none() {
            if let Err(e) = sharded::judge_sweep(swept, now, &mut held, &mut answers, judge) {
                failed = Some(e);
            }
        }
    }
}
