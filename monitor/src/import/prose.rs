//! Ports written in words rather than tables: list items of the form
//! "9094: cluster gossip, used by the brokers", sentences such as "The
//! agents connect to the collectors on TCP port 4317", the sentence that
//! states the protocol of a whole list once ("All ports below are TCP"),
//! and host-group mappings written as a list ("Queue servers: hosts in the
//! [mq] group"). Each reader returns `None` for text it does not know, so
//! that the caller can warn about a port it leaves unread.

use std::sync::LazyLock;

use regex::Regex;

/// One flow read from a sentence or a list item; empty fields are unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flow {
    pub ports: String,
    /// `TCP`, `UDP`, `TCP and UDP`, or empty when the text does not say.
    pub proto: String,
    pub source: String,
    pub destination: String,
    pub description: String,
}

/// Ports as vendors list them: `9094`, `9100-9105`, `8300, 8301 and 8302`, `7946/udp`.
const PORTS: &str = r"\d{1,5}(?:\s*[-–]\s*\d{1,5})?(?:/(?:tcp|udp))?(?:\s*(?:,|and|or)\s*\d{1,5}(?:\s*[-–]\s*\d{1,5})?(?:/(?:tcp|udp))?)*";

/// The protocol words of a text: both, UDP or TCP (HTTP, gRPC... count as TCP elsewhere).
pub(crate) fn proto_of(text: &str) -> Option<&'static str> {
    static TCP: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)\btcp\b").unwrap());
    static UDP: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)\budp\b").unwrap());
    match (TCP.is_match(text), UDP.is_match(text)) {
        (true, true) => Some("TCP and UDP"),
        (false, true) => Some("UDP"),
        (true, false) => Some("TCP"),
        (false, false) => None,
    }
}

/// "All ports below are TCP", "The following ports use UDP:": the protocol
/// a sentence gives every port of the list after it.
pub(crate) fn stated_proto(sentence: &str) -> Option<&'static str> {
    static STATES: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\b(?:following|below|listed|these|all)\b.*\bports?\b|\bports?\b.*\b(?:below|following|listed)\b")
            .unwrap()
    });
    static PORT_NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d{2,5}").unwrap());
    (STATES.is_match(sentence) && !PORT_NUMBER.is_match(sentence)).then(|| proto_of(sentence)).flatten()
}

/// "used by the brokers and the REST proxy", "from the agents": the source named in a text.
fn source_in(text: &str) -> Option<String> {
    static USED_BY: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\b(?:used by|called by|opened by|reached by|from) (?:the |all |each |every |any )?(?:other )?([^;.()]+?)\s*(?:[;.()]|$)")
            .unwrap()
    });
    USED_BY.captures(text).map(|c| c[1].trim().to_string())
}

/// A list item "9094: cluster gossip, used by the brokers" (also
/// "9094/udp - ...", "Ports 9100-9105: ...", "9094 (UDP): ...").
pub(crate) fn port_item(text: &str) -> Option<Flow> {
    static ITEM: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(&format!(
            r"(?i)^(?:\*\*|`)?(?:ports?\s+)?({PORTS})(?:\*\*|`)?(?:\s*\((tcp|udp|tcp and udp|tcp/udp)\))?\s*(?::|—|–|-)\s+(.+)$"
        ))
        .unwrap()
    });
    let c = ITEM.captures(text.trim())?;
    let description = c[3].trim().to_string();
    let proto = proto_of(&c[1])
        .or_else(|| c.get(2).and_then(|p| proto_of(p.as_str())))
        .or_else(|| proto_of(&description))
        .unwrap_or_default();
    Some(Flow {
        ports: c[1].to_string(),
        proto: proto.into(),
        source: source_in(&description).unwrap_or_default(),
        destination: String::new(),
        description,
    })
}

/// Whether a list item starts with what looks like a port number, so that
/// one [`port_item`] cannot read is reported.
pub(crate) fn starts_with_port(text: &str) -> bool {
    static START: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)^(?:\*\*|`)?(?:ports?\s+)?\d{2,5}\b").unwrap());
    START.is_match(text.trim())
}

/// A noun phrase naming a node role or service: one to four words.
const NAME: &str = r"(?:the |each |every |all |any |other |your )?([A-Za-z][\w-]*(?: [A-Za-z][\w-]*){0,3}?)";
const ON_PORT: &str = r"(?:on|over|using|via|at) (?:(?:tcp|udp) )?ports? (?P<ports>";

/// A sentence naming a flow on its ports: "The agents connect to the
/// collectors on TCP port 4317", "The web console listens on port 8443 for
/// operators' browsers from the admin network", "Port 5433 (TCP) must be
/// open between the database nodes".
pub(crate) fn sentence(s: &str) -> Option<Flow> {
    static CONNECT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(&format!(
            r"(?i)(?:^|, ){NAME} (?:must be able to |need to |needs to |should be able to |can )?(?:(?:connect|connects|talk|talks|send|sends|push|pushes|forward|forwards|replicate|replicates|write|writes|upload|uploads|ship|ships|stream|streams)(?: \w+){{0,2}}? (?:to|with)|reach|reaches|call|calls|scrape|scrapes|poll|polls|query|queries) {NAME} {ON_PORT}{PORTS})"
        ))
        .unwrap()
    });
    static LISTEN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(&format!(
            r"(?i)(?:^|, ){NAME} (?:listens|listen|accepts|accept|serves|serve|is reachable|are reachable) (?:\w+ )?{ON_PORT}{PORTS})"
        ))
        .unwrap()
    });
    static BETWEEN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(&format!(
            r"(?i)\bports? (?P<ports>{PORTS})(?: \((?:tcp|udp|tcp and udp)\))? (?:must|should|has to|have to) be open between {NAME}\s*(?:[.,;(]|$)"
        ))
        .unwrap()
    });
    let flow = |source: String, destination: String, ports: &str| Flow {
        ports: ports.to_string(),
        proto: proto_of(s).unwrap_or_default().into(),
        source,
        destination,
        description: s.trim().to_string(),
    };
    let found = if let Some(c) = CONNECT.captures(s) {
        flow(name(&c[1]), name(&c[2]), &c["ports"])
    } else if let Some(c) = LISTEN.captures(s) {
        let rest = &s[c.get(0).unwrap().end()..];
        flow(source_in(rest).map(|n| name(&n)).unwrap_or_default(), name(&c[1]), &c["ports"])
    } else if let Some(c) = BETWEEN.captures(s) {
        flow(name(&c[2]), name(&c[2]), &c["ports"])
    } else {
        return None;
    };
    // "the object store over HTTPS": a phrase that runs past its name is not read.
    let runs_over = |n: &str| n.to_lowercase().split(' ').any(|w| PREPOSITIONS.contains(&w));
    (!runs_over(&found.source) && !runs_over(&found.destination)).then_some(found)
}

/// Words that end a name in running text.
const PREPOSITIONS: &[&str] =
    &["on", "over", "via", "using", "at", "to", "from", "with", "for", "in", "by", "of"];

/// A name without the adverbs running text puts after it ("the agents also").
fn name(n: &str) -> String {
    const ADVERBS: &[&str] =
        &["also", "then", "usually", "typically", "only", "always", "still", "each", "all"];
    let mut w: Vec<&str> = n.split_whitespace().collect();
    while w.len() > 1 && ADVERBS.contains(&w[w.len() - 1].to_lowercase().as_str()) {
        w.pop();
    }
    w.join(" ")
}

/// The sentences of a paragraph with the byte offset each starts at.
pub(crate) fn sentences(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let b = text.as_bytes();
    for i in 0..b.len() {
        let ends = matches!(b[i], b'.' | b'!' | b'?')
            && b.get(i + 1).is_some_and(|c| *c == b' ')
            && b.get(i + 2).is_some_and(|c| c.is_ascii_uppercase());
        if ends {
            out.push((start, text[start..=i].trim()));
            start = i + 2;
        }
    }
    if start < text.len() && !text[start..].trim().is_empty() {
        out.push((start, text[start..].trim()));
    }
    out
}

/// "Queue servers: hosts in the [mq] group", "Scheduler: inventory group
/// `sched`": a service and the inventory group it runs on.
pub(crate) fn mapping_item(text: &str) -> Option<(String, String)> {
    static MAP: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^(?:\*\*)?([A-Za-z][\w /&-]{0,60}?)(?:\*\*)?\s*(?::|—|–|->|→)\s*(?:(?:all |every |the )?(?:hosts|machines|nodes|servers|members|host)\s+(?:in|of)\s+(?:the\s+)?(?:(?:inventory|ansible|host)\s+)?(?:group\s+)?[\[`\x22]([\w-]+)[\]`\x22](?:\s+(?:inventory\s+|ansible\s+|host\s+)?group)?|(?:the\s+)?(?:inventory|ansible|host)\s+group\s+[\[`\x22]?([\w-]+)[\]`\x22]?)\s*\.?$").unwrap()
    });
    let c = MAP.captures(text.trim())?;
    let group = c.get(2).or(c.get(3))?.as_str().to_string();
    Some((c[1].trim().to_string(), group))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_items_with_ports_first() {
        let f = port_item("9094: cluster gossip, used by the brokers and the REST proxy").unwrap();
        assert_eq!(
            (f.ports.as_str(), f.source.as_str(), f.proto.as_str()),
            ("9094", "brokers and the REST proxy", "")
        );
        let f = port_item("9100-9105/udp - metrics fan-out").unwrap();
        assert_eq!((f.ports.as_str(), f.proto.as_str(), f.source.as_str()), ("9100-9105/udp", "UDP", ""));
        assert!(port_item("Brokers replicate partitions between themselves.").is_none());
        assert!(starts_with_port("9300 cluster transport") && !starts_with_port("Brokers"));
        assert_eq!(stated_proto("All ports below are TCP unless marked otherwise."), Some("TCP"));
        assert_eq!(stated_proto("Port 53 is UDP."), None);
    }

    #[test]
    fn sentences_naming_flows() {
        let f = sentence("The agents connect to the collectors on TCP port 4317.").unwrap();
        assert_eq!(
            (f.source.as_str(), f.destination.as_str(), f.ports.as_str(), f.proto.as_str()),
            ("agents", "collectors", "4317", "TCP")
        );
        let f =
            sentence("The web console listens on port 8443 for browsers from the admin network.").unwrap();
        assert_eq!((f.source.as_str(), f.destination.as_str()), ("admin network", "web console"));
        let f = sentence("The API servers replicate state to the database nodes on port 5434.").unwrap();
        assert_eq!((f.source.as_str(), f.destination.as_str()), ("API servers", "database nodes"));
        let f = sentence("Port 5433 (TCP) must be open between the database nodes.").unwrap();
        assert_eq!(
            (f.source.as_str(), f.destination.as_str(), f.ports.as_str()),
            ("database nodes", "database nodes", "5433")
        );
        assert!(sentence("Port 9999 is reserved for future use.").is_none());
        let s = sentences("First one. Second one on port 80. Then v1.2 stays");
        assert_eq!(
            s.iter().map(|x| x.1).collect::<Vec<_>>(),
            ["First one.", "Second one on port 80.", "Then v1.2 stays"]
        );
    }

    #[test]
    fn mapping_written_as_a_list() {
        assert_eq!(
            mapping_item("Queue servers: hosts in the [mq] group"),
            Some(("Queue servers".into(), "mq".into()))
        );
        assert_eq!(
            mapping_item("Scheduler: inventory group `sched`."),
            Some(("Scheduler".into(), "sched".into()))
        );
        assert_eq!(mapping_item("9094: cluster gossip"), None);
        assert_eq!(mapping_item("Brokers: run on dedicated hardware"), None);
    }
}
