use std::path::Path;

use super::*;
use crate::{inventory::Inventory, matrix::Matrix, matrix::Selection};

fn paths(host: &str, profiles: &[&str]) -> HostPaths {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam");
    let (m, _) = Matrix::load(&root.join("matrix.yaml")).unwrap();
    let (inv, _) = Inventory::load(&root.join("inventory.ini")).unwrap();
    let sel = Selection { profiles: profiles.iter().map(|s| s.to_string()).collect(), ..Default::default() };
    HostPaths::compute(&m, &inv, "inventory.ini", &sel, host).unwrap()
}

fn opts(format: Format, policy: Policy, egress: bool) -> Options {
    Options { format, policy, egress, header: Vec::new() }
}

#[test]
fn nft_reject_and_egress() {
    let hp = paths("rppam1", &["ha"]);
    let g = generate(&hp, &opts(Format::Nft, Policy::Reject, true));
    let t = &g.text;
    assert!(t.contains("chain input {\n        type filter hook input priority filter; policy drop;"), "{t}");
    assert!(t.contains("chain output {"), "{t}");
    assert!(t.contains("        meta l4proto tcp reject with tcp reset\n        reject\n    }"), "{t}");
    assert!(
        t.contains(
            "ip saddr @rppam_v4 tcp dport { 7001-7012 } counter accept comment \"rule:grpc-inter-node\""
        ),
        "{t}"
    );
    assert!(t.contains("ip daddr @redis_v4 tcp dport 6379 counter accept comment \"rule:redis\""), "{t}");
    // The LVS name has no address: a placeholder and a warning.
    assert!(t.contains("# lvs.ravenphyre.net not resolved"), "{t}");
    assert_eq!(g.warnings.len(), 1, "{:?}", g.warnings);
    assert!(g.warnings[0].contains("rule `lvs-checkin`"), "{:?}", g.warnings);
    let no_egress = generate(&hp, &opts(Format::Nft, Policy::Accept, false));
    assert!(!no_egress.text.contains("chain output"), "{}", no_egress.text);
    assert!(no_egress.text.contains("policy accept;"));
    assert!(no_egress.warnings.is_empty());
}

#[test]
fn resolved_names_become_set_elements() {
    let mut hp = paths("rppam1", &["ha"]);
    let w = resolve_names(&mut hp, &mut |n| {
        assert_eq!(n, "lvs.ravenphyre.net");
        Ok(vec!["192.0.2.7".parse().unwrap()])
    });
    assert!(w.is_empty());
    let g = generate(&hp, &opts(Format::Nft, Policy::Drop, true));
    assert!(
        g.text.contains(
            "set lvs_v4 {\n        type ipv4_addr\n        flags interval\n        elements = { 192.0.2.7 }"
        ),
        "{}",
        g.text
    );
    assert!(g.text.contains("ip daddr @lvs_v4 tcp dport 443 counter accept comment \"rule:lvs-checkin\""));
    assert!(g.warnings.is_empty());
}
