//! DNS answers to user space, so that rules naming endpoints by FQDN match
//! the addresses this host itself resolved. Only packets from port 53 with a
//! payload pay anything here; every other packet pays one comparison.

use aya_ebpf::{
    helpers::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
    macros::map,
    maps::{PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use monitor_common::{
    event_kind,
    flow::{dir_side, key_of},
    parse::{payload_len, Packet},
    DnsEvent, Stat, TokenBucket, DNS_BURST, DNS_EVENTS_BYTES, DNS_PAYLOAD_MAX, DNS_RATE_PER_CPU,
};

use crate::flow::count;

#[map]
static DNS_EVENTS: RingBuf = RingBuf::with_byte_size(DNS_EVENTS_BYTES, 0);

#[map]
static DNS_BUDGET: PerCpuArray<TokenBucket> = PerCpuArray::with_max_entries(1, 0);

const NS_PER_SEC: u64 = 1_000_000_000;

/// Reads packet bytes past the linear part, as each hook must.
pub trait LoadBytes {
    /// Copies `len` bytes at `offset` to `dst`; negative on failure.
    fn load(&self, offset: u32, dst: *mut u8, len: u32) -> i64;
}

impl LoadBytes for TcContext {
    #[inline(always)]
    fn load(&self, offset: u32, dst: *mut u8, len: u32) -> i64 {
        unsafe { bpf_skb_load_bytes(self.skb.skb as *const _, offset, dst as *mut _, len) }
    }
}

impl LoadBytes for XdpContext {
    #[inline(always)]
    fn load(&self, offset: u32, dst: *mut u8, len: u32) -> i64 {
        unsafe { bpf_xdp_load_bytes(self.ctx as *mut _, offset, dst as *mut _, len) }
    }
}

/// Spends one token of this CPU's budget, refilled at `DNS_RATE_PER_CPU`.
#[inline(always)]
fn take_token(now: u64) -> bool {
    let Some(b) = DNS_BUDGET.get_ptr_mut(0) else { return false };
    let b = unsafe { &mut *b };
    let elapsed = now.wrapping_sub(b.last_ns);
    if elapsed >= NS_PER_SEC {
        b.tokens = DNS_BURST;
        b.last_ns = now;
    } else {
        let refill = elapsed * DNS_RATE_PER_CPU / NS_PER_SEC;
        // Time is only consumed in whole tokens, so slow trickles still refill.
        if refill > 0 {
            b.tokens = if b.tokens + refill > DNS_BURST { DNS_BURST } else { b.tokens + refill };
            b.last_ns = now;
        }
    }
    if b.tokens == 0 {
        return false;
    }
    b.tokens -= 1;
    true
}

/// Copies the payload of a DNS answer (`pkt_len` bytes in the packet from
/// the Ethernet header on) into one ring-buffer event.
#[inline(always)]
pub fn capture<C: LoadBytes>(ctx: &C, pkt: &Packet, pkt_len: u32, ifindex: u32) {
    let now = unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() };
    let off = pkt.hdr_len;
    let orig_len = payload_len(pkt, pkt_len);
    if orig_len == 0 {
        return; // a bare ACK (maybe padded to the Ethernet minimum)
    }
    if !take_token(now) {
        count(Stat::DnsRateLimited, 1);
        return;
    }
    let Some(mut entry) = DNS_EVENTS.reserve::<DnsEvent>(0) else {
        count(Stat::DnsRingFull, 1);
        return;
    };
    let len = if orig_len > DNS_PAYLOAD_MAX as u32 { DNS_PAYLOAD_MAX as u32 } else { orig_len };
    // LLVM knows len >= 1 (pkt_len > off) and drops the checks below; the
    // verifier cannot know it. black_box keeps the checks on the register
    // the helper receives, so it sees 1 ..= DNS_PAYLOAD_MAX.
    let len = core::hint::black_box(len) & 0x7ff;
    if len == 0 || len > DNS_PAYLOAD_MAX as u32 {
        entry.discard(0);
        return;
    }
    let ev = entry.as_mut_ptr();
    let ret = unsafe { ctx.load(off, (*ev).payload.as_mut_ptr(), len) };
    if ret < 0 {
        entry.discard(0);
        count(Stat::DnsLoadFailed, 1);
        return;
    }
    let (key, dir) = key_of(pkt);
    unsafe {
        (*ev).header.kind = event_kind::DNS;
        (*ev).header.ifindex = ifindex;
        (*ev).header.ts_ns = now;
        (*ev).key = key;
        (*ev).len = len;
        (*ev).orig_len = orig_len;
        (*ev).tcp_seq = pkt.tcp_seq;
        (*ev).sender = dir_side(dir);
    }
    entry.submit(0);
    count(Stat::DnsCopied, 1);
    if orig_len > DNS_PAYLOAD_MAX as u32 {
        count(Stat::DnsTruncated, 1);
    }
}
