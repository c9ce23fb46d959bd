//! pcap replay throughput, in packets per second: reading the capture and
//! counting every packet into the flow tracker, then the same followed by
//! judging every flow with the verdict engine (what `monitor check` does).
//!
//! ```text
//! cargo bench -p monitor --bench replay
//! ```
//!
//! The capture is synthetic but shaped like a busy RP-PAM cluster (the
//! example matrix and inventory, `--profile ha`): 4096 documented TCP
//! connections (handshake, request, response, close: 10 packets each) from
//! workstations to the portal and between nodes, database and Redis, plus
//! 512 undocumented UDP request/reply pairs, so that one flow in nine is a
//! finding; 41 984 packets, frames of 54 to 1514 bytes.

use std::{hint::black_box, io::Cursor, net::Ipv4Addr, path::Path, time::Duration};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherparse::PacketBuilder;
use monitor::{
    engine::Engine,
    inventory::Inventory,
    matrix::{Matrix, Selection},
    replay::{pcap, track::Tracker},
    verdict::{assess, Outcome},
};
use pcap_file::pcap::{PcapPacket, PcapWriter};

const SERVERS: [(Ipv4Addr, u16); 6] = [
    (Ipv4Addr::new(10, 200, 1, 11), 7101),
    (Ipv4Addr::new(10, 200, 1, 12), 7001),
    (Ipv4Addr::new(10, 200, 1, 13), 5201),
    (Ipv4Addr::new(10, 200, 1, 20), 5432),
    (Ipv4Addr::new(10, 200, 1, 21), 6379),
    (Ipv4Addr::new(10, 200, 3, 20), 22),
];

fn capture() -> (Vec<u8>, u64) {
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    let mut ts = Duration::from_secs(1_775_469_600);
    let mut n = 0u64;
    let mut put = |w: &mut PcapWriter<Vec<u8>>, frame: Vec<u8>| {
        ts += Duration::from_micros(20);
        w.write_packet(&PcapPacket::new(ts, frame.len() as u32, &frame)).unwrap();
        n += 1;
    };
    for i in 0..4096u32 {
        let (server, port) = SERVERS[i as usize % SERVERS.len()];
        let client = if port == 7101 {
            Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 2, 0)) + (i % 200))
        } else {
            // A node, never the server itself.
            let node = |k: u32| Ipv4Addr::new(10, 200, 1, 11 + (k % 3) as u8);
            if node(i) == server {
                node(i + 1)
            } else {
                node(i)
            }
        };
        let sport = 32768 + (i % 28000) as u16;
        let (c, s) = (client.octets(), server.octets());
        let seg = |from_client: bool, flags: u8, len: usize| {
            let (src, dst, sp, dp) = if from_client { (c, s, sport, port) } else { (s, c, port, sport) };
            let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(src, dst, 64).tcp(sp, dp, 1, 64240);
            let b = match flags {
                0 => b.syn(),
                1 => b.syn().ack(1),
                2 => b.ack(1),
                _ => b.fin().ack(1),
            };
            let mut v = Vec::new();
            b.write(&mut v, &vec![0u8; len]).unwrap();
            v
        };
        for (fc, flags, len) in [
            (true, 0, 0),
            (false, 1, 0),
            (true, 2, 0),
            (true, 2, 517),
            (false, 2, 1460),
            (false, 2, 1460),
            (true, 2, 0),
            (true, 3, 0),
            (false, 3, 0),
            (true, 2, 0),
        ] {
            put(&mut w, seg(fc, flags, len));
        }
        if i % 8 != 0 {
            continue;
        }
        let mut q = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(c, s, 64)
            .udp(sport, 53)
            .write(&mut q, &[0; 40])
            .unwrap();
        put(&mut w, q);
        let mut r = Vec::new();
        PacketBuilder::ethernet2([4; 6], [2; 6])
            .ipv4(s, c, 64)
            .udp(53, sport)
            .write(&mut r, &[0; 120])
            .unwrap();
        put(&mut w, r);
    }
    (w.into_writer(), n)
}

fn replay(bytes: &[u8]) -> Tracker {
    let mut t = Tracker::new();
    pcap::read(Path::new("bench.pcap"), Cursor::new(bytes), |r| {
        t.push_captured(r.ts_ns, r.link, r.data, r.orig_len)
    })
    .unwrap();
    t
}

fn bench(c: &mut Criterion) {
    let (bytes, packets) = capture();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam");
    let (matrix, _) = Matrix::load(&example.join("matrix.yaml")).unwrap();
    let (inventory, _) = Inventory::load(&example.join("inventory.ini")).unwrap();
    let sel = Selection { profiles: vec!["ha".into()], ..Selection::default() };
    let engine = Engine::new(&matrix, Some(&inventory), &sel).unwrap();

    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(packets));
    g.bench_function("pcap+tracker", |b| b.iter(|| black_box(replay(&bytes)).len()));
    g.bench_function("pcap+tracker+engine", |b| {
        b.iter(|| {
            let t = replay(&bytes);
            let mut findings = 0;
            for flow in t.flows(Duration::from_secs(3)) {
                if let (_, Outcome::Finding(a)) = assess(&engine, &flow) {
                    findings += black_box(a).count;
                }
            }
            findings
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
