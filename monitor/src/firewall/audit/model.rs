//! The nftables ruleset as `nft -j list ruleset` prints it (libnftables-json(5)):
//! tables, chains with their hooks, priorities and policies, rules (their
//! expressions kept as JSON for the evaluator), named sets and maps.

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{origin}: not nftables JSON ({source}); give the output of `nft -j list ruleset`")]
    Json { origin: String, source: serde_json::Error },
    #[error("{origin}: no top-level \"nftables\" array; give the output of `nft -j list ruleset`")]
    NoArray { origin: String },
    #[error("{origin}: {what} {index} of the \"nftables\" array is malformed: {detail}")]
    Object { origin: String, what: &'static str, index: usize, detail: String },
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ChainId {
    pub family: String,
    pub table: String,
    pub chain: String,
}

#[derive(Clone, Debug)]
pub struct Chain {
    pub id: ChainId,
    pub hook: Option<String>,
    pub kind: Option<String>,
    pub prio: i64,
    pub policy: Option<String>,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub handle: u64,
    pub comment: Option<String>,
    pub expr: Vec<Value>,
}

#[derive(Clone, Debug)]
pub struct SetDef {
    /// `Some("verdict")` for a verdict map, the data type for another map.
    pub map: Option<String>,
    pub elem: Vec<Value>,
}

#[derive(Clone, Debug, Default)]
pub struct Ruleset {
    pub chains: Vec<Chain>,
    /// (family, table, name)
    pub sets: BTreeMap<(String, String, String), SetDef>,
}

fn str_of(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(String::from)
}

/// Priorities as numbers or as the names nft accepts (for the inet/ip/ip6 families).
fn prio(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => match s.as_str() {
            "raw" => Some(-300),
            "mangle" => Some(-150),
            "dstnat" => Some(-100),
            "filter" => Some(0),
            "security" => Some(50),
            "srcnat" => Some(100),
            _ => None,
        },
        _ => None,
    }
}

impl Ruleset {
    /// Parses the JSON `nft -j list ruleset` prints; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Ruleset, ModelError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|source| ModelError::Json { origin: origin.into(), source })?;
        let arr = v
            .get("nftables")
            .and_then(Value::as_array)
            .ok_or_else(|| ModelError::NoArray { origin: origin.into() })?;
        let bad = |what, index, detail: &str| ModelError::Object {
            origin: origin.into(),
            what,
            index,
            detail: detail.into(),
        };
        let mut rs = Ruleset::default();
        let mut rules: Vec<(ChainId, Rule)> = Vec::new();
        for (i, o) in arr.iter().enumerate() {
            if let Some(c) = o.get("chain") {
                let id = ChainId {
                    family: str_of(c, "family").ok_or_else(|| bad("chain", i, "no family"))?,
                    table: str_of(c, "table").ok_or_else(|| bad("chain", i, "no table"))?,
                    chain: str_of(c, "name").ok_or_else(|| bad("chain", i, "no name"))?,
                };
                let hook = str_of(c, "hook");
                let p = prio(c.get("prio"));
                if hook.is_some() && p.is_none() {
                    return Err(bad("chain", i, "a base chain without a numeric priority"));
                }
                rs.chains.push(Chain {
                    id,
                    hook,
                    kind: str_of(c, "type"),
                    prio: p.unwrap_or(0),
                    policy: str_of(c, "policy"),
                    rules: Vec::new(),
                });
            } else if let Some(r) = o.get("rule") {
                let id = ChainId {
                    family: str_of(r, "family").ok_or_else(|| bad("rule", i, "no family"))?,
                    table: str_of(r, "table").ok_or_else(|| bad("rule", i, "no table"))?,
                    chain: str_of(r, "chain").ok_or_else(|| bad("rule", i, "no chain"))?,
                };
                let handle =
                    r.get("handle").and_then(Value::as_u64).ok_or_else(|| bad("rule", i, "no handle"))?;
                let expr = r.get("expr").and_then(Value::as_array).cloned().unwrap_or_default();
                rules.push((id, Rule { handle, comment: str_of(r, "comment"), expr }));
            } else if let Some((s, is_map)) =
                o.get("set").map(|s| (s, false)).or_else(|| o.get("map").map(|m| (m, true)))
            {
                let key = (
                    str_of(s, "family").ok_or_else(|| bad("set", i, "no family"))?,
                    str_of(s, "table").ok_or_else(|| bad("set", i, "no table"))?,
                    str_of(s, "name").ok_or_else(|| bad("set", i, "no name"))?,
                );
                let map = if is_map { Some(str_of(s, "map").unwrap_or_default()) } else { None };
                let elem = s.get("elem").and_then(Value::as_array).cloned().unwrap_or_default();
                rs.sets.insert(key, SetDef { map, elem });
            }
        }
        for (id, rule) in rules {
            match rs.chains.iter_mut().find(|c| c.id == id) {
                Some(c) => c.rules.push(rule),
                None => {
                    return Err(ModelError::Object {
                        origin: origin.into(),
                        what: "rule",
                        index: rule.handle as usize,
                        detail: format!("its chain {} {} {} is not listed", id.family, id.table, id.chain),
                    })
                }
            }
        }
        Ok(rs)
    }

    pub fn chain(&self, family: &str, table: &str, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.id.family == family && c.id.table == table && c.id.chain == name)
    }
}
