//! What only user space needs of this crate (the `user` feature): aya's
//! `Pod` for the types read from maps and ring buffers, and the conversions
//! between the kernel's memory-order address words and `IpAddr` or bytes.

use core::net::IpAddr;

use crate::{
    flow_cache_hash, flow_cache_index, DnsEvent, FlowCacheSlot, FlowEvent, FlowKey, FlowValue, IfaceConfig,
    TokenBucket,
};

// SAFETY: all of these are repr(C), padding-free (asserted beside each) and
// valid for every bit pattern.
unsafe impl aya::Pod for FlowKey {}
unsafe impl aya::Pod for FlowValue {}
unsafe impl aya::Pod for FlowEvent {}
unsafe impl aya::Pod for IfaceConfig {}
unsafe impl aya::Pod for DnsEvent {}
unsafe impl aya::Pod for TokenBucket {}
unsafe impl aya::Pod for FlowCacheSlot {}

/// An address as the parser holds it: four memory-order words, IPv4
/// mapped into IPv6.
pub fn addr_words(ip: IpAddr) -> [u32; 4] {
    let octets = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    core::array::from_fn(|i| {
        u32::from_ne_bytes([octets[4 * i], octets[4 * i + 1], octets[4 * i + 2], octets[4 * i + 3]])
    })
}

/// The parser's memory-order address words as the key's bytes.
pub fn addr_bytes(words: &[u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (chunk, w) in out.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&w.to_ne_bytes());
    }
    out
}

/// [`flow_cache_index`] of two endpoints, as the kernel computes it from a
/// packet, so that tests and benchmarks can pick flows that share a slot.
pub fn flow_cache_index_of(a: IpAddr, pa: u16, b: IpAddr, pb: u16, proto: u8) -> u32 {
    flow_cache_index(&addr_words(a), &addr_words(b), pa, pb, proto)
}

/// The slot of the same flow in a cache of `slots` slots (a power of two),
/// as a kernel object built with that size computes it.
pub fn flow_cache_index_in(slots: u32, a: IpAddr, pa: u16, b: IpAddr, pb: u16, proto: u8) -> u32 {
    assert!(slots.is_power_of_two() && slots > 1, "a cache of {slots} slots: not a power of two");
    (flow_cache_hash(&addr_words(a), &addr_words(b), pa, pb, proto) >> (64 - slots.trailing_zeros())) as u32
}
