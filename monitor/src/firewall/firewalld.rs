//! `--format firewalld`: `firewall-cmd --permanent` rich rules and port
//! commands in the vendor documents' style, then a reload. Inbound rules
//! go to the default zone; `--egress` writes a policy from the host to
//! every zone (firewalld 0.9 or later).

use std::fmt::Write;

use super::{ports, Options, Planned, Policy};
use crate::{host_paths::HostPaths, matrix::RuleProto};

/// The egress policy's name.
pub const EGRESS_POLICY: &str = "monitor-egress";

pub(super) fn render(hp: &HostPaths, opts: &Options, inbound: &[Planned], outbound: &[Planned]) -> String {
    let mut o = String::new();
    let addrs = hp.addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let _ = writeln!(o, "# Firewall of host {} ({addrs}), written by `monitor matrix firewall`.", hp.host);
    for h in &opts.header {
        let _ = writeln!(o, "# {h}");
    }
    let target = |p: Policy| match p {
        Policy::Drop => "DROP",
        Policy::Reject => "%%REJECT%%",
        Policy::Accept => "ACCEPT",
    };
    let _ = writeln!(o, "# Traffic no documented path allows: {}", opts.policy.as_str());
    let _ = writeln!(o, "sudo firewall-cmd --permanent --set-target={}", target(opts.policy));
    for p in inbound {
        section(&mut o, p, "", "source");
    }
    if opts.egress {
        let _ = writeln!(o);
        let _ = writeln!(o, "# Outbound: a policy from the host to every zone");
        let _ = writeln!(o, "sudo firewall-cmd --permanent --new-policy={EGRESS_POLICY}");
        let _ = writeln!(o, "sudo firewall-cmd --permanent --policy={EGRESS_POLICY} --add-ingress-zone=HOST");
        let _ = writeln!(o, "sudo firewall-cmd --permanent --policy={EGRESS_POLICY} --add-egress-zone=ANY");
        let _ = writeln!(
            o,
            "sudo firewall-cmd --permanent --policy={EGRESS_POLICY} --set-target={}",
            target(opts.policy).trim_matches('%')
        );
        for p in outbound {
            section(&mut o, p, &format!(" --policy={EGRESS_POLICY}"), "destination");
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "# Reload");
    let _ = writeln!(o, "sudo firewall-cmd --reload");
    o
}

fn section(o: &mut String, p: &Planned, scope: &str, side: &str) {
    let _ = writeln!(o);
    let _ = writeln!(o, "# {}", p.cite());
    if p.loopback_only {
        let _ = writeln!(o, "# on the loopback interface: firewalld accepts it");
        return;
    }
    if let Some(ph) = p.placeholder() {
        let _ = writeln!(o, "# {ph}");
    }
    let path = p.path;
    let l4: Vec<String> = match path.proto {
        RuleProto::Icmp => vec![String::new()],
        proto => path
            .ports
            .iter()
            .map(|r| ports(&[*r], "-", ""))
            .map(|ps| format!("{ps}/{}", proto.as_str()))
            .collect(),
    };
    if p.any {
        if side == "source" && path.proto != RuleProto::Icmp {
            for pp in &l4 {
                let _ = writeln!(o, "sudo firewall-cmd --permanent{scope} --add-port={pp}");
            }
        } else {
            for fam in ["ipv4", "ipv6"] {
                rich(o, scope, fam, None, path.proto, &l4);
            }
        }
        return;
    }
    let nets =
        p.v4.iter().map(|n| ("ipv4", n.to_string())).chain(p.v6.iter().map(|n| ("ipv6", n.to_string())));
    for (fam, net) in nets {
        rich(o, scope, fam, Some((side, host(net))), path.proto, &l4);
    }
}

fn host(s: String) -> String {
    s.strip_suffix("/32").or_else(|| s.strip_suffix("/128")).map(str::to_string).unwrap_or(s)
}

fn rich(
    o: &mut String,
    scope: &str,
    fam: &str,
    addr: Option<(&str, String)>,
    proto: RuleProto,
    l4: &[String],
) {
    let a = addr.map(|(side, a)| format!(" {side} address=\"{a}\"")).unwrap_or_default();
    for pp in l4 {
        let m = match proto {
            RuleProto::Icmp => {
                format!("protocol value=\"{}\"", if fam == "ipv4" { "icmp" } else { "ipv6-icmp" })
            }
            _ => {
                let (port, pr) = pp.split_once('/').unwrap_or((pp, ""));
                format!("port port=\"{port}\" protocol=\"{pr}\"")
            }
        };
        let _ = writeln!(
            o,
            "sudo firewall-cmd --permanent{scope} --add-rich-rule='rule family=\"{fam}\"{a} {m} accept'"
        );
    }
}
