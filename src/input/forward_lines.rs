//! Forward entries → spool lines: one JSON object per entry, in the shape the `json` format
//! reads back into a record: `timestamp` (the entry's time), `tag` (the message's tag, unless
//! the record has its own), then the record's keys as they are — so they become the record's
//! `fields`, and `message` / `msg` its message. A record with neither but a `log` key (what
//! Docker's `fluentd` driver sends) has that written as `message`. A record's own `timestamp`
//! key gives way to the entry's time.
//!
//! msgpack → JSON: strings as strings (bytes that are not UTF-8 repaired with U+FFFD), binary
//! as text the same way (Docker sends `log` as binary on some versions), numbers as numbers
//! (NaN and infinities as null), maps with non-string keys keyed by their text, extension
//! values as null. An entry whose line would be longer than `max_line_bytes` is refused.

use rmpv::Value;

use crate::forward::decode::Message;
use crate::timefmt;

/// Nesting deeper than this is written as the string `"…"` (as for OTLP: a log record needs
/// far less, and deep values would cost stack).
const MAX_DEPTH: usize = 32;

/// A message turned into spool lines.
#[derive(Debug, Default)]
pub struct Lines {
    /// Whole lines, each ending in `\n`.
    pub bytes: Vec<u8>,
    pub accepted: u64,
    pub rejected: u64,
    /// Why the first refused entry was refused.
    pub reason: Option<String>,
}

pub fn to_lines(msg: &Message, max_line_bytes: usize) -> Lines {
    let mut out = Lines::default();
    for e in &msg.entries {
        let start = out.bytes.len();
        let Value::Map(record) = &e.record else { continue };
        write_entry(
            &mut out.bytes,
            &msg.tag,
            e.time_ns.unwrap_or_else(timefmt::now_ns),
            record,
        );
        let len = out.bytes.len() - start;
        if len > max_line_bytes {
            out.bytes.truncate(start);
            out.rejected += 1;
            if out.reason.is_none() {
                out.reason = Some(format!(
                    "a record of {len} bytes as JSON is over the source's max_line_bytes ({max_line_bytes})"
                ));
            }
        } else {
            out.accepted += 1;
        }
    }
    out
}

fn write_entry(out: &mut Vec<u8>, tag: &str, time_ns: i64, record: &[(Value, Value)]) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    timefmt::rfc3339_nanos(time_ns, out);
    out.push(b'"');
    let has = |k: &str| record.iter().any(|(key, _)| key.as_str() == Some(k));
    if !has("tag") {
        out.extend_from_slice(b",\"tag\":");
        write_str(out, tag);
    }
    let log_is_message = !has("message") && !has("msg");
    for (k, v) in record {
        let key = key_text(k);
        if key == "timestamp" {
            continue;
        }
        out.push(b',');
        write_str(
            out,
            if log_is_message && key == "log" {
                "message"
            } else {
                &key
            },
        );
        out.push(b':');
        write_value(out, v, 0);
    }
    out.extend_from_slice(b"}\n");
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.to_string(),
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_value(out: &mut Vec<u8>, v: &Value, depth: usize) {
    if depth > MAX_DEPTH {
        write_str(out, "…");
        return;
    }
    match v {
        Value::Nil | Value::Ext(..) => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::F32(f) => write_float(out, f64::from(*f)),
        Value::F64(f) => write_float(out, *f),
        Value::String(s) => write_str(out, &String::from_utf8_lossy(s.as_bytes())),
        Value::Binary(b) => write_str(out, &String::from_utf8_lossy(b)),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, depth + 1);
            }
            out.push(b']');
        }
        Value::Map(entries) => {
            out.push(b'{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, &key_text(k));
                out.push(b':');
                write_value(out, v, depth + 1);
            }
            out.push(b'}');
        }
    }
}

fn write_float(out: &mut Vec<u8>, f: f64) {
    match serde_json::Number::from_f64(f) {
        Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::decode::Entry;

    fn msg(record: Value, time_ns: Option<i64>) -> Message {
        Message {
            tag: "docker.web".into(),
            entries: vec![Entry { time_ns, record }],
            chunk: None,
        }
    }

    #[test]
    fn a_docker_record_becomes_a_json_line_with_log_as_message() {
        let rec = Value::Map(vec![
            ("container_id".into(), "abc".into()),
            ("log".into(), Value::Binary(b"hello \xff".to_vec())),
            ("n".into(), 7.into()),
            ("nested".into(), Value::Map(vec![(1.into(), Value::F64(f64::NAN))])),
        ]);
        let lines = to_lines(&msg(rec, Some(1_700_000_000_000_000_000)), 1 << 20);
        let text = String::from_utf8(lines.bytes).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["message"], "hello \u{fffd}");
        assert_eq!(v["tag"], "docker.web");
        assert_eq!(v["n"], 7);
        assert_eq!(v["nested"]["1"], serde_json::Value::Null);
        assert!(v["timestamp"].as_str().unwrap().starts_with("2023-11-14T22:13:20"));
    }

    #[test]
    fn a_line_over_max_line_bytes_is_refused_with_a_reason() {
        let rec = Value::Map(vec![("message".into(), "x".repeat(500).into())]);
        let lines = to_lines(&msg(rec, None), 100);
        assert_eq!((lines.accepted, lines.rejected), (0, 1));
        assert!(lines.reason.unwrap().contains("max_line_bytes"));
    }
}
