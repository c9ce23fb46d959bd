//! Alerts of every kind, state, protocol and address family, with and
//! without names, folding, overflow counts and DNS names: what the SIEM
//! encodings (tests/ocsf.rs, tests/falco.rs) must turn into valid events.
//! Built field by field, so that combinations the engine gives rarely (an
//! ICMPv6 overflow record, an unknown zone) are covered too; and the real
//! engine's findings on the example captures ([`from_example_captures`]).

use std::{
    net::IpAddr,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use monitor::{
    alert::{Alert, End, Fold, Icmp, Kind, Names, Overflow, SCHEMA},
    flow::{FlowState, Proto},
};
use serde_json::Value;

pub const KINDS: [Kind; 4] = [Kind::Unexpected, Kind::Blocked, Kind::Exposed, Kind::Overflow];
pub const STATES: [FlowState; 7] = [
    FlowState::Awaiting,
    FlowState::Established,
    FlowState::Closed,
    FlowState::Refused,
    FlowState::Unanswered,
    FlowState::IcmpUnreachable,
    FlowState::Answered,
];
pub const PROTOS: [Proto; 4] = [Proto::Tcp, Proto::Udp, Proto::Icmp, Proto::Icmpv6];

/// 2026-04-06T10:00:00Z.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_775_469_600)
}

fn names(host: Option<&str>, service: Option<&str>, zone: Option<&str>) -> Names {
    Names { host: host.map(Into::into), service: service.map(Into::into), zone: zone.map(Into::into) }
}

/// The blocked PostgreSQL connection of docs/alerts.md's first example:
/// 10.200.1.13:40203 (rppam3, rppam, cluster) -> 10.200.1.20:5432 (db1,
/// database, cluster), rejected with ICMP admin-prohibited.
pub fn documented() -> Alert {
    Alert {
        record: "alert",
        schema: SCHEMA,
        kind: Kind::Blocked,
        proto: Proto::Tcp,
        src: End {
            ip: "10.200.1.13".parse().unwrap(),
            port: 40203,
            names: names(Some("rppam3"), Some("rppam"), Some("cluster")),
            dns_names: Vec::new(),
        },
        dst: End {
            ip: "10.200.1.20".parse().unwrap(),
            port: 5432,
            names: names(Some("db1"), Some("database"), Some("cluster")),
            dns_names: Vec::new(),
        },
        rule: Some("db-postgres".into()),
        closest: Vec::new(),
        reason: "icmp admin-prohibited: the client's packet was rejected with ICMP type 3 code 13".into(),
        state: FlowState::IcmpUnreachable,
        icmp: Some(Icmp {
            icmp_type: 3,
            code: 13,
            name: "admin-prohibited",
            sender: Some("10.200.1.20".parse().unwrap()),
        }),
        initiator_seen: true,
        first_seen: t0() + Duration::from_nanos(1_001_800_000),
        last_seen: t0() + Duration::from_nanos(1_001_950_000),
        packets: 1,
        bytes: 56,
        count: 1,
        fold: None,
        overflow: None,
    }
}

/// One alert of `kind` in `state` over `proto`, IPv6 when `v6`; `variant`
/// (0..4) picks the names: 0 both ends named inventory hosts, 1 an internet
/// client with a fold and the server's DNS names, 2 nothing known, 3 an
/// inside client to the internet, the start not seen.
pub fn alert(kind: Kind, state: FlowState, proto: Proto, v6: bool, variant: u8) -> Alert {
    let (src_ip, dst_ip): (IpAddr, IpAddr) = if v6 {
        ("fd00:200:2::50".parse().unwrap(), "fd00:200:1::20".parse().unwrap())
    } else {
        ("10.200.2.50".parse().unwrap(), "10.200.1.20".parse().unwrap())
    };
    let icmp_proto = matches!(proto, Proto::Icmp | Proto::Icmpv6);
    let (sport, dport) = if icmp_proto { (0, 0) } else { (51011, 5432) };
    let (src_names, dst_names) = match variant {
        0 => {
            (names(Some("ws01"), None, Some("admins")), names(Some("db1"), Some("database"), Some("cluster")))
        }
        1 => {
            (names(None, None, Some("internet")), names(Some("db1, db2"), Some("database"), Some("cluster")))
        }
        2 => (Names::default(), Names::default()),
        _ => (names(Some("rppam1"), Some("rppam"), Some("cluster")), names(None, None, Some("internet"))),
    };
    let mut a = Alert {
        record: "alert",
        schema: SCHEMA,
        kind,
        proto,
        src: End { ip: src_ip, port: sport, names: src_names, dns_names: Vec::new() },
        dst: End { ip: dst_ip, port: dport, names: dst_names, dns_names: Vec::new() },
        rule: matches!(kind, Kind::Blocked | Kind::Exposed).then(|| "db-postgres/rppam".into()),
        closest: if kind == Kind::Unexpected {
            vec!["db-postgres".into(), "db-admin".into()]
        } else {
            vec![]
        },
        reason: format!("{kind} {} in state {state:?}", proto.as_str()),
        state,
        icmp: (state == FlowState::IcmpUnreachable).then_some(if v6 {
            // A router on the way.
            Icmp {
                icmp_type: 1,
                code: 1,
                name: "admin-prohibited",
                sender: Some("fd00:200::fe".parse().unwrap()),
            }
        } else {
            // The server itself, or (variant 2, nothing known) no sender.
            Icmp {
                icmp_type: 3,
                code: 13,
                name: "admin-prohibited",
                sender: (variant != 2).then_some(dst_ip),
            }
        }),
        initiator_seen: variant != 3,
        first_seen: t0(),
        last_seen: t0() + Duration::from_millis(3_250),
        packets: 3,
        bytes: 222,
        count: 1,
        fold: None,
        overflow: None,
    };
    if variant == 1 {
        a.dst.dns_names = vec!["db.example.net".into(), "pg.example.net".into()];
        a.fold = Some(Fold { prefix: "10.200.2.0/24".into(), sources: 3, approximate: v6 });
        a.count = 7;
    }
    if kind == Kind::Overflow {
        a.count = 12;
        a.overflow = Some(Overflow {
            class: "unknown_unexpected",
            capacity: 12_000,
            unexpected: 10,
            blocked: 1,
            exposed: 1,
            folded_total: 4_000,
        });
    }
    a
}

/// Every combination of [`alert`]'s parameters.
pub fn every_alert() -> Vec<Alert> {
    let mut all = Vec::new();
    for kind in KINDS {
        for state in STATES {
            for proto in PROTOS {
                for v6 in [false, true] {
                    for variant in 0..4 {
                        all.push(alert(kind, state, proto, v6, variant));
                    }
                }
            }
        }
    }
    all
}

/// The first ```json block after `heading` in docs/alerts.md.
pub fn doc_example(heading: &str) -> Value {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/alerts.md")).unwrap();
    let at = doc.find(heading).unwrap_or_else(|| panic!("docs/alerts.md has no heading {heading:?}"));
    let block = doc[at..].split("```json\n").nth(1).and_then(|b| b.split("\n```").next()).unwrap();
    serde_json::from_str(block).unwrap_or_else(|e| panic!("the example under {heading:?} is no JSON: {e}"))
}

/// The alerts `monitor check --format json` gives on the RP-PAM example
/// captures (examples/rp-pam/pcaps), read back into [`Alert`]s: what the
/// real engine says, reasons and names included.
pub fn from_example_captures() -> Vec<Alert> {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam");
    let runs = [
        ("inventory.ini", "unexpected.pcap", &["--profile", "ha"][..]),
        ("inventory.ini", "blocked.pcapng", &["--profile", "ha"][..]),
        ("inventory-single.ini", "exposed-single-node.pcap", &[][..]),
    ];
    let mut alerts = Vec::new();
    for (inventory, pcap, extra) in runs {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_monitor"))
            .arg("check")
            .arg("--matrix")
            .arg(example.join("matrix.yaml"))
            .arg("--inventory")
            .arg(example.join(inventory))
            .arg("--pcap")
            .arg(example.join("pcaps").join(pcap))
            .args(["--format", "json"])
            .args(extra)
            .output()
            .expect("run the monitor binary");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{pcap}: findings expected: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["type"] == "alert" {
                alerts.push(alert_from_json(&v));
            }
        }
    }
    alerts
}

/// An alert line of `monitor check --format json` as an [`Alert`] (which
/// only serialises).
fn alert_from_json(v: &Value) -> Alert {
    let s = |v: &Value| v.as_str().map(str::to_string);
    let leak = |v: &Value| -> &'static str { Box::leak(v.as_str().unwrap().to_string().into_boxed_str()) };
    let time = |v: &Value| humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    let end = |e: &Value| End {
        ip: e["ip"].as_str().unwrap().parse().unwrap(),
        port: e["port"].as_u64().unwrap() as u16,
        names: Names { host: s(&e["host"]), service: s(&e["service"]), zone: s(&e["zone"]) },
        dns_names: e.get("dns_names").map_or(vec![], |d| serde_json::from_value(d.clone()).unwrap()),
    };
    let kind = KINDS.into_iter().find(|k| v["kind"] == k.as_str()).unwrap();
    let state = STATES.into_iter().find(|st| v["state"] == monitor::alert::state_name(*st)).unwrap();
    let proto = PROTOS.into_iter().find(|p| v["proto"] == p.as_str()).unwrap();
    let alert = Alert {
        record: "alert",
        schema: SCHEMA,
        kind,
        proto,
        src: end(&v["src"]),
        dst: end(&v["dst"]),
        rule: s(&v["rule"]),
        closest: serde_json::from_value(v["closest"].clone()).unwrap(),
        reason: s(&v["reason"]).unwrap(),
        state,
        icmp: v["icmp"].is_object().then(|| Icmp {
            icmp_type: v["icmp"]["type"].as_u64().unwrap() as u8,
            code: v["icmp"]["code"].as_u64().unwrap() as u8,
            name: leak(&v["icmp"]["name"]),
            sender: v["icmp"]["sender"].as_str().map(|a| a.parse().unwrap()),
        }),
        initiator_seen: v["initiator_seen"].as_bool().unwrap(),
        first_seen: time(&v["first_seen"]),
        last_seen: time(&v["last_seen"]),
        packets: v["packets"].as_u64().unwrap(),
        bytes: v["bytes"].as_u64().unwrap(),
        count: v["count"].as_u64().unwrap(),
        fold: None,
        overflow: None,
    };
    // Read back whole: the conversion lost nothing.
    assert_eq!(serde_json::from_str::<Value>(&alert.to_json()).unwrap(), *v);
    alert
}
