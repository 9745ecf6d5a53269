//! The `klog` format: the glog header Kubernetes components (and other Go programs using
//! klog/glog) write: `Lmmdd hh:mm:ss.uuuuuu threadid file:line] msg`, e.g.
//! `I1125 12:00:00.000000    1234 file.go:42] msg`; C++ glog since 0.7 writes the year too
//! (`I20261125 12:00:00.000000 ...`), which is then used as written.
//!
//! Mapping: `L` (`I`, `W`, `E`, `F`; `D`/`V` are accepted as debug) → level; `mmdd hh:mm:ss.uuuuuu`
//! → event time, UTC, with the year from the supplied `now_ns` (`timestamp::infer_year`, the
//! New Year rule of RFC 3164); threadid → `process.pid` (klog writes the process id there);
//! `file:line` → `code.filepath` and `code.lineno` (integer); the text after `] ` → message.
//!
//! A line is rejected when the header does not have this shape.

use std::borrow::Cow;

use super::parsed::{parse_u64, FieldValue, ParseError, Parsed};
use super::{timestamp, Level};

const FORMAT: &str = "klog";

/// Parses one line into a fresh record; `now_ns` supplies the missing year.
pub fn parse(line: &str, now_ns: i64) -> Result<Parsed<'_>, ParseError> {
    let mut out = Parsed::default();
    parse_into(line, now_ns, &mut out)?;
    Ok(out)
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    parse_u64(s).map(|v| v as u32)
}

/// The time after the level letter: `mmdd hh:mm:ss.uuuuuu`, or glog's `yyyymmdd hh:mm:ss.uuuuuu`
/// (C++ glog writes the year since 0.7); the instant and the index after it.
fn header_time(b: &[u8], now_ns: i64) -> Result<(i64, usize), ParseError> {
    let shape = ParseError::new(FORMAT, "expected `mmdd hh:mm:ss.uuuuuu` after the level", 1);
    // With a year the rest of the header sits four bytes further on.
    let y = if b.get(9) == Some(&b' ') { 4 } else { 0 };
    if b.len() < 21 + y || b[5 + y] != b' ' || b[8 + y] != b':' || b[11 + y] != b':' || b[14 + y] != b'.' {
        return Err(shape);
    }
    let fields = (
        digits(b, 1 + y, 2),
        digits(b, 3 + y, 2),
        digits(b, 6 + y, 2),
        digits(b, 9 + y, 2),
        digits(b, 12 + y, 2),
        digits(b, 15 + y, 6),
    );
    let (Some(mo), Some(d), Some(h), Some(mi), Some(s), Some(us)) = fields else {
        return Err(shape);
    };
    let time = match y {
        0 => timestamp::infer_year(mo, d, h, mi, s, us * 1000, now_ns),
        _ => {
            let year = digits(b, 1, 4).ok_or(shape)?;
            timestamp::civil_to_ns(i64::from(year), mo, d, h, mi, s, us * 1000, 0)
        }
    };
    Ok((time.ok_or(ParseError::new(FORMAT, "invalid date or time", 1))?, 21 + y))
}

/// Parses one line (without its ending) into `out`, clearing it first.
pub fn parse_into<'a>(line: &'a str, now_ns: i64, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    out.clear();
    let b = line.as_bytes();
    let err = |reason, at| ParseError::new(FORMAT, reason, at);
    let level = match b.first() {
        Some(b'I') => Level::Info,
        Some(b'W') => Level::Warn,
        Some(b'E') => Level::Error,
        Some(b'F') => Level::Fatal,
        Some(b'D' | b'V') => Level::Debug,
        _ => return Err(err("expected a level letter I, W, E or F", 0)),
    };
    let (time, time_end) = header_time(b, now_ns)?;
    let mut i = time_end;
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    let pid_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let pid = parse_u64(&b[pid_start..i]).ok_or(err("expected the thread id", pid_start))?;
    if b.get(i) != Some(&b' ') || i == time_end {
        return Err(err("expected the thread id", pid_start));
    }
    i += 1;
    let src_end = memchr::memchr(b']', &b[i..])
        .map(|k| i + k)
        .ok_or(err("expected `file:line]`", i))?;
    let src = &line[i..src_end];
    let (file, lineno) = src.rsplit_once(':').ok_or(err("expected `file:line]`", i))?;
    let lineno = parse_u64(lineno.as_bytes()).ok_or(err("expected `file:line]`", i))?;
    if file.is_empty() || file.contains(' ') {
        return Err(err("expected `file:line]`", i));
    }
    let mut m = src_end + 1;
    if b.get(m) == Some(&b' ') {
        m += 1;
    }
    out.timestamp_ns = Some(time);
    out.level = Some(level);
    out.message = Cow::Borrowed(&line[m..]);
    out.push("process.pid", FieldValue::Int(pid.min(i64::MAX as u64) as i64));
    out.push("code.filepath", FieldValue::str(file));
    out.push("code.lineno", FieldValue::Int(lineno.min(i64::MAX as u64) as i64));
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_795_614_680_000_000_000; // 2026-11-25T13:51:20Z

    fn utc(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    #[test]
    fn parses_the_header() {
        let p = parse("I1125 12:00:00.123456    1234 file.go:42] msg with ] bracket", NOW).unwrap();
        assert_eq!(p.timestamp_ns, Some(utc("2026-11-25T12:00:00.123456Z")));
        assert_eq!(p.level, Some(Level::Info));
        assert_eq!(p.message, "msg with ] bracket");
        assert_eq!(p.field("process.pid"), Some(&FieldValue::Int(1234)));
        assert_eq!(p.field("code.filepath"), Some(&FieldValue::str("file.go")));
        assert_eq!(p.field("code.lineno"), Some(&FieldValue::Int(42)));
        let p = parse("E1231 23:59:59.000001 7 pkg/a/b.go:1] ", utc("2027-01-01T00:00:05Z")).unwrap();
        assert_eq!(p.timestamp_ns, Some(utc("2026-12-31T23:59:59.000001Z")));
        assert_eq!(p.level, Some(Level::Error));
        assert_eq!(p.message, "");
        assert_eq!(
            parse("W0102 03:04:05.000000 1 x.go:9]", NOW).unwrap().level,
            Some(Level::Warn)
        );
        assert_eq!(
            parse("F0102 03:04:05.000000 1 x.go:9] boom", NOW).unwrap().level,
            Some(Level::Fatal)
        );
    }

    #[test]
    fn glog_with_the_year() {
        let p = parse("W20190102 03:04:05.000006  4242 server.cc:77] slow", NOW).unwrap();
        assert_eq!(p.timestamp_ns, Some(utc("2019-01-02T03:04:05.000006Z")));
        assert_eq!((p.level, &*p.message), (Some(Level::Warn), "slow"));
        assert_eq!(p.field("process.pid"), Some(&FieldValue::Int(4242)));
        for line in [
            "I20191302 03:04:05.000006 1 a.cc:1] m",
            "I2019010 03:04:05.000006 1 a.cc:1] m",
            "I20190102 03:04:05 1 a.cc:1] m",
        ] {
            assert!(parse(line, NOW).is_err(), "{line}");
        }
    }

    #[test]
    fn rejects() {
        for line in [
            "",
            "X1125 12:00:00.000000 1 f.go:1] m",
            "I1125 12:00:00 1 f.go:1] m",
            "I1325 12:00:00.000000 1 f.go:1] m",
            "I1125 12:00:00.000000 f.go:1] m",
            "I1125 12:00:00.000000 1 f.go] m",
            "I1125 12:00:00.000000 1 f.go:1 m",
            "I1125 12:00:00.000000 1 f go:1] m",
            "I1125 12:00:00.000000x1 f.go:1] m",
        ] {
            assert!(parse(line, NOW).is_err(), "{line:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*", now in any::<i64>()) {
            let _ = parse(&s, now);
        }

        #[test]
        fn never_panics_near_the_format(s in "[IWEFX][0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6} {0,4}[0-9]{0,5} ?[a-z.:0-9 ]{0,10}\\]? ?.{0,5}", now in any::<i64>()) {
            let _ = parse(&s, now);
        }

        #[test]
        fn never_panics_near_the_year_form(s in "[IW][0-9]{8} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{0,6} {0,4}[0-9]{0,5} ?[a-z.:0-9 ]{0,10}\\]? ?.{0,5}", now in any::<i64>()) {
            let _ = parse(&s, now);
        }
    }
}
