//! A closed standard output is not an error: `monitor matrix show M | head`
//! ends quietly, with status 0.
//!
//! Why status 0 and not death by SIGPIPE (the C convention, status 141 in a
//! shell): Rust ignores SIGPIPE, so a write to a pipe nobody reads fails with
//! EPIPE and the error travels up to `main` like any other. Restoring the
//! default disposition instead would be wrong for `monitor run`, a
//! long-running agent that also writes to sockets (webhook, metrics scrapes,
//! `monitor report` clients) and files: a peer hanging up on any of them
//! would kill it without a word, the kernel programs still attached. So every
//! command keeps SIGPIPE ignored and `main` asks [`is_closed_stdout`]: a
//! reader that stopped reading (`head`, `grep -q`, a pager quit early) got
//! what it wanted, which is success for the writer too; one policy for every
//! command. A broken pipe anywhere else while stdout is still read (the
//! monitor behind `monitor report` went away mid-request) stays an error.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
};

/// Whether `e` is a write to standard output that failed because nobody reads
/// it any more: it carries a broken pipe, and stdout is the pipe that broke.
pub fn is_closed_stdout(e: &anyhow::Error) -> bool {
    is_broken_pipe(e) && has_no_reader(io::stdout().as_fd())
}

/// Whether the error chain holds a broken pipe: an `io::Error`, or a
/// `serde_json::Error` from writing (which hides its `io::Error` from the
/// chain: its `source` is the io error's own source).
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let kind = match (cause.downcast_ref::<io::Error>(), cause.downcast_ref::<serde_json::Error>()) {
            (Some(io), _) => Some(io.kind()),
            (None, Some(json)) => json.io_error_kind(),
            (None, None) => None,
        };
        kind == Some(io::ErrorKind::BrokenPipe)
    })
}

/// Whether `fd` is a pipe or socket whose other end is gone: Linux reports
/// POLLERR on the write end of a pipe without readers, POLLHUP on a socket
/// shut down by its peer. A terminal, a file or a pipe still read is neither.
fn has_no_reader(fd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: 0, revents: 0 };
    // SAFETY: one valid pollfd for a descriptor borrowed for the call; a zero
    // timeout never blocks.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_pipe_without_reader_has_no_reader() {
        let (reader, writer) = io::pipe().unwrap();
        assert!(!has_no_reader(writer.as_fd()), "the reader is still open");
        drop(reader);
        assert!(has_no_reader(writer.as_fd()), "the reader is closed");
    }

    #[test]
    fn a_file_always_has_a_reader() {
        let file = tempfile::tempfile().unwrap();
        assert!(!has_no_reader(file.as_fd()));
    }

    #[test]
    fn a_write_to_a_closed_pipe_is_a_broken_pipe_through_context() {
        let (reader, mut writer) = io::pipe().unwrap();
        drop(reader);
        let err = writeln!(writer, "hello").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        let e = anyhow::Error::new(err).context("print the table");
        assert!(is_broken_pipe(&e), "{e:#}");
    }

    #[test]
    fn a_json_write_to_a_closed_pipe_is_a_broken_pipe() {
        // What `monitor flows --format json` meets: serde_json wraps the io error.
        let (reader, mut writer) = io::pipe().unwrap();
        drop(reader);
        let err = serde_json::to_writer(&mut writer, &serde_json::json!({"a": 1})).unwrap_err();
        let e = anyhow::Error::new(err);
        assert!(is_broken_pipe(&e), "{e:#}");
    }

    #[test]
    fn other_errors_are_not_broken_pipes() {
        let e = anyhow::Error::new(io::Error::from(io::ErrorKind::ConnectionReset)).context("report");
        assert!(!is_broken_pipe(&e));
        assert!(!is_broken_pipe(&anyhow::anyhow!("Broken pipe (os error 32)")));
        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        assert!(!is_broken_pipe(&anyhow::Error::new(json)));
    }
}
