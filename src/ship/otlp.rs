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

/// The export request for `records`, as protobuf or JSON bytes.
pub fn export_body<'a>(records: impl Iterator<Item = RecordRef<'a>>, json: bool) -> Result<Vec<u8>, serde_json::Error> {
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
    let request = ExportLogsServiceRequest {
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
    };
    if json {
        serde_json::to_vec(&request)
    } else {
        Ok(request.encode_to_vec())
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
}
