//! Where build.rs finds the kernel object and the commit it builds from.
//! A module of its own so that `monitor/tests/build_locate.rs` tests the
//! same code.

use std::path::{Path, PathBuf};

/// The kernel object's path below a target directory, as `cargo xtask build`
/// leaves it.
pub const OBJECT_IN_TARGET: &str = "bpfel-unknown-none/release/monitor-ebpf";

/// Which kernel object to embed.
///
/// - `given` (MONITOR_EBPF_OBJECT, which `cargo xtask` always sets) must
///   exist: a build that was promised its object and would embed none is an
///   error, not a binary that fails at run time.
/// - Otherwise the object under the target directory this build writes to,
///   found from `out_dir` (OUT_DIR lies inside it, wherever
///   CARGO_TARGET_DIR or `build.target-dir` put it). `Ok(None)` when there
///   is none: a plain `cargo build` of the user space, without the BPF
///   toolchain, still builds.
pub fn kernel_object(given: Option<PathBuf>, out_dir: &Path) -> Result<Option<PathBuf>, String> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(Some(p))
        } else {
            Err(format!(
                "MONITOR_EBPF_OBJECT is {}, which does not exist: build the kernel programs first \
                 (`cargo xtask build` does both steps), or unset it",
                p.display()
            ))
        };
    }
    Ok(out_dir.ancestors().map(|d| d.join(OBJECT_IN_TARGET)).find(|p| p.is_file()))
}

/// The commit `git describe` names for the checkout at `dir`, with the files
/// a new commit or checkout changes (for `cargo:rerun-if-changed`); `None`
/// outside a git checkout (a source tarball).
pub fn git_commit(dir: &Path) -> Option<(String, Vec<PathBuf>)> {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").args(args).current_dir(dir).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let mut watch = Vec::new();
    if let Some(head) = git(&["rev-parse", "--path-format=absolute", "--git-path", "HEAD"]) {
        watch.push(PathBuf::from(head));
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(r) = git(&["rev-parse", "--path-format=absolute", "--git-path", &branch]) {
            watch.push(PathBuf::from(r));
        }
        if let Some(p) = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]) {
            watch.push(PathBuf::from(p).join("packed-refs"));
        }
    }
    Some((commit, watch))
}
