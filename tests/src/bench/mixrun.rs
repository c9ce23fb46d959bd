//! Mixed traffic through BPF_PROG_TEST_RUN: every frame of the mixed
//! capture ([`super::mix`]) once, in capture order, through ours
//! (`xdp_ingress` / `tc_ingress`), the baseline (`xdp_baseline` /
//! `tc_baseline`) and the empty program, XDP and TC.
//!
//! The other test-run cases time one kind of packet; here the kinds come in
//! the proportions and the order a busy server sees them, so the figure is
//! what the program costs per packet of such traffic, new flows, cache hits
//! and slot misses together.
//!
//! Each pass (hook x program) starts from a freshly loaded object: an empty
//! flow table and an empty per-CPU cache, so every flow is new at its first
//! frame (checked: one NEW_FLOW event per flow, no failed insert, no full
//! ring buffer). Each frame is one test run with `repeat` 1, like the
//! `single` method of [`super::testrun`]; the figure is the mean of the
//! kernel's per-run ns. Passes rotate from round to round; the thread is
//! pinned to one CPU (the cache and the LRU lists are per CPU).
//!
//! Classes of ours' frames: *new flow* is a flow's first frame; *cache hit*
//! a frame counted in its per-CPU cache slot; *slot miss* every other frame
//! (a known flow through the shared table: first in its tick, its slot taken
//! by another flow meanwhile, or a new TCP flag). STATS has no hit counter,
//! so the bench reads the frame's cache slot after each run: a hit leaves
//! packets of the frame's flow in the slot, the shared path writes them
//! back and leaves it empty (or, when another flow claimed the slot in this
//! tick, leaves that flow's packets, which are not this frame's). The slot
//! is computed for the object's own cache size (its FLOW_CACHE
//! `max_entries`), so a candidate object built with another size is
//! classified right. The same read follows every run of every program, so that the
//! harness around each run is the same.

use std::{path::PathBuf, time::Instant};

use anyhow::{ensure, Context as _, Result};
use aya::maps::{MapData, PerCpuArray};
use monitor_common::{event_kind, maps, programs, FlowCacheSlot, Stat};
use serde::Serialize;

use super::{
    check_stop,
    floor::{self, Floor},
    median,
    mix::{self, Capture},
    testrun::{Hook, Object, Pinned, TC_ACT_UNSPEC, XDP_PASS},
};

/// Ethernet addresses of the test-run frames (the programs ignore them).
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
/// Frames between two reads of the ring buffer (2 MiB holds about 14,000
/// events; a new flow is about one frame in ten).
const DRAIN_EVERY: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Prog {
    /// The empty program: the harness.
    Floor,
    Baseline,
    Ours,
}

impl Prog {
    pub const ALL: [Prog; 3] = [Prog::Floor, Prog::Baseline, Prog::Ours];

    pub fn label(self) -> &'static str {
        match self {
            Prog::Floor => "floor (empty program)",
            Prog::Baseline => "baseline (parse + counter)",
            Prog::Ours => "ours",
        }
    }
}

pub struct Config {
    pub rounds: usize,
    pub capture: mix::Config,
    /// A kernel object file instead of the embedded one (see testrun).
    pub object: Option<PathBuf>,
}

/// Frames of one class and their mean kernel ns.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Class {
    pub frames: u64,
    pub mean_ns: f64,
}

/// Ours' frames by what the program did with them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Classes {
    pub new_flow: Class,
    pub cache_hit: Class,
    pub slot_miss: Class,
}

/// One pass: every frame once through one program.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub hook: Hook,
    pub prog: Prog,
    pub round: usize,
    pub frames: u64,
    /// Mean of the kernel's per-run ns over the frames.
    pub mean_ns: f64,
    pub p50_ns: u32,
    pub p90_ns: u32,
    pub p99_ns: u32,
    /// Ours only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<Classes>,
    /// Events read from the ring buffer (ours only).
    pub new_flow_events: u64,
    pub tcp_answer_events: u64,
    /// STATS deltas of the pass (`tracked` counts parsed frames for the
    /// baseline too).
    pub tracked: u64,
    pub flow_map_full: u64,
    pub ring_buf_full: u64,
    pub cache_stale: u64,
    /// Wall time of the pass (frames built, runs, slot reads).
    pub wall_secs: f64,
}

#[derive(Debug, Serialize)]
pub struct Results {
    pub object: String,
    pub capture: mix::Summary,
    pub rounds: usize,
    pub stats_were_on: bool,
    pub samples: Vec<Sample>,
}

impl Results {
    fn of(&self, hook: Hook, prog: Prog) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.hook == hook && s.prog == prog)
    }

    /// Median over rounds of the mean ns per frame.
    pub fn median(&self, hook: Hook, prog: Prog) -> Option<f64> {
        let xs: Vec<f64> = self.of(hook, prog).map(|s| s.mean_ns).collect();
        (!xs.is_empty()).then(|| median(&xs))
    }

    /// Lowest and highest round.
    pub fn range(&self, hook: Hook, prog: Prog) -> Option<(f64, f64)> {
        self.of(hook, prog)
            .map(|s| s.mean_ns)
            .fold(None, |r, v| Some(r.map_or((v, v), |(lo, hi): (f64, f64)| (lo.min(v), hi.max(v)))))
    }

    /// Median over rounds of one class of ours' frames: (frames, mean ns).
    pub fn class_median(&self, hook: Hook, pick: fn(&Classes) -> &Class) -> Option<(f64, f64)> {
        let cs: Vec<&Class> =
            self.of(hook, Prog::Ours).filter_map(|s| s.classes.as_ref().map(pick)).collect();
        if cs.is_empty() {
            return None;
        }
        let frames: Vec<f64> = cs.iter().map(|c| c.frames as f64).collect();
        let ns: Vec<f64> = cs.iter().map(|c| c.mean_ns).collect();
        Some((median(&frames), median(&ns)))
    }
}

struct Floors {
    xdp: Floor,
    tc: Floor,
}

/// One pass of `prog` on `hook` over the whole capture, from a fresh object.
fn pass(
    cap: &Capture,
    first: &[bool],
    floors: &Floors,
    file: Option<&std::path::Path>,
    hook: Hook,
    prog: Prog,
    round: usize,
) -> Result<Sample> {
    let mut obj = Object::load(0, file)?;
    let cache_map = obj.ebpf.take_map(maps::FLOW_CACHE).context("the object has no FLOW_CACHE map")?;
    // The object's own cache size: a candidate object may differ from this build's.
    let slots = match &cache_map {
        aya::maps::Map::PerCpuArray(d) => d.info()?.max_entries(),
        _ => anyhow::bail!("FLOW_CACHE is not a per-CPU array"),
    };
    let slot_of: Vec<u32> = cap.flows.iter().map(|f| f.slot(slots)).collect();
    let key_of: Vec<monitor_common::FlowKey> = cap.flows.iter().map(|f| f.key()).collect();
    let cache: PerCpuArray<MapData, FlowCacheSlot> =
        PerCpuArray::try_from(cache_map).context("FLOW_CACHE is not a per-CPU array")?;
    let stats0 = [Stat::Tracked, Stat::FlowMapFull, Stat::RingBufFull, Stat::CacheStale]
        .map(|s| obj.stat(s))
        .into_iter()
        .collect::<Result<Vec<u64>>>()?;
    let name = match (hook, prog) {
        (Hook::Xdp, Prog::Ours) => programs::XDP_INGRESS,
        (Hook::Tc, Prog::Ours) => programs::TC_INGRESS,
        (Hook::Xdp, _) => programs::XDP_BASELINE,
        (Hook::Tc, _) => programs::TC_BASELINE,
    };
    let n = cap.pkts.len();
    let mut ns = Vec::with_capacity(n);
    let mut held = Vec::with_capacity(n);
    let mut events = [0u64; 5];
    let mut buf = Vec::with_capacity(2048);
    let t0 = Instant::now();
    for i in 0..n {
        if i % DRAIN_EVERY == 0 {
            check_stop()?;
            for (e, x) in events.iter_mut().zip(obj.drain_events()?) {
                *e += x;
            }
        }
        cap.frame(i, SRC_MAC, DST_MAC, &mut buf);
        let d = match prog {
            Prog::Floor => {
                let (f, want) = match hook {
                    Hook::Xdp => (&floors.xdp, XDP_PASS),
                    Hook::Tc => (&floors.tc, TC_ACT_UNSPEC),
                };
                let (verdict, d) = f.test_run(&buf, 1).context("test run of the empty program")?;
                ensure!(verdict == want, "the empty program returned {verdict} instead of {want}");
                d
            }
            _ => obj.run(hook, name, &buf, 1)?,
        };
        ns.push(d.as_nanos() as u32);
        let flow = cap.pkts[i].flow as usize;
        let slot = cache.get(&slot_of[flow], 0)?;
        // Packets of this flow: a slot another flow holds says nothing of this frame.
        held.push(slot.iter().any(|s| s.key == key_of[flow] && s.packets[0] + s.packets[1] > 0));
    }
    let wall_secs = t0.elapsed().as_secs_f64();
    for (e, x) in events.iter_mut().zip(obj.drain_events()?) {
        *e += x;
    }
    let stats1 = [Stat::Tracked, Stat::FlowMapFull, Stat::RingBufFull, Stat::CacheStale]
        .map(|s| obj.stat(s))
        .into_iter()
        .collect::<Result<Vec<u64>>>()?;
    let d: Vec<u64> = stats1.iter().zip(&stats0).map(|(a, b)| a - b).collect();
    let (tracked, flow_map_full, ring_buf_full, cache_stale) = (d[0], d[1], d[2], d[3]);
    let what = format!("mixed traffic, {} on {}", prog.label(), hook.as_str());
    if prog != Prog::Floor {
        ensure!(tracked == n as u64, "{what}: {tracked} of {n} frames were parsed and counted");
    }
    let classes = (prog == Prog::Ours).then(|| {
        let mut c = Classes::default();
        let (mut sums, mut counts) = ([0f64; 3], [0u64; 3]);
        for i in 0..n {
            let k = if first[i] {
                0
            } else if held[i] {
                1
            } else {
                2
            };
            sums[k] += f64::from(ns[i]);
            counts[k] += 1;
        }
        for (k, class) in [&mut c.new_flow, &mut c.cache_hit, &mut c.slot_miss].into_iter().enumerate() {
            class.frames = counts[k];
            class.mean_ns = if counts[k] > 0 { sums[k] / counts[k] as f64 } else { 0.0 };
        }
        c
    });
    if prog == Prog::Ours {
        let flows = cap.flows.len() as u64;
        let created = events[event_kind::NEW_FLOW as usize];
        ensure!(
            created == flows && flow_map_full == 0 && ring_buf_full == 0,
            "{what}: {flows} flows created {created} NEW_FLOW events (flow table full {flow_map_full}, ring \
             buffer full {ring_buf_full}): the flows were not all new, or events were lost"
        );
    }
    let mean_ns = ns.iter().map(|&x| f64::from(x)).sum::<f64>() / n.max(1) as f64;
    let mut sorted = ns.clone();
    sorted.sort_unstable();
    let pct = |q: f64| sorted[((n as f64 - 1.0) * q).round() as usize];
    Ok(Sample {
        hook,
        prog,
        round,
        frames: n as u64,
        mean_ns,
        p50_ns: pct(0.5),
        p90_ns: pct(0.9),
        p99_ns: pct(0.99),
        classes,
        new_flow_events: events[event_kind::NEW_FLOW as usize],
        tcp_answer_events: events[event_kind::TCP_ANSWER as usize],
        tracked,
        flow_map_full,
        ring_buf_full,
        cache_stale,
        wall_secs,
    })
}

pub fn run(cfg: &Config) -> Result<Results> {
    let cap = Capture::generate(&cfg.capture);
    let s = &cap.summary;
    eprintln!(
        "mixed traffic: {} frames of {} flows ({} TCP, {} UDP; {} IPv6), up to {} open at once",
        s.frames, s.flows, s.tcp_flows, s.udp_flows, s.ipv6_flows, s.max_open_flows
    );
    let first = cap.first_of_flow();
    let _pinned = Pinned::to_last_cpu()?;
    let stats_were_on =
        std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|s| s.trim() == "1");
    let pid = std::process::id() % 100_000;
    let floors = Floors {
        xdp: Floor::load(floor::PROG_TYPE_XDP, XDP_PASS as i32, &format!("bmix_x{pid}"))
            .context("loading the empty XDP program")?,
        tc: Floor::load(floor::PROG_TYPE_SCHED_CLS, -1, &format!("bmix_t{pid}"))
            .context("loading the empty TC program")?,
    };
    let jobs: Vec<(Hook, Prog)> =
        [Hook::Xdp, Hook::Tc].into_iter().flat_map(|h| Prog::ALL.map(|p| (h, p))).collect();
    let mut samples = Vec::new();
    for round in 0..cfg.rounds {
        for (hook, prog) in super::rotated(&jobs, round) {
            let s = pass(&cap, &first, &floors, cfg.object.as_deref(), hook, prog, round)?;
            eprintln!(
                "mixed: round {}/{} {:<4} {:<27} {:>7.1} ns/frame ({:.1} s)",
                round + 1,
                cfg.rounds,
                hook.as_str(),
                prog.label(),
                s.mean_ns,
                s.wall_secs
            );
            samples.push(s);
        }
    }
    Ok(Results {
        object: cfg.object.as_ref().map_or_else(|| "embedded".into(), |p| p.display().to_string()),
        capture: cap.summary,
        rounds: cfg.rounds,
        stats_were_on,
        samples,
    })
}
