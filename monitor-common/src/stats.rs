//! Per-CPU counters of the kernel programs: every packet that is not tracked
//! as a flow, and every event that could not be delivered, is counted here by
//! reason, so that nothing is dropped silently.

/// Index into the `STATS` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stat {
    /// Packets seen by any of our programs.
    Packets = 0,
    /// Packets counted into a flow.
    Tracked,
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    NotIp,
    /// Frame shorter than an Ethernet header.
    ShortEthernet,
    /// Truncated VLAN tag.
    ShortVlan,
    /// More VLAN tags than the parser follows.
    TooManyVlans,
    /// Truncated IPv4 header.
    ShortIpv4,
    /// IPv4 IHL below 5, or past the end of the packet.
    BadIhl,
    /// Truncated IPv6 header.
    ShortIpv6,
    /// Truncated or malformed IPv6 extension header.
    BadIpv6Ext,
    /// More IPv6 extension headers than the parser follows.
    TooManyIpv6Ext,
    /// IPv4/IPv6 fragment other than the first: carries no ports.
    LaterFragment,
    /// Truncated TCP, UDP or ICMP header.
    ShortL4,
    /// IP protocol that is not tracked (GRE, ESP, SCTP, ...).
    OtherProtocol,
    /// ICMP error whose quoted packet is truncated or carries IPv6 extension headers.
    BadIcmpQuote,
    /// ICMP error quoting a flow not in the table.
    IcmpErrorNoFlow,
    /// ICMP errors attributed to a flow.
    IcmpErrorMatched,
    /// Insert into the flow table failed.
    FlowMapFull,
    /// A flow event could not be reserved in the ring buffer.
    RingBufFull,
    /// Egress packets skipped because they were counted at ingress (forwarded).
    ForwardedSkipped,
    /// Wire IPv4/IPv6 version field does not match the ethertype.
    BadIpVersion,
    /// DNS messages from port 53 copied to user space.
    DnsCopied,
    /// DNS payloads longer than `DNS_PAYLOAD_MAX`, copied cut short.
    DnsTruncated,
    /// DNS messages not copied: over the per-CPU rate budget.
    DnsRateLimited,
    /// DNS messages not copied: the DNS ring buffer was full.
    DnsRingFull,
    /// DNS messages not copied: reading the payload failed.
    DnsLoadFailed,
    /// Packets counted in a per-CPU cache slot whose flow had left the table
    /// by the time the slot was written back: expired by user space (which
    /// had read and reported them) or evicted from a full table.
    CacheStale,
}

impl Stat {
    pub const COUNT: u32 = 27;

    pub const ALL: [Stat; Self::COUNT as usize] = [
        Stat::Packets,
        Stat::Tracked,
        Stat::NotIp,
        Stat::ShortEthernet,
        Stat::ShortVlan,
        Stat::TooManyVlans,
        Stat::ShortIpv4,
        Stat::BadIhl,
        Stat::ShortIpv6,
        Stat::BadIpv6Ext,
        Stat::TooManyIpv6Ext,
        Stat::LaterFragment,
        Stat::ShortL4,
        Stat::OtherProtocol,
        Stat::BadIcmpQuote,
        Stat::IcmpErrorNoFlow,
        Stat::IcmpErrorMatched,
        Stat::FlowMapFull,
        Stat::RingBufFull,
        Stat::ForwardedSkipped,
        Stat::BadIpVersion,
        Stat::DnsCopied,
        Stat::DnsTruncated,
        Stat::DnsRateLimited,
        Stat::DnsRingFull,
        Stat::DnsLoadFailed,
        Stat::CacheStale,
    ];

    /// A stable snake_case name, used in JSON output and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Stat::Packets => "packets",
            Stat::Tracked => "tracked",
            Stat::NotIp => "not_ip",
            Stat::ShortEthernet => "short_ethernet",
            Stat::ShortVlan => "short_vlan",
            Stat::TooManyVlans => "too_many_vlans",
            Stat::ShortIpv4 => "short_ipv4",
            Stat::BadIhl => "bad_ihl",
            Stat::ShortIpv6 => "short_ipv6",
            Stat::BadIpv6Ext => "bad_ipv6_ext",
            Stat::TooManyIpv6Ext => "too_many_ipv6_ext",
            Stat::LaterFragment => "later_fragment",
            Stat::ShortL4 => "short_l4",
            Stat::OtherProtocol => "other_protocol",
            Stat::BadIcmpQuote => "bad_icmp_quote",
            Stat::IcmpErrorNoFlow => "icmp_error_no_flow",
            Stat::IcmpErrorMatched => "icmp_error_matched",
            Stat::FlowMapFull => "flow_map_full",
            Stat::RingBufFull => "ringbuf_full",
            Stat::ForwardedSkipped => "forwarded_skipped",
            Stat::BadIpVersion => "bad_ip_version",
            Stat::DnsCopied => "dns_copied",
            Stat::DnsTruncated => "dns_truncated",
            Stat::DnsRateLimited => "dns_rate_limited",
            Stat::DnsRingFull => "dns_ring_full",
            Stat::DnsLoadFailed => "dns_load_failed",
            Stat::CacheStale => "cache_stale",
        }
    }

    /// Whether this counter is an error or loss (as opposed to volume).
    pub const fn is_error(self) -> bool {
        !matches!(
            self,
            Stat::Packets
                | Stat::Tracked
                | Stat::NotIp
                | Stat::OtherProtocol
                | Stat::LaterFragment
                | Stat::IcmpErrorMatched
                | Stat::ForwardedSkipped
                | Stat::DnsCopied
                | Stat::CacheStale
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "Stat::ALL[{i}] is {s:?}: keep ALL in declaration order");
        }
    }
}
