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
    coverage::Report as CoverageReport,
    metrics::{alert_write_failed, SinkKind},
    throttle::Throttle,
};
use crate::{
    alert::{Alert, Kind},
    falco, ocsf,
    siem::Reporter,
};

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
    /// One OCSF 1.4 Network Activity event per line, for SIEMs (docs/alerts.md, "OCSF").
    Ocsf,
    /// One event per line in Falco's output shape, for falcosidekick (docs/alerts.md, "Falco").
    Falco,
}

impl Format {
    /// Whether the stream holds alert events only, for an engine that reads
    /// one shape: the coverage report at exit then goes to stderr instead.
    pub fn events_only(self) -> bool {
        matches!(self, Format::Ocsf | Format::Falco)
    }

    /// One alert as a line of this format (text without colour).
    pub fn encode(self, alert: &Alert, reporter: &Reporter) -> String {
        match self {
            Format::Json => alert.to_json(),
            Format::Text => alert.to_string(),
            Format::Ocsf => ocsf::to_json(alert, reporter),
            Format::Falco => falco::to_json(alert, reporter),
        }
    }
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
    reporter: Reporter,
    color: bool,
    failures: Throttle,
    /// The status line shown under the alerts, when text goes to a
    /// terminal: redrawn in place every tick, cleared before each line.
    status: Option<String>,
}

impl Sink {
    pub fn stdout(format: Format) -> Sink {
        let out = io::stdout();
        let terminal = format == Format::Text && out.is_terminal();
        let color = terminal && std::env::var_os("NO_COLOR").is_none();
        Sink {
            target: Target::Stdout(out),
            format,
            reporter: Reporter::local(),
            color,
            failures: Throttle::new(FAILURE_REPORT_EVERY),
            status: terminal.then(String::new),
        }
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
            reporter: Reporter::local(),
            color: false,
            failures: Throttle::new(FAILURE_REPORT_EVERY),
            status: None,
        })
    }

    /// Writes one alert. A failure (a full disk, a closed pipe) is counted
    /// in `monitor_alert_write_failures_total{sink}`, and returned only when
    /// it is due to be logged: the first, then at most one a minute
    /// ([`FAILURE_REPORT_EVERY`]), saying how many failed since. The others
    /// return `Ok`, so that a caller logging every error logs no flood.
    pub fn write(&mut self, alert: &Alert) -> io::Result<()> {
        let line = if self.color {
            let style = style(alert.kind);
            format!("{}{}{}", style.render(), alert, style.render_reset())
        } else {
            self.format.encode(alert, &self.reporter)
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

    /// Writes the coverage report at exit: a JSON line, or text, in the
    /// stream; on stderr when the stream holds events only (OCSF, Falco).
    pub fn write_report(&mut self, report: &CoverageReport) -> io::Result<()> {
        // The last line: the status line goes for good.
        if let (Some(_), Target::Stdout(s)) = (self.status.take(), &self.target) {
            let _ = write!(s.lock(), "{CLEAR_LINE}");
        }
        match self.format {
            Format::Json => self.write_line(&serde_json::to_string(report).map_err(io::Error::other)?),
            Format::Text => self.write_line(&report.to_text()),
            Format::Ocsf | Format::Falco => {
                let mut err = io::stderr().lock();
                writeln!(err, "{}", report.to_text())?;
                err.flush()
            }
        }
    }

    /// Whether this sink keeps a status line (text on a terminal).
    pub fn has_status_line(&self) -> bool {
        self.status.is_some()
    }

    /// Shows `line` as the status line, in place of the last one; nothing
    /// when this sink keeps none. A failed write is left for the next tick.
    pub fn status(&mut self, line: &str) {
        let Some(status) = &mut self.status else { return };
        status.clear();
        status.push_str(line);
        if let Target::Stdout(s) = &self.target {
            let mut s = s.lock();
            let _ = write!(s, "{CLEAR_LINE}{line}");
            let _ = s.flush();
        }
    }

    /// Writes a line that is not an alert; errors are returned as they are.
    /// The status line, if any, is cleared first and drawn again after it.
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        let buf = framed(line, self.status.as_deref());
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

/// `line` and its newline as written: with a status line, erased first
/// and drawn again under it.
fn framed(line: &str, status: Option<&str>) -> String {
    let mut buf = String::with_capacity(line.len() + 1 + status.map_or(0, |s| s.len() + CLEAR_LINE.len()));
    if status.is_some() {
        buf.push_str(CLEAR_LINE);
    }
    buf.push_str(line);
    buf.push('\n');
    if let Some(status) = status {
        buf.push_str(status);
    }
    buf
}

/// Back to the start of the line, and the line erased (ANSI: CR, EL 2).
const CLEAR_LINE: &str = "\r\x1b[2K";

fn style(kind: Kind) -> Style {
    let color = match kind {
        Kind::Unexpected => AnsiColor::Yellow,
        Kind::Blocked => AnsiColor::Red,
        Kind::Exposed => AnsiColor::Magenta,
        Kind::Overflow => AnsiColor::Cyan,
    };
    Style::new().fg_color(Some(color.into())).bold()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_under_a_status_line_erases_it_and_draws_it_again_below() {
        assert_eq!(framed("BLOCKED tcp ...", None), "BLOCKED tcp ...\n");
        assert_eq!(
            framed("BLOCKED tcp ...", Some("watching eth0 · 3 flows")),
            "\r\x1b[2KBLOCKED tcp ...\nwatching eth0 · 3 flows"
        );
        // Before the first tick the status line is empty: erased, nothing drawn.
        assert_eq!(framed("x", Some("")), "\r\x1b[2Kx\n");
    }
}
