//! Where FQDN-placed services get their addresses. The engine asks a
//! [`NameResolver`] once per name while it compiles; today the answers come
//! from the matrix's `bindings:` and `--set bind:NAME=IP`, and a DNS cache
//! that watches answers can implement the same trait.

use std::{collections::BTreeMap, net::IpAddr};

use crate::matrix::FqdnPattern;

pub trait NameResolver {
    /// Addresses of every name that `pattern` matches (for `*.suffix`, all
    /// known names below it). Appends to `out`; appends nothing if unknown.
    fn resolve(&self, pattern: &FqdnPattern, out: &mut Vec<IpAddr>);
}

/// Knows nothing: only static bindings apply.
pub struct NoResolver;

impl NameResolver for NoResolver {
    fn resolve(&self, _: &FqdnPattern, _: &mut Vec<IpAddr>) {}
}

/// Fixed name → addresses answers (lower-case names; a key may itself be
/// a `*.suffix` pattern, which then binds exactly that pattern).
#[derive(Clone, Debug, Default)]
pub struct StaticResolver {
    pub names: BTreeMap<String, Vec<IpAddr>>,
}

impl NameResolver for StaticResolver {
    fn resolve(&self, pattern: &FqdnPattern, out: &mut Vec<IpAddr>) {
        for (name, addrs) in &self.names {
            if name == pattern.as_str() || pattern.matches(name) {
                out.extend(addrs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_collect_every_name_below_them() {
        let mut r = StaticResolver::default();
        r.names.insert("graph.microsoft.com".into(), vec!["192.0.2.1".parse().unwrap()]);
        r.names.insert("login.microsoftonline.com".into(), vec!["192.0.2.2".parse().unwrap()]);
        r.names.insert("*.microsoft.com".into(), vec!["192.0.2.3".parse().unwrap()]);
        let mut out = Vec::new();
        r.resolve(&FqdnPattern::new("*.microsoft.com").unwrap(), &mut out);
        out.sort();
        assert_eq!(out, vec!["192.0.2.1".parse::<IpAddr>().unwrap(), "192.0.2.3".parse().unwrap()]);
        out.clear();
        r.resolve(&FqdnPattern::new("Graph.Microsoft.com.").unwrap(), &mut out);
        assert_eq!(out.len(), 1, "names compare case-insensitively, trailing dot ignored");
    }
}
