//! The otlp sink's protocol: OTLP/HTTP logs (`POST /v1/logs`), protobuf (the default) or
//! JSON, built with the official protobuf types of the `opentelemetry-proto` crate (prost
//! messages generated from the OpenTelemetry `.proto` files; its serde derive follows the
//! OTLP/JSON mapping). The common HTTP machinery (`ship::http`) sends what this module builds.
//!
//! The record onto the OpenTelemetry log data model:
//! - `timestamp` → `time_unix_nano`, `observed_timestamp` → `observed_time_unix_nano`;
//! - `level` → `severity_number` (TRACE 1, DEBUG 5, INFO 9, WARN 13, ERROR 17, FATAL 21) and
//!   `severity_text` (the level as the record has it);
//! - `message` → `body` (a string);
//! - `file` → attribute `log.file.path`, `stream` → `log.iostream`, `id` → `log.record.uid`
//!   (semantic-convention names), `offset` → `log.file.offset`; every key of `fields` → an
//!   attribute of the same name, its JSON value as an `AnyValue` (objects as key/value lists);
//! - `resource` → the `Resource`'s attributes, one `ResourceLogs` per distinct resource, with
//!   the scope `tailship`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::config::OTLP_LOGS_PATH;
use crate::record::{RecordRef, ValueRef};
use crate::ship::http::payload::Payload;
use crate::ship::http::protocol::{Answer, BodyError, Protocol};

/// OpenTelemetry severity numbers of the record's normalized levels (the first of each range).
pub fn severity_number(level: &str) -> i32 {
    match level {
        "trace" => 1,
        "debug" => 5,
        "info" => 9,
        "warn" => 13,
        "error" => 17,
        "fatal" => 21,
        _ => 0,
    }
}

fn string(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v.to_owned())),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value,
        ..Default::default()
    }
}

/// A JSON value as an OTLP `AnyValue`: integers stay integers, objects become key/value lists.
fn any(v: &serde_json::Value) -> AnyValue {
    use any_value::Value as V;
    let value = match v {
        serde_json::Value::Null => None,
        serde_json::Value::Bool(b) => Some(V::BoolValue(*b)),
        serde_json::Value::Number(n) => Some(match n.as_i64() {
            Some(i) => V::IntValue(i),
            None => V::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        serde_json::Value::String(s) => Some(V::StringValue(s.clone())),
        serde_json::Value::Array(items) => Some(V::ArrayValue(ArrayValue {
            values: items.iter().map(any).collect(),
        })),
        serde_json::Value::Object(map) => Some(V::KvlistValue(KeyValueList {
            values: map.iter().map(|(k, v)| kv(k, Some(any(v)))).collect(),
        })),
    };
    AnyValue { value }
}

/// A record's field value as an `AnyValue`: typed values as they are, JSON text (a `json`
/// line's values) read into its JSON type.
fn field_value(r: &RecordRef<'_>, v: &ValueRef<'_>) -> AnyValue {
    use any_value::Value as V;
    let value = match v {
        ValueRef::Str(s) => Some(V::StringValue(s.to_string())),
        ValueRef::Int(n) => Some(V::IntValue(*n)),
        ValueRef::Float(f) => Some(V::DoubleValue(*f)),
        ValueRef::Bool(b) => Some(V::BoolValue(*b)),
        ValueRef::Json(j) => match serde_json::from_str::<serde_json::Value>(j) {
            Ok(v) => return any(&v),
            Err(_) => Some(V::StringValue(j.to_string())),
        },
        ValueRef::Map(entries) => Some(V::KvlistValue(KeyValueList {
            values: entries
                .iter()
                .map(|f| kv(&r.key(f.key), Some(field_value(r, &r.value(&f.value)))))
                .collect(),
        })),
    };
    AnyValue { value }
}

fn log_record(r: &RecordRef<'_>) -> LogRecord {
    let ns = |n: i64| u64::try_from(n).unwrap_or(0);
    let mut attributes = vec![
        kv("log.file.path", string(r.file())),
        kv(
            "log.file.offset",
            Some(AnyValue {
                value: Some(any_value::Value::IntValue(r.offset as i64)),
            }),
        ),
    ];
    if let Some(s) = r.stream {
        attributes.push(kv("log.iostream", string(s.as_str())));
    }
    attributes.push(kv("log.record.uid", string(&r.id())));
    for f in r.fields() {
        attributes.push(kv(&f.key, Some(field_value(r, &f.value))));
    }
    let level = r.level.map_or("", |l| l.as_str());
    LogRecord {
        time_unix_nano: ns(r.time_or_observed()),
        observed_time_unix_nano: ns(r.observed_ns),
        severity_number: severity_number(level),
        severity_text: level.to_owned(),
        body: r.message.map(|_| r.message_text()).as_deref().and_then(string),
        attributes,
        ..Default::default()
    }
}

/// The export request for `records`, as protobuf or JSON bytes. Protobuf is written straight
/// from the records (`wire`); JSON goes through the official types' serde mapping.
pub fn export_body<'a>(records: impl Iterator<Item = RecordRef<'a>>, json: bool) -> Result<Vec<u8>, serde_json::Error> {
    if json {
        serde_json::to_vec(&export_request(records))
    } else {
        Ok(wire::export_body(records))
    }
}

/// The export request for `records` as the official protobuf types.
fn export_request<'a>(records: impl Iterator<Item = RecordRef<'a>>) -> ExportLogsServiceRequest {
    // Records grouped by resource, in first-seen order. Nearly always one group (the agent's
    // own resource): records of one file share one `Arc`, compared by address first.
    type Group<'r> = (&'r Arc<BTreeMap<String, String>>, Vec<LogRecord>);
    let mut by_resource: Vec<Group<'a>> = Vec::new();
    for r in records {
        let resource = &r.records.context.resource;
        let group = match by_resource
            .iter()
            .position(|(key, _)| Arc::ptr_eq(key, resource) || key == &resource)
        {
            Some(i) => i,
            None => {
                by_resource.push((resource, Vec::new()));
                by_resource.len() - 1
            }
        };
        by_resource[group].1.push(log_record(&r));
    }
    ExportLogsServiceRequest {
        resource_logs: by_resource
            .into_iter()
            .map(|(resource, log_records)| ResourceLogs {
                resource: Some(Resource {
                    attributes: resource.iter().map(|(k, v)| kv(k, string(v))).collect(),
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "tailship".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    log_records,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// OTLP protobuf written from the records, without building the message types: those hold
/// an owned `String` for every attribute key and value of every record, which made OTLP cost
/// several times the CPU of NDJSON. The layout is the `ExportLogsServiceRequest` of the
/// OpenTelemetry `.proto` files (field numbers below); the tests decode what this writes with
/// the official types and compare it with the request `export_request` builds. The varint and
/// key helpers are prost's own (its `encoding` module, which its generated code uses).
mod wire {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
    use prost::Message;

    use super::{field_value, severity_number};
    use crate::record::{RecordRef, ValueRef};

    // ExportLogsServiceRequest.resource_logs; ResourceLogs.resource, .scope_logs;
    // Resource.attributes; ScopeLogs.scope, .log_records; InstrumentationScope.name, .version.
    const REQUEST_RESOURCE_LOGS: u32 = 1;
    const RESOURCE_LOGS_RESOURCE: u32 = 1;
    const RESOURCE_LOGS_SCOPE_LOGS: u32 = 2;
    const RESOURCE_ATTRIBUTES: u32 = 1;
    const SCOPE_LOGS_SCOPE: u32 = 1;
    const SCOPE_LOGS_LOG_RECORDS: u32 = 2;
    const SCOPE_NAME: u32 = 1;
    const SCOPE_VERSION: u32 = 2;
    // LogRecord.
    const TIME: u32 = 1;
    const SEVERITY_NUMBER: u32 = 2;
    const SEVERITY_TEXT: u32 = 3;
    const BODY: u32 = 5;
    const ATTRIBUTES: u32 = 6;
    const OBSERVED_TIME: u32 = 11;
    // KeyValue.key, .value; AnyValue.string_value, .bool_value, .int_value, .double_value.
    const KV_KEY: u32 = 1;
    const KV_VALUE: u32 = 2;
    const ANY_STRING: u32 = 1;
    const ANY_BOOL: u32 = 2;
    const ANY_INT: u32 = 3;
    const ANY_DOUBLE: u32 = 4;

    fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
        encode_key(field, WireType::LengthDelimited, out);
        encode_varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
        encode_key(field, WireType::SixtyFourBit, out);
        out.extend_from_slice(&v.to_le_bytes());
    }

    fn varint(out: &mut Vec<u8>, field: u32, v: u64) {
        encode_key(field, WireType::Varint, out);
        encode_varint(v, out);
    }

    /// An `AnyValue` holding a string.
    fn any_string(out: &mut Vec<u8>, s: &[u8]) {
        bytes(out, ANY_STRING, s);
    }

    /// An `AnyValue` of a field value; nested values through the official types (rare).
    fn any_value(out: &mut Vec<u8>, r: &RecordRef<'_>, v: &ValueRef<'_>) {
        match v {
            ValueRef::Str(s) => any_string(out, s.as_bytes()),
            ValueRef::Int(n) => varint(out, ANY_INT, *n as u64),
            ValueRef::Bool(b) => varint(out, ANY_BOOL, u64::from(*b)),
            ValueRef::Float(f) => {
                encode_key(ANY_DOUBLE, WireType::SixtyFourBit, out);
                out.extend_from_slice(&f.to_le_bytes());
            }
            ValueRef::Json(_) | ValueRef::Map(_) => field_value(r, v).encode_raw(out),
        }
    }

    /// A `KeyValue` in field `field` of its parent; `value` writes the `AnyValue` into the
    /// scratch buffer `any`.
    fn key_value(out: &mut Vec<u8>, field: u32, key: &[u8], any: &mut Vec<u8>, value: impl FnOnce(&mut Vec<u8>)) {
        any.clear();
        value(any);
        let len =
            1 + encoded_len_varint(key.len() as u64) + key.len() + 1 + encoded_len_varint(any.len() as u64) + any.len();
        encode_key(field, WireType::LengthDelimited, out);
        encode_varint(len as u64, out);
        bytes(out, KV_KEY, key);
        bytes(out, KV_VALUE, any);
    }

    /// One `LogRecord` (its fields, not its key and length) into `out`.
    fn log_record(out: &mut Vec<u8>, any: &mut Vec<u8>, r: &RecordRef<'_>) {
        let ns = |n: i64| u64::try_from(n).unwrap_or(0);
        fixed64(out, TIME, ns(r.time_or_observed()));
        fixed64(out, OBSERVED_TIME, ns(r.observed_ns));
        if let Some(level) = r.level {
            varint(out, SEVERITY_NUMBER, severity_number(level.as_str()) as u64);
            bytes(out, SEVERITY_TEXT, level.as_str().as_bytes());
        }
        if r.message.is_some() {
            any.clear();
            any_string(any, r.message_text().as_bytes());
            bytes(out, BODY, any);
        }
        key_value(out, ATTRIBUTES, b"log.file.path", any, |a| {
            any_string(a, r.file().as_bytes())
        });
        key_value(out, ATTRIBUTES, b"log.file.offset", any, |a| {
            varint(a, ANY_INT, r.offset)
        });
        if let Some(s) = r.stream {
            key_value(out, ATTRIBUTES, b"log.iostream", any, |a| {
                any_string(a, s.as_str().as_bytes())
            });
        }
        key_value(out, ATTRIBUTES, b"log.record.uid", any, |a| {
            any_string(a, r.id().as_bytes())
        });
        for f in r.fields() {
            key_value(out, ATTRIBUTES, f.key.as_bytes(), any, |a| any_value(a, r, &f.value));
        }
    }

    /// The request for `records`, grouped by resource in first-seen order (nearly always one
    /// group: records of one file share one `Arc`, compared by address first).
    pub(super) fn export_body<'a>(records: impl Iterator<Item = RecordRef<'a>>) -> Vec<u8> {
        type Group<'r> = (&'r Arc<BTreeMap<String, String>>, Vec<u8>);
        let mut groups: Vec<Group<'a>> = Vec::new();
        let (mut rec, mut any) = (Vec::new(), Vec::new());
        for r in records {
            let resource = &r.records.context.resource;
            let i = match groups
                .iter()
                .position(|(k, _)| Arc::ptr_eq(k, resource) || *k == resource)
            {
                Some(i) => i,
                None => {
                    let mut scope = Vec::new();
                    bytes(&mut scope, SCOPE_NAME, b"tailship");
                    bytes(&mut scope, SCOPE_VERSION, env!("CARGO_PKG_VERSION").as_bytes());
                    let mut body = Vec::new();
                    bytes(&mut body, SCOPE_LOGS_SCOPE, &scope);
                    groups.push((resource, body));
                    groups.len() - 1
                }
            };
            rec.clear();
            log_record(&mut rec, &mut any, &r);
            bytes(&mut groups[i].1, SCOPE_LOGS_LOG_RECORDS, &rec);
        }
        let mut out = Vec::new();
        for (resource, scope_logs) in groups {
            let mut attrs = Vec::new();
            for (k, v) in resource.iter() {
                key_value(&mut attrs, RESOURCE_ATTRIBUTES, k.as_bytes(), &mut any, |a| {
                    any_string(a, v.as_bytes())
                });
            }
            let mut resource_logs = Vec::with_capacity(attrs.len() + scope_logs.len() + 16);
            bytes(&mut resource_logs, RESOURCE_LOGS_RESOURCE, &attrs);
            bytes(&mut resource_logs, RESOURCE_LOGS_SCOPE_LOGS, &scope_logs);
            bytes(&mut out, REQUEST_RESOURCE_LOGS, &resource_logs);
        }
        out
    }
}

/// The protocol of `type = "otlp"`: protobuf, or OTLP/JSON when `json`.
pub struct Otlp {
    pub json: bool,
}

impl Protocol for Otlp {
    fn name(&self) -> &'static str {
        "otlp"
    }

    fn content_type(&self) -> &'static str {
        if self.json {
            "application/json"
        } else {
            "application/x-protobuf"
        }
    }

    fn body(&self, payload: &Payload, items: &[usize]) -> Result<Bytes, BodyError> {
        export_body(payload.refs(items), self.json)
            .map(Bytes::from)
            .map_err(|source| BodyError {
                protocol: "otlp",
                source,
            })
    }

    fn reads_answer(&self) -> bool {
        true
    }

    /// An OTLP answer may accept a request only in part (`partial_success`): the rejected
    /// records must not be sent again, and the answer does not say which they were.
    fn answer(&self, body: &[u8], _n: usize) -> Answer {
        if body.is_empty() {
            return Answer::Delivered;
        }
        let parsed = if self.json {
            serde_json::from_slice::<ExportLogsServiceResponse>(body).ok()
        } else {
            ExportLogsServiceResponse::decode(body).ok()
        };
        match parsed.and_then(|r| r.partial_success) {
            Some(p) if p.rejected_log_records > 0 || !p.error_message.is_empty() => Answer::Partial {
                rejected: p.rejected_log_records,
                message: p.error_message,
            },
            _ => Answer::Delivered,
        }
    }
}

/// OTLP/HTTP: the base endpoint (`http://collector:4318`) gets the logs signal path, as the
/// OTLP exporter spec does with `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub fn endpoint(url: &mut reqwest::Url) {
    if !url.path().ends_with(OTLP_LOGS_PATH) {
        let path = format!("{}{OTLP_LOGS_PATH}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::testing::{context, records, Rec};
    use crate::record::{Level, Stream};

    fn decode(json: bool) -> ExportLogsServiceRequest {
        let batch = records(
            context("/l/a.log", "s-", &[("k8s.pod.name", "web-1")], &[]),
            vec![Rec {
                time_ns: Some(1_767_225_600_000_000_001),
                observed_ns: 1_767_225_602_000_000_000,
                offset: 12,
                level: Some(Level::Warn),
                message: Some("disk low"),
                stream: Some(Stream::Stderr),
                fields: Some(serde_json::json!({"pct": 97, "ok": false, "tags": ["a"], "ctx": {"user": "u"}})),
                ..Rec::default()
            }],
        );
        let body = export_body(batch.iter(0, 1), json).unwrap();
        if json {
            serde_json::from_slice(&body).unwrap()
        } else {
            ExportLogsServiceRequest::decode(&body[..]).unwrap()
        }
    }

    #[test]
    fn the_record_maps_onto_the_log_data_model_in_both_encodings() {
        let proto = decode(false);
        assert_eq!(proto, decode(true), "protobuf and JSON carry the same request");
        let rl = &proto.resource_logs[0];
        assert_eq!(rl.resource.as_ref().unwrap().attributes[0].key, "k8s.pod.name");
        let scope = &rl.scope_logs[0];
        assert_eq!(scope.scope.as_ref().unwrap().name, "tailship");
        let r = &scope.log_records[0];
        assert_eq!(r.time_unix_nano, 1_767_225_600_000_000_001);
        assert_eq!(r.observed_time_unix_nano, 1_767_225_602_000_000_000);
        assert_eq!((r.severity_number, r.severity_text.as_str()), (13, "warn"));
        assert_eq!(r.body, string("disk low"));
        let attr = |k: &str| r.attributes.iter().find(|a| a.key == k).and_then(|a| a.value.clone());
        assert_eq!(attr("log.file.path"), string("/l/a.log"));
        assert_eq!(attr("log.iostream"), string("stderr"));
        assert_eq!(attr("log.record.uid"), string("s-12"));
        assert_eq!(attr("pct").unwrap().value, Some(any_value::Value::IntValue(97)));
        assert_eq!(attr("ok").unwrap().value, Some(any_value::Value::BoolValue(false)));
        assert!(matches!(
            attr("ctx").unwrap().value,
            Some(any_value::Value::KvlistValue(_))
        ));
        assert!(matches!(
            attr("tags").unwrap().value,
            Some(any_value::Value::ArrayValue(_))
        ));
        assert_eq!(
            attr("log.file.offset").unwrap().value,
            Some(any_value::Value::IntValue(12))
        );
    }

    #[test]
    fn the_protobuf_writer_says_what_the_official_types_say() {
        let a = context(
            "/l/a.log",
            "a-",
            &[("k8s.pod.name", "web-1"), ("host.name", "h")],
            &[("team", "core")],
        );
        let b = context("/l/b.log", "b-", &[], &[]);
        let batches = [
            records(
                a,
                vec![
                    Rec {
                        time_ns: Some(1_767_225_600_000_000_001),
                        observed_ns: 1_767_225_602_000_000_000,
                        offset: 12,
                        level: Some(Level::Error),
                        message: Some("disk \"low\" ünïcode"),
                        stream: Some(Stream::Stdout),
                        fields: Some(serde_json::json!({
                            "neg": -5, "big": 9_007_199_254_740_993_i64, "pi": 3.25, "no": false,
                            "list": [1, "x", {"k": null}], "map": {"inner": {"deep": 1}, "s": "v"}
                        })),
                        ..Rec::default()
                    },
                    Rec {
                        observed_ns: 5,
                        offset: 0,
                        flags: crate::record::Flags {
                            continuation: true,
                            truncated: true,
                            partial: false,
                        },
                        ..Rec::default()
                    },
                ],
            ),
            records(
                b,
                vec![Rec {
                    time_ns: Some(-1),
                    observed_ns: 7,
                    message: Some(""),
                    ..Rec::default()
                }],
            ),
        ];
        let all = || batches.iter().flat_map(|r| r.iter(0, r.end_position()));
        let written = export_body(all(), false).unwrap();
        let decoded = ExportLogsServiceRequest::decode(&written[..]).unwrap();
        assert_eq!(decoded, export_request(all()));
        assert_eq!(decoded.resource_logs.len(), 2);
        // (Not byte for byte: prost leaves zero times out and puts field 11 last; a decoder
        // reads both the same.)
    }
}
