//! The packet space the evaluator splits: a class of packets is a box, one
//! set of values per field (addresses, ports, protocol, interfaces), and a
//! rule's match splits a box into the part it matches and the part it does
//! not. Every set is a list of disjoint inclusive ranges over `u128`, so
//! IPv4 and IPv6 addresses, ports, protocol numbers and interned interface
//! names share one arithmetic.

use std::net::IpAddr;

/// Disjoint, sorted, inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ranges(Vec<(u128, u128)>);

impl Ranges {
    pub fn empty() -> Ranges {
        Ranges(Vec::new())
    }
    pub fn range(lo: u128, hi: u128) -> Ranges {
        if lo <= hi {
            Ranges(vec![(lo, hi)])
        } else {
            Ranges::empty()
        }
    }
    pub fn point(v: u128) -> Ranges {
        Ranges::range(v, v)
    }
    pub fn from_ranges(mut v: Vec<(u128, u128)>) -> Ranges {
        v.retain(|(a, b)| a <= b);
        v.sort();
        let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Ranges(out)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (u128, u128)> + '_ {
        self.0.iter().copied()
    }
    pub fn union(&self, o: &Ranges) -> Ranges {
        Ranges::from_ranges(self.0.iter().chain(o.0.iter()).copied().collect())
    }
    pub fn intersect(&self, o: &Ranges) -> Ranges {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < o.0.len() {
            let (a, b) = self.0[i];
            let (c, d) = o.0[j];
            let lo = a.max(c);
            let hi = b.min(d);
            if lo <= hi {
                out.push((lo, hi));
            }
            if b < d {
                i += 1;
            } else {
                j += 1;
            }
        }
        Ranges(out)
    }
    pub fn subtract(&self, o: &Ranges) -> Ranges {
        let mut out = Vec::new();
        for &(a, b) in &self.0 {
            let mut lo = a;
            let mut done = false;
            for &(c, d) in &o.0 {
                if d < lo || c > b {
                    continue;
                }
                if c > lo {
                    out.push((lo, c - 1));
                }
                if d >= b {
                    done = true;
                    break;
                }
                lo = d + 1;
            }
            if !done {
                out.push((lo, b));
            }
        }
        Ranges(out)
    }
    pub fn contains_all(&self, o: &Ranges) -> bool {
        o.subtract(self).is_empty()
    }
}

/// The fields a class of packets is split on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Saddr = 0,
    Daddr = 1,
    Sport = 2,
    Dport = 3,
    L4proto = 4,
    Iif = 5,
    Oif = 6,
}

pub const FIELDS: usize = 7;

/// IP family of a class (fixed per class: `ip saddr` never matches IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// One class of packets: a family and a box of values.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Class {
    pub family: Family,
    pub dims: [Ranges; FIELDS],
}

impl Class {
    pub fn get(&self, f: Field) -> &Ranges {
        &self.dims[f as usize]
    }
    pub fn with(&self, f: Field, r: Ranges) -> Class {
        let mut c = self.clone();
        c.dims[f as usize] = r;
        c
    }
    pub fn is_empty(&self) -> bool {
        self.dims.iter().any(Ranges::is_empty)
    }
}

/// A condition's element: some fields constrained (a concatenation
/// constrains several), the others free.
#[derive(Clone, Debug, Default)]
pub struct Element(pub Vec<(Field, Ranges)>);

/// Splits `class` by the union of `elements`: the parts inside, and the
/// parts outside, each a list of disjoint boxes.
pub fn split(class: &Class, elements: &[Element]) -> (Vec<Class>, Vec<Class>) {
    let mut yes = Vec::new();
    let mut rest = vec![class.clone()];
    for e in elements {
        let mut next = Vec::new();
        for r in rest {
            let mut inside = r.clone();
            for (f, v) in &e.0 {
                inside.dims[*f as usize] = inside.get(*f).intersect(v);
            }
            if inside.is_empty() {
                next.push(r);
                continue;
            }
            yes.push(inside);
            // r minus the element's box: for the i-th constrained field,
            // the earlier fields inside and this one outside.
            let mut prefix = r.clone();
            for (f, v) in &e.0 {
                let out = prefix.with(*f, prefix.get(*f).subtract(v));
                if !out.is_empty() {
                    next.push(out);
                }
                prefix = prefix.with(*f, prefix.get(*f).intersect(v));
            }
        }
        rest = next;
    }
    (yes, rest)
}

pub fn ip_value(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

pub fn family_of(ip: IpAddr) -> Family {
    match ip {
        IpAddr::V4(_) => Family::Ipv4,
        IpAddr::V6(_) => Family::Ipv6,
    }
}

pub fn all_addresses(f: Family) -> Ranges {
    match f {
        Family::Ipv4 => Ranges::range(0, u32::MAX as u128),
        Family::Ipv6 => Ranges::range(0, u128::MAX),
    }
}

/// A prefix as a range.
pub fn prefix_range(net: ipnet::IpNet) -> Ranges {
    Ranges::range(ip_value(net.network()), ip_value(net.broadcast()))
}

/// Address ranges written as the fewest prefixes.
pub fn address_prefixes(f: Family, r: &Ranges) -> Vec<String> {
    let mut out = Vec::new();
    for (a, b) in r.iter() {
        match f {
            Family::Ipv4 => {
                let (a, b) = (std::net::Ipv4Addr::from(a as u32), std::net::Ipv4Addr::from(b as u32));
                out.extend(ipnet::Ipv4Subnets::new(a, b, 0).map(|n| n.to_string()));
            }
            Family::Ipv6 => {
                let (a, b) = (std::net::Ipv6Addr::from(a), std::net::Ipv6Addr::from(b));
                out.extend(ipnet::Ipv6Subnets::new(a, b, 0).map(|n| n.to_string()));
            }
        }
    }
    out
}

/// Port ranges as `22`, `1000-2000`.
pub fn port_list(r: &Ranges) -> Vec<String> {
    r.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_arithmetic() {
        let a = Ranges::from_ranges(vec![(1, 10), (20, 30)]);
        let b = Ranges::from_ranges(vec![(5, 25)]);
        assert_eq!(a.intersect(&b), Ranges::from_ranges(vec![(5, 10), (20, 25)]));
        assert_eq!(a.subtract(&b), Ranges::from_ranges(vec![(1, 4), (26, 30)]));
        assert_eq!(a.union(&b), Ranges::range(1, 30));
        assert!(Ranges::range(0, 100).contains_all(&a));
        assert_eq!(Ranges::from_ranges(vec![(1, 2), (3, 4)]), Ranges::range(1, 4));
    }

    #[test]
    fn split_by_a_concatenation_is_a_partition() {
        let mut dims: [Ranges; FIELDS] = Default::default();
        for d in dims.iter_mut() {
            *d = Ranges::range(0, 9);
        }
        let c = Class { family: Family::Ipv4, dims };
        let e = Element(vec![(Field::Saddr, Ranges::range(2, 3)), (Field::Dport, Ranges::point(5))]);
        let (yes, no) = split(&c, &[e]);
        assert_eq!(yes.len(), 1);
        assert_eq!(yes[0].get(Field::Saddr), &Ranges::range(2, 3));
        assert_eq!(yes[0].get(Field::Dport), &Ranges::point(5));
        let size = |c: &Class| -> u128 {
            c.dims.iter().map(|r| r.iter().map(|(a, b)| b - a + 1).sum::<u128>()).product()
        };
        assert_eq!(yes.iter().chain(no.iter()).map(size).sum::<u128>(), size(&c));
    }
}
