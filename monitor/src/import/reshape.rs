//! Shapes of real vendor pages that the table reader in `understand` does
//! not know, rewritten into the tables it does know, between the format
//! readers and `understand` (docs/import.md, "Other shapes"):
//!
//! - a table under a heading that names a node role ("Server nodes") holds
//!   the ports of that role: the role is the destination of its inbound
//!   rows and the source of its outbound ones, and a "Used by" column is
//!   the other side; columns whose titles are unknown but whose cells are
//!   all ports are the port column;
//! - a table under one tab or sub-section of a section that offers
//!   alternatives ("Network plugin ports" → "Calico", "Flannel") applies
//!   only with that alternative;
//! - "all nodes" in a Source or Destination cell is every node role the
//!   document names;
//! - list items "9094: cluster gossip, used by ...", sentences naming a
//!   flow on a port, and firewall commands (when the document has no other
//!   ports) become rows of a table with Port, Protocol, Source,
//!   Destination and Description columns; a list item "Queue servers:
//!   hosts in the [mq] group" becomes a row of a Service / Host group table.
//!
//! Text that looks like one of these shapes but cannot be read is a
//! warning with its line; anything else passes through unchanged.

use std::sync::LazyLock;

use regex::Regex;

use super::{
    commands,
    prose::{self, Flow},
    understand::{role, Role, EXPOSURE},
    Block, Row, Table, Warning,
};

/// The columns of the tables made from lists, sentences and commands.
const FLOW_HEADER: [&str; 5] = ["Port", "Protocol", "Source", "Destination", "Description"];

/// Column titles `understand` does not know, by what they hold.
const SOURCE_TITLES: &[&str] = &[
    "used by",
    "accessed by",
    "called by",
    "consumers",
    "clients",
    "initiated by",
    "connections from",
    "peers",
];
const PROTO_TITLES: &[&str] = &["transport", "l4 protocol", "ip protocol"];

/// A port cell: `9094`, `9100-9105`, `8300, 8301`, `7946/udp`.
static PORT_CELL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\d{1,5}(?:\s*[-–]\s*\d{1,5})?(?:/(?:tcp|udp))?(?:\s*(?:,|and|or)\s*\d{1,5}(?:\s*[-–]\s*\d{1,5})?(?:/(?:tcp|udp))?)*$").unwrap()
});
/// A column title that says its cells are ports, in words the table reader does not know.
static PORTISH_TITLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)listen|port|socket|number|\btcp\b|\budp\b|\bopens?\b").unwrap());

/// Numbers that read as ports rather than as steps or counts (1, 2, 3):
/// none below 20, one at least 1024.
fn looks_like_ports(cells: &[&str]) -> bool {
    let numbers: Vec<u32> = cells
        .iter()
        .flat_map(|c| c.split(|ch: char| !ch.is_ascii_digit()).filter_map(|n| n.parse().ok()))
        .collect();
    numbers.iter().all(|&n| n >= 20) && numbers.iter().any(|&n| n >= 1024)
}

/// "9000 TCP Object store Backups": a port, then a protocol, as a copied table row has them.
static ROW_OUTSIDE_TABLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\d{1,5}(?:\s*-\s*\d{1,5})?(?:/(?:tcp|udp)\b|\s+(?:tcp|udp|https?|grpc)\b)").unwrap()
});

/// What `understand` reads a list item by; items without it are skipped there.
static PORT_WORD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)\bports?\b|\d/(?:tcp|udp)").unwrap());

/// The node role a heading names: "Server nodes", "Ports on agent nodes",
/// "Worker nodes (inbound)"; not "Node to Node" or "Out of the Nodes".
fn role_heading(h: &str) -> Option<String> {
    static ROLE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^(?:(?:inbound |incoming )?ports? (?:on|for|open on|opened on|required on|to open on) |(?:inbound |incoming )?(?:rules|traffic) (?:on|to|for) |on )?(?:the |all |each )?((?:[a-z][\w-]* ){0,2}(?:nodes?|servers?|agents?|hosts?|workers?|controllers?|managers?|brokers?|members?|gateways?|proxy|proxies|collectors?|masters?|balancers?|routers?))(?: \((?:inbound|incoming)\))?(?: ports?)?$").unwrap()
    });
    const NOT_A_ROLE: &[&str] =
        &["of", "to", "from", "into", "out", "between", "and", "single", "multi", "one"];
    let c = ROLE.captures(h.trim())?;
    let name = c[1].to_string();
    let words = name.to_lowercase();
    (!words.split([' ', '-']).any(|w| NOT_A_ROLE.contains(&w))).then_some(name)
}

/// A heading under which each sub-section is one alternative ("Network
/// plugin ports", "Storage backends", "Choose a provider").
fn offers_alternatives(h: &str) -> bool {
    static ALT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\b(?:plugins?|providers?|backends?|cni|variants?|editions?|choose|depending on|per [\w-]+)\b")
            .unwrap()
    });
    ALT.is_match(h)
}

/// "all nodes", "every node": every node role of the document.
fn is_all_nodes(cell: &str) -> bool {
    static ALL: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^(?:all|every|each)(?: cluster)? (?:nodes?|hosts?|members?|machines?)$").unwrap()
    });
    ALL.is_match(cell.trim())
}

/// "Servers, agents and the load balancer" → its names.
fn names_in(cell: &str) -> Vec<String> {
    static SEP: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\s*(?:,|;|\band\b|\bor\b| / |<br>)\s*").unwrap());
    if cell.contains('.') {
        return vec![cell.trim().to_string()]; // DNS names stay one cell
    }
    SEP.split(cell)
        .map(|n| n.trim().trim_start_matches("the ").to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

#[derive(Default)]
struct Section {
    /// (level, text) of the open headings, outermost first.
    headings: Vec<(u8, String)>,
    /// The protocol a sentence gave the list after it.
    stated_proto: Option<&'static str>,
}

impl Section {
    fn open(&mut self, level: u8, text: &str) {
        while self.headings.last().is_some_and(|(l, _)| *l >= level) {
            self.headings.pop();
        }
        self.headings.push((level, text.to_string()));
        self.stated_proto = None;
    }

    fn role(&self) -> Option<String> {
        self.headings.iter().rev().find_map(|(_, h)| role_heading(h))
    }

    /// The alternative (tab) a table sits under: the heading just inside one that offers alternatives.
    fn alternative(&self) -> Option<&str> {
        let h = &self.headings;
        (0..h.len().saturating_sub(1))
            .rev()
            .find(|&i| offers_alternatives(&h[i].1))
            .map(|i| h[i + 1].1.as_str())
    }
}

/// A firewall command, resolved once the whole document is seen.
struct Command {
    line: usize,
    raw: String,
    blocks: Vec<Block>,
    role: Option<String>,
}

enum Out {
    Block(Block),
    Flow(usize, String, Flow),
    Mapping(Row),
    Command(Command),
}

pub(crate) fn reshape(blocks: Vec<Block>) -> (Vec<Block>, Vec<Warning>) {
    let roles = document_roles(&blocks);
    let mut warnings = Vec::new();
    let mut out: Vec<Out> = Vec::new();
    let mut sec = Section::default();
    let mut i = 0;
    while i < blocks.len() {
        match &blocks[i] {
            Block::Heading { level, text, .. } => {
                sec.open(*level, text);
                out.push(Out::Block(blocks[i].clone()));
            }
            Block::Table(t) => out.push(Out::Block(Block::Table(table(t, &sec, &roles)))),
            Block::Item { line, text } => item(*line, text, &sec, &mut out, &mut warnings),
            Block::Prose { line, text } if commands::is_command(text) => {
                // A command continued on the next lines (`\` in a shell, a backtick in PowerShell).
                let mut raw = text.clone();
                let mut taken = vec![blocks[i].clone()];
                while raw.ends_with(['\\', '`']) {
                    let Some(Block::Prose { line: l, text: t }) = blocks.get(i + 1) else { break };
                    if *l != line + taken.len() {
                        break;
                    }
                    raw = format!("{} {}", raw.trim_end_matches(['\\', '`']).trim_end(), t.trim());
                    taken.push(blocks[i + 1].clone());
                    i += 1;
                }
                out.push(Out::Command(Command { line: *line, raw, blocks: taken, role: sec.role() }));
            }
            Block::Prose { .. } => {
                let mut para = vec![&blocks[i]];
                while let (Some(Block::Prose { line: a, .. }), Some(Block::Prose { line: b, text })) =
                    (para.last().copied(), blocks.get(i + 1))
                {
                    if *b != a + 1 || commands::is_command(text) || text.starts_with('#') {
                        break;
                    }
                    para.push(&blocks[i + 1]);
                    i += 1;
                }
                paragraph(&para, &mut sec, &mut out, &mut warnings);
            }
            Block::Edge(_) => out.push(Out::Block(blocks[i].clone())),
        }
        i += 1;
    }
    let has_ports = out.iter().any(|o| match o {
        Out::Block(Block::Table(t)) => t.header.iter().any(|h| role(h) == Role::Port),
        Out::Block(Block::Edge(_)) | Out::Flow(..) => true,
        Out::Block(Block::Item { text, .. }) => PORT_WORD.is_match(text),
        _ => false,
    });
    let mut resolved = Vec::new();
    for o in out {
        match o {
            Out::Command(c) => command(c, has_ports, &mut resolved, &mut warnings),
            o => resolved.push(o),
        }
    }
    (assemble(resolved), warnings)
}

/// Node roles the document names, in its order: role headings, and the
/// Source and Destination cells of its tables that name a role.
fn document_roles(blocks: &[Block]) -> Vec<String> {
    let mut roles: Vec<String> = Vec::new();
    let mut add = |n: String| {
        if !roles.iter().any(|r| r.eq_ignore_ascii_case(&n)) {
            roles.push(n);
        }
    };
    for b in blocks {
        match b {
            Block::Heading { text, .. } => {
                if let Some(r) = role_heading(text) {
                    add(r);
                }
            }
            Block::Table(t) => {
                let sides: Vec<usize> = (0..t.header.len())
                    .filter(|&i| matches!(role(&t.header[i]), Role::Source | Role::Target))
                    .collect();
                for r in &t.rows {
                    for n in sides.iter().filter_map(|&i| r.cells.get(i)).flat_map(|c| names_in(c)) {
                        if !is_all_nodes(&n) && role_heading(&n).is_some() {
                            add(n);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    roles
}

/// A table with its columns renamed, its role heading and alternative applied.
fn table(t: &Table, sec: &Section, roles: &[String]) -> Table {
    let mut t = t.clone();
    for h in t.header.iter_mut() {
        if role(h) != Role::Text {
            continue;
        }
        let l = h.trim().to_lowercase();
        if SOURCE_TITLES.contains(&l.as_str()) {
            *h = "Source".into();
        } else if PROTO_TITLES.contains(&l.as_str()) {
            *h = "Protocol".into();
        }
    }
    let col = |t: &Table, r: Role| t.header.iter().position(|h| role(h) == r);
    if col(&t, Role::Port).is_none() {
        // A column titled in words the importer does not know ("Listens on") whose cells are all ports.
        let ports = (0..t.header.len()).find(|&i| {
            let cells: Vec<&str> = t
                .rows
                .iter()
                .filter_map(|r| r.cells.get(i))
                .map(|c| c.trim())
                .filter(|c| !c.is_empty())
                .collect();
            role(&t.header[i]) == Role::Text
                && !cells.is_empty()
                && cells.iter().all(|c| PORT_CELL.is_match(c))
                && (PORTISH_TITLE.is_match(&t.header[i]) || looks_like_ports(&cells))
        });
        match ports {
            Some(i) => t.header[i] = "Port".into(),
            None => return t,
        }
    }
    // Under a role heading, several names in one cell are written any way ("A and B", "A / B");
    // elsewhere only "all nodes" is rewritten and the cell is read as `understand` reads it.
    let on_role_heading = match (sec.role(), col(&t, Role::Target)) {
        (Some(node), None) => {
            on_role(&mut t, &node);
            true
        }
        _ => false,
    };
    for r in t.rows.iter_mut() {
        for i in (0..t.header.len()).filter(|&i| matches!(role(&t.header[i]), Role::Source | Role::Target)) {
            let Some(c) = r.cells.get_mut(i) else { continue };
            if !on_role_heading && !is_all_nodes(c) {
                continue;
            }
            let names: Vec<String> = names_in(c)
                .into_iter()
                .flat_map(|n| if is_all_nodes(&n) && !roles.is_empty() { roles.to_vec() } else { vec![n] })
                .collect();
            *c = names.join(", ");
        }
    }
    if let Some(alt) = sec.alternative() {
        t.header.push("Condition".into());
        for r in t.rows.iter_mut() {
            r.cells.resize(t.header.len() - 1, String::new());
            r.cells.push(format!("Required only for {alt}"));
        }
    }
    t
}

/// The ports of one node role: inbound rows (or rows without a direction)
/// go to the role from the Source ("Used by") cell, outbound rows from the
/// role to it, bidirectional rows both ways.
fn on_role(t: &mut Table, node: &str) {
    let src = match t.header.iter().position(|h| role(h) == Role::Source) {
        Some(i) => i,
        None => {
            t.header.push("Source".into());
            t.header.len() - 1
        }
    };
    t.header.push("Destination".into());
    let dir = t.header.iter().position(|h| role(h) == Role::Direction);
    let width = t.header.len();
    let mut rows = Vec::new();
    for mut r in std::mem::take(&mut t.rows) {
        r.cells.resize(width, String::new());
        let other = r.cells[src].clone();
        let d = dir.map(|i| r.cells[i].to_lowercase()).unwrap_or_default();
        let both = d.starts_with("both") || d.starts_with("bidirectional") || d.contains("in/out");
        let outbound = d.starts_with("outbound") || d.starts_with("egress") || d.starts_with("out");
        let inbound =
            d.is_empty() || d.starts_with("inbound") || d.starts_with("ingress") || d.starts_with("in");
        if !(outbound || inbound || both) {
            // Neither side is known: `understand` reports the direction it cannot read.
            r.cells[src].clear();
            rows.push(r);
            continue;
        }
        if outbound || both {
            let mut o = r.clone();
            o.cells[src] = node.to_string();
            o.cells[width - 1] = other.clone();
            rows.push(o);
        }
        if !outbound || both {
            r.cells[src] = other;
            r.cells[width - 1] = node.to_string();
            rows.push(r);
        }
    }
    t.rows = rows;
}

fn item(line: usize, text: &str, sec: &Section, out: &mut Vec<Out>, warnings: &mut Vec<Warning>) {
    if let Some((name, group)) = prose::mapping_item(text) {
        out.push(Out::Mapping(Row { line, cells: vec![name, group], raw: text.to_string() }));
    } else if let Some(mut f) = prose::port_item(text) {
        if f.proto.is_empty() {
            f.proto = sec.stated_proto.unwrap_or_default().to_string();
        }
        f.destination = sec.role().unwrap_or_default();
        out.push(flow(line, text, f, warnings));
    } else {
        if matches!(out.last(), Some(Out::Mapping(_))) && text.contains(':') {
            warnings.push(Warning {
                line,
                message: format!("a list item among the host-group mapping that names no group (\"NAME: hosts in the [GROUP] group\"); its service is not placed by it: {text}"),
            });
        }
        if prose::starts_with_port(text) && !PORT_WORD.is_match(text) {
            warnings.push(Warning {
                line,
                message: format!("a list item that starts with a port but is not \"PORT: what, used by whom\"; not imported: {text}"),
            });
        }
        out.push(Out::Block(Block::Item { line, text: text.to_string() }));
    }
}

/// Consecutive lines of running text: its sentences that name a flow
/// become rows; when none does, the lines pass through as they were.
fn paragraph(lines: &[&Block], sec: &mut Section, out: &mut Vec<Out>, warnings: &mut Vec<Warning>) {
    let mut text = String::new();
    let mut starts: Vec<(usize, usize)> = Vec::new(); // (byte offset, line)
    for b in lines {
        if let Block::Prose { line, text: t } = b {
            if !text.is_empty() {
                text.push(' ');
            }
            starts.push((text.len(), *line));
            text.push_str(t.trim());
        }
    }
    let line_at = |off: usize| starts.iter().rev().find(|(o, _)| *o <= off).map_or(0, |s| s.1);
    let mut read = Vec::new();
    for (off, s) in prose::sentences(&text) {
        if let Some(p) = prose::stated_proto(s) {
            sec.stated_proto = Some(p);
        }
        // "... listens on port 9100 localhost only" is an exposure constraint, read by `understand`.
        read.push((line_at(off), s, prose::sentence(s).filter(|_| !EXPOSURE.is_match(s))));
    }
    if read.iter().all(|(_, _, f)| f.is_none()) {
        for b in lines {
            if let Block::Prose { line, text } = b {
                if ROW_OUTSIDE_TABLE.is_match(text) && !PORT_WORD.is_match(text) {
                    warnings.push(Warning {
                        line: *line,
                        message: format!("reads like a table row, but no table header the importer knows is above it (check the column titles); not imported: {text}"),
                    });
                }
            }
        }
        out.extend(lines.iter().map(|b| Out::Block((*b).clone())));
        return;
    }
    for (line, s, f) in read {
        match f {
            Some(f) => out.push(flow(line, s, f, warnings)),
            None => out.push(Out::Block(Block::Prose { line, text: s.to_string() })),
        }
    }
}

/// A flow read from a list item or a sentence; one that names no source allows any, with a warning.
fn flow(line: usize, raw: &str, mut f: Flow, warnings: &mut Vec<Warning>) -> Out {
    if f.source.is_empty() {
        warnings.push(Warning {
            line,
            message: "names no source (\"used by ...\", \"from ...\"): the rule allows any source".into(),
        });
        f.source = "any".into();
    }
    Out::Flow(line, raw.to_string(), f)
}

/// A firewall command: the document's flows when it has no other ports,
/// else an example whose lines pass through (reported where they name a port).
fn command(c: Command, has_ports: bool, out: &mut Vec<Out>, warnings: &mut Vec<Warning>) {
    let mut warn = |message: String| warnings.push(Warning { line: c.line, message });
    let openings = commands::read(&c.raw);
    if has_ports {
        if openings.as_ref().is_ok_and(|o| !o.is_empty()) && !c.raw.to_lowercase().contains("port") {
            warn(format!(
                "a firewall command example; the document's tables are imported instead: {}",
                c.raw
            ));
        }
        out.extend(c.blocks.into_iter().map(Out::Block));
        return;
    }
    let openings = match openings {
        Ok(o) => o,
        Err(why) => return warn(format!("firewall command not imported: {why}: {}", c.raw)),
    };
    for o in openings {
        if let Some(remote) = &o.remote {
            warn(format!(
                "the command allows only {remote}; imported as any (give that address a zone or a service with cidrs)"
            ));
        }
        let host = c.role.clone().unwrap_or_default();
        let (source, destination) = if o.outbound {
            if host.is_empty() {
                warn(format!(
                    "an outbound firewall rule under no node-role heading; not imported: {}",
                    c.raw
                ));
                continue;
            }
            (host, "any".to_string())
        } else {
            ("any".to_string(), host)
        };
        let description = o.name.clone().unwrap_or_else(|| c.raw.clone());
        let flow = Flow { ports: o.ports, proto: o.proto.into(), source, destination, description };
        out.push(Out::Flow(c.line, c.raw.clone(), flow));
    }
}

/// Consecutive flows become one table, consecutive mappings one Service / Host group table.
fn assemble(out: Vec<Out>) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut last_was: Option<bool> = None; // Some(true) after a flow, Some(false) after a mapping
    for o in out {
        let (is_flow, row) = match o {
            Out::Block(b) => {
                blocks.push(b);
                last_was = None;
                continue;
            }
            Out::Flow(line, raw, f) => {
                let (source, destination) =
                    (names_in(&f.source).join(", "), names_in(&f.destination).join(", "));
                (true, Row { line, cells: vec![f.ports, f.proto, source, destination, f.description], raw })
            }
            Out::Mapping(r) => (false, r),
            Out::Command(_) => unreachable!("commands are resolved before"),
        };
        if last_was != Some(is_flow) {
            let header: Vec<String> = if is_flow {
                FLOW_HEADER.iter().map(|h| h.to_string()).collect()
            } else {
                vec!["Service".into(), "Host group".into()]
            };
            blocks.push(Block::Table(Table { line: row.line, header, rows: Vec::new() }));
        }
        if let Some(Block::Table(t)) = blocks.last_mut() {
            t.rows.push(row);
        }
        last_was = Some(is_flow);
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_that_name_a_role() {
        assert_eq!(role_heading("Server nodes").as_deref(), Some("Server nodes"));
        assert_eq!(role_heading("Ports on agent nodes").as_deref(), Some("agent nodes"));
        assert_eq!(role_heading("Control plane nodes (inbound)").as_deref(), Some("Control plane nodes"));
        for h in ["Node to Node", "Out of the Nodes", "Into the Server", "Ports Users Reach", "Single-node"] {
            assert_eq!(role_heading(h), None, "{h}");
        }
        assert!(offers_alternatives("Network plugin ports") && !offers_alternatives("Ports at a Glance"));
    }

    fn t(header: &[&str], rows: &[&[&str]]) -> Table {
        Table {
            line: 1,
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: rows
                .iter()
                .enumerate()
                .map(|(i, r)| Row {
                    line: i + 2,
                    cells: r.iter().map(|c| c.to_string()).collect(),
                    raw: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_role_table_gets_sides_and_its_tab_a_condition() {
        let mut sec = Section::default();
        sec.open(2, "Network plugin ports");
        sec.open(3, "Calico");
        sec.open(4, "Worker nodes");
        let got = table(
            &t(
                &["Listens on", "Transport", "Direction", "Used by"],
                &[
                    &["179", "TCP", "Inbound", "workers and control plane nodes"],
                    &["443", "TCP", "Outbound", "registry"],
                ],
            ),
            &sec,
            &[],
        );
        assert_eq!(got.header, ["Port", "Protocol", "Direction", "Source", "Destination", "Condition"]);
        assert_eq!(got.rows[0].cells[3..5], ["workers, control plane nodes", "Worker nodes"]);
        assert_eq!(got.rows[1].cells[3..6], ["Worker nodes", "registry", "Required only for Calico"]);
    }

    fn prose(line: usize, text: &str) -> Block {
        Block::Prose { line, text: text.into() }
    }

    #[test]
    fn an_item_without_a_source_allows_any_with_a_warning() {
        let (blocks, w) = reshape(vec![Block::Item { line: 3, text: "8080: web interface".into() }]);
        let Some(Block::Table(t)) = blocks.first() else { panic!("{blocks:?}") };
        assert_eq!(t.rows[0].cells, ["8080", "", "any", "", "web interface"]);
        assert_eq!(w.iter().map(|w| w.line).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn commands_are_examples_when_the_document_has_a_port_table() {
        let table = Block::Table(t(&["Port", "Source"], &[&["22", "Admins"]]));
        let (blocks, w) = reshape(vec![
            table.clone(),
            prose(5, "sudo ufw allow 22/tcp"),
            prose(6, "firewall-cmd --add-port=22/tcp"),
        ]);
        // Both lines pass through; the one without the word "port" is warned here, the other by `understand`.
        assert_eq!(blocks.len(), 3);
        assert_eq!(w.iter().map(|w| w.line).collect::<Vec<_>>(), [5]);
        let (blocks, w) = reshape(vec![prose(5, "sudo ufw allow 22/tcp")]);
        let Some(Block::Table(t)) = blocks.first() else { panic!("{blocks:?}") };
        assert_eq!((t.rows[0].cells[0].as_str(), t.rows[0].cells[2].as_str()), ("22", "any"));
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn a_column_of_numbers_is_a_port_column_only_when_it_reads_as_ports() {
        let sec = Section::default();
        let steps = table(
            &t(&["Step", "What to check"], &[&["1", "the service runs"], &["2", "port 443 answers"]]),
            &sec,
            &[],
        );
        assert_eq!(steps.header, ["Step", "What to check"]);
        let ports = table(&t(&["Endpoint", "What for"], &[&["6643", "API"], &["80", "web"]]), &sec, &[]);
        assert_eq!(ports.header, ["Port", "What for"]);
        let titled = table(&t(&["Opens", "What for"], &[&["22", "SSH"]]), &sec, &[]);
        assert_eq!(titled.header, ["Port", "What for"]);
    }

    #[test]
    fn a_row_without_a_known_header_is_a_warning() {
        let (_, w) = reshape(vec![prose(4, "9000 TCP Object store Backups"), prose(5, "3 nodes are enough")]);
        assert_eq!(w.iter().map(|w| w.line).collect::<Vec<_>>(), [4]);
    }
}
