//! Durations as berth's flags take them, kubectl-style: `90`, `30s`, `5m`, `1h`.

use std::time::Duration;

/// Parses a plain number of seconds or one with the unit `s`, `m` or `h`.
pub fn parse(s: &str) -> Result<Duration, String> {
    let (digits, unit) = match s.char_indices().last() {
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 's')) => (&s[..i], 1),
        _ => (s, 1),
    };
    digits
        .parse::<u64>()
        .map(|n| Duration::from_secs(n.saturating_mul(unit)))
        .map_err(|_| format!("{s:?} is not a duration like 90s, 5m or 1h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_plain_seconds() {
        assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["soon", "5d", "", "m", "-1s"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
