//! Developer commands: `cargo xtask setup|build|run|test|demo|bench|lint|deb|image`.
//!
//! The kernel crate cannot be built by rustup here (no rust-src), so it is
//! built with Debian's rustc-web, which ships a prebuilt `core` for
//! bpfel-unknown-none, and bpf-linker 0.13 linked against LLVM 22. `setup`
//! installs all of it idempotently; every other command runs it when
//! something is missing.

mod package;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Build, run, test and benchmark the monitor")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the toolchain and test tools (idempotent).
    Setup,
    /// Build the kernel object, then the user-space binary (target/release/monitor).
    Build,
    /// Build, then run `monitor ARGS` as root. Without ARGS: the live monitor
    /// against the bundled RP-PAM example, on every interface, alerts as text.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test: format, clippy, unit, kernel and end-to-end.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then the monitor on a simulated RP-PAM HA cluster in network
    /// namespaces, with traffic that departs from the matrix three ways (as root).
    Demo {
        /// Stop after N seconds and show the alert stream instead of `monitor top`.
        #[arg(long, value_name = "N")]
        seconds: Option<u64>,
    },
    /// Run a benchmark: kernel, engine, replay (`monitor check` against softflowd, nfpcapd and
    /// argus on a generated capture), replay-criterion (the library's replay loop), series or e2e.
    /// Not a test.
    Bench {
        which: String,
        /// Options for the benchmark's runner, e.g. `replay --rounds 9 --threads 1,2`, `kernel --only
        /// mixed`, `e2e --big-flows 0`; `cargo xtask bench kernel -- --help` lists a runner's own.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// cargo fmt --check and clippy -D warnings on every crate.
    Lint,
    /// Build, then package target/debian/monitor_<version>_<arch>.deb (cargo-deb).
    Deb,
    /// Build, then the DaemonSet's image localhost/monitor:<version> (podman, FROM scratch).
    Image,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match cli.command {
        Cmd::Setup => setup::install_all(),
        Cmd::Build => build(&root),
        Cmd::Run { args } => {
            build(&root)?;
            let args = if args.is_empty() { default_run_args(&root) } else { args };
            run_as_root(&monitor_bin(), &args)
        }
        Cmd::Test { args } => test(&root, &args),
        Cmd::Demo { seconds } => {
            build(&root)?;
            cargo(&root, &["build", "--release", "-p", "monitor-tests", "--bin", "demo"])?;
            let mut args = vec!["--out".to_string(), target_dir().join("demo").display().to_string()];
            if let Some(n) = seconds {
                args.extend(["--seconds".to_string(), n.to_string()]);
            }
            run_as_root(&target_dir().join("release/demo"), &args)
        }
        Cmd::Bench { which, args } => bench(&root, &which, &args),
        Cmd::Lint => lint(&root),
        Cmd::Deb => package::deb(&root).map(drop),
        Cmd::Image => package::image(&root).map(drop),
    }
}

/// A newcomer's first run: the RP-PAM example, so the alert stream shows at once.
fn default_run_args(root: &Path) -> Vec<String> {
    let example = root.join("examples/rp-pam");
    vec![
        "run".into(),
        "--matrix".into(),
        example.join("matrix.yaml").display().to_string(),
        "--inventory".into(),
        example.join("inventory.ini").display().to_string(),
        "--format".into(),
        "text".into(),
    ]
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// The directory cargo builds into: CARGO_TARGET_DIR, `build.target-dir`
/// or `target/`, as `cargo metadata` reports it (read once).
fn target_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new(env_cargo())
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(workspace_root())
            .output()
            .expect("run `cargo metadata`");
        assert!(out.status.success(), "`cargo metadata` failed: {}", String::from_utf8_lossy(&out.stderr));
        let meta: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("`cargo metadata` prints JSON");
        let dir = meta["target_directory"].as_str().expect("`cargo metadata` names the target directory");
        PathBuf::from(dir)
    })
}

/// The kernel object's path after `build_ebpf`.
fn ebpf_object() -> PathBuf {
    target_dir().join("bpfel-unknown-none/release/monitor-ebpf")
}

/// The user-space binary after `build`.
fn monitor_bin() -> PathBuf {
    target_dir().join("release/monitor")
}

fn build_ebpf(root: &Path) -> Result<()> {
    setup::ensure_kernel_toolchain()?;
    println!("xtask: building the kernel programs (Debian rustc-web, bpf-linker, bpfel-unknown-none)");
    let status = Command::new(setup::DEBIAN_CARGO)
        .args(["build", "-p", "monitor-ebpf", "--release", "--target", "bpfel-unknown-none", "--target-dir"])
        .arg(target_dir())
        .env("RUSTC", setup::DEBIAN_RUSTC)
        // Scoped to the crates that need unstable features (asm_experimental_arch,
        // core_intrinsics); RUSTC_BOOTSTRAP=1 would make aya-build ask for build-std.
        .env("RUSTC_BOOTSTRAP", "aya_ebpf,monitor_ebpf")
        .env("PATH", setup::path_with_tools())
        .env_remove("RUSTFLAGS")
        .current_dir(root)
        .status()
        .context("run Debian's cargo")?;
    if !status.success() {
        bail!("building the kernel programs failed (see above)");
    }
    Ok(())
}

fn build(root: &Path) -> Result<()> {
    build_ebpf(root)?;
    if !ebpf_object().is_file() {
        bail!("the kernel build left no object at {}: see its output above", ebpf_object().display());
    }
    println!("xtask: building user space ({})", monitor_bin().display());
    cargo(root, &["build", "--release", "-p", "monitor"])
}

/// Runs rustup's cargo with the kernel object wired in.
fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    let status =
        cargo_command(root).args(args).status().with_context(|| format!("run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed", args.join(" "));
    }
    Ok(())
}

/// Rustup's cargo, in the workspace, with the tools on PATH and the kernel
/// object and binary named for build.rs and the tests.
fn cargo_command(root: &Path) -> Command {
    let mut cmd = Command::new(env_cargo());
    // Set whenever the object exists, so that every command here builds the
    // user space alike (no rebuild between them); monitor/build.rs then
    // fails rather than embed nothing. Commands that need no kernel (the
    // engine benchmarks) still run before it was ever built.
    if ebpf_object().is_file() {
        cmd.env("MONITOR_EBPF_OBJECT", ebpf_object());
    }
    // The firewalld output is checked with it when setup extracted it.
    if setup::firewall_offline_cmd().is_file() && std::env::var_os("MONITOR_FIREWALL_OFFLINE_CMD").is_none() {
        cmd.env("MONITOR_FIREWALL_OFFLINE_CMD", setup::firewall_offline_cmd());
    }
    cmd.env("MONITOR_BIN", monitor_bin()).env("PATH", setup::path_with_tools()).current_dir(root);
    cmd
}

fn env_cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run_as_root(bin: &Path, args: &[String]) -> Result<()> {
    let mut cmd = if is_root() {
        Command::new(bin)
    } else {
        println!("xtask: not root; running through sudo");
        let mut c = Command::new("sudo");
        c.arg("-E").arg(bin);
        c
    };
    let status = cmd.args(args).status().with_context(|| format!("run {}", bin.display()))?;
    std::process::exit(status.code().unwrap_or(1));
}

fn lint(root: &Path) -> Result<()> {
    println!("xtask: cargo fmt --check");
    cargo(root, &["fmt", "--all", "--", "--check"])?;
    println!("xtask: cargo clippy -D warnings");
    cargo(root, &["clippy", "--release", "--workspace", "--all-targets", "--", "-D", "warnings"])
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    if !is_root() {
        bail!("the tests load eBPF programs and build network namespaces: run `cargo xtask test` as root");
    }
    setup::install_all()?;
    build(root)?;
    package::for_tests(root)?;
    lint(root)?;
    println!("xtask: running every test (unit, kernel, end-to-end)");
    let mut args: Vec<&str> = vec!["test", "--release", "--workspace"];
    args.extend(extra.iter().map(String::as_str));
    cargo_within(root, &args, test_deadline()?)?;
    build_is_fresh(root)
}

/// How long the test run may take before it is stopped as hung: the suite
/// takes about 12 minutes here, and CI has 90 for setup, build and tests, so
/// a test that hangs fails the run with its name on screen (libtest prints
/// "has been running for over 60 seconds") instead of using up CI's time.
/// `MONITOR_TEST_DEADLINE_MINUTES` changes it.
fn test_deadline() -> Result<std::time::Duration> {
    const VAR: &str = "MONITOR_TEST_DEADLINE_MINUTES";
    let minutes = match std::env::var(VAR) {
        Ok(v) => v.trim().parse::<u64>().ok().filter(|&m| m > 0).with_context(|| {
            format!("{VAR}={v:?} is not a whole number of minutes above 0: set it to, say, 60, or unset it")
        })?,
        Err(_) => 40,
    };
    Ok(std::time::Duration::from_secs(minutes * 60))
}

/// The process group `cargo_within` runs, for the signal handler.
static GROUP: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward_to_group(signal: libc::c_int) {
    let group = GROUP.load(std::sync::atomic::Ordering::Relaxed);
    if group > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(-group, signal) };
    }
}

/// `cargo ARGS`, stopped with everything it started when it runs past
/// `deadline`. It runs in a process group of its own so that the test
/// binaries and the programs they started go with it; Ctrl-C and SIGTERM
/// sent to xtask are passed on to that group.
fn cargo_within(root: &Path, args: &[&str], deadline: std::time::Duration) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let line = format!("cargo {}", args.join(" "));
    let mut child =
        cargo_command(root).args(args).process_group(0).spawn().with_context(|| format!("run {line}"))?;
    GROUP.store(child.id() as i32, std::sync::atomic::Ordering::Relaxed);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only reads an atomic and calls kill(2).
        unsafe { libc::signal(signal, forward_to_group as *const () as libc::sighandler_t) };
    }
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().with_context(|| format!("wait for {line}"))? {
            break status;
        }
        if start.elapsed() > deadline {
            // SAFETY: kill(2) on the group we started.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            bail!(
                "`{line}` ran past its {} minutes and was stopped with every test it had started: a test \
                 hangs (the one libtest named as running for over 60 seconds, above); \
                 MONITOR_TEST_DEADLINE_MINUTES raises the limit",
                deadline.as_secs() / 60
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    GROUP.store(0, std::sync::atomic::Ordering::Relaxed);
    if !status.success() {
        bail!("`{line}` failed");
    }
    Ok(())
}

/// Fails when the test build left the release build stale: switching
/// between `cargo xtask test` and `cargo xtask build` must rebuild nothing,
/// so the features the tests turn on are named in the normal dependencies
/// too (monitor/Cargo.toml).
fn build_is_fresh(root: &Path) -> Result<()> {
    println!("xtask: checking that the test build left the release build as it was");
    let out = cargo_command(root)
        .args(["build", "--release", "-p", "monitor", "--message-format", "json"])
        .output()
        .context("run cargo build")?;
    if !out.status.success() {
        bail!("`cargo build --release -p monitor` failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let rebuilt: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["fresh"] == false)
        .map(|m| m["package_id"].as_str().unwrap_or("?").to_string())
        .collect();
    if !rebuilt.is_empty() {
        bail!(
            "after the tests, `cargo build --release -p monitor` rebuilt {} crates: {}; a test-only \
             feature reaches a crate the binary links: name it in monitor/Cargo.toml's dependencies",
            rebuilt.len(),
            rebuilt.join(", ")
        );
    }
    Ok(())
}

fn bench(root: &Path, which: &str, args: &[String]) -> Result<()> {
    // Every runner gets the user's options after `--`, so none is dropped unseen.
    let run = |cmd: &[&str]| {
        let mut cmd = cmd.to_vec();
        if !args.is_empty() {
            cmd.push("--");
            cmd.extend(args.iter().map(String::as_str));
        }
        cargo(root, &cmd)
    };
    match which {
        "engine" => {
            run(&["bench", "-p", "monitor", "--bench", "engine"])?;
            run(&["bench", "-p", "monitor", "--bench", "replay"])
        }
        "replay" => {
            build(root)?;
            setup::ensure_packages(setup::BENCH_PACKAGES)?;
            run(&["run", "--release", "-p", "monitor-tests", "--bin", "bench-replay"])
        }
        "replay-criterion" => run(&["bench", "-p", "monitor", "--bench", "replay"]),
        "series" => run(&["bench", "-p", "monitor", "--bench", "series"]),
        "kernel" => {
            build(root)?;
            run(&["run", "--release", "-p", "monitor-tests", "--bin", "bench-kernel"])
        }
        "e2e" => {
            build(root)?;
            run(&["run", "--release", "-p", "monitor-tests", "--bin", "bench-e2e"])
        }
        other => {
            bail!("unknown benchmark `{other}`: use kernel, engine, replay, replay-criterion, series or e2e")
        }
    }
}
