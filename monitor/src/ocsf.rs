//! Alerts as OCSF events, for SIEMs that ingest the Open Cybersecurity
//! Schema Framework (Amazon Security Lake, Splunk, Sentinel, ...): class
//! Network Activity (`class_uid` 4001, category 4) of OCSF [`VERSION`], with
//! the `host` profile (`device`: the reporting agent) and the
//! `security_control` profile (`firewall_rule`: the matrix rule, `is_alert`).
//!
//! A pure function of the alert and the [`Reporter`]: the same alert always
//! gives the same event, so tests and docs/alerts.md pin it exactly, and
//! monitor/tests/ocsf.rs validates every kind and state against the class's
//! JSON Schema generated from the published OCSF definition. 1.4.0 is the
//! first version with `is_alert`, which tells a SIEM that these network
//! events are alerts, not flow logs; the events are valid under 1.5.0 to
//! 1.8.0 as well (tested), `metadata.version` aside.
//!
//! The activity comes from the flow state ([`activity`]). A reset in the
//! middle of a stream cannot be told apart: the state model folds FIN and
//! RST after the handshake into `closed`, and an alert does not carry the
//! TCP flags, so `closed` maps to Close (2), as OCSF's own mapping of Zeek
//! (RSTO, RSTR, SF → Close) does, and Reset (3) is never emitted.
//!
//! What OCSF has no field for (kind, state, closest rules, ICMP error,
//! whether the client was seen opening the flow, DNS names, folding and
//! overflow counts) is in `unmapped`, under our alert field names.

use std::{
    net::IpAddr,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::{
    alert::{state_name, Alert, End, Fold, Icmp, Kind, Overflow},
    flow::{FlowState, Proto},
    siem::{Reporter, Severity},
};

/// The OCSF schema version the events follow (`metadata.version`).
pub const VERSION: &str = "1.4.0";
/// Network Activity.
pub const CLASS_UID: u32 = 4001;
/// Network Activity (the category of the same name).
pub const CATEGORY_UID: u32 = 4;
/// The profiles the events use (`metadata.profiles`).
pub const PROFILES: [&str; 2] = ["host", "security_control"];

/// An OCSF enum attribute: its ids, each named by its caption.
macro_rules! ocsf_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $id:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($variant = $id),*
        }

        impl $name {
            pub fn id(self) -> u8 {
                self as u8
            }

            /// The caption OCSF gives the id.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant)),*
                }
            }
        }
    };
}

ocsf_enum! {
    /// Network Activity's `activity_id`.
    Activity { Open = 1, Close = 2, Reset = 3, Fail = 4, Refuse = 5, Traffic = 6, Other = 99 }
}

/// The activity of a flow in `state` (see the module doc on resets).
pub fn activity(state: FlowState) -> Activity {
    match state {
        FlowState::Established => Activity::Open,
        FlowState::Closed => Activity::Close,
        FlowState::Refused => Activity::Refuse,
        FlowState::Unanswered | FlowState::IcmpUnreachable => Activity::Fail,
        FlowState::Awaiting | FlowState::Answered => Activity::Traffic,
    }
}

/// The activity of an alert: an overflow record reports no flow of its own
/// (its endpoints are those of the first folded finding), so it is Other.
pub fn alert_activity(alert: &Alert) -> Activity {
    match alert.kind {
        Kind::Overflow => Activity::Other,
        _ => activity(alert.state),
    }
}

/// One OCSF Network Activity event. Serialise it with serde (the webhook's
/// arrays) or [`to_json`] (JSON lines).
#[derive(Clone, Debug, Serialize)]
pub struct Event<'a> {
    pub activity_id: u8,
    pub activity_name: &'static str,
    pub category_uid: u32,
    pub category_name: &'static str,
    pub class_uid: u32,
    pub class_name: &'static str,
    pub type_uid: u32,
    pub type_name: String,
    pub severity_id: u8,
    pub severity: &'static str,
    #[serde(flatten)]
    pub status: Option<Status>,
    /// The last packet (or the ICMP error about it), ms since the epoch.
    pub time: i64,
    pub start_time: i64,
    pub end_time: i64,
    /// `end_time - start_time`, ms.
    pub duration: i64,
    pub count: u64,
    pub message: &'a str,
    pub is_alert: bool,
    pub src_endpoint: Endpoint<'a>,
    pub dst_endpoint: Endpoint<'a>,
    pub connection_info: ConnectionInfo,
    pub traffic: Traffic,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firewall_rule: Option<FirewallRule<'a>>,
    pub device: Device<'a>,
    pub metadata: Metadata,
    pub observables: Vec<Observable>,
    pub unmapped: Unmapped<'a>,
}

/// `status_id` and its caption, `status_detail` the flow's state.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub status_id: u8,
    pub status: &'static str,
    pub status_detail: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Endpoint<'a> {
    pub ip: IpAddr,
    /// Absent for ICMP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The inventory host(s) of the address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<&'a str>,
    /// The matrix service(s) of the address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub svc_name: Option<&'a str>,
    /// The matrix zone of the address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<&'a str>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConnectionInfo {
    /// IANA keyword: `tcp`, `udp`, `icmp`, `ipv6-icmp`.
    pub protocol_name: &'static str,
    pub protocol_num: u8,
    pub protocol_ver_id: u8,
    pub protocol_ver: &'static str,
    pub direction_id: u8,
    pub direction: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

/// The matrix rule (or exposure constraint) the finding is about.
#[derive(Clone, Debug, Serialize)]
pub struct FirewallRule<'a> {
    pub uid: &'a str,
    pub name: &'a str,
    /// `matrix rule` or `exposure constraint`.
    #[serde(rename = "type")]
    pub rule_type: &'static str,
}

/// The reporting agent's host; its type is not known to the agent.
#[derive(Clone, Debug, Serialize)]
pub struct Device<'a> {
    pub hostname: &'a str,
    pub type_id: u8,
    #[serde(rename = "type")]
    pub device_type: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Metadata {
    pub version: &'static str,
    pub product: Product,
    pub profiles: [&'static str; 2],
}

#[derive(Clone, Debug, Serialize)]
pub struct Product {
    pub name: &'static str,
    pub vendor_name: &'static str,
    pub version: &'static str,
}

/// An indexed value: the endpoints' addresses and host names.
#[derive(Clone, Debug, Serialize)]
pub struct Observable {
    pub name: &'static str,
    pub type_id: u8,
    #[serde(rename = "type")]
    pub observable_type: &'static str,
    pub value: String,
}

/// Our alert's fields that OCSF has no place for, under their alert names
/// (docs/alerts.md, "Alert fields").
#[derive(Clone, Debug, Serialize)]
pub struct Unmapped<'a> {
    pub kind: Kind,
    pub rule: Option<&'a str>,
    pub closest: &'a [String],
    pub state: &'static str,
    pub icmp: Option<Icmp>,
    pub initiator_seen: bool,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub dst_dns_names: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fold: Option<&'a Fold>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overflow: Option<&'a Overflow>,
}

/// The OCSF event for `alert`, reported by `reporter`.
pub fn event<'a>(alert: &'a Alert, reporter: &'a Reporter) -> Event<'a> {
    let activity = alert_activity(alert);
    let severity = Severity::of(alert);
    let icmp = matches!(alert.proto, Proto::Icmp | Proto::Icmpv6);
    let (start, end) = (epoch_ms(alert.first_seen), epoch_ms(alert.last_seen));
    let rule_type = match alert.kind {
        Kind::Exposed => "exposure constraint",
        _ => "matrix rule",
    };
    let direction = direction(&alert.src, &alert.dst);
    Event {
        activity_id: activity.id(),
        activity_name: activity.name(),
        category_uid: CATEGORY_UID,
        category_name: "Network Activity",
        class_uid: CLASS_UID,
        class_name: "Network Activity",
        type_uid: CLASS_UID * 100 + u32::from(activity.id()),
        type_name: format!("Network Activity: {}", activity.name()),
        severity_id: severity.ocsf_id(),
        severity: severity.ocsf_name(),
        status: (alert.kind != Kind::Overflow).then(|| status(alert.state)),
        time: end,
        start_time: start,
        end_time: end,
        duration: end.saturating_sub(start),
        count: alert.count,
        message: &alert.reason,
        is_alert: true,
        src_endpoint: endpoint(&alert.src, icmp),
        dst_endpoint: endpoint(&alert.dst, icmp),
        connection_info: ConnectionInfo {
            protocol_name: match alert.proto {
                Proto::Tcp => "tcp",
                Proto::Udp => "udp",
                Proto::Icmp => "icmp",
                Proto::Icmpv6 => "ipv6-icmp",
            },
            protocol_num: match alert.proto {
                Proto::Tcp => 6,
                Proto::Udp => 17,
                Proto::Icmp => 1,
                Proto::Icmpv6 => 58,
            },
            protocol_ver_id: if alert.dst.ip.is_ipv4() { 4 } else { 6 },
            protocol_ver: if alert.dst.ip.is_ipv4() {
                "Internet Protocol version 4 (IPv4)"
            } else {
                "Internet Protocol version 6 (IPv6)"
            },
            direction_id: direction.id(),
            direction: direction.name(),
        },
        traffic: Traffic { packets: alert.packets, bytes: alert.bytes },
        firewall_rule: alert.rule.as_deref().map(|r| FirewallRule { uid: r, name: r, rule_type }),
        device: Device { hostname: &reporter.hostname, type_id: 0, device_type: "Unknown" },
        metadata: Metadata {
            version: VERSION,
            product: Product {
                name: "monitor",
                vendor_name: "monitor developers",
                version: env!("CARGO_PKG_VERSION"),
            },
            profiles: PROFILES,
        },
        observables: observables(alert),
        unmapped: Unmapped {
            kind: alert.kind,
            rule: alert.rule.as_deref(),
            closest: &alert.closest,
            state: state_name(alert.state),
            icmp: alert.icmp,
            initiator_seen: alert.initiator_seen,
            dst_dns_names: &alert.dst.dns_names,
            fold: alert.fold.as_ref(),
            overflow: alert.overflow.as_ref(),
        },
    }
}

/// The event as one line of JSON.
pub fn to_json(alert: &Alert, reporter: &Reporter) -> String {
    serde_json::to_string(&event(alert, reporter)).expect("an OCSF event always serialises")
}

fn status(state: FlowState) -> Status {
    let (status_id, status) = if crate::siem::worked(state) {
        (1, "Success")
    } else if state.is_failure() {
        (2, "Failure")
    } else {
        (0, "Unknown")
    };
    Status { status_id, status, status_detail: state_name(state) }
}

fn endpoint(end: &End, icmp: bool) -> Endpoint<'_> {
    Endpoint {
        ip: end.ip,
        port: (!icmp).then_some(end.port),
        hostname: end.names.host.as_deref(),
        svc_name: end.names.service.as_deref(),
        zone: end.names.zone.as_deref(),
    }
}

ocsf_enum! {
    /// OCSF's `direction_id`, relative to the network the matrix and
    /// inventory describe: an end is inside when it is an inventory host or
    /// in a matrix zone other than `internet`.
    Direction { Unknown = 0, Inbound = 1, Outbound = 2, Lateral = 3 }
}

/// Lateral between two inside ends, Inbound from the internet zone to an
/// inside end, Outbound the other way; Unknown when a zone is unknown.
pub fn direction(src: &End, dst: &End) -> Direction {
    match (inside(src), inside(dst)) {
        (Some(true), Some(true)) => Direction::Lateral,
        (Some(false), Some(true)) => Direction::Inbound,
        (Some(true), Some(false)) => Direction::Outbound,
        _ => Direction::Unknown,
    }
}

fn inside(end: &End) -> Option<bool> {
    if end.names.host.is_some() {
        return Some(true);
    }
    end.names.zone.as_deref().map(|z| z != "internet")
}

fn observables(alert: &Alert) -> Vec<Observable> {
    let ip = |name, end: &End| Observable {
        name,
        type_id: 2,
        observable_type: "IP Address",
        value: end.ip.to_string(),
    };
    let host = |name, end: &End| {
        end.names.host.as_ref().map(|h| Observable {
            name,
            type_id: 1,
            observable_type: "Hostname",
            value: h.clone(),
        })
    };
    let mut v = vec![ip("src_endpoint.ip", &alert.src), ip("dst_endpoint.ip", &alert.dst)];
    v.extend(host("src_endpoint.hostname", &alert.src));
    v.extend(host("dst_endpoint.hostname", &alert.dst));
    v
}

/// Milliseconds since the epoch (OCSF `timestamp_t`); 0 before it.
fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
