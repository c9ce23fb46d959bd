//! The typed stream of flows that the rest of the program consumes.
//!
//! One task owns the [`Kernel`]: it drains the ring buffer as soon as it is
//! readable (new flows and first answers, within milliseconds), and reads the
//! whole table at every interval (counters, ageing, expiry), a chunk at a
//! time, handing each chunk over as it is read and draining the rings
//! between chunks. It follows the
//! link events too: an interface to watch that appears (or is re-created)
//! is attached to, one that goes away is forgotten. On shutdown it
//! detaches every program, then reads the table once more and sends it.
//!
//! A flow the kernel evicted from a full table before it was read again is
//! not lost: the stream knows every flow in the table ([`super::known`]),
//! counts each eviction, and hands the evicted flows whose verdict can still
//! change (last known from a ring event, or awaiting an answer) to the
//! consumer with the next table, as last known, judged with that read's
//! clock. Losses of any kind are logged, at most once every
//! [`LOSS_LOG_EVERY`].

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use monitor_common::{event_kind, DnsEvent, FlowEvent, FlowKey, FlowValue, Stat};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore},
    task::JoinHandle,
};

use super::{
    known::{Evicted, Known},
    links::LinkWatch,
    listening::Listening,
    table, Kernel, KernelError, KernelStats, LinkOutcome,
};
use crate::{
    counters::{Counters, Emit, Family},
    dns::DnsMessage,
    flow::{Clock, Flow, FlowMap, FlowState},
};

#[derive(Debug)]
pub enum FlowUpdate {
    /// A new flow, its first answer (SYN-ACK or RST) or an ICMP error
    /// about it: sent as soon as the kernel reports it.
    Event(Flow),
    /// A chunk of a table read: a read, at every interval and once more at
    /// shutdown, is its chunks in order then its [`TableEnd`]. Flow and DNS
    /// events the kernel reported meanwhile come between the chunks.
    Chunk(Chunk),
    /// The end of a table read (boxed: every slot of the channel is as
    /// large as the largest variant).
    TableEnd(Box<TableEnd>),
    /// A payload sent from port 53 (a DNS answer, or a segment of one over
    /// TCP). Sent before the flow events read after it, so that an answer
    /// reaches the consumer before the connection it led to.
    Dns(DnsMessage),
}

/// `Clock` frozen at the moment of the read, so that flows made from the
/// table later are judged as they stood when it was read.
#[derive(Clone, Copy, Debug)]
pub(super) struct ReadClock {
    pub(super) clock: crate::kernel::KernelClock,
    pub(super) now: u64,
}

impl Clock for ReadClock {
    fn to_system(&self, raw_ns: u64) -> std::time::SystemTime {
        self.clock.to_system(raw_ns)
    }
    fn now_raw(&self) -> u64 {
        self.now
    }
}

/// Up to [`table::READ_CHUNK`] entries of a table read: the user-space copy
/// of the table is never larger, whatever its size (at a million flows the
/// whole table was a 130 MiB block, and its read a stall of hundreds of
/// milliseconds for the ring's events).
#[derive(Debug)]
pub struct Chunk {
    /// The entries as read; [`Chunk::flows`] makes the flows one at a time
    /// (a Flow is 200 bytes, an entry 128).
    entries: Vec<(FlowKey, FlowValue)>,
    clock: ReadClock,
    hint: Arc<Listening>,
    answer_timeout: Duration,
    /// Held until the consumer drops the chunk: at most
    /// [`CHUNKS_IN_FLIGHT`] are read ahead of a slow consumer.
    _in_flight: OwnedSemaphorePermit,
}

impl Chunk {
    /// The flows of the chunk, as they stood when it was read.
    pub fn flows(&self) -> impl Iterator<Item = Flow> + '_ {
        self.entries
            .iter()
            .filter_map(|(k, v)| Flow::from_entry(k, v, &self.clock, &*self.hint, self.answer_timeout))
    }
}

/// The end of a table read: what it found gone, and the counters.
#[derive(Debug)]
pub struct TableEnd {
    /// Flows known before this read and absent from it (the kernel evicted
    /// them from a full table), as last known, where that can change their
    /// verdict (see [`super::known`]).
    evicted: Vec<(FlowKey, FlowValue)>,
    /// How many flows the kernel evicted since the last read, handed over
    /// in `evicted` or not.
    pub evicted_count: usize,
    clock: ReadClock,
    hint: Arc<Listening>,
    answer_timeout: Duration,
    pub kernel: KernelStats,
    pub user: UserStats,
    /// The last table, read at shutdown.
    pub last: bool,
    /// How long the read took, from its start to its end (its chunks
    /// waited for the consumer meanwhile, so this is the whole pipeline's).
    pub took: Duration,
    /// The interval between reads in force after this one ([`Pace`]).
    pub interval: Duration,
    /// Held from the start of the read until the consumer drops its end:
    /// meanwhile no other read starts, so a slow consumer is never handed
    /// two reads at once.
    _in_flight: OwnedSemaphorePermit,
}

impl TableEnd {
    /// The flows the kernel evicted since the last read whose verdict can
    /// still change (last known from a ring event, or awaiting an answer at
    /// the last read), as last known and judged with the clock of the end
    /// of this read (a SYN older than the answer timeout is `unanswered`).
    /// They are in no table: judge them once. The other evicted flows were
    /// judged from the last read as they stand: they are only counted
    /// ([`TableEnd::evicted_count`]). A flow evicted while still awaiting an
    /// answer is handed over again with every read until the answer timeout
    /// has passed.
    pub fn evicted(&self) -> impl Iterator<Item = Flow> + '_ {
        self.evicted
            .iter()
            .filter_map(|(k, v)| Flow::from_entry(k, v, &self.clock, &*self.hint, self.answer_timeout))
    }

    /// The loss counters as of this read.
    pub fn losses(&self) -> Losses {
        Losses::from_stats(&self.kernel, &self.user)
    }
}

/// Everything lost on the way from the kernel to the judge, as totals since
/// the start: in `monitor report` (its `losses`), the exit summary and the
/// WARN line [`LossLog`] writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Losses {
    /// Flow events the kernel could not put in the full ring buffer (the
    /// flows still appear in the next table read).
    pub ringbuf_full: u64,
    /// DNS answers the kernel could not put in the full DNS ring buffer.
    pub dns_ring_full: u64,
    /// Flow events user space did not forward: the consumer was behind.
    pub events_dropped: u64,
    /// DNS events user space did not forward: the consumer was behind.
    pub dns_events_dropped: u64,
    /// Flows the kernel evicted from a full table (judged as last known).
    pub flows_evicted: u64,
    /// New flows the kernel could not insert into the table.
    pub flow_map_full: u64,
    /// Table reads skipped because the consumer had not finished the last one.
    pub tables_skipped: u64,
}

impl Losses {
    pub fn from_stats(kernel: &KernelStats, user: &UserStats) -> Losses {
        Losses {
            ringbuf_full: kernel.get(Stat::RingBufFull),
            dns_ring_full: kernel.get(Stat::DnsRingFull),
            events_dropped: user.events_dropped,
            dns_events_dropped: user.dns_events_dropped,
            flows_evicted: user.flows_evicted,
            flow_map_full: kernel.get(Stat::FlowMapFull),
            tables_skipped: user.tables_skipped,
        }
    }

    /// Every counter by name, with what to do when it grows.
    pub fn fields(&self) -> [(&'static str, u64, &'static str); 7] {
        const TABLE: &str = "raise --max-flows";
        const BEHIND: &str = "the agent is behind: give it more CPU or raise --interval";
        [
            ("flows_evicted", self.flows_evicted, TABLE),
            ("flow_map_full", self.flow_map_full, TABLE),
            ("ringbuf_full", self.ringbuf_full, BEHIND),
            ("events_dropped", self.events_dropped, BEHIND),
            ("tables_skipped", self.tables_skipped, BEHIND),
            ("dns_ring_full", self.dns_ring_full, BEHIND),
            ("dns_events_dropped", self.dns_events_dropped, BEHIND),
        ]
    }

    pub fn is_zero(&self) -> bool {
        self.fields().iter().all(|(_, n, _)| *n == 0)
    }
}

impl fmt::Display for Losses {
    /// `flows_evicted=5120 flow_map_full=0 ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, n, _)) in self.fields().iter().enumerate() {
            write!(f, "{}{name}={n}", if i == 0 { "" } else { " " })?;
        }
        Ok(())
    }
}

/// A read takes at most this share of the time and of one core: the
/// interval between reads is at least this many times what the last one
/// took, in wall time and in the process's CPU time.
pub const READ_DUTY: u32 = 8;

/// The longest interval [`Pace`] sets (unless `--interval` is longer).
pub const MAX_INTERVAL: Duration = Duration::from_secs(10);

/// How often the table is read: every `--interval`, or, where the last read
/// took more than an eighth of that, [`READ_DUTY`] times what it took, up to
/// [`MAX_INTERVAL`]. What it took is the longer of its wall time and the CPU
/// time the whole process used meanwhile: the reader and the judge work on
/// a read at once, on two threads, so pacing on the reader's wall time alone
/// let reads take a quarter of a core and more (29-33 % at a million flows
/// on a 2-core VM). A read of a million flows costs some hundreds of
/// milliseconds of CPU in each of the reader and the judge, more on a busy
/// machine, so at 1 s it alone would take most of a core.
///
/// What this delays (docs/deploy.md, "Table reads"): everything that comes
/// from table reads, by up to the interval in force: a SYN timing out to
/// `unanswered`, state changes (answered, refused, closed), the idle and
/// closed expiry, the counters in the metrics, evictions noticed, and flows
/// whose ring event was lost. Alerts on a flow's first packet come from the
/// ring and are not delayed.
#[derive(Debug)]
struct Pace {
    base: Duration,
    max: Duration,
    /// The interval in force.
    interval: Duration,
    /// The interval in the last line logged.
    logged: Duration,
}

impl Pace {
    fn new(base: Duration) -> Pace {
        Pace { base, max: base.max(MAX_INTERVAL), interval: base, logged: base }
    }

    /// Sets the interval after a read of `flows` that took `took` of wall
    /// time and `cpu` of the process's CPU time; returns a line to log when
    /// the interval has moved by half or more since the last line (or is
    /// back at `--interval`).
    fn after_read(&mut self, took: Duration, cpu: Duration, flows: usize) -> Option<String> {
        self.interval = (took.max(cpu) * READ_DUTY).clamp(self.base, self.max);
        let (now, was) = (self.interval.as_secs_f64(), self.logged.as_secs_f64());
        let moved =
            now >= was * 1.5 || now <= was / 1.5 || (self.interval == self.base && self.logged != self.base);
        if !moved {
            return None;
        }
        self.logged = self.interval;
        Some(format!(
            "table reads every {:.1}s (--interval {:.1}s): the last read of {flows} flows took {} ms, {} ms of CPU",
            now,
            self.base.as_secs_f64(),
            took.as_millis(),
            cpu.as_millis()
        ))
    }
}

/// The CPU time the process has used, all its threads: the reader, the
/// judge, and whatever else ran during a read. Zero if the clock cannot be
/// read (then reads are paced on their wall time alone).
fn process_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the call to write.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Chunks of a read handed to the consumer and not yet dropped, at most: the
/// read waits for the consumer beyond that.
pub const CHUNKS_IN_FLIGHT: usize = 2;

/// Evicted flows awaiting an answer held at most (past it, they are handed
/// over once, as awaiting).
const WAITING_MAX: usize = 65_536;

/// At most one loss line this often; growth in between is added up into it.
pub const LOSS_LOG_EVERY: Duration = Duration::from_secs(10);

/// Turns loss totals, given at every table read, into rate-limited WARN
/// lines: the first growth is logged at once, further growth within
/// [`LOSS_LOG_EVERY`] of a line is held and logged, added up, in one line
/// after.
#[derive(Debug, Default)]
pub struct LossLog {
    /// The totals in the last line.
    logged: Losses,
    at: Option<Instant>,
}

impl LossLog {
    /// The line to log for `totals` at `now`, if one is due. `last`: the
    /// final read, where what is held is logged whatever the time.
    pub fn observe(&mut self, totals: Losses, now: Instant, last: bool) -> Option<String> {
        let old = self.logged.fields();
        let new = totals.fields();
        if old.iter().zip(&new).all(|(o, n)| n.1 <= o.1) {
            return None;
        }
        if !last && self.at.is_some_and(|t| now.duration_since(t) < LOSS_LOG_EVERY) {
            return None;
        }
        let since = match self.at {
            Some(t) => format!("in the last {}s", now.duration_since(t).as_secs()),
            None => "since the start".to_string(),
        };
        let mut grew = Vec::new();
        let mut advice: Vec<&str> = Vec::new();
        for (o, n) in old.iter().zip(&new) {
            if n.1 > o.1 {
                grew.push(format!("{} +{} (total {})", n.0, n.1 - o.1, n.1));
                if !advice.contains(&n.2) {
                    advice.push(n.2);
                }
            }
        }
        self.logged = totals;
        self.at = Some(now);
        Some(format!("losses {since}: {}; {}", grew.join(", "), advice.join("; ")))
    }
}

/// What user space itself counted: nothing is lost without a number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserStats {
    /// Ring-buffer events received.
    pub events: u64,
    /// Events not forwarded because the consumer was behind; the flows
    /// still appear in the next table.
    pub events_dropped: u64,
    /// Malformed ring-buffer records (wrong size).
    pub events_malformed: u64,
    /// Flows that left the table without being expired by us: the LRU map
    /// was full and the kernel evicted them. Raise --max-flows.
    pub flows_evicted: u64,
    /// Flows removed by us after --idle-timeout.
    pub flows_expired: u64,
    /// DNS events received from the kernel.
    pub dns_events: u64,
    /// DNS events not forwarded because the consumer was behind.
    pub dns_events_dropped: u64,
    /// Malformed DNS events (wrong size or kind, length past the payload).
    pub dns_events_malformed: u64,
    /// Table reads completed (the interval ones and the last): their rate
    /// is the pace in force, and a bench can wait for whole reads.
    pub tables_read: u64,
    /// Interval reads skipped because the consumer had not finished the
    /// last one (it is behind; events keep flowing meanwhile).
    pub tables_skipped: u64,
    /// Interfaces to watch that appeared while running and could not be
    /// attached to (each is logged).
    pub attach_failures: u64,
}

/// `monitor_flow_reader_total{counter}`.
pub static FLOW_READER: Family = Family {
    name: "flow_reader",
    help: "Ring-buffer events, table reads and interface attachments of the flow reader in user space, by counter (docs/deploy.md).",
    label: "counter",
};

impl Counters for UserStats {
    fn counters(&self, emit: &mut Emit<'_>) {
        crate::emit_fields!(
            emit,
            &FLOW_READER,
            UserStats {
                events,
                events_dropped,
                events_malformed,
                flows_evicted,
                flows_expired,
                dns_events,
                dns_events_dropped,
                dns_events_malformed,
                tables_read,
                tables_skipped,
                attach_failures,
            } = *self
        );
    }
}

#[derive(Clone, Debug)]
pub struct StreamOptions {
    pub interval: Duration,
    /// Flows idle this long are removed from the table after being reported.
    pub idle_timeout: Duration,
    /// Closed, refused or failed flows are removed after this much idleness.
    pub closed_timeout: Duration,
    /// How long a client waits for an answer before a flow is `unanswered`.
    pub answer_timeout: Duration,
    /// Capacity of the channel to the consumer.
    pub capacity: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(120),
            closed_timeout: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(3),
            capacity: 4096,
        }
    }
}

/// The receiving end of the stream, and the task that feeds it.
pub type Stream = (mpsc::Receiver<FlowUpdate>, JoinHandle<Result<(), KernelError>>);

/// Starts the stream. Set `shutdown` to true to end it; the last message is
/// a `TableEnd` with `last: true`, then the channel closes.
pub fn spawn(
    mut kernel: Kernel,
    opts: StreamOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<Stream, KernelError> {
    let events = kernel.take_events()?;
    // SAFETY: the ring buffer owns its fd and the AsyncFd owns the ring
    // buffer, so the fd stays open for as long as it is registered.
    let events = unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }
        .map_err(|e| KernelError::Walk(e.into()))?;
    let dns = kernel.take_dns_events()?;
    // SAFETY: as above.
    let dns = unsafe { AsyncFd::register_with_interest(dns, tokio::io::Interest::READABLE) }
        .map_err(|e| KernelError::Walk(e.into()))?;
    let links = LinkWatch::open().map_err(KernelError::LinkWatch)?;
    let (tx, rx) = mpsc::channel(opts.capacity);
    let task = tokio::spawn(run(kernel, events, dns, links, opts, tx, shutdown));
    Ok((rx, task))
}

struct State {
    kernel: Kernel,
    opts: StreamOptions,
    hint: Arc<Listening>,
    known: Known,
    /// Evicted flows that were still awaiting an answer: handed over again
    /// with every table until the answer timeout has passed, so that a SYN
    /// evicted early still comes out `unanswered` (and each read keeps the
    /// consumer's memory of the flow alive meanwhile).
    waiting: FlowMap<FlowValue>,
    losses: LossLog,
    user: UserStats,
    /// One permit: held by a read until the consumer drops its end.
    reading: Arc<Semaphore>,
    /// [`CHUNKS_IN_FLIGHT`] permits, one held by each chunk the consumer has.
    chunks: Arc<Semaphore>,
    pace: Pace,
    /// When the next interval read is due (the first is at once).
    next_read: Instant,
}

/// The two rings, drained between the chunks of a read too.
struct Rings<'a> {
    events: &'a mut RingBuf<MapData>,
    dns: &'a mut RingBuf<MapData>,
}

async fn run(
    kernel: Kernel,
    mut events: AsyncFd<RingBuf<MapData>>,
    mut dns: AsyncFd<RingBuf<MapData>>,
    mut links: LinkWatch,
    opts: StreamOptions,
    tx: mpsc::Sender<FlowUpdate>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), KernelError> {
    let kernel_capacity = kernel.capacity() as usize;
    let mut st = State {
        kernel,
        opts: opts.clone(),
        hint: Arc::new(Listening::read()),
        known: Known::new(kernel_capacity),
        waiting: FlowMap::default(),
        losses: LossLog::default(),
        user: UserStats::default(),
        reading: Arc::new(Semaphore::new(1)),
        chunks: Arc::new(Semaphore::new(CHUNKS_IN_FLIGHT)),
        pace: Pace::new(opts.interval),
        next_read: Instant::now(),
    };
    // Subscribed now: an interface that came since the kernel listed them
    // at load is caught here, every later one by its event.
    let outcome = st.kernel.resync();
    st.count(outcome);
    loop {
        tokio::select! {
            biased;
            guard = dns.readable_mut() => {
                let mut guard = guard.map_err(KernelError::Walk)?;
                drain_dns(&mut st, guard.get_inner_mut(), &tx);
                guard.clear_ready();
            }
            guard = events.readable_mut() => {
                let mut guard = guard.map_err(KernelError::Walk)?;
                // Answers already queued go first: a connection's lookup
                // must be known before the connection is judged.
                drain_dns(&mut st, dns.get_mut(), &tx);
                let rings = Rings { events: guard.get_inner_mut(), dns: dns.get_mut() };
                if !drain_all_events(&mut st, rings, &tx).await? {
                    return Ok(()); // the consumer is gone
                }
                guard.clear_ready();
            }
            changes = links.next() => {
                for ev in changes.map_err(KernelError::LinkWatch)? {
                    let outcome = st.kernel.link_event(&ev);
                    st.count(outcome);
                }
            }
            _ = tokio::time::sleep_until(st.next_read.into()) => {
                let Ok(permit) = st.reading.clone().try_acquire_owned() else {
                    st.user.tables_skipped += 1;
                    st.next_read = Instant::now() + st.pace.interval;
                    continue;
                };
                let rings = Rings { events: events.get_mut(), dns: dns.get_mut() };
                if !st.send_table(permit, rings, &tx, false).await? {
                    return Ok(()); // the consumer is gone
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    // The last table is read with the programs detached: nothing changes
    // under the read, so it holds every packet the kernel counted and its
    // counters agree with it. Events still queued belong in it anyway.
    st.kernel.detach();
    drain_dns(&mut st, dns.get_mut(), &tx);
    if !drain_all_events(&mut st, Rings { events: events.get_mut(), dns: dns.get_mut() }, &tx).await? {
        return Ok(());
    }
    let Ok(permit) = st.reading.clone().acquire_owned().await else { return Ok(()) };
    st.send_table(permit, Rings { events: events.get_mut(), dns: dns.get_mut() }, &tx, true).await?;
    Ok(())
}

/// Drains the flow events until the ring is empty. Whenever the known flows
/// are full, a table is read (waiting for the consumer to finish the last,
/// if it has not), which makes room, before draining on: the events
/// meanwhile wait in the ring, whose overflow the kernel counts. False if
/// the consumer is gone.
async fn drain_all_events(
    st: &mut State,
    rings: Rings<'_>,
    tx: &mpsc::Sender<FlowUpdate>,
) -> Result<bool, KernelError> {
    while drain_events(st, rings.events, tx) {
        let Ok(permit) = st.reading.clone().acquire_owned().await else { return Ok(false) };
        log::debug!("{} known flows: reading the table before the interval", st.known.len());
        if !st
            .send_table(permit, Rings { events: &mut *rings.events, dns: &mut *rings.dns }, tx, false)
            .await?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Drains the flow events until the ring is empty (false) or the known
/// flows are full (true: the rest wait for a read).
fn drain_events(st: &mut State, ring: &mut RingBuf<MapData>, tx: &mpsc::Sender<FlowUpdate>) -> bool {
    let clock = st.kernel.clock();
    loop {
        if st.known.is_full() {
            return true;
        }
        let Some(item) = ring.next() else { return false };
        st.user.events += 1;
        if item.len() != std::mem::size_of::<FlowEvent>() {
            st.user.events_malformed += 1;
            continue;
        }
        // SAFETY: the length matches and FlowEvent is valid for any bytes.
        let ev: FlowEvent = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const FlowEvent) };
        if !matches!(ev.header.kind, event_kind::NEW_FLOW | event_kind::TCP_ANSWER | event_kind::ICMP_ERROR) {
            st.user.events_malformed += 1;
            continue;
        }
        st.known.event(ev.key, ev.value);
        let Some(flow) = Flow::from_entry(&ev.key, &ev.value, &clock, &*st.hint, st.opts.answer_timeout)
        else {
            continue;
        };
        if tx.try_send(FlowUpdate::Event(flow)).is_err() {
            st.user.events_dropped += 1;
        }
    }
}

fn drain_dns(st: &mut State, ring: &mut RingBuf<MapData>, tx: &mpsc::Sender<FlowUpdate>) {
    while let Some(item) = ring.next() {
        st.user.dns_events += 1;
        if item.len() != std::mem::size_of::<DnsEvent>() {
            st.user.dns_events_malformed += 1;
            continue;
        }
        // SAFETY: the length matches and DnsEvent is valid for any bytes.
        let ev: DnsEvent = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const DnsEvent) };
        let len = ev.len as usize;
        if ev.header.kind != event_kind::DNS || len > ev.payload.len() {
            st.user.dns_events_malformed += 1;
            continue;
        }
        let msg = DnsMessage {
            ts_ns: ev.header.ts_ns,
            key: ev.key,
            sender: ev.sender,
            tcp_seq: ev.tcp_seq,
            orig_len: ev.orig_len,
            payload: ev.payload[..len].to_vec(),
        };
        if tx.try_send(FlowUpdate::Dns(msg)).is_err() {
            st.user.dns_events_dropped += 1;
        }
    }
}

impl State {
    fn count(&mut self, outcome: LinkOutcome) {
        self.user.attach_failures += u64::from(outcome.failed);
    }

    /// The evicted flows to hand over with this read: those just evicted,
    /// and those evicted earlier that were still awaiting an answer (unless
    /// the kernel tracks them again). Those still awaiting now wait on.
    fn carry_waiting(
        &mut self,
        Evicted { flows: fresh, .. }: Evicted,
        clock: &ReadClock,
        last: bool,
    ) -> Vec<(FlowKey, FlowValue)> {
        // A flow evicted again since it began to wait comes as last known.
        for (k, _) in &fresh {
            self.waiting.remove(k);
        }
        // Allocated once, to its final size at most (grown by doubling, it
        // was the largest allocation of a read under a flood).
        let mut evicted = fresh;
        evicted.reserve_exact(self.waiting.len());
        evicted.extend(self.waiting.drain().filter(|(k, _)| !self.known.contains(k)));
        if !last {
            for (k, v) in &evicted {
                if self.waiting.len() >= WAITING_MAX {
                    break;
                }
                let state = Flow::state_of(k, v, clock.now, &*self.hint, self.opts.answer_timeout);
                if state == Some(FlowState::Awaiting) {
                    self.waiting.insert(*k, *v);
                }
            }
        }
        evicted
    }

    /// The clock of this moment, frozen.
    fn clock_now(&self) -> ReadClock {
        let clock = self.kernel.clock();
        ReadClock { clock, now: clock.now_raw() }
    }

    /// Reads the table a chunk at a time and sends each chunk, then the
    /// end of the read; between chunks, drains the rings (a read of a
    /// million flows takes long enough to delay a new flow's alert
    /// otherwise). False if the consumer is gone.
    async fn send_table(
        &mut self,
        reading: OwnedSemaphorePermit,
        rings: Rings<'_>,
        tx: &mpsc::Sender<FlowUpdate>,
        last: bool,
    ) -> Result<bool, KernelError> {
        let started = Instant::now();
        let cpu_started = process_cpu();
        self.hint = Arc::new(Listening::read());
        self.known.begin_read();
        let mut reader = table::Reader::default();
        let mut expire = Vec::new();
        let mut flows_read = 0;
        while !reader.is_done() {
            let Ok(permit) = self.chunks.clone().acquire_owned().await else { return Ok(false) };
            let mut entries = Vec::with_capacity(table::READ_CHUNK);
            self.kernel.read_chunk(&mut reader, &mut entries)?;
            let clock = self.clock_now();
            self.chunk_read(&entries, clock.now, &mut expire);
            flows_read += entries.len();
            if !entries.is_empty() {
                let chunk = Chunk {
                    entries,
                    clock,
                    hint: Arc::clone(&self.hint),
                    answer_timeout: self.opts.answer_timeout,
                    _in_flight: permit,
                };
                if tx.send(FlowUpdate::Chunk(chunk)).await.is_err() {
                    return Ok(false);
                }
            }
            // What the kernel reported meanwhile; once the known flows are
            // full, the flow events wait for the end of the read.
            drain_dns(self, rings.dns, tx);
            drain_events(self, rings.events, tx);
        }
        let clock = self.clock_now();

        // Evicted: known before the read and not seen by it.
        let fresh = self.known.end_read();
        let evicted_count = fresh.count;
        self.user.flows_evicted += fresh.count as u64;
        let evicted = self.carry_waiting(fresh, &clock, last);

        if !last && !expire.is_empty() {
            // Those the LRU evicted since the read were not expired by us.
            let gone = self.kernel.remove(&expire)?;
            self.user.flows_expired += (expire.len() - gone) as u64;
            self.user.flows_evicted += gone as u64;
            for k in &expire {
                self.known.remove(k);
            }
        }
        let took = started.elapsed();
        let cpu = process_cpu().saturating_sub(cpu_started);
        self.user.tables_read += 1;
        log::debug!("read {flows_read} flows in {took:?}, {cpu:?} of CPU");
        if let Some(line) = self.pace.after_read(took, cpu, flows_read) {
            log::info!("{line}");
        }
        self.next_read = started + self.pace.interval;
        let kernel = self.kernel.stats()?;
        let losses = Losses::from_stats(&kernel, &self.user);
        if let Some(line) = self.losses.observe(losses, Instant::now(), last) {
            log::warn!("{line}");
        }
        let end = TableEnd {
            evicted,
            evicted_count,
            clock,
            hint: Arc::clone(&self.hint),
            answer_timeout: self.opts.answer_timeout,
            kernel,
            user: self.user,
            last,
            took,
            interval: self.pace.interval,
            _in_flight: reading,
        };
        Ok(tx.send(FlowUpdate::TableEnd(Box::new(end))).await.is_ok())
    }

    /// What a read learns from a chunk: the known flows (those awaiting an
    /// answer keep their value: they may still time out, evicted or not),
    /// and the flows to expire.
    fn chunk_read(&mut self, entries: &[(FlowKey, FlowValue)], now: u64, expire: &mut Vec<FlowKey>) {
        for (key, value) in entries {
            // Only the state: the consumer builds each flow, once.
            let Some(state) = Flow::state_of(key, value, now, &*self.hint, self.opts.answer_timeout) else {
                self.known.seen(key, value, false);
                continue;
            };
            self.known.seen(key, value, state == FlowState::Awaiting);
            let idle = Duration::from_nanos(now.saturating_sub(value.last_seen_ns));
            let finished = matches!(state, FlowState::Closed) || state.is_failure();
            if idle >= self.opts.idle_timeout || (finished && idle >= self.opts.closed_timeout) {
                expire.push(*key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_spaced_by_eight_times_what_they_take_within_the_bounds() {
        let ms = Duration::from_millis;
        let mut pace = Pace::new(ms(1000));
        assert_eq!(pace.after_read(ms(50), ms(60), 1000), None, "a short read: --interval");
        assert_eq!(pace.interval, ms(1000));
        let line = pace.after_read(ms(400), ms(300), 1_000_000).expect("the interval grew: logged");
        assert_eq!(pace.interval, ms(3200), "the wall time, the longer");
        assert!(
            line.contains("every 3.2s") && line.contains("1000000 flows took 400 ms, 300 ms of CPU"),
            "{line}"
        );
        assert_eq!(pace.after_read(ms(450), ms(100), 1_000_000), None, "a small move is not logged");
        assert_eq!(pace.interval, ms(3600), "but it is in force");
        pace.after_read(ms(5000), ms(10), 1_000_000);
        assert_eq!(pace.interval, MAX_INTERVAL, "bounded");
        assert!(pace.after_read(ms(10), ms(10), 10).is_some(), "back at --interval: logged");
        assert_eq!(pace.interval, ms(1000));
        // A longer --interval than the bound is its own bound.
        let mut slow = Pace::new(Duration::from_secs(30));
        slow.after_read(Duration::from_secs(5), Duration::from_secs(5), 1);
        assert_eq!(slow.interval, Duration::from_secs(30));
    }

    #[test]
    fn reads_judged_on_another_thread_are_paced_on_the_cpu_of_both() {
        // The reader took 400 ms while the judge worked beside it: 900 ms
        // of the process's CPU. At 8 times the wall time the read would take
        // 900 / 3200 = 28 % of a core; at 8 times its CPU, an eighth.
        let ms = Duration::from_millis;
        let mut pace = Pace::new(ms(1000));
        pace.after_read(ms(400), ms(900), 1_000_000);
        assert_eq!(pace.interval, ms(7200));
    }

    #[test]
    fn the_process_cpu_clock_counts_this_threads_work() {
        // Spins until the clock has moved by 20 ms: under load that takes
        // longer, never forever, unless the clock does not count this work.
        let before = process_cpu();
        let (t, mut x) = (Instant::now(), 0u64);
        while process_cpu().saturating_sub(before) < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            assert!(t.elapsed() < Duration::from_secs(30), "the process CPU clock did not move");
        }
    }

    #[test]
    fn losses_are_logged_at_once_then_at_most_every_ten_seconds_added_up() {
        let mut log = LossLog::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(log.observe(Losses::default(), at(0), false), None, "nothing lost: no line");
        let mut l = Losses { flows_evicted: 5, ..Losses::default() };
        let first = log.observe(l, at(1), false).expect("the first growth is logged at once");
        assert!(first.contains("flows_evicted +5 (total 5)"), "{first}");
        assert!(first.contains("--max-flows"), "{first}");
        l.flows_evicted = 8;
        assert_eq!(log.observe(l, at(3), false), None, "within 10 s: held");
        l.events_dropped = 2;
        l.flows_evicted = 10;
        assert_eq!(log.observe(l, at(10), false), None, "within 10 s: held");
        let next = log.observe(l, at(11), false).expect("10 s after the last line");
        assert!(next.contains("in the last 10s"), "{next}");
        assert!(next.contains("flows_evicted +5 (total 10)"), "added up: {next}");
        assert!(next.contains("events_dropped +2 (total 2)"), "{next}");
        assert!(!next.contains("ringbuf_full"), "only what grew: {next}");
        assert_eq!(log.observe(l, at(30), false), None, "no growth: no line");
        l.tables_skipped = 1;
        assert!(log.observe(l, at(31), false).is_some(), "growth after a quiet spell: at once");
        l.tables_skipped = 2;
        assert!(log.observe(l, at(32), true).is_some(), "the last read logs what is held");
    }
}
