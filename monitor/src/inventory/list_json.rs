//! The JSON that `ansible-inventory -i SRC --list` prints: how a dynamic
//! inventory (cloud plugins, scripts, group_vars/ directories) reaches the
//! monitor already evaluated. Groups are top-level keys with `hosts` and
//! `children` lists (and `vars` with `--export`); `_meta.hostvars` holds each
//! host's variables. Read as Ansible's `script` plugin reads the same shape,
//! including its older form where a group is just a list of hosts.
//!
//! Deserialized with seeds so that serde_json reports the line and column of
//! whatever is wrong.

use std::{collections::BTreeSet, fmt, path::Path};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::{builder::Builder, InventoryError, LoadOptions, Loaded};

#[derive(Default)]
struct ListGroup {
    hosts: Vec<String>,
    children: Vec<String>,
    vars: Map<String, Value>,
    unknown_keys: Vec<String>,
}

/// `_meta`: the hosts' variables, and keys other than the known ones.
#[derive(Default)]
struct Meta {
    hostvars: Vec<(String, Map<String, Value>)>,
    unknown_keys: Vec<String>,
}

enum Entry {
    Meta(Meta),
    Group(String, ListGroup),
}

struct Doc(Vec<Entry>);

impl<'de> de::Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Doc;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of groups, as `ansible-inventory --list` prints")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "_meta" {
                        entries.push(Entry::Meta(map.next_value_seed(MetaSeed)?));
                    } else {
                        let g = map.next_value_seed(GroupSeed { name: &key })?;
                        entries.push(Entry::Group(key, g));
                    }
                }
                Ok(Doc(entries))
            }
        }
        d.deserialize_map(V)
    }
}

struct MetaSeed;

impl<'de> DeserializeSeed<'de> for MetaSeed {
    type Value = Meta;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Meta;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object with \"hostvars\"")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut meta = Meta::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key != "hostvars" {
                        map.next_value::<de::IgnoredAny>()?;
                        // "profile" says which JSON layout this is; nothing to read.
                        if key != "profile" {
                            meta.unknown_keys.push(key);
                        }
                        continue;
                    }
                    let all: Map<String, Value> = map.next_value()?;
                    for (host, vars) in all {
                        match vars {
                            Value::Object(v) => meta.hostvars.push((host, v)),
                            Value::Null => meta.hostvars.push((host, Map::new())),
                            other => {
                                return Err(de::Error::custom(format!(
                                    "_meta.hostvars of {host:?} is {other}, not an object of variables"
                                )))
                            }
                        }
                    }
                }
                Ok(meta)
            }
        }
        d.deserialize_map(V)
    }
}

struct GroupSeed<'a> {
    name: &'a str,
}

/// A list of names; serde_json reports a non-string element at its own position.
struct NamesSeed<'a> {
    what: &'a str,
    group: &'a str,
}

impl<'de> DeserializeSeed<'de> for NamesSeed<'_> {
    type Value = Vec<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for NamesSeed<'_> {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a list of {} names for group {:?}", self.what, self.group)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut out = Vec::new();
        while let Some(name) = seq.next_element_seed(NameSeed { what: self.what, group: self.group })? {
            out.push(name);
        }
        Ok(out)
    }
}

struct NameSeed<'a> {
    what: &'a str,
    group: &'a str,
}

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_string(self)
    }
}

impl<'de> Visitor<'de> for NameSeed<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let one =
            self.what.strip_suffix("ren").map(|s| format!("{s} group")).unwrap_or_else(|| "host".into());
        write!(f, "a {one} name in group {:?}", self.group)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
}

impl<'de> DeserializeSeed<'de> for GroupSeed<'_> {
    type Value = ListGroup;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ListGroup, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for GroupSeed<'_> {
    type Value = ListGroup;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "group {:?} as an object with hosts/children/vars, or a list of hosts", self.name)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ListGroup, A::Error> {
        let hosts = NamesSeed { what: "hosts", group: self.name }.visit_seq(seq)?;
        Ok(ListGroup { hosts, ..Default::default() })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListGroup, A::Error> {
        let mut g = ListGroup::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "hosts" => g.hosts = map.next_value_seed(NamesSeed { what: "hosts", group: self.name })?,
                "children" => {
                    g.children = map.next_value_seed(NamesSeed { what: "children", group: self.name })?
                }
                "vars" => match map.next_value::<Value>()? {
                    Value::Object(v) => g.vars = v,
                    Value::Null => {}
                    other => {
                        return Err(de::Error::custom(format!(
                            "vars of group {:?} is {other}, not an object",
                            self.name
                        )))
                    }
                },
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                    g.unknown_keys.push(key);
                }
            }
        }
        Ok(g)
    }
}

/// Whether `text` is `--list` output rather than a YAML inventory written as
/// JSON: it has `_meta`, or a group whose hosts are a list, not a mapping.
pub(crate) fn looks_like_list_output(text: &str) -> bool {
    let Ok(Value::Object(top)) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    top.contains_key("_meta")
        || top.values().any(|g| match g {
            Value::Array(_) => true,
            Value::Object(o) => {
                matches!(o.get("hosts"), Some(Value::Array(_)))
                    || matches!(o.get("children"), Some(Value::Array(_)))
            }
            _ => false,
        })
}

/// ansible-inventory writes `!unsafe` strings as `{"__ansible_unsafe": s}`
/// and vaulted ones as `{"__ansible_vault": ciphertext}`; both are strings to
/// the monitor, as the YAML reader has them.
fn untag(v: Value) -> Value {
    match v {
        Value::Object(o) if o.len() == 1 => {
            let (k, inner) = o.into_iter().next().expect("one entry");
            match (k.as_str(), inner) {
                ("__ansible_unsafe" | "__ansible_vault", Value::String(s)) => Value::String(s),
                (_, inner) => Value::Object(Map::from_iter([(k, untag(inner))])),
            }
        }
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, untag(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(untag).collect()),
        other => other,
    }
}

fn json_error(file: &Path, e: serde_json::Error) -> InventoryError {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
    InventoryError::Syntax {
        file: file.to_path_buf(),
        line: (e.line() > 0).then_some(e.line()),
        column: (e.column() > 0).then_some(e.column()),
        message,
        hint: "regenerate it with `ansible-inventory -i SOURCE --list > FILE`, or fix the JSON there".into(),
    }
}

pub(crate) fn parse(text: &str, file: &Path, opts: &LoadOptions) -> Result<Loaded, InventoryError> {
    let Doc(entries) = serde_json::from_str(text).map_err(|e| json_error(file, e))?;
    let mut b = Builder::new(file, opts);
    let mut hostvars: Vec<(String, Map<String, Value>)> = Vec::new();
    let mut seen_groups = BTreeSet::new();
    let mut listed_hosts = BTreeSet::new();
    for entry in entries {
        let (name, g) = match entry {
            Entry::Meta(meta) => {
                for key in meta.unknown_keys {
                    b.warn(None, format!("skipped key {key:?} of _meta: only hostvars is read"));
                }
                hostvars.extend(meta.hostvars);
                continue;
            }
            Entry::Group(name, g) => (name, g),
        };
        if !seen_groups.insert(name.clone()) {
            b.warn(None, format!("group {name:?} appears twice; both entries are read"));
        }
        b.add_group(&name, None)?;
        for key in &g.unknown_keys {
            b.warn(
                None,
                format!("skipped key {key:?} of group {name:?}: only hosts, children and vars are read"),
            );
        }
        for host in &g.hosts {
            b.add_host(host, &name, None, None)?;
            listed_hosts.insert(host.clone());
        }
        for (k, v) in g.vars {
            b.set_group_var(&name, &k, untag(v), None)?;
        }
        for child in &g.children {
            b.add_group(child, None)?;
            b.add_child(&name, child, None)?;
        }
    }
    for (host, vars) in hostvars {
        if !listed_hosts.contains(&host) {
            b.warn(
                None,
                format!("_meta.hostvars has host {host:?}, which no group lists; skipped, as Ansible does"),
            );
            continue;
        }
        for (k, v) in vars {
            b.set_host_var(&host, &k, untag(v), None)?;
        }
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_output_round_trips_groups_and_vars() {
        let text = r#"{
            "_meta": {"hostvars": {"n1": {"ansible_host": "10.0.0.1", "v": 2}}, "profile": "inventory_legacy", "extra": 1},
            "all": {"children": ["ungrouped", "web"]},
            "web": {"hosts": ["n1"], "children": ["edge"]},
            "edge": ["n2"],
            "ungrouped": {"hosts": ["lone"]}
        }"#;
        let (inv, warnings) =
            parse(text, Path::new("l.json"), &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(warnings.iter().any(|w| w.message.contains("\"extra\" of _meta")), "{warnings:?}");
        assert_eq!(inv.hosts["n2"].groups, ["all", "edge", "web"].map(String::from).into());
        assert_eq!(inv.hosts["n1"].vars["v"], json!(2));
        assert_eq!(inv.hosts["n1"].addresses, vec!["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
        assert_eq!(inv.hosts["lone"].groups, ["all", "ungrouped"].map(String::from).into());
        assert!(looks_like_list_output(text));
        assert!(!looks_like_list_output(r#"{"all": {"hosts": {"a": null}}}"#));
    }

    #[test]
    fn bad_json_points_at_the_element() {
        let text = "{\n  \"web\": {\n    \"hosts\": [\n      \"a\",\n      7\n    ]\n  }\n}\n";
        let e = parse(text, Path::new("l.json"), &LoadOptions::default())
            .expect_err("a number is not a host name");
        assert_eq!(e.line(), Some(5), "{e}");
        assert!(e.to_string().contains("integer `7`, expected a host name in group \"web\""), "{e}");
        let e = parse("{\"web\": {\"hosts\": [\"a\"]\n", Path::new("l.json"), &LoadOptions::default())
            .expect_err("truncated");
        assert_eq!(e.line(), Some(2), "{e}");
    }
}
