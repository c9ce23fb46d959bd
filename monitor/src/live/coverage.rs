//! Coverage: how much each documented rule was used, and which rules were
//! never seen. Kept by rule id, so that it survives a reload of the matrix.

use std::{collections::BTreeMap, fmt::Write, num::NonZeroU32, sync::Arc, time::SystemTime};

use serde::{Deserialize, Serialize};

use crate::{engine::Engine, kernel::stream::Losses, matrix::format_ports};

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

/// The use of a rule not seen yet.
static UNUSED: RuleUse = RuleUse { packets: 0, bytes: 0, flows: 0, blocked: 0, last_seen: None };

/// A rule's place in the coverage. Judged flows hold this, not the rule's
/// id: 4 bytes per flow instead of a String, and no lookup by name when
/// their traffic is added at every table read. Slots are never reused, so
/// a flow keeps its rule's slot across reloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleSlot(NonZeroU32);

#[derive(Clone, Debug, Default)]
pub struct Coverage {
    /// Rule id to slot, ordered so that metrics and reports list rules by id.
    slots: BTreeMap<String, RuleSlot>,
    /// Use per slot: `uses[slot - 1]`.
    uses: Vec<RuleUse>,
    /// Rule id per slot: `ids[slot - 1]`.
    ids: Vec<Arc<str>>,
    /// The loss counters as of the last table read, for the report.
    pub losses: Losses,
}

impl Coverage {
    /// The slot of the rule `id`, taken on its first use.
    pub fn slot(&mut self, id: &str) -> RuleSlot {
        if let Some(s) = self.slots.get(id) {
            return *s;
        }
        self.uses.push(RuleUse::default());
        self.ids.push(Arc::from(id));
        let n = u32::try_from(self.uses.len()).expect("fewer than 2^32 rules");
        let s = RuleSlot(NonZeroU32::new(n).expect("a length after a push is not zero"));
        self.slots.insert(id.to_string(), s);
        s
    }

    pub fn add_flow(&mut self, rule: RuleSlot) {
        self.use_of(rule).flows += 1;
    }

    pub fn add_blocked(&mut self, rule: RuleSlot) {
        self.use_of(rule).blocked += 1;
    }

    pub fn add_traffic(&mut self, rule: RuleSlot, packets: u64, bytes: u64, last_seen: SystemTime) {
        let u = self.use_of(rule);
        u.packets += packets;
        u.bytes += bytes;
        if u.last_seen.is_none_or(|t| t < last_seen) {
            u.last_seen = Some(last_seen);
        }
    }

    fn use_of(&mut self, rule: RuleSlot) -> &mut RuleUse {
        &mut self.uses[rule.0.get() as usize - 1]
    }

    /// The id of the rule in `slot`.
    pub fn id(&self, slot: RuleSlot) -> &Arc<str> {
        &self.ids[slot.0.get() as usize - 1]
    }

    pub fn get(&self, id: &str) -> Option<&RuleUse> {
        self.slots.get(id).map(|s| &self.uses[s.0.get() as usize - 1])
    }

    /// Every rule seen so far, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &RuleUse)> {
        self.slots.iter().map(|(id, s)| (id, &self.uses[s.0.get() as usize - 1]))
    }

    /// Every rule of the matrix in force, with its use (none yet for a
    /// rule never seen): what the metrics show, so that a rule's series
    /// exist from the start and a rule removed by a reload leaves them.
    pub fn in_force<'a>(&'a self, engine: &'a Engine) -> Vec<(&'a str, &'a RuleUse)> {
        engine.rules().iter().map(|r| (r.id.as_str(), self.get(&r.id).unwrap_or(&UNUSED))).collect()
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
                usage: self.get(&r.id).cloned().unwrap_or_default(),
            })
            .collect();
        let unused = rules.iter().filter(|r| r.usage.flows == 0).map(|r| r.id.clone()).collect();
        Report { record: "coverage", rules, unused, losses: self.losses }
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
    #[serde(rename = "type", skip_deserializing, default = "coverage_record")]
    pub record: &'static str,
    pub rules: Vec<RuleLine>,
    /// Ids of the documented rules never seen.
    pub unused: Vec<String>,
    /// What was lost on the way from the kernel (totals since the start):
    /// flows and events the coverage may be missing.
    #[serde(default)]
    pub losses: Losses,
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
        let _ = writeln!(s, "losses: {}", self.losses);
        s
    }
}

/// A report read back (`monitor report --format html`) is a coverage
/// report: its `"type"` is not read, which would tie the report to the
/// lifetime of the text it came from.
fn coverage_record() -> &'static str {
    "coverage"
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn slots_are_per_rule_id_and_use_adds_up_under_its_id() {
        let mut c = Coverage::default();
        let web = c.slot("web");
        let ssh = c.slot("ssh");
        assert_eq!(c.slot("web"), web, "the same id must give the same slot");
        assert_ne!(web, ssh);
        let t1 = UNIX_EPOCH + Duration::from_secs(10);
        let t0 = UNIX_EPOCH + Duration::from_secs(5);
        c.add_flow(web);
        c.add_traffic(web, 3, 300, t1);
        c.add_traffic(web, 2, 200, t0);
        c.add_blocked(ssh);
        let w = c.get("web").expect("web was used");
        assert_eq!((w.flows, w.packets, w.bytes, w.blocked), (1, 5, 500, 0));
        assert_eq!(w.last_seen, Some(t1), "an older packet must not move last_seen back");
        assert_eq!(c.get("ssh").map(|u| (u.flows, u.blocked)), Some((0, 1)));
        assert_eq!(c.get("dns"), None);
        let ids: Vec<&str> = c.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["ssh", "web"], "rules are listed by id");
    }
}
