//! Alerts in Falco's JSON output shape, so that a falcosidekick instance
//! takes them as it takes Falco's own events and fans them out to its
//! outputs (chat, paging, SIEMs, object stores).
//!
//! falcosidekick rejects an event whose `rule`, `priority`, `time` or
//! `output_fields` is empty; every alert gives all four (tested for every
//! kind and state). The priority follows the shared severity ladder
//! ([`Severity::falco`]). `output_fields` holds Falco's own field names where
//! the meaning is exactly Falco's (`evt.time`, and for TCP/UDP/ICMP
//! `fd.cip`, `fd.cport`, `fd.sip`, `fd.sport`, `fd.l4proto`: client and
//! server as the monitor judged them) and `monitor.*` keys for the rest.
//! Values are scalars (strings, integers, booleans), as Falco's are, so that
//! outputs that turn fields into labels or columns take them as they are;
//! absent values are left out rather than null.

use std::{collections::BTreeMap, time::UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::{
    alert::{state_name, Alert, End, Kind},
    flow::Proto,
    siem::{Reporter, Severity},
};

/// The event's `source`: the event source falcosidekick and its outputs
/// show (Falco's own are `syscall`, `k8s_audit` and plugin names).
pub const SOURCE: &str = "monitor";

/// One event in Falco's output shape.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// The alert's last packet, RFC 3339 with nanoseconds as Falco prints it.
    pub time: String,
    pub rule: &'static str,
    pub priority: &'static str,
    /// The alert's text line (docs/alerts.md, "Text lines").
    pub output: String,
    pub output_fields: BTreeMap<&'static str, Value>,
    pub source: &'static str,
    pub tags: Vec<String>,
    pub hostname: String,
}

/// The Falco rule name of a kind of alert.
pub fn rule_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Unexpected => "monitor: undocumented connection",
        Kind::Blocked => "monitor: blocked documented path",
        Kind::Exposed => "monitor: exposed internal port",
        Kind::Overflow => "monitor: de-duplication budget full",
    }
}

/// The Falco event for `alert`, reported by `reporter`.
pub fn event(alert: &Alert, reporter: &Reporter) -> Event {
    let mut tags = vec!["monitor".to_string(), "network".to_string(), alert.kind.to_string()];
    tags.extend(alert.rule.as_ref().map(|r| format!("rule:{r}")));
    Event {
        time: humantime::format_rfc3339_nanos(alert.last_seen).to_string(),
        rule: rule_name(alert.kind),
        priority: Severity::of(alert).falco(),
        output: alert.to_string(),
        output_fields: output_fields(alert),
        source: SOURCE,
        tags,
        hostname: reporter.hostname.clone(),
    }
}

/// The event as one line of JSON.
pub fn to_json(alert: &Alert, reporter: &Reporter) -> String {
    serde_json::to_string(&event(alert, reporter)).expect("a Falco event always serialises")
}

fn output_fields(a: &Alert) -> BTreeMap<&'static str, Value> {
    let mut f: BTreeMap<&'static str, Value> = BTreeMap::new();
    let ns = a.last_seen.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    f.insert("evt.time", ns.into());
    let l4 = match a.proto {
        Proto::Tcp => Some("tcp"),
        Proto::Udp => Some("udp"),
        Proto::Icmp => Some("icmp"),
        // Falco spells no ICMPv6 protocol of its own.
        Proto::Icmpv6 => None,
    };
    if let Some(l4) = l4 {
        f.insert("fd.l4proto", l4.into());
        f.insert("fd.cip", a.src.ip.to_string().into());
        f.insert("fd.sip", a.dst.ip.to_string().into());
        if matches!(a.proto, Proto::Tcp | Proto::Udp) {
            f.insert("fd.cport", a.src.port.into());
            f.insert("fd.sport", a.dst.port.into());
        }
    }
    f.insert("monitor.kind", a.kind.as_str().into());
    f.insert("monitor.proto", a.proto.as_str().into());
    f.insert("monitor.state", state_name(a.state).into());
    f.insert("monitor.reason", a.reason.as_str().into());
    f.insert("monitor.count", a.count.into());
    f.insert("monitor.packets", a.packets.into());
    f.insert("monitor.bytes", a.bytes.into());
    f.insert("monitor.initiator_seen", a.initiator_seen.into());
    f.insert("monitor.first_seen", humantime::format_rfc3339_nanos(a.first_seen).to_string().into());
    f.insert("monitor.last_seen", humantime::format_rfc3339_nanos(a.last_seen).to_string().into());
    end_fields(
        &mut f,
        &a.src,
        ["monitor.src.ip", "monitor.src.port", "monitor.src.host", "monitor.src.service", "monitor.src.zone"],
    );
    end_fields(
        &mut f,
        &a.dst,
        ["monitor.dst.ip", "monitor.dst.port", "monitor.dst.host", "monitor.dst.service", "monitor.dst.zone"],
    );
    if !a.dst.dns_names.is_empty() {
        f.insert("monitor.dst.dns_names", a.dst.dns_names.join(", ").into());
    }
    let mut put = |k: &'static str, v: Option<Value>| {
        if let Some(v) = v {
            f.insert(k, v);
        }
    };
    put("monitor.rule", a.rule.clone().map(Value::from));
    put("monitor.closest", (!a.closest.is_empty()).then(|| a.closest.join(", ").into()));
    put("monitor.icmp.type", a.icmp.map(|i| i.icmp_type.into()));
    put("monitor.icmp.code", a.icmp.map(|i| i.code.into()));
    put("monitor.icmp.name", a.icmp.map(|i| i.name.into()));
    put("monitor.icmp.sender", a.icmp.and_then(|i| i.sender).map(|s| s.to_string().into()));
    put("monitor.fold.prefix", a.fold.as_ref().map(|x| x.prefix.clone().into()));
    put("monitor.fold.sources", a.fold.as_ref().map(|x| x.sources.into()));
    put("monitor.fold.approximate", a.fold.as_ref().map(|x| x.approximate.into()));
    let o = a.overflow.as_ref();
    put("monitor.overflow.class", o.map(|x| x.class.into()));
    put("monitor.overflow.capacity", o.map(|x| x.capacity.into()));
    put("monitor.overflow.unexpected", o.map(|x| x.unexpected.into()));
    put("monitor.overflow.blocked", o.map(|x| x.blocked.into()));
    put("monitor.overflow.exposed", o.map(|x| x.exposed.into()));
    put("monitor.overflow.folded_total", o.map(|x| x.folded_total.into()));
    f
}

/// One end's address, port and names under `keys` (ip, port, host, service,
/// zone).
fn end_fields(f: &mut BTreeMap<&'static str, Value>, end: &End, keys: [&'static str; 5]) {
    let [ip, port, host, service, zone] = keys;
    f.insert(ip, end.ip.to_string().into());
    f.insert(port, end.port.into());
    for (k, v) in [(host, &end.names.host), (service, &end.names.service), (zone, &end.names.zone)] {
        if let Some(v) = v {
            f.insert(k, v.as_str().into());
        }
    }
}
