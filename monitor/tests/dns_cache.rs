//! The address → names cache on a fake clock: TTL and grace, rebinding,
//! the size bounds (addresses and bindings), open connections keeping an address bound, and the
//! engine resolving watched names and wildcards through it.

use std::{net::IpAddr, time::Duration};

use monitor::{
    dns::{Binding, CacheOptions, DnsCache},
    engine::NameResolver,
    matrix::FqdnPattern,
};

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_000 * SEC;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn bind(addr: &str, names: &[&str], ttl: u32) -> Binding {
    Binding { addr: ip(addr), names: names.iter().map(|n| n.to_string()).collect(), ttl }
}

fn cache(grace_s: u64, max_addrs: usize) -> DnsCache {
    let mut c = DnsCache::new(CacheOptions {
        grace: Duration::from_secs(grace_s),
        max_addrs,
        ..CacheOptions::default()
    });
    c.watch(vec![
        FqdnPattern::new("*.microsoft.com").unwrap(),
        FqdnPattern::new("lvs.ravenphyre.net").unwrap(),
    ]);
    c
}

#[test]
fn a_binding_holds_for_its_ttl_plus_grace_then_expires() {
    let mut c = cache(60, 100);
    c.insert(&bind("203.0.113.21", &["graph.microsoft.com", "edge.graph.example.net"], 30), T0);
    assert_eq!(c.names(ip("203.0.113.21")), vec!["edge.graph.example.net", "graph.microsoft.com"]);
    c.expire(T0 + 89 * SEC);
    assert_eq!(c.names(ip("203.0.113.21")).len(), 2, "30 s TTL + 60 s grace: still bound at 89 s");
    c.expire(T0 + 90 * SEC);
    assert_eq!(c.names(ip("203.0.113.21")), Vec::<String>::new(), "gone at TTL + grace");
    assert!(c.is_empty());
    assert_eq!(c.stats.bindings_expired, 2);
}

#[test]
fn watched_changes_mark_the_address_dirty_and_others_do_not() {
    let mut c = cache(0, 100);
    c.insert(&bind("192.0.2.1", &["www.example.org"], 30), T0);
    assert!(c.take_dirty().is_empty(), "an unwatched name changes no verdict");
    c.insert(&bind("203.0.113.10", &["lvs.ravenphyre.net"], 2), T0);
    assert_eq!(c.take_dirty().into_iter().collect::<Vec<_>>(), vec![ip("203.0.113.10")]);
    // The same answer again refreshes, it does not change anything.
    c.insert(&bind("203.0.113.10", &["lvs.ravenphyre.net"], 2), T0 + SEC);
    assert!(c.take_dirty().is_empty());
    // The TTL ends and the name moves: the old address goes, the new one comes.
    c.expire(T0 + 3 * SEC);
    c.insert(&bind("203.0.113.11", &["lvs.ravenphyre.net"], 2), T0 + 3 * SEC);
    let mut dirty: Vec<IpAddr> = c.take_dirty().into_iter().collect();
    dirty.sort();
    assert_eq!(dirty, vec![ip("203.0.113.10"), ip("203.0.113.11")]);
    let mut out = Vec::new();
    c.resolve(&FqdnPattern::new("lvs.ravenphyre.net").unwrap(), &mut out);
    assert_eq!(out, vec![ip("203.0.113.11")]);
}

#[test]
fn wildcards_resolve_every_name_below_them_and_the_snapshot_holds_only_watched_names() {
    let mut c = cache(60, 100);
    c.insert(&bind("203.0.113.21", &["graph.microsoft.com", "edge.graph.example.net"], 30), T0);
    c.insert(&bind("203.0.113.30", &["login.microsoft.com"], 30), T0);
    c.insert(&bind("203.0.113.40", &["microsoft.com"], 30), T0);
    let mut out = Vec::new();
    c.resolve(&FqdnPattern::new("*.microsoft.com").unwrap(), &mut out);
    out.sort();
    assert_eq!(out, vec![ip("203.0.113.21"), ip("203.0.113.30")], "*.x matches names below x, not x");
    let snap = c.snapshot();
    let names: Vec<&str> = snap.names.keys().map(String::as_str).collect();
    assert_eq!(names, vec!["graph.microsoft.com", "login.microsoft.com"]);
}

#[test]
fn the_cache_stays_within_its_bound_dropping_the_least_recently_refreshed() {
    let mut c = cache(60, 3);
    for i in 1..=3 {
        c.insert(&bind(&format!("192.0.2.{i}"), &[&format!("h{i}.example.org")], 300), T0 + i * SEC);
    }
    // Refresh the oldest: the second becomes the least recently refreshed.
    c.insert(&bind("192.0.2.1", &["h1.example.org"], 300), T0 + 10 * SEC);
    c.insert(&bind("192.0.2.4", &["h4.example.org"], 300), T0 + 11 * SEC);
    assert_eq!(c.len(), 3);
    assert_eq!(c.stats.addrs_evicted, 1);
    assert!(c.names(ip("192.0.2.2")).is_empty(), "the least recently refreshed address went");
    assert_eq!(c.names(ip("192.0.2.1")), vec!["h1.example.org"]);
    assert_eq!(c.names(ip("192.0.2.4")), vec!["h4.example.org"]);
}

#[test]
fn an_open_connection_keeps_its_address_bound_past_the_ttl() {
    let mut c = cache(5, 100);
    c.insert(&bind("203.0.113.10", &["lvs.ravenphyre.net"], 2), T0);
    for s in 1..=20 {
        c.keep_alive(ip("203.0.113.10"), T0 + s * SEC);
        c.expire(T0 + s * SEC);
    }
    assert_eq!(c.names(ip("203.0.113.10")), vec!["lvs.ravenphyre.net"], "still in use at 20 s");
    c.expire(T0 + 26 * SEC);
    assert!(c.names(ip("203.0.113.10")).is_empty(), "unused for longer than the grace");
    // keep_alive never binds an address that was not bound.
    c.keep_alive(ip("203.0.113.99"), T0 + 27 * SEC);
    assert!(c.names(ip("203.0.113.99")).is_empty());
}

#[test]
fn ipv4_mapped_addresses_find_their_ipv4_binding() {
    let mut c = cache(60, 100);
    c.insert(&bind("203.0.113.10", &["lvs.ravenphyre.net"], 30), T0);
    assert_eq!(c.names(ip("::ffff:203.0.113.10")), vec!["lvs.ravenphyre.net"]);
}

#[test]
fn spoofed_answers_with_endless_names_stay_within_the_bindings_bound_and_are_counted() {
    // Any packet from port 53 is read: a sender can make up answers with as
    // many names and addresses as it likes. 200,000 answers of 3 names each
    // against a bound of 1,000 bindings.
    let max = 1_000;
    let mut c = DnsCache::new(CacheOptions { max_bindings: max, ..CacheOptions::default() });
    c.watch(vec![FqdnPattern::new("lvs.ravenphyre.net").unwrap()]);
    c.insert(&bind("203.0.113.10", &["lvs.ravenphyre.net"], 300), T0);
    let mut most = 0;
    for i in 0..200_000u64 {
        let addr = format!("fd00:53::{:x}:{:x}", i >> 16, i & 0xffff);
        let names: Vec<String> = (0..3).map(|k| format!("n{i}-{k}.spoof.example")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        c.insert(&bind(&addr, &names, 300), T0 + SEC);
        most = most.max(c.bindings());
    }
    assert!(most <= max, "at most {max} bindings held, saw {most}");
    // The watched binding, the oldest of all, is spared: the flood pushes
    // out its own made-up names. 1 + 333 answers of 3 fill the bound.
    assert_eq!(c.names(ip("203.0.113.10")), vec!["lvs.ravenphyre.net"]);
    assert_eq!(c.bindings(), 1 + 3 * 333);
    assert_eq!(c.len(), 1 + 333);
    // Every address that went is counted.
    assert_eq!(c.stats.addrs_evicted_bindings, 200_000 - 333);
    assert_eq!(c.stats.addrs_evicted, 0, "the address bound did not bite");
    let mut out = Vec::new();
    c.resolve(&FqdnPattern::new("n199999-2.spoof.example").unwrap(), &mut out);
    assert_eq!(out.len(), 1, "the newest answer holds");
}

#[test]
fn one_address_with_many_names_is_not_cut_below_its_own_bound() {
    // The bindings bound drops other addresses, never the one being learnt:
    // it alone may hold max_names_per_addr.
    let mut c =
        DnsCache::new(CacheOptions { max_bindings: 4, max_names_per_addr: 6, ..CacheOptions::default() });
    let names: Vec<String> = (0..10).map(|k| format!("cdn{k}.example.net")).collect();
    for n in &names {
        c.insert(&bind("198.51.100.7", &[n], 300), T0);
    }
    assert_eq!(c.bindings(), 6);
    assert_eq!(c.stats.names_evicted, 4);
    assert_eq!(c.stats.addrs_evicted_bindings, 0);
    c.insert(&bind("198.51.100.8", &["other.example.net"], 300), T0 + SEC);
    assert!(c.names(ip("198.51.100.7")).is_empty(), "the older address went to make room");
    assert_eq!(c.bindings(), 1);
    // Only watched addresses older than the newcomer: the oldest of them goes.
    c.watch(vec![FqdnPattern::new("*.example.net").unwrap()]);
    c.insert(
        &bind("198.51.100.9", &["a.example.org", "b.example.org", "c.example.org", "d.example.org"], 300),
        T0 + SEC,
    );
    assert!(c.names(ip("198.51.100.8")).is_empty());
    assert_eq!(c.bindings(), 4);
    assert_eq!(c.stats.addrs_evicted_bindings, 2);
}
