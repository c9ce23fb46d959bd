//! What both sharded replays ([`super::walk`], [`super::route`]) share:
//! which shard a packet belongs to, what a shard hands back at a sweep and
//! at the end, and how that is judged as the single table would have
//! judged it.
//!
//! Every packet of a flow must meet the same table, in capture order, so a
//! packet belongs to the shard of its flow key's hash (the quoted flow's for
//! an ICMP error). What else the single table's result depends on is kept
//! global: the whole capture's clock decides when every shard sweeps for
//! ended flows (the moment a single tracker would have, with the same
//! "now"), and each sweep's ended flows, DNS answers (merged back into
//! capture order by packet number) and oldest open flow are gathered from
//! every shard and judged exactly as the single table would have judged
//! them. Counters are summed at the end.

use std::hash::BuildHasher;

use monitor_common::{flow::make_key, proto};

use super::*;
use crate::replay::track::LinkKind;

/// The shard of `shards` that tracks a frame: the one its flow key hashes
/// to. A frame counted into no flow is only counted, by reason, by shard 0,
/// so that it is counted once. `keyer` parses the frames that are not the
/// common kind.
pub(super) fn shard_of(
    keyer: &mut Tracker,
    link: LinkKind,
    frame: &[u8],
    orig_len: u64,
    shards: usize,
) -> usize {
    let key = match link {
        LinkKind::Ethernet => fast_key(frame),
        _ => None,
    }
    .or_else(|| keyer.flow_key_of(link, frame, orig_len));
    match key {
        Some(k) => (rustc_hash::FxBuildHasher.hash_one(k) % shards as u64) as usize,
        None => 0,
    }
}

/// The key [`Tracker::flow_key_of`] gives an Ethernet frame carrying
/// TCP or UDP over IPv4 (not a later fragment) or over IPv6 without
/// extension headers, read at fixed offsets; `None` for any other frame.
/// A frame the kernel parser would count into no flow may get a key
/// here: it is only counted, by whichever shard it meets.
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

/// One shard's flow table, swept only when the whole capture's clock says
/// so, and the DNS answers it saw since its last report.
pub(super) struct Shard {
    tracker: Tracker,
    dns: Vec<(u64, DnsMessage)>,
}

impl Shard {
    /// A shard judging with the answer timeout `timeout`.
    pub(super) fn new(timeout: Duration) -> Shard {
        let mut tracker = Tracker::new();
        tracker.keep_dns();
        tracker.expire_idle_when_told(Expiry::live(timeout));
        Shard { tracker, dns: Vec::new() }
    }

    /// The parser that finds the keys of the frames that are not the common kind.
    pub(super) fn keyer(&mut self) -> &mut Tracker {
        &mut self.tracker
    }

    /// Tracks packet `number` of the capture.
    pub(super) fn push(&mut self, number: u64, ts_ns: u64, link: LinkKind, frame: &[u8], orig_len: u64) {
        self.tracker.push_captured(ts_ns, link, frame, orig_len);
        if self.tracker.has_dns() {
            self.dns.extend(self.tracker.take_dns().into_iter().map(|m| (number, m)));
        }
    }

    /// Sweeps at the capture's time `now`: what the single table would hand
    /// over there, for this shard's flows.
    pub(super) fn sweep(&mut self, now: u64) -> Swept {
        self.tracker.sweep_at(now);
        Swept {
            ended: self.tracker.take_ended(),
            dns: std::mem::take(&mut self.dns),
            oldest: self.tracker.oldest_start_ns(),
        }
    }

    /// The table at the end of the capture.
    pub(super) fn end(&mut self) -> Ended {
        Ended {
            entries: self.tracker.entries().map(|(k, v)| (*k, *v)).collect(),
            dns: std::mem::take(&mut self.dns),
            stats: *self.tracker.stats(),
            now_ns: self.tracker.now_ns(),
        }
    }
}

/// A shard's answer to a sweep.
pub(super) struct Swept {
    ended: Vec<(FlowKey, FlowValue)>,
    /// DNS answers since the last report, with their packet numbers.
    dns: Vec<(u64, DnsMessage)>,
    oldest: Option<u64>,
}

/// A shard's table at the end of the capture.
pub(super) struct Ended {
    entries: Vec<(FlowKey, FlowValue)>,
    dns: Vec<(u64, DnsMessage)>,
    stats: Stats,
    now_ns: u64,
}

/// Judges every shard's answer to the sweep at `now` as the single table's
/// sweep there: its ended flows, once every flow that started before them
/// has ended, with the DNS answers sent before each started.
pub(super) fn judge_sweep<F: FnMut(Judged<'_>) -> io::Result<()>>(
    swept: impl IntoIterator<Item = Swept>,
    now: u64,
    held: &mut InOrder,
    answers: &mut VecDeque<DnsMessage>,
    judge: &mut Judge<'_, F>,
) -> Result<(), JudgeError> {
    let mut oldest: Option<u64> = None;
    let mut ended = Vec::new();
    let mut dns = Vec::new();
    for s in swept {
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

/// Judges every shard's table at the end of the capture, aged to its last
/// packet, and sums the shards' counters.
pub(super) fn judge_end<F: FnMut(Judged<'_>) -> io::Result<()>>(
    ended: impl IntoIterator<Item = Ended>,
    held: &mut InOrder,
    answers: &mut VecDeque<DnsMessage>,
    judge: &mut Judge<'_, F>,
) -> Result<Stats, JudgeError> {
    let mut stats = Stats::default();
    let mut dns = Vec::new();
    let mut last = 0;
    for e in ended {
        held.add(e.entries);
        dns.extend(e.dns);
        stats.merge(&e.stats);
        last = last.max(e.now_ns);
    }
    answers.extend(merged(dns));
    judge.judge(held.ready(None), answers, last)?;
    Ok(stats)
}

/// The error of a replay whose shard stopped without answering (it panicked).
pub(super) fn gone() -> JudgeError {
    JudgeError::Write(io::Error::other("a replay shard stopped"))
}

/// The shards' DNS answers in capture order (a stable sort keeps a
/// packet's own answers in order).
fn merged(mut dns: Vec<(u64, DnsMessage)>) -> impl Iterator<Item = DnsMessage> {
    dns.sort_by_key(|(n, _)| *n);
    dns.into_iter().map(|(_, m)| m)
}
