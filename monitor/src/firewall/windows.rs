//! `--format windows`: PowerShell `New-NetFirewallRule` lines with
//! `-RemoteAddress` lists, in the vendor documents' style. Windows has no
//! reject: `--default reject` blocks, as `drop` does.

use std::fmt::Write;

use super::{ports, Options, Planned, Policy};
use crate::{
    host_paths::{Direction, HostPaths},
    matrix::RuleProto,
};

pub(super) fn render(hp: &HostPaths, opts: &Options, inbound: &[Planned], outbound: &[Planned]) -> String {
    let mut o = String::new();
    let addrs = hp.addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let _ = writeln!(o, "# Firewall of host {} ({addrs}), written by `monitor matrix firewall`.", hp.host);
    for h in &opts.header {
        let _ = writeln!(o, "# {h}");
    }
    let action = |p: Policy| if p == Policy::Accept { "Allow" } else { "Block" };
    let _ = writeln!(o, "# Traffic no documented path allows: {}", opts.policy.as_str());
    let out_action = if opts.egress { action(opts.policy) } else { "Allow" };
    let _ = writeln!(
        o,
        "Set-NetFirewallProfile -Profile Domain,Public,Private -DefaultInboundAction {} -DefaultOutboundAction {out_action}",
        action(opts.policy)
    );
    for p in inbound.iter().chain(outbound) {
        rule(&mut o, p);
    }
    o
}

fn rule(o: &mut String, p: &Planned) {
    let path = p.path;
    let _ = writeln!(o);
    let _ = writeln!(o, "# {}", p.cite());
    if p.loopback_only {
        let _ = writeln!(o, "# on the loopback interface: Windows Firewall does not filter it");
        return;
    }
    if let Some(ph) = p.placeholder() {
        let _ = writeln!(o, "# {ph}");
    }
    if !p.has_addresses() {
        return;
    }
    let remote = if p.any {
        "Any".to_string()
    } else {
        p.v4.iter()
            .map(|n| host(n.to_string()))
            .chain(p.v6.iter().map(|n| host(n.to_string())))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (dir, port_arg) = match path.direction {
        Direction::Inbound => ("Inbound", "-LocalPort"),
        Direction::Outbound => ("Outbound", "-RemotePort"),
    };
    let protos: Vec<(&str, String)> = match path.proto {
        RuleProto::Tcp => vec![("TCP", format!(" {port_arg} {}", ports(&path.ports, "-", ",")))],
        RuleProto::Udp => vec![("UDP", format!(" {port_arg} {}", ports(&path.ports, "-", ",")))],
        RuleProto::Icmp => vec![("ICMPv4", String::new()), ("ICMPv6", String::new())],
    };
    for (proto, port) in protos {
        let name = if path.proto == RuleProto::Icmp { format!("{} {proto}", p.tag()) } else { p.tag() };
        let _ = writeln!(o, "New-NetFirewallRule -DisplayName \"{name}\" `");
        let _ = writeln!(
            o,
            "-Description '{} ({})' `",
            path.purpose.replace('\'', "''"),
            path.provenance.replace('\'', "''")
        );
        let _ = writeln!(o, "-Direction {dir}{port} -Protocol {proto} `");
        let _ = writeln!(o, "-RemoteAddress \"{remote}\" -Action Allow");
    }
}

fn host(s: String) -> String {
    s.strip_suffix("/32").or_else(|| s.strip_suffix("/128")).map(str::to_string).unwrap_or(s)
}
