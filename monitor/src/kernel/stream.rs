//! The typed stream of flows that the rest of the program consumes.
//!
//! One task owns the [`Kernel`]: it drains the ring buffer as soon as it is
//! readable (new flows and first answers, within milliseconds), and reads the
//! whole table at every interval (counters, ageing, expiry). It follows the
//! link events too: an interface to watch that appears (or is re-created)
//! is attached to, one that goes away is forgotten. On shutdown it
//! detaches every program, then reads the table once more and sends it.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use monitor_common::{event_kind, DnsEvent, FlowEvent, FlowKey, FlowValue};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore},
    task::JoinHandle,
};

use super::{links::LinkWatch, listening::Listening, Kernel, KernelError, KernelStats, LinkOutcome};
use crate::{
    dns::DnsMessage,
    flow::{Clock, Flow, FlowState},
};

/// What a ring-buffer event announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    NewFlow,
    /// The first SYN-ACK or RST of a flow.
    TcpAnswer,
    IcmpError,
}

#[derive(Debug)]
pub enum FlowUpdate {
    /// Sent as soon as the kernel reports it.
    Event { kind: EventKind, flow: Flow },
    /// The whole table, at every interval and once more at shutdown (boxed:
    /// every slot of the channel is as large as the largest variant).
    Table(Box<Table>),
    /// A payload sent from port 53 (a DNS answer, or a segment of one over
    /// TCP). Sent before the flow events read after it, so that an answer
    /// reaches the consumer before the connection it led to.
    Dns(DnsMessage),
}

/// `Clock` frozen at the moment of the read, so that flows made from the
/// table later are judged as they stood when it was read.
#[derive(Clone, Copy, Debug)]
struct ReadClock {
    clock: crate::kernel::KernelClock,
    now: u64,
}

impl Clock for ReadClock {
    fn to_system(&self, raw_ns: u64) -> std::time::SystemTime {
        self.clock.to_system(raw_ns)
    }
    fn now_raw(&self) -> u64 {
        self.now
    }
}

#[derive(Debug)]
pub struct Table {
    /// The entries as read; [`Table::flows`] makes the flows one at a time
    /// (a Flow is 200 bytes, an entry 112, and at 100k flows the table is
    /// the largest block the monitor allocates).
    entries: Vec<(FlowKey, FlowValue)>,
    clock: ReadClock,
    hint: Arc<Listening>,
    answer_timeout: Duration,
    pub kernel: KernelStats,
    pub user: UserStats,
    /// The last table, read at shutdown.
    pub last: bool,
    /// Held until the consumer drops the table: while it does, no other
    /// table is read, so a slow consumer never has two tables in memory.
    _in_flight: OwnedSemaphorePermit,
}

impl Table {
    /// The flows of the table, as they stood when it was read.
    pub fn flows(&self) -> impl Iterator<Item = Flow> + '_ {
        self.entries
            .iter()
            .filter_map(|(k, v)| Flow::from_entry(k, v, &self.clock, &*self.hint, self.answer_timeout))
    }
}

/// What user space itself counted: nothing is lost without a number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
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
    /// Interval reads skipped because the consumer still held the last
    /// table (it is behind; events keep flowing meanwhile).
    pub tables_skipped: u64,
    /// Interfaces to watch that appeared while running and could not be
    /// attached to (each is logged).
    pub attach_failures: u64,
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
/// a `Table` with `last: true`, then the channel closes.
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
    /// Keys believed to be in the kernel table, to notice LRU evictions.
    known: HashSet<FlowKey>,
    user: UserStats,
    /// Entries in the last read, to size the next.
    last_len: usize,
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
    let mut st = State {
        kernel,
        opts: opts.clone(),
        hint: Arc::new(Listening::read()),
        known: HashSet::new(),
        user: UserStats::default(),
        last_len: 0,
    };
    // Subscribed now: an interface that came since the kernel listed them
    // at load is caught here, every later one by its event.
    let outcome = st.kernel.resync();
    st.count(outcome);
    let in_flight = Arc::new(Semaphore::new(1));
    let mut tick = tokio::time::interval(opts.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
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
                drain_events(&mut st, guard.get_inner_mut(), &tx);
                guard.clear_ready();
            }
            changes = links.next() => {
                for ev in changes.map_err(KernelError::LinkWatch)? {
                    let outcome = st.kernel.link_event(&ev);
                    st.count(outcome);
                }
            }
            _ = tick.tick() => {
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    st.user.tables_skipped += 1;
                    continue;
                };
                let table = st.read_table(false, permit)?;
                if tx.send(FlowUpdate::Table(Box::new(table))).await.is_err() {
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
    drain_events(&mut st, events.get_mut(), &tx);
    let Ok(permit) = in_flight.acquire_owned().await else { return Ok(()) };
    let table = st.read_table(true, permit)?;
    let _ = tx.send(FlowUpdate::Table(Box::new(table))).await;
    Ok(())
}

fn drain_events(st: &mut State, ring: &mut RingBuf<MapData>, tx: &mpsc::Sender<FlowUpdate>) {
    let clock = st.kernel.clock();
    while let Some(item) = ring.next() {
        st.user.events += 1;
        if item.len() != std::mem::size_of::<FlowEvent>() {
            st.user.events_malformed += 1;
            continue;
        }
        // SAFETY: the length matches and FlowEvent is valid for any bytes.
        let ev: FlowEvent = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const FlowEvent) };
        let kind = match ev.header.kind {
            event_kind::NEW_FLOW => EventKind::NewFlow,
            event_kind::TCP_ANSWER => EventKind::TcpAnswer,
            event_kind::ICMP_ERROR => EventKind::IcmpError,
            _ => {
                st.user.events_malformed += 1;
                continue;
            }
        };
        st.known.insert(ev.key);
        let Some(flow) = Flow::from_entry(&ev.key, &ev.value, &clock, &*st.hint, st.opts.answer_timeout)
        else {
            continue;
        };
        if tx.try_send(FlowUpdate::Event { kind, flow }).is_err() {
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

    fn read_table(&mut self, last: bool, in_flight: OwnedSemaphorePermit) -> Result<Table, KernelError> {
        let started = Instant::now();
        let mut entries = Vec::with_capacity(self.last_len + self.last_len / 16);
        self.kernel.walk(&mut entries)?;
        self.last_len = entries.len();
        self.hint = Arc::new(Listening::read());
        let kernel_clock = self.kernel.clock();
        let clock = ReadClock { clock: kernel_clock, now: kernel_clock.now_raw() };
        let now = clock.now;

        // Evicted: known before the read and not in it.
        let still = entries.iter().filter(|(k, _)| self.known.contains(k)).count();
        self.user.flows_evicted += self.known.len().saturating_sub(still) as u64;

        let mut expire = Vec::new();
        for (key, value) in &entries {
            let Some(flow) = Flow::from_entry(key, value, &clock, &*self.hint, self.opts.answer_timeout)
            else {
                continue;
            };
            let idle = Duration::from_nanos(now.saturating_sub(value.last_seen_ns));
            let finished = matches!(flow.state, FlowState::Closed) || flow.state.is_failure();
            if idle >= self.opts.idle_timeout || (finished && idle >= self.opts.closed_timeout) {
                expire.push(*key);
            }
        }
        if !last && !expire.is_empty() {
            // Those the LRU evicted since the read were not expired by us.
            let gone = self.kernel.remove(&expire)?;
            self.user.flows_expired += (expire.len() - gone) as u64;
            self.user.flows_evicted += gone as u64;
        }
        self.known.clear();
        self.known.extend(entries.iter().map(|(k, _)| *k));
        if !last {
            for k in &expire {
                self.known.remove(k);
            }
        }
        log::debug!("read {} flows in {:?}", entries.len(), started.elapsed());
        Ok(Table {
            entries,
            clock,
            hint: Arc::clone(&self.hint),
            answer_timeout: self.opts.answer_timeout,
            kernel: self.kernel.stats()?,
            user: self.user,
            last,
            _in_flight: in_flight,
        })
    }
}
