//! Traffic made with std sockets inside test namespaces: TCP and UDP echo
//! servers, clients with bounded message counts, and ICMP echo over ping
//! sockets. Every blocking call has a timeout so a broken network fails the
//! test instead of hanging it.

use std::{
    io::{self, Read as _, Write as _},
    net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::netns::NetNs;

/// How long any single socket operation may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP echo server that serves a fixed number of connections: each
/// connection's bytes are echoed back until the client shuts down its side,
/// then the server closes.
pub struct TcpEchoServer {
    pub addr: SocketAddr,
    handle: JoinHandle<io::Result<Vec<u64>>>,
}

impl TcpEchoServer {
    /// Listens on `addr` inside `ns` and serves `connections` clients in turn.
    pub fn start(ns: &NetNs, addr: SocketAddr, connections: usize) -> TcpEchoServer {
        let listener = ns
            .run(|| TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("bind TCP {addr} in netns {}: {e}", ns.name()));
        // accept(2) honours SO_RCVTIMEO: a client that never comes fails the test.
        socket2::SockRef::from(&listener)
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("SO_RCVTIMEO on listener");
        let handle = std::thread::spawn(move || {
            let mut received = Vec::with_capacity(connections);
            for _ in 0..connections {
                let (mut conn, _) = listener.accept()?;
                conn.set_read_timeout(Some(IO_TIMEOUT))?;
                conn.set_write_timeout(Some(IO_TIMEOUT))?;
                conn.set_nodelay(true)?;
                let mut total = 0u64;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = conn.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    conn.write_all(&buf[..n])?;
                    total += n as u64;
                }
                received.push(total);
            }
            Ok(received)
        });
        TcpEchoServer { addr, handle }
    }

    /// Waits for the server to finish; returns the bytes each connection sent.
    pub fn join(self) -> Vec<u64> {
        let addr = self.addr;
        self.handle
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
            .unwrap_or_else(|e| panic!("TCP echo server on {addr}: {e}"))
    }
}

/// What a client did on one TCP connection.
#[derive(Clone, Copy, Debug)]
pub struct TcpReport {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub sent: u64,
    pub received: u64,
}

/// Connects from `ns` to `server`, sends `messages` messages of `size` bytes,
/// each waiting for its echo (so that every message is one segment each way
/// with TCP_NODELAY), then shuts down, reads to the end and closes.
pub fn tcp_echo_client(ns: &NetNs, server: SocketAddr, messages: usize, size: usize) -> TcpReport {
    let mut s =
        tcp_connect(ns, server).unwrap_or_else(|e| panic!("connect to {server} from {}: {e}", ns.name()));
    s.set_nodelay(true).expect("TCP_NODELAY");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("SO_RCVTIMEO");
    s.set_write_timeout(Some(IO_TIMEOUT)).expect("SO_SNDTIMEO");
    let local = s.local_addr().expect("local address");
    let msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut echo = vec![0u8; size];
    let mut report = TcpReport { local, peer: server, sent: 0, received: 0 };
    for i in 0..messages {
        s.write_all(&msg).unwrap_or_else(|e| panic!("{local} -> {server}: write of message {i}: {e}"));
        s.read_exact(&mut echo).unwrap_or_else(|e| panic!("{local} -> {server}: echo of message {i}: {e}"));
        assert_eq!(echo, msg, "{local} -> {server}: echo of message {i} differs");
        report.sent += size as u64;
        report.received += size as u64;
    }
    s.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap_or_else(|e| panic!("{local} -> {server}: reading to EOF: {e}"));
    assert!(rest.is_empty(), "{local} -> {server}: {} unexpected bytes after shutdown", rest.len());
    report
}

/// Connects from `ns` to `server`, sends `total` bytes in large writes (so
/// the stack builds GSO super-packets), shuts down and reads the echo.
pub fn tcp_bulk_client(ns: &NetNs, server: SocketAddr, total: usize) -> TcpReport {
    let s = tcp_connect(ns, server).unwrap_or_else(|e| panic!("connect to {server} from {}: {e}", ns.name()));
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("SO_RCVTIMEO");
    s.set_write_timeout(Some(IO_TIMEOUT)).expect("SO_SNDTIMEO");
    let local = s.local_addr().expect("local address");
    // Read the echo concurrently, or both sides stall on full buffers.
    let mut reader = s.try_clone().expect("clone TCP stream");
    let echo = std::thread::spawn(move || {
        let mut n = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(n),
                Ok(k) => n += k as u64,
                Err(e) => return Err(e),
            }
        }
    });
    let chunk = vec![0x5au8; 256 * 1024];
    let mut writer = &s;
    let mut left = total;
    while left > 0 {
        let k = left.min(chunk.len());
        writer.write_all(&chunk[..k]).unwrap_or_else(|e| panic!("{local} -> {server}: bulk write: {e}"));
        left -= k;
    }
    s.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
    let received = echo
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
        .unwrap_or_else(|e| panic!("{local} -> {server}: reading the echo: {e}"));
    TcpReport { local, peer: server, sent: total as u64, received }
}

/// Opens a TCP connection from inside `ns` (the error is returned: refused,
/// unreachable and timed-out attempts are what some tests want).
pub fn tcp_connect(ns: &NetNs, server: SocketAddr) -> io::Result<TcpStream> {
    ns.run(|| TcpStream::connect_timeout(&server, IO_TIMEOUT))
}

/// Tries to connect from `local_ip` in `ns` with a short timeout; returns
/// the local address used and the outcome. The port is bound before the
/// attempt, so the flow can be found in the table even when it fails (a
/// failed socket forgets its port).
pub fn tcp_attempt(
    ns: &NetNs,
    local_ip: IpAddr,
    server: SocketAddr,
    timeout: Duration,
) -> (SocketAddr, io::Result<()>) {
    ns.run(|| {
        let s =
            Socket::new(Domain::for_address(server), Type::STREAM, Some(Protocol::TCP)).expect("TCP socket");
        s.bind(&SockAddr::from(SocketAddr::new(local_ip, 0)))
            .unwrap_or_else(|e| panic!("bind {local_ip} in {}: {e}", ns.name()));
        let local = s.local_addr().expect("local address").as_socket().expect("inet");
        (local, s.connect_timeout(&SockAddr::from(server), timeout))
    })
}

/// A UDP echo server answering a fixed number of datagrams.
pub struct UdpEchoServer {
    pub addr: SocketAddr,
    handle: JoinHandle<io::Result<usize>>,
}

impl UdpEchoServer {
    pub fn start(ns: &NetNs, addr: SocketAddr, datagrams: usize) -> UdpEchoServer {
        let sock = ns
            .run(|| UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("bind UDP {addr} in {}: {e}", ns.name()));
        sock.set_read_timeout(Some(IO_TIMEOUT)).expect("SO_RCVTIMEO");
        let handle = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            for _ in 0..datagrams {
                let (n, from) = sock.recv_from(&mut buf)?;
                sock.send_to(&buf[..n], from)?;
            }
            Ok(datagrams)
        });
        UdpEchoServer { addr, handle }
    }

    pub fn join(self) {
        let addr = self.addr;
        self.handle
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
            .unwrap_or_else(|e| panic!("UDP echo server on {addr}: {e}"));
    }
}

/// Sends `datagrams` datagrams of `size` bytes from `ns` to `server`, each
/// waiting for its echo; returns the local address used.
pub fn udp_echo_client(ns: &NetNs, server: SocketAddr, datagrams: usize, size: usize) -> SocketAddr {
    let sock = udp_socket(ns, server);
    let msg = vec![0xa5u8; size];
    let mut buf = vec![0u8; size + 1];
    for i in 0..datagrams {
        sock.send(&msg).unwrap_or_else(|e| panic!("UDP send {i} to {server}: {e}"));
        let n = sock.recv(&mut buf).unwrap_or_else(|e| panic!("UDP echo {i} from {server}: {e}"));
        assert_eq!(n, size, "UDP echo {i} from {server} has {n} bytes, sent {size}");
    }
    sock.local_addr().expect("local address")
}

/// Sends `datagrams` datagrams of `size` bytes that expect no answer, spaced
/// so that each can draw its own ICMP error; returns the local address.
pub fn udp_send(ns: &NetNs, server: SocketAddr, datagrams: usize, size: usize) -> SocketAddr {
    let sock = udp_socket(ns, server);
    let msg = vec![0x3cu8; size];
    for i in 0..datagrams {
        // A connected UDP socket reports a previous ICMP error on the next
        // send (ECONNREFUSED): that is expected here, the datagram itself
        // is then not sent, so retry once.
        if let Err(e) = sock.send(&msg) {
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "UDP send {i} to {server}: {e}");
            sock.send(&msg).unwrap_or_else(|e| panic!("UDP send {i} to {server} (retry): {e}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    sock.local_addr().expect("local address")
}

fn udp_socket(ns: &NetNs, server: SocketAddr) -> UdpSocket {
    let any: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal");
    let sock = ns.run(|| UdpSocket::bind(any)).expect("bind UDP client");
    sock.connect(server).unwrap_or_else(|e| panic!("UDP connect {server}: {e}"));
    sock.set_read_timeout(Some(IO_TIMEOUT)).expect("SO_RCVTIMEO");
    sock
}

/// Result of [`ping`]: the echo identifier the kernel chose and the replies.
#[derive(Clone, Copy, Debug)]
pub struct PingReport {
    pub id: u16,
    pub replies: usize,
}

/// Sends `count` ICMP/ICMPv6 echo requests with `payload` bytes from `ns`
/// to `dst`, one at a time, each waiting for its reply. Uses a ping socket
/// (the kernel fills the identifier and checksum), which [`NetNs::new`]
/// enables.
pub fn ping(ns: &NetNs, dst: IpAddr, count: u16, payload: usize) -> PingReport {
    let (domain, proto, req_type, rep_type) = match dst {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8, 0u8),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128u8, 129u8),
    };
    let sock = ns
        .run(|| Socket::new(domain, Type::DGRAM, Some(proto)))
        .unwrap_or_else(|e| panic!("ping socket in {}: {e}", ns.name()));
    let to = SockAddr::from(SocketAddr::new(dst, 0));
    sock.connect(&to).unwrap_or_else(|e| panic!("connect ping socket to {dst}: {e}"));
    sock.set_read_timeout(Some(IO_TIMEOUT)).expect("SO_RCVTIMEO");
    let id = sock.local_addr().expect("ping socket address").as_socket().expect("inet").port();
    let mut replies = 0;
    for seq in 1..=count {
        let mut req = vec![req_type, 0, 0, 0, 0, 0];
        req.extend_from_slice(&seq.to_be_bytes());
        req.extend((0..payload).map(|i| i as u8));
        sock.send(&req).unwrap_or_else(|e| panic!("echo request {seq} to {dst}: {e}"));
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
        loop {
            let n = sock.recv(&mut buf).unwrap_or_else(|e| panic!("echo reply {seq} from {dst}: {e}"));
            // SAFETY: recv initialised the first n bytes.
            let got: Vec<u8> = buf[..n].iter().map(|b| unsafe { b.assume_init() }).collect();
            if got.len() >= 8 && got[0] == rep_type && u16::from_be_bytes([got[6], got[7]]) == seq {
                replies += 1;
                break;
            }
            assert!(Instant::now() < deadline, "no echo reply {seq} from {dst}");
        }
    }
    PingReport { id, replies }
}

/// UDP datagrams from `ns` to an echo in `peer`, sent without pause by one
/// thread pinned to each CPU, each thread alternating between `ports.len()`
/// client sockets: with ports whose flows share a per-CPU cache slot, every
/// CPU keeps claiming, counting into and writing back the same slots, both
/// ways (the echo answers each datagram). Runs until [`Flood::stop`].
pub struct Flood {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    senders: Vec<JoinHandle<u64>>,
    echo: JoinHandle<u64>,
    /// The client sockets' addresses, one flow each.
    pub clients: Vec<SocketAddr>,
}

impl Flood {
    pub fn start(
        ns: &NetNs,
        client: IpAddr,
        peer: &NetNs,
        server: SocketAddr,
        client_ports: &[u16],
    ) -> Flood {
        use std::sync::{atomic::AtomicBool, Arc};
        let stop = Arc::new(AtomicBool::new(false));
        let srv = peer
            .run(|| UdpSocket::bind(server))
            .unwrap_or_else(|e| panic!("bind UDP {server} in {}: {e}", peer.name()));
        srv.set_read_timeout(Some(Duration::from_millis(50))).expect("SO_RCVTIMEO");
        let echo = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let mut echoed = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok((n, from)) = srv.recv_from(&mut buf) {
                        // A full socket buffer on the client drops the echo: fine,
                        // both sides count what crossed the wire.
                        let _ = srv.send_to(&buf[..n], from);
                        echoed += 1;
                    }
                }
                echoed
            })
        };
        let clients: Vec<UdpSocket> = client_ports
            .iter()
            .map(|&port| {
                let local = SocketAddr::new(client, port);
                let s = ns
                    .run(|| UdpSocket::bind(local))
                    .unwrap_or_else(|e| panic!("bind UDP {local} in {}: {e}", ns.name()));
                s.connect(server).expect("connect UDP");
                // Before any sender runs: a sender that reached `recv` on a
                // blocking socket would wait there for an echo that, once the
                // flood stops, never comes, and `stop` would never return
                // (CI hung here for its whole 90 minutes).
                s.set_nonblocking(true).expect("O_NONBLOCK");
                s
            })
            .collect();
        let addrs = clients.iter().map(|s| s.local_addr().expect("local address")).collect();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let senders = (0..cpus)
            .map(|cpu| {
                let socks: Vec<UdpSocket> =
                    clients.iter().map(|s| s.try_clone().expect("clone UDP")).collect();
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    pin_to_cpu(cpu);
                    let msg = [0x5au8; 64];
                    let mut drain = [0u8; 2048];
                    let mut sent = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        for s in &socks {
                            if s.send(&msg).is_ok() {
                                sent += 1;
                            }
                            // Read what echoes came back so the buffer never fills.
                            while s.recv(&mut drain).is_ok() {}
                        }
                    }
                    sent
                })
            })
            .collect();
        Flood { stop, senders, echo, clients: addrs }
    }

    /// Stops every thread; returns the datagrams sent and echoed.
    pub fn stop(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let sent = self.senders.into_iter().map(|h| h.join().expect("sender thread")).sum();
        (sent, self.echo.join().expect("echo thread"))
    }
}

/// Pins the calling thread to one CPU: the packets it sends are handled by
/// the programs on that CPU (TC egress runs in the sender's context).
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only touch that set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "sched_setaffinity to CPU {cpu}: {}",
            io::Error::last_os_error()
        );
    }
}

/// xorshift64: spoofed addresses, ports and names, the same every run.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
