//! Verdicts per second on one core: a generated matrix of 1,000 rules and
//! an inventory of 10,000 hosts, queried with a mix of conforming,
//! off-matrix and unknown-address flows.
//!
//! Run: cargo bench -p monitor --bench engine

use std::{fmt::Write as _, hint::black_box, net::IpAddr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use monitor::{
    engine::{Engine, FlowQuery, VerdictKind},
    flow::Proto,
    inventory::Inventory,
    matrix::{Matrix, Selection},
};

const GROUPS: usize = 100;
const HOSTS_PER_GROUP: usize = 100;
const RULES: usize = 1000;
const ZONES: usize = 25;
const QUERIES: usize = 1 << 14;

/// Deterministic xorshift, so every run measures the same flows.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn host_ip(group: usize, host: usize) -> IpAddr {
    format!("10.{group}.{}.{}", host / 200, 1 + host % 200).parse().unwrap()
}

struct GenRule {
    from_group: Option<usize>,
    from_zone: Option<usize>,
    to_group: usize,
    first: u16,
    last: u16,
    udp: bool,
}

fn generate(dir: &std::path::Path) -> (Matrix, Inventory, Vec<GenRule>) {
    let mut inv = String::new();
    for g in 0..GROUPS {
        writeln!(inv, "[g{g}]").unwrap();
        for h in 0..HOSTS_PER_GROUP {
            writeln!(inv, "h{g}-{h} ansible_host={}", host_ip(g, h)).unwrap();
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut y = String::from("version: 1\nvariables:\n  base: 7001\nzones:\n");
    for z in 0..ZONES {
        writeln!(y, "  z{z}: [10.{}.0.0/14]", z * 4).unwrap();
    }
    y.push_str("services:\n");
    for g in 0..GROUPS {
        writeln!(y, "  s{g}: {{ group: g{g} }}").unwrap();
    }
    y.push_str("rules:\n");
    let mut rules = Vec::new();
    for i in 0..RULES {
        let from_zone = (i % 5 == 0).then(|| rng.below(ZONES));
        let from_group = from_zone.is_none().then(|| rng.below(GROUPS));
        let to_group = rng.below(GROUPS);
        let first = 1 + rng.below(30000) as u16;
        let last = if i % 7 == 0 { first + rng.below(20) as u16 } else { first };
        let udp = i % 3 == 0;
        let from = match (from_group, from_zone) {
            (Some(g), _) => format!("s{g}"),
            (_, Some(z)) => format!("z{z}"),
            _ => unreachable!(),
        };
        writeln!(
            y,
            "  - {{ id: r{i}, from: {from}, to: s{to_group}, ports: \"{first}-{last}\", proto: {} }}",
            if udp { "udp" } else { "tcp" }
        )
        .unwrap();
        rules.push(GenRule { from_group, from_zone, to_group, first, last, udp });
    }
    y.push_str("exposure:\n");
    for g in 0..10 {
        writeln!(
            y,
            "  - {{ id: x{g}, to: s{g}, ports: \"${{base}}-${{base+11}}\", only_from: [loopback, s{g}] }}"
        )
        .unwrap();
    }
    let inv_path = dir.join("inventory.ini");
    std::fs::write(&inv_path, inv).unwrap();
    let (m, _) = Matrix::from_str(&y, "bench.yaml", dir).expect("generated matrix loads");
    let (inventory, _) = Inventory::load(&inv_path).expect("generated inventory loads");
    (m, inventory, rules)
}

fn queries(rules: &[GenRule]) -> Vec<FlowQuery> {
    let mut rng = Rng(42);
    (0..QUERIES)
        .map(|i| {
            let r = &rules[rng.below(rules.len())];
            if i % 16 == 6 {
                // gRPC of a protected service from another group: exposed.
                let g = rng.below(10);
                return FlowQuery {
                    client: host_ip(10 + g, rng.below(HOSTS_PER_GROUP)),
                    server: host_ip(g, rng.below(HOSTS_PER_GROUP)),
                    port: 7001 + rng.below(12) as u16,
                    proto: Proto::Tcp,
                    initiator_seen: true,
                };
            }
            let server = host_ip(r.to_group, rng.below(HOSTS_PER_GROUP));
            let client = match (i % 8, r.from_group, r.from_zone) {
                // An address in no inventory group: zone or internet only.
                (3 | 4, _, _) => format!("192.0.2.{}", rng.below(250)).parse().unwrap(),
                (_, Some(g), _) => host_ip(g, rng.below(HOSTS_PER_GROUP)),
                (_, _, Some(z)) => host_ip(z * 4 + rng.below(4), rng.below(HOSTS_PER_GROUP)),
                _ => unreachable!(),
            };
            // Every other query hits a documented port, the rest a random one.
            let port = if i % 2 == 0 {
                r.first + (rng.below((r.last - r.first + 1) as usize) as u16)
            } else {
                1 + rng.below(65000) as u16
            };
            FlowQuery {
                client,
                server,
                port,
                proto: if r.udp { Proto::Udp } else { Proto::Tcp },
                initiator_seen: true,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (m, inv, rules) = generate(dir.path());
    let engine = Engine::new(&m, Some(&inv), &Selection::default()).expect("engine compiles");
    let qs = queries(&rules);
    let kinds = qs.iter().fold([0usize; 3], |mut n, q| {
        n[engine.verdict(q).kind as usize] += 1;
        n
    });
    assert!(
        kinds[VerdictKind::Conforming as usize] > QUERIES / 4,
        "the mix must hold conforming flows: {kinds:?}"
    );
    eprintln!("engine: {:?}; query mix conforming/unexpected/exposed = {kinds:?}", engine.stats());

    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(qs.len() as u64));
    g.bench_function("verdict", |b| {
        b.iter(|| {
            let mut conforming = 0u32;
            for q in &qs {
                conforming +=
                    (black_box(&engine).verdict(black_box(q)).kind == VerdictKind::Conforming) as u32;
            }
            conforming
        })
    });
    g.finish();

    let mut g = c.benchmark_group("engine-build");
    g.sample_size(10);
    g.bench_function("compile 1000 rules x 10000 hosts", |b| {
        b.iter(|| Engine::new(&m, Some(&inv), &Selection::default()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
