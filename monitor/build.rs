//! Embeds the kernel object built by `cargo xtask build` and records the git
//! commit for `--version`.
//!
//! The object comes from MONITOR_EBPF_OBJECT (xtask sets it; then it must
//! exist), else from the target directory this build writes to, wherever
//! CARGO_TARGET_DIR puts it. Without either the crate still builds, so that
//! the engine and pcap code can be developed and tested without the BPF
//! toolchain; loading then fails with a clear message.
use std::{env, path::PathBuf};

#[path = "build/locate.rs"]
mod locate;

fn main() {
    println!("cargo:rerun-if-env-changed=MONITOR_EBPF_OBJECT");
    println!("cargo:rerun-if-changed=build/locate.rs");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let out = out_dir.join("monitor-ebpf.o");
    let given = env::var_os("MONITOR_EBPF_OBJECT").map(PathBuf::from);
    match locate::kernel_object(given, &out_dir) {
        Ok(Some(obj)) => {
            println!("cargo:rerun-if-changed={}", obj.display());
            std::fs::copy(&obj, &out).expect("copy the kernel object into OUT_DIR");
        }
        Ok(None) => {
            // Built later by `cargo xtask build`: look again once it is there.
            if let Some(t) = out_dir.ancestors().find(|d| d.join("CACHEDIR.TAG").is_file()) {
                println!("cargo:rerun-if-changed={}", t.join(locate::OBJECT_IN_TARGET).display());
            }
            println!(
                "cargo:warning=no kernel object under the target directory ({}): build with \
                 `cargo xtask build`; live capture will be unavailable",
                locate::OBJECT_IN_TARGET
            );
            std::fs::write(&out, b"").expect("write an empty kernel object placeholder");
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }

    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let commit = match locate::git_commit(&manifest) {
        Some((commit, watch)) => {
            for p in watch.iter().filter(|p| p.exists()) {
                println!("cargo:rerun-if-changed={}", p.display());
            }
            commit
        }
        None => "unknown commit".into(),
    };
    println!("cargo:rustc-env=MONITOR_GIT_COMMIT={commit}");
}
