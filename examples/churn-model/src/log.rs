//! One-line-per-event logging to stdout in logfmt (`ts=… level=… msg="…" key=value …`), which
//! container log collectors and `berth logs` show as is.

use std::fmt::Write as _;
use std::io::Write as _;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Log levels, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Failures.
    Error = 0,
    /// Something odd that the server survives.
    Warn = 1,
    /// Lifecycle and per-request lines.
    Info = 2,
    /// Details for debugging.
    Debug = 3,
}

/// `LOG_LEVEL` held something other than error/warn/info/debug.
#[derive(Debug, thiserror::Error)]
#[error("unknown log level {0:?} (use error, warn, info or debug)")]
pub struct BadLevel(String);

impl FromStr for Level {
    type Err = BadLevel;
    fn from_str(s: &str) -> Result<Self, BadLevel> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error" => Ok(Level::Error),
            "warn" | "warning" => Ok(Level::Warn),
            "info" => Ok(Level::Info),
            "debug" => Ok(Level::Debug),
            _ => Err(BadLevel(s.to_string())),
        }
    }
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// The most verbose level that is printed (process-wide, set once at start).
static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the most verbose level that is printed.
pub fn set_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether lines at `level` are printed.
pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Prints one event with key/value fields, if `level` is enabled.
pub fn event(level: Level, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    if !enabled(level) {
        return;
    }
    let line = format_line(SystemTime::now(), level, msg, fields);
    // One write per line, under the stdout lock, so lines from threads never interleave. A closed
    // stdout is not a reason to stop serving.
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

fn format_line(
    now: SystemTime,
    level: Level,
    msg: &str,
    fields: &[(&str, &dyn std::fmt::Display)],
) -> String {
    let mut line = format!(
        "ts={} level={} msg={}",
        timestamp(now),
        level.name(),
        quote(msg)
    );
    for (k, v) in fields {
        let _ = write!(line, " {k}={}", quote(&v.to_string()));
    }
    line.push('\n');
    line
}

/// Quotes a value if it is empty or holds spaces, quotes, `=` or control characters.
fn quote(v: &str) -> String {
    if !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=' || c.is_control())
    {
        return v.to_string();
    }
    format!("{v:?}")
}

/// RFC 3339 UTC time with milliseconds.
fn timestamp(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_date((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian calendar), by
/// counting 400-year eras that start on 1 March so leap days fall at the end of a year.
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from 1 March
    let mp = (5 * doy + 2) / 153; // month from March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(59), (1970, 3, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_415), (2025, 11, 23));
        let t = UNIX_EPOCH + Duration::from_millis(1_763_856_000_123);
        assert_eq!(timestamp(t), "2025-11-23T00:00:00.123Z");
    }

    #[test]
    fn lines_are_logfmt_with_quoting() {
        let line = format_line(
            UNIX_EPOCH,
            Level::Warn,
            "bad request",
            &[("path", &"/predict"), ("error", &"missing \"a\"")],
        );
        assert_eq!(
            line,
            "ts=1970-01-01T00:00:00.000Z level=warn msg=\"bad request\" path=/predict error=\"missing \\\"a\\\"\"\n"
        );
    }

    #[test]
    fn levels_parse_and_order() {
        assert_eq!("DEBUG".parse::<Level>().unwrap(), Level::Debug);
        assert_eq!("warning".parse::<Level>().unwrap(), Level::Warn);
        assert!("loud".parse::<Level>().is_err());
        assert!(Level::Error < Level::Debug);
    }
}
