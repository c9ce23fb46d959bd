//! The build script's choice of kernel object (monitor/build/locate.rs,
//! included here as build.rs includes it): it honours the target directory
//! that OUT_DIR lies in, wherever CARGO_TARGET_DIR puts it, and a kernel
//! object that xtask promised but that is missing is an error.

#[path = "../build/locate.rs"]
#[allow(dead_code)]
mod locate;

use std::path::Path;

/// A target directory as cargo lays it out, with the build's OUT_DIR.
fn target_tree(root: &Path, with_object: bool) -> std::path::PathBuf {
    std::fs::write(root.join("CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55\n").unwrap();
    let out_dir = root.join("release/build/monitor-0123456789abcdef/out");
    std::fs::create_dir_all(&out_dir).unwrap();
    if with_object {
        let obj = root.join(locate::OBJECT_IN_TARGET);
        std::fs::create_dir_all(obj.parent().unwrap()).unwrap();
        std::fs::write(&obj, b"\x7fELF").unwrap();
    }
    out_dir
}

#[test]
fn the_object_is_found_in_the_target_directory_out_dir_lies_in() {
    let custom = tempfile::tempdir().unwrap(); // as CARGO_TARGET_DIR=/somewhere/else
    let out_dir = target_tree(custom.path(), true);
    let found = locate::kernel_object(None, &out_dir).unwrap();
    assert_eq!(found, Some(custom.path().join(locate::OBJECT_IN_TARGET)));
}

#[test]
fn a_cross_build_finds_the_object_above_its_target_triple() {
    let t = tempfile::tempdir().unwrap();
    target_tree(t.path(), true);
    let out_dir = t.path().join("x86_64-unknown-linux-gnu/release/build/monitor-0123/out");
    std::fs::create_dir_all(&out_dir).unwrap();
    assert_eq!(locate::kernel_object(None, &out_dir).unwrap(), Some(t.path().join(locate::OBJECT_IN_TARGET)));
}

#[test]
fn without_an_object_the_user_space_still_builds() {
    let t = tempfile::tempdir().unwrap();
    let out_dir = target_tree(t.path(), false);
    assert_eq!(locate::kernel_object(None, &out_dir).unwrap(), None);
}

#[test]
fn a_promised_object_that_is_missing_is_an_error_saying_what_to_do() {
    let t = tempfile::tempdir().unwrap();
    let out_dir = target_tree(t.path(), true);
    let missing = t.path().join("nowhere/monitor-ebpf");
    let err = locate::kernel_object(Some(missing.clone()), &out_dir).unwrap_err();
    assert!(err.contains(&missing.display().to_string()) && err.contains("cargo xtask build"), "{err}");
    let given = t.path().join(locate::OBJECT_IN_TARGET);
    assert_eq!(locate::kernel_object(Some(given.clone()), &out_dir).unwrap(), Some(given));
}

#[test]
fn the_commit_is_the_checkouts_head() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some((commit, watch)) = locate::git_commit(dir) else {
        eprintln!("skipped: {} is not a git checkout (a source tarball)", dir.display());
        return;
    };
    let head =
        std::process::Command::new("git").args(["rev-parse", "HEAD"]).current_dir(dir).output().unwrap();
    let head = String::from_utf8(head.stdout).unwrap();
    assert!(head.starts_with(&commit) && commit.len() == 12, "{commit} vs HEAD {head}");
    assert!(
        watch.iter().any(|p| p.ends_with("HEAD") && p.is_file()),
        "HEAD is watched for rebuilds: {watch:?}"
    );
}

#[test]
fn version_names_the_commit() {
    let out = assert_cmd::Command::cargo_bin("monitor").unwrap().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let want = format!("monitor {} (", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&want) && text.trim_end().ends_with(')'), "--version printed {text:?}");
    if let Some((commit, _)) = locate::git_commit(Path::new(env!("CARGO_MANIFEST_DIR"))) {
        assert!(text.contains(&commit), "--version {text:?} lacks the commit {commit}");
    }
}
