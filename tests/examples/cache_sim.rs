//! What share of the mixed capture's frames a per-CPU flow cache of a given
//! shape could count without the shared table: a simulation of the kernel's
//! cache rules (monitor-ebpf/src/flow.rs, `track`) over the capture of the
//! kernel bench (`tests/src/bench/mix.rs`), in capture order, one CPU.
//!
//! It answers "would a larger or set-associative cache help?" without
//! building and benchmarking each shape: for the shape the kernel has (1,024
//! slots, direct-mapped, a slot valid for one tick) it gives the hit rate
//! the bench measures (26.8% at the test-run harness's speed), and so for the
//! 4,096-slot build measured beside it (30.6% simulated, 30.1-30.4% measured).
//!
//! Rules simulated: a frame hits when a way of its set holds its flow,
//! claimed in this tick, and the frame brings no TCP flag that the slot's
//! copy of the entry's flags lacks; otherwise it takes the shared path and
//! claims its own way again, or a way not claimed in this tick (the least
//! recently used one), or none when every way was claimed in this tick.
//! `untimed` drops the one-tick validity (a cache whose slots stay valid
//! across ticks, which the kernel does not do: the shared entry's
//! `last_seen_ns` and its LRU position would then lag), to show what the tick
//! costs. A tick is `--per-tick` frames (the harness runs about 1,200 frames
//! per 4 ms tick; a busy NIC many more).
//!
//! `cargo run --release -p monitor-tests --example cache_sim -- 1200 5000`
//! (no root, no kernel: pure computation).

#[allow(dead_code)]
#[path = "../src/bench/mix.rs"]
mod mix;

/// The TCP header's flags as the kernel's `tcp_flag` bits (parse::tcp_bits).
fn flag_bits(f: u8) -> u32 {
    let mut b = 0;
    if f & 0x02 != 0 {
        b |= if f & 0x10 != 0 { 2 } else { 1 };
    }
    if f & 0x04 != 0 {
        b |= 4;
    }
    if f & 0x01 != 0 {
        b |= 8;
    }
    if f & 0x10 != 0 {
        b |= 16;
    }
    b
}

#[derive(Clone, Copy, Default)]
struct Slot {
    flow: u32,
    used: bool,
    tick: u64,
    flags: [u32; 2],
    last: u64,
}

/// Shares (hit, new flow, shared path) of the capture's frames.
fn simulate(cap: &mix::Capture, slot_bits: u32, ways: usize, per_tick: u64, timed: bool) -> [f64; 3] {
    let slots = 1usize << slot_bits;
    let mut cache = vec![Slot::default(); slots];
    let mut entry_flags = vec![[0u32; 2]; cap.flows.len()];
    let mut seen = vec![false; cap.flows.len()];
    let set_of: Vec<usize> = cap.flows.iter().map(|f| f.slot(slots as u32) as usize / ways).collect();
    let mut n = [0u64; 3];
    for (i, p) in cap.pkts.iter().enumerate() {
        let (i, f) = (i as u64, p.flow as usize);
        let tick = i / per_tick;
        let dir = usize::from(!p.from_client);
        let bits = flag_bits(p.flags);
        let set = &mut cache[set_of[f] * ways..(set_of[f] + 1) * ways];
        let mine = set.iter().position(|s| s.used && s.flow == p.flow);
        if let Some(w) = mine {
            let s = &mut set[w];
            if (!timed || s.tick == tick) && bits & !s.flags[dir] == 0 {
                s.last = i;
                n[0] += 1;
                continue;
            }
        }
        n[if seen[f] { 2 } else { 1 }] += 1;
        seen[f] = true;
        entry_flags[f][dir] |= bits;
        let way = mine.or_else(|| {
            let free = |s: &Slot| !(timed && s.used && s.tick == tick);
            (0..ways)
                .filter(|&w| free(&set[w]))
                .min_by_key(|&w| if set[w].used { set[w].last + 1 } else { 0 })
        });
        if let Some(w) = way {
            set[w] = Slot { flow: p.flow, used: true, tick, flags: entry_flags[f], last: i };
        }
    }
    let total = cap.pkts.len() as f64;
    n.map(|x| 100.0 * x as f64 / total)
}

fn main() {
    let ticks: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().expect("frames per tick")).collect();
    let ticks = if ticks.is_empty() { vec![1200] } else { ticks };
    let cap = mix::Capture::generate(&mix::Config::default());
    // The floor: a flow's first frame, and every frame with a flag its
    // direction had not shown yet, always take the shared path.
    let mut flags = vec![[0u32; 2]; cap.flows.len()];
    let mut seen = vec![false; cap.flows.len()];
    let must = cap
        .pkts
        .iter()
        .filter(|p| {
            let (f, d, b) = (p.flow as usize, usize::from(!p.from_client), flag_bits(p.flags));
            let first = !seen[f];
            seen[f] = true;
            let new_flag = b & !flags[f][d] != 0;
            flags[f][d] |= b;
            first || new_flag
        })
        .count();
    println!(
        "{} frames; {:.1}% must take the shared path (a flow's first frame or a new TCP flag)",
        cap.pkts.len(),
        100.0 * must as f64 / cap.pkts.len() as f64
    );
    println!("frames/tick  slots  ways  validity  hit%   new%  shared%");
    for &per_tick in &ticks {
        for (bits, ways, timed) in [
            (10, 1, true),
            (10, 2, true),
            (10, 4, true),
            (12, 1, true),
            (12, 4, true),
            (14, 1, true),
            (14, 4, true),
            (16, 4, true),
            (10, 1, false),
            (12, 4, false),
            (14, 4, false),
            (16, 4, false),
        ] {
            let [hit, new, shared] = simulate(&cap, bits, ways, per_tick, timed);
            let validity = if timed { "tick" } else { "untimed" };
            println!(
                "{per_tick:>11}  {:>5}  {ways:>4}  {validity:>8}  {hit:>4.1}  {new:>5.1}  {shared:>7.1}",
                1u32 << bits
            );
        }
    }
}
