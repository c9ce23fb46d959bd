//! Firewall commands as vendors print them: `firewall-cmd --add-port` and
//! `--add-rich-rule`, `New-NetFirewallRule`, `ufw allow`, `iptables -A`.
//! Some pages give their ports only this way, so a command that opens a
//! port is a documented flow; one that refuses traffic, or opens a port by
//! a name whose number the page does not give (`--add-service=https`,
//! `ufw allow OpenSSH`), cannot be read and says why.

use std::sync::LazyLock;

use regex::Regex;

/// What one command opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Opening {
    /// As written for a port cell: `8443`, `9100-9105`, `9182,9183`.
    pub ports: String,
    /// `TCP`, `UDP` or `TCP and UDP`.
    pub proto: &'static str,
    /// Traffic the host starts (`-Direction Outbound`, `-A OUTPUT`).
    pub outbound: bool,
    /// The peer address the command restricts the rule to, if any.
    pub remote: Option<String>,
    /// The rule's own name (`-DisplayName`, `-m comment`), if any.
    pub name: Option<String>,
}

/// Whether a line starts a firewall command (after `sudo` or a prompt).
pub(crate) fn is_command(line: &str) -> bool {
    let l = strip_prompt(line).to_ascii_lowercase();
    let mut w = l.split_whitespace();
    let (Some(tool), Some(next)) = (w.next(), w.next()) else { return false };
    match tool {
        "firewall-cmd" | "new-netfirewallrule" | "iptables" | "ip6tables" => next.starts_with('-'),
        "ufw" => {
            ["allow", "deny", "reject", "limit", "enable", "reload", "status", "default", "delete", "insert"]
                .contains(&next)
        }
        _ => false,
    }
}

fn strip_prompt(line: &str) -> &str {
    let mut l = line.trim();
    for p in ["$ ", "# ", "PS> ", "> "] {
        l = l.strip_prefix(p).unwrap_or(l).trim_start();
    }
    l.strip_prefix("sudo ").unwrap_or(l).trim_start()
}

/// The ports a command opens: empty for a command that opens none
/// (`firewall-cmd --reload`), an error naming what cannot be read.
pub(crate) fn read(line: &str) -> Result<Vec<Opening>, String> {
    let l = strip_prompt(line);
    let lower = l.to_ascii_lowercase();
    if lower.starts_with("firewall-cmd") {
        firewalld(l)
    } else if lower.starts_with("new-netfirewallrule") {
        netfirewallrule(l).map(|o| o.into_iter().collect())
    } else if lower.starts_with("ufw") {
        ufw(l).map(|o| o.into_iter().collect())
    } else {
        iptables(l).map(|o| o.into_iter().collect())
    }
}

fn proto_of(p: &str) -> Result<&'static str, String> {
    match p.to_ascii_lowercase().as_str() {
        "tcp" => Ok("TCP"),
        "udp" => Ok("UDP"),
        "" | "any" => Ok("TCP and UDP"),
        other => Err(format!("protocol {other:?} has no ports")),
    }
}

fn firewalld(l: &str) -> Result<Vec<Opening>, String> {
    static PORT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"--add-port[= ](\d{1,5}(?:-\d{1,5})?)/(tcp|udp)").unwrap());
    static SERVICE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"--add-service[= ]([\w-]+)").unwrap());
    static RICH: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#"--add-rich-rule[= ]['"]?(.*)"#).unwrap());
    static RICH_PORT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"\bport port=["']?(\d{1,5}(?:-\d{1,5})?)["']? protocol=["']?(tcp|udp)"#).unwrap()
    });
    static RICH_SOURCE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#"\bsource (?:not )?address=["']?([^"' ]+)"#).unwrap());
    let mut out = Vec::new();
    for c in PORT.captures_iter(l) {
        out.push(Opening {
            ports: c[1].into(),
            proto: proto_of(&c[2])?,
            outbound: false,
            remote: None,
            name: None,
        });
    }
    if let Some(c) = SERVICE.captures(l) {
        return Err(format!(
            "opens the firewalld service {:?}, whose ports the document does not give",
            &c[1]
        ));
    }
    if let Some(rich) = RICH.captures(l) {
        let rule = &rich[1];
        if !rule.contains(" accept") {
            return Err("a rich rule that does not accept traffic is not a documented flow".into());
        }
        let Some(p) = RICH_PORT.captures(rule) else {
            return Err("a rich rule without `port port=N protocol=P`".into());
        };
        out.push(Opening {
            ports: p[1].into(),
            proto: proto_of(&p[2])?,
            outbound: false,
            remote: RICH_SOURCE.captures(rule).map(|s| s[1].to_string()),
            name: None,
        });
    }
    Ok(out)
}

/// `-Name value` arguments of a PowerShell command, names lower-cased.
fn ps_args(l: &str) -> Vec<(String, String)> {
    static ARG: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#"-(\w+)\s+("[^"]*"|'[^']*'|[^\s-][^\s]*)"#).unwrap());
    ARG.captures_iter(l)
        .map(|c| (c[1].to_ascii_lowercase(), c[2].trim_matches(['"', '\'']).to_string()))
        .collect()
}

fn netfirewallrule(l: &str) -> Result<Option<Opening>, String> {
    let args = ps_args(l);
    let arg = |n: &str| args.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    if arg("action").is_some_and(|a| a.eq_ignore_ascii_case("block")) {
        return Err("a Block rule is not a documented flow".into());
    }
    let outbound = arg("direction").is_some_and(|d| d.eq_ignore_ascii_case("outbound"));
    let port = if outbound { arg("remoteport") } else { arg("localport") };
    let Some(ports) = port else {
        return Err(format!("no -{} in the rule", if outbound { "RemotePort" } else { "LocalPort" }));
    };
    let remote = arg("remoteaddress").filter(|a| !a.eq_ignore_ascii_case("any"));
    Ok(Some(Opening {
        ports,
        proto: proto_of(&arg("protocol").unwrap_or_default())?,
        outbound,
        remote,
        name: arg("displayname").or_else(|| arg("name")),
    }))
}

fn ufw(l: &str) -> Result<Option<Opening>, String> {
    static SIMPLE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^ufw allow (?:in )?(\d{1,5}(?:[:-]\d{1,5})?(?:,\d{1,5}(?:[:-]\d{1,5})?)*)(?:/(tcp|udp))?\s*(?:comment .*)?$").unwrap()
    });
    static FULL: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^ufw allow (?:in )?(?:proto (tcp|udp) )?(?:from (\S+) )?(?:to \S+ )?port (\d{1,5}(?:[:-]\d{1,5})?(?:,\d{1,5}(?:[:-]\d{1,5})?)*)(?: proto (tcp|udp))?\s*(?:comment .*)?$").unwrap()
    });
    let norm = l.split_whitespace().collect::<Vec<_>>().join(" ");
    let lower = norm.to_ascii_lowercase();
    if ["ufw enable", "ufw reload", "ufw status", "ufw default"].iter().any(|p| lower.starts_with(p)) {
        return Ok(None);
    }
    if !lower.starts_with("ufw allow") {
        return Err("only `ufw allow` opens a port".into());
    }
    let ports = |p: &str| p.replace(':', "-");
    if let Some(c) = SIMPLE.captures(&lower) {
        let proto = proto_of(c.get(2).map_or("", |m| m.as_str()))?;
        return Ok(Some(Opening { ports: ports(&c[1]), proto, outbound: false, remote: None, name: None }));
    }
    if let Some(c) = FULL.captures(&lower) {
        let proto = proto_of(c.get(1).or(c.get(4)).map_or("", |m| m.as_str()))?;
        let remote = c.get(2).map(|m| m.as_str().to_string()).filter(|a| a != "any");
        return Ok(Some(Opening { ports: ports(&c[3]), proto, outbound: false, remote, name: None }));
    }
    Err("no port in the command (an application profile such as `OpenSSH` names no port)".into())
}

fn iptables(l: &str) -> Result<Option<Opening>, String> {
    static PORT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"--dports? (\d{1,5}(?:[:,-]\d{1,5})*)").unwrap());
    static PROTO: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?:^| )-p (tcp|udp)\b").unwrap());
    static SOURCE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?:^| )-s (\S+)").unwrap());
    let lower = l.to_ascii_lowercase();
    if !lower.contains("-j accept") {
        return if lower.contains(" -j ") {
            Err("a rule that does not ACCEPT is not a documented flow".into())
        } else {
            Ok(None)
        };
    }
    let Some(p) = PORT.captures(&lower) else { return Err("no --dport in the rule".into()) };
    let proto = proto_of(PROTO.captures(&lower).map_or("", |c| c.get(1).unwrap().as_str()))?;
    Ok(Some(Opening {
        ports: p[1].replace(':', "-"),
        proto,
        outbound: lower.contains(" output "),
        remote: SOURCE.captures(&lower).map(|c| c[1].to_string()),
        name: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(l: &str) -> Opening {
        let mut v = read(l).unwrap();
        assert_eq!(v.len(), 1, "{l}: {v:?}");
        v.remove(0)
    }

    #[test]
    fn reads_each_tool() {
        let o = one("sudo firewall-cmd --permanent --zone=public --add-port=8443/tcp");
        assert_eq!((o.ports.as_str(), o.proto, o.remote), ("8443", "TCP", None));
        let o = one(
            r#"firewall-cmd --permanent --add-rich-rule='rule family="ipv4" source address="10.20.0.0/16" port port="5432" protocol="tcp" accept'"#,
        );
        assert_eq!((o.ports.as_str(), o.remote.as_deref()), ("5432", Some("10.20.0.0/16")));
        let o = one(
            r#"New-NetFirewallRule -DisplayName "Agent metrics" -Direction Inbound -Protocol UDP -LocalPort 9182,9183 -Action Allow"#,
        );
        assert_eq!(
            (o.ports.as_str(), o.proto, o.name.as_deref()),
            ("9182,9183", "UDP", Some("Agent metrics"))
        );
        let o = one("ufw allow 60000:61000/udp");
        assert_eq!((o.ports.as_str(), o.proto), ("60000-61000", "UDP"));
        let o = one("ufw allow from 10.0.0.0/8 to any port 9100 proto tcp");
        assert_eq!((o.ports.as_str(), o.proto, o.remote.as_deref()), ("9100", "TCP", Some("10.0.0.0/8")));
        assert_eq!(one("ufw allow 8080").proto, "TCP and UDP");
        let o = one("iptables -A INPUT -p tcp -s 10.1.0.0/24 --dport 8080 -j ACCEPT");
        assert_eq!((o.ports.as_str(), o.remote.as_deref()), ("8080", Some("10.1.0.0/24")));
        assert_eq!(read("firewall-cmd --permanent --add-port=80/tcp --add-port=53/udp").unwrap().len(), 2);
    }

    #[test]
    fn says_why_it_cannot_read_a_command() {
        assert!(read("firewall-cmd --add-service=https").unwrap_err().contains("\"https\""));
        assert!(read("ufw allow OpenSSH").is_err());
        assert!(read("ufw deny 23").is_err());
        assert!(read("New-NetFirewallRule -Direction Inbound -LocalPort 23 -Action Block").is_err());
        assert!(read("firewall-cmd --reload").unwrap().is_empty());
        assert!(is_command("$ sudo ufw allow 22/tcp") && !is_command("ufw is a front end"));
    }
}
