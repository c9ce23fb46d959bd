//! Where alerts go: JSON lines (stdout or `--alerts-out FILE`) or readable
//! text, in colour on a terminal. The webhook is a separate, non-blocking
//! sink (see `webhook`).

use std::{
    fs::{File, OpenOptions, Permissions},
    io::{self, IsTerminal, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
    time::Duration,
};

use anstyle::{AnsiColor, Style};

use super::{
    metrics::{alert_write_failed, SinkKind},
    throttle::Throttle,
};
use crate::alert::{Alert, Kind};

/// At most one report of failed alert writes per this interval.
pub const FAILURE_REPORT_EVERY: Duration = Duration::from_secs(60);

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
    /// Unbuffered: each line is one write(2), so a failed alert leaves no
    /// bytes behind to be written with a later one.
    File(File),
}

pub struct Sink {
    target: Target,
    format: Format,
    color: bool,
    failures: Throttle,
}

impl Sink {
    pub fn stdout(format: Format) -> Sink {
        let out = io::stdout();
        let color = format == Format::Text && out.is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Sink { target: Target::Stdout(out), format, color, failures: Throttle::new(FAILURE_REPORT_EVERY) }
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
        Ok(Sink {
            target: Target::File(f),
            format,
            color: false,
            failures: Throttle::new(FAILURE_REPORT_EVERY),
        })
    }

    /// Writes one alert. A failure (a full disk, a closed pipe) is counted
    /// in `monitor_alert_write_failures_total{sink}`, and returned only when
    /// it is due to be logged: the first, then at most one a minute
    /// ([`FAILURE_REPORT_EVERY`]), saying how many failed since. The others
    /// return `Ok`, so that a caller logging every error logs no flood.
    pub fn write(&mut self, alert: &Alert) -> io::Result<()> {
        let line = match self.format {
            Format::Json => alert.to_json(),
            Format::Text if self.color => {
                let style = style(alert.kind);
                format!("{}{}{}", style.render(), alert, style.render_reset())
            }
            Format::Text => alert.to_string(),
        };
        let Err(e) = self.write_line(&line) else { return Ok(()) };
        alert_write_failed(match self.target {
            Target::Stdout(_) => SinkKind::Stdout,
            Target::File(_) => SinkKind::File,
        });
        match self.failures.hit() {
            None => Ok(()),
            Some(1) => Err(io::Error::new(
                e.kind(),
                format!(
                    "{e} (further failures are logged at most once a minute; \
                     monitor_alert_write_failures_total counts them)"
                ),
            )),
            Some(n) => {
                Err(io::Error::new(e.kind(), format!("{e} ({n} alerts not written since the last report)")))
            }
        }
    }

    /// Writes a line that is not an alert (the coverage report at exit);
    /// errors are returned as they are.
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        let mut buf = String::with_capacity(line.len() + 1);
        buf.push_str(line);
        buf.push('\n');
        // Alerts are consumed live: never sit in a buffer.
        match &mut self.target {
            Target::Stdout(s) => {
                let mut s = s.lock();
                s.write_all(buf.as_bytes())?;
                s.flush()
            }
            Target::File(f) => f.write_all(buf.as_bytes()),
        }
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
