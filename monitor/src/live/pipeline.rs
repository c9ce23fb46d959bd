//! The live agent's state and what it does with each input: a flow event
//! from the kernel, a table read, the 1 s tick, a DNS rebuild, a reload.
//!
//! One value owns the judge, the passive DNS names, the de-duplicator and
//! the outputs, and has one method per input, so the agent's loop
//! ([`super::agent`]) only waits and dispatches, and a new output or source
//! lands here as a field and a method rather than in the loop.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use log::{error, info, warn};

use super::{
    coverage::Report,
    dedup::Dedup,
    judge::Judge,
    metrics::{Metrics, Snapshot},
    sink::Sink,
    state::{Busiest, Recorder, State, MAX_FLOWS},
    tally::Tally,
    webhook::Webhook,
};
use crate::{
    alert::Alert,
    counters::Counters,
    dns::{
        live::{Inputs, LiveNames},
        DnsMessage,
    },
    engine::{Compiled, SourcesError},
    flow::{Clock, Flow},
    kernel::{
        stream::{Chunk, TableEnd, UserStats},
        KernelClock, KernelStats,
    },
};

/// Everything an alert passes through on its way out.
pub struct Out {
    pub sink: Sink,
    pub webhook: Option<Webhook>,
    pub metrics: Metrics,
    pub dedup: Dedup,
}

impl Out {
    fn offer(&mut self, alert: Alert) {
        if let Some(a) = self.dedup.offer(alert, Instant::now()) {
            self.emit(&a);
        }
    }

    fn emit(&mut self, alert: &Alert) {
        self.metrics.alert(alert.kind);
        if let Ok(latency) = SystemTime::now().duration_since(alert.first_seen) {
            self.metrics.alert_latency(latency);
        }
        if let Err(e) = self.sink.write(alert) {
            error!("cannot write an alert: {e}");
        }
        if let Some(w) = &self.webhook {
            w.send(alert);
        }
    }
}

pub struct Pipeline {
    judge: Judge,
    names: LiveNames,
    out: Out,
    clock: KernelClock,
    /// The kernel's and the reader's counters as of the last table read.
    last_read: Option<(KernelStats, UserStats)>,
    /// How long the last read took, and the interval in force after it.
    table_read: Option<(Duration, Duration)>,
    /// What `state json` answers with.
    recorder: Recorder,
    /// A table read under way (its chunks come one by one, flow events in
    /// between): the busiest flows of its chunks so far.
    reading: Option<Busiest>,
}

impl Pipeline {
    pub fn new(compiled: Compiled, dns: crate::dns::CacheOptions, out: Out, tally: Tally) -> Pipeline {
        let Compiled { engine, matrix, inventory, selection, .. } = compiled;
        Pipeline {
            judge: Judge::new(Arc::new(engine), tally),
            // Passive DNS: services placed by name bind what this host resolves.
            names: LiveNames::new(Inputs { matrix, inventory, selection }, dns),
            out,
            clock: KernelClock::new(),
            last_read: None,
            table_read: None,
            recorder: Recorder::default(),
            reading: None,
        }
    }

    /// A new flow, its first answer or an ICMP error, from the ring buffer.
    pub fn event(&mut self, flow: &Flow) {
        self.recorder.event(flow);
        if let Some(flow) = self.names.hold(flow) {
            judge_flow(&mut self.judge, &mut self.out, &mut self.recorder, &self.names, flow);
        }
    }

    /// A DNS answer (or a TCP segment of one) from port 53.
    pub fn dns(&mut self, message: &DnsMessage) {
        self.names.ingest(message);
    }

    /// When the names DNS bound call for a rebuild of the engine.
    pub fn dns_due(&self) -> Option<Instant> {
        self.names.due()
    }

    /// Rebuilds the engine with the names DNS bound, and judges the flows
    /// held for it.
    pub fn dns_rebuild(&mut self) {
        let (engine, flows) = self.names.rebuild();
        if let Some(engine) = engine {
            self.judge.set_engine(Arc::new(engine));
        }
        for flow in &flows {
            judge_flow(&mut self.judge, &mut self.out, &mut self.recorder, &self.names, flow);
        }
    }

    /// A chunk of a table read: every flow (built once each). The first
    /// chunk of a read starts it.
    pub fn chunk(&mut self, chunk: &Chunk) {
        let (judge, out, names, rec) = (&mut self.judge, &mut self.out, &mut self.names, &mut self.recorder);
        let now_ns = self.clock.now_raw();
        let busiest = self.reading.get_or_insert_with(|| {
            judge.begin_table();
            Busiest::new(MAX_FLOWS)
        });
        for flow in chunk.flows() {
            names.flow_seen(&flow, now_ns);
            rec.packet(&flow);
            busiest.offer(&flow);
            match names.hold(&flow) {
                Some(flow) => judge_flow(judge, out, rec, names, flow),
                // Held for a pending DNS rebuild: still in the table.
                None => judge.touch(&flow.key),
            }
        }
    }

    /// The end of a table read: the flows the kernel evicted since the last
    /// read, then the flows the read did not see are forgotten.
    pub fn table_end(&mut self, table: &TableEnd) {
        let (judge, out, names, rec) = (&mut self.judge, &mut self.out, &mut self.names, &mut self.recorder);
        let busiest = self.reading.take().unwrap_or_else(|| {
            // An empty table: no chunk.
            judge.begin_table();
            Busiest::new(MAX_FLOWS)
        });
        // Evicted by the kernel from a full table since the last read: judged
        // once, as last known (their SYN may have timed out by now).
        for flow in table.evicted() {
            if let Some(flow) = names.hold(&flow) {
                judge_flow(judge, out, rec, names, flow);
            }
        }
        rec.busiest(busiest, judge);
        judge.coverage.losses = table.losses();
        // Flows expired in the kernel are forgotten, but not on the last table:
        // its flows were not removed.
        if !table.last {
            judge.end_table();
        }
        self.last_read = Some((table.kernel.clone(), table.user));
        self.table_read = Some((table.took, table.interval));
    }

    /// The 1 s tick: DNS ages, the de-duplicator reports what is due, and
    /// every total is published to the metrics.
    pub fn tick(&mut self) {
        self.names.expire(self.clock.now_raw());
        for a in self.out.dedup.tick(Instant::now()) {
            self.out.emit(&a);
        }
        let webhook = self.out.webhook.as_ref().map(Webhook::stats);
        let mut parts: Vec<&dyn Counters> = Vec::with_capacity(6);
        if let Some((kernel, user)) = &self.last_read {
            parts.extend([kernel as &dyn Counters, user]);
        }
        parts.extend([&self.names as &dyn Counters, &self.out.dedup.stats, &webhook, &self.judge.tally]);
        self.out.metrics.publish(&Snapshot {
            counters: &parts,
            rules: self.judge.coverage.in_force(self.judge.engine()),
            tally: Some(&self.judge.tally),
            tracked_flows: self.judge.tracked(),
            table_read: self.table_read,
            interfaces: self.last_read.as_ref().map(|(kernel, _)| kernel.interfaces.as_slice()),
        });
        if self.out.sink.has_status_line() {
            let status = self.recorder.status(&self.judge, self.interface_names());
            self.out.sink.status(&status.line());
        }
    }

    fn interface_names(&self) -> Vec<String> {
        self.last_read
            .as_ref()
            .map(|(kernel, _)| kernel.interfaces.iter().map(|i| i.name.clone()).collect())
            .unwrap_or_default()
    }

    /// The coverage report, as `monitor report` gets it.
    pub fn report(&self) -> Report {
        self.judge.coverage.report(self.judge.engine())
    }

    /// The live state, as `monitor top` gets it (`state json`).
    pub fn state(&self) -> State {
        self.recorder.state(&self.judge, self.interface_names())
    }

    /// A reload's result: the new matrix and inventory in force, or the old
    /// ones kept. Counters are kept either way.
    pub fn reloaded(&mut self, compiled: Result<Compiled, SourcesError>) {
        match compiled {
            Ok(compiled) => {
                for w in &compiled.warnings {
                    warn!("reload: {w}");
                }
                let Compiled { engine, matrix, inventory, selection, .. } = compiled;
                // The new matrix may watch other names: compile again with what DNS bound.
                self.names.set_inputs(Inputs { matrix, inventory, selection });
                let engine = self.names.compile().unwrap_or(engine);
                self.judge.set_engine(Arc::new(engine));
                self.out.metrics.reload(true);
                info!("reloaded the matrix and the inventory (SIGHUP)");
            }
            Err(e) => {
                self.out.metrics.reload(false);
                // As anyhow, `{:#}` prints the causes too.
                let e = anyhow::Error::from(e);
                error!("reload failed; the previous matrix and inventory stay in force: {e:#}");
            }
        }
    }

    /// A reload that could not run at all (its task panicked).
    pub fn reload_failed(&mut self, why: &str) {
        self.out.metrics.reload(false);
        error!("reload failed: {why}");
    }

    /// At the end: the alerts the de-duplicator still holds go out, and the
    /// webhook's handle is given back for its flush.
    pub fn flush(&mut self) -> Option<Webhook> {
        for a in self.out.dedup.flush() {
            self.out.emit(&a);
        }
        self.out.webhook.take()
    }

    /// Writes the last line (the coverage report) and returns the exit
    /// summary to log.
    /// Writes the coverage report to the sink and returns it, with a
    /// summary line for the log.
    pub fn finish(mut self) -> anyhow::Result<(Report, String)> {
        let report = self.report();
        self.out.sink.write_report(&report)?;
        let c = self.judge.counts;
        let blocked: u64 = self.judge.coverage.iter().map(|(_, u)| u.blocked).sum();
        let d = &self.out.dedup.stats;
        let summary = format!(
            "{} flows: {} conforming, {} unexpected, {} exposed, {} exposed but unanswered, {} documented \
             blocked; {} alerts emitted, {} repeats folded; losses: {}",
            c.flows,
            c.conforming,
            c.unexpected,
            c.exposed,
            c.exposed_unanswered,
            blocked,
            d.emitted,
            d.repeats,
            self.judge.coverage.losses
        );
        Ok((report, summary))
    }
}

fn judge_flow(judge: &mut Judge, out: &mut Out, rec: &mut Recorder, names: &LiveNames, flow: &Flow) {
    let mut judged = judge.observe(flow);
    if let Some(t) = judged.engine_time {
        out.metrics.engine_latency(t);
    }
    if let Some(v) = judged.new_flow {
        out.metrics.flow(v);
    }
    if let Some(alert) = &mut judged.alert {
        names.annotate(alert, judge.engine());
    }
    rec.judged(judge.engine(), flow, &judged);
    if let Some(alert) = judged.alert {
        out.offer(alert);
    }
}
