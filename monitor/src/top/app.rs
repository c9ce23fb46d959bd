//! The state of the `monitor top` view and what each key does to it. Pure:
//! the agent's state comes in through [`App::update`], keys through
//! [`App::handle_key`], and [`App::draw`] renders it (the views' models
//! from `super::views`, drawn by `super::draw`), so every view and key is
//! tested without a terminal.

use std::time::{Duration, SystemTime};

use ratatui::{
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    Frame,
};

use super::{
    draw::{self, Footer, Screen},
    filter::{Filter, FilterError},
    views::{self, span, Ask, Model, View},
};
use crate::live::state::State;

/// The view's state.
#[derive(Debug)]
pub struct App {
    /// Where the state comes from (the socket), for the header.
    pub source: String,
    state: Option<State>,
    /// When the state shown was taken: ages ("last use 3s ago") count from it.
    taken: SystemTime,
    /// The last poll's error, if it failed.
    error: Option<String>,
    view: View,
    /// The sort column of each view, an index into [`View::sorts`].
    sort: [usize; 4],
    paused: bool,
    filter: Filter,
    /// The filter being typed after `/`.
    editing: Option<String>,
    filter_error: Option<FilterError>,
    quit: bool,
}

impl App {
    pub fn new(source: impl Into<String>) -> App {
        App {
            source: source.into(),
            state: None,
            taken: SystemTime::UNIX_EPOCH,
            error: None,
            view: View::Rules,
            sort: [0; 4],
            paused: false,
            filter: Filter::default(),
            editing: None,
            filter_error: None,
            quit: false,
        }
    }

    /// A poll's result, taken at `now`. While paused, new states are not
    /// shown (errors still are).
    pub fn update(&mut self, polled: Result<State, String>, now: SystemTime) {
        match polled {
            Ok(state) => {
                self.error = None;
                if !self.paused {
                    self.state = Some(state);
                    self.taken = now;
                }
            }
            Err(e) => self.error = Some(e),
        }
    }

    pub fn handle_key(&mut self, key: KeyEvent) {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        if let Some(typed) = &mut self.editing {
            match key.code {
                KeyCode::Enter => {
                    let typed = std::mem::take(typed);
                    self.editing = None;
                    match Filter::parse(&typed) {
                        Ok(f) => {
                            self.filter = f;
                            self.filter_error = None;
                        }
                        Err(e) => self.filter_error = Some(e),
                    }
                }
                KeyCode::Esc => self.clear_filter(),
                KeyCode::Backspace => {
                    typed.pop();
                }
                KeyCode::Char(c) => typed.push(c),
                _ => {}
            }
            return;
        }
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char(c @ '1'..='4') => self.view = View::ALL[c as usize - '1' as usize],
            KeyCode::Char('/') => self.editing = Some(self.filter.text().to_string()),
            KeyCode::Char('s') => {
                let i = self.view.index();
                self.sort[i] = (self.sort[i] + 1) % self.view.sorts().len();
            }
            KeyCode::Char('p') => self.paused = !self.paused,
            KeyCode::Esc => self.clear_filter(),
            _ => {}
        }
    }

    fn clear_filter(&mut self) {
        self.editing = None;
        self.filter = Filter::default();
        self.filter_error = None;
    }

    /// Renders the current view into the frame.
    pub fn draw(&self, frame: &mut Frame) {
        draw::render(&self.screen(), frame);
    }

    /// The current view as a table model, filtered and sorted.
    pub fn model(&self) -> Model {
        let ask = Ask { filter: &self.filter, sort: self.sort(), taken: self.taken };
        views::model(self.view, self.state.as_ref(), &ask)
    }

    /// Everything on the screen.
    pub fn screen(&self) -> Screen {
        let (status, status_error) = match &self.error {
            Some(e) => (format!("{e} (retrying)"), true),
            None => (self.status_line(), false),
        };
        let footer = match (&self.editing, &self.filter_error) {
            (Some(typed), _) => Footer::Editing(typed.clone()),
            (None, Some(e)) => Footer::Error(e.to_string()),
            (None, None) => Footer::Keys { filter: self.filter.text().to_string() },
        };
        Screen {
            status,
            status_error,
            view: self.view,
            sort: self.sort(),
            paused: self.paused,
            model: self.model(),
            footer,
        }
    }

    /// The first line: is the agent watching, and what has it seen.
    pub fn status_line(&self) -> String {
        let Some(state) = &self.state else {
            return format!("monitor top | {} | no state yet", self.source);
        };
        let s = &state.status;
        let ifaces =
            if s.interfaces.is_empty() { "no interface".to_string() } else { s.interfaces.join(",") };
        let last = s.secs_since_packet.map_or("no packet yet".to_string(), |t| {
            format!("last packet {} ago", span(Duration::from_secs_f64(t)))
        });
        format!(
            "{ifaces} | up {} | {} flows, {} conforming, {} findings | {last}",
            span(Duration::from_secs_f64(s.uptime_secs)),
            s.flows_seen,
            s.conforming,
            s.findings,
        )
    }

    pub fn view(&self) -> View {
        self.view
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn should_quit(&self) -> bool {
        self.quit
    }

    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    pub fn filter_error(&self) -> Option<&FilterError> {
        self.filter_error.as_ref()
    }

    /// The filter being typed, if `/` was pressed.
    pub fn editing(&self) -> Option<&str> {
        self.editing.as_deref()
    }

    /// The current view's sort column.
    pub fn sort(&self) -> &'static str {
        self.view.sorts()[self.sort[self.view.index()]]
    }

    pub fn state(&self) -> Option<&State> {
        self.state.as_ref()
    }

    pub fn taken(&self) -> SystemTime {
        self.taken
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}
