//! What is attached to an interface: TCX programs (queried with
//! BPF_PROG_QUERY from inside the interface's namespace, since interface
//! indexes repeat across namespaces), XDP, and a clsact qdisc with its
//! netlink TC filters. Used to wait for the monitor to attach and to check
//! that it leaves nothing behind.

use aya::programs::{tc::TcAttachType, SchedClassifier};
use serde_json::Value;

use crate::{cmd, netns::NetNs};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attachments {
    /// Program ids on the TCX ingress and egress hooks.
    pub tcx_ingress: Vec<u32>,
    pub tcx_egress: Vec<u32>,
    /// XDP program id and mode ("driver"/"generic"/...), if any.
    pub xdp: Option<(u32, String)>,
    /// A clsact qdisc is present.
    pub clsact: bool,
    /// Program ids of netlink (non-TCX) TC filters, ingress then egress.
    pub tc_filters: Vec<u32>,
}

impl Attachments {
    pub fn of(ns: &NetNs, iface: &str) -> Attachments {
        let tcx = |t: TcAttachType| -> Vec<u32> {
            ns.run(|| SchedClassifier::query_tcx(iface, t))
                .unwrap_or_else(|e| panic!("query TCX {t:?} programs of {iface} in {}: {e}", ns.name()))
                .1
                .iter()
                .map(|p| p.id())
                .collect()
        };
        let link = json(&ns.exec(&["ip", "-j", "-d", "link", "show", "dev", iface]));
        let xdp = link[0].get("xdp").map(|x| {
            let id = x["prog"]["id"].as_u64().unwrap_or(0) as u32;
            let mode = match x["mode"].as_u64() {
                Some(1) => "driver".to_owned(),
                Some(2) => "generic".to_owned(),
                Some(3) => "offload".to_owned(),
                _ => x["mode"].to_string(),
            };
            (id, mode)
        });
        let qdiscs = json(&ns.exec(&["tc", "-j", "qdisc", "show", "dev", iface]));
        let clsact = qdiscs.as_array().is_some_and(|a| a.iter().any(|q| q["kind"] == "clsact"));
        let mut tc_filters = Vec::new();
        if clsact {
            for dir in ["ingress", "egress"] {
                let filters = json(&ns.exec(&["tc", "-j", "filter", "show", "dev", iface, dir]));
                for f in filters.as_array().into_iter().flatten() {
                    if let Some(id) = f.pointer("/options/prog/id").and_then(Value::as_u64) {
                        tc_filters.push(id as u32);
                    }
                }
            }
        }
        Attachments {
            tcx_ingress: tcx(TcAttachType::Ingress),
            tcx_egress: tcx(TcAttachType::Egress),
            xdp,
            clsact,
            tc_filters,
        }
    }

    /// Whether any program or a clsact qdisc is attached.
    pub fn any(&self) -> bool {
        !self.tcx_ingress.is_empty()
            || !self.tcx_egress.is_empty()
            || self.xdp.is_some()
            || self.clsact
            || !self.tc_filters.is_empty()
    }

    /// Every program id attached, on any hook.
    pub fn program_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> =
            self.tcx_ingress.iter().chain(&self.tcx_egress).chain(&self.tc_filters).copied().collect();
        ids.extend(self.xdp.as_ref().map(|(id, _)| *id));
        ids
    }
}

/// Program ids among `ids` that are still loaded in the kernel, and the ids
/// of links (`bpftool link show`) that still point at one of them. A link
/// holds its program, so no loaded program means no link either; programs
/// are asked for one by one because whole listings race with other tests'
/// programs coming and going (bpftool then fails on a vanished id).
pub fn still_loaded(ids: &[u32]) -> (Vec<u32>, Vec<u64>) {
    let loaded: Vec<u32> = ids
        .iter()
        .copied()
        .filter(|id| {
            let out = cmd::output(std::process::Command::new("bpftool").args([
                "-j",
                "prog",
                "show",
                "id",
                &id.to_string(),
            ]));
            out.status.success()
        })
        .collect();
    if loaded.is_empty() {
        return (loaded, Vec::new());
    }
    let links = json(&retry_listing(&["-j", "link", "show"]));
    let linked: Vec<u64> = links
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["prog_id"].as_u64().is_some_and(|p| ids.contains(&(p as u32))))
        .filter_map(|l| l["id"].as_u64())
        .collect();
    (loaded, linked)
}

/// A bpftool listing, retried while objects vanish under it.
fn retry_listing(args: &[&str]) -> String {
    for _ in 0..10 {
        let out = cmd::output(std::process::Command::new("bpftool").args(args));
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    cmd::run_args("bpftool", args)
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("tool printed invalid JSON ({e}): {s}"))
}

/// Panics unless `iface` has nothing attached and none of the programs seen
/// there while the monitor ran (`during`) is still loaded or linked.
/// Program release after the last fd closes can lag a moment: polls 2 s.
pub fn assert_left_nothing(ns: &NetNs, iface: &str, during: &Attachments) {
    let after = Attachments::of(ns, iface);
    assert!(!after.any(), "after the monitor exited, {iface} in {} still has {after:?}", ns.name());
    let ids = during.program_ids();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let (progs, links) = still_loaded(&ids);
        if progs.is_empty() && links.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after the monitor exited, its programs {progs:?} are still loaded and links {links:?} still exist"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
