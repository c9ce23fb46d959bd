//! The files `monitor run` creates or replaces: the control socket, its
//! directory and the alerts file (`--alerts-out`). A mistake in `--socket`
//! must not delete anyone's file, and the modes must not follow the umask.
//! Tested through the library functions `monitor run` calls, without root,
//! and once through the binary.

use std::{
    fs::Permissions,
    io::Write,
    os::unix::{
        fs::{FileTypeExt, MetadataExt, PermissionsExt},
        net::{UnixListener, UnixStream},
        process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use monitor::live::{
    control::{self, SocketError},
    sink::{Format, Sink},
};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam").join(name)
}

/// The permission bits of `path` (not following a symlink), in octal, for readable failures.
fn mode(path: &Path) -> String {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).mode();
    octal(m & 0o7777)
}

fn octal(mode: u32) -> String {
    format!("{mode:04o}")
}

const CONTENT: &str = "someone's notes\nthat --socket must not delete\n";

#[tokio::test]
async fn socket_at_a_regular_file_is_refused_and_the_file_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, CONTENT).unwrap();
    let err = control::serve(&path).map(|_| ()).expect_err("a regular file is not a socket to replace");
    assert!(matches!(err, SocketError::NotASocket { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("`{}` exists and is not a socket", path.display())), "{msg}");
    assert!(msg.contains("remove it or choose another --socket"), "{msg}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), CONTENT, "the file is left untouched");
}

#[tokio::test]
async fn symlink_and_directory_at_the_socket_path_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A symbolic link, even to a stale socket, is not followed nor removed.
    let target = dir.path().join("stale.sock");
    drop(UnixListener::bind(&target).unwrap());
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = control::serve(&link).map(|_| ()).expect_err("a symlink is refused");
    assert!(err.to_string().contains("a symbolic link"), "{err}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is kept");
    assert!(std::fs::symlink_metadata(&target).unwrap().file_type().is_socket(), "its target is kept");

    let sub = dir.path().join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("inside"), CONTENT).unwrap();
    let err = control::serve(&sub).map(|_| ()).expect_err("a directory is refused");
    assert!(err.to_string().contains("a directory"), "{err}");
    assert_eq!(std::fs::read_to_string(sub.join("inside")).unwrap(), CONTENT);
}

#[tokio::test]
async fn a_stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitor.sock");
    // What a killed monitor leaves: the socket file, with nobody listening.
    drop(UnixListener::bind(&path).unwrap());
    assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_socket());
    assert!(UnixStream::connect(&path).is_err(), "the socket is stale");

    let (_rx, guard, _server) = control::serve(&path).expect("a stale socket is replaced");
    UnixStream::connect(&path).expect("the new socket answers");
    assert_eq!(mode(&path), octal(control::SOCKET_MODE));
    drop(guard);
    assert!(!path.exists(), "the socket is removed when the monitor stops");
}

#[tokio::test]
async fn a_live_socket_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitor.sock");
    let (_rx, _guard, _server) = control::serve(&path).expect("first monitor");
    let err = control::serve(&path).map(|_| ()).expect_err("a second monitor on the same socket");
    assert!(matches!(err, SocketError::InUse(_)), "{err:?}");
    assert!(err.to_string().contains("choose another --socket"), "{err}");
    UnixStream::connect(&path).expect("the first monitor still answers");
}

/// `monitor run --socket FILE` stops before it loads anything into the kernel.
#[test]
fn monitor_run_refuses_a_socket_at_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, CONTENT).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .arg("run")
        .arg("--matrix")
        .arg(example("matrix.yaml"))
        .arg("--inventory")
        .arg(example("inventory.ini"))
        .args(["--profile", "ha"])
        // Should the socket be accepted by mistake, attaching fails here at once.
        .args(["--iface", "no-such-if0"])
        .arg("--socket")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start monitor run");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("monitor run did not stop within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status {:?}; stderr: {stderr}", out.status);
    assert!(
        stderr.contains(&format!("`{}` exists and is not a socket", path.display()))
            && stderr.contains("remove it or choose another --socket"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), CONTENT, "the file is left untouched");
}

/// The umask is the process's: each case runs `modes_in_child` in a child of
/// this test binary with the umask set between fork and exec.
fn run_modes_child(umask: libc::mode_t) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["modes_in_child", "--exact", "--include-ignored", "--test-threads=1", "--nocapture"])
        .env("MONITOR_FILES_DIR", dir.path())
        .env("MONITOR_FILES_UMASK", umask.to_string());
    // SAFETY: umask(2) is async-signal-safe and touches nothing but the child.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(umask);
            Ok(())
        });
    }
    let out = cmd.output().expect("run the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "umask {umask:03o}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn created_files_have_their_modes_under_umask_000() {
    run_modes_child(0o000);
}

#[test]
fn created_files_have_their_modes_under_umask_077() {
    run_modes_child(0o077);
}

#[tokio::test]
#[ignore = "run by created_files_have_their_modes_under_umask_*, in a child with that umask"]
async fn modes_in_child() {
    let dir = PathBuf::from(std::env::var_os("MONITOR_FILES_DIR").expect("MONITOR_FILES_DIR"));
    let umask: libc::mode_t = std::env::var("MONITOR_FILES_UMASK").unwrap().parse().unwrap();
    // SAFETY: umask(2) cannot fail; it returns the mask and sets the same one again.
    let current = unsafe { libc::umask(umask) };
    assert_eq!(current, umask, "the parent set the umask");

    // Directories the monitor creates: exactly 0700, each of them.
    let sock = dir.join("run/monitor/monitor.sock");
    let (_rx, guard, _server) = control::serve(&sock).expect("serve");
    assert_eq!(mode(&dir.join("run")), octal(control::DIR_MODE), "umask {umask:03o}");
    assert_eq!(mode(&dir.join("run/monitor")), octal(control::DIR_MODE), "umask {umask:03o}");
    assert_eq!(mode(&sock), octal(control::SOCKET_MODE), "umask {umask:03o}");
    assert_eq!(control::DIR_MODE & 0o077, 0, "no group or other access to the socket's directory");
    assert_eq!(control::SOCKET_MODE & 0o077, 0, "no group or other access to the socket");
    drop(guard);

    // An existing directory is someone else's: neither loosened nor tightened.
    let shared = dir.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, Permissions::from_mode(0o1777)).unwrap();
    let (_rx, guard, _server) =
        control::serve(&shared.join("monitor.sock")).expect("serve in an existing directory");
    assert_eq!(mode(&shared), octal(0o1777), "an existing directory keeps its mode");
    assert_eq!(mode(&shared.join("monitor.sock")), octal(control::SOCKET_MODE), "umask {umask:03o}");
    drop(guard);

    // A new alerts file: exactly 0640; no write but the owner's, no other read.
    let alerts = dir.join("alerts.jsonl");
    let mut sink = Sink::file(&alerts, Format::Json).expect("alerts file");
    sink.write_line("{}").unwrap();
    assert_eq!(mode(&alerts), octal(monitor::live::sink::ALERTS_MODE), "umask {umask:03o}");
    assert_eq!(monitor::live::sink::ALERTS_MODE & 0o027, 0, "no group write, no other access");
    drop(sink);

    // An existing one keeps its mode (logrotate's or the operator's) and its lines.
    let kept = dir.join("kept.jsonl");
    std::fs::File::create(&kept).unwrap().write_all(b"old\n").unwrap();
    std::fs::set_permissions(&kept, Permissions::from_mode(0o600)).unwrap();
    let mut sink = Sink::file(&kept, Format::Json).expect("existing alerts file");
    sink.write_line("new").unwrap();
    assert_eq!(mode(&kept), octal(0o600));
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "old\nnew\n", "appended");
}
