//! Server ports folded into the ranges a matrix writes: `7001-7003` for
//! three contiguous ports, never one range across a gap, so that a
//! proposal documents no port that was not seen.

use std::collections::BTreeSet;

/// Contiguous runs of `ports` as `[first, last]` ranges, in order.
pub fn fold(ports: &BTreeSet<u16>) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for &p in ports {
        match out.last_mut() {
            Some((_, last)) if u32::from(*last) + 1 == u32::from(p) => *last = p,
            _ => out.push((p, p)),
        }
    }
    out
}

/// Ranges as a matrix `ports:` value: `5432`, `"7001-7003"`, `[22, 3389]`.
pub fn yaml(ranges: &[(u16, u16)]) -> String {
    let one = |&(a, b): &(u16, u16)| if a == b { a.to_string() } else { format!("\"{a}-{b}\"") };
    match ranges {
        [r] => one(r),
        _ => format!("[{}]", ranges.iter().map(one).collect::<Vec<_>>().join(", ")),
    }
}

/// Ranges for an id (letters, digits, `-`, `_`, `.`): `5432`, `7001-7003`, `22_3389`.
pub fn id_part(ranges: &[(u16, u16)]) -> String {
    ranges
        .iter()
        .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
        .collect::<Vec<_>>()
        .join("_")
}
