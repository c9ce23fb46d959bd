//! The terminal side of `monitor top`: raw mode and the alternate screen
//! (given back on exit and on a panic, through ratatui's hook), a thread
//! that polls the agent, and the loop that hands keys and states to the
//! [`App`] and draws it.

use std::{
    io,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use ratatui::crossterm::event::{self, Event, KeyEventKind};

use super::App;
use crate::live::{control, state::State};

/// What `monitor top` is told.
#[derive(Clone, Debug)]
pub struct TopOptions {
    /// The agent's control socket.
    pub socket: PathBuf,
    /// How often to ask for the state.
    pub interval: Duration,
    /// Set when the agent the view runs with has stopped (`monitor top
    /// --matrix`): the view ends too, as after `q`.
    pub ended: Option<Arc<AtomicBool>>,
}

/// Why the view could not run.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error("monitor top needs a terminal: {0}")]
    Terminal(io::Error),
}

/// Runs the view until `q`, then gives the terminal back as it was.
pub fn run(opts: TopOptions) -> Result<(), TopError> {
    // Sets raw mode and the alternate screen, and a panic hook that
    // restores the terminal before the panic message is printed.
    let mut terminal = ratatui::try_init().map_err(TopError::Terminal)?;
    let result = event_loop(&mut terminal, &opts);
    ratatui::restore();
    result.map_err(TopError::Terminal)
}

fn event_loop(terminal: &mut ratatui::DefaultTerminal, opts: &TopOptions) -> io::Result<()> {
    let (tx, rx) = mpsc::channel::<Result<State, String>>();
    let (socket, interval) = (opts.socket.clone(), opts.interval);
    // Ends at the first send after the loop has gone (or with the process).
    std::thread::spawn(move || loop {
        let started = Instant::now();
        if tx.send(control::state(&socket).map_err(|e| e.to_string())).is_err() {
            return;
        }
        std::thread::sleep(interval.saturating_sub(started.elapsed()));
    });
    let mut app = App::new(opts.socket.display().to_string());
    let ended = || opts.ended.as_ref().is_some_and(|e| e.load(Ordering::Acquire));
    while !app.should_quit() && !ended() {
        while let Ok(polled) = rx.try_recv() {
            app.update(polled, SystemTime::now());
        }
        terminal.draw(|frame| app.draw(frame))?;
        if event::poll(Duration::from_millis(100))? {
            if let Event::Key(key) = event::read()? {
                if key.kind == KeyEventKind::Press {
                    app.handle_key(key);
                }
            }
        }
    }
    Ok(())
}
