//! The one parser of every duration option (`--syn-timeout`, `--interval`,
//! `--dedup-window`, `--dns-grace`, and `fleet report`'s `--window` and
//! `--timeout`): a plain number is seconds (`3`, `0.5`), anything else is a
//! number with a unit as humantime reads it (`500ms`, `2s`, `10m`, `1h`,
//! `1m30s`, `7d`).

use std::time::Duration;

/// What to write instead, shown with every rejected value.
const EXAMPLE: &str = "use a number of seconds (`2.5`) or a number with a unit (`500ms`, `2s`, `10m`, `1h`)";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` is not a duration: {EXAMPLE}")]
    Invalid(String),
    #[error("`{0}` is negative: a duration is zero or more; {EXAMPLE}")]
    Negative(String),
    #[error("`{0}` is too long a duration: {EXAMPLE}")]
    TooLong(String),
}

/// Parses a duration option: clap's `value_parser` for every duration.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    // A plain number, integer or decimal, is seconds (what these options
    // always took). f64 also reads `inf` and `NaN`: neither is a duration.
    if let Ok(secs) = t.parse::<f64>() {
        return if secs.is_nan() {
            Err(DurationError::Invalid(s.to_string()))
        } else if secs < 0.0 {
            Err(DurationError::Negative(s.to_string()))
        } else if secs.is_infinite() {
            Err(DurationError::Invalid(s.to_string()))
        } else {
            Duration::try_from_secs_f64(secs).map_err(|_| DurationError::TooLong(s.to_string()))
        };
    }
    if t.starts_with('-') {
        return Err(DurationError::Negative(s.to_string()));
    }
    humantime::parse_duration(t).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => DurationError::TooLong(s.to_string()),
        _ => DurationError::Invalid(s.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn plain_numbers_are_seconds() {
        assert_eq!(ok("3"), Duration::from_secs(3));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("600"), Duration::from_secs(600));
        assert_eq!(ok("0.5"), Duration::from_millis(500));
        assert_eq!(ok("2.25"), Duration::from_millis(2250));
        assert_eq!(ok(".5"), Duration::from_millis(500));
        assert_eq!(ok(" 1 "), Duration::from_secs(1));
    }

    #[test]
    fn numbers_with_units() {
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("2s"), Duration::from_secs(2));
        assert_eq!(ok("10m"), Duration::from_secs(600));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1h 2m 3s"), Duration::from_secs(3723));
        assert_eq!(ok("250us"), Duration::from_micros(250));
        assert_eq!(ok("0s"), Duration::ZERO);
    }

    #[test]
    fn rejects_what_is_not_a_duration_with_an_example() {
        for s in ["2x", "", "s", "fast", "2 parsecs", "NaN", "nan", "inf", "infinity", "1.5.2"] {
            let e = parse_duration(s).expect_err(s);
            assert_eq!(e, DurationError::Invalid(s.to_string()));
            assert_eq!(
                e.to_string(),
                format!(
                    "`{s}` is not a duration: use a number of seconds (`2.5`) or a number with a unit \
                     (`500ms`, `2s`, `10m`, `1h`)"
                )
            );
        }
    }

    #[test]
    fn rejects_negative_and_too_long() {
        for s in ["-1", "-0.5", "-2s", "-inf"] {
            assert_eq!(parse_duration(s), Err(DurationError::Negative(s.to_string())), "{s}");
        }
        assert!(parse_duration("-1").unwrap_err().to_string().contains("`500ms`, `2s`, `10m`, `1h`"));
        for s in ["1e30", "99999999999999999999h"] {
            assert_eq!(parse_duration(s), Err(DurationError::TooLong(s.to_string())), "{s}");
        }
    }
}
