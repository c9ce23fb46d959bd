//! The generated matrix the benches share: 1,000 rules between 100 groups
//! of 100 hosts (10,000 in all) and 25 zones, with exposure constraints on
//! ten groups. Deterministic: every run measures the same matrix.

// Each bench uses a part of it (the engine bench the rules' ports, the
// series bench only the files).
#![allow(dead_code)]

use std::{fmt::Write as _, net::IpAddr};

use monitor::{inventory::Inventory, matrix::Matrix};

pub const GROUPS: usize = 100;
pub const HOSTS_PER_GROUP: usize = 100;
pub const RULES: usize = 1000;
pub const ZONES: usize = 25;

/// Deterministic xorshift, so every run measures the same flows.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub fn host_ip(group: usize, host: usize) -> IpAddr {
    format!("10.{group}.{}.{}", host / 200, 1 + host % 200).parse().unwrap()
}

pub struct GenRule {
    pub from_group: Option<usize>,
    pub from_zone: Option<usize>,
    pub to_group: usize,
    pub first: u16,
    pub last: u16,
    pub udp: bool,
}

pub fn generate(dir: &std::path::Path) -> (Matrix, Inventory, Vec<GenRule>) {
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
