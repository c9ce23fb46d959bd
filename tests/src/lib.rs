//! Test harness: network namespaces, veth pairs, traffic and nftables.
