//! nftables rules inside a test namespace, to make connections fail the ways
//! real firewalls do: silently dropped, reset, or refused with an ICMP error.

use crate::{cmd, netns::NetNs};

/// Loads `ruleset` (nft syntax) into the namespace with `nft -f -`.
pub fn apply(ns: &NetNs, ruleset: &str) {
    cmd::run_with_stdin(ns.command("nft").args(["-f", "-"]), ruleset);
}

/// A ruleset with one `inet` table whose input chain holds `rules`, one per line.
pub fn input_rules(rules: &[&str]) -> String {
    chain_rules("input", rules)
}

/// The same for the forward chain: what a router does to traffic it passes on.
pub fn forward_rules(rules: &[&str]) -> String {
    chain_rules("forward", rules)
}

fn chain_rules(hook: &str, rules: &[&str]) -> String {
    let mut s = format!(
        "table inet monitor_test {{\n  chain {hook} {{\n    type filter hook {hook} priority filter; policy accept;\n"
    );
    for r in rules {
        s.push_str("    ");
        s.push_str(r);
        s.push('\n');
    }
    s.push_str("  }\n}\n");
    s
}

/// Drops TCP segments to `port` without an answer.
pub fn drop_tcp(port: u16) -> String {
    format!("tcp dport {port} drop")
}

/// Answers TCP segments to `port` with a reset.
pub fn reset_tcp(port: u16) -> String {
    format!("tcp dport {port} reject with tcp reset")
}

/// Answers TCP to `port` with ICMP/ICMPv6 "administratively prohibited"
/// (`icmpx` picks the family of the packet).
pub fn prohibit_tcp(port: u16) -> String {
    format!("tcp dport {port} reject with icmpx type admin-prohibited")
}

/// Answers TCP to `port` over IPv4 only with ICMP type 3 code 13.
pub fn prohibit_tcp_v4(port: u16) -> String {
    format!("meta nfproto ipv4 tcp dport {port} reject with icmp type admin-prohibited")
}

/// Answers TCP to `port` with ICMP/ICMPv6 port-unreachable: nftables'
/// plain `reject`, as a host refuses what it does not serve.
pub fn reject_tcp(port: u16) -> String {
    format!("tcp dport {port} reject")
}
