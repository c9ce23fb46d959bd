//! The local control socket of a running monitor: `monitor report` connects,
//! sends one request line (`report json` or `report text`) and reads the
//! answer until the monitor closes the connection.

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};

use super::coverage::Report;

/// Where `monitor run` listens, and where `monitor report` connects, unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/monitor/monitor.sock";

/// A request from a client, answered by the monitor's main loop (which owns
/// the coverage) through `reply`.
pub struct ReportRequest {
    pub reply: oneshot::Sender<Report>,
}

/// Binds the socket (replacing a stale one) and serves it until the
/// returned receiver is dropped. The socket file is removed on drop of the
/// guard.
pub fn serve(path: &Path) -> io::Result<(mpsc::Receiver<ReportRequest>, SocketGuard)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket left by a monitor that died: connecting fails, so it is stale.
    if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            if tx.is_closed() {
                break; // the monitor is gone
            }
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, tx).await {
                    log::debug!("control socket client: {e}");
                }
            });
        }
    });
    Ok((rx, SocketGuard(path.to_path_buf())))
}

async fn answer(stream: UnixStream, tx: mpsc::Sender<ReportRequest>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let n = tokio::time::timeout(Duration::from_secs(5), BufReader::new(read).read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request within 5 s"))??;
    let text = match line.trim() {
        "report json" | "report" if n > 0 => false,
        "report text" => true,
        other => {
            write
                .write_all(
                    format!("error: unknown request `{other}`: send `report json` or `report text`\n")
                        .as_bytes(),
                )
                .await?;
            return Ok(());
        }
    };
    let (reply, report) = oneshot::channel();
    if tx.send(ReportRequest { reply }).await.is_err() {
        write.write_all(b"error: the monitor is shutting down\n").await?;
        return Ok(());
    }
    let Ok(report) = report.await else { return Ok(()) };
    let body = if text {
        report.to_text()
    } else {
        serde_json::to_string(&report).map_err(io::Error::other)? + "\n"
    };
    write.write_all(body.as_bytes()).await?;
    write.shutdown().await
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
    stream.write_all(if text { b"report text\n" } else { b"report json\n" }).await?;
    let mut out = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut out).await?;
    if let Some(err) = out.strip_prefix("error: ") {
        return Err(io::Error::other(err.trim().to_string()));
    }
    Ok(out)
}
