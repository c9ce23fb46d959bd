//! The import corpus: documents written by the team in the shapes real
//! vendor ports pages come in (tests/fixtures/import/corpus/), each with
//! its `.expected` reading checked by hand against the document: every
//! rule, exposure constraint, warning line and service placement.
//!
//! `.expected` lines: `LINE FROM -> TO PORTS PROTO [when COND]` per rule
//! (LINE: the first document line it came from), `x LINE TO PORTS only
//! FROM` per exposure constraint, `! LINE` per warning, `@ SERVICE
//! group GROUP` (or another placement key, as the draft writes it) per
//! service of the draft;
//! `#` lines are comments.

use std::path::{Path, PathBuf};

use monitor::{
    import::{import, Imported, Options},
    matrix::Matrix,
};

mod expected;

use expected::expected_lines;

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import/corpus").join(name)
}

/// The reading of a document, one line per fact, in the `.expected` form.
fn reading(imported: &Imported) -> Vec<String> {
    let when = |w: &[String]| if w.is_empty() { String::new() } else { format!(" when {}", w.join(" && ")) };
    let ports = |p: &[(u16, u16)]| {
        p.iter()
            .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
            .collect::<Vec<_>>()
            .join(",")
    };
    let d = &imported.draft;
    let mut got: Vec<String> = d
        .rules
        .iter()
        .map(|r| {
            format!(
                "{} {} -> {} {} {}{}",
                r.sources[0].0,
                r.from,
                r.to,
                ports(&r.ports),
                r.proto,
                when(&r.when)
            )
        })
        .collect();
    got.extend(d.exposures.iter().map(|x| {
        let only = x.only_from.join(",");
        format!("x {} {} {} only {only}{}", x.sources[0].0, x.to, ports(&x.ports), when(&x.when))
    }));
    got.extend(d.warnings.iter().map(|w| format!("! {}", w.line)));
    got.extend(placements(&imported.yaml));
    got.sort();
    got
}

/// `@ SERVICE KEY VALUE` per service of the draft, as the draft writes its
/// placement (`group: web` → `@ web-dashboard group web`): read from the
/// YAML, so that the check does not depend on how the importer stores it.
fn placements(yaml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut service: Option<&str> = None;
    let section = yaml
        .lines()
        .skip_while(|l| *l != "services:")
        .skip(1)
        .take_while(|l| !l.starts_with(|c: char| c.is_alphanumeric()));
    for l in section {
        let key =
            l.strip_prefix("  ").and_then(|n| n.strip_suffix(':')).filter(|n| !n.starts_with([' ', '#']));
        if let Some(name) = key {
            service = Some(name);
        } else if let (Some(name), Some((k, v))) = (service, l.trim().split_once(": ")) {
            if k != "description" {
                out.push(format!("@ {name} {k} {v}"));
                service = None;
            }
        }
    }
    out
}

/// Imports a corpus document (with `--product` when given), checks that its
/// draft loads without lint warnings and that its reading is the expected one.
fn check(name: &str, product: Option<&str>) -> Imported {
    let doc = corpus(name);
    let text = std::fs::read_to_string(&doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    let opts =
        Options { doc_name: name.to_string(), product: product.map(str::to_string), ..Options::default() };
    let imported = import(&text, Some(&doc), &opts).unwrap_or_else(|e| panic!("import failed: {e}"));
    let (_, lint) = Matrix::from_str(&imported.yaml, "draft.yaml", Path::new("."))
        .unwrap_or_else(|e| panic!("the draft of {name} does not load:\n{e}\n---\n{}", imported.yaml));
    assert!(lint.is_empty(), "lint warnings on the draft of {name}: {lint:?}\n{}", imported.yaml);
    let exp = corpus(&format!("{name}.expected"));
    let want = expected_lines(&exp);
    let got = reading(&imported);
    assert_eq!(
        got,
        want,
        "{name}: the reading differs from {}\ngot:\n{}\nwarnings: {:#?}\nyaml:\n{}",
        exp.display(),
        got.join("\n"),
        imported.draft.warnings,
        imported.yaml
    );
    imported
}

/// The warnings of a reading that name a line, as `LINE: message`.
fn warnings(d: &Imported) -> Vec<String> {
    d.draft.warnings.iter().map(|w| format!("{}: {}", w.line, w.message)).collect()
}

fn assert_warns(d: &Imported, line: usize, says: &str) {
    assert!(
        d.draft.warnings.iter().any(|w| w.line == line && w.message.contains(says)),
        "no warning at line {line} saying {says:?}: {:#?}",
        warnings(d)
    );
}

/// Source and Destination columns holding node roles, "All nodes" among
/// them, and the conditions in the Description column.
#[test]
fn source_and_destination_columns_with_node_roles() {
    let d = check("hearth-roles.md", None);
    assert_warns(&d, 19, "no port in the \"Port\" column");
}

/// One table per node role under role headings, with a Direction column,
/// a "Used by" column holding several sources, and column titles the
/// table reader does not know ("Listens on", "Transport", "What for").
#[test]
fn one_table_per_role_under_role_headings() {
    let d = check("lattice-role-headings.md", None);
    assert_warns(&d, 22, "direction \"Sideways\" not understood");
}

/// Bullet lists "9094: cluster gossip, used by ...", port ranges, the
/// protocol stated once in the sentence before the list, in copied text.
#[test]
fn port_lists_with_the_protocol_stated_once() {
    let d = check("quiver-port-list.txt", None);
    assert_warns(&d, 11, "starts with a port but is not");
    assert_warns(&d, 17, "no table header the importer knows is above it");
}

/// A long guide whose ports are only in its sentences, some wrapped over
/// two lines; a sentence that names a port but no flow is a warning.
#[test]
fn ports_named_in_sentences() {
    let d = check("beacon-guide.md", None);
    assert_warns(&d, 29, "mentions port 13133 outside a port table");
}

/// An HTML table with a two-row header under a colspan, cells spanning
/// rows (protocol, destination, source) and a full-width section row.
#[test]
fn html_rowspan_and_colspan() {
    let d = check("stratum-spans.html", None);
    assert_warns(&d, 17, "no port in the \"Port\" column");
}

/// Copied text of a table split over two pages: a page-number line inside
/// it, its header repeated on the next page with "(continued)"; a
/// Service / Host group table places the services.
#[test]
fn text_table_split_across_two_pages() {
    let d = check("orrery-two-pages.txt", None);
    assert_warns(&d, 14, "cannot split this row");
    assert_eq!(d.draft.services["orrery-server"].placed_by, "mapping table, line 18");
}

/// A document whose only ports are in its firewall commands (firewalld
/// ports and rich rules, New-NetFirewallRule over two lines, ufw), under
/// headings naming the host role the commands run on.
#[test]
fn ports_only_in_firewall_commands() {
    let d = check("kestrel-commands.md", None);
    assert_warns(&d, 14, "the firewalld service \"https\"");
    assert_warns(&d, 13, "allows only 10.40.0.0/16");
    assert_warns(&d, 26, "a Block rule");
    assert_warns(&d, 34, "OpenSSH");
}

/// The service → host-group mapping written as a list ("Queue servers:
/// hosts in the [mq] group") places the services of the port table.
#[test]
fn mapping_written_as_a_list() {
    let d = check("ferry-mapping-list.md", None);
    assert_eq!(d.draft.services["queue-servers"].placed_by, "mapping table, line 11");
    // The convention would give the same group; the list is still what placed it.
    assert_eq!(d.draft.services["workers"].placed_by, "mapping table, line 12");
    assert_warns(&d, 15, "names no group");
}

/// One table per network plugin under a section that offers them: each
/// table's rules hold only with its plugin; the next section does not.
#[test]
fn the_tab_a_table_sits_under_is_its_condition() {
    let d = check("pylon-plugin-tabs.md", None);
    assert_eq!(d.draft.profiles["calico"], "Required only for Calico");
}
