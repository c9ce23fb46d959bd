//! SVG by Graphviz: the DOT form piped through `dot -Tsvg`. Laying out a
//! graph well is Graphviz's job; the monitor does not carry a layout
//! engine of its own, so SVG needs the `dot` program (Debian package
//! `graphviz`).

use std::{
    ffi::OsStr,
    io::{self, Write as _},
    process::{Command, Stdio},
};

/// The program run by [`render`].
pub const DOT: &str = "dot";

#[derive(Debug, thiserror::Error)]
pub enum SvgError {
    #[error(
        "SVG is drawn by Graphviz's `{program}`, which is not installed (not found on PATH): install the \
         Debian package `graphviz` (apt-get install graphviz), or write the DOT form and render it elsewhere"
    )]
    NotInstalled { program: String },
    #[error("cannot run Graphviz's `{program}`: {source}")]
    Run { program: String, source: io::Error },
    #[error("Graphviz's `{program} -Tsvg` failed ({status}): {stderr}")]
    Failed { program: String, status: String, stderr: String },
}

/// The SVG of `graph` as text, to inline in a page.
pub fn of_graph(graph: &super::Graph) -> Result<String, SvgError> {
    let svg = render(&super::render::dot(graph))?;
    Ok(String::from_utf8_lossy(&svg).into_owned())
}

/// The SVG of the DOT text `dot`, by Graphviz's `dot` on PATH.
pub fn render(dot: &str) -> Result<Vec<u8>, SvgError> {
    render_with(OsStr::new(DOT), dot)
}

/// The SVG of `dot` by `program` (Graphviz's `dot` or a compatible one).
pub fn render_with(program: &OsStr, dot: &str) -> Result<Vec<u8>, SvgError> {
    let name = program.to_string_lossy().into_owned();
    let mut child = Command::new(program)
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => SvgError::NotInstalled { program: name.clone() },
            _ => SvgError::Run { program: name.clone(), source },
        })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Written from another thread: `dot` may fill its output pipe before
    // it has read all its input.
    let input = dot.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().map_err(|source| SvgError::Run { program: name.clone(), source })?;
    let written = writer.join().expect("the writer thread does not panic");
    if !out.status.success() {
        return Err(SvgError::Failed {
            program: name,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    written.map_err(|source| SvgError::Run { program: name, source })?;
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_the_package_to_install() {
        let e = render_with(OsStr::new("/nonexistent/dot"), "digraph {}").unwrap_err();
        assert!(matches!(e, SvgError::NotInstalled { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("Debian package `graphviz`") && msg.contains("/nonexistent/dot"), "{msg}");
    }

    #[test]
    fn a_failing_program_reports_its_status_and_stderr() {
        // `false` takes any arguments and exits 1 without output.
        let e = render_with(OsStr::new("false"), "digraph {}").unwrap_err();
        assert!(matches!(&e, SvgError::Failed { status, .. } if status.contains('1')), "{e:?}");
    }
}
