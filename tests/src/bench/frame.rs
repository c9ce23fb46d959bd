//! The 64-byte IPv4/TCP frames the test runs feed to the programs.
//!
//! Only ever handed to BPF_PROG_TEST_RUN: these frames are never sent.

/// Ethernet (14) + IPv4 (20) + TCP (20) + 10 bytes of payload.
pub const LEN: usize = 64;

const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// A data segment of an established connection, 10.200.0.1:40000 ->
/// 10.200.0.2:443: the known-flow case.
pub fn known() -> [u8; LEN] {
    tcp([10, 200, 0, 1], 40000, [10, 200, 0, 2], 443, TCP_ACK | TCP_PSH)
}

/// Another data segment, 10.200.0.1:P -> 10.200.0.2:443, whose flow maps to
/// the same per-CPU cache slot as [`known`]'s: alternating the two makes every
/// packet miss the cache (the known-flow case at its worst: the first packet
/// of a flow in a tick).
pub fn known_twin() -> [u8; LEN] {
    let (a, b) = ([10, 200, 0, 1].into(), [10, 200, 0, 2].into());
    let slot = |port| monitor_common::flow_cache_index_of(a, port, b, 443, 6);
    let port =
        (40001..u16::MAX).find(|&p| slot(p) == slot(40000)).expect("a port whose flow shares the slot");
    tcp([10, 200, 0, 1], port, [10, 200, 0, 2], 443, TCP_ACK | TCP_PSH)
}

/// The connection attempt (SYN) number `i`: a distinct flow for every `i`
/// below 2^15 * 64,511. Sources are 10.200.128.0/17, ports from 1024 up,
/// to 10.200.0.2:443.
pub fn new_flow(i: u32) -> [u8; LEN] {
    let src = [10, 200, 128 | ((i >> 8) & 0x7f) as u8, i as u8];
    let sport = 1024 + (i >> 15) as u16;
    assert!(i >> 15 < 64_511, "new_flow({i}): source ports exhausted");
    tcp(src, sport, [10, 200, 0, 2], 443, TCP_SYN)
}

fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> [u8; LEN] {
    let mut f = [0u8; LEN];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x0b]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x0a]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((LEN - 14) as u16).to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let sum = checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[7] = 1; // sequence number
    tcp[12] = 0x50; // data offset: 5 words
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

/// The IPv4 header checksum (RFC 1071).
fn checksum(hdr: &[u8]) -> u16 {
    let mut sum: u32 = hdr.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_as_ipv4_tcp_with_a_valid_checksum() {
        for f in [known(), new_flow(0), new_flow(1 << 20)] {
            let p = etherparse::SlicedPacket::from_ethernet(&f).expect("frame parses");
            let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!("not IPv4: {p:?}") };
            assert_eq!(checksum(ip.header().slice()), 0, "IPv4 header checksum");
            assert!(matches!(p.transport, Some(etherparse::TransportSlice::Tcp(_))), "not TCP");
        }
    }

    #[test]
    fn new_flows_are_distinct() {
        let keys: std::collections::HashSet<[u8; 10]> = (0..100_000u32)
            .map(|i| {
                let f = new_flow(i);
                let mut k = [0u8; 10];
                k[..8].copy_from_slice(&f[26..34]);
                k[8..].copy_from_slice(&f[34..36]);
                k
            })
            .collect();
        assert_eq!(keys.len(), 100_000);
    }
}
