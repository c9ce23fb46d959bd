//! Unit tests on nft JSON fixtures, one construct each.

use serde_json::{json, Value};

use super::*;

const HOST: &str = "10.0.0.1";

/// A ruleset of one `inet t` table: `chains` as (name, hook, prio, policy),
/// `rules` as (chain, handle, comment, expr), `extra` objects as they are.
fn ruleset(
    chains: &[(&str, Option<&str>, i64, &str)],
    rules: &[(&str, u64, Option<&str>, Value)],
    extra: &[Value],
) -> Ruleset {
    let mut arr = vec![
        json!({"metainfo": {"json_schema_version": 1}}),
        json!({"table": {"family": "inet", "name": "t", "handle": 1}}),
    ];
    for (name, hook, prio, policy) in chains {
        let mut c = json!({"family": "inet", "table": "t", "name": name, "handle": 1});
        if let Some(h) = hook {
            c["type"] = json!("filter");
            c["hook"] = json!(h);
            c["prio"] = json!(prio);
            c["policy"] = json!(policy);
        }
        arr.push(json!({ "chain": c }));
    }
    arr.extend(extra.iter().cloned());
    for (chain, handle, comment, expr) in rules {
        let mut r = json!({"family": "inet", "table": "t", "chain": chain, "handle": handle, "expr": expr});
        if let Some(c) = comment {
            r["comment"] = json!(c);
        }
        arr.push(json!({ "rule": r }));
    }
    Ruleset::parse(&json!({ "nftables": arr }).to_string(), "fixture").unwrap()
}

fn m(left: Value, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}
fn saddr() -> Value {
    json!({"payload": {"protocol": "ip", "field": "saddr"}})
}
fn dport(p: &str) -> Value {
    json!({"payload": {"protocol": p, "field": "dport"}})
}
fn accept() -> Value {
    json!({"accept": null})
}

fn path(rule: &str, dir: Direction, proto: u8, port: u16, peers: &[&str]) -> DocumentedPath {
    DocumentedPath {
        rule: rule.into(),
        provenance: "m.yaml:1".into(),
        direction: dir,
        proto,
        ports: vec![(port, port)],
        peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
        unresolved: vec![],
    }
}

fn input(paths: Vec<DocumentedPath>) -> Input {
    Input { host: "h".into(), addresses: vec![HOST.parse().unwrap()], paths, interface: None }
}

fn statuses(r: &Report) -> Vec<(&str, Status)> {
    r.paths.iter().map(|p| (p.rule.as_str(), p.status.clone())).collect()
}

fn deciding_handles(r: &Report, rule: &str) -> Vec<(Option<u64>, Verdict)> {
    let p = r.paths.iter().find(|p| p.rule == rule).unwrap();
    p.parts.iter().map(|x| (x.decision.handle, x.decision.verdict.clone())).collect()
}

#[test]
fn named_interval_set_and_anonymous_port_set_with_policy_drop() {
    let rs = ruleset(
        &[("input", Some("input"), 0, "drop")],
        &[
            (
                "input",
                2,
                None,
                json!([
                    m(json!({"ct": {"key": "state"}}), "in", json!(["established", "related"])),
                    accept()
                ]),
            ),
            ("input", 3, None, json!([m(json!({"meta": {"key": "iifname"}}), "==", json!("lo")), accept()])),
            (
                "input",
                4,
                Some("rule:ssh"),
                json!([
                    m(saddr(), "==", json!("@adm")),
                    m(dport("tcp"), "==", json!({"set": [22, {"range": [1000, 2000]}]})),
                    {"counter": {"packets": 0, "bytes": 0}},
                    accept()
                ]),
            ),
        ],
        &[
            json!({"set": {"family": "inet", "table": "t", "name": "adm", "type": "ipv4_addr", "flags": ["interval"],
            "elem": [{"prefix": {"addr": "10.1.0.0", "len": 24}}, {"range": ["10.2.0.1", "10.2.0.9"]}]}}),
        ],
    );
    let r = audit(
        &rs,
        &input(vec![
            path("ok", Direction::Inbound, 6, 22, &["10.1.0.0/25", "10.2.0.5/32"]),
            path("range", Direction::Inbound, 6, 1500, &["10.1.0.7/32"]),
            path("half", Direction::Inbound, 6, 22, &["10.2.0.0/28"]),
            path("udp", Direction::Inbound, 17, 22, &["10.1.0.1/32"]),
        ]),
    );
    assert_eq!(
        statuses(&r),
        vec![
            ("ok", Status::Accepted),
            ("range", Status::Accepted),
            ("half", Status::Blocked),
            ("udp", Status::Blocked)
        ]
    );
    // Only the part of 10.2.0.0/28 outside 10.2.0.1-9 is dropped, by the policy.
    let half = &r.paths[2].parts;
    assert_eq!(half.len(), 1);
    assert_eq!(half[0].peers, vec!["10.2.0.0/32", "10.2.0.10/31", "10.2.0.12/30"]);
    assert_eq!((half[0].decision.handle, &half[0].decision.verdict), (None, &Verdict::Drop));
    assert!(r.unused_rules.is_empty(), "{:?}", r.unused_rules);
    // The ssh rule opens 22 and 1000-2000 to more than the documented sources.
    assert!(!r.undocumented_openings.is_empty());
    assert!(r.undocumented_openings.iter().all(|o| o.decision.handle == Some(4)));
}

#[test]
fn jump_return_and_goto() {
    let rs = ruleset(
        &[("input", Some("input"), 0, "accept"), ("x", None, 0, ""), ("y", None, 0, "")],
        &[
            ("input", 2, None, json!([m(dport("tcp"), "==", json!(80)), {"jump": {"target": "x"}}])),
            ("input", 3, None, json!([m(dport("tcp"), "==", json!(81)), {"goto": {"target": "y"}}])),
            (
                "input",
                4,
                Some("after"),
                json!([m(dport("tcp"), "==", json!({"set": [80, 81]})), {"drop": null}]),
            ),
            ("x", 10, None, json!([m(saddr(), "==", json!("10.9.0.1")), {"return": null}])),
            ("x", 11, None, json!([accept()])),
            ("y", 20, None, json!([m(saddr(), "==", json!("10.9.0.1")), {"return": null}])),
            ("y", 21, None, json!([{"reject": {"type": "icmpx", "expr": "port-unreachable"}}])),
        ],
        &[],
    );
    let r = audit(
        &rs,
        &input(vec![
            path("jump-accept", Direction::Inbound, 6, 80, &["10.9.0.2/32"]),
            path("jump-return", Direction::Inbound, 6, 80, &["10.9.0.1/32"]),
            path("goto-return", Direction::Inbound, 6, 81, &["10.9.0.1/32"]),
            path("goto-reject", Direction::Inbound, 6, 81, &["10.9.0.2/32"]),
        ]),
    );
    assert_eq!(deciding_handles(&r, "jump-accept"), vec![]);
    // Returned from x: on to rule 4 of input, which drops.
    assert_eq!(deciding_handles(&r, "jump-return"), vec![(Some(4), Verdict::Drop)]);
    // A return from a goto'd chain returns from input: its policy accepts.
    assert_eq!(deciding_handles(&r, "goto-return"), vec![]);
    assert_eq!(deciding_handles(&r, "goto-reject"), vec![(Some(21), Verdict::Reject)]);
    assert_eq!(r.paths[2].status, Status::Accepted);
}

#[test]
fn verdict_maps_named_and_anonymous() {
    let rs = ruleset(
        &[("input", Some("input"), 0, "drop"), ("x", None, 0, "")],
        &[
            ("input", 2, None, json!([{"vmap": {"key": dport("tcp"), "data": "@vm"}}])),
            (
                "input",
                3,
                None,
                json!([{"vmap": {"key": dport("udp"), "data": {"set": [[53, {"jump": {"target": "x"}}]]}}}]),
            ),
            ("x", 10, None, json!([accept()])),
        ],
        &[
            json!({"map": {"family": "inet", "table": "t", "name": "vm", "type": "inet_service", "map": "verdict",
            "elem": [[80, {"accept": null}], [81, {"drop": null}]]}}),
        ],
    );
    let r = audit(
        &rs,
        &input(vec![
            path("a", Direction::Inbound, 6, 80, &["10.9.0.1/32"]),
            path("b", Direction::Inbound, 6, 81, &["10.9.0.1/32"]),
            path("c", Direction::Inbound, 17, 53, &["10.9.0.1/32"]),
            path("d", Direction::Inbound, 6, 53, &["10.9.0.1/32"]),
        ]),
    );
    assert_eq!(deciding_handles(&r, "a"), vec![]);
    assert_eq!(deciding_handles(&r, "b"), vec![(Some(2), Verdict::Drop)]);
    assert_eq!(deciding_handles(&r, "c"), vec![]);
    assert_eq!(deciding_handles(&r, "d"), vec![(None, Verdict::Drop)]);
}

#[test]
fn concatenation_of_address_and_port() {
    let rs = ruleset(
        &[("input", Some("input"), 0, "drop")],
        &[(
            "input",
            2,
            None,
            json!([m(json!({"concat": [saddr(), dport("tcp")]}), "==", json!("@pp")), accept()]),
        )],
        &[
            json!({"set": {"family": "inet", "table": "t", "name": "pp", "type": ["ipv4_addr", "inet_service"],
            "elem": [{"concat": ["10.9.0.1", 22]}, {"concat": [{"prefix": {"addr": "10.8.0.0", "len": 16}}, 443]}]}}),
        ],
    );
    let r = audit(
        &rs,
        &input(vec![
            path("a", Direction::Inbound, 6, 22, &["10.9.0.1/32"]),
            path("b", Direction::Inbound, 6, 443, &["10.8.3.0/24"]),
            path("c", Direction::Inbound, 6, 443, &["10.9.0.1/32"]),
        ]),
    );
    assert_eq!(statuses(&r), vec![("a", Status::Accepted), ("b", Status::Accepted), ("c", Status::Blocked)]);
}

#[test]
fn ct_state_interfaces_l4proto_and_ipv6() {
    let rs = ruleset(
        &[("input", Some("input"), 0, "drop"), ("output", Some("output"), 0, "drop")],
        &[
            (
                "input",
                2,
                None,
                json!([
                    m(json!({"ct": {"key": "state"}}), "==", json!({"set": ["established", "related"]})),
                    accept()
                ]),
            ),
            (
                "input",
                3,
                None,
                json!([
                    m(json!({"ct": {"key": "state"}}), "==", json!("new")),
                    m(json!({"meta": {"key": "iifname"}}), "==", json!("eth0")),
                    m(json!({"meta": {"key": "l4proto"}}), "==", json!("udp")),
                    accept()
                ]),
            ),
            (
                "input",
                4,
                None,
                json!([
                    m(
                        json!({"payload": {"protocol": "ip6", "field": "saddr"}}),
                        "==",
                        json!({"prefix": {"addr": "fd00::", "len": 8}})
                    ),
                    m(dport("th"), "==", json!(22)),
                    accept()
                ]),
            ),
            (
                "output",
                5,
                None,
                json!([
                    m(json!({"meta": {"key": "oifname"}}), "!=", json!("lo")),
                    m(dport("tcp"), ">=", json!(1024)),
                    accept()
                ]),
            ),
        ],
        &[],
    );
    let mut inp = input(vec![
        path("udp-eth0", Direction::Inbound, 17, 53, &["10.9.0.1/32"]),
        path("v6", Direction::Inbound, 6, 22, &["fd12::1/128"]),
        path("v6-out-of-range", Direction::Inbound, 6, 22, &["fe80::1/128"]),
        path("out-high", Direction::Outbound, 6, 8080, &["10.9.0.1/32"]),
        path("out-low", Direction::Outbound, 6, 80, &["10.9.0.1/32"]),
    ]);
    inp.addresses.push("fd00::1".parse().unwrap());
    let r = audit(&rs, &inp);
    // Without --interface, eth0 is one of the interfaces: the rest is dropped.
    assert_eq!(r.paths[0].status, Status::Blocked);
    assert_eq!(
        statuses(&r)[1..].to_vec(),
        vec![
            ("v6", Status::Accepted),
            ("v6-out-of-range", Status::Blocked),
            ("out-high", Status::Accepted),
            ("out-low", Status::Blocked)
        ]
    );
    inp.interface = Some("eth0".into());
    assert_eq!(audit(&rs, &inp).paths[0].status, Status::Accepted);
}

#[test]
fn every_base_chain_on_the_hook_must_accept_in_priority_order() {
    let mut arr: Vec<Value> = vec![json!({"metainfo": {"json_schema_version": 1}})];
    for (fam, table, prio, policy) in [("inet", "a", 10, "accept"), ("ip", "b", -10, "accept")] {
        arr.push(json!({"table": {"family": fam, "name": table, "handle": 1}}));
        arr.push(json!({"chain": {"family": fam, "table": table, "name": "in", "handle": 1, "type": "filter", "hook": "input", "prio": prio, "policy": policy}}));
    }
    arr.push(json!({"rule": {"family": "inet", "table": "a", "chain": "in", "handle": 5, "expr": [m(dport("tcp"), "==", json!(22)), {"drop": null}]}}));
    arr.push(json!({"rule": {"family": "ip", "table": "b", "chain": "in", "handle": 6, "expr": [m(dport("tcp"), "==", json!(23)), {"reject": null}]}}));
    arr.push(json!({"rule": {"family": "ip", "table": "b", "chain": "in", "handle": 7, "expr": [m(dport("tcp"), "==", json!(22)), accept()]}}));
    let rs = Ruleset::parse(&json!({ "nftables": arr }).to_string(), "fixture").unwrap();
    let r = audit(
        &rs,
        &input(vec![
            path("22", Direction::Inbound, 6, 22, &["10.9.0.1/32"]),
            path("23", Direction::Inbound, 6, 23, &["10.9.0.1/32"]),
        ]),
    );
    // Accepted by b (priority -10), then dropped by a (10).
    let p = &r.paths[0].parts;
    assert_eq!((p[0].decision.chain.table.as_str(), p[0].decision.handle), ("a", Some(5)));
    assert_eq!(deciding_handles(&r, "23"), vec![(Some(6), Verdict::Reject)]);
}

#[test]
fn not_understood_is_reported_with_the_handle_and_never_guessed() {
    let rs = ruleset(
        &[("input", Some("input"), 0, "drop")],
        &[
            // Matches it cannot read, without a verdict: no effect.
            (
                "input",
                2,
                None,
                json!([m(json!({"meta": {"key": "mark"}}), "==", json!(1)), {"counter": null}]),
            ),
            (
                "input",
                3,
                None,
                json!([m(dport("tcp"), "==", json!(22)), {"limit": {"rate": 10, "per": "second"}}, accept()]),
            ),
            ("input", 4, None, json!([m(json!({"meta": {"key": "mark"}}), "==", json!(1)), accept()])),
            ("input", 5, None, json!([m(dport("tcp"), "==", json!(80)), accept()])),
        ],
        &[],
    );
    let r = audit(
        &rs,
        &input(vec![
            path("ssh", Direction::Inbound, 6, 22, &["10.9.0.1/32"]),
            path("web", Direction::Inbound, 6, 80, &["10.9.0.1/32"]),
        ]),
    );
    // 22 reaches the limit (handle 3); 80 passes 3 and reaches the mark (handle 4).
    assert_eq!(deciding_handles(&r, "ssh"), vec![(Some(3), Verdict::NotUnderstood)]);
    assert_eq!(deciding_handles(&r, "web"), vec![(Some(4), Verdict::NotUnderstood)]);
    assert_eq!(r.paths[0].status, Status::NotUnderstood);
    let nu: Vec<(u64, &str)> =
        r.not_understood.iter().map(|n| (n.rule.handle, n.reason.as_deref().unwrap())).collect();
    assert_eq!(nu, vec![(3, "the statement `limit`"), (4, "`meta mark`")]);
    assert!(!r.is_clean());
}

#[test]
fn unused_and_over_broad_rules() {
    let rs = ruleset(
        &[("input", Some("input"), 0, "drop")],
        &[
            ("input", 2, Some("rule:web"), json!([m(dport("tcp"), "==", json!(80)), accept()])),
            (
                "input",
                3,
                Some("rule:old"),
                json!([m(saddr(), "==", json!("10.9.0.9")), m(dport("tcp"), "==", json!(25)), accept()]),
            ),
        ],
        &[],
    );
    let r = audit(&rs, &input(vec![path("web", Direction::Inbound, 6, 80, &["10.9.0.0/24"])]));
    assert_eq!(statuses(&r), vec![("web", Status::Accepted)]);
    type Row = (Vec<String>, Option<u64>, Option<Vec<String>>);
    let open: Vec<Row> = r
        .undocumented_openings
        .iter()
        .map(|o| (o.ports.clone(), o.decision.handle, o.all_but.clone()))
        .collect();
    assert_eq!(
        open,
        vec![
            (vec!["80".to_string()], Some(2), Some(vec!["10.9.0.0/24".to_string()])),
            (vec!["25".to_string()], Some(3), None),
        ]
    );
    assert_eq!(r.unused_rules.iter().map(|u| u.rule.handle).collect::<Vec<_>>(), vec![3]);
}

#[test]
fn malformed_json_names_the_origin() {
    let e = Ruleset::parse("{}", "saved.json").unwrap_err().to_string();
    assert!(e.starts_with("saved.json: no top-level \"nftables\" array"), "{e}");
}
