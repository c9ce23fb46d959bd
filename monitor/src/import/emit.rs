//! Writes a [`Draft`] as matrix YAML (docs/matrix.md): services, profiles,
//! rules and exposure constraints in a stable order, each rule preceded by
//! comments citing the document lines it came from. Free text is written as
//! JSON strings, which YAML reads as double-quoted scalars.

use std::{collections::BTreeMap, fmt::Write};

use super::{understand::slug, Draft, Format, Placement};

pub(crate) fn emit(d: &Draft, doc: &str, format: Format) -> String {
    let mut y = String::new();
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let _ =
        writeln!(y, "# Draft matrix imported from {doc} ({}) by `monitor matrix import`.", format.as_str());
    let _ =
        writeln!(y, "# Review it: names, host groups and conditions are the importer's reading of the text.");
    let _ = writeln!(y, "# Each rule cites the document lines it came from; warnings are listed at the end.");
    let _ = writeln!(y, "version: 1");
    let _ = writeln!(y, "description: {}", q(&format!("imported from {doc}")));
    if !d.profiles.is_empty() {
        let _ = writeln!(y, "\nprofiles:");
        for (name, desc) in &d.profiles {
            if let Some(line) = d.profile_notes.get(name) {
                let _ = writeln!(y, "  # line {line}: a note conditions the rules it restricts");
            }
            let _ = writeln!(y, "  {name}:\n    description: {}", q(desc));
        }
    }
    if !d.zones.is_empty() {
        let _ = writeln!(y, "\nzones:");
        for (name, z) in &d.zones {
            let _ = writeln!(y, "  # line {}: audience {}, outside the cluster", z.line, q(&z.name));
            let _ = writeln!(y, "  {name}:");
            let _ = writeln!(y, "    description: {}", q(&format!("{}: FILL IN its addresses", z.name)));
            let _ = writeln!(
                y,
                "    cidrs: []  # FILL IN, e.g. [192.0.2.0/24]; until then no client is in this zone"
            );
        }
    }
    let used = super::review::used_services(d);
    let _ = writeln!(y, "\nservices:");
    for (name, s) in d.services.iter().filter(|(n, _)| used.contains(n.as_str())) {
        let _ = writeln!(
            y,
            "  # line {}: {}; placed by {}",
            s.line,
            s.names.iter().cloned().collect::<Vec<_>>().join(", "),
            s.placed_by
        );
        let _ = writeln!(y, "  {name}:");
        let _ =
            writeln!(y, "    description: {}", q(&s.names.iter().cloned().collect::<Vec<_>>().join(" / ")));
        match &s.placement {
            Placement::Group(g) => {
                let _ = writeln!(y, "    group: {g}");
            }
            Placement::Hosts(h) => {
                let _ = writeln!(y, "    hosts: [{}]", h.iter().map(|x| q(x)).collect::<Vec<_>>().join(", "));
            }
            Placement::Fqdns(f) => {
                let _ = writeln!(y, "    fqdns: [{}]", f.iter().map(|x| q(x)).collect::<Vec<_>>().join(", "));
            }
        }
    }
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut id_for = |base: String| {
        let n = ids.entry(base.clone()).or_default();
        *n += 1;
        if *n == 1 {
            base
        } else {
            format!("{base}-{n}")
        }
    };
    let _ = writeln!(y, "\nrules:");
    for r in &d.rules {
        for (line, raw) in &r.sources {
            let _ = writeln!(y, "  # line {line}: {}", one_line(raw));
        }
        let first = r.ports.first().map(|p| p.0).unwrap_or(0);
        let suffix = if r.proto == "tcp" { String::new() } else { format!("-{}", r.proto) };
        let _ =
            writeln!(y, "  - id: {}", id_for(format!("{}-{}-{first}{suffix}", slug(&r.from), slug(&r.to))));
        let _ = writeln!(y, "    from: {}\n    to: {}", r.from, r.to);
        let _ = writeln!(y, "    ports: {}", ports_yaml(&r.ports));
        let _ = writeln!(y, "    proto: {}", r.proto);
        let lines: Vec<String> = r.sources.iter().map(|(l, _)| l.to_string()).collect();
        let _ = writeln!(y, "    purpose: {}", q(&format!("{} [{doc}:{}]", r.purpose, lines.join(","))));
        write_when(&mut y, &r.when, &q);
    }
    if !d.exposures.is_empty() {
        let _ = writeln!(y, "\nexposure:");
        for x in &d.exposures {
            for (line, raw) in &x.sources {
                let _ = writeln!(y, "  # line {line}: {}", one_line(raw));
            }
            let first = x.ports.first().map(|p| p.0).unwrap_or(0);
            let _ = writeln!(y, "  - id: {}", id_for(format!("exposure-{}-{first}", slug(&x.to))));
            let _ = writeln!(y, "    to: {}", x.to);
            let _ = writeln!(y, "    ports: {}", ports_yaml(&x.ports));
            let _ = writeln!(y, "    proto: {}", x.proto);
            let _ = writeln!(y, "    only_from: [{}]", x.only_from.join(", "));
            let _ = writeln!(y, "    purpose: {}", q(&format!("{} [{doc}:{}]", x.purpose, x.sources[0].0)));
            write_when(&mut y, &x.when, &q);
        }
    }
    if !d.warnings.is_empty() {
        let _ = writeln!(y, "\n# Not imported or uncertain ({}):", d.warnings.len());
        for w in &d.warnings {
            let _ = match w.line {
                0 => writeln!(y, "# {doc}: {}", one_line(&w.message)),
                l => writeln!(y, "# {doc}:{l}: {}", one_line(&w.message)),
            };
        }
    }
    y
}

fn write_when(y: &mut String, when: &[String], q: &dyn Fn(&str) -> String) {
    match when.len() {
        0 => {}
        _ => {
            let _ = writeln!(y, "    when: {}", q(&when.join(" && ")));
        }
    }
}

/// `[443, "7001-7012"]`.
fn ports_yaml(p: &[(u16, u16)]) -> String {
    let items: Vec<String> =
        p.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("\"{a}-{b}\"") }).collect();
    format!("[{}]", items.join(", "))
}

fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 160 {
        format!("{}...", s.chars().take(157).collect::<String>())
    } else {
        s
    }
}
