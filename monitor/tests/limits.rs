//! The agent cannot be exhausted by local clients or a full disk: the
//! metrics port and the control socket hold a capped number of
//! connections (the rest are closed at once and counted) and close idle
//! ones; `monitor run` raises its soft limit on open files; a sink that
//! cannot write reports it once, not once per alert, and counts every
//! failure. Through the library functions `monitor run` calls, without root.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    os::unix::net::UnixStream,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use monitor::{
    alert::{Alert, Kind},
    cmd::run::raise_nofile_limit,
    live::{
        control,
        metrics::Metrics,
        serve::ConnLimits,
        sink::{Format, Sink},
    },
};
use tokio::{net::TcpListener, sync::watch};

const CAP: usize = 64;
const CLIENTS: usize = 200;
/// Descriptors the runtime may open meanwhile (timers, blocking threads' wakers).
const SLACK: usize = 8;

fn limits() -> ConnLimits {
    ConnLimits { max_connections: CAP, request_timeout: Duration::from_secs(2) }
}

/// The tests count the process's descriptors: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.blocking_lock()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A sample of the process-wide counters, as any `Metrics` publishes them.
fn sample(name_and_labels: &str) -> u64 {
    let om = Metrics::new().encode();
    om.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name_and_labels} in\n{om}"))
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// True when the server closed `s` (EOF or reset), false while it is open
/// (`s` is non-blocking: nothing to read yet).
fn closed_by_server(mut s: impl Read) -> bool {
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Ok(0) | Err(_) => true,
        Ok(_) => false,
    }
}

/// The cap at work on `clients`, idle connections to one server, opened
/// when `baseline` descriptors were open and the server's refused counter
/// (`refused`) stood at `refused_before`: past the cap they are refused at
/// once and counted, the server holds at most the cap, and after the request
/// timeout it has closed every one.
async fn assert_capped_then_closed<C>(
    clients: &[C],
    refused: impl Fn() -> u64,
    refused_before: u64,
    baseline: usize,
    nonblocking: impl Fn(&C),
) where
    for<'a> &'a C: Read,
{
    let expected = (CLIENTS - CAP) as u64;
    wait_for("the refused connections", Duration::from_secs(10), || refused() - refused_before >= expected)
        .await;
    // The server's share of the descriptors: what is open less our clients.
    let server_fds = open_fds().saturating_sub(baseline + CLIENTS);
    assert!(server_fds <= CAP + SLACK, "{server_fds} descriptors for {CLIENTS} idle clients, cap {CAP}");
    assert_eq!(refused() - refused_before, expected);
    clients.iter().for_each(&nonblocking);
    let held = clients.iter().filter(|c| !closed_by_server(*c)).count();
    assert_eq!(held, CAP, "the first {CAP} are served, the rest closed at once");

    // The idle ones are closed after the request timeout.
    tokio::time::sleep(limits().request_timeout + Duration::from_millis(500)).await;
    let held = clients.iter().filter(|c| !closed_by_server(*c)).count();
    assert_eq!(held, 0, "idle connections outlived the request timeout");
    let server_fds = open_fds().saturating_sub(baseline + CLIENTS);
    assert!(server_fds <= SLACK, "{server_fds} descriptors still open after the idle ones timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_to_the_metrics_port_are_capped_and_closed() {
    let _serial = SERIAL.lock().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let server = tokio::spawn(Metrics::new().serve_on_with(listener, stop_rx, limits()));
    let refused = || sample("monitor_connections_refused_total{server=\"metrics\"}");
    let refused_before = refused();
    let baseline = open_fds();

    let clients = tokio::task::spawn_blocking(move || {
        (0..CLIENTS).map(|_| TcpStream::connect(addr).unwrap()).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_capped_then_closed(&clients, refused, refused_before, baseline, |c: &TcpStream| {
        c.set_nonblocking(true).unwrap()
    })
    .await;
    // Then a scrape works.
    let body = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    })
    .await
    .unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("monitor_connections_refused_total{server=\"metrics\"}"), "{body}");
    drop(clients);
    stop.send_replace(true);
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_of_the_control_socket_are_capped_and_closed() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitor.sock");
    let (_rx, _guard, server) = control::serve_with(&path, limits()).unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(server.run(stop_rx));
    let refused = || sample("monitor_connections_refused_total{server=\"control\"}");
    let refused_before = refused();
    let baseline = open_fds();

    let p = path.clone();
    let clients = tokio::task::spawn_blocking(move || {
        (0..CLIENTS).map(|_| UnixStream::connect(&p).unwrap()).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_capped_then_closed(&clients, refused, refused_before, baseline, |c: &UnixStream| {
        c.set_nonblocking(true).unwrap()
    })
    .await;
    // A client is answered again (a bad request needs no running monitor).
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"hello\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap();
    assert!(answer.starts_with("error: unknown request `hello`"), "{answer}");
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("the server stops when told").unwrap();
}

/// `(soft, hard)` "Max open files" of /proc/self/limits.
fn proc_nofile() -> (String, String) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let mut f = line["Max open files".len()..].split_whitespace();
    (f.next().unwrap().to_owned(), f.next().unwrap().to_owned())
}

#[test]
fn the_soft_open_files_limit_is_raised_to_the_hard_one() {
    if std::env::var_os("LIMITS_NOFILE_CHILD").is_some() {
        // In a child of our own: lower the soft limit, then raise it as
        // `monitor run` does.
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: plain getrlimit/setrlimit on a local struct.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
            lim.rlim_cur = 256.min(lim.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
        let (soft, hard) = proc_nofile();
        assert_eq!(soft, lim.rlim_cur.to_string());
        assert_ne!(soft, hard, "the hard limit is 256 here: nothing to test");
        let (before, after) = raise_nofile_limit().unwrap();
        assert_eq!((before, after), (256, lim.rlim_max));
        let (soft, hard) = proc_nofile();
        assert_eq!(soft, hard, "/proc/self/limits: soft {soft}, hard {hard}");
        println!("NOFILE-RAISED {before} -> {after}");
        return;
    }
    let _serial = serial();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "the_soft_open_files_limit_is_raised_to_the_hard_one", "--nocapture"])
        .env("LIMITS_NOFILE_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("NOFILE-RAISED 256 -> "),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn alert(i: u16) -> Alert {
    common::alert(i, Kind::Unexpected)
}

#[test]
fn a_full_disk_is_reported_once_and_every_failure_counted() {
    let _serial = serial();
    // /dev/full: opening for append works, every write fails with ENOSPC.
    let mut sink = Sink::file(Path::new("/dev/full"), Format::Json).unwrap();
    let failures = || sample("monitor_alert_write_failures_total{sink=\"file\"}");
    let before = failures();
    const N: u64 = 500;
    let errors: Vec<std::io::Error> = (0..N).filter_map(|i| sink.write(&alert(i as u16)).err()).collect();
    assert_eq!(errors.len(), 1, "one error to log for {N} failed alerts, not one each: {errors:?}");
    assert_eq!(errors[0].kind(), std::io::ErrorKind::StorageFull, "{}", errors[0]);
    assert!(errors[0].to_string().contains("at most once a minute"), "{}", errors[0]);
    assert_eq!(failures() - before, N, "every failed alert is counted");
    // A line that is not an alert (the report at exit) still fails loudly.
    assert!(sink.write_line("report").is_err());
}
