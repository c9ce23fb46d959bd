//! Verdicts per second on one core: a generated matrix of 1,000 rules and
//! an inventory of 10,000 hosts, queried with a mix of conforming,
//! off-matrix and unknown-address flows.
//!
//! Run: cargo bench -p monitor --bench engine

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use monitor::{
    engine::{Engine, FlowQuery, VerdictKind},
    flow::Proto,
    matrix::Selection,
};

mod generated;

use generated::{generate, host_ip, GenRule, Rng, HOSTS_PER_GROUP};

const QUERIES: usize = 1 << 14;

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
