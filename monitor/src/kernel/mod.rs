//! Loading the kernel programs, attaching them, and reading what they count.
//!
//! [`Kernel`] owns the loaded object: dropping it detaches every link (TCX
//! and XDP links die with their file descriptors), so the host is left as
//! it was. [`stream`] turns the flow table and the ring buffer into a typed
//! stream of flows for the rest of the program.

pub mod batch;
pub mod iface;
mod known;
pub mod links;
pub mod listening;
pub mod stream;
pub mod table;

use std::{
    io,
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
};

use aya::{
    maps::{HashMap, Map, MapData, PerCpuArray, RingBuf},
    programs::{
        tc::{self, SchedClassifierLinkId},
        xdp::XdpLinkId,
        ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    util::KernelVersion,
    Ebpf, EbpfLoader,
};
use log::{info, warn};
use monitor_common::{maps, programs, FlowKey, FlowValue, IfaceConfig, Stat};

use crate::counters::{Counters, Emit, Family};
pub use iface::{AttachMode, Iface, IngressHook};
use links::LinkEvent;

/// The kernel object, embedded at build time (see build.rs).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor-ebpf.o"));

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("this binary was built without its kernel programs: build it with `cargo xtask build`")]
    NoObject,
    #[error(
        "loading eBPF programs needs root, or the capabilities CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: \
         run it with sudo, or grant them (deploy/monitor.service shows how)"
    )]
    NotPermitted,
    #[error(
        "this kernel exposes no BTF (/sys/kernel/btf/vmlinux is missing): the monitor needs a kernel \
         built with CONFIG_DEBUG_INFO_BTF=y (Linux 5.8 or later; 6.6+ recommended for TCX)"
    )]
    NoBtf,
    #[error("interface `{0}` does not exist: `ip link` lists the interfaces of this host")]
    NoSuchInterface(String),
    #[error("no interface is up apart from loopback: name one with --iface")]
    NoInterfaces,
    #[error("cannot read {0}: {1}")]
    Sysfs(PathBuf, #[source] io::Error),
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] aya::EbpfError),
    /// `detail` keeps the end of the verifier log, where the reason is.
    #[error("the kernel refused program `{prog}`: {detail}")]
    Program { prog: &'static str, detail: String },
    #[error("attaching {what} to interface {iface} failed: {source}")]
    Attach {
        what: &'static str,
        iface: String,
        #[source]
        source: ProgramError,
    },
    #[error("map {0} is missing from the kernel object")]
    MissingMap(&'static str),
    #[error("program {0} is missing from the kernel object")]
    MissingProgram(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("reading the flow table: {0}")]
    Walk(#[source] io::Error),
    #[error("watching interfaces come and go (rtnetlink, RTMGRP_LINK): {0}")]
    LinkWatch(#[source] io::Error),
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Checks what can be checked before touching the kernel, so that a missing
/// privilege or BTF gives a clear message instead of an errno.
pub fn preflight() -> Result<(), KernelError> {
    if OBJECT.is_empty() {
        return Err(KernelError::NoObject);
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(KernelError::NoBtf);
    }
    let caps = effective_capabilities().unwrap_or(0);
    let needed = [CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON];
    if !needed.iter().all(|c| caps & (1u64 << c) != 0) {
        return Err(KernelError::NotPermitted);
    }
    Ok(())
}

fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// Where and how the programs were attached to one interface.
#[derive(Debug)]
pub struct Attachment {
    pub iface: Iface,
    pub ingress: IngressHook,
    /// We added a clsact qdisc (pre-6.6 kernels) and must remove it.
    added_clsact: bool,
    /// The links, to release them when the interface goes away.
    links: Vec<LinkRef>,
}

#[derive(Debug)]
enum LinkRef {
    Tc(&'static str, SchedClassifierLinkId),
    Xdp(XdpLinkId),
}

/// What one link event changed (see [`Kernel::link_event`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkOutcome {
    pub attached: u32,
    /// Interfaces we should watch and could not attach to (logged).
    pub failed: u32,
    pub dropped: u32,
}

impl LinkOutcome {
    fn add(&mut self, o: LinkOutcome) {
        self.attached += o.attached;
        self.failed += o.failed;
        self.dropped += o.dropped;
    }
}

pub struct LoadOptions {
    /// Interface names; empty means every interface that is up, but loopback.
    pub ifaces: Vec<String>,
    pub mode: AttachMode,
    /// Flow table size; 0 keeps the compiled-in default.
    pub max_flows: u32,
}

/// The loaded and attached kernel side.
pub struct Kernel {
    /// The programs and their links; `None` once [`Kernel::detach`] ran.
    /// The maps user space reads were taken out of it and outlive it.
    ebpf: Option<Ebpf>,
    flows: Map,
    flow_cache: Map,
    stats: PerCpuArray<MapData, u64>,
    attachments: Vec<Attachment>,
    /// `--iface` names (empty: every interface up but loopback) and
    /// `--attach`, for interfaces that appear after the start.
    wanted: Vec<String>,
    mode: AttachMode,
    /// Names attached to at some point, to say "re-created".
    seen: std::collections::HashSet<String>,
    clock: KernelClock,
    /// The flow table's size (`--max-flows`, or the compiled-in default).
    capacity: u32,
}

impl Kernel {
    pub fn load(opts: &LoadOptions) -> Result<Kernel, KernelError> {
        preflight()?;
        // Resolve interfaces before loading anything: a typo fails fast.
        let ifaces = if opts.ifaces.is_empty() {
            iface::all_up()?
        } else {
            opts.ifaces.iter().map(|n| iface::by_name(n)).collect::<Result<Vec<_>, _>>()?
        };
        let mut ebpf = load_object(opts.max_flows)?;
        for name in [programs::TC_INGRESS, programs::TC_EGRESS] {
            let p: &mut SchedClassifier = program(&mut ebpf, name)?;
            p.load().map_err(|e| refused(name, e))?;
        }
        let xdp: &mut Xdp = program(&mut ebpf, programs::XDP_INGRESS)?;
        xdp.load().map_err(|e| refused(programs::XDP_INGRESS, e))?;

        let mut attachments = Vec::new();
        for iface in ifaces {
            let a = attach(&mut ebpf, iface, opts.mode)?;
            info!(
                "attached to {} (ifindex {}): ingress {}, egress tc",
                a.iface.name,
                a.iface.index,
                a.ingress.as_str()
            );
            set_iface_config(&mut ebpf, a.iface.index, true)?;
            attachments.push(a);
        }
        let flows = ebpf.take_map(maps::FLOWS).ok_or(KernelError::MissingMap(maps::FLOWS))?;
        let flow_cache = ebpf.take_map(maps::FLOW_CACHE).ok_or(KernelError::MissingMap(maps::FLOW_CACHE))?;
        let stats = ebpf.take_map(maps::STATS).ok_or(KernelError::MissingMap(maps::STATS))?;
        let stats =
            PerCpuArray::try_from(stats).map_err(|source| KernelError::Map { name: maps::STATS, source })?;
        let seen = attachments.iter().map(|a| a.iface.name.clone()).collect();
        Ok(Kernel {
            ebpf: Some(ebpf),
            flows,
            flow_cache,
            stats,
            attachments,
            wanted: opts.ifaces.clone(),
            mode: opts.mode,
            seen,
            clock: KernelClock::new(),
            capacity: if opts.max_flows > 0 { opts.max_flows } else { monitor_common::FLOWS_MAX_ENTRIES },
        })
    }

    /// Whether an interface that appears is one to attach to.
    fn wants(&self, name: &str, loopback: bool) -> bool {
        if self.wanted.is_empty() {
            !loopback
        } else {
            self.wanted.iter().any(|w| w == name)
        }
    }

    /// Follows one link event: attaches to a wanted interface that is up
    /// and new (a new ifindex), and forgets one that is gone. A failure to
    /// attach is logged and counted, never fatal. After [`Kernel::detach`]
    /// it does nothing.
    pub fn link_event(&mut self, ev: &LinkEvent) -> LinkOutcome {
        let mut out = LinkOutcome::default();
        if self.ebpf.is_none() {
            return out;
        }
        match ev {
            LinkEvent::Present { index, name, up, loopback } => {
                if let Some(a) = self.attachments.iter_mut().find(|a| a.iface.index == *index) {
                    if !name.is_empty() && a.iface.name != *name {
                        info!("{} (ifindex {index}) is now called {name}", a.iface.name);
                        a.iface.name.clone_from(name);
                    }
                } else if *up && !name.is_empty() && self.wants(name, *loopback) {
                    let iface =
                        Iface { name: name.clone(), index: *index, physical: iface::is_physical(name) };
                    out.add(self.attach_new(iface));
                }
            }
            LinkEvent::Gone { index, name } => {
                if self.forget(*index) {
                    warn!("{name} (ifindex {index}) disappeared: no longer watched until it comes back");
                    out.dropped += 1;
                }
            }
            LinkEvent::Lost => {
                warn!("link events were lost; listing the interfaces again");
                out.add(self.resync());
            }
        }
        out
    }

    /// Lists the interfaces afresh: forgets the attached ones that are gone
    /// and attaches to the wanted ones that are up and not yet attached.
    /// Run once the link events are subscribed to (an interface may have
    /// come between the start and then) and whenever events were lost.
    pub fn resync(&mut self) -> LinkOutcome {
        let mut out = LinkOutcome::default();
        if self.ebpf.is_none() {
            return out;
        }
        let present = match iface::present() {
            Ok(p) => p,
            Err(e) => {
                warn!("{e}");
                return out;
            }
        };
        let gone: Vec<(u32, String)> = self
            .attachments
            .iter()
            .filter(|a| !present.iter().any(|p| p.iface.index == a.iface.index))
            .map(|a| (a.iface.index, a.iface.name.clone()))
            .collect();
        for (index, name) in gone {
            out.add(self.link_event(&LinkEvent::Gone { index, name }));
        }
        for p in present {
            let ev = LinkEvent::Present {
                index: p.iface.index,
                name: p.iface.name,
                up: p.up,
                loopback: p.loopback,
            };
            out.add(self.link_event(&ev));
        }
        out
    }

    fn attach_new(&mut self, iface: Iface) -> LinkOutcome {
        let mut out = LinkOutcome::default();
        let Some(ebpf) = self.ebpf.as_mut() else { return out };
        let (name, index) = (iface.name.clone(), iface.index);
        let how = if self.seen.contains(&name) { "re-created" } else { "appeared" };
        match attach(ebpf, iface, self.mode).and_then(|a| set_iface_config(ebpf, index, true).map(|()| a)) {
            Ok(a) => {
                info!("{name} {how} (ifindex {index}): attached, ingress {}, egress tc", a.ingress.as_str());
                self.seen.insert(name);
                self.attachments.push(a);
                out.attached += 1;
            }
            Err(e) => {
                warn!("{name} {how} (ifindex {index}): not watched: {e}");
                out.failed += 1;
            }
        }
        out
    }

    /// Drops the attachment record of a link that is gone, its links and
    /// its IFACE_CONFIG entry. Whether it was attached.
    fn forget(&mut self, index: u32) -> bool {
        let Some(pos) = self.attachments.iter().position(|a| a.iface.index == index) else { return false };
        let a = self.attachments.remove(pos);
        if let Some(ebpf) = self.ebpf.as_mut() {
            // The kernel detached them with the device; this frees ours.
            for link in a.links {
                let r = match link {
                    LinkRef::Tc(prog, id) => program::<SchedClassifier>(ebpf, prog).and_then(|p| {
                        p.detach(id).map_err(|e| KernelError::Attach {
                            what: prog,
                            iface: a.iface.name.clone(),
                            source: e,
                        })
                    }),
                    LinkRef::Xdp(id) => program::<Xdp>(ebpf, programs::XDP_INGRESS).and_then(|p| {
                        p.detach(id).map_err(|e| KernelError::Attach {
                            what: "xdp",
                            iface: a.iface.name.clone(),
                            source: e,
                        })
                    }),
                };
                if let Err(e) = r {
                    log::debug!("releasing a link of {}: {e}", a.iface.name);
                }
            }
            if let Err(e) = set_iface_config(ebpf, index, false) {
                log::debug!("{}: {e}", a.iface.name);
            }
        }
        true
    }

    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    pub fn clock(&self) -> KernelClock {
        self.clock
    }

    /// How many flows the kernel table holds at most.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Takes the ring buffer of flow events (once, before [`Kernel::detach`]).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, KernelError> {
        self.take_ring(maps::EVENTS)
    }

    /// Takes the ring buffer of DNS answers (once, before [`Kernel::detach`]).
    pub fn take_dns_events(&mut self) -> Result<RingBuf<MapData>, KernelError> {
        self.take_ring(maps::DNS_EVENTS)
    }

    fn take_ring(&mut self, name: &'static str) -> Result<RingBuf<MapData>, KernelError> {
        let map = self.ebpf.as_mut().and_then(|e| e.take_map(name)).ok_or(KernelError::MissingMap(name))?;
        RingBuf::try_from(map).map_err(|source| KernelError::Map { name, source })
    }

    /// Detaches every program and waits until none still runs, so that the
    /// maps (which stay readable) no longer change: a read after this sees
    /// every packet that was counted, each in exactly one place (entry,
    /// cache slot or a counter), and the counters agree with the table.
    ///
    /// Closing a link's last fd detaches it before close(2) returns, but a
    /// program already running on another CPU may still finish its packet.
    /// Programs run inside RCU read-side sections (softirq or
    /// `rcu_read_lock`), so one RCU grace period, which
    /// `membarrier(MEMBARRIER_CMD_GLOBAL)` waits for, outlasts them.
    pub fn detach(&mut self) {
        let Some(ebpf) = self.ebpf.take() else { return };
        drop(ebpf);
        // Links are gone with `ebpf`; a clsact qdisc added through netlink
        // (kernels before 6.6) would outlive them, so remove ours.
        for a in self.attachments.iter().filter(|a| a.added_clsact) {
            let _ = Command::new("tc").args(["qdisc", "del", "dev", &a.iface.name, "clsact"]).status();
        }
        wait_for_running_programs();
    }

    /// Reads the next chunk of the flow table, cached counts included
    /// (see [`table::Reader`]; a new `Reader` starts a new read).
    pub fn read_chunk(
        &self,
        reader: &mut table::Reader,
        out: &mut Vec<(FlowKey, FlowValue)>,
    ) -> Result<(), KernelError> {
        reader.next_chunk(&self.flows, &self.flow_cache, out)
    }

    /// Deletes flows from the table (expiry). Returns how many were already
    /// gone: the LRU map evicts entries whenever it is full, so a key read a
    /// moment ago may have left since (any sender can cause that, by filling
    /// the table), which is no error.
    pub fn remove(&mut self, keys: &[FlowKey]) -> Result<usize, KernelError> {
        let mut map: HashMap<&mut MapData, FlowKey, FlowValue> = HashMap::try_from(&mut self.flows)
            .map_err(|source| KernelError::Map { name: maps::FLOWS, source })?;
        let mut gone = 0;
        for k in keys {
            match map.remove(k) {
                Ok(()) => {}
                // aya reports the delete's ENOENT as a syscall error.
                Err(aya::maps::MapError::KeyNotFound) => gone += 1,
                Err(aya::maps::MapError::SyscallError(e)) if e.io_error.kind() == io::ErrorKind::NotFound => {
                    gone += 1
                }
                Err(source) => return Err(KernelError::Map { name: maps::FLOWS, source }),
            }
        }
        Ok(gone)
    }

    /// The kernel counters, summed over CPUs.
    pub fn stats(&self) -> Result<KernelStats, KernelError> {
        let mut counts = [0u64; Stat::COUNT as usize];
        for (i, c) in counts.iter_mut().enumerate() {
            let per_cpu = self
                .stats
                .get(&(i as u32), 0)
                .map_err(|source| KernelError::Map { name: maps::STATS, source })?;
            *c = per_cpu.iter().sum();
        }
        let interfaces = self
            .attachments
            .iter()
            .map(|a| AttachedIface { name: a.iface.name.clone(), index: a.iface.index, ingress: a.ingress })
            .collect();
        Ok(KernelStats { counts, interfaces })
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Waits one RCU grace period (see [`Kernel::detach`]). Kernels built with
/// `nohz_full` refuse MEMBARRIER_CMD_GLOBAL; a program's run on one packet
/// takes microseconds, so there a short sleep stands in for it.
fn wait_for_running_programs() {
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: membarrier takes two integers and touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0 as libc::c_long) };
    if rc != 0 {
        log::debug!("membarrier: {}; sleeping 50 ms instead", io::Error::last_os_error());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Loads the embedded object (maps created, programs not yet loaded nor
/// attached). `max_flows` of 0 keeps the compiled-in table size. Tests and
/// benchmarks use it to run the programs through BPF_PROG_TEST_RUN.
pub fn load_object(max_flows: u32) -> Result<Ebpf, KernelError> {
    preflight()?;
    raise_memlock();
    let mut loader = EbpfLoader::new();
    if max_flows > 0 {
        loader.map_max_entries(maps::FLOWS, max_flows);
    }
    loader.load(OBJECT).map_err(|e| match &e {
        aya::EbpfError::MapError(aya::maps::MapError::CreateError { io_error, .. })
            if io_error.kind() == io::ErrorKind::PermissionDenied =>
        {
            KernelError::NotPermitted
        }
        _ => KernelError::Load(e),
    })
}

/// A program of the object, by name and type.
pub fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, KernelError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let p = ebpf.program_mut(name).ok_or(KernelError::MissingProgram(name))?;
    p.try_into().map_err(|e| refused(name, e))
}

/// The verifier log can run to thousands of lines; its last lines say why.
fn refused(prog: &'static str, e: ProgramError) -> KernelError {
    const KEEP: usize = 25;
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().collect();
    let detail = if lines.len() > KEEP {
        format!(
            "[{} lines of verifier log cut]\n{}",
            lines.len() - KEEP,
            lines[lines.len() - KEEP..].join("\n")
        )
    } else {
        text
    };
    KernelError::Program { prog, detail }
}

fn attach(ebpf: &mut Ebpf, iface: Iface, mode: AttachMode) -> Result<Attachment, KernelError> {
    let tcx = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
    let mut added_clsact = false;
    if !tcx {
        // Pre-TCX kernels attach through the clsact qdisc; EEXIST means it was there.
        added_clsact = tc::qdisc_add_clsact(&iface.name).is_ok();
    }
    let err = |what, source| KernelError::Attach { what, iface: iface.name.clone(), source };

    let mut links = Vec::new();
    let ingress = match mode {
        AttachMode::Tc => IngressHook::Tc,
        AttachMode::Auto if !iface.physical => IngressHook::Tc,
        AttachMode::Auto | AttachMode::Xdp => {
            let xdp: &mut Xdp = program(ebpf, programs::XDP_INGRESS)?;
            match xdp.attach_to_if_index(iface.index, XdpMode::Driver) {
                Ok(id) => {
                    links.push(LinkRef::Xdp(id));
                    IngressHook::XdpNative
                }
                Err(e) if mode == AttachMode::Auto => {
                    info!("{}: native XDP unavailable ({e}); using TC ingress", iface.name);
                    IngressHook::Tc
                }
                Err(e) => {
                    warn!("{}: native XDP unavailable ({e}); using generic (SKB) XDP", iface.name);
                    let id = xdp
                        .attach_to_if_index(iface.index, XdpMode::Skb)
                        .map_err(|e| err("xdp (generic)", e))?;
                    links.push(LinkRef::Xdp(id));
                    IngressHook::XdpGeneric
                }
            }
        }
    };
    if ingress == IngressHook::Tc {
        let p: &mut SchedClassifier = program(ebpf, programs::TC_INGRESS)?;
        let id = p.attach(&iface.name, TcAttachType::Ingress).map_err(|e| err("tc ingress", e))?;
        links.push(LinkRef::Tc(programs::TC_INGRESS, id));
    }
    let p: &mut SchedClassifier = program(ebpf, programs::TC_EGRESS)?;
    let id = p.attach(&iface.name, TcAttachType::Egress).map_err(|e| err("tc egress", e))?;
    links.push(LinkRef::Tc(programs::TC_EGRESS, id));
    Ok(Attachment { iface, ingress, added_clsact, links })
}

/// Marks `index` as attached in IFACE_CONFIG (the programs read it), or
/// removes its entry.
fn set_iface_config(ebpf: &mut Ebpf, index: u32, attached: bool) -> Result<(), KernelError> {
    let map_err = |source| KernelError::Map { name: maps::IFACE_CONFIG, source };
    let cfg = ebpf.map_mut(maps::IFACE_CONFIG).ok_or(KernelError::MissingMap(maps::IFACE_CONFIG))?;
    let mut cfg: HashMap<_, u32, IfaceConfig> = HashMap::try_from(cfg).map_err(map_err)?;
    if attached {
        cfg.insert(index, IfaceConfig { ingress_attached: 1, _pad: 0 }, 0).map_err(map_err)
    } else {
        match cfg.remove(&index) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.kind() == io::ErrorKind::NotFound => {
                Ok(())
            }
            Err(e) => Err(map_err(e)),
        }
    }
}

/// Locked-memory accounting moved to memcg in 5.11; on older kernels the
/// default limit is too small for the maps. Failing to raise it is harmless
/// on new kernels, so it is only a warning.
fn raise_memlock() {
    let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        log::debug!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels >= 5.11",
            io::Error::last_os_error()
        );
    }
}

/// The kernel counters by [`Stat`], and the interfaces attached to when
/// they were read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub counts: [u64; Stat::COUNT as usize],
    pub interfaces: Vec<AttachedIface>,
}

/// One interface the programs are attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedIface {
    pub name: String,
    pub index: u32,
    pub ingress: IngressHook,
}

impl KernelStats {
    pub fn get(&self, s: Stat) -> u64 {
        self.counts[s as usize]
    }
}

/// `monitor_kernel_packets_total{counter}`.
pub static KERNEL_PACKETS: Family = Family {
    name: "kernel_packets",
    help: "Packets the kernel programs saw, tracked, skipped (by reason) or could not report, by counter (docs/deploy.md).",
    label: "counter",
};

impl Counters for KernelStats {
    fn counters(&self, emit: &mut Emit<'_>) {
        for s in Stat::ALL {
            emit(&KERNEL_PACKETS, s.name(), self.get(s));
        }
    }
}

/// Converts `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct KernelClock {
    /// Unix-epoch ns minus monotonic ns, sampled at start.
    offset_ns: i128,
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl KernelClock {
    pub fn new() -> KernelClock {
        KernelClock { offset_ns: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC) }
    }
}

impl Default for KernelClock {
    fn default() -> Self {
        Self::new()
    }
}

impl crate::flow::Clock for KernelClock {
    fn to_system(&self, raw_ns: u64) -> SystemTime {
        let ns = (raw_ns as i128 + self.offset_ns).max(0) as u128;
        SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(ns as u64)
    }
    fn now_raw(&self) -> u64 {
        clock_ns(libc::CLOCK_MONOTONIC) as u64
    }
}
