//! `--format nft`: one `table inet monitor`, replaced as a whole when the
//! script is loaded again.

use std::{collections::BTreeMap, fmt::Write};

use super::{ports, Options, Planned, Policy};
use crate::{host_paths::HostPaths, matrix::RuleProto};

/// The table's name. `monitor` itself is an nft keyword (`nft monitor`):
/// nft 1.0.6 refuses `table inet monitor`, quoted or not.
pub const TABLE: &str = "monitor_fw";

/// An nft set name for a matrix entity (letters, digits and `_`).
pub fn set_name(entity: &str, family: &str) -> String {
    let base: String = entity.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("{base}_{family}")
}

pub(super) fn render(hp: &HostPaths, opts: &Options, inbound: &[Planned], outbound: &[Planned]) -> String {
    let mut o = String::new();
    let addrs = hp.addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let _ = writeln!(o, "#!/usr/sbin/nft -f");
    let _ = writeln!(o, "# Firewall of host {} ({addrs}), written by `monitor matrix firewall`.", hp.host);
    for h in &opts.header {
        let _ = writeln!(o, "# {h}");
    }
    let _ = writeln!(
        o,
        "# Loading it again replaces the table: the first two lines make sure it exists, then drop it."
    );
    let _ = writeln!(o, "table inet {TABLE} {{}}");
    let _ = writeln!(o, "delete table inet {TABLE}");
    let _ = writeln!(o);
    let _ = writeln!(o, "table inet {TABLE} {{");

    // One set per peer entity and family, in name order.
    let mut sets: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for p in inbound.iter().chain(outbound) {
        if p.loopback_only {
            continue;
        }
        let e = &p.path.peer.entity;
        if !p.v4.is_empty() {
            sets.insert(
                set_name(e, "v4"),
                ("ipv4_addr".into(), p.v4.iter().map(|n| host(n.to_string())).collect()),
            );
        }
        if !p.v6.is_empty() {
            sets.insert(
                set_name(e, "v6"),
                ("ipv6_addr".into(), p.v6.iter().map(|n| host(n.to_string())).collect()),
            );
        }
    }
    for (name, (ty, elems)) in &sets {
        let _ = writeln!(o, "    set {name} {{");
        let _ = writeln!(o, "        type {ty}");
        let _ = writeln!(o, "        flags interval");
        let _ = writeln!(o, "        elements = {{ {} }}", elems.join(", "));
        let _ = writeln!(o, "    }}");
        let _ = writeln!(o);
    }

    chain(&mut o, "input", "input", "iif", "saddr", opts.policy, inbound);
    if opts.egress {
        let _ = writeln!(o);
        chain(&mut o, "output", "output", "oif", "daddr", opts.policy, outbound);
    }
    let _ = writeln!(o, "}}");
    o
}

/// `10.0.0.1/32` as `10.0.0.1`.
fn host(s: String) -> String {
    s.strip_suffix("/32").or_else(|| s.strip_suffix("/128")).map(str::to_string).unwrap_or(s)
}

fn chain(o: &mut String, name: &str, hook: &str, lo: &str, addr: &str, policy: Policy, paths: &[Planned]) {
    let base = if policy == Policy::Accept { "accept" } else { "drop" };
    let _ = writeln!(o, "    chain {name} {{");
    let _ = writeln!(o, "        type filter hook {hook} priority filter; policy {base};");
    let _ = writeln!(o, "        ct state established,related accept");
    let _ = writeln!(o, "        ct state invalid drop");
    let _ = writeln!(o, "        {lo} \"lo\" accept");
    let _ = writeln!(o, "        # IPv6 neighbour discovery");
    let _ = writeln!(
        o,
        "        icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert }} accept"
    );
    for p in paths {
        let _ = writeln!(o, "        # {}", p.cite());
        if p.loopback_only {
            let _ = writeln!(o, "        # on the loopback interface: accepted above");
            continue;
        }
        if let Some(ph) = p.placeholder() {
            let _ = writeln!(o, "        # {ph}");
        }
        let tail = format!("counter accept comment \"{}\"", p.tag());
        let matches = l4(p.path.proto, &p.path.ports);
        let e = &p.path.peer.entity;
        if p.any {
            for m in &matches {
                let _ = writeln!(o, "        {m} {tail}");
            }
            continue;
        }
        for (fam, has, l3) in [("v4", !p.v4.is_empty(), "ip"), ("v6", !p.v6.is_empty(), "ip6")] {
            if !has {
                continue;
            }
            for m in &matches {
                if p.path.proto == RuleProto::Icmp && (m.contains("ipv6-icmp") != (fam == "v6")) {
                    continue;
                }
                let _ = writeln!(o, "        {l3} {addr} @{} {m} {tail}", set_name(e, fam));
            }
        }
        if !p.has_addresses() && p.unresolved.is_empty() {
            let _ = writeln!(o, "        # no address at the other end: nothing to allow");
        }
    }
    if policy == Policy::Reject {
        let _ = writeln!(o, "        # --default reject: the chain's policy can only drop, so reject here");
        let _ = writeln!(o, "        meta l4proto tcp reject with tcp reset");
        let _ = writeln!(o, "        reject");
    }
    let _ = writeln!(o, "    }}");
}

/// The layer-4 match(es) of a path.
fn l4(proto: RuleProto, p: &[(u16, u16)]) -> Vec<String> {
    let dports = match p {
        [(a, b)] if a == b => a.to_string(),
        _ => format!("{{ {} }}", ports(p, "-", ", ")),
    };
    match proto {
        RuleProto::Tcp => vec![format!("tcp dport {dports}")],
        RuleProto::Udp => vec![format!("udp dport {dports}")],
        RuleProto::Icmp => vec!["meta l4proto icmp".into(), "meta l4proto ipv6-icmp".into()],
    }
}
