//! Host patterns: `name[:port]` with optional `[begin:end(:step)]` ranges, as
//! Ansible's `parse_address` and `expand_hostname_range` read them. The
//! regular expressions are Ansible's (ansible/parsing/utils/addresses.py),
//! with the label's look-behind rewritten as an equivalent alternation
//! because the `regex` crate has no look-around.

use std::sync::LazyLock;

use regex::Regex;

const NUMERIC_RANGE: &str = r"\[(?:[0-9]+:[0-9]+)(?::[0-9]+)?\]";
const HEX_RANGE: &str = r"\[(?:[0-9a-f]+:[0-9a-f]+)(?::[0-9]+)?\]";
const ALNUM_RANGE: &str = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]";

struct Patterns {
    bracketed_hostport: Regex,
    hostport: Regex,
    ipv4: Regex,
    ipv6: Regex,
    hostname: Regex,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let i6 = format!("(?:[0-9a-f]{{1,4}}|{HEX_RANGE})");
    let i4 = format!("(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{NUMERIC_RANGE})");
    // Ansible: (?:\w|R)(?:[\w_-]|R)*(?<![_-]) — a label may not end in `_` or `-`.
    let r = ALNUM_RANGE;
    let label = format!(r"(?:(?:[^\W_]|{r})|(?:\w|{r})(?:[\w-]|{r})*(?:[^\W_]|{r}))");
    let ipv6 = [
        format!("(?:{i6}:){{7}}{i6}"),
        format!("(?:{i6}:){{1,6}}:"),
        format!("(?:{i6}:)(?::{i6}){{1,6}}"),
        format!("(?:{i6}:){{2}}(?::{i6}){{1,5}}"),
        format!("(?:{i6}:){{3}}(?::{i6}){{1,4}}"),
        format!("(?:{i6}:){{4}}(?::{i6}){{1,3}}"),
        format!("(?:{i6}:){{5}}(?::{i6}){{1,2}}"),
        format!("(?:{i6}:){{6}}(?::{i6})"),
        format!(":(?::{i6}){{1,6}}"),
        format!("{i6}?::"),
        format!(r"(?:0:){{6}}(?:{i6}\.){{3}}{i6}"),
        format!(r"::(?:ffff:)?(?:{i6}\.){{3}}{i6}"),
        format!(r"(?:0:){{5}}ffff:(?:{i6}\.){{3}}{i6}"),
    ]
    .join("|");
    let compile = |re: String| Regex::new(&re).expect("host pattern regex compiles");
    Patterns {
        bracketed_hostport: compile(r"^\[(.+)\]:([0-9]+)$".into()),
        hostport: compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$".into()),
        ipv4: compile(format!(r"(?i)^(?:{i4}\.){{3}}{i4}$")),
        ipv6: compile(format!("(?i)^(?:{ipv6})$")),
        hostname: compile(format!(r"(?i)^{label}(?:\.{label})*$")),
    }
});

/// Why a host pattern cannot be expanded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PatternError {
    /// The pattern is not one Ansible reads.
    Malformed { message: String, hint: String },
    /// The pattern stands for `names` host names, more than the caller
    /// allowed; none was written out.
    TooMany { names: u128 },
}

fn err(message: impl Into<String>, hint: impl Into<String>) -> PatternError {
    PatternError::Malformed { message: message.into(), hint: hint.into() }
}

/// `parse_address(pattern, allow_ranges=True)`: splits off a `:port` when what
/// is left is a valid IPv4/IPv6 address or host name (ranges allowed).
fn parse_address(pattern: &str) -> Option<(&str, Option<u64>)> {
    let p = &*PATTERNS;
    let mut address = pattern;
    let mut port = None;
    for re in [&p.bracketed_hostport, &p.hostport] {
        if let Some(c) = re.captures(address) {
            let (a, digits) = (c.get(1)?.as_str(), c.get(2)?.as_str());
            address = a;
            // Digits too long for u64 make Python's int() huge; treat as no match.
            port = Some(digits.parse::<u64>().ok()?);
        }
    }
    let valid = p.ipv4.is_match(address) || p.ipv6.is_match(address) || p.hostname.is_match(address);
    valid.then_some((address, port))
}

/// The host names a pattern stands for and the port it names, as Ansible's
/// `_expand_hostpattern`: a pattern that is not a valid address keeps its
/// `:port` as part of the name, exactly as Ansible does. A pattern standing
/// for more than `max_names` names is refused before any is written out.
pub(crate) fn expand_hostpattern(
    pattern: &str,
    max_names: usize,
) -> Result<(Vec<String>, Option<u64>), PatternError> {
    let (name, port) = parse_address(pattern).unwrap_or((pattern, None));
    let names = if name.contains('[') {
        let count = count_ranges(name)?;
        if count > max_names as u128 {
            return Err(PatternError::TooMany { names: count });
        }
        let mut out = Vec::with_capacity(count as usize);
        expand_ranges(name, &mut out)?;
        out
    } else {
        vec![name.to_string()]
    };
    Ok((names, port))
}

const ASCII_LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Python's `int(s)` for the forms a range bound can take.
fn python_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let ok = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !ok {
        return None;
    }
    let v: i64 = digits.replace('_', "").parse().ok()?;
    Some(if neg { -v } else { v })
}

/// Python's `str.zfill`.
fn zfill(n: i64, width: usize) -> String {
    let digits = n.unsigned_abs().to_string();
    let sign = if n < 0 { "-" } else { "" };
    let pad = width.saturating_sub(digits.len() + sign.len());
    format!("{sign}{}{digits}", "0".repeat(pad))
}

/// The values one `[begin:end(:step)]` range runs through, not yet written out.
enum RangeSeq {
    /// `ASCII_LETTERS[first..=last]`, every `step`-th (Python finds the
    /// bounds with `str.index`, so `[a:C]` runs through a..z then A..C).
    Letters { first: usize, last: usize, step: usize },
    /// Python's `range(begin, end + 1, step)`, zero-filled to `width`.
    Numbers { begin: i128, step: i128, len: u128, width: Option<usize> },
}

impl RangeSeq {
    fn len(&self) -> u128 {
        match *self {
            RangeSeq::Letters { first, last, step } => ((last - first) / step + 1) as u128,
            RangeSeq::Numbers { len, .. } => len,
        }
    }

    /// The `k`-th value, `k < len()`.
    fn nth(&self, k: u128) -> String {
        match *self {
            RangeSeq::Letters { first, step, .. } => {
                (ASCII_LETTERS.as_bytes()[first + k as usize * step] as char).to_string()
            }
            RangeSeq::Numbers { begin, step, width, .. } => {
                let v = begin + k as i128 * step;
                match width {
                    // Both ends fit an i64 and v lies between them.
                    Some(w) => zfill(v as i64, w),
                    None => v.to_string(),
                }
            }
        }
    }
}

/// The first `[...]` of `name`: the text before it, its values (or none
/// when it is empty) and the text after it, with Ansible's checks.
fn first_range(name: &str) -> Result<(&str, Option<RangeSeq>, &str), PatternError> {
    // Ansible replaces the first '[' and then the first ']' with '|' and
    // splits on '|': anything but three parts is an error.
    let (head, rest) = name.split_once('[').expect("caller checked for '['");
    let Some((range, tail)) = rest.split_once(']') else {
        return Err(err(
            format!("host range in {name:?} has no closing ']'"),
            "close the range, e.g. node[01:10]",
        ));
    };
    if head.contains('|') || range.contains('|') || tail.contains('|') {
        return Err(err(format!("host pattern {name:?} contains '|'"), "remove the '|' from the host name"));
    }
    let bounds: Vec<&str> = range.split(':').collect();
    if bounds.len() != 2 && bounds.len() != 3 {
        return Err(err(
            format!("host range [{range}] in {name:?} is not begin:end or begin:end:step"),
            "write the range as [begin:end] or [begin:end:step], e.g. [01:10:2] or [a:f]",
        ));
    }
    let beg = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    let step_text = bounds.get(2).copied();
    if end.is_empty() {
        return Err(err(
            format!("host range [{range}] in {name:?} has no end value"),
            "give the last value of the range, e.g. [1:5]",
        ));
    }
    let width = if beg.starts_with('0') && beg.len() > 1 {
        if beg.len() != end.len() {
            return Err(err(
                format!("host range [{range}] in {name:?}: begin {beg:?} has a leading zero but end {end:?} has a different width"),
                format!("write both ends with the same number of digits, e.g. [{beg}:{}]", zfill(python_int(end).unwrap_or(0), beg.len())),
            ));
        }
        Some(beg.len())
    } else {
        None
    };
    let bad_step = || {
        err(
            format!("host range [{range}] in {name:?} has an invalid step {:?}", step_text.unwrap_or("")),
            "the step must be a positive whole number, e.g. [1:9:2]",
        )
    };
    let step = match step_text {
        None => Some(1),
        Some(s) => python_int(s),
    };

    let alpha = ASCII_LETTERS.find(beg).zip(ASCII_LETTERS.find(end));
    let seq = match (alpha, step) {
        (Some((i_beg, i_end)), Some(step)) if step != 0 => {
            if i_beg > i_end {
                return Err(err(
                    format!("host range [{range}] in {name:?} ends before it begins"),
                    "put the earlier letter first, e.g. [a:c]",
                ));
            }
            // A negative step gives no letters, as in Python's slicing.
            usize::try_from(step).ok().map(|step| RangeSeq::Letters { first: i_beg, last: i_end, step })
        }
        _ => {
            let (Some(b), Some(e)) = (python_int(beg), python_int(end)) else {
                return Err(err(
                    format!("host range [{range}] in {name:?} is neither numeric nor a single-letter range"),
                    "use numbers ([1:10], [01:10]) or letters ([a:f])",
                ));
            };
            let step = step.filter(|s| *s != 0).ok_or_else(bad_step)?;
            // len(range(b, e + 1, step)), in i128 so that no bound overflows.
            let (b, stop, step) = (i128::from(b), i128::from(e) + 1, i128::from(step));
            let len = if step > 0 && b < stop {
                (stop - b - 1) / step + 1
            } else if step < 0 && b > stop {
                (b - stop - 1) / -step + 1
            } else {
                0
            };
            Some(RangeSeq::Numbers { begin: b, step, len: len as u128, width })
        }
    };
    Ok((head, seq.filter(|s| s.len() > 0), tail))
}

/// How many names `name` (which holds a '[') expands to, worked out without
/// writing them: the product of its ranges' lengths, saturating. Reports the
/// first malformed range exactly as the expansion would.
pub(crate) fn count_ranges(name: &str) -> Result<u128, PatternError> {
    let mut total: u128 = 1;
    let mut name = name.to_string();
    while name.contains('[') {
        let (head, seq, tail) = first_range(&name)?;
        let Some(seq) = seq else { return Ok(0) };
        total = total.saturating_mul(seq.len());
        // Ansible recurses on each expanded name; the first one is where
        // it would meet a malformed later range first.
        name = format!("{head}{}{tail}", seq.nth(0));
    }
    Ok(total)
}

/// Ansible's `expand_hostname_range`: expands the first `[...]` and recurses
/// on the results, so `a[1:2]-[x:y]` gives four names. Callers bound the
/// count with [`count_ranges`] first.
fn expand_ranges(name: &str, out: &mut Vec<String>) -> Result<(), PatternError> {
    let (head, seq, tail) = first_range(name)?;
    let Some(seq) = seq else { return Ok(()) };
    for k in 0..seq.len() {
        let expanded = format!("{head}{}{tail}", seq.nth(k));
        if expanded.contains('[') {
            expand_ranges(&expanded, out)?;
        } else {
            out.push(expanded);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_LIMIT: usize = usize::MAX;

    fn expand(p: &str) -> (Vec<String>, Option<u64>) {
        expand_hostpattern(p, NO_LIMIT).unwrap_or_else(|e| panic!("{p:?} should expand: {e:?}"))
    }

    #[test]
    fn numeric_ranges_keep_leading_zeros_and_strides() {
        assert_eq!(expand("node[01:03]").0, ["node01", "node02", "node03"]);
        assert_eq!(expand("n[1:10:3]").0, ["n1", "n4", "n7", "n10"]);
        assert_eq!(expand("n[:2]").0, ["n0", "n1", "n2"]);
        assert_eq!(expand("n[8:10]").0, ["n8", "n9", "n10"]);
        // Ansible gives nothing for a descending numeric range; the caller warns.
        assert!(expand("n[3:1]").0.is_empty());
    }

    #[test]
    fn alphabetic_and_nested_ranges() {
        assert_eq!(expand("db-[a:c]").0, ["db-a", "db-b", "db-c"]);
        assert_eq!(expand("x[y:B]").0, ["xy", "xz", "xA", "xB"]);
        assert_eq!(expand("r[1:2]-[a:b].lan").0, ["r1-a.lan", "r1-b.lan", "r2-a.lan", "r2-b.lan"]);
        assert_eq!(expand("s[a:e:2]").0, ["sa", "sc", "se"]);
    }

    #[test]
    fn ports_are_split_off_valid_addresses_only() {
        assert_eq!(expand("web1:2222"), (vec!["web1".into()], Some(2222)));
        assert_eq!(expand("10.0.0.1:22"), (vec!["10.0.0.1".into()], Some(22)));
        assert_eq!(expand("[fe80::1]:22"), (vec!["fe80::1".into()], Some(22)));
        assert_eq!(expand("fe80::1"), (vec!["fe80::1".into()], None));
        assert_eq!(expand("node[1:2]:22"), (vec!["node1".into(), "node2".into()], Some(22)));
        // Not a valid host name (ends in '-'): Ansible keeps the whole text as the name.
        assert_eq!(expand("bad-:22"), (vec!["bad-:22".into()], None));
    }

    #[test]
    fn malformed_ranges_are_errors() {
        for bad in ["node[01:03", "n[1]", "n[1:]", "n[01:3]", "n[c:a]", "n[1:5:0]", "n[1:x]"] {
            assert!(
                matches!(expand_hostpattern(bad, NO_LIMIT), Err(PatternError::Malformed { .. })),
                "{bad:?} should be rejected"
            );
        }
        let e = expand_hostpattern("node[01:03", NO_LIMIT).unwrap_err();
        assert!(
            matches!(&e, PatternError::Malformed { message, .. } if message.contains("no closing ']'")),
            "{e:?}"
        );
    }

    #[test]
    fn counts_are_worked_out_without_expanding() {
        for (p, want) in [
            ("n[1:10:3]", 4),
            ("n[3:1]", 0),
            ("n[0:9]", 10),
            ("s[a:e:2]", 3),
            ("x[y:B]", 4),
            ("r[1:2]-[a:b].lan", 4),
            ("r[1:2]-[a:b]-[01:10]", 40),
            // An empty first range: Ansible never reaches the malformed second one.
            ("r[3:1]-[x", 0),
        ] {
            assert_eq!(count_ranges(p), Ok(want), "{p:?}");
            if want > 0 {
                assert_eq!(expand(p).0.len() as u128, want, "{p:?}");
            }
        }
        // Nested ranges multiply; u128 saturates rather than wrapping.
        let huge = "h[0:9223372036854775806]".repeat(5);
        assert_eq!(count_ranges(&huge), Ok(u128::MAX));
        // A malformed later range is reported as the expansion reports it.
        assert_eq!(count_ranges("r[1:2]-[x"), expand_hostpattern("r[1:2]-[x", NO_LIMIT).map(|_| 0));
    }

    #[test]
    fn a_pattern_over_the_limit_is_refused_before_expanding() {
        let start = std::time::Instant::now();
        assert_eq!(
            expand_hostpattern("host[0:9999999999]", 65_536),
            Err(PatternError::TooMany { names: 10_000_000_000 })
        );
        assert_eq!(
            expand_hostpattern("h[0:99999]-[0:99999]-[0:99999]:22", 65_536),
            Err(PatternError::TooMany { names: 1_000_000_000_000_000 })
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(1), "{:?}", start.elapsed());
        // Exactly at the limit is fine.
        assert_eq!(expand_hostpattern("h[1:16]-[a:d]", 64).map(|(n, _)| n.len()), Ok(64));
        assert_eq!(expand_hostpattern("h[1:16]-[a:d]", 63), Err(PatternError::TooMany { names: 64 }));
    }

    #[test]
    fn bounds_near_i64_max_do_not_overflow() {
        assert_eq!(
            expand("n[9223372036854775806:9223372036854775807]").0,
            ["n9223372036854775806", "n9223372036854775807"]
        );
    }
}
