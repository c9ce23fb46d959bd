//! The Debian package and the container image, used the way a platform
//! engineer uses them: `dpkg -i`, the binary, the man pages, the systemd
//! unit, the example configuration, bash completion, `dpkg -r` and purge;
//! `podman build` of the Containerfile and `podman run` of the image.
//!
//! Needs root (dpkg installs into this system; podman's system storage) and
//! what `cargo xtask test` makes before the tests run: the package
//! `<target>/debian/monitor_<version>_<arch>.deb` (`cargo xtask deb`) and the
//! image's build context `<target>/image/` (staged by `cargo xtask image`).
//! The package test purges the package again, pass or fail.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use clap::CommandFactory;
use monitor_tests::{
    cmd::{command_line, output, run},
    monitor::require_monitor_bin,
    require_root, target_dir,
};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// `monitor --version` of the binary under test: the package and the image
/// must carry that same build (version and commit), not an older one.
fn built_version() -> String {
    run(Command::new(require_monitor_bin()).arg("--version")).trim().to_string()
}

fn deb_path() -> PathBuf {
    let arch = run(Command::new("dpkg").arg("--print-architecture"));
    let deb = target_dir().join(format!("debian/monitor_{VERSION}_{}.deb", arch.trim()));
    assert!(
        deb.is_file(),
        "{} not found: build it with `cargo xtask deb` (cargo xtask test does)",
        deb.display()
    );
    deb
}

/// The man pages the package must hold: `monitor.1` and one per visible
/// subcommand at every depth, from the same clap definition as the binary.
fn expected_pages() -> BTreeSet<String> {
    fn visit(cmd: &clap::Command, name: &str, out: &mut BTreeSet<String>) {
        out.insert(format!("{name}.1.gz"));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            visit(sub, &format!("{name}-{}", sub.get_name()), out);
        }
    }
    let mut out = BTreeSet::new();
    visit(&monitor::cli::Cli::command(), "monitor", &mut out);
    out
}

fn package_status() -> Option<String> {
    let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", "monitor"]).output().unwrap();
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Purges the package when the test ends, however it ends.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let out = Command::new("dpkg").args(["--purge", "monitor"]).output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            eprintln!("dpkg --purge monitor failed: {out:?}");
        }
    }
}

/// Completes `words` (the last one being completed) with bash and
/// bash-completion as an interactive shell does: the completion file is
/// found and loaded on demand from bash-completion's directory.
fn bash_complete(words: &[&str]) -> Vec<String> {
    let script = format!(
        r#"
        source /usr/share/bash-completion/bash_completion || exit 90
        _completion_loader monitor
        spec=$(complete -p monitor) || exit 91
        fn=$(sed -n 's/.* -F \([^ ]*\) .*/\1/p' <<<"$spec")
        [ -n "$fn" ] || exit 92
        COMP_WORDS=({words})
        COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
        COMP_LINE="${{COMP_WORDS[*]}}"
        COMP_POINT=${{#COMP_LINE}}
        COMPREPLY=()
        "$fn" monitor "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
        printf '%s\n' "${{COMPREPLY[@]}}"
        "#,
        words = words.join(" ")
    );
    let out = run(Command::new("bash").args(["--norc", "--noprofile", "-c", &script]));
    out.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

/// `monitor matrix lint` of the example configuration in /etc/monitor, as
/// the package installs it and the DaemonSet mounts it.
const LINT_ETC: [&str; 6] = [
    "matrix",
    "lint",
    "/etc/monitor/matrix.yaml",
    "--inventory",
    "/etc/monitor/inventory.ini",
    "--deny-warnings",
];
#[test]
fn the_package_installs_works_and_removes_all_but_its_conffiles() {
    require_root();
    let deb = deb_path();
    let built = built_version();
    // The test purges what it installs: it must not take an operator's
    // installed package (and edited /etc/monitor) with it.
    if let Some(status) = package_status() {
        panic!("the monitor package is already on this machine ({status}): the test would purge it; dpkg --purge monitor first");
    }
    let bin = Path::new("/usr/bin/monitor");
    assert!(!bin.exists(), "{} exists and is not from the package: not overwriting it", bin.display());
    let _purge = Purge;

    run(Command::new("dpkg").arg("-i").arg(&deb));
    assert_eq!(package_status().as_deref(), Some("install ok installed"));
    let files: Vec<PathBuf> =
        run(Command::new("dpkg").args(["-L", "monitor"])).lines().map(PathBuf::from).collect();
    let has = |p: &str| files.iter().any(|f| f == Path::new(p));

    // The binary, on PATH, the very build under test.
    assert!(has("/usr/bin/monitor"), "{files:?}");
    let version = run(Command::new("monitor").arg("--version"));
    assert_eq!(version.trim(), built, "the package holds another build: run `cargo xtask deb` again");
    assert!(version.starts_with(&format!("monitor {VERSION}")), "{version}");

    // A man page for monitor and for every subcommand, each rendered by man
    // without a warning, and found by name.
    let man1 = Path::new("/usr/share/man/man1");
    let pages: BTreeSet<String> = files
        .iter()
        .filter(|f| f.parent() == Some(man1))
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(pages, expected_pages(), "man pages in the package vs. the clap definition");
    for page in &pages {
        let path = man1.join(page);
        let mut man = Command::new("man");
        man.args(["--warnings", "-l"]).arg(&path).env("MANWIDTH", "80").env("LANG", "C.UTF-8");
        let out = output(&mut man);
        let text = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = page.trim_end_matches(".1.gz");
        assert!(
            out.status.success() && stderr.is_empty(),
            "`{}`: {}\n{stderr}",
            command_line(&man),
            out.status
        );
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "`{}` rendered:\n{text}",
            command_line(&man)
        );
        // NAME, then `monitor-matrix-lint - Check a matrix...` (justified).
        let title = text.lines().skip_while(|l| l.trim() != "NAME").nth(1).unwrap_or("");
        assert_eq!(title.split_whitespace().take(2).collect::<Vec<_>>(), [name, "-"], "{page}:\n{text}");
        assert!(text.lines().count() > 10, "{page} is nearly empty:\n{text}");
    }
    let found = run(Command::new("man").args(["-w", "monitor-matrix-lint"]));
    assert_eq!(found.trim(), man1.join("monitor-matrix-lint.1.gz").display().to_string());

    // The unit: where systemd looks, running the packaged binary on the
    // packaged conffiles, accepted by systemd, and neither enabled nor started.
    let unit = "/usr/lib/systemd/system/monitor.service";
    assert!(has(unit), "{files:?}");
    let text = std::fs::read_to_string(unit).unwrap();
    let exec = text.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart=");
    assert!(
        exec.starts_with("/usr/bin/monitor run ")
            && exec.contains("--matrix /etc/monitor/matrix.yaml")
            && exec.contains("--inventory /etc/monitor/inventory.ini"),
        "{exec}"
    );
    let out = output(Command::new("systemd-analyze").args(["verify", "monitor.service"]));
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let ours: Vec<&str> = report.lines().filter(|l| l.contains("monitor")).collect();
    assert!(out.status.success() && ours.is_empty(), "systemd-analyze verify monitor.service:\n{report}");
    let enabled = output(Command::new("systemctl").args(["is-enabled", "monitor.service"]));
    assert_eq!(String::from_utf8_lossy(&enabled.stdout).trim(), "disabled", "{enabled:?}");
    let wants: Vec<PathBuf> = std::fs::read_dir("/etc/systemd/system")
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path().join("monitor.service")))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    assert!(wants.is_empty(), "the package enabled the unit: {wants:?}");

    // The example configuration: conffiles, and clean for the installed monitor.
    let conffiles = ["/etc/monitor/matrix.yaml", "/etc/monitor/inventory.ini"];
    let listed = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "monitor"]));
    for c in conffiles {
        assert!(
            listed.lines().any(|l| l.split_whitespace().next() == Some(c)),
            "{c} is no conffile:\n{listed}"
        );
    }
    let lint = run(Command::new("monitor").args(LINT_ETC));
    assert!(lint.contains("0 warnings"), "{lint}");

    // Bash completion, from its standard place, loaded on demand.
    assert!(has("/usr/share/bash-completion/completions/monitor"), "{files:?}");
    assert_eq!(bash_complete(&["monitor", "ma"]), ["matrix"], "monitor ma<TAB>");
    assert_eq!(bash_complete(&["monitor", "matrix", "l"]), ["lint"], "monitor matrix l<TAB>");
    for other in
        ["/usr/share/zsh/vendor-completions/_monitor", "/usr/share/fish/vendor_completions.d/monitor.fish"]
    {
        assert!(has(other), "{other} not in the package");
        let script = std::fs::read_to_string(other).unwrap();
        assert!(script.contains("matrix") && !script.contains("manpages"), "{other}:\n{script}");
    }
    for doc in ["/usr/share/doc/monitor/README.md", "/usr/share/doc/monitor/docs/deploy.md"] {
        assert!(has(doc), "{doc} not in the package");
    }

    // An operator edits a conffile; removing the package keeps it, and only it.
    let edited = format!("{}# edited by the operator\n", std::fs::read_to_string(conffiles[0]).unwrap());
    std::fs::write(conffiles[0], &edited).unwrap();
    run(Command::new("dpkg").args(["-r", "monitor"]));
    assert_eq!(package_status().as_deref(), Some("deinstall ok config-files"));
    for f in files.iter().filter(|f| !f.is_dir() && !conffiles.contains(&&*f.to_string_lossy())) {
        assert!(f.symlink_metadata().is_err(), "{} is still there after dpkg -r", f.display());
    }
    assert!(output(Command::new("sh").args(["-c", "command -v monitor"])).stdout.is_empty());
    assert_eq!(
        std::fs::read_to_string(conffiles[0]).unwrap(),
        edited,
        "dpkg -r must keep the edited conffile"
    );
    assert!(Path::new(conffiles[1]).is_file());

    // Purge: nothing of it is left.
    run(Command::new("dpkg").args(["--purge", "monitor"]));
    assert_eq!(package_status(), None, "dpkg still knows the package after purge");
    assert!(!Path::new("/etc/monitor").exists(), "/etc/monitor survives the purge");
    let mask = Path::new("/etc/systemd/system/monitor.service");
    assert!(mask.symlink_metadata().is_err(), "{} (the mask of dpkg -r) survives the purge", mask.display());
}

/// Removes the test's image when the test ends.
struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rmi", "--force", &self.0]).output();
    }
}

/// A `--ulimit` for podman: at most 1024, and no more than this process
/// has. Left alone, podman (as root) asks for RLIMIT_NOFILE and RLIMIT_NPROC
/// above the hard limits, which fails without CAP_SYS_RESOURCE, as in this
/// sandbox; the runtime's own hard RLIMIT_NPROC here is 32768, below this
/// process's. What runs in the test needs few of either.
fn ulimit(resource: libc::__rlimit_resource_t, name: &str) -> String {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(resource, &mut lim) }, 0, "getrlimit {name}");
    let n = lim.rlim_cur.min(1024);
    format!("{name}={n}:{n}")
}

/// `podman run` as these test machines allow: runc instead of crun, which
/// refuses a cgroup v2 hierarchy that holds a controller beside the v1 ones
/// ("cgroups in hybrid mode not supported"), this process's rlimits, and no
/// network.
fn podman_run() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc", "run", "--rm", "--pull=never", "--network", "none", "--ulimit"])
        .arg(ulimit(libc::RLIMIT_NOFILE, "nofile"))
        .arg("--ulimit")
        .arg(ulimit(libc::RLIMIT_NPROC, "nproc"));
    cmd
}

#[test]
fn the_image_builds_without_a_registry_and_runs_the_monitor() {
    require_root();
    let built = built_version();
    let context = target_dir().join("image");
    assert!(
        context.join("rootfs/usr/bin/monitor").is_file(),
        "{} holds no staged rootfs: run `cargo xtask image` (cargo xtask test stages it)",
        context.display()
    );
    let image = format!("localhost/monitor-test-{}:{VERSION}", std::process::id());
    let _remove = RemoveImage(image.clone());
    run(Command::new("podman")
        .args(["build", "--pull=never", "--tag", &image, "--file"])
        .arg(workspace().join("Containerfile"))
        .arg(&context));
    let entrypoint =
        run(Command::new("podman").args(["image", "inspect", "--format", "{{.Config.Entrypoint}}", &image]));
    assert_eq!(entrypoint.trim(), "[/usr/bin/monitor]");

    // The binary, its libraries and the loader are all in the image.
    let version = run(podman_run().arg(&image).arg("--version"));
    assert_eq!(version.trim(), built, "the image holds another build: run `cargo xtask image` again");

    // It reads a matrix and an inventory mounted where the DaemonSet mounts its ConfigMap.
    let config = format!("{}:/etc/monitor:ro", workspace().join("deploy/etc").display());
    let lint = run(podman_run().args(["--volume", &config]).arg(&image).args(LINT_ETC));
    assert!(lint.contains("0 warnings"), "{lint}");

    // tc, which the monitor runs on kernels before 6.6, has its libraries too.
    let tc = run(podman_run().args(["--entrypoint", "/usr/sbin/tc"]).arg(&image).arg("-V"));
    assert!(tc.contains("iproute2"), "{tc}");
}
