//! The `/` filter of `monitor top`: space-separated terms, all of which a
//! row must match, each `field:value` or a bare word.
//!
//! Fields: `port:5432` (the port, or a rule's port range that holds it),
//! `host:db1` (a client or server host name or address, or a rule's source
//! or target), `rule:db-` (a rule id), `kind:blocked` (a finding's kind, a
//! flow's verdict, a grid cell's worst; on the rules view `blocked` and
//! `unused`), `proto:udp`, `group:nodes` (a grid cell's source or target
//! group). Text matches as a part, ignoring case; `port` and `kind` match
//! whole values. A term about a field a view does not show is ignored
//! there, so one filter can stay on while switching views.

use std::fmt;

/// A field a term can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Port,
    Host,
    Rule,
    Kind,
    Proto,
    Group,
}

impl Field {
    pub const ALL: [Field; 6] =
        [Field::Port, Field::Host, Field::Rule, Field::Kind, Field::Proto, Field::Group];

    pub fn name(self) -> &'static str {
        match self {
            Field::Port => "port",
            Field::Host => "host",
            Field::Rule => "rule",
            Field::Kind => "kind",
            Field::Proto => "proto",
            Field::Group => "group",
        }
    }
}

/// One term of a filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Term {
    Port(u16),
    /// A field and its value, lower case.
    Text(Field, String),
    /// A bare word: any text field.
    Any(String),
}

/// Why a filter could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("unknown field `{0}:`; use port:, host:, rule:, kind:, proto: or group:")]
    UnknownField(String),
    #[error("`port:{0}` is not a port number (0-65535)")]
    BadPort(String),
    #[error("`{0}:` needs a value, e.g. `{0}:{1}`")]
    Empty(&'static str, &'static str),
}

/// A parsed filter; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    text: String,
    terms: Vec<Term>,
}

/// What a row of a view offers to a filter. `None`: the view has no such
/// field, and terms about it are ignored.
#[derive(Clone, Debug, Default)]
pub struct Facts<'a> {
    /// Port ranges, `(first, last)`.
    pub ports: Option<Vec<(u16, u16)>>,
    pub hosts: Option<Vec<&'a str>>,
    pub rules: Option<Vec<&'a str>>,
    pub kinds: Option<Vec<&'a str>>,
    pub proto: Option<&'a str>,
    pub groups: Option<Vec<&'a str>>,
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let mut terms = Vec::new();
        for word in text.split_whitespace() {
            let Some((field, value)) = word.split_once(':') else {
                terms.push(Term::Any(word.to_lowercase()));
                continue;
            };
            let field = Field::ALL
                .into_iter()
                .find(|f| f.name().eq_ignore_ascii_case(field))
                .ok_or_else(|| FilterError::UnknownField(field.to_string()))?;
            if value.is_empty() {
                let example = match field {
                    Field::Port => "5432",
                    Field::Host => "db1",
                    Field::Rule => "db-",
                    Field::Kind => "blocked",
                    Field::Proto => "udp",
                    Field::Group => "nodes",
                };
                return Err(FilterError::Empty(field.name(), example));
            }
            terms.push(match field {
                Field::Port => {
                    Term::Port(value.parse().map_err(|_| FilterError::BadPort(value.to_string()))?)
                }
                f => Term::Text(f, value.to_lowercase()),
            });
        }
        Ok(Filter { text: text.trim().to_string(), terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The filter as typed.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// Whether a row with these facts passes every term.
    pub fn matches(&self, facts: &Facts<'_>) -> bool {
        self.terms.iter().all(|t| term_matches(t, facts))
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn contains(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(needle)
}

fn term_matches(t: &Term, facts: &Facts<'_>) -> bool {
    let any = |list: &Option<Vec<&str>>, needle: &str, whole: bool| {
        list.as_ref().is_none_or(|l| {
            l.iter().any(|v| if whole { v.eq_ignore_ascii_case(needle) } else { contains(v, needle) })
        })
    };
    match t {
        Term::Port(p) => facts.ports.as_ref().is_none_or(|r| r.iter().any(|(a, b)| (a..=b).contains(&p))),
        Term::Text(Field::Host, v) => any(&facts.hosts, v, false),
        Term::Text(Field::Rule, v) => any(&facts.rules, v, false),
        Term::Text(Field::Kind, v) => any(&facts.kinds, v, true),
        Term::Text(Field::Group, v) => any(&facts.groups, v, false),
        Term::Text(Field::Proto, v) => facts.proto.is_none_or(|p| p.eq_ignore_ascii_case(v)),
        Term::Text(Field::Port, _) => true,
        Term::Any(v) => {
            let lists = [&facts.hosts, &facts.rules, &facts.kinds, &facts.groups];
            lists.iter().any(|l| l.as_ref().is_some_and(|l| l.iter().any(|s| contains(s, v))))
                || facts.proto.is_some_and(|p| contains(p, v))
        }
    }
}

/// Port ranges of a rule as the coverage report writes them: `5432`,
/// `7001-7012`, `80,443`; empty (none) for ICMP.
pub fn parse_ports(ports: &str) -> Vec<(u16, u16)> {
    ports
        .split(',')
        .filter_map(|p| {
            let p = p.trim();
            match p.split_once('-') {
                Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
                None => p.parse().ok().map(|n| (n, n)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow<'a>(port: u16, hosts: &[&'a str], rule: &'a str, kind: &'a str) -> Facts<'a> {
        Facts {
            ports: Some(vec![(port, port)]),
            hosts: Some(hosts.to_vec()),
            rules: Some(vec![rule]),
            kinds: Some(vec![kind]),
            proto: Some("tcp"),
            groups: None,
        }
    }

    #[test]
    fn terms_of_every_field_match_as_documented() {
        let db = flow(5432, &["rppam1", "10.200.1.20", "db1"], "db-postgres", "blocked");
        let ok = |f: &str| Filter::parse(f).unwrap().matches(&db);
        assert!(ok(""));
        assert!(ok("port:5432") && !ok("port:543"), "ports match whole");
        assert!(ok("host:DB1") && ok("host:10.200.1") && !ok("host:redis"));
        assert!(ok("rule:db-") && !ok("rule:redis"));
        assert!(ok("kind:blocked") && !ok("kind:block"), "kinds match whole");
        assert!(ok("proto:tcp") && !ok("proto:udp"));
        assert!(ok("port:5432 host:db1") && !ok("port:5432 host:redis"), "every term must match");
        assert!(ok("postgres") && !ok("mysql"), "a bare word looks everywhere");
        assert!(ok("group:nodes"), "a field the view does not have is ignored");
    }

    #[test]
    fn a_rules_port_range_holds_the_port() {
        assert_eq!(parse_ports("7001-7012"), [(7001, 7012)]);
        assert_eq!(parse_ports("80,443"), [(80, 80), (443, 443)]);
        assert_eq!(parse_ports(""), []);
        let facts = Facts { ports: Some(parse_ports("7001-7012")), ..Facts::default() };
        assert!(Filter::parse("port:7005").unwrap().matches(&facts));
        assert!(!Filter::parse("port:7013").unwrap().matches(&facts));
    }

    #[test]
    fn bad_filters_say_what_to_write() {
        assert_eq!(
            Filter::parse("prot:5432").unwrap_err().to_string(),
            "unknown field `prot:`; use port:, host:, rule:, kind:, proto: or group:"
        );
        assert_eq!(Filter::parse("port:http").unwrap_err(), FilterError::BadPort("http".into()));
        assert_eq!(Filter::parse("host:").unwrap_err().to_string(), "`host:` needs a value, e.g. `host:db1`");
    }
}
