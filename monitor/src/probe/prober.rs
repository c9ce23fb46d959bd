//! The probes themselves: one non-blocking TCP connect or one UDP datagram
//! per target, classified by what comes back.
//!
//! The ICMP sender comes from the socket's own error queue: every probe
//! socket sets `IP_RECVERR` (`IPV6_RECVERR` for IPv6) before it sends, and
//! when the connect or the datagram fails, `recvmsg(MSG_ERRQUEUE)` returns a
//! `sock_extended_err` whose origin is ICMP/ICMPv6, with the type, the code
//! and the offender (`SO_EE_OFFENDER`: the address that sent the error, a
//! router or the host). Linux queues ICMP errors for a TCP socket in
//! `SYN_SENT` since 5.10 ("tcp: allow traceroute -Mtcp for unpriv users"),
//! so no raw socket and no CAP_NET_RAW is needed, and the error is matched
//! to the probe by the kernel, not by parsing the quoted header.

use std::{
    io,
    mem::{size_of, zeroed},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::Arc,
    time::Duration,
};

use serde::Serialize;
use tokio::{io::unix::AsyncFd, sync::Semaphore, task::JoinSet, time::Instant};

use super::plan::{Probe, ProbeProto};

/// How a probe ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Outcome {
    /// TCP: the handshake completed (the connection is closed at once).
    Open,
    /// UDP: a datagram came back.
    Answered,
    /// TCP: the host answered with a reset.
    Refused,
    /// An ICMP or ICMPv6 error came back; `from` sent it (a router on the
    /// way, or the host itself).
    IcmpRejected { from: IpAddr, icmp_type: u8, icmp_code: u8, meaning: String },
    /// TCP: no answer within the timeout.
    TimedOut,
    /// UDP: nothing came back within the timeout: the port may be open (a
    /// service that does not answer this datagram) or filtered (dropped).
    #[serde(rename = "open|filtered")]
    OpenOrFiltered,
    /// The probe could not be sent (no route, no source address, ...).
    Error { message: String },
}

impl Outcome {
    /// Whether the path counts as open for the exit status: a TCP
    /// handshake, or a UDP answer or silence (silence is not a rejection).
    pub fn passes(&self) -> bool {
        matches!(self, Outcome::Open | Outcome::Answered | Outcome::OpenOrFiltered)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Open => "open",
            Outcome::Answered => "answered",
            Outcome::Refused => "refused",
            Outcome::IcmpRejected { .. } => "icmp-rejected",
            Outcome::TimedOut => "timed-out",
            Outcome::OpenOrFiltered => "open|filtered",
            Outcome::Error { .. } => "error",
        }
    }
}

/// How fast and how wide to probe.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub timeout: Duration,
    /// Probes in flight at once (at least 1).
    pub concurrency: usize,
    /// Probes started per second (at least 1 per `u32::MAX` seconds; `None`:
    /// no limit).
    pub rate: Option<f64>,
}

/// Runs every probe within `limits` and returns the outcomes in the order
/// of `probes`. The i-th probe starts no earlier than i / rate seconds after
/// the first, and at most `concurrency` are in flight.
pub async fn run_all(probes: &[Probe], limits: Limits) -> Vec<Outcome> {
    let sem = Arc::new(Semaphore::new(limits.concurrency.max(1)));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for (i, p) in probes.iter().enumerate() {
        if let Some(rate) = limits.rate {
            tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
        }
        let permit = sem.clone().acquire_owned().await.expect("the semaphore is never closed");
        let (proto, addr, timeout) = (p.proto, p.addr, limits.timeout);
        tasks.spawn(async move {
            let out = probe(proto, addr, timeout).await;
            drop(permit);
            (i, out)
        });
    }
    let mut out = vec![Outcome::Error { message: "not run".into() }; probes.len()];
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((i, o)) => out[i] = o,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}

/// One probe of `addr`.
pub async fn probe(proto: ProbeProto, addr: SocketAddr, timeout: Duration) -> Outcome {
    let r = match proto {
        ProbeProto::Tcp => tcp(addr, timeout).await,
        ProbeProto::Udp => udp(addr, timeout).await,
    };
    r.unwrap_or_else(|e| Outcome::Error { message: e.to_string() })
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A non-blocking socket of `ty` for `addr`'s family, with RECVERR set.
fn socket(addr: SocketAddr, ty: libc::c_int) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain syscalls on a descriptor this function owns.
    unsafe {
        let fd = cvt(libc::socket(family, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0))?;
        let fd = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let (level, opt) = if addr.is_ipv4() {
            (libc::SOL_IP, libc::IP_RECVERR)
        } else {
            (libc::SOL_IPV6, libc::IPV6_RECVERR)
        };
        cvt(libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            &one as *const _ as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        ))?;
        Ok(fd)
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data, large enough for either family.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn connect(fd: RawFd, addr: SocketAddr) -> io::Result<()> {
    let (ss, len) = sockaddr(addr);
    // SAFETY: `ss` holds a valid address of `len` bytes.
    match cvt(unsafe { libc::connect(fd, &ss as *const _ as *const libc::sockaddr, len) }) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
        Err(e) => Err(e),
    }
}

fn so_error(fd: RawFd) -> io::Result<i32> {
    let mut err: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` is a c_int of `len` bytes.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut err as *mut _ as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(err)
}

/// An ICMP error from the socket's error queue, if one is queued.
fn icmp_error(fd: RawFd) -> Option<Outcome> {
    let mut data = [0u8; 64];
    let mut control = [0u64; 64];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr() as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: msghdr is plain data; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = size_of::<[u64; 64]>() as _;
    // SAFETY: `msg` describes buffers owned by this frame.
    if unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) } < 0 {
        return None;
    }
    // SAFETY: the cmsg macros walk the control buffer the kernel filled.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let h = &*c;
            let ours = (h.cmsg_level == libc::SOL_IP && h.cmsg_type == libc::IP_RECVERR)
                || (h.cmsg_level == libc::SOL_IPV6 && h.cmsg_type == libc::IPV6_RECVERR);
            if ours {
                let ee = libc::CMSG_DATA(c) as *const libc::sock_extended_err;
                let e = std::ptr::read_unaligned(ee);
                let v6 = match e.ee_origin {
                    libc::SO_EE_ORIGIN_ICMP => false,
                    libc::SO_EE_ORIGIN_ICMP6 => true,
                    _ => {
                        c = libc::CMSG_NXTHDR(&msg, c);
                        continue;
                    }
                };
                let off = libc::SO_EE_OFFENDER(ee) as *const u8;
                let from = offender(off)?;
                return Some(Outcome::IcmpRejected {
                    from,
                    icmp_type: e.ee_type,
                    icmp_code: e.ee_code,
                    meaning: meaning(v6, e.ee_type, e.ee_code).to_string(),
                });
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    None
}

/// The address in the `sockaddr` at `p`.
///
/// # Safety
/// `p` points at a sockaddr_in or sockaddr_in6 inside the control buffer.
unsafe fn offender(p: *const u8) -> Option<IpAddr> {
    let family = std::ptr::read_unaligned(p as *const libc::sa_family_t) as libc::c_int;
    match family {
        libc::AF_INET => {
            let sin = std::ptr::read_unaligned(p as *const libc::sockaddr_in);
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            let sin6 = std::ptr::read_unaligned(p as *const libc::sockaddr_in6);
            let a = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4))
        }
        _ => None,
    }
}

/// ICMP destination-unreachable codes (and the other types an error queue
/// holds), as `nft reject with icmp type ...` names them.
pub fn meaning(v6: bool, ty: u8, code: u8) -> &'static str {
    if !v6 {
        match (ty, code) {
            (3, 0) => "net-unreachable",
            (3, 1) => "host-unreachable",
            (3, 2) => "prot-unreachable",
            (3, 3) => "port-unreachable",
            (3, 4) => "frag-needed",
            (3, 9) => "net-prohibited",
            (3, 10) => "host-prohibited",
            (3, 13) => "admin-prohibited",
            (3, _) => "destination-unreachable",
            (11, _) => "time-exceeded",
            (12, _) => "parameter-problem",
            _ => "icmp-error",
        }
    } else {
        match (ty, code) {
            (1, 0) => "no-route",
            (1, 1) => "admin-prohibited",
            (1, 3) => "addr-unreachable",
            (1, 4) => "port-unreachable",
            (1, 5) => "policy-fail",
            (1, 6) => "reject-route",
            (1, _) => "destination-unreachable",
            (2, _) => "packet-too-big",
            (3, _) => "time-exceeded",
            (4, _) => "parameter-problem",
            _ => "icmpv6-error",
        }
    }
}

fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the OwnedFd stays open, and is the same descriptor, for as
    // long as the AsyncFd that owns it.
    Ok(unsafe { AsyncFd::register(fd) }?)
}

/// A TCP connect to `addr`.
async fn tcp(addr: SocketAddr, timeout: Duration) -> io::Result<Outcome> {
    let fd = register(socket(addr, libc::SOCK_STREAM)?)?;
    connect(fd.as_raw_fd(), addr)?;
    let done = tokio::time::timeout(timeout, async {
        loop {
            let mut g = fd.writable().await?;
            let err = so_error(fd.as_raw_fd())?;
            if err != 0 {
                return Ok::<_, io::Error>(Err(err));
            }
            // Writable without an error: connected, unless the wakeup was spurious.
            let (mut ss, mut len): (libc::sockaddr_storage, libc::socklen_t) =
                // SAFETY: plain data.
                (unsafe { zeroed() }, size_of::<libc::sockaddr_storage>() as libc::socklen_t);
            // SAFETY: `ss` has room for `len` bytes.
            let r = unsafe {
                libc::getpeername(fd.as_raw_fd(), &mut ss as *mut _ as *mut libc::sockaddr, &mut len)
            };
            if r == 0 {
                return Ok(Ok(()));
            }
            g.clear_ready();
        }
    })
    .await;
    Ok(match done {
        Err(_) => icmp_error(fd.as_raw_fd()).unwrap_or(Outcome::TimedOut),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Ok(()))) => Outcome::Open,
        Ok(Ok(Err(errno))) => match icmp_error(fd.as_raw_fd()) {
            Some(o) => o,
            None if errno == libc::ECONNREFUSED => Outcome::Refused,
            None if errno == libc::ETIMEDOUT => Outcome::TimedOut,
            None => Outcome::Error { message: io::Error::from_raw_os_error(errno).to_string() },
        },
    })
}

/// The datagram a UDP probe sends: empty, so that it asks nothing of the service.
const UDP_PAYLOAD: &[u8] = b"";

/// One UDP datagram to `addr`, then a wait for an answer or an ICMP error.
async fn udp(addr: SocketAddr, timeout: Duration) -> io::Result<Outcome> {
    let fd = register(socket(addr, libc::SOCK_DGRAM)?)?;
    connect(fd.as_raw_fd(), addr)?;
    // SAFETY: sending from a valid buffer on a connected socket.
    cvt(unsafe {
        libc::send(fd.as_raw_fd(), UDP_PAYLOAD.as_ptr() as *const libc::c_void, UDP_PAYLOAD.len(), 0)
    } as libc::c_int)?;
    let done = tokio::time::timeout(timeout, async {
        loop {
            let mut g = fd.readable().await?;
            if let Some(o) = icmp_error(fd.as_raw_fd()) {
                return Ok::<_, io::Error>(o);
            }
            let mut buf = [0u8; 2048];
            // SAFETY: receiving into a buffer of this frame.
            let n = unsafe {
                libc::recv(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                return Ok(Outcome::Answered);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => g.clear_ready(),
                // The error was reported here; its queue entry was read above
                // or will be on the next turn.
                Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EACCES) => {
                    if let Some(o) = icmp_error(fd.as_raw_fd()) {
                        return Ok(o);
                    }
                    g.clear_ready();
                }
                _ => return Err(e),
            }
        }
    })
    .await;
    match done {
        Err(_) => Ok(icmp_error(fd.as_raw_fd()).unwrap_or(Outcome::OpenOrFiltered)),
        Ok(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, UdpSocket};

    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn tcp_open_and_refused_on_loopback() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = l.local_addr().unwrap();
        let closed = {
            let t = TcpListener::bind("127.0.0.1:0").unwrap();
            t.local_addr().unwrap()
        };
        let rt = rt();
        assert_eq!(rt.block_on(probe(ProbeProto::Tcp, open, Duration::from_secs(2))), Outcome::Open);
        assert_eq!(rt.block_on(probe(ProbeProto::Tcp, closed, Duration::from_secs(2))), Outcome::Refused);
    }

    #[test]
    fn udp_port_unreachable_names_the_sender_and_silence_is_open_or_filtered() {
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let rt = rt();
        let got = rt.block_on(probe(ProbeProto::Udp, closed, Duration::from_secs(2)));
        assert_eq!(
            got,
            Outcome::IcmpRejected {
                from: "127.0.0.1".parse().unwrap(),
                icmp_type: 3,
                icmp_code: 3,
                meaning: "port-unreachable".into()
            }
        );
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let got =
            rt.block_on(probe(ProbeProto::Udp, silent.local_addr().unwrap(), Duration::from_millis(200)));
        assert_eq!(got, Outcome::OpenOrFiltered);
    }

    #[test]
    fn udp_answer() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let mut b = [0u8; 16];
            let (n, from) = server.recv_from(&mut b).unwrap();
            server.send_to(&b[..n], from).unwrap();
        });
        let got = rt().block_on(probe(ProbeProto::Udp, addr, Duration::from_secs(2)));
        echo.join().unwrap();
        assert_eq!(got, Outcome::Answered);
    }

    fn probes(n: usize, addr: SocketAddr, proto: ProbeProto) -> Vec<Probe> {
        (0..n)
            .map(|i| Probe {
                rule: format!("r{i}"),
                provenance: "m.yaml:1".into(),
                proto,
                addr,
                target: "t".into(),
                port_note: None,
            })
            .collect()
    }

    /// 11 probes at 20/s cannot finish before 10 intervals of 50 ms.
    #[test]
    fn rate_is_a_lower_bound_on_elapsed_time() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let ps = probes(11, l.local_addr().unwrap(), ProbeProto::Tcp);
        let t = std::time::Instant::now();
        let out = rt().block_on(run_all(
            &ps,
            Limits { timeout: Duration::from_secs(2), concurrency: 32, rate: Some(20.0) },
        ));
        assert!(t.elapsed() >= Duration::from_millis(500), "{:?}", t.elapsed());
        assert!(out.iter().all(|o| *o == Outcome::Open), "{out:?}");
    }

    /// 4 silent UDP probes of 300 ms, two at a time: at least 600 ms.
    #[test]
    fn concurrency_bounds_probes_in_flight() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ps = probes(4, silent.local_addr().unwrap(), ProbeProto::Udp);
        let t = std::time::Instant::now();
        let out = rt().block_on(run_all(
            &ps,
            Limits { timeout: Duration::from_millis(300), concurrency: 2, rate: None },
        ));
        assert!(t.elapsed() >= Duration::from_millis(600), "{:?}", t.elapsed());
        assert!(out.iter().all(|o| *o == Outcome::OpenOrFiltered), "{out:?}");
    }
}
