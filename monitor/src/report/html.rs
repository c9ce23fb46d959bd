//! A [`Page`] rendered to one self-contained HTML document.
//!
//! The markup is an askama template (`page.html` beside this file), whose
//! every `{{ }}` is HTML-escaped: rule ids, host names, reasons and paths
//! come from the user's matrix, inventory and capture, so none may reach
//! the page as markup. Only three things are inserted as they are: the
//! page's own style sheet and script (constants of this crate), and the
//! graph's SVG, which Graphviz wrote with its labels already escaped as
//! XML. The script reads everything from the markup (`data-` attributes),
//! so no input is ever written into script text.

use askama::Template;

use super::{Findings, Group, Page};
use crate::alert::Kind;

/// The style sheet, inline.
const STYLE: &str = include_str!("page.css");
/// Sorting the tables and filtering the findings, inline.
const SCRIPT: &str = include_str!("page.js");

#[derive(Template)]
#[template(path = "page.html")]
struct View<'a> {
    page: &'a Page,
    /// Every kind of finding with its count, for the filter.
    kinds: Vec<(Kind, u64)>,
    groups: Vec<Group<'a>>,
    note: Option<&'a str>,
    graph: Option<&'a str>,
    style: &'static str,
    script: &'static str,
}

/// The page as an HTML document.
pub fn render(page: &Page) -> String {
    let note = match &page.findings {
        Findings::NotAvailable(why) => Some(why.as_str()),
        Findings::Listed(_) => None,
    };
    let view = View {
        page,
        kinds: Kind::ALL.iter().map(|&k| (k, page.findings.count(k))).collect(),
        groups: page.findings.groups(),
        note,
        graph: page.graph.as_deref().and_then(inline_svg),
        style: STYLE,
        script: SCRIPT,
    };
    view.render().expect("rendering into a String cannot fail")
}

/// The `<svg>` element of a standalone SVG document: the XML declaration,
/// doctype and comments before it have no place inside HTML. `None` when
/// there is no `<svg>` element: the page then says the graph is not
/// available rather than insert something else.
pub fn inline_svg(svg: &str) -> Option<&str> {
    svg.find("<svg").map(|i| svg[i..].trim_end())
}
