//! OTLP log records → spool lines: one JSON object per record, in the shape the `json` format
//! reads back into a record. `timestamp` (the record's time, else its observed time),
//! `level` (from the severity number, else the severity text), `message` (a string body as
//! is, any other body as its JSON text), then the attributes as top-level keys (so they become
//! the record's `fields`), then `severity_text`, `trace_id`/`span_id` (hex), `event_name`,
//! `scope` and the resource's attributes under `resource`: a record's own `resource` is its
//! file's, one per source, so an OTLP resource travels as a field.
//!
//! A record whose line would be longer than the source's `max_line_bytes` is refused with a
//! reason (the tailer would split it), counted in the answer's `partial_success`.

use std::fmt::Write as _;

use base64::Engine as _;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use crate::timefmt;

/// Nesting deeper than this (arrays in arrays, ...) is written as the string `"…"`: the
/// decoder's own recursion limit is far above what a log record needs, and a deep value would
/// cost stack while it is written.
const MAX_DEPTH: usize = 32;

/// A request turned into spool lines.
#[derive(Debug, Default)]
pub struct Lines {
    /// Whole lines, each ending in `\n`.
    pub bytes: Vec<u8>,
    pub accepted: u64,
    pub rejected: u64,
    /// Why the first refused record was refused.
    pub reason: Option<String>,
}

/// Writes every log record of `request` as a spool line; lines longer than `max_line_bytes`
/// (newline included) are refused.
pub fn to_lines(request: &ExportLogsServiceRequest, max_line_bytes: usize) -> Lines {
    let mut out = Lines::default();
    let mut resource = Vec::new();
    for rl in &request.resource_logs {
        resource.clear();
        if let Some(r) = rl.resource.as_ref().filter(|r| !r.attributes.is_empty()) {
            write_object(&mut resource, &r.attributes, 0);
        }
        for sl in &rl.scope_logs {
            let scope = sl.scope.as_ref().map(|s| s.name.as_str()).unwrap_or("");
            for rec in &sl.log_records {
                let start = out.bytes.len();
                write_record(&mut out.bytes, rec, scope, &resource);
                let len = out.bytes.len() - start;
                if len > max_line_bytes {
                    out.bytes.truncate(start);
                    out.rejected += 1;
                    if out.reason.is_none() {
                        out.reason = Some(format!(
                            "a log record of {len} bytes as JSON is over the source's max_line_bytes ({max_line_bytes})"
                        ));
                    }
                } else {
                    out.accepted += 1;
                }
            }
        }
    }
    out
}

/// One record as a JSON object and its newline.
fn write_record(out: &mut Vec<u8>, rec: &LogRecord, scope: &str, resource: &[u8]) {
    out.push(b'{');
    let mut first = true;
    let mut key = |out: &mut Vec<u8>, k: &str| {
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, k);
        out.push(b':');
    };
    let time = if rec.time_unix_nano != 0 {
        rec.time_unix_nano
    } else {
        rec.observed_time_unix_nano
    };
    if let Ok(ns) = i64::try_from(time) {
        if ns > 0 {
            key(out, "timestamp");
            out.push(b'"');
            timefmt::rfc3339_nanos(ns, out);
            out.push(b'"');
        }
    }
    if let Some(level) = level(rec) {
        key(out, "level");
        write_str(out, level);
    }
    match rec.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(s)) => {
            key(out, "message");
            write_str(out, s);
        }
        Some(v) => {
            key(out, "message");
            let mut text = Vec::new();
            write_value(&mut text, v, 0);
            write_str(out, &String::from_utf8_lossy(&text));
        }
        None => {}
    }
    for kv in &rec.attributes {
        key(out, &kv.key);
        write_any(out, kv.value.as_ref(), 0);
    }
    if !rec.severity_text.is_empty() {
        key(out, "severity_text");
        write_str(out, &rec.severity_text);
    }
    for (name, id) in [("trace_id", &rec.trace_id), ("span_id", &rec.span_id)] {
        if !id.is_empty() && id.iter().any(|b| *b != 0) {
            key(out, name);
            let mut hex = String::with_capacity(id.len() * 2);
            for b in id.iter() {
                let _ = write!(hex, "{b:02x}");
            }
            write_str(out, &hex);
        }
    }
    if !rec.event_name.is_empty() {
        key(out, "event_name");
        write_str(out, &rec.event_name);
    }
    if !scope.is_empty() {
        key(out, "scope");
        write_str(out, scope);
    }
    if !resource.is_empty() {
        key(out, "resource");
        out.extend_from_slice(resource);
    }
    out.extend_from_slice(b"}\n");
}

/// The record's level: OpenTelemetry's severity number ranges (1–4 trace … 21–24 fatal),
/// else the severity text as the `json` format reads level names.
fn level(rec: &LogRecord) -> Option<&'static str> {
    let by_number = match rec.severity_number {
        1..=4 => Some("trace"),
        5..=8 => Some("debug"),
        9..=12 => Some("info"),
        13..=16 => Some("warn"),
        17..=20 => Some("error"),
        21..=24 => Some("fatal"),
        _ => None,
    };
    by_number.or_else(|| crate::adapt::normalize_level(&rec.severity_text).map(|l| l.as_str()))
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_any(out: &mut Vec<u8>, v: Option<&AnyValue>, depth: usize) {
    match v.and_then(|v| v.value.as_ref()) {
        Some(v) => write_value(out, v, depth),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_value(out: &mut Vec<u8>, v: &Value, depth: usize) {
    if depth > MAX_DEPTH {
        write_str(out, "…");
        return;
    }
    match v {
        Value::StringValue(s) => write_str(out, s),
        Value::BoolValue(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::IntValue(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        Value::DoubleValue(f) => {
            // JSON has no NaN or infinity: those are written as strings, not lost.
            if f.is_finite() {
                let _ = serde_json::to_writer(&mut *out, f);
            } else {
                write_str(out, &f.to_string());
            }
        }
        Value::ArrayValue(a) => {
            out.push(b'[');
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_any(out, Some(v), depth + 1);
            }
            out.push(b']');
        }
        Value::KvlistValue(kv) => write_object(out, &kv.values, depth + 1),
        Value::BytesValue(b) => write_str(out, &base64::engine::general_purpose::STANDARD.encode(b)),
        // Only the profiling signal uses string tables; a log record's is meaningless.
        Value::StringValueStrindex(_) => out.extend_from_slice(b"null"),
    }
}

fn write_object(out: &mut Vec<u8>, kvs: &[KeyValue], depth: usize) {
    out.push(b'{');
    for (i, kv) in kvs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, &kv.key);
        out.push(b':');
        write_any(out, kv.value.as_ref(), depth);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;
    use crate::adapt::json::JsonLine;
    use crate::record::Level;

    fn any(v: Value) -> Option<AnyValue> {
        Some(AnyValue { value: Some(v) })
    }

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: any(v),
            ..Default::default()
        }
    }

    fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", Value::StringValue("web".into()))],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app.log".into(),
                        ..Default::default()
                    }),
                    log_records: records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    #[test]
    fn a_record_reads_back_through_the_json_format() {
        let rec = LogRecord {
            time_unix_nano: 1_795_614_680_500_000_001,
            severity_number: 13,
            severity_text: "WARNING".into(),
            body: any(Value::StringValue("disk \"full\"\n".into())),
            attributes: vec![
                kv("seq", Value::IntValue(7)),
                kv("ok", Value::BoolValue(true)),
                kv("ratio", Value::DoubleValue(0.5)),
                kv("nan", Value::DoubleValue(f64::NAN)),
                kv(
                    "tags",
                    Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(Value::StringValue("a".into())),
                        }],
                    }),
                ),
                kv("raw", Value::BytesValue(vec![0xff, 0])),
            ],
            trace_id: vec![0xab; 16],
            span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
            ..Default::default()
        };
        let lines = to_lines(&request(vec![rec]), 1 << 20);
        assert_eq!((lines.accepted, lines.rejected), (1, 0));
        let text = std::str::from_utf8(&lines.bytes).unwrap();
        assert!(text.ends_with("}\n") && text.matches('\n').count() == 1, "{text}");
        let parsed = JsonLine::parse(text.trim_end()).unwrap();
        assert_eq!(parsed.timestamp_ns, Some(1_795_614_680_500_000_001));
        assert_eq!(parsed.level, Some(Level::Warn));
        assert_eq!(
            parsed.message,
            Some(crate::adapt::json::Message::Literal(r#""disk \"full\"\n""#))
        );
        let fields: Vec<(&str, &str)> = parsed.fields.iter().map(|f| (&*f.key, f.value.get())).collect();
        assert_eq!(
            fields,
            vec![
                ("seq", "7"),
                ("ok", "true"),
                ("ratio", "0.5"),
                ("nan", "\"NaN\""),
                ("tags", "[\"a\"]"),
                ("raw", "\"/wA=\""),
                ("severity_text", "\"WARNING\""),
                ("trace_id", "\"abababababababababababababababab\""),
                ("span_id", "\"0102030405060708\""),
                ("scope", "\"app.log\""),
                ("resource", "{\"service.name\":\"web\"}"),
            ]
        );
    }

    #[test]
    fn a_structured_body_becomes_its_json_text_and_no_time_means_none() {
        let rec = LogRecord {
            severity_text: "error".into(),
            body: any(Value::KvlistValue(KeyValueList {
                values: vec![kv("code", Value::IntValue(7))],
            })),
            ..Default::default()
        };
        let lines = to_lines(&request(vec![rec]), 1 << 20);
        let parsed = JsonLine::parse(std::str::from_utf8(&lines.bytes).unwrap().trim_end()).unwrap();
        assert_eq!(parsed.timestamp_ns, None);
        assert_eq!(parsed.level, Some(Level::Error));
        assert_eq!(
            parsed.message,
            Some(crate::adapt::json::Message::Literal(r#""{\"code\":7}""#))
        );
    }

    #[test]
    fn an_over_long_record_is_refused_with_a_reason_and_the_others_kept() {
        let small = LogRecord {
            body: any(Value::StringValue("ok".into())),
            ..Default::default()
        };
        let big = LogRecord {
            body: any(Value::StringValue("x".repeat(2000))),
            ..Default::default()
        };
        let lines = to_lines(&request(vec![small.clone(), big, small]), 1000);
        assert_eq!((lines.accepted, lines.rejected), (2, 1));
        assert_eq!(lines.bytes.iter().filter(|b| **b == b'\n').count(), 2);
        assert!(lines.reason.unwrap().contains("max_line_bytes (1000)"));
    }

    #[test]
    fn deep_nesting_is_cut_not_recursed() {
        let mut v = Value::StringValue("leaf".into());
        for _ in 0..200 {
            v = Value::ArrayValue(ArrayValue {
                values: vec![AnyValue { value: Some(v) }],
            });
        }
        let rec = LogRecord {
            attributes: vec![kv("deep", v)],
            ..Default::default()
        };
        let lines = to_lines(&request(vec![rec]), 1 << 20);
        let text = std::str::from_utf8(&lines.bytes).unwrap();
        assert!(text.contains("\"…\""), "{text}");
        serde_json::from_str::<serde_json::Value>(text.trim_end()).unwrap();
    }
}
