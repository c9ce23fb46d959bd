//! Listening sockets of this host, from /proc/net: when the kernel did not
//! see who started a flow, a local listener tells which side is the server.

use std::{
    collections::HashSet,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use crate::flow::{Proto, ServerHint};

/// `(proto, local port)` pairs with a socket listening on any address, and
/// `(proto, ip, port)` for sockets bound to one address.
#[derive(Debug, Default)]
pub struct Listening {
    any: HashSet<(Proto, u16)>,
    bound: HashSet<(Proto, IpAddr, u16)>,
}

const TCP_LISTEN: &str = "0A";
/// UDP sockets have no listen state; an unconnected bound socket is "07".
const UDP_UNCONNECTED: &str = "07";

impl Listening {
    /// Reads /proc/net/{tcp,tcp6,udp,udp6}; unreadable files count as empty.
    pub fn read() -> Listening {
        let mut l = Listening::default();
        for (file, proto, state, v6) in [
            ("/proc/net/tcp", Proto::Tcp, TCP_LISTEN, false),
            ("/proc/net/tcp6", Proto::Tcp, TCP_LISTEN, true),
            ("/proc/net/udp", Proto::Udp, UDP_UNCONNECTED, false),
            ("/proc/net/udp6", Proto::Udp, UDP_UNCONNECTED, true),
        ] {
            if let Ok(text) = fs::read_to_string(file) {
                l.add_table(&text, proto, state, v6);
            }
        }
        l
    }

    fn add_table(&mut self, text: &str, proto: Proto, want_state: &str, v6: bool) {
        for line in text.lines().skip(1) {
            let mut cols = line.split_whitespace();
            let (Some(_), Some(local), Some(_), Some(state)) =
                (cols.next(), cols.next(), cols.next(), cols.next())
            else {
                continue;
            };
            if state != want_state {
                continue;
            }
            let Some((addr, port)) = local.split_once(':') else { continue };
            let (Some(ip), Ok(port)) = (parse_proc_addr(addr, v6), u16::from_str_radix(port, 16)) else {
                continue;
            };
            if ip.is_unspecified() {
                self.any.insert((proto, port));
            } else {
                self.bound.insert((proto, ip, port));
            }
        }
    }
}

/// /proc/net prints addresses as 32-bit words in hex, one `%08X` per word.
fn parse_proc_addr(hex: &str, v6: bool) -> Option<IpAddr> {
    // Each word was printed from memory as a native u32: native bytes restore memory order.
    let bytes: Vec<u8> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<Vec<u32>>>()?
        .into_iter()
        .flat_map(u32::to_ne_bytes)
        .collect();
    match (v6, bytes.len()) {
        (false, 4) => Some(IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))),
        (true, 16) => {
            let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?);
            Some(v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)))
        }
        _ => None,
    }
}

impl ServerHint for Listening {
    fn is_listening(&self, proto: Proto, ip: IpAddr, port: u16) -> bool {
        self.any.contains(&(proto, port)) || self.bound.contains(&(proto, ip, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tables() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
   1: 0100007F:1B59 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n\
   2: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0\n";
        let mut l = Listening::default();
        l.add_table(tcp, Proto::Tcp, TCP_LISTEN, false);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.200.0.1".parse().unwrap();
        assert!(l.is_listening(Proto::Tcp, other, 8080), "0.0.0.0:8080 listens on every address");
        assert!(l.is_listening(Proto::Tcp, lo, 7001), "127.0.0.1:7001 is bound to loopback");
        assert!(!l.is_listening(Proto::Tcp, other, 7001), "7001 is not bound to 10.200.0.1");
        assert!(!l.is_listening(Proto::Tcp, lo, 40000), "an established socket is not a listener");
        assert!(!l.is_listening(Proto::Udp, other, 8080));
    }

    #[test]
    fn parses_ipv6_proc_addresses() {
        // ::1 as printed by /proc/net/tcp6 on little-endian hosts.
        let ip = parse_proc_addr("00000000000000000000000001000000", true).unwrap();
        assert_eq!(ip, "::1".parse::<IpAddr>().unwrap());
    }
}
