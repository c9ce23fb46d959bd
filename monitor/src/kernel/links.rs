//! Link events from the kernel: a NETLINK_ROUTE socket in the RTMGRP_LINK
//! group tells when an interface appears, changes state or goes away, so
//! that a deleted and re-created interface (or, without `--iface`, a new
//! one) is attached to again (see [`super::Kernel::link_event`]).

use std::io;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    link::{LinkAttribute, LinkFlags, LinkMessage},
    RouteNetlinkMessage,
};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use tokio::io::unix::AsyncFd;

/// What one link message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// RTM_NEWLINK: the link exists (new, or some of its state changed).
    Present { index: u32, name: String, up: bool, loopback: bool },
    /// RTM_DELLINK: the link is gone (deleted, or moved to another namespace).
    Gone { index: u32, name: String },
    /// The socket's buffer overran (ENOBUFS) or a message did not parse:
    /// events were lost, and the interfaces must be listed afresh.
    Lost,
}

/// The subscribed socket.
pub struct LinkWatch {
    socket: AsyncFd<Socket>,
    buf: Vec<u8>,
}

/// Link messages are a few kB each, and each comes in a datagram of its own.
const BUF_LEN: usize = 64 * 1024;

impl LinkWatch {
    /// Opens the socket and joins RTMGRP_LINK. Needs a tokio runtime.
    pub fn open() -> io::Result<LinkWatch> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind(&SocketAddr::new(0, libc::RTMGRP_LINK as u32))?;
        socket.set_non_blocking(true)?;
        // A burst of link changes (a bridge with many ports going down) fits.
        let _ = socket.set_rx_buf_sz(1 << 20);
        // SAFETY: the socket owns its fd and the AsyncFd owns the socket, so
        // the fd stays open for as long as it is registered.
        let socket = unsafe { AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(LinkWatch { socket, buf: Vec::with_capacity(BUF_LEN) })
    }

    /// Waits for the next datagram and returns the link events in it.
    pub async fn next(&mut self) -> io::Result<Vec<LinkEvent>> {
        let LinkWatch { socket, buf } = self;
        loop {
            let mut guard = socket.readable().await?;
            buf.clear();
            match guard.try_io(|s| s.get_ref().recv(buf, 0)) {
                Ok(Ok(_)) => return Ok(parse(buf)),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(vec![LinkEvent::Lost]),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// The link events of one datagram (several netlink messages, each padded
/// to 4 bytes).
pub fn parse(mut buf: &[u8]) -> Vec<LinkEvent> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let msg = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(buf) {
            Ok(m) => m,
            Err(e) => {
                log::debug!("unparsable link message ({e}); listing interfaces again");
                out.push(LinkEvent::Lost);
                break;
            }
        };
        match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
                let (index, name) = id(&m);
                out.push(LinkEvent::Present {
                    index,
                    name,
                    up: m.header.flags.contains(LinkFlags::Up),
                    loopback: m.header.flags.contains(LinkFlags::Loopback),
                });
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => {
                let (index, name) = id(&m);
                out.push(LinkEvent::Gone { index, name });
            }
            NetlinkPayload::Overrun(_) => out.push(LinkEvent::Lost),
            _ => {}
        }
        let len = (msg.header.length as usize + 3) & !3;
        if len == 0 || len > buf.len() {
            break;
        }
        buf = &buf[len..];
    }
    out
}

fn id(m: &LinkMessage) -> (u32, String) {
    let name = m
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default();
    (m.header.index, name)
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::{
        link::{LinkAttribute, LinkFlags, LinkMessage},
        RouteNetlinkMessage,
    };

    use super::{parse, LinkEvent};

    fn bytes(msg: RouteNetlinkMessage) -> Vec<u8> {
        let mut m = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let mut buf = vec![0; m.buffer_len()];
        m.serialize(&mut buf);
        buf
    }

    fn link(index: u32, name: &str, flags: LinkFlags) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = flags;
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        m
    }

    #[test]
    fn new_and_deleted_links_in_one_datagram() {
        let mut buf = bytes(RouteNetlinkMessage::NewLink(link(12, "veth-a", LinkFlags::Up)));
        buf.extend(bytes(RouteNetlinkMessage::DelLink(link(7, "eth1", LinkFlags::empty()))));
        buf.extend(bytes(RouteNetlinkMessage::NewLink(link(1, "lo", LinkFlags::Up | LinkFlags::Loopback))));
        assert_eq!(
            parse(&buf),
            vec![
                LinkEvent::Present { index: 12, name: "veth-a".into(), up: true, loopback: false },
                LinkEvent::Gone { index: 7, name: "eth1".into() },
                LinkEvent::Present { index: 1, name: "lo".into(), up: true, loopback: true },
            ]
        );
    }

    #[test]
    fn garbage_means_events_were_lost() {
        assert_eq!(parse(&[1, 2, 3]), vec![LinkEvent::Lost]);
    }
}
