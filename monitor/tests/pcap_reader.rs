//! The pcap/pcapng reader on files written by an independent writer
//! (pcap-file): formats, link types, timestamp resolutions, and the errors
//! for damaged files.

use std::{fs, path::Path, time::Duration};

use etherparse::PacketBuilder;
use monitor::replay::{
    pcap::{self, Format, PcapError},
    track::{LinkKind, Tracker},
};
use monitor_common::Stat;
use pcap_file::{
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    pcapng::{
        blocks::{
            enhanced_packet::EnhancedPacketBlock,
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            simple_packet::SimplePacketBlock,
        },
        PcapNgWriter,
    },
    DataLink, Endianness, TsResolution,
};

/// 2026-04-06T10:00:00Z plus 123456789 ns.
const TS: Duration = Duration::new(1_775_469_600, 123_456_789);

fn udp_eth(sport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 200, 2, 50], [10, 200, 1, 11], 64)
        .udp(sport, 53)
        .write(&mut v, b"query")
        .unwrap();
    v
}

fn udp_l3(sport: u16) -> Vec<u8> {
    udp_eth(sport)[14..].to_vec()
}

fn pcap_file(dir: &Path, name: &str, header: PcapHeader, frames: &[Vec<u8>]) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut w = PcapWriter::with_header(fs::File::create(&path).unwrap(), header).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(&PcapPacket::new(TS + Duration::from_secs(i as u64), f.len() as u32, f)).unwrap();
    }
    path
}

fn header(datalink: DataLink, ts_resolution: TsResolution, endianness: Endianness) -> PcapHeader {
    PcapHeader { datalink, ts_resolution, endianness, ..PcapHeader::default() }
}

/// Reads `path` and returns (timestamps, link kinds, tracker).
fn read(path: &Path) -> (Vec<u64>, Vec<LinkKind>, Tracker, pcap::ReadSummary) {
    let mut t = Tracker::new();
    let mut ts = Vec::new();
    let mut links = Vec::new();
    let summary = pcap::for_each_packet(path, |r| {
        ts.push(r.ts_ns);
        links.push(r.link);
        t.push_captured(r.ts_ns, r.link, r.data, r.orig_len);
    })
    .unwrap_or_else(|e| panic!("{e}"));
    (ts, links, t, summary)
}

fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

#[test]
fn legacy_pcap_in_both_resolutions_and_byte_orders() {
    let dir = tempfile::tempdir().unwrap();
    let frames = [udp_eth(1000), udp_eth(1001)];
    for (res, endian, want_first) in [
        (TsResolution::MicroSecond, Endianness::Little, ns(TS) / 1000 * 1000),
        (TsResolution::NanoSecond, Endianness::Little, ns(TS)),
        (TsResolution::MicroSecond, Endianness::Big, ns(TS) / 1000 * 1000),
        (TsResolution::NanoSecond, Endianness::Big, ns(TS)),
    ] {
        let name = format!("{res:?}-{endian:?}.pcap");
        let path = pcap_file(dir.path(), &name, header(DataLink::ETHERNET, res, endian), &frames);
        let (ts, links, t, summary) = read(&path);
        assert_eq!(ts, vec![want_first, want_first + 1_000_000_000], "{name}");
        assert_eq!(links, vec![LinkKind::Ethernet; 2], "{name}");
        assert_eq!((summary.packets, summary.format), (2, Format::Pcap), "{name}");
        assert_eq!(t.len(), 2, "{name}: two UDP flows");
        assert_eq!(t.stats().get(Stat::Tracked), 2, "{name}");
    }
}

#[test]
fn every_supported_link_type_reaches_the_same_flow() {
    let dir = tempfile::tempdir().unwrap();
    let mut sll = vec![0, 4, 0, 1, 0, 6, 2, 2, 2, 2, 2, 2, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&udp_l3(7));
    let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 4, 6, 2, 2, 2, 2, 2, 2, 0, 0];
    sll2.extend_from_slice(&udp_l3(7));
    let cases = [
        (DataLink::ETHERNET, udp_eth(7), LinkKind::Ethernet),
        (DataLink::LINUX_SLL, sll, LinkKind::LinuxSll),
        (DataLink::LINUX_SLL2, sll2, LinkKind::LinuxSll2),
        (DataLink::RAW, udp_l3(7), LinkKind::RawIp),
        (DataLink::IPV4, udp_l3(7), LinkKind::RawIpv4),
    ];
    let mut keys = Vec::new();
    for (i, (dl, frame, want)) in cases.into_iter().enumerate() {
        let path = pcap_file(
            dir.path(),
            &format!("{i}.pcap"),
            header(dl, TsResolution::MicroSecond, Endianness::Little),
            &[frame],
        );
        let (_, links, t, _) = read(&path);
        assert_eq!(links, vec![want]);
        let entries: Vec<_> = t.entries().map(|(k, v)| (*k, v.packets)).collect();
        assert_eq!(entries.len(), 1, "{want:?}: {:?}", t.stats());
        keys.push(entries[0]);
    }
    assert!(keys.windows(2).all(|w| w[0] == w[1]), "all link types must give one key: {keys:?}");
}

#[test]
fn pcapng_honours_each_interface_resolution_and_link_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two-ifaces.pcapng");
    let mut w = PcapNgWriter::new(fs::File::create(&path).unwrap()).unwrap();
    // Interface 0: Ethernet, default resolution (microseconds, no option).
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 0,
        options: vec![],
    })
    .unwrap();
    // Interface 1: Linux cooked v2, nanoseconds.
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::LINUX_SLL2,
        snaplen: 0,
        options: vec![InterfaceDescriptionOption::IfTsResol(9)],
    })
    .unwrap();
    let eth = udp_eth(9);
    let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 4, 6, 2, 2, 2, 2, 2, 2, 0, 0];
    sll2.extend_from_slice(&udp_l3(9));
    // pcap-file writes the timestamp in nanoseconds whatever the interface says:
    // give interface 0 a value in microseconds so that the file is correct.
    let us = Duration::from_nanos((TS.as_micros()) as u64);
    for (iface, ts, frame) in [(0, us, &eth), (1, TS, &sll2)] {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: iface,
            timestamp: ts,
            original_len: frame.len() as u32 + 100,
            data: frame.as_slice().into(),
            options: vec![],
        })
        .unwrap();
    }
    drop(w);
    let (ts, links, t, summary) = read(&path);
    assert_eq!(summary.format, Format::PcapNg);
    assert_eq!(ts, vec![ns(TS) / 1000 * 1000, ns(TS)]);
    assert_eq!(links, vec![LinkKind::Ethernet, LinkKind::LinuxSll2]);
    let (_, v) = t.entries().next().expect("one flow");
    let total: u64 = v.bytes.iter().sum();
    // Original lengths: Ethernet counts the frame, SLL2 counts from L3.
    assert_eq!(total, (eth.len() as u64 + 100) + (sll2.len() as u64 + 100 - 20));
}

#[test]
fn big_endian_pcapng_reads_like_little_endian() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("be.pcapng");
    let mut w = PcapNgWriter::with_endianness(fs::File::create(&path).unwrap(), Endianness::Big).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::RAW,
        snaplen: 0,
        options: vec![InterfaceDescriptionOption::IfTsResol(9)],
    })
    .unwrap();
    let f = udp_l3(12);
    w.write_pcapng_block(EnhancedPacketBlock {
        interface_id: 0,
        timestamp: TS,
        original_len: f.len() as u32,
        data: f.as_slice().into(),
        options: vec![],
    })
    .unwrap();
    drop(w);
    let (ts, links, t, _) = read(&path);
    assert_eq!((ts, links), (vec![ns(TS)], vec![LinkKind::RawIp]));
    assert_eq!(t.stats().get(Stat::Tracked), 1);
}

#[test]
fn pcapng_simple_packets_take_the_previous_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("simple.pcapng");
    let mut w = PcapNgWriter::new(fs::File::create(&path).unwrap()).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 0,
        options: vec![InterfaceDescriptionOption::IfTsResol(9)],
    })
    .unwrap();
    let f = udp_eth(11);
    w.write_pcapng_block(EnhancedPacketBlock {
        interface_id: 0,
        timestamp: TS,
        original_len: f.len() as u32,
        data: f.as_slice().into(),
        options: vec![],
    })
    .unwrap();
    w.write_pcapng_block(SimplePacketBlock { original_len: f.len() as u32, data: f.as_slice().into() })
        .unwrap();
    drop(w);
    let (ts, _, t, _) = read(&path);
    assert_eq!(ts, vec![ns(TS), ns(TS)]);
    assert_eq!(t.stats().get(Stat::Tracked), 2);
}

#[test]
fn a_record_cut_short_names_the_packet_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let frames = [udp_eth(1), udp_eth(2), udp_eth(3)];
    let path = pcap_file(dir.path(), "cut.pcap", PcapHeader::default(), &frames);
    let len = fs::metadata(&path).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 5).unwrap();
    let err = pcap::for_each_packet(&path, |_| {}).expect_err("a truncated file must not read as complete");
    let record = 16 + frames[0].len() as u64;
    match &err {
        PcapError::Truncated { packet, offset, .. } => assert_eq!((*packet, *offset), (3, 24 + 2 * record)),
        other => panic!("want Truncated, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("cut.pcap") && msg.contains("packet 3") && msg.contains("editcap"), "{msg}");
}

#[test]
fn a_truncated_pcapng_block_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.pcapng");
    let mut w = PcapNgWriter::new(fs::File::create(&path).unwrap()).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 0,
        options: vec![],
    })
    .unwrap();
    let f = udp_eth(1);
    w.write_pcapng_block(EnhancedPacketBlock {
        interface_id: 0,
        timestamp: TS,
        original_len: f.len() as u32,
        data: f.as_slice().into(),
        options: vec![],
    })
    .unwrap();
    drop(w);
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
    let err = pcap::for_each_packet(&path, |_| {}).unwrap_err();
    assert!(matches!(err, PcapError::Truncated { packet: 1, .. }), "{err:?}");
}

#[test]
fn a_corrupt_pcapng_block_is_malformed_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.pcapng");
    let mut w = PcapNgWriter::new(fs::File::create(&path).unwrap()).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 0,
        options: vec![],
    })
    .unwrap();
    let f = udp_eth(1);
    for _ in 0..2 {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: TS,
            original_len: f.len() as u32,
            data: f.as_slice().into(),
            options: vec![],
        })
        .unwrap();
    }
    drop(w);
    let mut bytes = fs::read(&path).unwrap();
    // The second packet block's trailing length no longer matches its header.
    let end = bytes.len();
    bytes[end - 4..].copy_from_slice(&7u32.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    let mut seen = 0;
    let err = pcap::for_each_packet(&path, |_| seen += 1).unwrap_err();
    assert_eq!(seen, 1, "the packet before the damage is read");
    match &err {
        PcapError::Malformed { packet, offset, .. } => {
            let epb = (end as u64 - 28 - 20) / 2;
            assert_eq!((*packet, *offset), (2, 28 + 20 + epb))
        }
        other => panic!("want Malformed, got {other:?}"),
    }
    assert!(err.to_string().contains("corrupt.pcapng"), "{err}");
}

#[test]
fn garbage_and_empty_files_are_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("capture.txt");
    fs::write(&text, "10:00:00.000000 IP 10.200.2.50.51000 > 10.200.1.11.7101: Flags [S]\n").unwrap();
    let err = pcap::for_each_packet(&text, |_| {}).unwrap_err();
    assert!(matches!(err, PcapError::NotPcap { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("capture.txt") && msg.contains("tcpdump -w"), "{msg}");

    let empty = dir.path().join("empty.pcap");
    fs::write(&empty, b"").unwrap();
    let err = pcap::for_each_packet(&empty, |_| {}).unwrap_err();
    assert!(matches!(err, PcapError::ShortHeader { .. }), "{err:?}");

    let half = dir.path().join("half-header.pcap");
    fs::write(&half, [0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0]).unwrap();
    let err = pcap::for_each_packet(&half, |_| {}).unwrap_err();
    assert!(matches!(err, PcapError::ShortHeader { .. }), "{err:?}");

    let missing = dir.path().join("missing.pcap");
    let err = pcap::for_each_packet(&missing, |_| {}).unwrap_err();
    assert!(matches!(err, PcapError::Io { .. }) && err.to_string().contains("missing.pcap"), "{err}");
}

#[test]
fn an_unsupported_link_type_is_an_error_not_a_silent_skip() {
    let dir = tempfile::tempdir().unwrap();
    // 802.11 with radiotap headers.
    let path = pcap_file(
        dir.path(),
        "wifi.pcap",
        header(DataLink::IEEE802_11_RADIOTAP, TsResolution::MicroSecond, Endianness::Little),
        &[vec![0; 40]],
    );
    let err = pcap::for_each_packet(&path, |_| {}).unwrap_err();
    match &err {
        PcapError::UnsupportedLink { linktype, packet, offset, .. } => {
            assert_eq!((*linktype, *packet, *offset), (127, 1, 24))
        }
        other => panic!("want UnsupportedLink, got {other:?}"),
    }
    assert!(err.to_string().contains("tcpdump -i any"), "{err}");
}

#[test]
fn damaged_packets_are_counted_by_reason_and_the_replay_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut short = udp_eth(5);
    short.truncate(20);
    let mut arp = udp_eth(5);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let path =
        pcap_file(dir.path(), "mixed.pcap", PcapHeader::default(), &[udp_eth(5), short, arp, udp_eth(5)]);
    let mut t = Tracker::new();
    let summary = pcap::replay(&path, &mut t).unwrap();
    assert_eq!(summary.packets, 4);
    assert_eq!(t.stats().get(Stat::Packets), 4);
    assert_eq!(t.stats().skipped().collect::<Vec<_>>(), vec![(Stat::NotIp, 1), (Stat::ShortIpv4, 1)]);
    assert_eq!(t.entries().next().unwrap().1.packets.iter().sum::<u64>(), 2);
}

#[test]
fn the_committed_example_captures_read_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam/pcaps");
    for name in ["conforming.pcap", "unexpected.pcap", "exposed-single-node.pcap", "blocked.pcapng"] {
        let (ts, _, t, summary) = read(&dir.join(name));
        assert!(summary.packets > 0, "{name} is empty");
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{name}: timestamps go backwards");
        assert_eq!(t.stats().skipped().count(), 0, "{name}: skipped packets {:?}", t.stats());
    }
}
