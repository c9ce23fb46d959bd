//! Where alerts go: JSON lines (stdout or `--alerts-out FILE`) or readable
//! text, in colour on a terminal. The webhook is a separate, non-blocking
//! sink (see `webhook`).

use std::{
    fs::{File, OpenOptions, Permissions},
    io::{self, BufWriter, IsTerminal, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use anstyle::{AnsiColor, Style};

use crate::alert::{Alert, Kind};

/// The mode of an alerts file the monitor creates (`--alerts-out`): the
/// alerts name internal hosts, ports and zones. The owner writes; the
/// file's group may read, as log shippers usually do (logrotate's
/// customary `create 0640`); others get nothing.
pub const ALERTS_MODE: u32 = 0o640;

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
    ///
    /// A new file gets exactly [`ALERTS_MODE`], whatever the umask. An
    /// existing one keeps its mode: logrotate (`create MODE OWNER GROUP`) or
    /// the operator chose it.
    pub fn file(path: &Path, format: Format) -> io::Result<Sink> {
        let f = match OpenOptions::new().create_new(true).append(true).mode(ALERTS_MODE).open(path) {
            Ok(f) => {
                // open(2) applies the umask to the mode: set it exactly.
                f.set_permissions(Permissions::from_mode(ALERTS_MODE))?;
                f
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                OpenOptions::new().append(true).open(path)?
            }
            Err(e) => return Err(e),
        };
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
        Kind::Overflow => AnsiColor::Cyan,
    };
    Style::new().fg_color(Some(color.into())).bold()
}
