//! The `combined` and `common` formats: Apache's and NGINX's access logs.
//!
//! `common`:   `client ident user [dd/Mmm/yyyy:hh:mm:ss ±hhmm] "METHOD target PROTOCOL" status bytes`
//! `combined`: the same plus ` "referer" "user agent"`.
//!
//! Mapping onto the record (OpenTelemetry semantic-convention names):
//! - the bracketed time → event time;
//! - status → `http.response.status_code` (integer) and the level: ≥ 500 error, ≥ 400 warn,
//!   else info;
//! - client → `client.address`; ident → `http.request.ident` and user → `user.name` (each left
//!   out when `-`);
//! - the request line → `http.request.method`, `url.path`, `url.query` (the part after `?`,
//!   when there is one) and `network.protocol.version` (`1.1` from `HTTP/1.1`; another
//!   protocol string as written). A request line that is not three words (`"-"`, a TLS
//!   handshake sent to a plain port, …) is kept whole as `http.request.line`;
//! - bytes → `http.response.body.size` (integer; `-` means none and is left out);
//! - referer → `http.request.header.referer`, user agent → `user_agent.original` (`-` left out);
//! - the message is the whole line, so a search on the raw text still finds it.
//!
//! Quoted parts may contain `\"` (Apache's escape; NGINX writes `\x22`): values are borrowed
//! exactly as logged, escapes included. `combined` also accepts a line that stops after the
//! bytes (a `common` line) and ignores anything after the user agent (NGINX's extra fields).
//! A line is rejected when a part is missing or malformed: no `[time]`, a status that is not
//! three digits, bytes that are neither digits nor `-`. A bracketed time in another shape (a
//! `%{...}t` LogFormat) is read with `timestamp::parse_any` (RFC 3339, `2026-11-25 13:51:20`,
//! epoch), and one we cannot read is kept as the field `timestamp` (`time_unparsed`); strict
//! mode (`parse_into_with`) rejects both as "unreadable time".

use std::borrow::Cow;

use super::parsed::{parse_u64, FieldValue, ParseError, Parsed};
use super::{timestamp, Level};

/// Which of the two layouts a parser expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Common,
    Combined,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Common => "common",
            Variant::Combined => "combined",
        }
    }
}

/// Parses a `combined` line into a fresh record.
pub fn parse_combined(line: &str) -> Result<Parsed<'_>, ParseError> {
    let mut out = Parsed::default();
    parse_into(line, Variant::Combined, &mut out)?;
    Ok(out)
}

/// Parses a `common` line into a fresh record.
pub fn parse_common(line: &str) -> Result<Parsed<'_>, ParseError> {
    let mut out = Parsed::default();
    parse_into(line, Variant::Common, &mut out)?;
    Ok(out)
}

/// The level an HTTP status stands for.
pub fn status_level(status: u16) -> Level {
    match status {
        500.. => Level::Error,
        400..=499 => Level::Warn,
        _ => Level::Info,
    }
}

struct Cursor<'a> {
    line: &'a str,
    i: usize,
    format: &'static str,
}

impl<'a> Cursor<'a> {
    fn err(&self, reason: &'static str) -> ParseError {
        ParseError::new(self.format, reason, self.i)
    }

    /// A space-delimited word, and the single space after it.
    fn word(&mut self, what: &'static str) -> Result<&'a str, ParseError> {
        let b = self.line.as_bytes();
        let start = self.i;
        let end = memchr::memchr(b' ', &b[start..]).map_or(b.len(), |k| start + k);
        if end == start {
            return Err(self.err(what));
        }
        self.i = end;
        Ok(&self.line[start..end])
    }

    fn space(&mut self, what: &'static str) -> Result<(), ParseError> {
        if self.line.as_bytes().get(self.i) != Some(&b' ') {
            return Err(self.err(what));
        }
        self.i += 1;
        Ok(())
    }

    /// A `"…"` part (backslash escapes skipped over, kept as written), without its quotes.
    fn quoted(&mut self, what: &'static str) -> Result<&'a str, ParseError> {
        self.quoted_or_rest(what, false)
    }

    /// `quoted`, but when `to_end` a part whose closing quote is missing runs to the end of the
    /// line (a user agent cut by the server's line-length limit).
    fn quoted_or_rest(&mut self, what: &'static str, to_end: bool) -> Result<&'a str, ParseError> {
        let b = self.line.as_bytes();
        if b.get(self.i) != Some(&b'"') {
            return Err(self.err(what));
        }
        let start = self.i + 1;
        let mut j = start;
        loop {
            match memchr::memchr2(b'"', b'\\', &b[j..]) {
                None if to_end => {
                    self.i = b.len();
                    return Ok(&self.line[start..]);
                }
                None => {
                    self.i = b.len();
                    return Err(self.err("unterminated quoted part"));
                }
                Some(k) if b[j + k] == b'\\' => j += k + 2,
                Some(k) => {
                    // A quote ends the part only where a space or the line's end follows: an
                    // unescaped quote inside a user agent is more common than one would hope.
                    let q = j + k;
                    if q + 1 >= b.len() || b[q + 1] == b' ' {
                        self.i = q + 1;
                        return Ok(&self.line[start..q]);
                    }
                    j = q + 1;
                }
            }
            if j >= b.len() {
                if to_end && j == b.len() {
                    self.i = b.len();
                    return Ok(&self.line[start..]);
                }
                self.i = b.len();
                return Err(self.err("unterminated quoted part"));
            }
        }
    }
}

#[inline]
fn dash_or(s: &str) -> Option<&str> {
    (s != "-").then_some(s)
}

/// Parses one line (without its ending) into `out`, clearing it first, leniently.
pub fn parse_into<'a>(line: &'a str, variant: Variant, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    parse_into_with(line, variant, false, out)
}

/// Parses one line into `out`, clearing it first; `strict` rejects a bracketed time that is not
/// Apache's `dd/Mmm/yyyy:hh:mm:ss ±hhmm` rather than salvaging it (module docs).
pub fn parse_into_with<'a>(
    line: &'a str,
    variant: Variant,
    strict: bool,
    out: &mut Parsed<'a>,
) -> Result<(), ParseError> {
    out.clear();
    let e = scan(line, variant, strict)?;
    out.timestamp_ns = e.time;
    out.level = Some(status_level(e.status));
    out.message = Cow::Borrowed(line);
    out.push("client.address", FieldValue::str(e.client));
    if let Some(ident) = dash_or(e.ident) {
        out.push("http.request.ident", FieldValue::str(ident));
    }
    if let Some(user) = dash_or(e.user) {
        out.push("user.name", FieldValue::str(user));
    }
    if e.time.is_none() {
        out.time_unparsed = true;
        out.push("timestamp", FieldValue::str(e.time_text));
    }
    request_fields(e.request, out);
    out.push("http.response.status_code", FieldValue::Int(i64::from(e.status)));
    if let Some(n) = e.bytes.and_then(|n| i64::try_from(n).ok()) {
        out.push("http.response.body.size", FieldValue::Int(n));
    }
    if let Some(r) = e.referer {
        out.push("http.request.header.referer", FieldValue::str(r));
    }
    if let Some(a) = e.agent {
        out.push("user_agent.original", FieldValue::str(a));
    }
    Ok(())
}

/// The parts of one access-log line, as written (`-` kept where the line has it, except in
/// the referer and agent).
struct Entry<'a> {
    client: &'a str,
    ident: &'a str,
    user: &'a str,
    time_text: &'a str,
    time: Option<i64>,
    request: &'a str,
    status: u16,
    bytes: Option<u64>,
    referer: Option<&'a str>,
    agent: Option<&'a str>,
}

/// Splits a line into its parts, left to right.
fn scan(line: &str, variant: Variant, strict: bool) -> Result<Entry<'_>, ParseError> {
    let mut c = Cursor {
        line,
        i: 0,
        format: variant.name(),
    };
    let b = line.as_bytes();
    let client = c.word("expected the client address")?;
    c.space("expected a space after the client")?;
    let ident = c.word("expected the ident")?;
    c.space("expected a space after the ident")?;
    // The user may contain spaces in odd setups; it ends at ` [`.
    let user_start = c.i;
    let user_end = memchr::memmem::find(&b[user_start..], b" [")
        .map(|k| user_start + k)
        .ok_or_else(|| c.err("expected ` [` before the time"))?;
    if user_end == user_start {
        return Err(c.err("expected the user"));
    }
    let user = &line[user_start..user_end];
    c.i = user_end + 2;
    let close = memchr::memchr(b']', &b[c.i..]).ok_or_else(|| c.err("expected `]` after the time"))?;
    let time_text = &line[c.i..c.i + close];
    // A `%{format}t` in the LogFormat writes another time in the brackets; the rest of the
    // line is the same, so only the time is lost when we cannot read it.
    let time = match timestamp::apache(time_text) {
        Some(t) => Some(t),
        None if strict => return Err(c.err("unreadable time")),
        None => timestamp::parse_any(time_text),
    };
    c.i += close + 1;
    c.space("expected a space after the time")?;
    let request = c.quoted("expected the quoted request line")?;
    c.space("expected a space after the request")?;
    let status = status(&mut c)?;
    c.space("expected a space after the status")?;
    let bytes = match c.word("expected the response size")? {
        "-" => None,
        t => Some(parse_u64(t.as_bytes()).ok_or_else(|| c.err("the response size is not a number"))?),
    };
    let (mut referer, mut agent) = (None, None);
    if variant == Variant::Combined && c.i < b.len() {
        c.space("expected a space after the response size")?;
        referer = dash_or(c.quoted("expected the quoted referer")?);
        c.space("expected a space after the referer")?;
        agent = dash_or(c.quoted_or_rest("expected the quoted user agent", true)?);
    } else if variant == Variant::Common && c.i < b.len() {
        return Err(c.err("unexpected text after the response size"));
    }
    Ok(Entry {
        client,
        ident,
        user,
        time_text,
        time,
        request,
        status,
        bytes,
        referer,
        agent,
    })
}

/// The three-digit status code.
fn status(c: &mut Cursor<'_>) -> Result<u16, ParseError> {
    let text = c.word("expected the status")?;
    match text.as_bytes() {
        s @ [b'1'..=b'9', _, _] => Ok(parse_u64(s).ok_or_else(|| c.err("the status is not three digits"))? as u16),
        _ => Err(ParseError::new(
            c.format,
            "the status is not three digits",
            c.i - text.len(),
        )),
    }
}

/// `METHOD TARGET PROTOCOL`: exactly three non-empty words.
fn request_parts(request: &str) -> Option<(&str, &str, &str)> {
    let b = request.as_bytes();
    let one = memchr::memchr(b' ', b)?;
    let two = one + 1 + memchr::memchr(b' ', &b[one + 1..])?;
    if memchr::memchr(b' ', &b[two + 1..]).is_some() {
        return None;
    }
    let (method, target, proto) = (&request[..one], &request[one + 1..two], &request[two + 1..]);
    (!method.is_empty() && !target.is_empty() && !proto.is_empty()).then_some((method, target, proto))
}

fn request_fields<'a>(request: &'a str, out: &mut Parsed<'a>) {
    if let Some((method, target, proto)) = request_parts(request) {
        out.push("http.request.method", FieldValue::str(method));
        match memchr::memchr(b'?', target.as_bytes()) {
            Some(q) => {
                out.push("url.path", FieldValue::str(&target[..q]));
                out.push("url.query", FieldValue::str(&target[q + 1..]));
            }
            None => out.push("url.path", FieldValue::str(target)),
        }
        let version = proto.strip_prefix("HTTP/").unwrap_or(proto);
        out.push("network.protocol.version", FieldValue::str(version));
        return;
    }
    if let Some(r) = dash_or(request) {
        out.push("http.request.line", FieldValue::str(r));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const LINE: &str = r#"83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/logstash-monitorama-2013/images/kibana-search.png?x=1 HTTP/1.1" 200 203023 "http://semicomplete.com/presentations/logstash-monitorama-2013/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36""#;

    #[test]
    fn combined_fields() {
        let p = parse_combined(LINE).unwrap();
        assert_eq!(p.timestamp_ns, Some(1_431_857_103_000_000_000));
        assert_eq!(p.level, Some(Level::Info));
        assert_eq!(p.message, LINE);
        let keys: Vec<&str> = p.fields.iter().map(|f| &*f.0).collect();
        assert_eq!(
            keys,
            [
                "client.address",
                "http.request.method",
                "url.path",
                "url.query",
                "network.protocol.version",
                "http.response.status_code",
                "http.response.body.size",
                "http.request.header.referer",
                "user_agent.original"
            ]
        );
        assert_eq!(p.field("url.query"), Some(&FieldValue::str("x=1")));
        assert_eq!(p.field("network.protocol.version"), Some(&FieldValue::str("1.1")));
        assert_eq!(p.field("http.response.body.size"), Some(&FieldValue::Int(203023)));
        assert_eq!(
            p.field("user_agent.original"),
            Some(&FieldValue::str(
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36"
            ))
        );
    }

    #[test]
    fn common_and_odd_parts() {
        let line = r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 404 -"#;
        let p = parse_common(line).unwrap();
        assert_eq!(p.timestamp_ns, Some(971_211_336_000_000_000));
        assert_eq!(p.level, Some(Level::Warn));
        assert_eq!(p.field("user.name"), Some(&FieldValue::str("frank")));
        assert_eq!(p.field("http.response.body.size"), None);
        // combined accepts a common line
        assert_eq!(parse_combined(line).unwrap().fields.len(), p.fields.len());
        let p = parse_combined(r#"::1 - - [10/Oct/2000:13:55:36 +0000] "-" 503 0 "-" "-""#).unwrap();
        assert_eq!(p.level, Some(Level::Error));
        assert_eq!(p.field("http.request.line"), None);
        assert_eq!(p.field("user_agent.original"), None);
        let p = parse_combined(
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "\x16\x03\x01 \"quoted\"" 400 0 "-" "UA with "quotes"; inside" extra"#,
        )
        .unwrap();
        assert_eq!(
            p.field("http.request.line"),
            Some(&FieldValue::str(r#"\x16\x03\x01 \"quoted\""#))
        );
        assert_eq!(
            p.field("user_agent.original"),
            Some(&FieldValue::str(r#"UA with "quotes"; inside"#))
        );
        let p = parse_combined(r#"1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "" """#).unwrap();
        assert_eq!(p.field("user_agent.original"), Some(&FieldValue::str("")));
        let p =
            parse_combined(r#"1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "Mozilla/5.0 (cut"#)
                .unwrap();
        assert_eq!(
            p.field("user_agent.original"),
            Some(&FieldValue::str("Mozilla/5.0 (cut"))
        );
    }

    #[test]
    fn rejects() {
        for line in [
            "",
            "plain text",
            r#"1.2.3.4 - - 10/Oct/2000:13:55:36 +0000 "GET / HTTP/1.1" 200 5"#,
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] GET / HTTP/1.1 200 5"#,
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 2000 5"#,
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 five"#,
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "ref"#,
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "ref" x"#,
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1"#,
        ] {
            assert!(parse_combined(line).is_err(), "{line:?}");
        }
        assert!(parse_common(&format!("{} \"-\" \"-\"", &LINE[..LINE.find(" \"http").unwrap()])).is_err());
    }

    #[test]
    fn another_bracketed_time_is_salvaged_unless_strict() {
        let strict = |line: &str| {
            let mut out = Parsed::default();
            parse_into_with(line, Variant::Combined, true, &mut out).map(|()| out.timestamp_ns)
        };
        // `%{%Y-%m-%d %H:%M:%S}t` in the LogFormat.
        let line = r#"1.2.3.4 - - [2026-11-25 13:51:20] "GET / HTTP/1.1" 200 5 "-" "curl""#;
        let p = parse_combined(line).unwrap();
        assert_eq!(p.timestamp_ns, Some(1_795_614_680_000_000_000));
        assert!(!p.time_unparsed && p.warning.is_none());
        assert_eq!(strict(line).unwrap_err().reason, "unreadable time");
        let line = r#"1.2.3.4 - - [10/Oct/2000:13:55:36] "GET / HTTP/1.1" 200 5"#;
        let p = parse_combined(line).unwrap();
        assert_eq!((p.timestamp_ns, p.time_unparsed), (None, true));
        assert_eq!(p.field("timestamp"), Some(&FieldValue::str("10/Oct/2000:13:55:36")));
        assert_eq!(p.field("http.response.status_code"), Some(&FieldValue::Int(200)));
        assert_eq!(strict(line).unwrap_err().reason, "unreadable time");
        assert_eq!(strict(LINE).unwrap(), parse_combined(LINE).unwrap().timestamp_ns);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_combined(&s);
            let _ = parse_common(&s);
            let _ = parse_into_with(&s, Variant::Common, true, &mut Parsed::default());
        }

        #[test]
        fn never_panics_near_the_format(s in "[0-9.]{1,4} [-a]{1,2} [-a ]{1,3} \\[[0-9a-zA-Z/: +]{0,28}\\]? ?\"[A-Z /\\\\\"]{0,12}\"? ?[0-9]{0,4} ?[0-9-]{0,3} ?(\"[a-z\\\\\" ]{0,6}\"?)?") {
            let _ = parse_combined(&s);
            let _ = parse_common(&s);
        }
    }
}
