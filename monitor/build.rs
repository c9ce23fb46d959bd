//! Embeds the kernel object built by `cargo xtask build` (path in
//! MONITOR_EBPF_OBJECT, else the default bpf target dir). Without it the
//! crate still builds, so that the engine and pcap code can be developed and
//! tested without the BPF toolchain; loading then fails with a clear message.
use std::{env, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=MONITOR_EBPF_OBJECT");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let default = manifest.join("../target/bpfel-unknown-none/release/monitor-ebpf");
    let obj = env::var_os("MONITOR_EBPF_OBJECT").map(PathBuf::from).unwrap_or(default);
    println!("cargo:rerun-if-changed={}", obj.display());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("monitor-ebpf.o");
    if obj.is_file() {
        std::fs::copy(&obj, &out).expect("copy the kernel object into OUT_DIR");
    } else {
        println!("cargo:warning=kernel object {} not found: build with `cargo xtask build`; live capture will be unavailable", obj.display());
        std::fs::write(&out, b"").expect("write an empty kernel object placeholder");
    }
}
