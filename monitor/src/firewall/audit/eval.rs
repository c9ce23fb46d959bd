//! Walks a class of packets through the base chains of a hook, splitting it
//! at every match, and tells for every part the verdict and the rule that
//! gave it. A construct it does not know ends the walk of the part that
//! reaches it with "not understood" and the rule's handle: nothing is guessed.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{
    model::{Chain, ChainId, Rule, Ruleset},
    space::{all_addresses, ip_value, split, Class, Element, Family, Field, Ranges},
};

/// What a base chain, and then the hook, did with a class.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Accept,
    Drop,
    Reject,
    NotUnderstood,
}

/// Where a verdict came from: a rule, or a chain's policy (`handle` None).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    #[serde(flatten)]
    pub chain: ChainId,
    /// The deciding rule; None for the chain's policy.
    pub handle: Option<u64>,
    pub comment: Option<String>,
    /// For "not understood": what was not understood.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A rule, by chain and handle.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct RuleRef {
    #[serde(flatten)]
    pub chain: ChainId,
    pub handle: u64,
}

enum Flow {
    Terminal(Decision),
    Return,
}

/// The interface names the ruleset mentions, interned: 0 is "any other name".
pub struct Names(BTreeMap<String, u128>);

impl Names {
    pub fn id(&self, n: &str) -> u128 {
        self.0.get(n).copied().unwrap_or(0)
    }
    pub fn all(&self) -> Ranges {
        Ranges::range(0, self.0.len() as u128)
    }
}

pub struct Evaluator<'a> {
    rs: &'a Ruleset,
    pub names: Names,
    /// Rules that gave an accept, a jump or a goto to some class.
    pub hits: BTreeSet<RuleRef>,
    /// Rules the walk reached and did not understand, with the reason.
    pub not_understood: BTreeMap<RuleRef, String>,
}

fn collect_strings(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            out.insert(s.clone());
        }
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// A compiled match: a family it needs, fields it needs (`tcp dport` needs
/// TCP), and the elements of its right side.
enum Cond {
    Split { family: Option<Family>, deps: Vec<(Field, Ranges)>, elements: Vec<Element>, negate: bool },
    Bool { v4: bool, v6: bool },
}

type Res<T> = Result<T, String>;

/// A left-hand side: the family it needs, the fields it needs, the fields it names.
type FieldsOf = (Option<Family>, Vec<(Field, Ranges)>, Vec<Field>);

fn proto_number(s: &str) -> Option<u128> {
    Some(match s {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "udp" => 17,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "icmpv6" | "ipv6-icmp" => 58,
        "sctp" => 132,
        "udplite" => 136,
        _ => s.parse().ok()?,
    })
}

impl<'a> Evaluator<'a> {
    pub fn new(rs: &'a Ruleset, extra_names: &[&str]) -> Evaluator<'a> {
        let mut strings = BTreeSet::new();
        for c in &rs.chains {
            for r in &c.rules {
                r.expr.iter().for_each(|e| collect_strings(e, &mut strings));
            }
        }
        for s in rs.sets.values() {
            s.elem.iter().for_each(|e| collect_strings(e, &mut strings));
        }
        strings.extend(extra_names.iter().map(|s| s.to_string()));
        strings.insert("lo".into());
        strings.insert(String::new());
        let names = Names(strings.into_iter().enumerate().map(|(i, s)| (s, i as u128 + 1)).collect());
        Evaluator { rs, names, hits: BTreeSet::new(), not_understood: BTreeMap::new() }
    }

    /// The base chains of `hook` a packet of `family` passes, in priority order.
    pub fn base_chains(&self, hook: &str, family: Family) -> Vec<&'a Chain> {
        let fam = match family {
            Family::Ipv4 => "ip",
            Family::Ipv6 => "ip6",
        };
        let mut v: Vec<&Chain> = self
            .rs
            .chains
            .iter()
            .filter(|c| c.hook.as_deref() == Some(hook) && (c.id.family == "inet" || c.id.family == fam))
            .collect();
        v.sort_by(|a, b| (a.prio, &a.id).cmp(&(b.prio, &b.id)));
        v
    }

    /// The class through every base chain of `hook`: each part with its
    /// verdict and the decisions of the chains it passed (the last decides).
    pub fn hook(&mut self, hook: &str, class: &Class) -> Vec<(Class, Vec<Decision>)> {
        let chains = self.base_chains(hook, class.family);
        let mut pending: Vec<(Class, Vec<Decision>)> = vec![(class.clone(), Vec::new())];
        let mut done = Vec::new();
        for chain in chains {
            let mut next = Vec::new();
            for (c, trail) in pending {
                for (part, flow) in self.chain(chain, vec![c], 0) {
                    let d = match flow {
                        Flow::Terminal(d) => d,
                        Flow::Return => Decision {
                            verdict: if chain.policy.as_deref() == Some("drop") {
                                Verdict::Drop
                            } else {
                                Verdict::Accept
                            },
                            chain: chain.id.clone(),
                            handle: None,
                            comment: None,
                            reason: None,
                        },
                    };
                    let mut t = trail.clone();
                    let accept = d.verdict == Verdict::Accept;
                    t.push(d);
                    if accept {
                        next.push((part, t));
                    } else {
                        done.push((part, t));
                    }
                }
            }
            pending = next;
        }
        done.extend(pending);
        done
    }

    fn chain(&mut self, chain: &'a Chain, classes: Vec<Class>, depth: usize) -> Vec<(Class, Flow)> {
        let mut pending = classes;
        let mut out = Vec::new();
        for rule in &chain.rules {
            if pending.is_empty() {
                break;
            }
            let (cont, done) = self.rule(chain, rule, pending, depth);
            pending = cont;
            out.extend(done);
        }
        out.extend(pending.into_iter().map(|c| (c, Flow::Return)));
        out
    }

    fn nu(&mut self, chain: &Chain, rule: &Rule, reason: String) -> Decision {
        self.not_understood
            .entry(RuleRef { chain: chain.id.clone(), handle: rule.handle })
            .or_insert(reason.clone());
        Decision {
            verdict: Verdict::NotUnderstood,
            chain: chain.id.clone(),
            handle: Some(rule.handle),
            comment: rule.comment.clone(),
            reason: Some(reason),
        }
    }

    /// One rule: the classes that go on to the next rule, and those it ends.
    fn rule(
        &mut self,
        chain: &'a Chain,
        rule: &Rule,
        classes: Vec<Class>,
        depth: usize,
    ) -> (Vec<Class>, Vec<(Class, Flow)>) {
        // A rule of matches and no-op statements only changes nothing,
        // whatever its matches mean.
        let effective = rule
            .expr
            .iter()
            .any(|e| !(e.get("match").is_some() || e.get("counter").is_some() || e.get("log").is_some()));
        if !effective {
            return (classes, Vec::new());
        }
        let mut alive = classes;
        let mut carry = Vec::new();
        let mut done = Vec::new();
        for e in &rule.expr {
            if alive.is_empty() {
                break;
            }
            if let Some(m) = e.get("match") {
                match self.cond(chain, m) {
                    Ok(cond) => {
                        let mut yes_all = Vec::new();
                        for c in alive {
                            let (y, n) = apply(&cond, &c);
                            yes_all.extend(y);
                            carry.extend(n);
                        }
                        alive = yes_all;
                    }
                    Err(reason) => {
                        let d = self.nu(chain, rule, reason);
                        done.extend(alive.drain(..).map(|c| (c, Flow::Terminal(d.clone()))));
                    }
                }
            } else if e.get("counter").is_some() || e.get("log").is_some() {
            } else if let Some(vm) = e.get("vmap") {
                match self.vmap(chain, vm) {
                    Ok((family, entries)) => {
                        // A key of one family's field matches nothing of the other.
                        let (mut rest, other): (Vec<Class>, Vec<Class>) =
                            alive.into_iter().partition(|c| family.is_none_or(|f| f == c.family));
                        carry.extend(other);
                        for (elements, verdict) in entries {
                            let mut next = Vec::new();
                            let mut hit = Vec::new();
                            for c in rest {
                                let (y, n) = split(&c, &elements);
                                hit.extend(y);
                                next.extend(n);
                            }
                            if !hit.is_empty() {
                                let (c2, d2) = self.verdict(chain, rule, &verdict, hit, depth);
                                carry.extend(c2);
                                done.extend(d2);
                            }
                            rest = next;
                        }
                        carry.extend(rest);
                        alive = Vec::new();
                    }
                    Err(reason) => {
                        let d = self.nu(chain, rule, reason);
                        done.extend(alive.drain(..).map(|c| (c, Flow::Terminal(d.clone()))));
                    }
                }
            } else {
                let (c2, d2) = self.verdict(chain, rule, e, std::mem::take(&mut alive), depth);
                carry.extend(c2);
                done.extend(d2);
            }
        }
        carry.extend(alive);
        (carry, done)
    }

    /// A verdict statement applied to `classes`: those that go on, those it ends.
    fn verdict(
        &mut self,
        chain: &'a Chain,
        rule: &Rule,
        v: &Value,
        classes: Vec<Class>,
        depth: usize,
    ) -> (Vec<Class>, Vec<(Class, Flow)>) {
        let terminal = |verdict| Decision {
            verdict,
            chain: chain.id.clone(),
            handle: Some(rule.handle),
            comment: rule.comment.clone(),
            reason: None,
        };
        let me = RuleRef { chain: chain.id.clone(), handle: rule.handle };
        let key = v.as_object().and_then(|o| if o.len() == 1 { o.keys().next().cloned() } else { None });
        match key.as_deref() {
            Some("accept") => {
                self.hits.insert(me);
                let d = terminal(Verdict::Accept);
                (Vec::new(), classes.into_iter().map(|c| (c, Flow::Terminal(d.clone()))).collect())
            }
            Some("drop") => {
                let d = terminal(Verdict::Drop);
                (Vec::new(), classes.into_iter().map(|c| (c, Flow::Terminal(d.clone()))).collect())
            }
            Some("reject") => {
                let d = terminal(Verdict::Reject);
                (Vec::new(), classes.into_iter().map(|c| (c, Flow::Terminal(d.clone()))).collect())
            }
            Some("return") => (Vec::new(), classes.into_iter().map(|c| (c, Flow::Return)).collect()),
            Some(k @ ("jump" | "goto")) => {
                let target = v[k].get("target").and_then(Value::as_str);
                let target = target.and_then(|t| self.rs.chain(&chain.id.family, &chain.id.table, t));
                let Some(target) = target else {
                    let d = self.nu(chain, rule, format!("{k} to a chain that is not listed"));
                    return (
                        Vec::new(),
                        classes.into_iter().map(|c| (c, Flow::Terminal(d.clone()))).collect(),
                    );
                };
                if depth >= 16 {
                    let d = self.nu(chain, rule, format!("{k} nested deeper than 16 chains"));
                    return (
                        Vec::new(),
                        classes.into_iter().map(|c| (c, Flow::Terminal(d.clone()))).collect(),
                    );
                }
                self.hits.insert(me);
                let mut cont = Vec::new();
                let mut done = Vec::new();
                for (c, f) in self.chain(target, classes, depth + 1) {
                    match f {
                        Flow::Terminal(d) => done.push((c, Flow::Terminal(d))),
                        // A return from a jump goes on after the jump; from
                        // a goto, it returns from this chain too.
                        Flow::Return if k == "jump" => cont.push(c),
                        Flow::Return => done.push((c, Flow::Return)),
                    }
                }
                (cont, done)
            }
            _ => {
                let what = key.unwrap_or_else(|| v.to_string());
                let d = self.nu(chain, rule, format!("the statement `{what}`"));
                (Vec::new(), classes.into_iter().map(|c| (c, Flow::Terminal(d.clone()))).collect())
            }
        }
    }

    fn set(&self, chain: &Chain, name: &str) -> Res<&'a super::model::SetDef> {
        self.rs
            .sets
            .get(&(chain.id.family.clone(), chain.id.table.clone(), name.to_string()))
            .ok_or_else(|| format!("the set @{name}, which is not listed"))
    }

    /// The fields a left-hand side names, with what each needs.
    fn fields(&self, left: &Value) -> Res<FieldsOf> {
        if let Some(parts) = left.get("concat").and_then(Value::as_array) {
            let (mut fam, mut deps, mut fields) = (None, Vec::new(), Vec::new());
            for p in parts {
                let (f, d, fs) = self.fields(p)?;
                if f.is_some() {
                    if fam.is_some() && fam != f {
                        return Err("a concatenation of IPv4 and IPv6 fields".into());
                    }
                    fam = f;
                }
                deps.extend(d);
                fields.extend(fs);
            }
            return Ok((fam, deps, fields));
        }
        if let Some(p) = left.get("payload") {
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("");
            let field = p.get("field").and_then(Value::as_str).unwrap_or("");
            return match (proto, field) {
                ("ip", "saddr") => Ok((Some(Family::Ipv4), vec![], vec![Field::Saddr])),
                ("ip", "daddr") => Ok((Some(Family::Ipv4), vec![], vec![Field::Daddr])),
                ("ip6", "saddr") => Ok((Some(Family::Ipv6), vec![], vec![Field::Saddr])),
                ("ip6", "daddr") => Ok((Some(Family::Ipv6), vec![], vec![Field::Daddr])),
                ("ip", "protocol") => Ok((Some(Family::Ipv4), vec![], vec![Field::L4proto])),
                ("ip6", "nexthdr") => Ok((Some(Family::Ipv6), vec![], vec![Field::L4proto])),
                ("tcp" | "udp" | "th", "sport" | "dport") => {
                    let deps = match proto {
                        "tcp" => vec![(Field::L4proto, Ranges::point(6))],
                        "udp" => vec![(Field::L4proto, Ranges::point(17))],
                        _ => vec![(
                            Field::L4proto,
                            Ranges::from_ranges(vec![(6, 6), (17, 17), (33, 33), (132, 132), (136, 136)]),
                        )],
                    };
                    let f = if field == "sport" { Field::Sport } else { Field::Dport };
                    Ok((None, deps, vec![f]))
                }
                _ => Err(format!("the payload field `{proto} {field}`")),
            };
        }
        if let Some(m) = left.get("meta") {
            let key = m.get("key").and_then(Value::as_str).unwrap_or("");
            return match key {
                "l4proto" => Ok((None, vec![], vec![Field::L4proto])),
                // `iif`/`oif` compare interface indexes; nft prints them
                // as the names, which name the same interfaces.
                "iifname" | "iif" => Ok((None, vec![], vec![Field::Iif])),
                "oifname" | "oif" => Ok((None, vec![], vec![Field::Oif])),
                _ => Err(format!("`meta {key}`")),
            };
        }
        Err(format!("the expression {left}"))
    }

    /// One value of `field`, as ranges.
    #[allow(clippy::only_used_in_recursion)]
    fn value(&self, field: Field, family: Option<Family>, v: &Value) -> Res<Ranges> {
        if let Some(inner) = v.get("elem").and_then(|e| e.get("val")) {
            return self.value(field, family, inner);
        }
        if let Some(r) = v.get("range").and_then(Value::as_array) {
            if r.len() == 2 {
                let a = self.value(field, family, &r[0])?;
                let b = self.value(field, family, &r[1])?;
                let lo = a.iter().next().map(|(x, _)| x);
                let hi = b.iter().last().map(|(_, y)| y);
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    return Ok(Ranges::range(lo, hi));
                }
            }
            return Err(format!("the range {v}"));
        }
        match field {
            Field::Saddr | Field::Daddr => {
                if let Some(p) = v.get("prefix") {
                    let addr = p.get("addr").and_then(Value::as_str).unwrap_or("");
                    let len = p.get("len").and_then(Value::as_u64).unwrap_or(999);
                    let net: ipnet::IpNet =
                        format!("{addr}/{len}").parse().map_err(|_| format!("the prefix {v}"))?;
                    return Ok(super::space::prefix_range(net.trunc()));
                }
                let s = v.as_str().ok_or_else(|| format!("the address {v}"))?;
                if let Ok(ip) = s.parse::<std::net::IpAddr>() {
                    return Ok(Ranges::point(ip_value(ip)));
                }
                if let Ok(net) = s.parse::<ipnet::IpNet>() {
                    return Ok(super::space::prefix_range(net.trunc()));
                }
                Err(format!("the address {v} (a host name?)"))
            }
            Field::Sport | Field::Dport => match v {
                Value::Number(n) => n.as_u64().filter(|p| *p <= 65535).map(|p| Ranges::point(p as u128)),
                Value::String(s) => s.parse::<u16>().ok().map(|p| Ranges::point(p as u128)),
                _ => None,
            }
            .ok_or_else(|| format!("the port {v}")),
            Field::L4proto => match v {
                Value::Number(n) => n.as_u64().filter(|p| *p <= 255).map(|p| Ranges::point(p as u128)),
                Value::String(s) => proto_number(s).map(Ranges::point),
                _ => None,
            }
            .ok_or_else(|| format!("the protocol {v}")),
            Field::Iif | Field::Oif => {
                let s = v.as_str().ok_or_else(|| format!("the interface name {v}"))?;
                if s.contains('*') {
                    return Err(format!("the interface wildcard {s:?}"));
                }
                Ok(Ranges::point(self.names.id(s)))
            }
        }
    }

    /// One element of a set whose key is `fields`.
    fn element(&self, fields: &[Field], family: Option<Family>, v: &Value) -> Res<Element> {
        if let Some(inner) = v.get("elem").and_then(|e| e.get("val")) {
            return self.element(fields, family, inner);
        }
        if fields.len() == 1 {
            return Ok(Element(vec![(fields[0], self.value(fields[0], family, v)?)]));
        }
        let parts = v.get("concat").and_then(Value::as_array).ok_or_else(|| format!("the element {v}"))?;
        if parts.len() != fields.len() {
            return Err(format!("the element {v}: {} parts for {} fields", parts.len(), fields.len()));
        }
        let mut out = Vec::new();
        for (f, p) in fields.iter().zip(parts) {
            out.push((*f, self.value(*f, family, p)?));
        }
        Ok(Element(out))
    }

    /// The elements a right-hand side stands for.
    fn elements(
        &self,
        chain: &Chain,
        fields: &[Field],
        family: Option<Family>,
        right: &Value,
    ) -> Res<Vec<Element>> {
        if let Some(name) = right.as_str().and_then(|s| s.strip_prefix('@')) {
            let set = self.set(chain, name)?;
            if set.map.is_some() {
                return Err(format!("the map @{name} used as a set"));
            }
            return set.elem.iter().map(|e| self.element(fields, family, e)).collect();
        }
        if let Some(items) = right.get("set").and_then(Value::as_array) {
            return items.iter().map(|e| self.element(fields, family, e)).collect();
        }
        Ok(vec![self.element(fields, family, right)?])
    }

    fn cond(&self, chain: &Chain, m: &Value) -> Res<Cond> {
        let op = m.get("op").and_then(Value::as_str).unwrap_or("");
        let left = m.get("left").unwrap_or(&Value::Null);
        let right = m.get("right").unwrap_or(&Value::Null);
        // `ct state`: every class is a new connection.
        if left.get("ct").and_then(|c| c.get("key")).and_then(Value::as_str) == Some("state") {
            let states: Vec<&str> = match right {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => match right.get("set").and_then(Value::as_array) {
                    Some(a) => a.iter().filter_map(Value::as_str).collect(),
                    None => return Err(format!("`ct state` against {right}")),
                },
            };
            let new = states.contains(&"new");
            let b = match op {
                "==" | "in" => new,
                "!=" => !new,
                _ => return Err(format!("`ct state {op}`")),
            };
            return Ok(Cond::Bool { v4: b, v6: b });
        }
        if let Some(key) = left.get("meta").and_then(|c| c.get("key")).and_then(Value::as_str) {
            if key == "nfproto" || key == "protocol" {
                let mut fams = BTreeSet::new();
                let items: Vec<&Value> = match right.get("set").and_then(Value::as_array) {
                    Some(a) => a.iter().collect(),
                    None => vec![right],
                };
                for i in items {
                    match i.as_str() {
                        Some("ipv4" | "ip") => fams.insert(Family::Ipv4),
                        Some("ipv6" | "ip6") => fams.insert(Family::Ipv6),
                        _ => return Err(format!("`meta {key}` against {i}")),
                    };
                }
                let (v4, v6) = (fams.contains(&Family::Ipv4), fams.contains(&Family::Ipv6));
                return match op {
                    "==" | "in" => Ok(Cond::Bool { v4, v6 }),
                    "!=" => Ok(Cond::Bool { v4: !v4, v6: !v6 }),
                    _ => Err(format!("`meta {key} {op}`")),
                };
            }
        }
        // An ICMP header field: it needs the packet to be ICMP, which no
        // class is (the audit's classes are TCP and UDP), so its value never
        // decides anything and is not read.
        if let Some(p) = left.get("payload") {
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("");
            let (family, number) = match proto {
                "icmp" => (Some(Family::Ipv4), 1),
                "icmpv6" => (Some(Family::Ipv6), 58),
                _ => (None, 0),
            };
            if number != 0 {
                return Ok(Cond::Split {
                    family,
                    deps: vec![(Field::L4proto, Ranges::point(number))],
                    elements: vec![Element::default()],
                    negate: false,
                });
            }
        }
        let (family, deps, fields) = self.fields(left)?;
        let (elements, negate) = match op {
            "==" | "in" => (self.elements(chain, &fields, family, right)?, false),
            "!=" => (self.elements(chain, &fields, family, right)?, true),
            "<" | ">" | "<=" | ">=" if fields.len() == 1 => {
                let f = fields[0];
                let v = self.value(f, family, right)?;
                let x = v.iter().next().map(|(a, _)| a).ok_or("an empty value")?;
                let max = match f {
                    Field::Saddr | Field::Daddr => match family {
                        Some(fam) => all_addresses(fam).iter().next().map(|(_, b)| b).unwrap_or(0),
                        None => return Err(format!("`{op}` on {left}")),
                    },
                    Field::Sport | Field::Dport => 65535,
                    Field::L4proto => 255,
                    _ => return Err(format!("`{op}` on {left}")),
                };
                let r = match op {
                    "<" if x == 0 => Ranges::empty(),
                    "<" => Ranges::range(0, x - 1),
                    "<=" => Ranges::range(0, x),
                    ">" => Ranges::range(x + 1, max),
                    _ => Ranges::range(x, max),
                };
                (vec![Element(vec![(f, r)])], false)
            }
            _ => return Err(format!("the operator `{op}`")),
        };
        Ok(Cond::Split { family, deps, elements, negate })
    }

    /// A verdict map's entries: elements and the verdict each gives.
    #[allow(clippy::type_complexity)]
    fn vmap(&self, chain: &Chain, vm: &Value) -> Res<(Option<Family>, Vec<(Vec<Element>, Value)>)> {
        let key = vm.get("key").unwrap_or(&Value::Null);
        let (family, deps, fields) = self.fields(key)?;
        let data = vm.get("data").unwrap_or(&Value::Null);
        let entries: Vec<Value> = if let Some(name) = data.as_str().and_then(|s| s.strip_prefix('@')) {
            let set = self.set(chain, name)?;
            if set.map.as_deref() != Some("verdict") {
                return Err(format!("@{name} used as a verdict map"));
            }
            set.elem.clone()
        } else if let Some(items) = data.get("set").and_then(Value::as_array) {
            items.clone()
        } else {
            return Err(format!("the verdict map {data}"));
        };
        let mut out = Vec::new();
        for e in entries {
            let pair = e.as_array().filter(|a| a.len() == 2).ok_or_else(|| format!("the map entry {e}"))?;
            let mut el = self.element(&fields, family, &pair[0])?;
            el.0.extend(deps.iter().cloned());
            out.push((vec![el], pair[1].clone()));
        }
        Ok((family, out))
    }
}

fn apply(cond: &Cond, class: &Class) -> (Vec<Class>, Vec<Class>) {
    match cond {
        Cond::Bool { v4, v6 } => {
            let b = match class.family {
                Family::Ipv4 => *v4,
                Family::Ipv6 => *v6,
            };
            if b {
                (vec![class.clone()], vec![])
            } else {
                (vec![], vec![class.clone()])
            }
        }
        Cond::Split { family, deps, elements, negate } => {
            if family.is_some_and(|f| f != class.family) {
                return (vec![], vec![class.clone()]);
            }
            let (dep_yes, mut no) = if deps.is_empty() {
                (vec![class.clone()], vec![])
            } else {
                split(class, &[Element(deps.clone())])
            };
            let mut yes = Vec::new();
            for c in dep_yes {
                let (y, n) = split(&c, elements);
                if *negate {
                    yes.extend(n);
                    no.extend(y);
                } else {
                    yes.extend(y);
                    no.extend(n);
                }
            }
            (yes, no)
        }
    }
}
