//! Time as the record carries it: nanoseconds since the Unix epoch (`i64`, which spans the
//! years 1677–2262), written as RFC 3339 UTC with nine fractional digits, and read from the
//! shapes applications log (RFC 3339 text, epoch numbers in s/ms/µs/ns).
//!
//! Formatting is hand-rolled because the encoder calls it for every event timestamp: a civil
//! date from a day count and fixed-width digits, with no allocation and no `fmt` machinery.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Number, Value};

const NANOS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// The current wall-clock time in nanoseconds since the Unix epoch (0 if the clock is before
/// 1970, saturated after 2262).
pub fn now_ns() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Appends `ns` (nanoseconds since the epoch) as e.g. `2026-11-25T13:51:20.123456789Z`.
pub fn rfc3339_nanos(ns: i64, out: &mut Vec<u8>) {
    let secs = ns.div_euclid(NANOS_PER_SEC);
    let frac = ns.rem_euclid(NANOS_PER_SEC) as u32;
    let mut text = [0u8; 30];
    write_seconds(secs, (&mut text[..19]).try_into().expect("19 bytes"));
    text[19] = b'.';
    put_digits(&mut text[20..29], frac);
    text[29] = b'Z';
    out.extend_from_slice(&text);
}

/// `rfc3339_nanos` for a writer whose consecutive times mostly fall in the same second (the
/// records of a log file): the calendar part of the last second written is kept and reused.
#[derive(Default)]
pub struct SecondText {
    secs: Option<i64>,
    /// The day of `text`'s date, which outlives many seconds.
    day: Option<i64>,
    text: [u8; 19],
}

impl SecondText {
    /// Appends `ns` as `rfc3339_nanos` does.
    pub fn write(&mut self, ns: i64, out: &mut Vec<u8>) {
        let secs = ns.div_euclid(NANOS_PER_SEC);
        if self.secs != Some(secs) {
            let day = secs.div_euclid(SECS_PER_DAY);
            if self.day == Some(day) {
                write_time_of_day(secs.rem_euclid(SECS_PER_DAY) as u32, &mut self.text);
            } else {
                write_seconds(secs, &mut self.text);
                self.day = Some(day);
            }
            self.secs = Some(secs);
        }
        let mut text = [0u8; 30];
        text[..19].copy_from_slice(&self.text);
        text[19] = b'.';
        put_digits(&mut text[20..29], ns.rem_euclid(NANOS_PER_SEC) as u32);
        text[29] = b'Z';
        out.extend_from_slice(&text);
    }
}

/// Writes `YYYY-MM-DDTHH:MM:SS` for `secs` since the epoch.
fn write_seconds(secs: i64, text: &mut [u8; 19]) {
    let days = secs.div_euclid(SECS_PER_DAY);
    let sod = secs.rem_euclid(SECS_PER_DAY) as u32;
    let (year, month, day) = civil_from_days(days);
    // i64 nanoseconds cannot leave 1677..=2262, but a caller may pass any seconds value;
    // a year outside four digits is clamped rather than written malformed.
    put_digits(&mut text[0..4], year.clamp(0, 9999) as u32);
    text[4] = b'-';
    put_digits(&mut text[5..7], month);
    text[7] = b'-';
    put_digits(&mut text[8..10], day);
    write_time_of_day(sod, text);
}

/// Writes `THH:MM:SS` into `text[10..19]` for `sod` seconds of the day.
fn write_time_of_day(sod: u32, text: &mut [u8; 19]) {
    text[10] = b'T';
    put_digits(&mut text[11..13], sod / 3600);
    text[13] = b':';
    put_digits(&mut text[14..16], sod / 60 % 60);
    text[16] = b':';
    put_digits(&mut text[17..19], sod % 60);
}

/// Writes `v` as exactly `dst.len()` decimal digits, zero-padded.
#[inline]
fn put_digits(dst: &mut [u8], mut v: u32) {
    for d in dst.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// (year, month 1–12, day 1–31) of the proleptic Gregorian calendar for a day count since
/// 1970-01-01. Works in 400-year eras (146 097 days each) counted from 0000-03-01, so that the
/// leap day is the last day of the shifted year and falls out of integer division.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of shifted year, 0..=365
    let mp = (5 * doy + 2) / 153; // shifted month, March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The event time of a JSON `timestamp`/`time`/`ts` value, in nanoseconds since the epoch, or
/// `None` when it is not a time this function understands (the adapter then keeps the key as a
/// plain field).
///
/// Strings: RFC 3339 with any fractional precision and any offset (`T`, `t` or a space between
/// date and time); as an extension, the same without an offset is taken as UTC. Numbers: epoch
/// seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude (below 1e11 is
/// seconds, i.e. until the year 5138; below 1e14 milliseconds; below 1e17 microseconds; else
/// nanoseconds); fractional numbers are allowed.
pub fn parse_timestamp(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => parse_timestamp_str(s),
        Value::Number(n) => parse_timestamp_number(n),
        _ => None,
    }
}

/// `parse_timestamp` for a string value, for callers that hold a borrowed `&str`.
pub fn parse_timestamp_str(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return t.timestamp_nanos_opt();
    }
    // Loggers that write local-less ISO 8601 (Python's `isoformat()`, many Java layouts)
    // mean UTC far more often than not; keeping the text as a field would lose the ordering.
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()?;
    naive.and_utc().timestamp_nanos_opt()
}

/// `parse_timestamp` for a number value.
pub fn parse_timestamp_number(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return epoch_integer(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return epoch_integer(i128::from(u));
    }
    epoch_float(n.as_f64()?)
}

/// Nanoseconds per unit of an epoch number of this magnitude.
fn unit_nanos(magnitude: f64) -> i64 {
    if magnitude < 1e11 {
        NANOS_PER_SEC
    } else if magnitude < 1e14 {
        1_000_000
    } else if magnitude < 1e17 {
        1_000
    } else {
        1
    }
}

fn epoch_integer(v: i128) -> Option<i64> {
    let unit = unit_nanos(v.unsigned_abs() as f64);
    i64::try_from(v.checked_mul(i128::from(unit))?).ok()
}

fn epoch_float(v: f64) -> Option<i64> {
    if !v.is_finite() {
        return None;
    }
    let unit = unit_nanos(v.abs());
    // Whole and fractional parts separately: `v * 1e9` in one step would round away the
    // nanoseconds of a present-day seconds value (about 1.7e18 needs more than 53 bits).
    let whole = v.trunc();
    let frac = v - whole;
    if whole.abs() >= 9.3e18 {
        return None;
    }
    let whole_ns = (whole as i64).checked_mul(unit)?;
    whole_ns.checked_add((frac * unit as f64).round() as i64)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn fmt(ns: i64) -> String {
        let mut out = Vec::new();
        rfc3339_nanos(ns, &mut out);
        String::from_utf8(out).unwrap()
    }

    proptest! {
        /// Reusing the last second's text never changes what is written, whether the next
        /// time shares the second or not.
        #[test]
        fn second_text_writes_what_rfc3339_nanos_writes(start in any::<i64>(), steps in proptest::collection::vec(-2_000_000_000i64..2_000_000_000, 1..20)) {
            let mut cached = SecondText::default();
            let mut ns = start;
            for step in steps {
                let mut out = Vec::new();
                cached.write(ns, &mut out);
                prop_assert_eq!(String::from_utf8(out).unwrap(), fmt(ns));
                ns = ns.saturating_add(step);
            }
        }
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(fmt(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(fmt(1_795_614_680_123_456_789), "2026-11-25T13:51:20.123456789Z");
        assert_eq!(fmt(951_782_400_000_000_000), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(fmt(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(fmt(i64::MIN), "1677-09-21T00:12:43.145224192Z");
        assert_eq!(fmt(i64::MAX), "2262-04-11T23:47:16.854775807Z");
    }

    #[test]
    fn parses_rfc3339_with_any_precision_and_offset() {
        let want = 1_795_614_680_123_456_789;
        assert_eq!(parse_timestamp(&json!("2026-11-25T13:51:20.123456789Z")), Some(want));
        assert_eq!(
            parse_timestamp(&json!("2026-11-25T14:51:20.123456789+01:00")),
            Some(want)
        );
        assert_eq!(parse_timestamp(&json!("2026-11-25 13:51:20.123456789z")), Some(want));
        assert_eq!(
            parse_timestamp(&json!("2026-11-25T13:51:20Z")),
            Some(want - 123_456_789)
        );
        assert_eq!(
            parse_timestamp(&json!("2026-11-25T13:51:20.1Z")),
            Some(want - 23_456_789)
        );
        assert_eq!(parse_timestamp(&json!("2026-11-25T13:51:20.123456789123Z")), Some(want));
        assert_eq!(parse_timestamp(&json!("2026-11-25T13:51:20.123")), Some(want - 456_789));
        assert_eq!(parse_timestamp(&json!("2026-11-25 13:51:20")), Some(want - 123_456_789));
        assert_eq!(parse_timestamp(&json!("yesterday")), None);
        assert_eq!(parse_timestamp(&json!("2026-13-25T13:51:20Z")), None);
        assert_eq!(parse_timestamp(&json!(true)), None);
        assert_eq!(parse_timestamp(&json!(null)), None);
    }

    #[test]
    fn parses_epoch_numbers_by_magnitude() {
        let s = 1_795_614_680i64;
        let ns = s * NANOS_PER_SEC;
        assert_eq!(parse_timestamp(&json!(s)), Some(ns));
        assert_eq!(parse_timestamp(&json!(s * 1000 + 123)), Some(ns + 123_000_000));
        assert_eq!(parse_timestamp(&json!(s * 1_000_000 + 123_456)), Some(ns + 123_456_000));
        assert_eq!(parse_timestamp(&json!(ns + 7)), Some(ns + 7));
        assert_eq!(parse_timestamp(&json!(1_795_614_680.25)), Some(ns + 250_000_000));
        assert_eq!(parse_timestamp(&json!(1_795_614_680_123.5)), Some(ns + 123_500_000));
        assert_eq!(parse_timestamp(&json!(0)), Some(0));
        assert_eq!(parse_timestamp(&json!(-5)), Some(-5 * NANOS_PER_SEC));
        assert_eq!(parse_timestamp(&json!(u64::MAX)), None);
        assert_eq!(parse_timestamp(&json!(1e300)), None);
    }

    #[test]
    fn now_is_after_2025() {
        assert!(now_ns() > 1_735_689_600 * NANOS_PER_SEC);
    }

    proptest! {
        #[test]
        fn formatting_agrees_with_chrono(ns in any::<i64>()) {
            let want = chrono::DateTime::from_timestamp_nanos(ns).format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string();
            prop_assert_eq!(fmt(ns), want);
        }

        #[test]
        fn formatted_text_parses_back(ns in any::<i64>()) {
            prop_assert_eq!(parse_timestamp(&Value::String(fmt(ns))), Some(ns));
        }
    }
}
