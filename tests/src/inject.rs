//! Hand-built frames sent with an AF_PACKET socket: for what the kernel's
//! own stack cannot make here, such as 802.1Q/802.1ad tagged frames (the
//! test kernel has no CONFIG_VLAN_8021Q, so no VLAN sub-interfaces).

use std::net::{IpAddr, SocketAddr};

use etherparse::{PacketBuilder, VlanId};

use crate::netns::NetNs;

/// The MAC address of `iface` inside `ns`.
pub fn mac_of(ns: &NetNs, iface: &str) -> [u8; 6] {
    let out = ns.exec(&["cat", &format!("/sys/class/net/{iface}/address")]);
    let bytes: Vec<u8> = out
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap_or_else(|e| panic!("MAC of {iface} {out:?}: {e}")))
        .collect();
    bytes.try_into().unwrap_or_else(|b: Vec<u8>| panic!("MAC of {iface} has {} bytes", b.len()))
}

/// A UDP datagram in an Ethernet frame with zero, one (802.1Q) or two
/// (802.1ad outer, 802.1Q inner) VLAN tags, checksums filled in.
pub fn udp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    vlans: &[u16],
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
) -> Vec<u8> {
    let vid = |v: u16| VlanId::try_new(v).unwrap_or_else(|e| panic!("VLAN id {v}: {e}"));
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    let ip = |b: etherparse::PacketBuilderStep<etherparse::VlanHeader>| match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => b.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => b.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("udp_frame: {src} and {dst} are of different families"),
    };
    let builder = match vlans {
        [] => match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            _ => panic!("udp_frame: {src} and {dst} are of different families"),
        },
        [v] => ip(eth.single_vlan(vid(*v))),
        [outer, inner] => ip(eth.double_vlan(vid(*outer), vid(*inner))),
        _ => panic!("udp_frame: at most two VLAN tags"),
    }
    .udp(src.port(), dst.port());
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, payload).expect("build UDP frame");
    frame
}

/// Sends each frame as is on `iface` inside `ns`.
pub fn send_frames(ns: &NetNs, iface: &str, frames: &[Vec<u8>]) {
    let ifindex = ns.ifindex(iface);
    ns.run(|| {
        // SAFETY: plain socket(2); the fd is closed below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid start.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = ifindex as i32;
        to.sll_halen = 6;
        for (i, f) in frames.iter().enumerate() {
            to.sll_addr[..6].copy_from_slice(&f[..6]);
            // SAFETY: f and to outlive the call; lengths are theirs.
            let n = unsafe {
                libc::sendto(
                    fd,
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&to as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(n, f.len() as isize, "send frame {i} on {iface}: {}", std::io::Error::last_os_error());
        }
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    });
}
