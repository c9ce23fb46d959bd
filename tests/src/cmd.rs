//! Running external commands (ip, nft, tc, tcpdump, bpftool). A failure
//! panics with the full command line and its stderr: a harness step that did
//! not happen must never look like a monitor bug.

use std::process::{Command, Output};

/// The command line as a user would type it, for messages.
pub fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion and returns its stdout; panics when it cannot
/// start or exits non-zero.
pub fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    if !out.status.success() {
        panic!(
            "`{}` failed ({}):\n{}",
            command_line(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` to completion whatever its exit status; panics only when it
/// cannot be started (missing tool).
pub fn output(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run `{}`: {e} (is it installed?)", command_line(cmd)))
}

/// Shorthand: runs `program args...` and returns stdout.
pub fn run_args(program: &str, args: &[&str]) -> String {
    run(Command::new(program).args(args))
}

/// Runs `program args...` with `input` on stdin and returns stdout.
pub fn run_with_stdin(cmd: &mut Command, input: &str) -> String {
    use std::io::Write as _;
    use std::process::Stdio;
    let line = command_line(cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{line}`: {e} (is it installed?)"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .unwrap_or_else(|e| panic!("writing stdin of `{line}`: {e}"));
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("waiting for `{line}`: {e}"));
    if !out.status.success() {
        panic!(
            "`{line}` failed ({}):\n{}\ninput was:\n{input}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}
