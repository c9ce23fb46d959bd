//! Coverage: how much each documented rule was used, and which rules were
//! never seen. Kept by rule id, so that it survives a reload of the matrix.

use std::{collections::BTreeMap, fmt::Write, time::SystemTime};

use serde::{Deserialize, Serialize};

use crate::{engine::Engine, matrix::format_ports};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleUse {
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    /// Flows of this rule that were blocked (refused, unanswered, rejected).
    pub blocked: u64,
    #[serde(with = "opt_time")]
    pub last_seen: Option<SystemTime>,
}

#[derive(Clone, Debug, Default)]
pub struct Coverage {
    by_rule: BTreeMap<String, RuleUse>,
}

impl Coverage {
    pub fn add_flow(&mut self, rule: &str) {
        self.entry(rule).flows += 1;
    }

    pub fn add_blocked(&mut self, rule: &str) {
        self.entry(rule).blocked += 1;
    }

    pub fn add_traffic(&mut self, rule: &str, packets: u64, bytes: u64, last_seen: SystemTime) {
        let u = self.entry(rule);
        u.packets += packets;
        u.bytes += bytes;
        if u.last_seen.is_none_or(|t| t < last_seen) {
            u.last_seen = Some(last_seen);
        }
    }

    fn entry(&mut self, rule: &str) -> &mut RuleUse {
        if !self.by_rule.contains_key(rule) {
            self.by_rule.insert(rule.to_string(), RuleUse::default());
        }
        self.by_rule.get_mut(rule).expect("just inserted")
    }

    pub fn get(&self, rule: &str) -> Option<&RuleUse> {
        self.by_rule.get(rule)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &RuleUse)> {
        self.by_rule.iter()
    }

    /// Every rule of the matrix in force, with its use.
    pub fn report(&self, engine: &Engine) -> Report {
        let rules: Vec<RuleLine> = engine
            .rules()
            .iter()
            .map(|r| RuleLine {
                id: r.id.clone(),
                source: r.source.clone(),
                target: r.target.clone(),
                proto: r.proto.to_string(),
                ports: format_ports(&r.ports),
                purpose: r.purpose.clone(),
                provenance: r.provenance.clone(),
                usage: self.by_rule.get(&r.id).cloned().unwrap_or_default(),
            })
            .collect();
        let unused = rules.iter().filter(|r| r.usage.flows == 0).map(|r| r.id.clone()).collect();
        Report { record: "coverage", rules, unused }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleLine {
    pub id: String,
    pub source: String,
    pub target: String,
    pub proto: String,
    pub ports: String,
    pub purpose: String,
    pub provenance: String,
    #[serde(flatten)]
    pub usage: RuleUse,
}

/// The coverage report: `monitor report`, and printed when the monitor exits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always "coverage".
    #[serde(rename = "type")]
    pub record: &'static str,
    pub rules: Vec<RuleLine>,
    /// Ids of the documented rules never seen.
    pub unused: Vec<String>,
}

impl Report {
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<28} {:<6} {:<12} {:>10} {:>12} {:>7} {:>7}  {:<24} SOURCE -> TARGET",
            "RULE", "PROTO", "PORTS", "PACKETS", "BYTES", "FLOWS", "BLOCKED", "LAST SEEN"
        );
        for r in &self.rules {
            let last = r.usage.last_seen.map(|t| humantime::format_rfc3339_seconds(t).to_string());
            let _ = writeln!(
                s,
                "{:<28} {:<6} {:<12} {:>10} {:>12} {:>7} {:>7}  {:<24} {} -> {}",
                r.id,
                r.proto,
                r.ports,
                r.usage.packets,
                r.usage.bytes,
                r.usage.flows,
                r.usage.blocked,
                last.as_deref().unwrap_or("never"),
                r.source,
                r.target
            );
        }
        let _ = writeln!(s, "{} of {} documented rules never seen", self.unused.len(), self.rules.len());
        for id in &self.unused {
            let _ = writeln!(s, "  never seen: {id}");
        }
        s
    }
}

mod opt_time {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(&humantime::format_rfc3339_nanos(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_rfc3339(&s).map_err(serde::de::Error::custom)).transpose()
    }
}
