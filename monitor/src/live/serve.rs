//! The accept loop of the agent's two local servers (the metrics port and
//! the control socket), written once: connections past the cap are closed
//! at once and counted, every connection is a task owned here and drained
//! at shutdown, and a failing accept (out of file descriptors, say) backs
//! off instead of spinning, with one warning a minute rather than one per
//! failure.

use std::{
    future::Future,
    io,
    sync::{Arc, LazyLock},
    time::Duration,
};

use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::{
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
    sync::{watch, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};

use super::throttle::Throttle;

/// How many connections a local server (the metrics port, the control
/// socket) holds at once, and how long a client may take to send its
/// request. Past the cap a new connection is accepted and closed at once
/// (counted in `monitor_connections_refused_total{server}`), so idle
/// clients cannot take the process's file descriptors: the two servers
/// hold at most `2 × max_connections` sockets besides their listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    pub max_connections: usize,
    /// A request (its head, for HTTP; keep-alive idle time included) must
    /// arrive within this; then the connection is closed.
    pub request_timeout: Duration,
}

impl ConnLimits {
    /// 64 connections, 10 s for a request.
    pub const DEFAULT: ConnLimits =
        ConnLimits { max_connections: 64, request_timeout: Duration::from_secs(10) };
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits::DEFAULT
    }
}

/// A local server, as the `server` label names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Metrics,
    Control,
}

impl Server {
    pub fn as_str(self) -> &'static str {
        match self {
            Server::Metrics => "metrics",
            Server::Control => "control",
        }
    }
}

/// `monitor_connections_refused_total{server}`: counted here, where no
/// handle to the metrics is, and registered in every `Metrics`.
pub(crate) static CONNECTIONS_REFUSED: LazyLock<Family<[(&'static str, &'static str); 1], Counter>> =
    LazyLock::new(|| {
        let f = Family::default();
        for s in [Server::Metrics, Server::Control] {
            let _ = f.get_or_create(&[("server", s.as_str())]);
        }
        f
    });

/// One connection to `server` closed at once: it held its cap.
pub fn connection_refused(server: Server) {
    CONNECTIONS_REFUSED.get_or_create(&[("server", server.as_str())]).inc();
}

/// Logs refused connections: the first, then at most one line a minute.
fn warn_refused(server: Server, throttle: &Throttle, limits: ConnLimits) {
    if let Some(n) = throttle.hit() {
        log::warn!(
            "{}: {n} connections refused since the last warning: {} were open, the cap \
             (monitor_connections_refused_total counts them all)",
            server.as_str(),
            limits.max_connections
        );
    }
}

/// How long connections in flight at shutdown get to finish.
pub const DRAIN: Duration = Duration::from_secs(2);

/// The first wait after a failed accept; it doubles while accepts keep
/// failing, up to [`BACKOFF_MAX`], and starts again after a success.
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A source of connections.
pub trait Listener: Send + 'static {
    type Conn: Send + 'static;
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Conn>> + Send;
}

impl Listener for TcpListener {
    type Conn = TcpStream;
    async fn accept(&mut self) -> io::Result<TcpStream> {
        TcpListener::accept(self).await.map(|(s, _)| s)
    }
}

impl Listener for UnixListener {
    type Conn = UnixStream;
    async fn accept(&mut self) -> io::Result<UnixStream> {
        UnixListener::accept(self).await.map(|(s, _)| s)
    }
}

/// Accepts connections until `shutdown` turns true (or its sender is
/// gone), serving each with `serve` in a task that holds one of
/// `limits.max_connections` slots; then gives the open connections
/// [`DRAIN`] to finish.
pub async fn accept_loop<L, F, Fut>(
    mut listener: L,
    server: Server,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
    mut serve: F,
) where
    L: Listener,
    F: FnMut(L::Conn, OwnedSemaphorePermit) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refused = Throttle::new(Duration::from_secs(60));
    let failed = Throttle::new(Duration::from_secs(60));
    let mut backoff = BACKOFF_MIN;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => {
                    backoff = BACKOFF_MIN;
                    match slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            conns.spawn(serve(conn, slot));
                        }
                        Err(_) => {
                            drop(conn);
                            connection_refused(server);
                            warn_refused(server, &refused, limits);
                        }
                    }
                }
                Err(e) => {
                    if let Some(n) = failed.hit() {
                        log::warn!(
                            "{}: accept failed {n} times since the last warning: {e}; retrying after a pause \
                             (up to {BACKOFF_MAX:?} while it fails)",
                            server.as_str()
                        );
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped(&mut shutdown) => break,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            },
            _ = stopped(&mut shutdown) => break,
        }
        while conns.try_join_next().is_some() {}
    }
    // Connections in flight (a scrape being written) get a moment to finish.
    let _ = tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
}

/// Resolves when `shutdown` turns true or its sender is gone; holds no
/// borrow of the value across an await (that would make futures !Send).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicU32, Ordering},
        time::Instant,
    };

    use tokio::sync::mpsc;

    use super::*;

    /// Fails every accept with EMFILE until told to stop failing, then
    /// hands out the numbers it is sent as connections.
    struct Flaky {
        failing: watch::Receiver<bool>,
        calls: Arc<AtomicU32>,
        conns: mpsc::Receiver<u32>,
    }

    impl Listener for Flaky {
        type Conn = u32;
        async fn accept(&mut self) -> io::Result<u32> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if *self.failing.borrow() {
                return Err(io::Error::from_raw_os_error(libc::EMFILE));
            }
            self.conns.recv().await.ok_or_else(|| io::Error::other("no more connections"))
        }
    }

    /// A persistent accept error costs a handful of accepts a second, not
    /// a spinning core, and the loop serves again once it clears. (The
    /// bound holds however slow the machine: a slower one makes fewer
    /// calls.)
    #[tokio::test]
    async fn an_accept_error_backs_off_and_the_loop_survives_it() {
        let (fail_tx, failing) = watch::channel(true);
        let (conn_tx, conns) = mpsc::channel(4);
        let calls = Arc::new(AtomicU32::new(0));
        let (stop_tx, stop) = watch::channel(false);
        let (served_tx, mut served) = mpsc::channel(4);
        let listener = Flaky { failing, calls: calls.clone(), conns };
        let task = tokio::spawn(accept_loop(
            listener,
            Server::Control,
            ConnLimits::DEFAULT,
            stop,
            move |n, _slot| {
                let served = served_tx.clone();
                async move {
                    let _ = served.send(n).await;
                }
            },
        ));
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let elapsed = started.elapsed();
        let n = calls.load(Ordering::Relaxed);
        // 10, 20, 40, ... ms between attempts: 6 or so in 500 ms; at most
        // one per BACKOFF_MIN however the pauses grow.
        let bound = (elapsed.as_millis() / BACKOFF_MIN.as_millis()) as u32 + 1;
        assert!((1..=bound).contains(&n), "{n} accepts in {elapsed:?} of persistent EMFILE");
        // The pauses reach BACKOFF_MAX after 7 attempts.
        assert!(n as u64 <= 8 + elapsed.as_secs(), "the pause doubles: {n} accepts in {elapsed:?}");

        fail_tx.send_replace(false);
        conn_tx.send(7).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), served.recv()).await;
        assert_eq!(got.ok().flatten(), Some(7), "served once the error cleared");
        stop_tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("stops when told").unwrap();
    }
}
