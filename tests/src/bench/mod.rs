//! The kernel benchmark (`cargo xtask bench kernel`): the in-kernel cost of
//! the programs per packet (BPF_PROG_TEST_RUN), and veth throughput between
//! two namespaces with and without the monitor attached. A measurement,
//! not a test: it prints a table and writes every raw sample as JSON.
//!
//! Compiled into the `bench-kernel` binary only (src/bin/bench_kernel.rs).

pub mod floor;
pub mod frame;
pub mod mix;
pub mod mixrun;
pub mod replay;
pub mod report;
pub mod testrun;
pub mod veth;

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGINT/SIGTERM: the bench stops at the next step and unwinds, so
/// that its namespaces are removed.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Turns SIGINT and SIGTERM into [`stop_requested`].
pub fn catch_signals() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Fails once the user asked the bench to stop.
pub fn check_stop() -> anyhow::Result<()> {
    if stop_requested() {
        anyhow::bail!("interrupted");
    }
    Ok(())
}

/// Median of `xs` (mean of the two middle values for an even count).
pub fn median(xs: &[f64]) -> f64 {
    assert!(!xs.is_empty(), "median of no samples");
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Rotates `items` left by `by`: each round starts with a different
/// configuration, so none always runs first (cold) or last.
pub fn rotated<T: Clone>(items: &[T], by: usize) -> Vec<T> {
    let n = items.len();
    (0..n).map(|i| items[(i + by) % n].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn rotation_starts_each_round_elsewhere() {
        assert_eq!(rotated(&[1, 2, 3], 1), vec![2, 3, 1]);
        assert_eq!(rotated(&[1, 2, 3], 3), vec![1, 2, 3]);
    }
}
