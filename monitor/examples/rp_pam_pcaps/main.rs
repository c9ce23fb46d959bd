//! Writes the example captures of examples/rp-pam/pcaps/ (see scenarios.rs).
//!
//! ```text
//! cargo run -p monitor --example rp_pam_pcaps -- examples/rp-pam/pcaps
//! ```

mod scenarios;

use std::path::Path;

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "examples/rp-pam/pcaps".into());
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let captures = scenarios::captures();
    for (name, bytes) in &captures {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    println!("wrote {} captures to {}", captures.len(), dir.display());
}
