//! The alert stream: one finding per flow that departs from the matrix, as a
//! JSON line (for machines) or one line of text (for people). `monitor
//! check` and the live monitor emit the same records; docs/alerts.md is the
//! reference for every field.

use std::{fmt, net::IpAddr, time::SystemTime};

use serde::Serialize;

use crate::flow::{ser_time, Flow, FlowState, IcmpInfo, Proto};

/// Version of the alert and summary JSON. Bumped when a field changes
/// meaning or disappears; new fields may appear within a version.
pub const SCHEMA: u32 = 1;

/// What kind of departure from the matrix a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A connection no rule documents.
    Unexpected,
    /// A documented connection that was refused, dropped or rejected.
    Blocked,
    /// A port that must stay internal answered a client outside its rule.
    Exposed,
    /// Not a finding: the live monitor's de-duplication budget for a class
    /// of findings is full, and this many findings were folded into counts
    /// (see `overflow`).
    Overflow,
}

impl Kind {
    /// The kinds of finding (`Overflow` is none).
    pub const ALL: [Kind; 3] = [Kind::Unexpected, Kind::Blocked, Kind::Exposed];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Unexpected => "unexpected",
            Kind::Blocked => "blocked",
            Kind::Exposed => "exposed",
            Kind::Overflow => "overflow",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the matrix and inventory know about one end of a flow. Several names
/// (an address in two host groups, a port serving two services) are joined
/// with ", ", at most [`NAMES_SHOWN`] of them (see [`join_names`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Names {
    pub host: Option<String>,
    pub service: Option<String>,
    pub zone: Option<String>,
}

impl Names {
    /// Joins name lists, `None` when empty.
    pub fn from_lists(hosts: &[String], services: &[String], zones: &[String]) -> Names {
        let join = |v: &[String]| (!v.is_empty()).then(|| join_names(v));
        Names { host: join(hosts), service: join(services), zone: join(zones) }
    }
}

/// How many names of one list an alert spells out.
pub const NAMES_SHOWN: usize = 8;

/// `a, b, c`; past [`NAMES_SHOWN`] names, the first ones and a count of the
/// rest: `h1, h2, h3, h4, h5, h6, h7, h8, ... (+9,992 more)`. An inventory
/// may give one address thousands of names; the alert stays small.
pub fn join_names(names: &[String]) -> String {
    if names.len() <= NAMES_SHOWN {
        return names.join(", ");
    }
    let rest = (names.len() - NAMES_SHOWN).to_string();
    let mut grouped = String::new();
    for (i, c) in rest.chars().enumerate() {
        if i > 0 && (rest.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{}, ... (+{grouped} more)", names[..NAMES_SHOWN].join(", "))
}

/// One end of the flow in an alert: the address, the port, and its names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct End {
    pub ip: IpAddr,
    /// The client's source port for `src`; the service port for `dst`. 0 for
    /// ICMP.
    pub port: u16,
    #[serde(flatten)]
    pub names: Names,
    /// For `dst`: the DNS names this host resolved to the address (the
    /// query name and its CNAME chain), sorted; absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
}

/// ICMP details of a finding: the error that rejected the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Icmp {
    #[serde(rename = "type")]
    pub icmp_type: u8,
    pub code: u8,
    pub name: &'static str,
    /// The address the error came from: the server itself, or a router or
    /// firewall on the way. Absent when not known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<IpAddr>,
}

impl From<IcmpInfo> for Icmp {
    fn from(i: IcmpInfo) -> Icmp {
        Icmp { icmp_type: i.icmp_type, code: i.code, name: i.name, sender: i.sender }
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    /// Always "alert": tells alert lines from the summary line.
    #[serde(rename = "type")]
    pub record: &'static str,
    pub schema: u32,
    pub kind: Kind,
    pub proto: Proto,
    /// The client: the side that opened the flow.
    pub src: End,
    /// The server.
    pub dst: End,
    /// The matrix rule the finding is about: for `blocked` the rule that
    /// documents the flow, for `exposed` the exposure constraint it breaks,
    /// for `unexpected` none.
    pub rule: Option<String>,
    /// For `unexpected`: ids of the documented rules closest to the flow.
    pub closest: Vec<String>,
    /// Why this is a finding, in words.
    pub reason: String,
    pub state: FlowState,
    pub icmp: Option<Icmp>,
    /// Whether the flow's start was seen, so that client and server are
    /// known rather than guessed from port numbers.
    pub initiator_seen: bool,
    #[serde(serialize_with = "ser_time")]
    pub first_seen: SystemTime,
    #[serde(serialize_with = "ser_time")]
    pub last_seen: SystemTime,
    /// Packets and bytes, both directions.
    pub packets: u64,
    pub bytes: u64,
    /// How many flows this record stands for (repeats folded into one).
    pub count: u64,
    /// Live monitor: the client is no inventory host, so its findings are
    /// de-duplicated per address prefix; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fold: Option<Fold>,
    /// For `kind: "overflow"`: the class whose budget is full and what was
    /// folded; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overflow: Option<Overflow>,
}

/// The prefix an unknown client's findings are de-duplicated under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fold {
    /// `a.b.c.0/24` for IPv4, `x:x:x:x::/64` for IPv6.
    pub prefix: String,
    /// Distinct client addresses of the prefix this record stands for.
    pub sources: u64,
    /// Whether `sources` is an estimate (IPv6; IPv4 counts are exact).
    pub approximate: bool,
}

/// What an overflow record stands for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Overflow {
    /// The de-duplication class whose budget is full.
    pub class: &'static str,
    /// Its budget: keys held at once.
    pub capacity: u64,
    /// Findings folded since the class's previous overflow record, by kind.
    pub unexpected: u64,
    pub blocked: u64,
    pub exposed: u64,
    /// Findings of the class folded since the monitor started.
    pub folded_total: u64,
}

impl Alert {
    /// The alert for `flow`, with the names the engine gave its two ends.
    pub fn new(
        kind: Kind,
        flow: &Flow,
        src: Names,
        dst: Names,
        rule: Option<String>,
        reason: String,
    ) -> Alert {
        let is_icmp = matches!(flow.proto, Proto::Icmp | Proto::Icmpv6);
        let port = |p: u16| if is_icmp { 0 } else { p };
        Alert {
            record: "alert",
            schema: SCHEMA,
            kind,
            proto: flow.proto,
            src: End { ip: flow.client.ip, port: port(flow.client.port), names: src, dns_names: Vec::new() },
            dst: End { ip: flow.server.ip, port: port(flow.server.port), names: dst, dns_names: Vec::new() },
            rule,
            closest: Vec::new(),
            reason,
            state: flow.state,
            icmp: flow.icmp_error.map(Icmp::from),
            initiator_seen: flow.initiator_seen,
            first_seen: flow.first_seen,
            last_seen: flow.last_seen,
            packets: flow.to_server.packets + flow.to_client.packets,
            bytes: flow.to_server.bytes + flow.to_client.bytes,
            count: 1,
            fold: None,
            overflow: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an alert always serialises")
    }
}

/// The human form: one line per finding, most telling facts first.
///
/// `EXPOSED    tcp 10.200.2.50:51234 (workstation) -> 10.200.1.11:7003 (rppam-node, AuditService) rule=grpc-local: ... [established, 12 pkts, 3.1 kB, 2026-04-06T10:00:00Z]`
impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<10} {:<6} ", self.kind.as_str().to_uppercase(), self.proto.as_str())?;
        write_end(f, &self.src, false)?;
        f.write_str(" -> ")?;
        write_end(f, &self.dst, true)?;
        if let Some(rule) = &self.rule {
            write!(f, " rule={rule}")?;
        }
        write!(f, ": {}", self.reason)?;
        write!(f, " [{}", state_name(self.state))?;
        if let Some(i) = self.icmp {
            write!(f, ", icmp {} ({}/{})", i.name, i.icmp_type, i.code)?;
        }
        if !self.initiator_seen {
            f.write_str(", start not seen")?;
        }
        write!(
            f,
            ", {} pkts, {} B, {}]",
            self.packets,
            self.bytes,
            humantime::format_rfc3339_seconds(self.first_seen)
        )?;
        if self.count > 1 {
            write!(f, " x{}", self.count)?;
        }
        Ok(())
    }
}

fn write_end(f: &mut fmt::Formatter<'_>, end: &End, with_service: bool) -> fmt::Result {
    match end.ip {
        IpAddr::V6(ip) => write!(f, "[{ip}]:{}", end.port)?,
        IpAddr::V4(ip) => write!(f, "{ip}:{}", end.port)?,
    }
    // The host says most; the zone stands in for an address no host names.
    let place = end.names.host.as_deref().or(end.names.zone.as_deref());
    let service = end.names.service.as_deref().filter(|_| with_service);
    let dns = (!end.dns_names.is_empty()).then(|| format!("dns {}", end.dns_names.join(", ")));
    let names: Vec<&str> = [place, service, dns.as_deref()].into_iter().flatten().collect();
    if !names.is_empty() {
        write!(f, " ({})", names.join("; "))?;
    }
    Ok(())
}

/// The state's JSON spelling, reused in text.
pub fn state_name(state: FlowState) -> &'static str {
    match state {
        FlowState::Awaiting => "awaiting",
        FlowState::Established => "established",
        FlowState::Closed => "closed",
        FlowState::Refused => "refused",
        FlowState::Unanswered => "unanswered",
        FlowState::IcmpUnreachable => "icmp-unreachable",
        FlowState::Answered => "answered",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use monitor_common::{initiator_how, proto, side, tcp_flag, FlowKey, FlowValue, IcmpError};

    use super::*;
    use crate::flow::{addr_key, EpochClock, NoHint};

    const T0: u64 = 1_775_469_600_000_000_000; // 2026-04-06T10:00:00Z

    fn blocked_flow() -> Flow {
        let (key, dir) = FlowKey::canonical(
            addr_key("10.200.1.11".parse().unwrap()),
            41000,
            addr_key("10.200.1.20".parse().unwrap()),
            5432,
            proto::TCP,
        );
        let mut v = FlowValue {
            first_seen_ns: T0,
            last_seen_ns: T0 + 1_000_000,
            initiator: side::A,
            initiator_how: initiator_how::TCP_SYN,
            icmp_error: IcmpError { v6: false, icmp_type: 3, code: 13, quoted_side: side::A }.pack(),
            // A firewall on the way, not the server.
            icmp_sender: addr_key("10.200.1.1".parse().unwrap()),
            ..FlowValue::default()
        };
        v.packets[dir] = 2;
        v.bytes[dir] = 148;
        v.tcp_flags[dir] = tcp_flag::SYN;
        Flow::from_entry(&key, &v, &EpochClock { now_ns: T0 + 1_000_000 }, &NoHint, Duration::from_secs(3))
            .unwrap()
    }

    fn alert() -> Alert {
        let names = |h: &str, s: &[&str], z: &str| Names {
            host: Some(h.into()),
            service: (!s.is_empty()).then(|| s.join(", ")),
            zone: Some(z.into()),
        };
        Alert::new(
            Kind::Blocked,
            &blocked_flow(),
            names("node1", &[], "cluster"),
            names("db", &["PostgreSQL"], "data"),
            Some("db-postgres".into()),
            "icmp admin-prohibited".into(),
        )
    }

    #[test]
    fn json_carries_every_documented_field() {
        let j: serde_json::Value = serde_json::from_str(&alert().to_json()).unwrap();
        assert_eq!(j["type"], "alert");
        assert_eq!(j["schema"], SCHEMA);
        assert_eq!(j["kind"], "blocked");
        assert_eq!(j["proto"], "tcp");
        assert_eq!(j["src"]["ip"], "10.200.1.11");
        assert_eq!(j["src"]["port"], 41000);
        assert_eq!(j["src"]["host"], "node1");
        assert_eq!(j["src"]["zone"], "cluster");
        assert!(j["src"]["service"].is_null());
        assert_eq!(j["dst"]["ip"], "10.200.1.20");
        assert_eq!(j["dst"]["port"], 5432);
        assert_eq!(j["dst"]["service"], "PostgreSQL");
        assert_eq!(j["rule"], "db-postgres");
        assert_eq!(j["reason"], "icmp admin-prohibited");
        assert_eq!(j["state"], "icmp-unreachable");
        assert_eq!(j["icmp"]["type"], 3);
        assert_eq!(j["icmp"]["code"], 13);
        assert_eq!(j["icmp"]["name"], "admin-prohibited");
        assert_eq!(j["icmp"]["sender"], "10.200.1.1");
        assert_eq!(j["initiator_seen"], true);
        assert_eq!(j["first_seen"], "2026-04-06T10:00:00.000000000Z");
        assert_eq!(j["last_seen"], "2026-04-06T10:00:00.001000000Z");
        assert_eq!(
            (j["packets"].as_u64(), j["bytes"].as_u64(), j["count"].as_u64()),
            (Some(2), Some(148), Some(1))
        );
    }

    #[test]
    fn text_is_one_readable_line() {
        let line = alert().to_string();
        assert!(!line.contains('\n'));
        assert_eq!(
            line,
            "BLOCKED    tcp    10.200.1.11:41000 (node1) -> 10.200.1.20:5432 (db; PostgreSQL) \
             rule=db-postgres: icmp admin-prohibited [icmp-unreachable, icmp admin-prohibited (3/13), \
             2 pkts, 148 B, 2026-04-06T10:00:00Z]"
        );
    }

    #[test]
    fn an_icmp_error_of_unknown_sender_has_no_sender_key() {
        let mut f = blocked_flow();
        f.icmp_error.as_mut().unwrap().sender = None;
        let a = Alert::new(Kind::Blocked, &f, Names::default(), Names::default(), None, "r".into());
        let j: serde_json::Value = serde_json::from_str(&a.to_json()).unwrap();
        assert_eq!(j["icmp"]["name"], "admin-prohibited");
        assert!(j["icmp"].get("sender").is_none(), "absent when not known: {j}");
    }

    #[test]
    fn dns_names_of_the_server_show_in_json_and_text_only_when_known() {
        let mut a = alert();
        let j: serde_json::Value = serde_json::from_str(&a.to_json()).unwrap();
        assert!(j["dst"].get("dns_names").is_none(), "absent when no name is known: {j}");
        a.dst.dns_names = vec!["db.example.net".into(), "pg.example.net".into()];
        let j: serde_json::Value = serde_json::from_str(&a.to_json()).unwrap();
        assert_eq!(j["dst"]["dns_names"], serde_json::json!(["db.example.net", "pg.example.net"]));
        assert!(j["src"].get("dns_names").is_none());
        assert!(
            a.to_string()
                .contains("-> 10.200.1.20:5432 (db; PostgreSQL; dns db.example.net, pg.example.net) "),
            "{a}"
        );
    }

    #[test]
    fn icmp_alerts_carry_no_ports() {
        let (key, _) = FlowKey::canonical(
            addr_key("10.200.2.50".parse().unwrap()),
            77,
            addr_key("10.200.1.11".parse().unwrap()),
            77,
            proto::ICMP,
        );
        let v =
            FlowValue { initiator: side::B, initiator_how: initiator_how::ICMP_ECHO, ..FlowValue::default() };
        let f =
            Flow::from_entry(&key, &v, &EpochClock { now_ns: 0 }, &NoHint, Duration::from_secs(3)).unwrap();
        let a = Alert::new(Kind::Unexpected, &f, Names::default(), Names::default(), None, "no rule".into());
        assert_eq!((a.src.port, a.dst.port), (0, 0));
        assert_eq!(a.to_string(), "UNEXPECTED icmp   10.200.2.50:0 -> 10.200.1.11:0: no rule [awaiting, 0 pkts, 0 B, 1970-01-01T00:00:00Z]");
    }

    #[test]
    fn long_name_lists_are_capped_with_a_count() {
        let hosts: Vec<String> = (1..=10_000).map(|i| format!("db{i}")).collect();
        let n = Names::from_lists(&hosts, &[], &["data".into()]);
        assert_eq!(n.host.as_deref(), Some("db1, db2, db3, db4, db5, db6, db7, db8, ... (+9,992 more)"));
        assert_eq!(n.service, None);
        assert_eq!(n.zone.as_deref(), Some("data"));
        assert_eq!(join_names(&hosts[..8]), "db1, db2, db3, db4, db5, db6, db7, db8");
        assert_eq!(join_names(&hosts[..9]), "db1, db2, db3, db4, db5, db6, db7, db8, ... (+1 more)");
        let a = Alert::new(Kind::Blocked, &blocked_flow(), Names::default(), n, None, "r".into());
        assert!(a.to_json().len() < 1000, "{}", a.to_json());
    }
}
