//! `monitor completions SHELL` and the hidden `monitor manpages DIR`: shell
//! completion scripts and man pages, generated from the same clap definition
//! ([`crate::cli::Cli`]) that the binary parses, so they cannot drift from it.
//! The Debian package (`cargo xtask deb`) ships both.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::Cli;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to print the script for.
    pub shell: Shell,
}

/// The shells Debian has standard completion directories for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, clap::Args)]
pub struct ManpagesArgs {
    /// Directory to write `monitor.1` and one page per subcommand into
    /// (created if missing; existing pages are overwritten).
    pub dir: PathBuf,
}

/// The completion script for `shell`, for a binary called `monitor`.
pub fn completion_script(shell: Shell) -> Vec<u8> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut completion_command(), "monitor", &mut out);
    out
}

/// The command line without its hidden subcommands, which clap_complete's
/// scripts would otherwise offer (`monitor ma<TAB>` would stop at `ma`,
/// between `matrix` and `manpages`). clap cannot remove a subcommand, so the
/// root is made anew with the visible ones; hidden ones sit only at the root
/// (a test checks that).
fn completion_command() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new("monitor")
        .version(crate::cli::VERSION)
        .args(full.get_arguments().cloned())
        .groups(full.get_groups().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd
}

/// Every man page as (file name, roff source): `monitor.1`, then one per
/// subcommand at every depth (`monitor-matrix-lint.1`), hidden ones and
/// clap's `help` subcommand left out.
pub fn man_pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    fn walk(cmd: clap::Command, out: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
        let subcommands: Vec<clap::Command> =
            cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned().collect();
        // The footer names the program and its version on every page (a
        // subcommand has no version of its own).
        let man = clap_mangen::Man::new(cmd).source(format!("monitor {}", env!("CARGO_PKG_VERSION")));
        let mut page = Vec::new();
        man.render(&mut page).with_context(|| format!("render {}", man.get_filename()))?;
        out.push((man.get_filename(), page));
        for sub in subcommands {
            walk(sub, out)?;
        }
        Ok(())
    }
    // Building fills in every subcommand's display name (`monitor-matrix-lint`,
    // the page's name) and bin name (`monitor matrix lint`, its synopsis).
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(cmd, &mut out)?;
    Ok(out)
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let script = completion_script(args.shell);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script)
        .and_then(|()| stdout.flush())
        .context("write the completion script to stdout")?;
    Ok(ExitCode::SUCCESS)
}

pub fn manpages(args: ManpagesArgs) -> anyhow::Result<ExitCode> {
    write_man_pages(&args.dir)?;
    Ok(ExitCode::SUCCESS)
}

fn write_man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("create {} (give a directory you can write to)", dir.display()))?;
    for (name, page) in man_pages()? {
        let path = dir.join(&name);
        std::fs::write(&path, page).with_context(|| format!("write {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        man_pages().unwrap().into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn a_page_for_monitor_and_every_visible_subcommand_at_every_depth() {
        let names = names();
        let mut expected = vec!["monitor.1".to_string()];
        fn visit(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let name = format!("{prefix}-{}", sub.get_name());
                out.push(format!("{name}.1"));
                visit(sub, &name, out);
            }
        }
        visit(&Cli::command(), "monitor", &mut expected);
        let (mut got, mut want) = (names.clone(), expected);
        got.sort();
        want.sort();
        assert_eq!(got, want);
        for page in
            ["monitor-matrix-lint.1", "monitor-matrix-import.1", "monitor-run.1", "monitor-completions.1"]
        {
            assert!(names.iter().any(|n| n == page), "no {page} in {names:?}");
        }
        for absent in ["monitor-manpages.1", "monitor-help.1", "monitor-matrix-help.1"] {
            assert!(!names.iter().any(|n| n == absent), "{absent} should not be generated: {names:?}");
        }
    }

    #[test]
    fn a_subcommand_page_names_its_full_command_line_and_options() {
        let pages = man_pages().unwrap();
        let (_, lint) = pages.iter().find(|(n, _)| n == "monitor-matrix-lint.1").unwrap();
        let lint = String::from_utf8_lossy(lint);
        assert!(lint.starts_with(".ie"), "not roff: {}", &lint[..lint.len().min(80)]);
        assert!(lint.contains(".TH monitor-matrix-lint 1"), "{lint}");
        assert!(lint.contains("monitor matrix lint"), "the synopsis names the full command: {lint}");
        let footer = format!("\"monitor {}\"", env!("CARGO_PKG_VERSION"));
        assert!(lint.lines().any(|l| l.starts_with(".TH") && l.contains(&footer)), "{lint}");
        assert!(lint.contains("deny\\-warnings"), "{lint}");
        // The top page lists the public subcommands, not the hidden one.
        let (_, top) = &pages[0];
        let top = String::from_utf8_lossy(top);
        assert!(top.contains("monitor\\-completions") && top.contains("monitor\\-matrix"), "{top}");
        assert!(!top.contains("manpages"), "the hidden subcommand is listed: {top}");
    }

    #[test]
    fn hidden_subcommands_sit_only_at_the_root() {
        fn visit(cmd: &clap::Command, depth: usize) {
            for sub in cmd.get_subcommands() {
                assert!(
                    depth == 0 || !sub.is_hide_set(),
                    "hidden subcommand {} below the root: completion_command() leaves only the root's out",
                    sub.get_name()
                );
                visit(sub, depth + 1);
            }
        }
        visit(&Cli::command(), 0);
    }

    #[test]
    fn completion_scripts_name_the_subcommands_but_not_the_hidden_one() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = String::from_utf8(completion_script(shell)).unwrap();
            for sub in ["matrix", "run", "check", "flows", "report", "completions", "lint", "import"] {
                assert!(script.contains(sub), "{shell:?} script lacks {sub}");
            }
            assert!(!script.contains("manpages"), "{shell:?} script offers the hidden subcommand");
        }
    }

    #[test]
    fn manpages_reports_an_unwritable_directory_by_name() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let dir = file.path().join("man");
        let err = write_man_pages(&dir).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&dir.display().to_string()) && msg.contains("directory"), "{msg}");
    }
}
