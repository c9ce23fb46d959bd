//! Renders `monitor top` with ratatui, into any backend (a terminal, or
//! the TestBackend of the tests). Made to fit 80x24: one status line
//! (interfaces, uptime, flows, findings, the age of the newest packet, so
//! a quiet host is seen to be watched), the view tabs, the table, and a
//! line of keys (or the filter being typed, or what went wrong).

use ratatui::{
    layout::{Constraint, Layout},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Cell as TableCell, Paragraph, Row, Table},
    Frame,
};

use super::views::{Model, Tone, View};

/// Everything on the screen, decided by the app.
#[derive(Clone, Debug)]
pub struct Screen {
    pub status: String,
    /// The status is an error (the agent cannot be reached): in red.
    pub status_error: bool,
    pub view: View,
    pub sort: &'static str,
    pub paused: bool,
    pub model: Model,
    pub footer: Footer,
}

/// The last line.
#[derive(Clone, Debug)]
pub enum Footer {
    /// The keys, and the filter in force (empty: none).
    Keys { filter: String },
    /// The filter being typed.
    Editing(String),
    /// Why the filter typed was not applied.
    Error(String),
}

pub fn style(tone: Tone) -> Style {
    match tone {
        Tone::Plain => Style::default(),
        Tone::Dim => Style::default().add_modifier(Modifier::DIM),
        Tone::Conforming => Style::default().fg(Color::Green),
        Tone::Blocked => Style::default().fg(Color::Red),
        Tone::Unexpected => Style::default().fg(Color::Yellow),
        Tone::Exposed => Style::default().fg(Color::Magenta),
    }
}

fn footer(s: &Screen) -> Line<'static> {
    match &s.footer {
        Footer::Editing(typed) => Line::from(vec![
            Span::styled("filter: ", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(format!("{typed}_")),
            Span::styled("  Enter applies, Esc clears", Style::default().add_modifier(Modifier::DIM)),
        ]),
        Footer::Error(e) => Line::styled(format!("filter: {e}"), Style::default().fg(Color::Red)),
        Footer::Keys { filter } => {
            let mut spans =
                vec![Span::raw(format!("1-4 view  / filter  s sort ({})  p pause  q quit", s.sort))];
            if !filter.is_empty() {
                spans.push(Span::styled(format!("  [{filter}]"), Style::default().fg(Color::Cyan)));
            }
            Line::from(spans)
        }
    }
}

pub fn render(s: &Screen, frame: &mut Frame) {
    let [top, tabs, body, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let status = if s.status_error {
        Line::styled(s.status.clone(), Style::default().fg(Color::Red))
    } else {
        Line::raw(s.status.clone())
    };
    frame.render_widget(Paragraph::new(status), top);

    let m = &s.model;
    let mut spans = Vec::new();
    for (i, v) in View::ALL.iter().enumerate() {
        let label = format!("{} {}", i + 1, v.name());
        let style = if *v == s.view {
            Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::default()
        };
        spans.push(Span::styled(label, style));
        spans.push(Span::raw(" "));
    }
    if s.paused {
        spans.push(Span::styled("PAUSED ", Style::default().fg(Color::Black).bg(Color::Yellow)));
    }
    spans.push(Span::styled(m.note.clone(), Style::default().add_modifier(Modifier::DIM)));
    frame.render_widget(Paragraph::new(Line::from(spans)), tabs);

    let header = Row::new(m.header.iter().map(|h| {
        let style = if h.eq_ignore_ascii_case(s.sort) {
            Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::default().add_modifier(Modifier::BOLD)
        };
        TableCell::from(h.clone()).style(style)
    }));
    let rows = m
        .rows
        .iter()
        .map(|r| Row::new(r.iter().map(|c| TableCell::from(c.text.clone()).style(style(c.tone)))));
    frame.render_widget(Table::new(rows, m.widths.clone()).header(header).column_spacing(1), body);
    frame.render_widget(Paragraph::new(footer(s)), bottom);
}
