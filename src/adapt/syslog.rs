//! The `syslog` format, in the three shapes found on disk and on the wire:
//!
//! - RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`, any
//!   header field may be the NILVALUE `-`;
//! - RFC 3164 (BSD): `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`;
//! - the same without `<PRI>`, as rsyslog/syslogd write `/var/log/messages`, `auth.log`, …
//!   (rsyslog's high-precision file form, an RFC 3339 time in place of `Mmm dd hh:mm:ss`, too).
//!
//! Mapping onto the record:
//! - time → event time; RFC 3164's year-less time takes its year from the supplied `now_ns`
//!   (`timestamp::infer_year`: a December line read in January is last year's) and is read as
//!   UTC; an RFC 5424 `-` time leaves the event time unset;
//! - PRI → `syslog.facility` (its keyword: `kern`, `user`, `auth`, … `local7`) and
//!   `syslog.severity` (0–7); the severity → level (0–2 fatal, 3 error, 4 warn, 5–6 info,
//!   7 debug). Without PRI there is no level;
//! - HOSTNAME → `host.hostname`; APP-NAME / TAG → `syslog.appname`; a numeric PROCID / `[PID]`
//!   → `process.pid` (an integer), another PROCID → `syslog.procid`; MSGID → `syslog.msgid`;
//! - STRUCTURED-DATA → `sd`, a map of SD-ID → map of PARAM-NAME → value (so the path of a
//!   parameter is `sd.<id>.<param>`), values unescaped (`\"`, `\\`, `\]`);
//! - MSG of RFC 5424 → message, borrowed, a leading UTF-8 BOM removed; the rest of the line
//!   as written (trailing spaces included);
//! - MSG of RFC 3164 → message, all spaces after the tag's `:` removed.
//!
//! Leniency (the default; `parse_into_with` with `strict` turns it off). Senders in the field
//! stray from the RFCs in known ways, and a line with one bad part still has a sound rest:
//! - RFC 3164 without a hostname (`<133>Jun 13 16:33:35 haproxy[73411]: ...`, what a program
//!   writes to /dev/log): a first word shaped like a tag is read as the tag;
//! - RFC 3164 times as network devices and syslog-ng write them: an unpadded day
//!   (`Jun 8 11:54:08`), a year after the day and `: ` in place of the hostname
//!   (`Nov 25 2026 13:51:20: %ASA-6-...`, Cisco ASA), a fraction after the seconds;
//! - an RFC 5424 line whose structured data is malformed keeps its header, and the structured
//!   data stays in the message as written; a header cut short keeps what it had; an
//!   unreadable time is kept as the field `timestamp` (`time_unparsed`);
//! - an RFC 3164 line with a PRI but no time we read: the rest is the message.
//!
//! Each salvage notes its reason with `Parsed::warn` (a `parse_warning` field). A message
//! glued to its tag (`root[8539]:text`) and several spaces after a tag are valid RFC 3164 and
//! are read the same in both modes.
//!
//! A line is rejected when its PRI is malformed or above 191, when it has neither a PRI nor a
//! time, or when nothing follows its time; in strict mode also when its time is not one of the shapes above, it lacks a
//! hostname, a 5424 header is cut short, or its structured data is malformed.

use std::borrow::Cow;

use super::parsed::{parse_u64, FieldValue, ParseError, Parsed};
use super::{timestamp, Level};

const FORMAT: &str = "syslog";

const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// The level of a syslog severity (0 emergency … 7 debug).
pub fn severity_level(severity: u8) -> Level {
    match severity {
        0..=2 => Level::Fatal,
        3 => Level::Error,
        4 => Level::Warn,
        5 | 6 => Level::Info,
        _ => Level::Debug,
    }
}

/// Parses one line into a fresh record, leniently; `now_ns` supplies RFC 3164's missing year.
pub fn parse(line: &str, now_ns: i64) -> Result<Parsed<'_>, ParseError> {
    let mut out = Parsed::default();
    parse_into(line, now_ns, &mut out)?;
    Ok(out)
}

/// `parse`, rejecting what the RFCs reject (`parse_into_with` with `strict`).
pub fn parse_strict(line: &str, now_ns: i64) -> Result<Parsed<'_>, ParseError> {
    let mut out = Parsed::default();
    parse_into_with(line, now_ns, true, &mut out)?;
    Ok(out)
}

/// Parses one line (without its ending) into `out`, clearing it first, leniently.
pub fn parse_into<'a>(line: &'a str, now_ns: i64, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    parse_into_with(line, now_ns, false, out)
}

/// Parses one line into `out`, clearing it first. `strict` rejects the line on the first part
/// that breaks the RFC; otherwise the shapes of the module docs' "Leniency" are read too and a
/// part that cannot be read is salvaged with a `Parsed::warn` reason.
pub fn parse_into_with<'a>(line: &'a str, now_ns: i64, strict: bool, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    out.clear();
    let b = line.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'<') {
        let close = b.iter().take(5).position(|&c| c == b'>');
        let pri = close
            .and_then(|c| parse_u64(&b[1..c]).map(|p| (p, c)))
            .filter(|&(p, c)| p <= 191 && c >= 2 && !(c > 2 && b[1] == b'0'));
        let Some((pri, close)) = pri else {
            return Err(ParseError::new(FORMAT, "malformed <PRI>", 0));
        };
        let (facility, severity) = ((pri / 8) as usize, (pri % 8) as u8);
        out.level = Some(severity_level(severity));
        out.push("syslog.facility", FieldValue::str(FACILITIES[facility]));
        out.push("syslog.severity", FieldValue::Int(i64::from(severity)));
        i = close + 1;
        if b.get(i) == Some(&b'1') && b.get(i + 1) == Some(&b' ') {
            return rfc5424(line, i + 2, strict, out);
        }
    }
    rfc3164(line, i, now_ns, strict, out)
}

/// Next space-delimited token from `i`: (token, index after the space following it).
fn token(line: &str, i: usize) -> Option<(&str, usize)> {
    let b = line.as_bytes();
    if i >= b.len() {
        return None;
    }
    let end = memchr::memchr(b' ', &b[i..]).map_or(b.len(), |k| i + k);
    if end == i {
        return None;
    }
    Some((&line[i..end], (end + 1).min(b.len().max(end))))
}

const NO_TIME: &str = "expected `Mmm dd hh:mm:ss` or an RFC 3339 time";

/// The time at the start of an RFC 3164 line: (instant, bytes), or `None` for no time we read.
fn rfc3164_time(rest: &[u8], now_ns: i64, strict: bool) -> Option<(i64, usize)> {
    if let Some(t) = timestamp::rfc3164_prefix(rest, now_ns) {
        if strict || rest.get(15) != Some(&b'.') {
            return Some((t, 15));
        }
    } else if let Some(found) = timestamp::rfc3339_prefix(rest) {
        return Some(found);
    }
    match strict {
        true => None,
        false => loose_time(rest, now_ns),
    }
}

/// The shapes of RFC 3164's time that senders write besides `Mmm dd hh:mm:ss`: an unpadded
/// day (`Jun 8`), a year after the day (`Nov 25 2026 13:51:20`, Cisco ASA), a fraction after
/// the seconds (`13:51:20.123`, syslog-ng's `frac-digits`). (instant, bytes) of the time.
fn loose_time(b: &[u8], now_ns: i64) -> Option<(i64, usize)> {
    let month = timestamp::month_abbr(b.get(..3)?)?;
    if b.get(3) != Some(&b' ') {
        return None;
    }
    let mut i = if b.get(4) == Some(&b' ') { 5 } else { 4 };
    let digit = |c: Option<&u8>| c.filter(|c| c.is_ascii_digit()).map(|c| u32::from(c - b'0'));
    let mut day = digit(b.get(i))?;
    i += 1;
    if let Some(d) = digit(b.get(i)) {
        day = day * 10 + d;
        i += 1;
    }
    if b.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    let year = match (timestamp::d4(b, i), b.get(i + 4)) {
        (Some(y), Some(b' ')) => {
            i += 5;
            Some(i64::from(y))
        }
        _ => None,
    };
    if b.get(i + 2) != Some(&b':') || b.get(i + 5) != Some(&b':') {
        return None;
    }
    let (hour, min, sec) = (timestamp::d2(b, i)?, timestamp::d2(b, i + 3)?, timestamp::d2(b, i + 6)?);
    i += 8;
    let mut nanos = 0;
    if b.get(i) == Some(&b'.') {
        let (n, len) = timestamp::fraction(b, i + 1);
        if len == 0 {
            return None;
        }
        nanos = n;
        i += 1 + len;
    }
    let t = match year {
        Some(y) => timestamp::civil_to_ns(y, month, day, hour, min, sec, nanos, 0)?,
        None => timestamp::infer_year(month, day, hour, min, sec, nanos, now_ns)?,
    };
    Some((t, i))
}

fn rfc3164<'a>(line: &'a str, mut i: usize, now_ns: i64, strict: bool, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    let b = line.as_bytes();
    match rfc3164_time(&b[i..], now_ns, strict) {
        Some((t, n)) => {
            out.timestamp_ns = Some(t);
            i += n;
        }
        // With a PRI the line is syslog all the same: a relay takes such a line's text as
        // its content (RFC 3164 4.3.3), and so do we.
        None if !strict && i > 0 => {
            out.warn(NO_TIME);
            out.message = Cow::Borrowed(&line[i..]);
            return Ok(());
        }
        None => return Err(ParseError::new(FORMAT, NO_TIME, i)),
    }
    // Cisco ASA without `logging device-id` ends the time with `: ` where the hostname would be.
    let colon_no_host = !strict && b.get(i) == Some(&b':') && b.get(i + 1) == Some(&b' ');
    if colon_no_host {
        i += 1;
    }
    if b.get(i) != Some(&b' ') {
        return Err(ParseError::new(FORMAT, "expected a space after the time", i));
    }
    i += 1;
    let (host, next) = token(line, i).ok_or(ParseError::new(FORMAT, "expected a hostname", i))?;
    // A program writing to /dev/log leaves the hostname out (the relay would add it): a first
    // word shaped like a tag (`haproxy[73411]:`, `su:`) is the tag. Hostnames hold no `:` at
    // their end nor `[`, so no real hostname is taken for one.
    if colon_no_host {
        // No hostname to read: the tag starts here.
    } else if is_tag(host) {
        if strict {
            return Err(ParseError::new(FORMAT, "expected a hostname, found a tag", i));
        }
    } else {
        out.push("host.hostname", FieldValue::str(host));
        i = next;
        if i >= b.len() || b[i - 1] != b' ' {
            // Hostname and nothing else.
            return Ok(());
        }
    }
    tag_and_message(line, i, out);
    Ok(())
}

/// The TAG and MSG of an RFC 3164 line from `i`. TAG: up to `[`, `:` or a space, then `[pid]`
/// and/or `:`. Failing that, a tag with spaces (`syslogd 1.4.1: restart.`, `-- root[2421]: …`):
/// up to MAX_LOOSE_TAG bytes before `[pid]:` or `: `. Otherwise there is no tag and the rest
/// is the message.
fn tag_and_message<'a>(line: &'a str, mut i: usize, out: &mut Parsed<'a>) {
    let b = line.as_bytes();
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    // Cisco ASA with `logging device-id` writes `HOSTNAME : %ASA-...`: the lone colon is no tag.
    if b.get(i) == Some(&b':') && b.get(i + 1) == Some(&b' ') {
        i += 2;
    }
    let tag_start = i;
    let Some((tag, pid, mut k)) = tag_at(b, line, tag_start, false).or_else(|| tag_at(b, line, tag_start, true)) else {
        out.message = Cow::Borrowed(&line[tag_start..]);
        return;
    };
    out.push("syslog.appname", FieldValue::str(tag));
    if let Some(pid) = pid {
        match parse_u64(pid.as_bytes()) {
            Some(n) if n <= i64::MAX as u64 => out.push("process.pid", FieldValue::Int(n as i64)),
            _ => out.push("syslog.procid", FieldValue::str(pid)),
        }
    }
    if b.get(k) == Some(&b':') {
        k += 1;
    }
    // All the spaces: rsyslog's own lines have two (`rsyslogd:  [origin ...`), and the
    // message is the text after them either way.
    while b.get(k) == Some(&b' ') {
        k += 1;
    }
    out.message = Cow::Borrowed(&line[k..]);
}

/// The first word after an RFC 3164 time is a tag, not a hostname: `name:` or `name[pid]:`,
/// possibly with the message glued on after `]:`.
fn is_tag(word: &str) -> bool {
    let b = word.as_bytes();
    // Every line asks: answer for a plain hostname without walking it as a tag (not with the
    // memchr crate: on a word this short its setup costs more than the scan).
    if b.last() != Some(&b':') && !b.contains(&b'[') {
        return false;
    }
    match tag_at(b, word, 0, false) {
        Some((_, pid, k)) => b.get(k) == Some(&b':') && (k + 1 == b.len() || pid.is_some()),
        None => false,
    }
}

/// Longest tag with spaces accepted (`tag_at` with `loose`).
const MAX_LOOSE_TAG: usize = 48;

/// A tag at `start`: (tag, pid text, index after `]`/the tag). Strict: the tag has no space and
/// is followed by `[pid]` or `:`. Loose: the tag may have spaces, must be followed by `[pid]:`
/// or by `:` and a space (or the end), within `MAX_LOOSE_TAG` bytes. After `[pid]:` the
/// message may follow without a space (`root[8539]:syslog message`): the brackets leave no
/// doubt about where the tag ends, as a bare `word:text` would.
fn tag_at<'a>(b: &[u8], line: &'a str, start: usize, loose: bool) -> Option<(&'a str, Option<&'a str>, usize)> {
    let limit = if loose {
        (start + MAX_LOOSE_TAG).min(b.len())
    } else {
        b.len()
    };
    let mut j = start;
    while j < limit && !matches!(b[j], b'[' | b':') && (loose || b[j] != b' ') {
        j += 1;
    }
    if j == start || j >= b.len() || !matches!(b[j], b'[' | b':') {
        return None;
    }
    let tag = &line[start..j];
    let mut k = j;
    let mut pid = None;
    if b[k] == b'[' {
        let close = memchr::memchr(b']', &b[k..])?;
        pid = Some(&line[k + 1..k + close]);
        k += close + 1;
    }
    let colon = b.get(k) == Some(&b':');
    let after_ok = match b.get(k) {
        None => true,
        Some(b':') => pid.is_some() || matches!(b.get(k + 1), None | Some(b' ')),
        Some(b' ') => pid.is_some() && !loose,
        _ => false,
    };
    if !after_ok || (loose && !colon) || tag.ends_with(' ') {
        return None;
    }
    Some((tag, pid, k))
}

const CUT_SHORT: &str = "RFC 5424 header cut short";

/// An RFC 5424 line whose header ends early at `i`: an error when strict, else what was read
/// is kept and the rest (if any) is the message.
fn cut_short<'a>(line: &'a str, i: usize, strict: bool, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    if strict {
        return Err(ParseError::new(FORMAT, CUT_SHORT, i));
    }
    out.warn(CUT_SHORT);
    out.message = Cow::Borrowed(line.get(i..).unwrap_or(""));
    Ok(())
}

fn rfc5424<'a>(line: &'a str, i: usize, strict: bool, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    let b = line.as_bytes();
    let Some((ts, mut i)) = token(line, i) else {
        return cut_short(line, i, strict, out);
    };
    if ts != "-" {
        match timestamp::rfc3339_prefix(ts.as_bytes()) {
            Some((t, n)) if n == ts.len() => out.timestamp_ns = Some(t),
            _ if strict => return Err(ParseError::new(FORMAT, "RFC 5424 time is not RFC 3339", i)),
            // Kept as written, as the other formats keep a time they cannot read.
            _ => {
                out.time_unparsed = true;
                out.push("timestamp", FieldValue::str(ts));
            }
        }
    }
    for key in ["host.hostname", "syslog.appname", "process.pid", "syslog.msgid"] {
        if i >= b.len() || b[i - 1] != b' ' {
            return cut_short(line, i, strict, out);
        }
        let Some((v, next)) = token(line, i) else {
            return cut_short(line, i, strict, out);
        };
        i = next;
        if v == "-" {
            continue;
        }
        if key == "process.pid" {
            match parse_u64(v.as_bytes()) {
                Some(n) if n <= i64::MAX as u64 => out.push(key, FieldValue::Int(n as i64)),
                _ => out.push("syslog.procid", FieldValue::str(v)),
            }
        } else {
            out.push(key, FieldValue::str(v));
        }
    }
    if i >= b.len() || b[i - 1] != b' ' {
        return cut_short(line, i, strict, out);
    }
    match structured_data(line, i, out) {
        Ok(()) => Ok(()),
        Err(e) if strict => Err(e),
        // The header is sound: keep it, and the structured data we could not read stays in
        // the message as written, for a person to read.
        Err(e) => {
            out.fields.retain(|(k, _)| k != "sd");
            out.warn(e.reason);
            out.message = Cow::Borrowed(&line[i..]);
            Ok(())
        }
    }
}

/// STRUCTURED-DATA at `i` (into the field `sd`) and the MSG after it.
fn structured_data<'a>(line: &'a str, mut i: usize, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    let b = line.as_bytes();
    if b[i] == b'-' {
        i += 1;
    } else if b[i] == b'[' {
        let mut sd = Vec::new();
        while b.get(i) == Some(&b'[') {
            let (elem, next) = sd_element(line, i)?;
            sd.push(elem);
            i = next;
        }
        out.push("sd", FieldValue::Map(sd));
    } else {
        return Err(ParseError::new(FORMAT, "expected `-` or `[` for structured data", i));
    }
    match b.get(i) {
        None => {}
        Some(b' ') => {
            let msg = &line[i + 1..];
            out.message = Cow::Borrowed(msg.strip_prefix('\u{feff}').unwrap_or(msg));
        }
        Some(_) => return Err(ParseError::new(FORMAT, "expected a space after structured data", i)),
    }
    Ok(())
}

/// One `[id name="value" ...]` at `i`: (id, map of params) and the index past `]`.
fn sd_element(line: &str, mut i: usize) -> Result<((Cow<'_, str>, FieldValue<'_>), usize), ParseError> {
    let b = line.as_bytes();
    let name_end = |from: usize| {
        let mut j = from;
        while j < b.len() && !matches!(b[j], b' ' | b'=' | b']' | b'"') && b[j] > 32 && b[j] < 127 {
            j += 1;
        }
        j
    };
    i += 1;
    let id_end = name_end(i);
    if id_end == i {
        return Err(ParseError::new(FORMAT, "empty SD-ID", i));
    }
    let id = &line[i..id_end];
    i = id_end;
    let mut params = Vec::new();
    loop {
        match b.get(i) {
            Some(b']') => return Ok(((Cow::Borrowed(id), FieldValue::Map(params)), i + 1)),
            Some(b' ') => {
                i += 1;
                let n_end = name_end(i);
                if n_end == i || b.get(n_end) != Some(&b'=') || b.get(n_end + 1) != Some(&b'"') {
                    return Err(ParseError::new(FORMAT, "expected PARAM-NAME=\"value\"", i));
                }
                let name = &line[i..n_end];
                let (value, next) = sd_value(line, n_end + 2)?;
                params.push((Cow::Borrowed(name), FieldValue::Str(value)));
                i = next;
            }
            _ => return Err(ParseError::new(FORMAT, "unterminated structured data", i)),
        }
    }
}

/// A PARAM-VALUE starting after its opening quote: the text and the index past the closing quote.
fn sd_value(line: &str, start: usize) -> Result<(Cow<'_, str>, usize), ParseError> {
    let b = line.as_bytes();
    let mut i = start;
    let mut owned: Option<String> = None;
    let mut run = start;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let v = match owned {
                    None => Cow::Borrowed(&line[start..i]),
                    Some(mut s) => {
                        s.push_str(&line[run..i]);
                        Cow::Owned(s)
                    }
                };
                return Ok((v, i + 1));
            }
            b'\\' if matches!(b.get(i + 1), Some(b'"' | b'\\' | b']')) => {
                let s = owned.get_or_insert_with(String::new);
                s.push_str(&line[run..i]);
                i += 1;
                run = i;
                i += 1;
            }
            _ => i += 1,
        }
    }
    Err(ParseError::new(FORMAT, "unterminated PARAM-VALUE", start))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // 2026-11-25T13:51:20Z
    const NOW: i64 = 1_795_614_680_000_000_000;

    fn utc(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    #[test]
    fn rfc3164_with_pri() {
        let p = parse(
            "<34>Oct 11 22:14:15 mymachine su[123]: 'su root' failed for lonvick on /dev/pts/8",
            NOW,
        )
        .unwrap();
        assert_eq!(p.timestamp_ns, Some(utc("2026-10-11T22:14:15Z")));
        assert_eq!(p.level, Some(Level::Fatal));
        assert_eq!(p.message, "'su root' failed for lonvick on /dev/pts/8");
        assert_eq!(p.field("syslog.facility"), Some(&FieldValue::str("auth")));
        assert_eq!(p.field("syslog.severity"), Some(&FieldValue::Int(2)));
        assert_eq!(p.field("host.hostname"), Some(&FieldValue::str("mymachine")));
        assert_eq!(p.field("syslog.appname"), Some(&FieldValue::str("su")));
        assert_eq!(p.field("process.pid"), Some(&FieldValue::Int(123)));
    }

    #[test]
    fn file_form_without_pri() {
        let p = parse(
            "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; ",
            NOW,
        )
        .unwrap();
        assert_eq!(p.level, None);
        assert_eq!(p.timestamp_ns, Some(utc("2026-06-14T15:16:01Z")));
        assert_eq!(p.field("syslog.appname"), Some(&FieldValue::str("sshd(pam_unix)")));
        assert_eq!(p.message, "authentication failure; ");
        let p = parse("Jun  9 04:06:20 combo logrotate: ALERT exited abnormally with [1]", NOW).unwrap();
        assert_eq!(p.field("syslog.appname"), Some(&FieldValue::str("logrotate")));
        assert_eq!(p.field("process.pid"), None);
        assert_eq!(p.message, "ALERT exited abnormally with [1]");
        let p = parse("Jun  9 04:06:20 combo just words here", NOW).unwrap();
        assert_eq!(p.field("syslog.appname"), None);
        assert_eq!(p.message, "just words here");
        let p = parse("Jun 19 04:09:11 combo syslogd 1.4.1: restart.", NOW).unwrap();
        assert_eq!(p.field("syslog.appname"), Some(&FieldValue::str("syslogd 1.4.1")));
        assert_eq!(p.message, "restart.");
        let p = parse("Jul  7 08:06:15 combo  -- root[2421]: ROOT LOGIN ON tty2", NOW).unwrap();
        assert_eq!(p.field("syslog.appname"), Some(&FieldValue::str("-- root")));
        assert_eq!(p.field("process.pid"), Some(&FieldValue::Int(2421)));
        assert_eq!(p.message, "ROOT LOGIN ON tty2");
        let p = parse(
            "Jul  7 08:06:15 combo a very long sentence without any tag at all, then: colon",
            NOW,
        )
        .unwrap();
        assert_eq!(p.field("syslog.appname"), None);
        let p = parse("Jun  9 04:06:20 combo", NOW).unwrap();
        assert_eq!(p.message, "");
        let p = parse("Jun  9 04:06:20 combo tag[x]: m", NOW).unwrap();
        assert_eq!(p.field("syslog.procid"), Some(&FieldValue::str("x")));
        let p = parse("2026-11-25T13:51:20.5+00:00 web nginx[7]: up", NOW).unwrap();
        assert_eq!(p.timestamp_ns, Some(NOW + 500_000_000));
        assert_eq!(p.message, "up");
    }

    #[test]
    fn new_year() {
        let jan = utc("2027-01-01T00:00:30Z");
        let p = parse("Dec 31 23:59:59 h t: m", jan).unwrap();
        assert_eq!(p.timestamp_ns, Some(utc("2026-12-31T23:59:59Z")));
        let p = parse("Jan  1 00:00:10 h t: m", jan).unwrap();
        assert_eq!(p.timestamp_ns, Some(utc("2027-01-01T00:00:10Z")));
    }

    #[test]
    fn rfc5424_examples() {
        let p = parse(
            "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{feff}'su root' failed for lonvick",
            NOW,
        )
        .unwrap();
        assert_eq!(p.timestamp_ns, Some(utc("2003-10-11T22:14:15.003Z")));
        assert_eq!(p.level, Some(Level::Fatal));
        assert_eq!(p.message, "'su root' failed for lonvick");
        assert_eq!(p.field("syslog.msgid"), Some(&FieldValue::str("ID47")));
        assert_eq!(p.field("process.pid"), None);

        let p = parse(
            r#"<165>1 2003-10-11T22:14:15.003-07:00 host evntslog 8710 ID47 [exampleSDID@32473 iut="3" eventSource="Appli\"cation\]"][examplePriority@32473 class="high"] An application event"#,
            NOW,
        )
        .unwrap();
        assert_eq!(p.level, Some(Level::Info));
        assert_eq!(p.field("syslog.facility"), Some(&FieldValue::str("local4")));
        assert_eq!(p.field("process.pid"), Some(&FieldValue::Int(8710)));
        let sd = FieldValue::Map(vec![
            (
                Cow::Borrowed("exampleSDID@32473"),
                FieldValue::Map(vec![
                    (Cow::Borrowed("iut"), FieldValue::str("3")),
                    (Cow::Borrowed("eventSource"), FieldValue::str("Appli\"cation]")),
                ]),
            ),
            (
                Cow::Borrowed("examplePriority@32473"),
                FieldValue::Map(vec![(Cow::Borrowed("class"), FieldValue::str("high"))]),
            ),
        ]);
        assert_eq!(p.field("sd"), Some(&sd));
        assert_eq!(p.message, "An application event");

        let p = parse("<7>1 - - - - - -", NOW).unwrap();
        assert_eq!((p.timestamp_ns, p.level, &*p.message), (None, Some(Level::Debug), ""));
        assert_eq!(p.fields.len(), 2);
        let p = parse("<7>1 - - app procid7 - [a]", NOW).unwrap();
        assert_eq!(p.field("syslog.procid"), Some(&FieldValue::str("procid7")));
        assert_eq!(
            p.field("sd"),
            Some(&FieldValue::Map(vec![(Cow::Borrowed("a"), FieldValue::Map(vec![]))]))
        );
    }

    #[test]
    fn rejects() {
        for (line, reason) in [
            ("", "expected `Mmm dd hh:mm:ss` or an RFC 3339 time"),
            ("hello world", "expected `Mmm dd hh:mm:ss` or an RFC 3339 time"),
            ("<>Oct 11 22:14:15 h t: m", "malformed <PRI>"),
            ("<192>Oct 11 22:14:15 h t: m", "malformed <PRI>"),
            ("<013>Oct 11 22:14:15 h t: m", "malformed <PRI>"),
            ("<13", "malformed <PRI>"),
            ("Oct 11 22:14:15", "expected a space after the time"),
            ("Oct 11 22:14:15 ", "expected a hostname"),
        ] {
            assert_eq!(parse(line, NOW).unwrap_err().reason, reason, "{line:?}");
            assert_eq!(parse_strict(line, NOW).unwrap_err().reason, reason, "{line:?}");
        }
    }

    /// What strict mode rejects and lenient mode salvages, with the warning it notes.
    #[test]
    fn strict_rejects_what_lenient_salvages() {
        for (line, reason, message) in [
            ("<13>1 2003-10-11T22:14:15Z host", "RFC 5424 header cut short", ""),
            ("<13>1 - h a p m x", "expected `-` or `[` for structured data", "x"),
            ("<13>1 - h a p m [id a=\"b]", "unterminated PARAM-VALUE", "[id a=\"b]"),
            (
                "<13>1 - h a p m [id a=b] msg",
                "expected PARAM-NAME=\"value\"",
                "[id a=b] msg",
            ),
            ("<13>1 - h a p m [id", "unterminated structured data", "[id"),
            ("<13>1 - h a p m []", "empty SD-ID", "[]"),
            ("<13>1 - h a p m [a]x", "expected a space after structured data", "[a]x"),
            (
                "<13>hello world",
                "expected `Mmm dd hh:mm:ss` or an RFC 3339 time",
                "hello world",
            ),
        ] {
            assert_eq!(parse_strict(line, NOW).unwrap_err().reason, reason, "{line:?}");
            let p = parse(line, NOW).unwrap();
            assert_eq!(p.warning, Some(reason), "{line:?}");
            assert_eq!(p.field("parse_warning"), Some(&FieldValue::str(reason)), "{line:?}");
            assert_eq!(p.message, message, "{line:?}");
            assert_eq!(p.field("sd"), None, "{line:?}");
        }
        // Not a warning but read leniently: no hostname, an unpadded day, a bad 5424 time.
        for (line, reason) in [
            (
                "<133>Jun 13 16:33:35 haproxy[73411]: up",
                "expected a hostname, found a tag",
            ),
            (
                "<131>Jun 8 11:54:08 master apache_error [x] rest",
                "expected `Mmm dd hh:mm:ss` or an RFC 3339 time",
            ),
            ("<13>1 yesterday h a p m -", "RFC 5424 time is not RFC 3339"),
        ] {
            assert_eq!(parse_strict(line, NOW).unwrap_err().reason, reason, "{line:?}");
            assert_eq!(parse(line, NOW).unwrap().warning, None, "{line:?}");
        }
        let p = parse("<13>1 yesterday h a p m -", NOW).unwrap();
        assert!(p.time_unparsed && p.timestamp_ns.is_none());
        assert_eq!(p.field("timestamp"), Some(&FieldValue::str("yesterday")));
        assert_eq!(p.field("host.hostname"), Some(&FieldValue::str("h")));
    }

    #[test]
    fn rfc3164_without_hostname() {
        let p = parse(
            "<133>Jun 13 16:33:35 haproxy[73411]: Proxy sticky-servers started.",
            NOW,
        )
        .unwrap();
        assert_eq!(p.field("host.hostname"), None);
        assert_eq!(p.field("syslog.appname"), Some(&FieldValue::str("haproxy")));
        assert_eq!(p.field("process.pid"), Some(&FieldValue::Int(73411)));
        assert_eq!(p.message, "Proxy sticky-servers started.");
        assert_eq!(p.timestamp_ns, Some(utc("2026-06-13T16:33:35Z")));
        let p = parse("Jun 13 16:33:35 su: done", NOW).unwrap();
        assert_eq!(
            (p.field("host.hostname"), p.field("syslog.appname")),
            (None, Some(&FieldValue::str("su")))
        );
        // Hostnames with colons are not tags.
        for host in ["fe80::1", "::1", "10.0.0.99"] {
            let line = format!("Jun 13 16:33:35 {host} app: m");
            let p = parse(&line, NOW).unwrap();
            assert_eq!(p.field("host.hostname"), Some(&FieldValue::str(host)), "{host}");
        }
    }

    #[test]
    fn unpadded_day_tag_without_space_and_extra_spaces() {
        for line in [
            "<131>Jun 8 11:54:08 master apache_error [x] rest",
            "<131>Jun  8 11:54:08 master apache_error [x] rest",
        ] {
            let p = parse(line, NOW).unwrap();
            assert_eq!(p.timestamp_ns, Some(utc("2026-06-08T11:54:08Z")), "{line}");
            assert_eq!(p.field("host.hostname"), Some(&FieldValue::str("master")), "{line}");
            assert_eq!(p.message, "apache_error [x] rest", "{line}");
        }
        let p = parse("<13>Feb 13 20:07:26 74794bfb6795 root[8539]:syslog message", NOW).unwrap();
        assert_eq!(p.field("syslog.appname"), Some(&FieldValue::str("root")));
        assert_eq!(p.field("process.pid"), Some(&FieldValue::Int(8539)));
        assert_eq!(p.message, "syslog message");
        let p = parse_strict("<13>Feb 13 20:07:26 74794bfb6795 root[8539]:syslog message", NOW).unwrap();
        assert_eq!(p.message, "syslog message");
        // A bare `word:text` is no tag: it could as well be the message.
        let p = parse("Feb 13 20:07:26 host key:value and more", NOW).unwrap();
        assert_eq!(p.field("syslog.appname"), None);
        assert_eq!(p.message, "key:value and more");
        let p = parse(
            r#"<46>Jun 13 16:33:35 web rsyslogd:  [origin software="rsyslogd" swVersion="8.2312.0" x-pid="812"] start"#,
            NOW,
        )
        .unwrap();
        assert_eq!(p.field("syslog.appname"), Some(&FieldValue::str("rsyslogd")));
        assert_eq!(
            p.message,
            r#"[origin software="rsyslogd" swVersion="8.2312.0" x-pid="812"] start"#
        );
    }

    #[test]
    fn loose_times() {
        for (text, want, len) in [
            ("Jun 8 11:54:08 h", "2026-06-08T11:54:08Z", 14),
            ("Jun  8 11:54:08.5 h", "2026-06-08T11:54:08.5Z", 17),
            ("Jun 08 11:54:08.123456 h", "2026-06-08T11:54:08.123456Z", 22),
            ("Nov 25 2019 13:51:20: %ASA", "2019-11-25T13:51:20Z", 20),
            ("Nov 5 2019 13:51:20.25 h", "2019-11-05T13:51:20.25Z", 22),
        ] {
            assert_eq!(loose_time(text.as_bytes(), NOW), Some((utc(want), len)), "{text}");
        }
        for text in [
            "Jun 8 11:54",
            "Jun 8 11:54:08.",
            "Jun 32 11:54:08",
            "Jun 123 11:54:08",
            "Jun 8 2026 1:54:08",
            "Jux 8 11:54:08",
            "Jun",
        ] {
            assert_eq!(loose_time(text.as_bytes(), NOW), None, "{text}");
        }
    }

    #[test]
    fn malformed_structured_data_keeps_the_header() {
        let line = r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource= "Application" eventID="1011"] An application event"#;
        let p = parse(line, NOW).unwrap();
        assert_eq!(p.timestamp_ns, Some(utc("2003-10-11T22:14:15.003Z")));
        assert_eq!(
            p.field("host.hostname"),
            Some(&FieldValue::str("mymachine.example.com"))
        );
        assert_eq!(p.field("syslog.appname"), Some(&FieldValue::str("evntslog")));
        assert_eq!(p.field("syslog.msgid"), Some(&FieldValue::str("ID47")));
        assert_eq!(p.warning, Some("expected PARAM-NAME=\"value\""));
        assert!(p.message.starts_with("[exampleSDID@32473 iut=\"3\" eventSource= "));
        assert!(p.message.ends_with("] An application event"));
        assert!(parse_strict(line, NOW).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*", now in any::<i64>()) {
            let _ = parse(&s, now);
            let _ = parse_strict(&s, now);
        }

        #[test]
        fn never_panics_near_the_format(s in "(<[0-9]{1,4}>)?(1 )?(Oct 11 22:14:15|Oct 1 22:14:15|2003-10-11T22:14:15Z|-)?( [a-z\\-\\[\\]=\" :\\\\]{0,30}){0,7}", now in any::<i64>()) {
            let _ = parse(&s, now);
            let _ = parse_strict(&s, now);
        }

        /// Leniency only adds: a line strict mode reads is read the same way without it.
        #[test]
        fn lenient_agrees_where_strict_reads(s in "(<[0-9]{1,3}>)?(1 )?(Oct 11 22:14:15|Oct 1 22:14:15|2003-10-11T22:14:15Z|-)?( [a-z\\-\\[\\]=\" :\\\\]{0,30}){0,7}") {
            if let Ok(strict) = parse_strict(&s, NOW) {
                prop_assert_eq!(Ok(strict), parse(&s, NOW));
            }
        }
    }
}
