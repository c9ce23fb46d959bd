//! Prometheus `file_sd` targets from an Ansible inventory: one target per
//! inventory host, at its address and the agents' metrics port, labelled
//! with its node name and its groups. The inventory that places the
//! services then also lists the agents to scrape, and a host added to it is
//! scraped as soon as the file is written again.
//!
//! The file is the JSON list Prometheus reads from `file_sd_configs`
//! (`[{"targets": [...], "labels": {...}}]`). Label values are inventory
//! names only: `node` is the host's name (what `--node` defaults to on the
//! host, so series from the agent and from discovery agree), `groups` its
//! groups, `all` left out, comma-joined with a comma at each end so that a
//! relabel or a query matches one group with `.*,db,.*`.

use std::{collections::BTreeMap, net::IpAddr};

use serde::Serialize;

use crate::inventory::{Host, Inventory};

/// The port `monitor run --metrics` listens on in the shipped unit and DaemonSet.
pub const DEFAULT_PORT: u16 = 9469;

/// One entry of a `file_sd` file: targets sharing labels (here, one host).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetGroup {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// A host that has no address to scrape, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreachable {
    pub host: String,
}

/// Every host of `inventory`, in name order, as a scrape target on `port`;
/// and the hosts left out.
///
/// The address is `ansible_host` (an IP address or a DNS name, which
/// Prometheus resolves), else the host's name when it is an IP address or
/// looks like a DNS name (it has a dot). A bare name such as `db1` without
/// `ansible_host` is left out and reported: Ansible would reach it only
/// through the SSH configuration, which Prometheus does not read.
pub fn file_sd(inventory: &Inventory, port: u16) -> (Vec<TargetGroup>, Vec<Unreachable>) {
    let mut groups = Vec::new();
    let mut left_out = Vec::new();
    for host in inventory.hosts.values() {
        match address(host) {
            Some(addr) => {
                groups.push(TargetGroup { targets: vec![target(&addr, port)], labels: labels(host) })
            }
            None => left_out.push(Unreachable { host: host.name.clone() }),
        }
    }
    (groups, left_out)
}

fn address(host: &Host) -> Option<String> {
    if let Some(a) = host.addresses.first() {
        return Some(a.to_string());
    }
    let name = host.ansible_host.as_deref().unwrap_or(&host.name);
    (host.ansible_host.is_some() || name.contains('.')).then(|| name.to_owned())
}

/// `host:port`, with an IPv6 address in brackets.
fn target(addr: &str, port: u16) -> String {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{addr}:{port}"),
    }
}

fn labels(host: &Host) -> BTreeMap<String, String> {
    let groups: Vec<&str> = host.groups.iter().map(String::as_str).filter(|g| *g != "all").collect();
    BTreeMap::from([
        ("node".to_owned(), host.name.clone()),
        ("groups".to_owned(), format!(",{},", groups.join(","))),
    ])
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::inventory::{Format, LoadOptions};

    fn inventory(ini: &str) -> Inventory {
        Inventory::parse(Format::Ini, ini, Path::new("inventory.ini"), &LoadOptions::default())
            .expect("inventory")
            .0
    }

    #[test]
    fn one_target_per_host_with_its_node_and_groups() {
        let inv = inventory(
            "[nodes]\nn1 ansible_host=10.200.1.11\nn2 ansible_host=fd00::12\n\n[db]\ndb1 ansible_host=db1.example.internal\n\
             \n[backend:children]\nnodes\ndb\n\n[web]\n10.200.9.9\nbare\n",
        );
        let (groups, left_out) = file_sd(&inv, 9469);
        let json = serde_json::to_string(&groups).expect("JSON");
        assert_eq!(
            json,
            concat!(
                r#"[{"targets":["10.200.9.9:9469"],"labels":{"groups":",web,","node":"10.200.9.9"}},"#,
                r#"{"targets":["db1.example.internal:9469"],"labels":{"groups":",backend,db,","node":"db1"}},"#,
                r#"{"targets":["10.200.1.11:9469"],"labels":{"groups":",backend,nodes,","node":"n1"}},"#,
                r#"{"targets":["[fd00::12]:9469"],"labels":{"groups":",backend,nodes,","node":"n2"}}]"#,
            )
        );
        assert_eq!(left_out, vec![Unreachable { host: "bare".into() }]);
    }

    #[test]
    fn an_ungrouped_host_is_in_ungrouped() {
        let inv = inventory("h1.example.org\n");
        let (groups, _) = file_sd(&inv, 9100);
        assert_eq!(groups[0].targets, vec!["h1.example.org:9100"]);
        assert_eq!(groups[0].labels["groups"], ",ungrouped,");
    }
}
