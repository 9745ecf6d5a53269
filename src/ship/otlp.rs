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

use std::ops::Range;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::record::RecordView;
use crate::timefmt;

/// A record's resource attributes, as (key, value) pairs in the record's order.
type ResourceAttributes = Vec<(String, String)>;

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

fn log_record(view: &RecordView) -> LogRecord {
    let ns = |t: &str| {
        timefmt::parse_timestamp_str(t)
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0)
    };
    let mut attributes = Vec::new();
    if let Some(f) = &view.file {
        attributes.push(kv("log.file.path", string(f)));
    }
    if let Some(o) = view.offset {
        attributes.push(kv(
            "log.file.offset",
            Some(AnyValue {
                value: Some(any_value::Value::IntValue(o as i64)),
            }),
        ));
    }
    if let Some(s) = &view.stream {
        attributes.push(kv("log.iostream", string(s)));
    }
    if let Some(id) = &view.id {
        attributes.push(kv("log.record.uid", string(id)));
    }
    if let Some(fields) = view.fields {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(fields.get()) {
            attributes.extend(map.iter().map(|(k, v)| kv(k, Some(any(v)))));
        }
    }
    let level = view.level.as_deref().unwrap_or("");
    LogRecord {
        time_unix_nano: ns(&view.timestamp),
        observed_time_unix_nano: view.observed_timestamp.as_deref().map_or(0, ns),
        severity_number: severity_number(level),
        severity_text: level.to_owned(),
        body: view.message.as_deref().and_then(string),
        attributes,
        ..Default::default()
    }
}

/// The export request for `records` (ranges of `ndjson`), as protobuf or JSON bytes, and the
/// records that cannot be read as records (never expected; dead-lettered).
pub fn export_body(
    ndjson: &[u8],
    records: &[Range<usize>],
    json: bool,
) -> Result<(Vec<u8>, Vec<Range<usize>>), String> {
    // Records grouped by resource, in first-seen order. Nearly always one group (the
    // agent's own resource), found by comparing in place: no key built per record.
    let mut by_resource: Vec<(ResourceAttributes, Vec<LogRecord>)> = Vec::new();
    let mut unreadable = Vec::new();
    for r in records {
        let Ok(view) = RecordView::parse(&ndjson[r.clone()]) else {
            unreadable.push(r.clone());
            continue;
        };
        let same = |key: &[(String, String)]| {
            key.len() == view.resource.len()
                && key
                    .iter()
                    .zip(&view.resource)
                    .all(|((a, b), (c, d))| a == c.as_ref() && b == d.as_ref())
        };
        let group = match by_resource.iter().position(|(key, _)| same(key)) {
            Some(i) => i,
            None => {
                let key = view
                    .resource
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                by_resource.push((key, Vec::new()));
                by_resource.len() - 1
            }
        };
        by_resource[group].1.push(log_record(&view));
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
    let body = if json {
        serde_json::to_vec(&request).map_err(|e| format!("cannot encode OTLP/JSON: {e}"))?
    } else {
        request.encode_to_vec()
    };
    Ok((body, unreadable))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BATCH: &str = concat!(
        r#"{"timestamp":"2026-01-01T00:00:00.000000001Z","observed_timestamp":"2026-01-01T00:00:02Z","level":"warn","message":"disk low","stream":"stderr","file":"/l/a.log","offset":12,"id":"s-12","fields":{"pct":97,"ok":false,"tags":["a"],"ctx":{"user":"u"}},"resource":{"k8s.pod.name":"web-1"}}"#,
        "\n",
    );

    fn decode(json: bool) -> ExportLogsServiceRequest {
        let (body, bad) = export_body(BATCH.as_bytes(), std::slice::from_ref(&(0..BATCH.len() - 1)), json).unwrap();
        assert!(bad.is_empty());
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
    }
}
