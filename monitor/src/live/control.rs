//! The local control socket of a running monitor: a client connects,
//! sends one request line and reads the answer until the monitor closes
//! the connection. `monitor report` sends `report json` or `report text`
//! (the coverage report), `monitor top` sends `state json` (the live state,
//! [`super::state::State`]); see [`Request`].
//!
//! The report names every rule, its traffic and the hosts' zones, so the
//! socket is the owner's only: `monitor report` runs as root (which passes
//! any file mode) or as the same user as `monitor run`, and no group is
//! meant to read it. The socket is therefore 0600 and a directory the
//! monitor creates for it 0700, whatever the process umask (see `serve`).

use std::{
    fs::{DirBuilder, Permissions},
    io,
    os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixSocket, UnixStream},
    sync::{mpsc, oneshot, watch},
};

use super::{
    coverage::Report,
    serve::{accept_loop, ConnLimits, Server},
    state::State,
};

/// Where `monitor run` listens, and where `monitor report` connects, unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/monitor/monitor.sock";

/// The mode of the socket: connecting needs write permission on it, so
/// this keeps everyone but the owner (and root) out, whatever the directory.
pub const SOCKET_MODE: u32 = 0o600;

/// The mode of each directory `serve` creates on the way to the socket.
pub const DIR_MODE: u32 = 0o700;

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("`{}` exists and is not a socket ({kind}): remove it or choose another --socket", path.display())]
    NotASocket { path: PathBuf, kind: &'static str },
    #[error("another monitor is listening on `{}`: stop it or choose another --socket", .0.display())]
    InUse(PathBuf),
    #[error("cannot create the directory `{}` for the control socket: {source}; create it or choose another --socket", path.display())]
    Dir { path: PathBuf, source: io::Error },
    #[error("cannot {what} `{}`: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: io::Error },
}

/// What a client may ask, one line each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `report json` (or `report`): the coverage report as one JSON object.
    ReportJson,
    /// `report text`: the coverage report as a table.
    ReportText,
    /// `state json`: the live state (status, coverage, findings, flows,
    /// groups) as one JSON object.
    StateJson,
}

/// A request line the monitor does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown request `{0}`: send `report json`, `report text` or `state json`")]
pub struct UnknownRequest(pub String);

impl Request {
    /// Every request, as sent.
    pub const ALL: [Request; 3] = [Request::ReportJson, Request::ReportText, Request::StateJson];

    /// The request a line (without its newline, spaces around ignored) asks for.
    pub fn parse(line: &str) -> Result<Request, UnknownRequest> {
        match line.trim() {
            "report json" | "report" => Ok(Request::ReportJson),
            "report text" => Ok(Request::ReportText),
            "state json" => Ok(Request::StateJson),
            other => Err(UnknownRequest(other.to_string())),
        }
    }

    /// The line a client sends, newline included.
    pub fn line(self) -> &'static str {
        match self {
            Request::ReportJson => "report json\n",
            Request::ReportText => "report text\n",
            Request::StateJson => "state json\n",
        }
    }
}

/// A request handed to the monitor's main loop (which owns the coverage and
/// the state), answered through its sender.
pub enum Query {
    Report(oneshot::Sender<Report>),
    State(oneshot::Sender<Box<State>>),
}

/// Binds the socket. The socket file is removed on drop of the guard.
///
/// - Missing directories on the way are created with mode [`DIR_MODE`]
///   (0700, set explicitly, not left to the umask). A directory that
///   already exists (systemd's `RuntimeDirectory=`, a Kubernetes
///   `emptyDir`, `/tmp`) is left as it is, neither loosened nor
///   tightened: it belongs to whoever made it, and the socket's own mode
///   keeps others out.
/// - Only a socket may be at `path` already (looked at without following a
///   symbolic link): a stale one, left by a monitor that was killed, is
///   replaced; one that a running monitor answers on is an error; anything
///   else (a file, a directory, a symbolic link) is an error and is left
///   untouched.
/// - The socket is bound, set to [`SOCKET_MODE`] and only then listened
///   on, so no client can connect while it still has the umask's mode.
///
/// At most [`ConnLimits::DEFAULT`] clients at once (64, each given 10 s to
/// send its request and to take the answer); see [`serve_with`]. The
/// caller runs the returned [`ControlServer`] (the agent, in its task set).
pub fn serve(path: &Path) -> Result<(mpsc::Receiver<Query>, SocketGuard, ControlServer), SocketError> {
    serve_with(path, ConnLimits::DEFAULT)
}

/// As [`serve`], with `limits`: past `max_connections` clients a new one
/// is closed as soon as it is accepted (counted in
/// `monitor_connections_refused_total{server="control"}`); a client gets
/// `request_timeout` to send its request, and as long again to read the
/// answer.
pub fn serve_with(
    path: &Path,
    limits: ConnLimits,
) -> Result<(mpsc::Receiver<Query>, SocketGuard, ControlServer), SocketError> {
    if let Some(dir) = path.parent() {
        create_private_dirs(dir)?;
    }
    clear_stale(path)?;
    let listener = bind_private(path)?;
    let guard = SocketGuard(path.to_path_buf());
    let (tx, rx) = mpsc::channel(16);
    Ok((rx, guard, ControlServer { listener, tx, limits }))
}

/// The bound control socket, to be served by [`ControlServer::run`].
pub struct ControlServer {
    listener: UnixListener,
    tx: mpsc::Sender<Query>,
    limits: ConnLimits,
}

impl ControlServer {
    /// Answers clients until `shutdown` turns true (or its sender is gone).
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let ControlServer { listener, tx, limits } = self;
        accept_loop(listener, Server::Control, limits, shutdown, move |stream, slot| {
            let tx = tx.clone();
            async move {
                let _slot = slot;
                if let Err(e) = answer(stream, tx, limits.request_timeout).await {
                    log::debug!("control socket client: {e}");
                }
            }
        })
        .await;
    }
}

/// Creates `dir` and its missing ancestors, each with exactly [`DIR_MODE`];
/// existing ones are not changed.
fn create_private_dirs(dir: &Path) -> Result<(), SocketError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .filter(|d| !d.as_os_str().is_empty())
        .take_while(|d| std::fs::symlink_metadata(d).is_err())
        .collect();
    let err = |path: &Path, source| SocketError::Dir { path: path.to_path_buf(), source };
    for d in missing.into_iter().rev() {
        match DirBuilder::new().mode(DIR_MODE).create(d) {
            // mkdir applies the umask to the mode: set it exactly.
            Ok(()) => std::fs::set_permissions(d, Permissions::from_mode(DIR_MODE)).map_err(|e| err(d, e))?,
            // Made by someone else meanwhile: theirs, left as it is.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(d, e)),
        }
    }
    Ok(())
}

/// Removes a stale socket at `path`; refuses anything else that is there.
fn clear_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(SocketError::Io { what: "look at", path: path.to_path_buf(), source }),
    };
    let t = meta.file_type();
    if !t.is_socket() {
        let kind = if t.is_file() {
            "a regular file"
        } else if t.is_dir() {
            "a directory"
        } else if t.is_symlink() {
            "a symbolic link"
        } else {
            "not a socket"
        };
        return Err(SocketError::NotASocket { path: path.to_path_buf(), kind });
    }
    // A socket left by a monitor that died: connecting fails, so it is stale.
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(SocketError::InUse(path.to_path_buf()));
    }
    std::fs::remove_file(path).map_err(|source| SocketError::Io {
        what: "remove the stale socket",
        path: path.to_path_buf(),
        source,
    })
}

/// Binds `path`, sets its mode to [`SOCKET_MODE`], then listens: until
/// `listen`, a connection is refused, so the mode `bind` gave it (0777
/// less the umask) is never usable.
fn bind_private(path: &Path) -> Result<UnixListener, SocketError> {
    let io = |what, source| SocketError::Io { what, path: path.to_path_buf(), source };
    let socket = UnixSocket::new_stream().map_err(|e| io("create a socket for", e))?;
    socket.bind(path).map_err(|e| io("bind", e))?;
    let listen = std::fs::set_permissions(path, Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| io("set the mode of", e))
        .and_then(|()| socket.listen(128).map_err(|e| io("listen on", e)));
    if listen.is_err() {
        let _ = std::fs::remove_file(path);
    }
    listen
}

async fn answer(stream: UnixStream, tx: mpsc::Sender<Query>, timeout: Duration) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    // One line at most (a client that sends no newline is cut at 4 KiB).
    let mut read = tokio::io::AsyncReadExt::take(BufReader::new(read), 4096);
    // An empty line (the client closed at once) is an unknown request.
    tokio::time::timeout(timeout, read.read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no request within {timeout:?}")))??;
    let request = match Request::parse(&line) {
        Ok(r) => r,
        Err(e) => {
            write.write_all(format!("error: {e}\n").as_bytes()).await?;
            return Ok(());
        }
    };
    const GONE: &[u8] = b"error: the monitor is shutting down\n";
    let body = match request {
        Request::ReportJson | Request::ReportText => {
            let (reply, report) = oneshot::channel();
            if tx.send(Query::Report(reply)).await.is_err() {
                return write.write_all(GONE).await;
            }
            let Ok(report) = report.await else { return Ok(()) };
            if request == Request::ReportText {
                report.to_text()
            } else {
                serde_json::to_string(&report).map_err(io::Error::other)? + "\n"
            }
        }
        Request::StateJson => {
            let (reply, state) = oneshot::channel();
            if tx.send(Query::State(reply)).await.is_err() {
                return write.write_all(GONE).await;
            }
            let Ok(state) = state.await else { return Ok(()) };
            serde_json::to_string(&state).map_err(io::Error::other)? + "\n"
        }
    };
    // A client that does not read its answer does not keep its slot.
    tokio::time::timeout(timeout, async {
        write.write_all(body.as_bytes()).await?;
        write.shutdown().await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("answer not taken within {timeout:?}")))?
}

/// Removes the socket file when the monitor exits.
pub struct SocketGuard(PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The client side, for `monitor report`.
pub async fn request(path: &Path, text: bool) -> io::Result<String> {
    let mut stream = UnixStream::connect(path).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot reach a running monitor at {}: {e}. Is `monitor run` running (with --socket {})?",
                path.display(),
                path.display()
            ),
        )
    })?;
    let asked = if text { Request::ReportText } else { Request::ReportJson };
    stream.write_all(asked.line().as_bytes()).await?;
    let mut out = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut out).await?;
    if let Some(err) = out.strip_prefix("error: ") {
        return Err(io::Error::other(err.trim().to_string()));
    }
    Ok(out)
}

/// Why [`state`] got no state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot reach a running monitor at {}: {source}. Is `monitor run` running (with --socket {})?", path.display(), path.display())]
    Connect { path: PathBuf, source: io::Error },
    #[error("the monitor at {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("the monitor at {} answered: {message}", path.display())]
    Refused { path: PathBuf, message: String },
    #[error("the monitor at {} sent a state that cannot be read ({source}); is it of another version?", path.display())]
    Parse { path: PathBuf, source: serde_json::Error },
}

/// How long [`state`] waits for the answer: the agent answers between two
/// inputs, in milliseconds.
pub const STATE_TIMEOUT: Duration = Duration::from_secs(5);

/// The client side of `state json`, for `monitor top` and tests. Blocking
/// (with [`STATE_TIMEOUT`] on the connection), unlike [`request`]: its
/// callers poll from a plain thread, not from an async runtime.
pub fn state(path: &Path) -> Result<State, StateError> {
    use std::io::{Read, Write};
    let io_err = |source| StateError::Io { path: path.to_path_buf(), source };
    let mut stream = std::os::unix::net::UnixStream::connect(path)
        .map_err(|source| StateError::Connect { path: path.to_path_buf(), source })?;
    stream.set_read_timeout(Some(STATE_TIMEOUT)).map_err(io_err)?;
    stream.set_write_timeout(Some(STATE_TIMEOUT)).map_err(io_err)?;
    stream.write_all(Request::StateJson.line().as_bytes()).map_err(io_err)?;
    let mut out = String::new();
    stream.read_to_string(&mut out).map_err(io_err)?;
    if let Some(err) = out.strip_prefix("error: ") {
        return Err(StateError::Refused { path: path.to_path_buf(), message: err.trim().to_string() });
    }
    serde_json::from_str(&out).map_err(|source| StateError::Parse { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_parses_from_the_line_it_is_sent_as_and_others_are_named_in_the_error() {
        for r in Request::ALL {
            assert_eq!(Request::parse(r.line()), Ok(r), "{r:?}");
        }
        assert_eq!(Request::parse("  report \n"), Ok(Request::ReportJson), "the old bare `report`");
        let e = Request::parse("state text").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown request `state text`: send `report json`, `report text` or `state json`"
        );
    }
}
