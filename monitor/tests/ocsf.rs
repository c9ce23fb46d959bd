//! The OCSF encoding, checked by a real validator: every kind, state,
//! protocol and address family encodes to an event that the JSON Schema of
//! OCSF 1.4.0 Network Activity (generated offline by PyPI's
//! `ocsf-json-schema` from its embedded copy of the published schema, and
//! applied by `jsonschema`) accepts, and that passes the checks JSON Schema
//! cannot express (tests/fixtures/ocsf/validate.py). Deliberately broken
//! events are rejected, so the validator is known to validate.

mod siem_alerts;

use std::{io::Write, path::Path, process::Command};

use monitor::{
    alert::Kind,
    flow::FlowState,
    ocsf::{self, Activity},
    siem::Reporter,
};
use serde_json::{json, Value};

fn reporter() -> Reporter {
    Reporter::new("rppam1")
}

/// Runs the validator over `events` (one JSON object each): one verdict per
/// event, "ok" or "invalid: ...".
fn validate(events: &[String]) -> Vec<String> {
    validate_as(ocsf::VERSION, events)
}

/// [`validate`] against the schema of OCSF `version`.
fn validate_as(version: &str, events: &[String]) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ocsf/validate.py");
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for e in events {
        writeln!(file, "{e}").unwrap();
    }
    file.flush().unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .arg(version)
        .arg(file.path())
        .output()
        .expect("python3 runs the OCSF validator: install Python 3 (cargo xtask setup)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(3),
        "the OCSF validator needs the Python packages ocsf-json-schema and jsonschema: run cargo xtask setup\n{stderr}"
    );
    assert!(matches!(out.status.code(), Some(0 | 1)), "validator failed ({}): {stderr}", out.status);
    let verdicts: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
    assert_eq!(verdicts.len(), events.len(), "one verdict per event; stderr: {stderr}");
    verdicts
}

#[test]
fn every_kind_state_and_protocol_is_a_valid_ocsf_network_activity() {
    let alerts = siem_alerts::every_alert();
    assert_eq!(alerts.len(), 4 * 7 * 4 * 2 * 4);
    let events: Vec<String> = alerts.iter().map(|a| ocsf::to_json(a, &reporter())).collect();
    let verdicts = validate(&events);
    let invalid: Vec<String> = verdicts
        .iter()
        .zip(&events)
        .filter(|(v, _)| *v != "ok")
        .map(|(v, e)| format!("{v}\n  {e}"))
        .collect();
    assert!(
        invalid.is_empty(),
        "{} of {} events invalid:\n{}",
        invalid.len(),
        events.len(),
        invalid.join("\n")
    );
}

#[test]
fn the_example_captures_findings_are_valid_ocsf() {
    let alerts = siem_alerts::from_example_captures();
    let kinds: std::collections::BTreeSet<Kind> = alerts.iter().map(|a| a.kind).collect();
    assert_eq!(kinds.len(), 3, "every kind of finding: {kinds:?}");
    assert!(alerts.contains(&siem_alerts::documented()), "the docs' example is a finding of blocked.pcapng");
    let events: Vec<String> = alerts.iter().map(|a| ocsf::to_json(a, &reporter())).collect();
    for (verdict, event) in validate(&events).iter().zip(&events) {
        assert_eq!(verdict, "ok", "{event}");
    }
}

/// OCSF 1.x only adds: consumers on the later schemas embedded in
/// ocsf-json-schema (1.5.0 to 1.8.0) accept the events unchanged but for
/// `metadata.version`; the earlier ones (1.1.0 to 1.3.0) lack `is_alert`.
#[test]
fn later_ocsf_versions_accept_the_events() {
    let mut events = Vec::new();
    for a in siem_alerts::every_alert().iter().step_by(7) {
        events.push(serde_json::to_value(ocsf::event(a, &reporter())).unwrap());
    }
    for version in ["1.5.0", "1.6.0", "1.7.0", "1.8.0"] {
        let lines: Vec<String> = events
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e["metadata"]["version"] = json!(version);
                e.to_string()
            })
            .collect();
        for (verdict, event) in validate_as(version, &lines).iter().zip(&lines) {
            assert_eq!(verdict, "ok", "OCSF {version}: {event}");
        }
    }
}

#[test]
fn the_validator_rejects_broken_events() {
    let good: Value = serde_json::from_str(&ocsf::to_json(&siem_alerts::documented(), &reporter())).unwrap();
    type Break = fn(&mut Value);
    let broken: [(&str, Break, &str); 9] = [
        (
            "activity_id as a string",
            |e| e["activity_id"] = json!("4"),
            "activity_id: '4' is not of type 'integer'",
        ),
        (
            "no class_uid",
            |e| drop(e.as_object_mut().unwrap().remove("class_uid")),
            "class_uid None is no OCSF",
        ),
        ("no time", |e| drop(e.as_object_mut().unwrap().remove("time")), "'time' is a required property"),
        ("activity 8", |e| e["activity_id"] = json!(8), "activity_id: 8 is not one of"),
        ("a field the class lacks", |e| e["rule"] = json!("db-postgres"), "('rule' was unexpected)"),
        (
            "not an IP address",
            |e| e["src_endpoint"]["ip"] = json!("rppam3"),
            "src_endpoint/ip: 'rppam3' does not match",
        ),
        (
            "type_uid of another activity",
            |e| e["type_uid"] = json!(400101),
            "type_uid 400101 is not class_uid * 100",
        ),
        ("caption of another activity", |e| e["activity_name"] = json!("Open"), "activity_name is 'Open'"),
        (
            "direction caption",
            |e| e["connection_info"]["direction"] = json!("Inbound"),
            "connection_info.direction is",
        ),
    ];
    let mut events = vec![good.to_string()];
    for (_, f, _) in &broken {
        let mut e = good.clone();
        f(&mut e);
        events.push(e.to_string());
    }
    let verdicts = validate(&events);
    assert_eq!(verdicts[0], "ok", "the unbroken event: {}", events[0]);
    for ((what, _, expect), verdict) in broken.iter().zip(&verdicts[1..]) {
        assert!(
            verdict.starts_with("invalid: ") && verdict.contains(expect),
            "{what}: expected {expect:?} in {verdict:?}"
        );
    }
}

#[test]
fn activity_type_and_status_follow_the_state() {
    let table = [
        (FlowState::Established, Activity::Open, 400101, 1),
        (FlowState::Closed, Activity::Close, 400102, 1),
        (FlowState::Refused, Activity::Refuse, 400105, 2),
        (FlowState::Unanswered, Activity::Fail, 400104, 2),
        (FlowState::IcmpUnreachable, Activity::Fail, 400104, 2),
        (FlowState::Answered, Activity::Traffic, 400106, 1),
        (FlowState::Awaiting, Activity::Traffic, 400106, 0),
    ];
    assert_eq!(table.len(), siem_alerts::STATES.len());
    for (state, activity, type_uid, status_id) in table {
        let a = siem_alerts::alert(Kind::Blocked, state, monitor::flow::Proto::Tcp, false, 0);
        let e: Value = serde_json::from_str(&ocsf::to_json(&a, &reporter())).unwrap();
        assert_eq!(ocsf::activity(state), activity);
        assert_eq!(
            (&e["activity_id"], &e["activity_name"], &e["type_uid"], &e["status_id"], &e["status_detail"]),
            (
                &json!(activity.id()),
                &json!(activity.name()),
                &json!(type_uid),
                &json!(status_id),
                &json!(monitor::alert::state_name(state))
            ),
            "{state:?}"
        );
    }
    // Overflow records report no flow of their own.
    let o = siem_alerts::alert(Kind::Overflow, FlowState::Established, monitor::flow::Proto::Tcp, false, 0);
    let e: Value = serde_json::from_str(&ocsf::to_json(&o, &reporter())).unwrap();
    assert_eq!((&e["activity_id"], &e["type_uid"]), (&json!(99), &json!(400199)));
    assert!(e.get("status_id").is_none(), "{e}");
    assert_eq!(e["unmapped"]["overflow"]["folded_total"], 4000);
    assert_eq!(e["count"], 12);
}

#[test]
fn severity_and_direction_follow_kind_state_and_zones() {
    let sev = |kind, state| {
        let a = siem_alerts::alert(kind, state, monitor::flow::Proto::Tcp, false, 0);
        serde_json::from_str::<Value>(&ocsf::to_json(&a, &reporter())).unwrap()["severity_id"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(sev(Kind::Exposed, FlowState::Established), 4);
    assert_eq!(sev(Kind::Blocked, FlowState::Refused), 3);
    assert_eq!(sev(Kind::Unexpected, FlowState::Established), 3);
    assert_eq!(sev(Kind::Unexpected, FlowState::Answered), 3);
    assert_eq!(sev(Kind::Unexpected, FlowState::Unanswered), 2);
    assert_eq!(sev(Kind::Unexpected, FlowState::Awaiting), 2);
    assert_eq!(sev(Kind::Overflow, FlowState::Unanswered), 3);
    let dir = |variant| {
        let a = siem_alerts::alert(
            Kind::Unexpected,
            FlowState::Closed,
            monitor::flow::Proto::Tcp,
            false,
            variant,
        );
        let e: Value = serde_json::from_str(&ocsf::to_json(&a, &reporter())).unwrap();
        e["connection_info"]["direction"].as_str().unwrap().to_string()
    };
    assert_eq!([dir(0), dir(1), dir(2), dir(3)], ["Lateral", "Inbound", "Unknown", "Outbound"]);
}

#[test]
fn endpoints_device_rule_and_unmapped_carry_the_alert() {
    let e: Value = serde_json::from_str(&ocsf::to_json(&siem_alerts::documented(), &reporter())).unwrap();
    assert_eq!(
        e["src_endpoint"],
        json!({"ip": "10.200.1.13", "port": 40203, "hostname": "rppam3", "svc_name": "rppam", "zone": "cluster"})
    );
    assert_eq!(e["dst_endpoint"]["svc_name"], "database");
    assert_eq!(e["device"]["hostname"], "rppam1");
    assert_eq!(e["firewall_rule"]["uid"], "db-postgres");
    assert_eq!(e["unmapped"]["rule"], "db-postgres");
    assert_eq!(e["unmapped"]["kind"], "blocked");
    assert_eq!(e["unmapped"]["icmp"]["code"], 13);
    assert_eq!(e["unmapped"]["icmp"]["sender"], "10.200.1.20");
    assert_eq!(e["message"], siem_alerts::documented().reason);
    assert_eq!(
        (&e["time"], &e["start_time"], &e["duration"]),
        (&json!(1_775_469_601_001i64), &json!(1_775_469_601_001i64), &json!(0))
    );
    assert_eq!(e["metadata"]["version"], ocsf::VERSION);
    assert_eq!(e["metadata"]["product"]["version"], env!("CARGO_PKG_VERSION"));
    // ICMP has no ports; unexpected alerts name their closest rules.
    let a = siem_alerts::alert(Kind::Unexpected, FlowState::Answered, monitor::flow::Proto::Icmpv6, true, 1);
    let e: Value = serde_json::from_str(&ocsf::to_json(&a, &reporter())).unwrap();
    assert!(e["src_endpoint"].get("port").is_none() && e["dst_endpoint"].get("port").is_none(), "{e}");
    assert_eq!(e["connection_info"]["protocol_name"], "ipv6-icmp");
    assert_eq!(e["unmapped"]["closest"], json!(["db-postgres", "db-admin"]));
    assert_eq!(e["unmapped"]["dst_dns_names"], json!(["db.example.net", "pg.example.net"]));
    assert!(e.get("firewall_rule").is_none());
}

#[test]
fn the_documented_example_is_what_the_encoder_gives() {
    let (alert, reporter) = (siem_alerts::documented(), reporter());
    let event = ocsf::event(&alert, &reporter);
    let mut want = serde_json::to_value(&event).unwrap();
    let doc = siem_alerts::doc_example("### Example OCSF event");
    // The example stays true across releases: only the version differs.
    want["metadata"]["product"]["version"] = doc["metadata"]["product"]["version"].clone();
    assert_eq!(
        doc,
        want,
        "docs/alerts.md's OCSF example is out of date; replace it with:\n{}",
        serde_json::to_string_pretty(&event).unwrap()
    );
}

#[test]
fn monitor_check_writes_valid_ocsf_events_and_the_summary_on_stderr() {
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam/pcaps/blocked.pcapng");
    let matrix = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam/matrix.yaml");
    let inventory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam/inventory.ini");
    let run = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
            .args(["check", "--format", format, "--profile", "ha", "--matrix"])
            .arg(&matrix)
            .arg("--inventory")
            .arg(&inventory)
            .arg("--pcap")
            .arg(&pcap)
            .output()
            .expect("run monitor check");
        assert_eq!(
            out.status.code(),
            Some(1),
            "findings: status 1\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let (json, _) = run("json");
    let alerts = json.lines().filter(|l| l.contains("\"type\":\"alert\"")).count();
    let (events, stderr) = run("ocsf");
    let events: Vec<String> = events.lines().map(str::to_string).collect();
    assert!(
        alerts > 0 && events.len() == alerts,
        "one event per finding: {alerts} alerts, {} events",
        events.len()
    );
    assert!(validate(&events).iter().all(|v| v == "ok"), "{:?}", validate(&events));
    assert!(stderr.contains("flows"), "the summary is on stderr: {stderr}");
    let (falco, _) = run("falco");
    for line in falco.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a Falco event per line");
        assert!(v["rule"].as_str().is_some_and(|r| !r.is_empty()), "{v}");
    }
    assert_eq!(falco.lines().count(), alerts);
}
