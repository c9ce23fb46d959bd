//! Words for a verdict: what each side resolved to and why the flow is
//! conforming, exposed, or which documented rules it came closest to.

use std::{collections::BTreeSet, net::IpAddr};

use super::{classify::has, proto_slot, Engine, Explanation, FlowQuery, SideInfo, Verdict, VerdictKind};
use crate::{flow::Proto, matrix::format_ports};

impl Engine {
    /// What `ip` resolved to: inventory hosts, services, zone.
    pub fn side_info(&self, ip: IpAddr) -> SideInfo {
        self.side(ip, self.addrs.classify(ip))
    }

    fn side(&self, ip: IpAddr, class: u32) -> SideInfo {
        let ip = super::classify::norm(ip);
        let bits = self.classes.get(class);
        let zone = self.addrs.zone(ip);
        SideInfo {
            hosts: self.hosts_by_addr.get(&ip).cloned().unwrap_or_default(),
            services: (0..self.entities.len() as u32)
                .filter(|&e| {
                    has(bits, e)
                        && !self.is_zone[e as usize]
                        && self.entities[e as usize] != crate::matrix::ANY
                })
                .map(|e| self.entities[e as usize].clone())
                .collect(),
            zones: vec![self.entities[zone as usize].clone()],
        }
    }

    pub fn explain(&self, q: &FlowQuery, v: &Verdict) -> Explanation {
        let client = self.side(q.client, v.client_class);
        let server = self.side(q.server, v.server_class);
        let cdesc = describe(q.client, &client);
        let sdesc = describe(q.server, &server);
        let p = proto_slot(q.proto);
        let port = if p == 2 { 0 } else { q.port };
        let what = if p == 2 { q.proto.to_string() } else { format!("port {}/{}", q.port, q.proto) };
        let slot = self.slot(v.server_class, p, port);
        let cbits = self.classes.get(v.client_class);
        let slot_rules = &self.rule_cands[slot.rules.0 as usize..slot.rules.1 as usize];
        let matching: Vec<String> = slot_rules
            .iter()
            .filter(|c| has(cbits, c.source))
            .map(|c| self.rules[c.rule as usize].id.clone())
            .collect();
        let mut closest = Vec::new();
        let mut exposure = None;
        let mut reason = match v.kind {
            VerdictKind::Conforming => {
                let r = &self.rules[v.rule.expect("a conforming verdict names its rule").0 as usize];
                let purpose = if r.purpose.is_empty() { String::new() } else { format!(": {}", r.purpose) };
                format!(
                    "rule `{}` ({}) documents {} -> {} {what}{purpose}",
                    r.id, r.provenance, r.source, r.target
                )
            }
            VerdictKind::Exposed => {
                let x =
                    &self.exposures[v.exposure.expect("an exposed verdict names its constraint").0 as usize];
                exposure = Some(x.id.clone());
                let mut s = format!(
                    "{what} on {sdesc} may only be reached from {} (exposure `{}`, {}), but the client is {cdesc}",
                    list(&x.only_from),
                    x.id,
                    x.provenance
                );
                if let Some(r) = v.rule {
                    s.push_str(&format!(
                        "; rule `{}` ({}) documents this flow, so the matrix contradicts itself",
                        self.rules[r.0 as usize].id, self.rules[r.0 as usize].provenance
                    ));
                }
                s
            }
            VerdictKind::Unexpected => self.unexpected(q, v, &what, &cdesc, &sdesc, slot_rules, &mut closest),
        };
        if !q.initiator_seen {
            reason
                .push_str(" (the start of this flow was not seen, so which side is the client was guessed)");
        }
        Explanation { rules: matching, closest, exposure, reason, client, server }
    }

    #[allow(clippy::too_many_arguments)]
    fn unexpected(
        &self,
        q: &FlowQuery,
        v: &Verdict,
        what: &str,
        cdesc: &str,
        sdesc: &str,
        slot_rules: &[super::RuleCand],
        closest: &mut Vec<String>,
    ) -> String {
        // Same port, same server: documented from other sources.
        if !slot_rules.is_empty() {
            let mut sources = BTreeSet::new();
            for c in slot_rules {
                let r = &self.rules[c.rule as usize];
                sources.insert(r.source.clone());
                closest.push(r.id.clone());
            }
            let target = &self.rules[slot_rules[0].rule as usize].target;
            return format!(
                "{what} on {target} is documented from {}, not from {cdesc}",
                list(&sources.into_iter().collect::<Vec<_>>())
            );
        }
        let p = proto_slot(q.proto);
        let covers = |r: &super::RuleInfo| {
            proto_slot(r.proto) == p && (p == 2 || r.ports.iter().any(|&(a, b)| a <= q.port && q.port <= b))
        };
        // Same port elsewhere: documented to other targets.
        let elsewhere: Vec<&super::RuleInfo> = self.rules.iter().filter(|r| covers(r)).collect();
        if !elsewhere.is_empty() {
            let mut targets = BTreeSet::new();
            for r in &elsewhere {
                targets.insert(format!("{} (from {})", r.target, r.source));
                closest.push(r.id.clone());
            }
            return format!(
                "{what} is documented only to {}, not to {sdesc} from {cdesc}",
                list(&targets.into_iter().collect::<Vec<_>>())
            );
        }
        // Same sides, other ports.
        let cbits = self.classes.get(v.client_class);
        let sbits = self.classes.get(v.server_class);
        let mut other = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let (s, t) = self.rule_entities[i];
            if has(cbits, s) && has(sbits, t) {
                other.push(if r.proto == Proto::Icmp {
                    "icmp".to_string()
                } else {
                    format!("{}/{}", format_ports(&r.ports), r.proto)
                });
                closest.push(r.id.clone());
            }
        }
        if !other.is_empty() {
            other.dedup();
            return format!(
                "{cdesc} may reach {sdesc} only on {} (rules {}), not on {what}",
                list(&other),
                list(&closest.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>())
            );
        }
        format!("no rule documents {what}, nor any flow from {cdesc} to {sdesc}")
    }
}

/// `db (10.200.1.20, zone cluster)`, `10.0.0.9 (host ws1, zone users)`.
fn describe(ip: IpAddr, s: &SideInfo) -> String {
    let zone = s.zones.first().map(String::as_str).unwrap_or("internet");
    match (s.services.is_empty(), s.hosts.is_empty()) {
        (false, _) => format!("{} ({ip}, zone {zone})", list(&s.services)),
        (true, false) => format!("{ip} (host {}, zone {zone})", crate::alert::join_names(&s.hosts)),
        (true, true) => format!("{ip} (zone {zone})"),
    }
}

/// `a`, `a and b`, `a, b and c`.
fn list(items: &[String]) -> String {
    match items {
        [] => "nothing".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
