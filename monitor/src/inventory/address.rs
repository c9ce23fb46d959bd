//! Which IP addresses a host's traffic can be attributed to. The monitor
//! sees addresses, not names, and does not resolve names: a host is known by
//! its `ansible_host` when that is an IP address, else by its inventory name
//! when that is one. Everything else that looks like an attempt to give a
//! host an address is reported, so that no host silently goes unmatched.

use std::{collections::BTreeSet, net::IpAddr, path::Path};

use serde_json::Value;

use super::{Var, Warning};

pub(crate) struct Resolved {
    pub ansible_host: Option<String>,
    pub addresses: Vec<IpAddr>,
    /// A problem with `ansible_host` (line of its definition, message).
    /// Host names that are plain DNS names are reported together, elsewhere.
    pub warning: Option<(Option<usize>, String)>,
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    text.trim().parse().ok()
}

pub(crate) fn resolve(host: &str, ansible_host: Option<&Var>) -> Resolved {
    let Some(var) = ansible_host else {
        return Resolved {
            ansible_host: None,
            addresses: parse_ip(host).into_iter().collect(),
            warning: None,
        };
    };
    let text = match &var.value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Null => {
            return Resolved {
                ansible_host: None,
                addresses: parse_ip(host).into_iter().collect(),
                warning: Some((
                    var.line,
                    format!("host {host:?}: ansible_host is empty (null); using the host name instead"),
                )),
            }
        }
        other => {
            return Resolved {
                ansible_host: None,
                addresses: Vec::new(),
                warning: Some((
                    var.line,
                    format!(
                    "host {host:?}: ansible_host is {other}, not a single address; set it to one IP address"
                ),
                )),
            }
        }
    };
    if let Some(ip) = parse_ip(&text) {
        return Resolved { ansible_host: Some(text), addresses: vec![ip], warning: None };
    }
    let problem = if text.contains("{{") || text.contains("{%") {
        Some("is a Jinja template, which the monitor does not evaluate; load the output of `ansible-inventory --list` instead, which has it evaluated".to_string())
    } else if let Some((ip, zone)) = text.split_once('%').and_then(|(a, z)| Some((parse_ip(a)?, z))) {
        // A zone index only picks the interface for link-local addresses.
        return Resolved {
            ansible_host: Some(text.clone()),
            addresses: vec![ip],
            warning: Some((var.line, format!("host {host:?}: ansible_host {text:?}: the zone %{zone} is ignored; traffic is matched on {ip} alone"))),
        };
    } else if text.starts_with('[') && text.ends_with(']') && parse_ip(&text[1..text.len() - 1]).is_some() {
        Some(
            "has brackets, which Ansible passes on to ssh as they are; write the IPv6 address without [ ]"
                .to_string(),
        )
    } else if text.contains('/') {
        Some("looks like a network (CIDR), not one address; set the host's own IP address".to_string())
    } else if text.contains(',') || text.contains(char::is_whitespace) {
        Some("holds several values; set exactly one IP address".to_string())
    } else if text.rsplit_once(':').is_some_and(|(a, p)| parse_ip(a).is_some() && p.parse::<u16>().is_ok()) {
        Some("has a port; put the port in ansible_port and only the address in ansible_host".to_string())
    } else {
        None // a DNS name: reported with the other unaddressed hosts
    };
    Resolved {
        ansible_host: Some(text.clone()),
        addresses: Vec::new(),
        warning: problem.map(|p| (var.line, format!("host {host:?}: ansible_host {text:?} {p}; the host has no address, so its traffic cannot be attributed to it"))),
    }
}

/// One warning for all hosts known only by a DNS name.
pub(crate) fn unaddressed_warning(file: &Path, hosts: &[(String, Option<usize>)]) -> Option<Warning> {
    const SHOWN: usize = 8;
    let mut hosts = hosts.to_vec();
    hosts.sort_by_key(|(_, line)| *line);
    let (_, first_line) = hosts.first()?;
    let mut names: Vec<&str> = hosts.iter().take(SHOWN).map(|(h, _)| h.as_str()).collect();
    let more = hosts.len().saturating_sub(SHOWN);
    let list = if more > 0 {
        names.push("…");
        format!("{} (and {more} more)", names.join(", "))
    } else {
        names.join(", ")
    };
    Some(Warning {
        file: file.to_path_buf(),
        line: *first_line,
        message: format!(
            "{} host(s) have no IP address: neither ansible_host nor the name is one, and the monitor does not resolve names: {list}; \
             set ansible_host=<IP> for each so that their traffic is attributed to them",
            hosts.len()
        ),
    })
}

/// Variable names that usually mean "this host's address" but that the
/// monitor does not read.
fn address_like(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "ip",
        "ipv4",
        "ipv6",
        "ip_address",
        "ipv4_address",
        "ipv6_address",
        "address",
        "addr",
        "host_ip",
        "private_ip",
        "public_ip",
        "mgmt_ip",
        "ansible_ip",
        "ansible_ipv4",
        "ansible_ipv6",
        "ansible_host_ipv4",
        "ansible_host_ipv6",
    ];
    NAMES.contains(&name.to_ascii_lowercase().as_str())
}

fn holds_ip(v: &Value) -> bool {
    match v {
        Value::String(s) => {
            parse_ip(s).is_some() || s.split_once('/').is_some_and(|(a, _)| parse_ip(a).is_some())
        }
        Value::Array(items) => items.iter().any(holds_ip),
        _ => false,
    }
}

/// Warnings for variables that try to give a host an address in a way the
/// monitor ignores; once per definition.
pub(crate) fn address_like_vars<'a>(
    file: &Path,
    definitions: impl Iterator<Item = (&'a String, &'a Var)>,
) -> Vec<Warning> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (key, var) in definitions {
        let message = if key == "ansible_ssh_host" {
            "ansible_ssh_host is the old name of ansible_host and the monitor does not read it; rename it to ansible_host".to_string()
        } else if address_like(key) && holds_ip(&var.value) {
            format!(
                "variable {key} = {} looks like a host address, but the monitor learns addresses only from ansible_host \
                 (or a host name that is an IP address); if the host's traffic uses it, set ansible_host to it",
                var.value
            )
        } else {
            continue;
        };
        if seen.insert((var.line, key.clone(), var.value.to_string())) {
            out.push(Warning { file: file.to_path_buf(), line: var.line, message });
        }
    }
    out.sort_by_key(|w| w.line);
    out
}
