//! The Falco encoding: the shape falcosidekick accepts (it rejects an event
//! with an empty rule, priority, time or output_fields), for every kind,
//! state and protocol; one event pinned byte for byte; the docs' example.

mod siem_alerts;

use monitor::{alert::Kind, falco, flow::FlowState, flow::Proto, siem::Reporter};
use serde_json::{json, Value};

const PRIORITIES: [&str; 8] =
    ["Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug"];

fn reporter() -> Reporter {
    Reporter::new("rppam1")
}

fn encode(a: &monitor::alert::Alert) -> Value {
    serde_json::from_str(&falco::to_json(a, &reporter())).unwrap()
}

#[test]
fn no_required_field_is_ever_empty() {
    let mut alerts = siem_alerts::every_alert();
    alerts.extend(siem_alerts::from_example_captures());
    for a in alerts {
        let e = encode(&a);
        let what = format!("{:?} {:?} {:?}: {e}", a.kind, a.state, a.proto);
        let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["hostname", "output", "output_fields", "priority", "rule", "source", "tags", "time"],
            "{what}"
        );
        for k in ["rule", "priority", "time", "output", "source", "hostname"] {
            assert!(!e[k].as_str().unwrap().is_empty(), "{k} empty: {what}");
        }
        assert!(PRIORITIES.contains(&e["priority"].as_str().unwrap()), "{what}");
        let time = e["time"].as_str().unwrap();
        assert!(
            humantime::parse_rfc3339(time).is_ok()
                && time.len() == "2026-04-06T10:00:03.250000000Z".len()
                && time == humantime::format_rfc3339_nanos(a.last_seen).to_string(),
            "{what}"
        );
        assert!(!e["output"].as_str().unwrap().contains('\n'), "{what}");
        let fields = e["output_fields"].as_object().unwrap();
        assert!(fields.len() >= 10, "{what}");
        for (k, v) in fields {
            assert!(v.is_string() || v.is_number() || v.is_boolean(), "{k} is no scalar: {what}");
        }
        let ns = a.last_seen.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        assert_eq!(fields["evt.time"], json!(ns), "{what}");
        assert_eq!(fields["monitor.kind"], a.kind.as_str(), "{what}");
        let tags: Vec<&str> = e["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        assert!(tags.contains(&a.kind.as_str()) && tags.contains(&"monitor"), "{what}");
        let rule_tag = a.rule.as_ref().map(|r| format!("rule:{r}"));
        assert_eq!(tags.iter().any(|t| Some(t.to_string()) == rule_tag), a.rule.is_some(), "{what}");
    }
}

#[test]
fn falco_field_names_only_where_the_meaning_is_falcos() {
    let fields = |proto| {
        let e = encode(&siem_alerts::alert(Kind::Unexpected, FlowState::Answered, proto, false, 0));
        e["output_fields"].as_object().unwrap().clone()
    };
    let tcp = fields(Proto::Tcp);
    assert_eq!(
        (&tcp["fd.l4proto"], &tcp["fd.cip"], &tcp["fd.cport"], &tcp["fd.sip"], &tcp["fd.sport"]),
        (&json!("tcp"), &json!("10.200.2.50"), &json!(51011), &json!("10.200.1.20"), &json!(5432))
    );
    let icmp = fields(Proto::Icmp);
    assert_eq!(icmp["fd.l4proto"], "icmp");
    assert!(!icmp.contains_key("fd.cport") && !icmp.contains_key("fd.sport"));
    let v6 = fields(Proto::Icmpv6);
    assert!(!v6.keys().any(|k| k.starts_with("fd.")), "Falco has no ICMPv6 protocol name: {v6:?}");
    assert_eq!(v6["monitor.proto"], "icmpv6");
}

#[test]
fn the_icmp_error_names_its_sender_when_known() {
    let fields = |v6, variant| {
        let a = siem_alerts::alert(Kind::Blocked, FlowState::IcmpUnreachable, Proto::Tcp, v6, variant);
        encode(&a)["output_fields"].as_object().unwrap().clone()
    };
    assert_eq!(fields(true, 0)["monitor.icmp.sender"], "fd00:200::fe");
    assert_eq!(fields(false, 0)["monitor.icmp.sender"], "10.200.1.20");
    let unknown = fields(false, 2);
    assert_eq!(unknown["monitor.icmp.name"], "admin-prohibited");
    assert!(!unknown.contains_key("monitor.icmp.sender"), "left out when not known: {unknown:?}");
}

#[test]
fn priority_follows_kind_and_state() {
    let p = |kind, state| encode(&siem_alerts::alert(kind, state, Proto::Tcp, false, 0))["priority"].clone();
    assert_eq!(p(Kind::Exposed, FlowState::Established), "Error");
    assert_eq!(p(Kind::Blocked, FlowState::Unanswered), "Warning");
    assert_eq!(p(Kind::Unexpected, FlowState::Closed), "Warning");
    assert_eq!(p(Kind::Unexpected, FlowState::Refused), "Notice");
    assert_eq!(p(Kind::Overflow, FlowState::Refused), "Warning");
}

const DOCUMENTED: &str = concat!(
    r#"{"time":"2026-04-06T10:00:01.001950000Z","rule":"monitor: blocked documented path","priority":"Warning","#,
    r#""output":"BLOCKED    tcp    10.200.1.13:40203 (rppam3) -> 10.200.1.20:5432 (db1; database) rule=db-postgres: "#,
    r#"icmp admin-prohibited: the client's packet was rejected with ICMP type 3 code 13 [icmp-unreachable, "#,
    r#"icmp admin-prohibited (3/13), 1 pkts, 56 B, 2026-04-06T10:00:01Z]","#,
    r#""output_fields":{"evt.time":1775469601001950000,"fd.cip":"10.200.1.13","fd.cport":40203,"#,
    r#""fd.l4proto":"tcp","fd.sip":"10.200.1.20","fd.sport":5432,"monitor.bytes":56,"monitor.count":1,"#,
    r#""monitor.dst.host":"db1","monitor.dst.ip":"10.200.1.20","monitor.dst.port":5432,"#,
    r#""monitor.dst.service":"database","monitor.dst.zone":"cluster","#,
    r#""monitor.first_seen":"2026-04-06T10:00:01.001800000Z","monitor.icmp.code":13,"#,
    r#""monitor.icmp.name":"admin-prohibited","monitor.icmp.sender":"10.200.1.20","monitor.icmp.type":3,"#,
    r#""monitor.initiator_seen":true,"#,
    r#""monitor.kind":"blocked","monitor.last_seen":"2026-04-06T10:00:01.001950000Z","monitor.packets":1,"#,
    r#""monitor.proto":"tcp","monitor.reason":"icmp admin-prohibited: the client's packet was rejected with "#,
    r#"ICMP type 3 code 13","monitor.rule":"db-postgres","monitor.src.host":"rppam3","#,
    r#""monitor.src.ip":"10.200.1.13","monitor.src.port":40203,"monitor.src.service":"rppam","#,
    r#""monitor.src.zone":"cluster","monitor.state":"icmp-unreachable"},"source":"monitor","#,
    r#""tags":["monitor","network","blocked","rule:db-postgres"],"hostname":"rppam1"}"#
);

#[test]
fn one_alert_exactly() {
    assert_eq!(falco::to_json(&siem_alerts::documented(), &reporter()), DOCUMENTED);
}

#[test]
fn the_documented_example_is_what_the_encoder_gives() {
    let (alert, reporter) = (siem_alerts::documented(), reporter());
    let event = falco::event(&alert, &reporter);
    assert_eq!(
        siem_alerts::doc_example("### Example Falco event"),
        serde_json::to_value(&event).unwrap(),
        "docs/alerts.md's Falco example is out of date; replace it with:\n{}",
        serde_json::to_string_pretty(&event).unwrap()
    );
}
