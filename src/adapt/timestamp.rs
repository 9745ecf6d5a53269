//! Time parsing for the line formats, hand-rolled for the shapes that sit on hot paths (RFC 3339
//! in `cri`, RFC 3164 in `syslog`, the Apache access-log time, log4j's comma millis, and
//! all-numeric `timestamp_format` layouts) and chrono for the other user-given layouts.
//!
//! Every function returns nanoseconds since the epoch, or `None` when the text is not a valid
//! time of that shape (the caller keeps the observed time and counts the line). Times written
//! without an offset (RFC 3164, klog, log4j, most custom layouts) are taken as UTC.
//!
//! Formats that leave out the year (RFC 3164, klog, Android's `MM-DD`) take it from a supplied
//! "now" with the New Year rule of `infer_year`.

use chrono::format::StrftimeItems;
use serde_json::Number;

use crate::timefmt;

mod chrono_layout;

pub use chrono_layout::WRONG_WEEKDAY;

const NANOS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// How far in the future a year-less time may be (clock skew, a local time zone ahead of UTC)
/// before it is taken to belong to the year before.
const FUTURE_SLACK_NS: i64 = 7 * SECS_PER_DAY * NANOS_PER_SEC;

/// Days since 1970-01-01 of a proleptic Gregorian date (no validation).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A validated civil time (UTC) plus `offset_secs` east of UTC, as epoch nanoseconds.
#[allow(clippy::too_many_arguments)]
pub fn civil_to_ns(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    nanos: u32,
    offset_secs: i64,
) -> Option<i64> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || min > 59 || sec > 60 || nanos >= 1_000_000_000 {
        return None;
    }
    // A leap second (:60) is folded onto the next second, as most consumers do.
    let secs = days_from_civil(year, month, day) * SECS_PER_DAY + i64::from(hour * 3600 + min * 60 + sec) - offset_secs;
    secs.checked_mul(NANOS_PER_SEC)?.checked_add(i64::from(nanos))
}

/// (year, month) of an epoch-nanosecond instant, UTC.
fn year_month_of(ns: i64) -> (i64, u32) {
    let days = ns.div_euclid(NANOS_PER_SEC).div_euclid(SECS_PER_DAY);
    // Inverse of days_from_civil, as in timefmt.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month)
}

/// The year of `now_ns`, UTC.
pub fn year_of(now_ns: i64) -> i64 {
    year_month_of(now_ns).0
}

/// The instant of a year-less time, `nanos` included: the current year of `now_ns`, unless that
/// puts it more than seven days after `now_ns`, in which case the year before (a `Dec 31`
/// line read on January 1st was written last year). Seven days of slack keep a line from a
/// time zone ahead of UTC, or from a host with a fast clock, in the current year.
#[allow(clippy::too_many_arguments)]
pub fn infer_year(month: u32, day: u32, hour: u32, min: u32, sec: u32, nanos: u32, now_ns: i64) -> Option<i64> {
    let year = year_of(now_ns);
    // Feb 29 only exists in leap years: try the candidate years rather than fail outright.
    match civil_to_ns(year, month, day, hour, min, sec, nanos, 0) {
        Some(t) if t <= now_ns.saturating_add(FUTURE_SLACK_NS) => Some(t),
        _ => civil_to_ns(year - 1, month, day, hour, min, sec, nanos, 0)
            .or_else(|| (1..8).find_map(|back| civil_to_ns(year - 1 - back, month, day, hour, min, sec, nanos, 0))),
    }
}

#[inline]
pub(crate) fn d2(b: &[u8], i: usize) -> Option<u32> {
    let hi = b.get(i)?.wrapping_sub(b'0');
    let lo = b.get(i + 1)?.wrapping_sub(b'0');
    if hi > 9 || lo > 9 {
        return None;
    }
    Some(u32::from(hi) * 10 + u32::from(lo))
}

#[inline]
pub(crate) fn d4(b: &[u8], i: usize) -> Option<u32> {
    Some(d2(b, i)? * 100 + d2(b, i + 2)?)
}

/// Fraction digits starting at `i` (after the separator): (nanoseconds, digits consumed).
/// Digits past the ninth are read and ignored.
#[inline]
pub(crate) fn fraction(b: &[u8], mut i: usize) -> (u32, usize) {
    let start = i;
    let mut nanos = 0u32;
    let mut scale = 100_000_000u32;
    while let Some(&c) = b.get(i) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        nanos += u32::from(d) * scale;
        scale /= 10;
        i += 1;
    }
    (nanos, i - start)
}

/// Month number of a three-letter English abbreviation (`Jan` … `Dec`, case as written by
/// syslog/Apache, plus all-lower and all-upper).
#[inline]
pub fn month_abbr(b: &[u8]) -> Option<u32> {
    if b.len() < 3 {
        return None;
    }
    let key = [b[0] | 0x20, b[1] | 0x20, b[2] | 0x20];
    Some(match &key {
        b"jan" => 1,
        b"feb" => 2,
        b"mar" => 3,
        b"apr" => 4,
        b"may" => 5,
        b"jun" => 6,
        b"jul" => 7,
        b"aug" => 8,
        b"sep" => 9,
        b"oct" => 10,
        b"nov" => 11,
        b"dec" => 12,
        _ => return None,
    })
}

/// RFC 3339 at the start of `b`: `YYYY-MM-DD(T|t| )HH:MM:SS[.frac](Z|z|±HH:MM)`, any fraction
/// precision. Returns the instant and the bytes consumed.
pub fn rfc3339_prefix(b: &[u8]) -> Option<(i64, usize)> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (d4(b, 0)?, d2(b, 5)?, d2(b, 8)?);
    let (hour, min, sec) = (d2(b, 11)?, d2(b, 14)?, d2(b, 17)?);
    let mut i = 19;
    let mut nanos = 0;
    if b[i] == b'.' || b[i] == b',' {
        let (n, len) = fraction(b, i + 1);
        if len == 0 {
            return None;
        }
        nanos = n;
        i += 1 + len;
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' => {
            i += 1;
            0
        }
        &sign @ (b'+' | b'-') => {
            if b.get(i + 3) != Some(&b':') {
                return None;
            }
            let secs = i64::from(d2(b, i + 1)? * 3600 + d2(b, i + 4)? * 60);
            i += 6;
            if sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    Some((
        civil_to_ns(i64::from(year), month, day, hour, min, sec, nanos, offset)?,
        i,
    ))
}

/// RFC 3339 (the whole of `s`), falling back to `timefmt::parse_timestamp_str` for the
/// offset-less ISO 8601 it also accepts.
pub fn rfc3339(s: &str) -> Option<i64> {
    match rfc3339_prefix(s.as_bytes()) {
        Some((t, n)) if n == s.len() => Some(t),
        _ => timefmt::parse_timestamp_str(s),
    }
}

/// RFC 3164's `Mmm dd hh:mm:ss` (day space- or zero-padded, exactly 15 bytes) at the start of
/// `b`, with the year from `infer_year`.
pub fn rfc3164_prefix(b: &[u8], now_ns: i64) -> Option<i64> {
    if b.len() < 15 || b[3] != b' ' || b[6] != b' ' || b[9] != b':' || b[12] != b':' {
        return None;
    }
    let month = month_abbr(&b[..3])?;
    let day = if b[4] == b' ' {
        let d = b[5].wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        u32::from(d)
    } else {
        d2(b, 4)?
    };
    if day > 31 {
        return None;
    }
    infer_year(month, day, d2(b, 7)?, d2(b, 10)?, d2(b, 13)?, 0, now_ns)
}

/// The Apache/NGINX access-log time `dd/Mmm/yyyy:hh:mm:ss ±hhmm` (without the brackets).
pub fn apache(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[14] != b':' || b[17] != b':' {
        return None;
    }
    if b[20] != b' ' || !matches!(b[21], b'+' | b'-') {
        return None;
    }
    let offset = i64::from(d2(b, 22)? * 3600 + d2(b, 24)? * 60);
    let offset = if b[21] == b'-' { -offset } else { offset };
    civil_to_ns(
        i64::from(d4(b, 7)?),
        month_abbr(&b[3..6])?,
        d2(b, 0)?,
        d2(b, 12)?,
        d2(b, 15)?,
        d2(b, 18)?,
        0,
        offset,
    )
}

/// log4j's default date layout `yyyy-MM-dd HH:mm:ss,SSS` (a `.` before the millis is accepted
/// too), as UTC.
pub fn log4j(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let mut nanos = 0;
    if b.len() > 19 {
        if !matches!(b[19], b',' | b'.') {
            return None;
        }
        let (n, len) = fraction(b, 20);
        if len == 0 || 20 + len != b.len() {
            return None;
        }
        nanos = n;
    }
    civil_to_ns(
        i64::from(d4(b, 0)?),
        d2(b, 5)?,
        d2(b, 8)?,
        d2(b, 11)?,
        d2(b, 14)?,
        d2(b, 17)?,
        nanos,
        0,
    )
}

/// An epoch number written as text (`1700000000`, `1700000000123`, `1700000000.5`), its unit
/// told by magnitude as in `timefmt::parse_timestamp_number`.
pub fn epoch(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let digits = b.first()?.is_ascii_digit() || (b[0] == b'-' && b.len() > 1);
    if !digits || b.len() > 40 || !b.iter().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-')) {
        return None;
    }
    let n: Number = s.parse().ok()?;
    timefmt::parse_timestamp_number(&n)
}

/// Any of the built-in shapes: RFC 3339 (and offset-less ISO 8601), log4j, Apache, epoch.
pub fn parse_any(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some((t, n)) = rfc3339_prefix(s.as_bytes()) {
        if n == s.len() {
            return Some(t);
        }
    }
    log4j(s)
        .or_else(|| apache(s))
        .or_else(|| epoch(s))
        .or_else(|| timefmt::parse_timestamp_str(s))
}

/// A strftime-like layout (chrono's syntax) compiled for parsing. Layouts without a year
/// take it from "now" (`infer_year`); layouts without an offset mean UTC.
///
/// One addition to chrono's syntax: a layout may end in `%L`, milliseconds written as an
/// unpadded integer of one to three digits (`22:25:13:8` is 8 ms), as some Java loggers do.
///
/// Chrono re-reads the format string on every call, which costs more than the rest of a
/// `regex` line; layouts made only of zero-padded numbers, fixed fractions and literals get a
/// `FixedLayout` reader as well, tried first. It accepts only text where every number has all
/// its digits, so chrono would read the same fields from it; anything else goes to chrono.
#[derive(Debug, Clone)]
pub struct Layout {
    format: String,
    /// The layout ended in `%L` (removed from `format`).
    millis_suffix: bool,
    has_year: bool,
    has_offset: bool,
    has_date: bool,
    fixed: Option<FixedLayout>,
}

/// One piece of a `FixedLayout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// `%Y`, `%y`, `%m`, `%d`, `%H`, `%M`, `%S`: exactly this many digits into that field.
    Num(Field, usize),
    /// `%.3f`, `%.6f`, `%.9f`: a `.` and exactly this many fraction digits.
    Frac(usize),
    /// A byte written as is (a space in the layout: exactly one space).
    Byte(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Year,
    YearMod100,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

/// A layout of fixed-width pieces, read without chrono.
#[derive(Debug, Clone)]
struct FixedLayout {
    pieces: Vec<Piece>,
    has_year: bool,
}

impl FixedLayout {
    /// `None` unless `format` is month, day, hour, minute and second (year optional), each
    /// once, zero-padded, with fixed fractions followed by a non-digit or the end.
    fn compile(format: &str, millis_suffix: bool) -> Option<FixedLayout> {
        let mut pieces = Vec::new();
        let b = format.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'%' {
                // Chrono reads a layout space as "any whitespace"; one space stays a subset.
                if !b[i].is_ascii() || b[i].is_ascii_digit() || (b[i].is_ascii_whitespace() && b[i] != b' ') {
                    return None;
                }
                pieces.push(Piece::Byte(b[i]));
                i += 1;
                continue;
            }
            let (piece, len) = match b.get(i + 1..)? {
                [b'Y', ..] => (Piece::Num(Field::Year, 4), 2),
                [b'y', ..] => (Piece::Num(Field::YearMod100, 2), 2),
                [b'm', ..] => (Piece::Num(Field::Month, 2), 2),
                [b'd', ..] => (Piece::Num(Field::Day, 2), 2),
                [b'H', ..] => (Piece::Num(Field::Hour, 2), 2),
                [b'M', ..] => (Piece::Num(Field::Minute, 2), 2),
                [b'S', ..] => (Piece::Num(Field::Second, 2), 2),
                [b'.', d @ (b'3' | b'6' | b'9'), b'f', ..] => (Piece::Frac(usize::from(d - b'0')), 4),
                _ => return None,
            };
            pieces.push(piece);
            i += len;
        }
        let count = |f: Field| {
            pieces
                .iter()
                .filter(|p| matches!(p, Piece::Num(g, _) if *g == f))
                .count()
        };
        let years = count(Field::Year) + count(Field::YearMod100);
        let required = [Field::Month, Field::Day, Field::Hour, Field::Minute, Field::Second];
        if years > 1 || required.iter().any(|&f| count(f) != 1) {
            return None;
        }
        // Chrono reads a fraction's digits as far as they go: what follows must not be one.
        for (k, p) in pieces.iter().enumerate() {
            if let Piece::Frac(_) = p {
                match pieces.get(k + 1) {
                    Some(Piece::Byte(_)) => {}
                    None if !millis_suffix => {}
                    _ => return None,
                }
            }
        }
        Some(FixedLayout {
            pieces,
            has_year: years == 1,
        })
    }

    /// The instant, or `None` to leave the text to chrono (which may still read it).
    fn parse(&self, s: &str, millis_suffix: bool, now_ns: i64) -> Option<i64> {
        let b = s.as_bytes();
        let mut i = 0;
        let (mut year, mut month, mut day, mut hour, mut min, mut sec, mut nanos) = (0i64, 0, 0, 0, 0, 0, 0u32);
        for p in &self.pieces {
            match *p {
                Piece::Byte(c) => {
                    if b.get(i) != Some(&c) {
                        return None;
                    }
                    i += 1;
                }
                Piece::Num(field, width) => {
                    let mut v = 0u32;
                    for k in i..i + width {
                        let d = b.get(k)?.wrapping_sub(b'0');
                        if d > 9 {
                            return None;
                        }
                        v = v * 10 + u32::from(d);
                    }
                    i += width;
                    match field {
                        Field::Year => year = i64::from(v),
                        // Chrono's century for a two-digit year: 1970-2069.
                        Field::YearMod100 => year = i64::from(v) + if v < 70 { 2000 } else { 1900 },
                        Field::Month => month = v,
                        Field::Day => day = v,
                        Field::Hour => hour = v,
                        Field::Minute => min = v,
                        Field::Second => sec = v,
                    }
                }
                Piece::Frac(digits) => {
                    if b.get(i) != Some(&b'.') {
                        return None;
                    }
                    let (n, len) = fraction(b.get(..i + 1 + digits)?, i + 1);
                    if len != digits {
                        return None;
                    }
                    nanos = n;
                    i += 1 + digits;
                }
            }
        }
        let mut extra_ns = 0;
        if millis_suffix {
            let rest = &b[i..];
            if rest.is_empty() || rest.len() > 3 || !rest.iter().all(u8::is_ascii_digit) {
                return None;
            }
            extra_ns = rest.iter().fold(0, |v, &c| v * 10 + i64::from(c - b'0')) * 1_000_000;
        } else if i != b.len() {
            return None;
        }
        // A leap second, and years near the ends of the nanosecond range, are left to chrono,
        // whose rounding there is its own.
        if sec > 59 {
            return None;
        }
        let t = if self.has_year {
            if !(1678..=2261).contains(&year) {
                return None;
            }
            civil_to_ns(year, month, day, hour, min, sec, nanos, 0)?
        } else {
            // As `finish`: the date must exist in a leap year, then the year is placed.
            if !(1..=12).contains(&month) || day == 0 || day > days_in_month(2000, month) {
                return None;
            }
            if hour > 23 || min > 59 {
                return None;
            }
            infer_year(month, day, hour, min, sec, nanos, now_ns)?
        };
        Some(t + extra_ns)
    }
}

/// Why a `timestamp_format` cannot be used, with the layout as written.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LayoutError {
    #[error("invalid timestamp_format {0:?}")]
    Syntax(String),
    #[error("timestamp_format {0:?} needs a date (or %s) and an hour")]
    NoDateOrHour(String),
}

impl Layout {
    /// Checks `format` for chrono syntax errors up front, so a bad layout is a config error and
    /// not a per-line failure.
    pub fn new(format: &str) -> Result<Layout, LayoutError> {
        use chrono::format::{Fixed, Item, Numeric};
        let mut has_year = false;
        let mut has_offset = false;
        let mut has_date = false;
        let mut has_time = false;
        let (format, millis_suffix) = match format.strip_suffix("%L") {
            Some(f) if !f.ends_with('%') || f.ends_with("%%") => (f, true),
            _ => (format, false),
        };
        for item in StrftimeItems::new(format) {
            match item {
                Item::Error => return Err(LayoutError::Syntax(format.to_owned())),
                Item::Numeric(Numeric::Year | Numeric::YearMod100 | Numeric::IsoYear | Numeric::IsoYearMod100, _) => {
                    has_year = true
                }
                Item::Numeric(Numeric::Timestamp, _) => {
                    has_year = true;
                    has_date = true;
                    has_time = true;
                }
                Item::Numeric(Numeric::Month | Numeric::Day | Numeric::Ordinal, _) => has_date = true,
                Item::Fixed(Fixed::ShortMonthName | Fixed::LongMonthName) => has_date = true,
                Item::Numeric(Numeric::Hour | Numeric::Hour12, _) => has_time = true,
                Item::Fixed(Fixed::TimezoneOffset | Fixed::TimezoneOffsetColon | Fixed::TimezoneOffsetZ) => {
                    has_offset = true
                }
                Item::Fixed(Fixed::RFC2822 | Fixed::RFC3339) => {
                    has_year = true;
                    has_offset = true;
                    has_date = true;
                    has_time = true;
                }
                _ => {}
            }
        }
        if !has_date || !has_time {
            return Err(LayoutError::NoDateOrHour(format.to_owned()));
        }
        Ok(Layout {
            format: format.to_owned(),
            millis_suffix,
            has_year,
            has_offset,
            has_date,
            fixed: FixedLayout::compile(format, millis_suffix),
        })
    }

    /// The instant `s` stands for in this layout; `now_ns` supplies a missing year.
    pub fn parse(&self, s: &str, now_ns: i64) -> Option<i64> {
        self.parse_noting(s, now_ns).map(|(t, _)| t)
    }

    /// `parse`, and the reason when part of `s` was not believed: a weekday that contradicts
    /// the date (`Fri Jul 17 2017`, a Monday) is ignored, as peers do, and reported here so
    /// the caller can mark and count the line.
    pub fn parse_noting(&self, s: &str, now_ns: i64) -> Option<(i64, Option<&'static str>)> {
        debug_assert!(self.has_date);
        if let Some(t) = self.fixed.as_ref().and_then(|f| f.parse(s, self.millis_suffix, now_ns)) {
            return Some((t, None));
        }
        self.parse_chrono_noting(s, now_ns)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn never_panic(s in "\\PC{0,40}", now in any::<i64>()) {
            let _ = parse_any(&s);
            let _ = rfc3164_prefix(s.as_bytes(), now);
            let _ = apache(&s);
            let _ = log4j(&s);
            let _ = Layout::new("%m-%d %H:%M:%S%.3f").unwrap().parse(&s, now);
            let _ = Layout::new("%Y%m%d-%H:%M:%S:%L").unwrap().parse(&s, now);
        }

        #[test]
        fn near_misses_never_panic(s in "[0-9]{0,4}[-/: ,.TZ+]{0,2}[0-9A-Za-z]{0,3}[-/: ,.TZ+]{0,2}[0-9]{0,2}[-/: ,.TZ+]{0,2}[0-9:.,+ ]{0,16}", now in any::<i64>()) {
            let _ = parse_any(&s);
            let _ = rfc3164_prefix(s.as_bytes(), now);
        }

        /// Digits in every position (months past 12, Feb 30, second 60 included) and an
        /// occasional stray byte: where the fixed reader answers, chrono answers the same.
        #[test]
        fn fixed_layouts_agree_with_chrono(
            k in 0..5usize,
            digits in prop::collection::vec(0u8..10, 24),
            tweak in prop::option::of((0usize..24, prop::sample::select(vec![b' ', b'.', b'x', b'-', b'9']))),
            now in 0i64..4_000_000_000_000_000_000,
        ) {
            let (format, shape) = [
                ("%y%m%d %H%M%S", "dddddd dddddd"),
                ("%Y-%m-%d %H:%M:%S%.3f", "dddd-dd-dd dd:dd:dd.ddd"),
                ("%m-%d %H:%M:%S%.3f", "dd-dd dd:dd:dd.ddd"),
                ("%y/%m/%d %H:%M:%S", "dd/dd/dd dd:dd:dd"),
                ("%Y%m%d-%H:%M:%S:%L", "dddddddd-dd:dd:dd:dd"),
            ][k];
            let mut text: Vec<u8> = shape
                .bytes()
                .zip(&digits)
                .map(|(c, d)| if c == b'd' { b'0' + d } else { c })
                .collect();
            // Keep the dates mostly plausible so that valid ones are common.
            if digits[0] % 2 == 0 {
                for (i, c) in shape.bytes().enumerate() {
                    if c == b'd' && i > 0 && shape.as_bytes()[i - 1] != b'd' {
                        text[i] = b'0' + digits[i] % 2;
                    }
                }
            }
            if let Some((i, b)) = tweak {
                if i < text.len() {
                    text[i] = b;
                }
            }
            let text = String::from_utf8(text).unwrap();
            let l = Layout::new(format).unwrap();
            let fixed = l.fixed.as_ref().expect("fixed layout");
            if let Some(t) = fixed.parse(&text, l.millis_suffix, now) {
                prop_assert_eq!(Some(t), l.parse_chrono(&text, now), "{} {}", format, text);
            }
        }

        #[test]
        fn rfc3339_agrees_with_chrono(ns in -2_000_000_000_000_000_000i64..4_000_000_000_000_000_000i64, off_min in -1439i32..1439) {
            let off = chrono::FixedOffset::east_opt(off_min * 60).unwrap();
            let text = chrono::DateTime::from_timestamp_nanos(ns).with_timezone(&off).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            prop_assert_eq!(rfc3339(&text), Some(ns), "{}", text);
        }
    }

    // 2026-11-25T13:51:20Z
    const NOW: i64 = 1_795_614_680 * NANOS_PER_SEC;

    fn utc(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    #[test]
    fn days_from_civil_matches_chrono() {
        for (y, m, d) in [
            (1970, 1, 1),
            (2000, 2, 29),
            (1969, 12, 31),
            (2262, 4, 11),
            (1677, 9, 21),
            (2026, 11, 25),
        ] {
            let want = chrono::NaiveDate::from_ymd_opt(y as i32, m, d)
                .unwrap()
                .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap());
            assert_eq!(days_from_civil(y, m, d), want.num_days());
        }
    }

    #[test]
    fn rfc3339_fast_path() {
        assert_eq!(rfc3339("2026-11-25T13:51:20.123456789Z"), Some(NOW + 123_456_789));
        assert_eq!(rfc3339("2026-11-25T14:51:20.5+01:00"), Some(NOW + 500_000_000));
        assert_eq!(rfc3339("2026-11-25t13:51:20z"), Some(NOW));
        assert_eq!(rfc3339("2026-11-25T13:51:20.1234567891Z"), Some(NOW + 123_456_789));
        assert_eq!(rfc3339("2026-11-25T13:51:20"), Some(NOW)); // fallback: offset-less
        assert_eq!(rfc3339("2026-02-30T13:51:20Z"), None);
        assert_eq!(rfc3339("2026-11-25T13:51:20.Z"), None);
        assert_eq!(rfc3339("2026-11-25T25:51:20Z"), None);
        assert_eq!(rfc3339_prefix(b"2026-11-25T13:51:20Z stdout"), Some((NOW, 20)));
    }

    #[test]
    fn rfc3164_year_and_new_year() {
        assert_eq!(rfc3164_prefix(b"Nov 25 13:51:20", NOW), Some(NOW));
        assert_eq!(
            rfc3164_prefix(b"Jun 14 15:16:01 host", NOW),
            Some(utc("2026-06-14T15:16:01Z"))
        );
        assert_eq!(
            rfc3164_prefix(b"Jun  4 15:16:01", NOW),
            Some(utc("2026-06-04T15:16:01Z"))
        );
        // December line read in January: last year.
        let jan2 = utc("2027-01-02T00:00:00Z");
        assert_eq!(
            rfc3164_prefix(b"Dec 31 23:59:59", jan2),
            Some(utc("2026-12-31T23:59:59Z"))
        );
        // A few days ahead (time zone, skew): this year.
        assert_eq!(
            rfc3164_prefix(b"Nov 27 00:00:00", NOW),
            Some(utc("2026-11-27T00:00:00Z"))
        );
        // Feb 29 read in a non-leap year: the last leap year.
        assert_eq!(
            rfc3164_prefix(b"Feb 29 10:00:00", NOW),
            Some(utc("2024-02-29T10:00:00Z"))
        );
        assert_eq!(rfc3164_prefix(b"Foo 14 15:16:01", NOW), None);
        assert_eq!(rfc3164_prefix(b"Jun 32 15:16:01", NOW), None);
        assert_eq!(rfc3164_prefix(b"Jun 14 15:16", NOW), None);
        assert_eq!(rfc3164_prefix(b"Jun  x 15:16:01", NOW), None);
        assert_eq!(rfc3164_prefix(b"Jun  0 15:16:01", NOW), None);
    }

    #[test]
    fn apache_log4j_epoch() {
        assert_eq!(apache("17/May/2015:10:05:03 +0000"), Some(utc("2015-05-17T10:05:03Z")));
        assert_eq!(apache("17/May/2015:10:05:03 -0700"), Some(utc("2015-05-17T17:05:03Z")));
        assert_eq!(apache("17/Mai/2015:10:05:03 +0000"), None);
        assert_eq!(log4j("2015-07-29 17:41:44,747"), Some(utc("2015-07-29T17:41:44.747Z")));
        assert_eq!(log4j("2015-07-29 17:41:44"), Some(utc("2015-07-29T17:41:44Z")));
        assert_eq!(log4j("2015-07-29 17:41:44,"), None);
        assert_eq!(epoch("1795614680"), Some(NOW));
        assert_eq!(epoch("1795614680123"), Some(NOW + 123_000_000));
        assert_eq!(epoch("1795614680123456"), Some(NOW + 123_456_000));
        assert_eq!(epoch("1795614680123456789"), Some(NOW + 123_456_789));
        assert_eq!(epoch("1795614680.25"), Some(NOW + 250_000_000));
        assert_eq!(epoch("12ab"), None);
        assert_eq!(epoch(""), None);
        for s in [
            "2026-11-25T13:51:20Z",
            "2026-11-25 13:51:20,000",
            "25/Nov/2026:13:51:20 +0000",
            "1795614680",
        ] {
            assert_eq!(parse_any(s), Some(NOW), "{s}");
        }
        assert_eq!(parse_any("soon"), None);
    }

    #[test]
    fn layouts() {
        let l = Layout::new("%y%m%d %H%M%S").unwrap();
        assert_eq!(l.parse("081109 203615", NOW), Some(utc("2008-11-09T20:36:15Z")));
        let l = Layout::new("%Y%m%d-%H:%M:%S:%3f").unwrap();
        assert_eq!(
            l.parse("20171223-22:15:29:606", NOW),
            Some(utc("2017-12-23T22:15:29.606Z"))
        );
        let l = Layout::new("%m-%d %H:%M:%S%.3f").unwrap();
        assert_eq!(
            l.parse("03-17 16:13:38.811", NOW),
            Some(utc("2026-03-17T16:13:38.811Z"))
        );
        let l = Layout::new("%a %b %d %H:%M:%S %Y").unwrap();
        assert_eq!(
            l.parse("Sun Dec 04 04:47:44 2005", NOW),
            Some(utc("2005-12-04T04:47:44Z"))
        );
        let l = Layout::new("%d/%b/%Y:%H:%M:%S %z").unwrap();
        assert_eq!(
            l.parse("17/May/2015:10:05:03 -0700", NOW),
            Some(utc("2015-05-17T17:05:03Z"))
        );
        assert_eq!(l.parse("17/May/2015", NOW), None);
        let l = Layout::new("%Y%m%d-%H:%M:%S:%L").unwrap();
        assert_eq!(
            l.parse("20171223-22:53:7:6", NOW),
            Some(utc("2017-12-23T22:53:07.006Z"))
        );
        assert_eq!(
            l.parse("20171223-22:53:07:606", NOW),
            Some(utc("2017-12-23T22:53:07.606Z"))
        );
        assert_eq!(l.parse("20171223-22:53:07:6066", NOW), None);
        assert_eq!(l.parse("20171223-22:53:07:", NOW), None);
        for (format, fixed) in [
            ("%y%m%d %H%M%S", true),
            ("%Y%m%d-%H:%M:%S:%3f", false),
            ("%a %b %d %H:%M:%S %Y", false),
            ("%m-%d %H:%M:%S%.3f", true),
            ("%Y-%m-%d %H:%M:%S%.3f%z", false),
            ("%Y-%m-%d %H:%M:%S%.3f%H", false),
        ] {
            assert_eq!(Layout::new(format).unwrap().fixed.is_some(), fixed, "{format}");
        }
        // Text the fixed reader leaves to chrono: a doubled space, one-digit fields.
        let l = Layout::new("%y%m%d %H%M%S").unwrap();
        assert_eq!(l.parse("081109  203615", NOW), Some(utc("2008-11-09T20:36:15Z")));
        let l = Layout::new("%m-%d %H:%M:%S%.3f").unwrap();
        assert_eq!(l.parse("3-17 16:13:38.811", NOW), Some(utc("2026-03-17T16:13:38.811Z")));
        assert!(Layout::new("%H:%M").is_err());
    }

    #[test]
    fn offset_without_year() {
        // 23:30 at UTC-05:00 on Nov 24 is 04:30 UTC on Nov 25.
        let l = Layout::new("%b %d %H:%M:%S %z").unwrap();
        assert_eq!(l.parse("Nov 24 23:30:00 -0500", NOW), Some(utc("2026-11-25T04:30:00Z")));
        assert_eq!(l.parse("Jun 13 16:33:35 +0200", NOW), Some(utc("2026-06-13T14:33:35Z")));
        // The New Year rule runs on the writer's clock: 00:30 on Jan 1 at +01:00 is still
        // Dec 31 in UTC, and read on Dec 31 it is this year's, not last year's.
        let dec31 = utc("2026-12-31T23:45:00Z");
        assert_eq!(
            l.parse("Jan 01 00:30:00 +0100", dec31),
            Some(utc("2026-12-31T23:30:00Z"))
        );
    }

    #[test]
    fn wrong_weekday_uses_the_date() {
        let l = Layout::new("%a %b %d %H:%M:%S %Y").unwrap();
        // 2017-07-17 was a Monday.
        assert_eq!(
            l.parse_noting("Fri Jul 17 10:00:00 2017", NOW),
            Some((utc("2017-07-17T10:00:00Z"), Some(WRONG_WEEKDAY)))
        );
        assert_eq!(
            l.parse_noting("Mon Jul 17 10:00:00 2017", NOW),
            Some((utc("2017-07-17T10:00:00Z"), None))
        );
        assert_eq!(l.parse_noting("Xyz Jul 17 10:00:00 2017", NOW), None);
        assert_eq!(l.parse_noting("Fri Jul 32 10:00:00 2017", NOW), None);
        // Without a year the weekday cannot be checked; the date is placed as usual.
        let l = Layout::new("%a %b %d %H:%M:%S").unwrap();
        assert_eq!(
            l.parse_noting("Fri Jul 17 10:00:00", NOW),
            Some((utc("2026-07-17T10:00:00Z"), None))
        );
        assert!(Layout::new("%Y-%m-%d %H %Q").is_err());
    }
}
