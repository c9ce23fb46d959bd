//! Kernel programs of the monitor: XDP and TC (ingress and egress) entry
//! points that parse each packet and count it into the flow table.
//!
//! Every entry is a thin wrapper around `try_*`: whatever happens, the packet
//! passes unchanged (XDP_PASS / TC_ACT_UNSPEC), and a failure is counted.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod dns;
#[cfg(target_arch = "bpf")]
mod flow;

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        bindings::{xdp_action, TC_ACT_UNSPEC},
        macros::{classifier, xdp},
        programs::{TcContext, XdpContext},
    };
    use monitor_common::{flow::is_dns_answer, parse, Stat};

    use crate::{dns, flow};

    /// Pulls the headers into the linear part of the skb when they are not
    /// (direct packet access only sees the linear part). Content is unchanged.
    const PULL_LEN: u32 = 128;

    #[xdp]
    pub fn xdp_ingress(ctx: XdpContext) -> u32 {
        try_xdp(&ctx);
        xdp_action::XDP_PASS
    }

    #[classifier]
    pub fn tc_ingress(ctx: TcContext) -> i32 {
        try_tc(&ctx, false);
        TC_ACT_UNSPEC
    }

    #[classifier]
    pub fn tc_egress(ctx: TcContext) -> i32 {
        try_tc(&ctx, true);
        TC_ACT_UNSPEC
    }

    /// Benchmark baseline: the same parse, then one per-CPU counter. The
    /// parsed packet goes through `black_box`: unused, the compiler would
    /// drop most of the parse and the baseline would time bounds checks only.
    #[xdp]
    pub fn xdp_baseline(ctx: XdpContext) -> u32 {
        flow::count(Stat::Packets, 1);
        if let Ok(pkt) = parse::parse(ctx.data(), ctx.data_end()) {
            core::hint::black_box(&pkt);
            flow::count(Stat::Tracked, 1);
        }
        xdp_action::XDP_PASS
    }

    #[classifier]
    pub fn tc_baseline(ctx: TcContext) -> i32 {
        flow::count(Stat::Packets, 1);
        if let Ok(pkt) = parse::parse(ctx.data(), ctx.data_end()) {
            core::hint::black_box(&pkt);
            flow::count(Stat::Tracked, 1);
        }
        TC_ACT_UNSPEC
    }

    #[inline(always)]
    fn try_xdp(ctx: &XdpContext) {
        flow::count(Stat::Packets, 1);
        let (data, end) = (ctx.data(), ctx.data_end());
        match parse::parse(data, end) {
            // Native XDP sees one wire frame at a time.
            Ok(pkt) => {
                let len = (end - data) as u32;
                let ifindex = ctx.ingress_ifindex() as u32;
                flow::track(&pkt, 1, len as u64, ifindex);
                if is_dns_answer(&pkt) {
                    dns::capture(ctx, &pkt, len, ifindex);
                }
            }
            Err(stat) => flow::count(stat, 1),
        }
    }

    #[inline(always)]
    fn try_tc(ctx: &TcContext, egress: bool) {
        flow::count(Stat::Packets, 1);
        let skb = ctx.skb.skb;
        let (len, ifindex, ingress_ifindex, gso_segs, vlan_present) = unsafe {
            ((*skb).len, (*skb).ifindex, (*skb).ingress_ifindex, (*skb).gso_segs, (*skb).vlan_present)
        };
        if egress && flow::counted_at_ingress(ingress_ifindex) {
            flow::count(Stat::ForwardedSkipped, 1);
            return;
        }
        let linear = (ctx.data_end() - ctx.data()) as u32;
        if linear < PULL_LEN && len > linear {
            let want = if len < PULL_LEN { len } else { PULL_LEN };
            unsafe { aya_ebpf::helpers::bpf_skb_pull_data(skb as *mut _, want) };
        }
        match parse::parse(ctx.data(), ctx.data_end()) {
            Ok(pkt) => {
                // A GSO/GRO super-packet: count its wire segments, and add back
                // the headers that each segment after the first carries.
                let segs = if gso_segs > 1 { gso_segs as u64 } else { 1 };
                let mut bytes = len as u64 + (segs - 1) * pkt.hdr_len as u64;
                // An accelerated VLAN tag lives in skb metadata, not in the
                // data: its 4 bytes were on the wire of every segment.
                if vlan_present != 0 {
                    bytes += 4 * segs;
                }
                flow::track(&pkt, segs, bytes, ifindex);
                if is_dns_answer(&pkt) {
                    dns::capture(ctx, &pkt, len, ifindex);
                }
            }
            Err(stat) => flow::count(stat, 1),
        }
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("monitor-ebpf builds only for bpfel-unknown-none: use `cargo xtask build`");
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
