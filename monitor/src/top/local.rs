//! `monitor top --matrix ...`: the view with an agent of its own, for a
//! host where no agent runs yet (a dev VM, a first look at a node).
//!
//! The agent is `live::run_to_end`, as `monitor run` runs it, with its
//! control socket in a private directory; the view attaches to that
//! socket as it would to any agent. Two things cannot share the terminal
//! with the view, so they go to files in the same directory, named when
//! the view ends: the alerts (unless `--alerts-out` says where), and the
//! agent's log, which is written to standard error (the descriptor is
//! pointed at the log while the view runs, and back after).
//!
//! The view and the agent end together: `q` (or Ctrl-C, a key in raw
//! mode) stops the agent, and an agent that stops (a signal, a failure)
//! ends the view. Both are joined before [`run`] returns the agent's last
//! coverage report.

use std::{
    fs::File,
    future::Future,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};

use super::term::{self, TopError, TopOptions};
use crate::live::{self, Finished, RunOptions};

/// What `monitor top` runs with an agent of its own.
pub struct LocalOptions {
    /// The agent's options; its `socket` is the one the view attaches to.
    pub agent: RunOptions,
    /// How often the view asks for the state.
    pub interval: Duration,
    /// Where standard error goes while the view runs.
    pub log: PathBuf,
}

/// Why the view and its agent did not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot write the agent's log to {path}: {source}")]
    Log { path: PathBuf, source: io::Error },
    #[error(transparent)]
    View(#[from] TopError),
    #[error("the agent: {0:#}")]
    Agent(anyhow::Error),
    #[error("the {0} task panicked or was cancelled: {1}")]
    Task(&'static str, tokio::task::JoinError),
}

/// Runs the agent and the view until `q`, `shutdown` or the agent's end,
/// and returns how the agent ended. Called on the agent's runtime.
pub async fn run(
    opts: LocalOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reload: mpsc::Receiver<()>,
) -> Result<Finished, LocalError> {
    let socket = opts.agent.socket.clone().expect("the view attaches to the agent's control socket");
    let stderr = StderrTo::file(&opts.log)?;
    let ended = Arc::new(AtomicBool::new(false));
    let (quit_tx, quit_rx) = oneshot::channel::<()>();
    let stopped = {
        let ended = ended.clone();
        async move {
            tokio::select! {
                _ = quit_rx => {}
                () = shutdown => {}
            }
            // The view may still be drawing: it ends at its next poll.
            ended.store(true, Ordering::Release);
        }
    };
    let agent = {
        let ended = ended.clone();
        tokio::spawn(async move {
            let finished = live::run_to_end(opts.agent, stopped, reload).await;
            ended.store(true, Ordering::Release);
            finished
        })
    };
    let view = tokio::task::spawn_blocking(move || {
        term::run(TopOptions { socket, interval: opts.interval, ended: Some(ended) })
    });
    let viewed = view.await;
    let _ = quit_tx.send(());
    let finished = agent.await;
    drop(stderr);
    viewed.map_err(|e| LocalError::Task("view", e))??;
    finished.map_err(|e| LocalError::Task("agent", e))?.map_err(LocalError::Agent)
}

/// Standard error pointed at a file until dropped, then back where it was
/// (also before a panic's message is printed, so that it reaches the
/// terminal and not the log).
struct StderrTo {
    saved: Arc<OwnedFd>,
}

impl StderrTo {
    fn file(path: &Path) -> Result<StderrTo, LocalError> {
        let err = |source| LocalError::Log { path: path.to_path_buf(), source };
        let log = File::options().create(true).append(true).open(path).map_err(err)?;
        // SAFETY: dup returns a new descriptor (or -1) and touches nothing else.
        let saved = unsafe { libc::dup(libc::STDERR_FILENO) };
        if saved < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        // SAFETY: `saved` was just returned by dup and is owned by nothing else.
        let saved = Arc::new(unsafe { OwnedFd::from_raw_fd(saved) });
        point_stderr_at(log.as_raw_fd()).map_err(err)?;
        let restore = saved.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = point_stderr_at(restore.as_raw_fd());
            previous(info);
        }));
        Ok(StderrTo { saved })
    }
}

impl Drop for StderrTo {
    fn drop(&mut self) {
        let _ = point_stderr_at(self.saved.as_raw_fd());
    }
}

fn point_stderr_at(fd: i32) -> io::Result<()> {
    // SAFETY: dup2 only replaces descriptor 2 with a copy of `fd`, which is open.
    if unsafe { libc::dup2(fd, libc::STDERR_FILENO) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
