//! Syslog messages → spool lines: one JSON object per message, in the shape the `json` format
//! reads back into a record.
//!
//! The message is parsed by the file path's own `syslog` format (`adapt::syslog`) rather than a
//! crate: it already reads RFC 5424 and RFC 3164 (with the year-less time's Dec/Jan care and
//! the shapes senders stray into), is fuzzed with the rest of the parsers, and this way a
//! syslog record has the same fields whether it was tailed from `/var/log/messages` or sent
//! over the network. The line: `timestamp` (the message's time; its arrival when it has none),
//! `level` (from the severity), `message`, the parser's fields as they are named there
//! (`syslog.facility`, `syslog.severity`, `host.hostname`, `syslog.appname`, `process.pid` or
//! `syslog.procid`, `syslog.msgid`, `sd` — structured data as nested objects, so a parameter
//! is `sd.<id>.<param>` — and `parse_warning` for a part it salvaged), then
//! `network.peer.address`, `network.peer.port` and `network.transport` (`udp`, `tcp`).
//!
//! A message that is not syslog (a malformed PRI, no PRI and no time) is kept whole as the
//! message, with `parse_error` saying why; text that is not UTF-8 is repaired with U+FFFD.

use std::net::SocketAddr;

use crate::adapt::parsed::FieldValue;
use crate::adapt::syslog;
use crate::timefmt;

/// Messages turned into spool lines.
#[derive(Debug, Default)]
pub struct Lines {
    /// Whole lines, each ending in `\n`.
    pub bytes: Vec<u8>,
    /// Messages written.
    pub count: u64,
    /// Of them, messages that did not parse as syslog (kept whole with `parse_error`).
    pub unparsed: u64,
    /// Messages whose line would pass `max_line_bytes`, not written.
    pub too_long: u64,
}

/// How a message arrived.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub peer: SocketAddr,
    pub transport: &'static str,
}

impl Lines {
    /// Appends one message (its framing removed) as a line; `now_ns` is its arrival, which
    /// also gives RFC 3164's time its year. A line longer than `max_line_bytes` is not
    /// written and is counted in `too_long`.
    pub fn push(&mut self, msg: &[u8], origin: Origin, now_ns: i64, max_line_bytes: usize) {
        let start = self.bytes.len();
        let text = String::from_utf8_lossy(trim_trailer(msg));
        let unparsed = write_message(&mut self.bytes, &text, origin, now_ns);
        if self.bytes.len() - start > max_line_bytes {
            self.bytes.truncate(start);
            self.too_long += 1;
            return;
        }
        self.count += 1;
        self.unparsed += u64::from(unparsed);
    }
}

/// A message without the line ending or NUL a sender put after it.
pub fn trim_trailer(mut msg: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r' | b'\0'] = msg {
        msg = rest;
    }
    msg
}

/// Writes `text` as a line; true if it did not parse as syslog.
fn write_message(out: &mut Vec<u8>, text: &str, origin: Origin, now_ns: i64) -> bool {
    let parsed = syslog::parse(text, now_ns);
    out.extend_from_slice(b"{\"timestamp\":\"");
    let time = parsed.as_ref().ok().and_then(|p| p.timestamp_ns).unwrap_or(now_ns);
    timefmt::rfc3339_nanos(time, out);
    out.push(b'"');
    let unparsed = match &parsed {
        Ok(p) => {
            if let Some(level) = p.level {
                out.extend_from_slice(b",\"level\":");
                write_str(out, level.as_str());
            }
            out.extend_from_slice(b",\"message\":");
            write_str(out, &p.message);
            for (key, value) in &p.fields {
                let key: &str = key;
                out.push(b',');
                // An unreadable time is kept as `timestamp`; under that key the json format
                // would take it for the record's time.
                write_str(out, if key == "timestamp" { "syslog.timestamp" } else { key });
                out.push(b':');
                write_value(out, value);
            }
            false
        }
        Err(e) => {
            out.extend_from_slice(b",\"message\":");
            write_str(out, text);
            out.extend_from_slice(b",\"parse_error\":");
            write_str(out, &e.to_string());
            true
        }
    };
    out.extend_from_slice(b",\"network.peer.address\":");
    write_str(out, &origin.peer.ip().to_string());
    out.extend_from_slice(b",\"network.peer.port\":");
    out.extend_from_slice(origin.peer.port().to_string().as_bytes());
    out.extend_from_slice(b",\"network.transport\":");
    write_str(out, origin.transport);
    out.extend_from_slice(b"}\n");
    unparsed
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_value(out: &mut Vec<u8>, v: &FieldValue<'_>) {
    match v {
        FieldValue::Str(s) => write_str(out, s),
        FieldValue::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
        FieldValue::Float(f) => match serde_json::Number::from_f64(*f) {
            Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
            None => out.extend_from_slice(b"null"),
        },
        FieldValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        FieldValue::Map(entries) => {
            out.push(b'{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, v);
            }
            out.push(b'}');
        }
        // The syslog parser makes none; as text, never as unchecked JSON.
        FieldValue::Json(s) => write_str(out, s),
    }
}

/// `msg` from 127.0.0.1:40000 over UDP as the JSON value of its line, for tests.
#[cfg(test)]
fn line_of(msg: &str) -> serde_json::Value {
    let mut lines = Lines::default();
    let origin = Origin {
        peer: "127.0.0.1:40000".parse().unwrap(),
        transport: "udp",
    };
    // 2026-12-01T00:00:00Z
    lines.push(msg.as_bytes(), origin, 1_796_083_200_000_000_000, 1 << 20);
    let text = String::from_utf8(lines.bytes).unwrap();
    assert!(text.ends_with('\n') && text.matches('\n').count() == 1, "{text:?}");
    serde_json::from_str(text.trim_end()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rfc5424_message_with_structured_data_becomes_fields() {
        let v = line_of(
            "<165>1 2026-11-30T22:14:15.003Z web01 myapp 8710 ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"App\"] started\nline two\n",
        );
        assert_eq!(v["timestamp"], "2026-11-30T22:14:15.003000000Z");
        assert_eq!(v["level"], "info");
        assert_eq!(v["message"], "started\nline two");
        assert_eq!(v["syslog.facility"], "local4");
        assert_eq!(v["syslog.severity"], 5);
        assert_eq!(v["host.hostname"], "web01");
        assert_eq!(v["syslog.appname"], "myapp");
        assert_eq!(v["process.pid"], 8710);
        assert_eq!(v["syslog.msgid"], "ID47");
        assert_eq!(v["sd"]["exampleSDID@32473"]["iut"], "3");
        assert_eq!(v["network.peer.address"], "127.0.0.1");
        assert_eq!(v["network.peer.port"], 40000);
        assert_eq!(v["network.transport"], "udp");
    }

    #[test]
    fn an_rfc3164_message_in_january_sent_in_december_is_last_years() {
        let v = line_of("<34>Nov 30 23:59:59 host su[12]: 'su root' failed\0");
        assert_eq!(v["level"], "fatal");
        assert_eq!(v["timestamp"], "2026-11-30T23:59:59.000000000Z");
        assert_eq!(v["syslog.appname"], "su");
        assert_eq!(v["message"], "'su root' failed");
        // A December time received on the 1st of January is last year's.
        let mut lines = Lines::default();
        let origin = Origin {
            peer: "[::1]:9".parse().unwrap(),
            transport: "tcp",
        };
        // 2027-01-01T00:00:10Z
        lines.push(
            b"<13>Dec 31 23:59:58 h a: m",
            origin,
            1_798_761_610_000_000_000,
            1 << 20,
        );
        let v: serde_json::Value = serde_json::from_slice(lines.bytes.trim_ascii_end()).unwrap();
        assert_eq!(v["timestamp"], "2026-12-31T23:59:58.000000000Z");
        assert_eq!(v["network.peer.address"], "::1");
    }

    #[test]
    fn what_is_not_syslog_is_kept_whole_with_a_parse_error() {
        let v = line_of("<999>\u{1b}[31mnot syslog \u{fffd}");
        assert_eq!(v["message"], "<999>\u{1b}[31mnot syslog \u{fffd}");
        assert!(v["parse_error"].as_str().unwrap().contains("PRI"), "{v}");
        assert!(v["timestamp"].as_str().unwrap().starts_with("2026-12-01T00:00:00"));
        let mut lines = Lines::default();
        let origin = Origin {
            peer: "127.0.0.1:1".parse().unwrap(),
            transport: "udp",
        };
        lines.push(b"garbage \xff\xfe", origin, 0, 1 << 20);
        assert_eq!((lines.count, lines.unparsed), (1, 1));
        lines.push(&[b'x'; 2000], origin, 0, 1000);
        assert_eq!((lines.count, lines.too_long), (1, 1));
    }
}
