//! Where alerts go: JSON lines (stdout or `--alerts-out FILE`) or readable
//! text, in colour on a terminal. The webhook is a separate, non-blocking
//! sink (see `webhook`).

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, IsTerminal, Write},
    path::Path,
};

use anstyle::{AnsiColor, Style};

use crate::alert::{Alert, Kind};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line (docs/alerts.md).
    Json,
    /// One readable line per alert; coloured on a terminal.
    Text,
}

enum Target {
    Stdout(io::Stdout),
    File(BufWriter<File>),
}

pub struct Sink {
    target: Target,
    format: Format,
    color: bool,
}

impl Sink {
    pub fn stdout(format: Format) -> Sink {
        let out = io::stdout();
        let color = format == Format::Text && out.is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Sink { target: Target::Stdout(out), format, color }
    }

    /// Appends to `path` (created if missing), so a restart keeps history.
    pub fn file(path: &Path, format: Format) -> io::Result<Sink> {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Sink { target: Target::File(BufWriter::new(f)), format, color: false })
    }

    pub fn write(&mut self, alert: &Alert) -> io::Result<()> {
        let line = match self.format {
            Format::Json => alert.to_json(),
            Format::Text if self.color => {
                let style = style(alert.kind);
                format!("{}{}{}", style.render(), alert, style.render_reset())
            }
            Format::Text => alert.to_string(),
        };
        self.write_line(&line)
    }

    /// Writes a line that is not an alert (the coverage report at exit).
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        let w: &mut dyn Write = match &mut self.target {
            Target::Stdout(s) => s,
            Target::File(f) => f,
        };
        writeln!(w, "{line}")?;
        // Alerts are consumed live: never sit in a buffer.
        w.flush()
    }
}

fn style(kind: Kind) -> Style {
    let color = match kind {
        Kind::Unexpected => AnsiColor::Yellow,
        Kind::Blocked => AnsiColor::Red,
        Kind::Exposed => AnsiColor::Magenta,
    };
    Style::new().fg_color(Some(color.into())).bold()
}
