//! The committed example captures (examples/rp-pam/pcaps) are exactly what
//! their generator writes, so that they can be trusted, reviewed as code and
//! regenerated.

#[allow(dead_code)]
#[path = "../examples/rp_pam_pcaps/scenarios.rs"]
mod scenarios;

use std::path::Path;

#[test]
fn committed_captures_match_the_generator() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam/pcaps");
    for (name, want) in scenarios::captures() {
        let path = dir.join(name);
        let got = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            got == want,
            "{} differs from what the generator writes: run `cargo run -p monitor --example rp_pam_pcaps -- examples/rp-pam/pcaps` and commit the result",
            path.display()
        );
    }
}
