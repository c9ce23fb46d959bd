use std::process::ExitCode;

use clap::Parser;
use monitor::{cli::Cli, cmd::pipe::is_closed_stdout};

/// Keeps glibc's allocator from growing the resident size under churn.
///
/// Left to itself, glibc raises its mmap threshold each time a large block
/// is freed (up to 32 MiB), after which the table reads' large buffers come
/// from the heap and fragment it, and each thread gets an arena of its own.
/// Under a long spoofed-source flood the agent's peak then kept growing:
/// 97 MiB after 200,000 sources, 109 MiB after 1,000,000, 128 MiB after
/// 3,000,000 (`--max-flows 65536`). With the threshold fixed at 128 KiB and
/// two arenas it peaks at 96 MiB after 3,000,000 (tests/tests/sources.rs
/// with more sources). The environment (`MALLOC_MMAP_THRESHOLD_`,
/// `MALLOC_ARENA_MAX`) still wins where it is set.
fn tune_allocator() {
    for (param, value, var) in [
        (libc::M_MMAP_THRESHOLD, 128 * 1024, "MALLOC_MMAP_THRESHOLD_"),
        (libc::M_ARENA_MAX, 2, "MALLOC_ARENA_MAX"),
    ] {
        if std::env::var_os(var).is_none() {
            // SAFETY: mallopt only sets allocator parameters; called before
            // any other thread exists.
            unsafe { libc::mallopt(param, value) };
        }
    }
}

fn main() -> ExitCode {
    tune_allocator();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    match Cli::parse().run() {
        Ok(code) => code,
        // The reader of our output went away (`| head`): not an error, and
        // nothing to say (monitor::cmd::pipe explains why status 0).
        Err(e) if is_closed_stdout(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monitor: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
