//! In-kernel cost per packet through BPF_PROG_TEST_RUN, as the kernel
//! itself times it (`duration`: average ns per repeat).
//!
//! Cases, each for XDP and TC, interleaved over several rounds:
//! - floor: an empty program (the harness itself, see [`super::floor`]);
//! - baseline: `xdp_baseline` / `tc_baseline` (the same parser, one per-CPU
//!   counter);
//! - known flow: `xdp_ingress` / `tc_ingress` on a flow already in the table
//!   (after its first packet in a tick, counted in the per-CPU cache);
//! - known flow, slot miss: two known flows that share a cache slot, in
//!   turn, so that every packet takes the shared table (as the first packet
//!   of a flow in each tick does);
//! - new flow, free slots: a flow never seen before, into a table with room
//!   (the usual case: user space expires flows);
//! - new flow, LRU eviction: the same into a full 4,096-entry table, cycling
//!   through 16x as many flows, so each insert evicts.
//!
//! Floor, baseline and known flow are run with `repeat` (1,000,000): the
//! kernel loops over the same frame and reports the mean. A new flow cannot
//! repeat (the second run would hit), so the new-flow cases run each frame
//! once (`repeat` 1) and average the kernel's per-run figures; floor,
//! baseline and known flow are measured that way too, so that the new-flow
//! figures have same-method neighbours. Every new-flow run must create a
//! flow: its NEW_FLOW event is counted from the ring buffer, and the bench
//! fails if one is missing.
//!
//! Afterwards the same programs run with the kernel's run-time statistics
//! on (BPF_ENABLE_STATS, which is what `sysctl kernel.bpf_stats_enabled=1`
//! sets; it switches off when its fd closes, even if the bench dies) and
//! `run_time_ns / run_cnt` from BPF_OBJ_GET_INFO_BY_FD cross-checks the
//! test-run figures. Those include two clock reads per run, so they are
//! compared as ratios, not with the test-run figures.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{bail, ensure, Context as _, Result};
use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
    sys::{enable_stats, Stats},
    Ebpf,
};
use monitor::kernel;
use monitor_common::{event_kind, maps, programs, EventHeader, Stat};
use serde::Serialize;

use super::{check_stop, floor::Floor, frame, median};

pub(super) const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC (-1) as the u32 the test run returns.
pub(super) const TC_ACT_UNSPEC: u32 = u32::MAX;

/// Flow table size of the eviction case.
pub const EVICT_TABLE: u32 = 4096;
/// Distinct flows the eviction case cycles through (16x the table).
const EVICT_CYCLE: u32 = 16 * EVICT_TABLE;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    Xdp,
    Tc,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::Tc => "tc",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Case {
    Floor,
    Baseline,
    KnownFlow,
    KnownFlowMiss,
    NewFlowFree,
    NewFlowEvict,
}

impl Case {
    pub const ALL: [Case; 6] = [
        Case::Floor,
        Case::Baseline,
        Case::KnownFlow,
        Case::KnownFlowMiss,
        Case::NewFlowFree,
        Case::NewFlowEvict,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Case::Floor => "floor (empty program)",
            Case::Baseline => "baseline (parse + counter)",
            Case::KnownFlow => "ours, known flow",
            Case::KnownFlowMiss => "ours, known flow, slot miss",
            Case::NewFlowFree => "ours, new flow (free slots)",
            Case::NewFlowEvict => "ours, new flow (LRU eviction)",
        }
    }

    /// Cases that cannot repeat one frame: a new flow would hit the second
    /// time, and a slot miss needs two frames in turn.
    fn single_only(self) -> bool {
        matches!(self, Case::KnownFlowMiss | Case::NewFlowFree | Case::NewFlowEvict)
    }
}

/// How a figure was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// One test run of `repeat` iterations on the same frame.
    Repeat,
    /// Many test runs of one iteration each; the figure is their mean.
    Single,
}

pub struct Config {
    pub rounds: usize,
    pub repeat: u32,
    /// Test runs per round and case in the `Single` method.
    pub singles: usize,
    /// Rounds of the bpf_stats cross-check.
    pub stats_rounds: usize,
    /// A kernel object file to measure instead of the one the monitor
    /// embeds (e.g. a candidate change to monitor-ebpf).
    pub object: Option<std::path::PathBuf>,
}

/// One measurement: the kernel's ns per run.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub hook: Hook,
    pub case: Case,
    pub method: Method,
    pub round: usize,
    /// Repeat: the kernel's mean over `repeat` runs. Single: the mean of `per_run_ns`.
    pub ns: f64,
    pub repeat: u32,
    /// Single only: each run's kernel-reported ns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_run_ns: Vec<u32>,
}

/// One bpf_stats reading: `run_time_ns / run_cnt` over one batch of runs.
#[derive(Clone, Debug, Serialize)]
pub struct StatsSample {
    pub hook: Hook,
    pub case: Case,
    pub round: usize,
    pub prog_id: u32,
    pub run_time_ns: u64,
    pub run_cnt: u64,
    pub ns: f64,
}

#[derive(Debug, Serialize)]
pub struct Results {
    /// The object measured: "embedded" or the file given with --object.
    pub object: String,
    pub frame_bytes: usize,
    pub repeat: u32,
    pub singles: usize,
    pub evict_table: u32,
    pub evict_cycle: u32,
    /// `kernel.bpf_stats_enabled` was already on: every test-run figure then
    /// includes the statistics' clock reads.
    pub stats_were_on: bool,
    pub samples: Vec<Sample>,
    pub stats: Vec<StatsSample>,
    /// New flows created per case (NEW_FLOW events read back), which must
    /// equal the runs.
    pub new_flow_events: BTreeMap<String, u64>,
}

impl Results {
    /// Median over rounds of one (hook, case, method).
    pub fn median(&self, hook: Hook, case: Case, method: Method) -> Option<f64> {
        let xs: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.hook == hook && s.case == case && s.method == method)
            .map(|s| s.ns)
            .collect();
        (!xs.is_empty()).then(|| median(&xs))
    }

    /// Median of every single run of one (hook, case), pooled over rounds.
    pub fn pooled_run_median(&self, hook: Hook, case: Case) -> Option<f64> {
        let xs: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.hook == hook && s.case == case && s.method == Method::Single)
            .flat_map(|s| s.per_run_ns.iter().map(|&n| f64::from(n)))
            .collect();
        (!xs.is_empty()).then(|| median(&xs))
    }

    pub fn stats_median(&self, hook: Hook, case: Case) -> Option<f64> {
        let xs: Vec<f64> =
            self.stats.iter().filter(|s| s.hook == hook && s.case == case).map(|s| s.ns).collect();
        (!xs.is_empty()).then(|| median(&xs))
    }
}

/// A loaded copy of the kernel object with its four programs loaded.
pub(super) struct Object {
    pub(super) ebpf: Ebpf,
    events: RingBuf<MapData>,
    /// Next flow number for [`frame::new_flow`].
    next: u32,
}

impl Object {
    pub(super) fn load(max_flows: u32, file: Option<&std::path::Path>) -> Result<Object> {
        let mut ebpf = match file {
            None => kernel::load_object(max_flows).context("loading the kernel object")?,
            Some(path) => {
                let mut loader = aya::EbpfLoader::new();
                if max_flows > 0 {
                    loader.map_max_entries(maps::FLOWS, max_flows);
                }
                loader.load_file(path).with_context(|| format!("loading {}", path.display()))?
            }
        };
        for name in [programs::XDP_BASELINE, programs::XDP_INGRESS] {
            let p: &mut Xdp = kernel::program(&mut ebpf, name)?;
            p.load().with_context(|| format!("loading {name}"))?;
        }
        for name in [programs::TC_BASELINE, programs::TC_INGRESS] {
            let p: &mut SchedClassifier = kernel::program(&mut ebpf, name)?;
            p.load().with_context(|| format!("loading {name}"))?;
        }
        let map = ebpf.take_map(maps::EVENTS).context("the object has no EVENTS map")?;
        let events = RingBuf::try_from(map).context("EVENTS is not a ring buffer")?;
        Ok(Object { ebpf, events, next: 0 })
    }

    pub(super) fn run(
        &mut self,
        hook: Hook,
        name: &'static str,
        data: &[u8],
        repeat: u32,
    ) -> Result<Duration> {
        let opts = TestRunOptions { data_in: Some(data), repeat, ..TestRunOptions::new() };
        let (verdict, want) = match hook {
            Hook::Xdp => {
                let p: &mut Xdp = kernel::program(&mut self.ebpf, name)?;
                let r = p.test_run(opts).with_context(|| format!("test run of {name}"))?;
                (r, XDP_PASS)
            }
            Hook::Tc => {
                let p: &mut SchedClassifier = kernel::program(&mut self.ebpf, name)?;
                let r = p.test_run(opts).with_context(|| format!("test run of {name}"))?;
                (r, TC_ACT_UNSPEC)
            }
        };
        ensure!(verdict.return_value == want, "{name} returned {} instead of {want}", verdict.return_value);
        Ok(verdict.duration)
    }

    fn prog_info(&mut self, hook: Hook, name: &'static str) -> Result<aya::programs::ProgramInfo> {
        Ok(match hook {
            Hook::Xdp => kernel::program::<Xdp>(&mut self.ebpf, name)?.info()?,
            Hook::Tc => kernel::program::<SchedClassifier>(&mut self.ebpf, name)?.info()?,
        })
    }

    /// Reads and counts every event waiting in the ring buffer; all must be NEW_FLOW.
    fn drain_new_flows(&mut self) -> Result<u64> {
        let mut n = 0;
        while let Some(item) = self.events.next() {
            ensure!(item.len() >= std::mem::size_of::<EventHeader>(), "short ring-buffer record");
            let kind = u32::from_ne_bytes(item[..4].try_into().expect("4 bytes"));
            ensure!(kind == event_kind::NEW_FLOW, "unexpected event kind {kind} in a new-flow run");
            n += 1;
        }
        Ok(n)
    }

    /// Reads every event waiting in the ring buffer; returns the count of
    /// each kind (index = `event_kind`, 0 for unknown kinds).
    pub(super) fn drain_events(&mut self) -> Result<[u64; 5]> {
        let mut n = [0u64; 5];
        while let Some(item) = self.events.next() {
            ensure!(item.len() >= std::mem::size_of::<EventHeader>(), "short ring-buffer record");
            let kind = u32::from_ne_bytes(item[..4].try_into().expect("4 bytes")) as usize;
            n[if kind < n.len() { kind } else { 0 }] += 1;
        }
        Ok(n)
    }

    pub(super) fn stat(&self, stat: Stat) -> Result<u64> {
        let map = self.ebpf.map(maps::STATS).context("the object has no STATS map")?;
        let arr: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        Ok(arr.get(&(stat as u32), 0)?.iter().sum())
    }
}

pub(super) fn prog_name(hook: Hook, case: Case) -> &'static str {
    match (hook, case) {
        (Hook::Xdp, Case::Baseline) => programs::XDP_BASELINE,
        (Hook::Tc, Case::Baseline) => programs::TC_BASELINE,
        (Hook::Xdp, _) => programs::XDP_INGRESS,
        (Hook::Tc, _) => programs::TC_INGRESS,
    }
}

struct Bench {
    floor_xdp: Floor,
    floor_tc: Floor,
    /// Baseline and known flow.
    main: Object,
    /// New flows into free slots: the default (large) table, never-seen flows.
    fresh: Object,
    /// New flows into a full table.
    evict: Object,
    known: [u8; frame::LEN],
    known_twin: [u8; frame::LEN],
    new_flow_events: BTreeMap<String, u64>,
}

impl Bench {
    fn load(file: Option<&std::path::Path>) -> Result<Bench> {
        let pid = std::process::id() % 100_000;
        let floor_xdp = Floor::load(super::floor::PROG_TYPE_XDP, XDP_PASS as i32, &format!("bfloor_x{pid}"))
            .context("loading the empty XDP program")?;
        let floor_tc = Floor::load(super::floor::PROG_TYPE_SCHED_CLS, -1, &format!("bfloor_t{pid}"))
            .context("loading the empty TC program")?;
        let mut b = Bench {
            floor_xdp,
            floor_tc,
            main: Object::load(0, file)?,
            fresh: Object::load(0, file)?,
            evict: Object::load(EVICT_TABLE, file)?,
            known: frame::known(),
            known_twin: frame::known_twin(),
            new_flow_events: BTreeMap::new(),
        };
        // The known flow exists before it is measured.
        for hook in [Hook::Xdp, Hook::Tc] {
            for f in [b.known, b.known_twin] {
                b.main.run(hook, prog_name(hook, Case::KnownFlow), &f, 1)?;
            }
        }
        b.main.drain_new_flows()?;
        // Fill the eviction table, so that every measured insert evicts.
        for _ in 0..2 * EVICT_TABLE {
            let f = frame::new_flow(b.evict.next % EVICT_CYCLE);
            b.evict.next += 1;
            b.evict.run(Hook::Xdp, programs::XDP_INGRESS, &f, 1)?;
        }
        b.evict.drain_new_flows()?;
        Ok(b)
    }

    /// One figure of `case` on `hook`: ns per run and, for `Single`, each run.
    fn measure(
        &mut self,
        hook: Hook,
        case: Case,
        method: Method,
        repeat: u32,
        singles: usize,
    ) -> Result<(f64, Vec<u32>)> {
        let name = prog_name(hook, case);
        if method == Method::Repeat {
            ensure!(!case.single_only(), "{} cannot be measured with repeat", case.label());
            let d = match case {
                Case::Floor => self.floor_run(hook, repeat)?,
                _ => self.main.run(hook, name, &self.known.clone(), repeat)?,
            };
            return Ok((d.as_nanos() as f64, Vec::new()));
        }
        let mut runs = Vec::with_capacity(singles);
        let known = self.known;
        match case {
            Case::Floor => {
                for _ in 0..singles {
                    runs.push(self.floor_run(hook, 1)?.as_nanos() as u32);
                }
            }
            Case::Baseline | Case::KnownFlow => {
                for _ in 0..singles {
                    runs.push(self.main.run(hook, name, &known, 1)?.as_nanos() as u32);
                }
            }
            Case::KnownFlowMiss => {
                let twin = self.known_twin;
                for i in 0..singles {
                    let f = if i % 2 == 0 { &known } else { &twin };
                    runs.push(self.main.run(hook, name, f, 1)?.as_nanos() as u32);
                }
            }
            Case::NewFlowFree | Case::NewFlowEvict => {
                let evict = case == Case::NewFlowEvict;
                let obj = if evict { &mut self.evict } else { &mut self.fresh };
                let (full0, ring0) = (obj.stat(Stat::FlowMapFull)?, obj.stat(Stat::RingBufFull)?);
                for _ in 0..singles {
                    let i = if evict { obj.next % EVICT_CYCLE } else { obj.next };
                    obj.next += 1;
                    let f = frame::new_flow(i);
                    runs.push(obj.run(hook, name, &f, 1)?.as_nanos() as u32);
                }
                let created = obj.drain_new_flows()?;
                let (full, ring) =
                    (obj.stat(Stat::FlowMapFull)? - full0, obj.stat(Stat::RingBufFull)? - ring0);
                ensure!(
                    created == singles as u64 && full == 0 && ring == 0,
                    "{} on {}: {singles} runs created {created} flows (flow table full {full}, ring buffer full \
                     {ring}): the runs did not all miss the table",
                    case.label(),
                    hook.as_str()
                );
                *self.new_flow_events.entry(format!("{}/{:?}", hook.as_str(), case)).or_default() += created;
            }
        }
        let mean = runs.iter().map(|&n| f64::from(n)).sum::<f64>() / runs.len() as f64;
        Ok((mean, runs))
    }

    fn floor_run(&self, hook: Hook, repeat: u32) -> Result<Duration> {
        let (floor, want) = match hook {
            Hook::Xdp => (&self.floor_xdp, XDP_PASS),
            Hook::Tc => (&self.floor_tc, TC_ACT_UNSPEC),
        };
        let (verdict, d) = floor.test_run(&self.known, repeat).context("test run of the empty program")?;
        ensure!(verdict == want, "the empty program returned {verdict} instead of {want}");
        Ok(d)
    }

    /// run_time_ns and run_cnt of the program that `case` runs on `hook`.
    fn run_stats(&mut self, hook: Hook, case: Case) -> Result<(u32, u64, u64)> {
        let info = match case {
            Case::Floor => {
                let id = match hook {
                    Hook::Xdp => self.floor_xdp.id,
                    Hook::Tc => self.floor_tc.id,
                };
                aya::programs::loaded_programs()
                    .filter_map(Result::ok)
                    .find(|p| p.id() == id)
                    .with_context(|| format!("empty program id {id} not among the loaded programs"))?
            }
            Case::Baseline | Case::KnownFlow | Case::KnownFlowMiss => {
                self.main.prog_info(hook, prog_name(hook, case))?
            }
            Case::NewFlowFree => self.fresh.prog_info(hook, prog_name(hook, case))?,
            Case::NewFlowEvict => self.evict.prog_info(hook, prog_name(hook, case))?,
        };
        Ok((info.id(), info.run_time().as_nanos() as u64, info.run_count()))
    }
}

fn stats_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|s| s.trim() == "1")
}

/// Keeps the calling thread on one CPU until dropped, then restores its
/// CPU set. The LRU flow table keeps per-CPU lists of recent entries: a
/// thread that moves between CPUs strands up to 128 flows in the other
/// CPU's list, where eviction does not reach them, and the eviction case
/// would then hit instead of miss. One CPU also steadies the figures.
pub(super) struct Pinned {
    old: libc::cpu_set_t,
}

impl Pinned {
    pub(super) fn to_last_cpu() -> Result<Pinned> {
        // SAFETY: cpu_set_t is plain data; the calls only read/write the sets we pass.
        unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            ensure!(
                libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) == 0,
                "sched_getaffinity: {}",
                std::io::Error::last_os_error()
            );
            let cpu = (0..libc::CPU_SETSIZE as usize)
                .rev()
                .find(|&c| libc::CPU_ISSET(c, &old))
                .context("this thread may run on no CPU")?;
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            ensure!(
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) == 0,
                "sched_setaffinity to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
            Ok(Pinned { old })
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: restores the set read in to_last_cpu.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.old) };
    }
}

pub fn run(cfg: &Config) -> Result<Results> {
    let _pinned = Pinned::to_last_cpu()?;
    let stats_were_on = stats_enabled();
    if stats_were_on {
        eprintln!(
            "warning: kernel.bpf_stats_enabled is already 1: every test-run figure includes the statistics' \
             clock reads (about 50 ns)"
        );
    }
    let mut b = Bench::load(cfg.object.as_deref())?;
    let mut samples = Vec::new();
    let jobs: Vec<(Case, Method)> = Case::ALL
        .iter()
        .flat_map(|&c| {
            let single = (c, Method::Single);
            if c.single_only() {
                vec![single]
            } else {
                vec![(c, Method::Repeat), single]
            }
        })
        .collect();
    for round in 0..cfg.rounds {
        let hooks = if round % 2 == 0 { [Hook::Xdp, Hook::Tc] } else { [Hook::Tc, Hook::Xdp] };
        for hook in hooks {
            for (case, method) in super::rotated(&jobs, round) {
                check_stop()?;
                let (ns, per_run_ns) = b.measure(hook, case, method, cfg.repeat, cfg.singles)?;
                let repeat = if method == Method::Repeat { cfg.repeat } else { 1 };
                samples.push(Sample { hook, case, method, round, ns, repeat, per_run_ns });
            }
        }
        eprintln!("test run: round {}/{} done", round + 1, cfg.rounds);
    }

    let mut stats = Vec::new();
    {
        let _on = enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS (run-time statistics)")?;
        for round in 0..cfg.stats_rounds {
            for hook in [Hook::Xdp, Hook::Tc] {
                for case in super::rotated(&Case::ALL, round) {
                    check_stop()?;
                    let method = if case.single_only() { Method::Single } else { Method::Repeat };
                    let (id, t0, c0) = b.run_stats(hook, case)?;
                    b.measure(hook, case, method, cfg.repeat, cfg.singles)?;
                    let (_, t1, c1) = b.run_stats(hook, case)?;
                    let (run_time_ns, run_cnt) = (t1 - t0, c1 - c0);
                    if run_cnt == 0 {
                        bail!(
                            "bpf_stats counted no runs of program {id}: are run-time statistics supported?"
                        );
                    }
                    let ns = run_time_ns as f64 / run_cnt as f64;
                    stats.push(StatsSample { hook, case, round, prog_id: id, run_time_ns, run_cnt, ns });
                }
            }
        }
    }
    if !stats_were_on && stats_enabled() {
        eprintln!("warning: kernel.bpf_stats_enabled is still 1 after the bench (someone else turned it on)");
    }
    Ok(Results {
        object: cfg.object.as_ref().map_or_else(|| "embedded".into(), |p| p.display().to_string()),
        frame_bytes: frame::LEN,
        repeat: cfg.repeat,
        singles: cfg.singles,
        evict_table: EVICT_TABLE,
        evict_cycle: EVICT_CYCLE,
        stats_were_on,
        samples,
        stats,
        new_flow_events: b.new_flow_events,
    })
}
