//! The loki sink's protocol: the push API (`POST /loki/api/v1/push`, JSON). The common HTTP
//! machinery (`ship::http`) sends what this module builds; Loki answers 204, and its 4xx/429/5xx
//! are classified like any HTTP sink's (a 400 such as "entry too far behind" dead-letters the
//! batch; 429 "ingestion rate limit" is retried after the backoff).
//!
//! Body: `{"streams":[{"stream":{label:value,…},"values":[[ts_ns,line],…]},…]}`. The records
//! of a batch are grouped by their label set (labels from configured record keys; by default
//! the low-cardinality namespace, pod, container, file, level), in batch order within each
//! stream. `ts_ns` is the record's `timestamp` as a string of nanoseconds since the epoch, as
//! the API requires; the line is the message or the whole record. With structured metadata
//! configured, a value is `[ts_ns, line, {name: value}]`. A record without any label value
//! gets `{job="tailship"}`: Loki refuses a stream without labels.

use bytes::Bytes;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;

use super::encode::Encoder;
use crate::config::{LineKind, LokiSettings, RecordKey, DEFAULT_LOKI_LABELS, LOKI_PUSH_PATH};
use crate::record::RecordRef;
use crate::ship::http::payload::Payload;
use crate::ship::http::protocol::{BodyError, Protocol};

#[derive(Serialize)]
struct Push<'a> {
    streams: Vec<Stream<'a>>,
}

#[derive(Serialize)]
struct Stream<'a> {
    stream: BTreeMap<&'a str, String>,
    values: Vec<Entry<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Entry<'a> {
    Plain(String, Cow<'a, str>),
    WithMetadata(String, Cow<'a, str>, BTreeMap<&'a str, String>),
}

/// The value of a record key, as text (`None`: the record does not have it).
pub fn key_text<'a>(r: &RecordRef<'a>, key: &RecordKey) -> Option<Cow<'a, str>> {
    match key {
        RecordKey::Level => r.level.map(|l| Cow::Borrowed(l.as_str())),
        RecordKey::File => Some(Cow::Borrowed(r.file())),
        RecordKey::Stream => r.stream.map(|s| Cow::Borrowed(s.as_str())),
        RecordKey::Message => r.message.map(|_| r.message_text()),
        RecordKey::Resource(k) => r
            .records
            .context
            .resource
            .get(k.as_str())
            .map(|v| Cow::Borrowed(v.as_str())),
        RecordKey::Field(k) => r.field_text(k),
    }
}

/// The push body for `records`.
pub fn push_body<'a>(
    records: impl Iterator<Item = RecordRef<'a>>,
    settings: &LokiSettings,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut streams: BTreeMap<Vec<(&str, String)>, Vec<Entry>> = BTreeMap::new();
    let mut line = Vec::new();
    let mut enc = Encoder::new(crate::config::Encoding::Ndjson);
    for r in records {
        let ns = r.time_or_observed();
        let mut labels: Vec<(&str, String)> = settings
            .labels
            .iter()
            .filter_map(|(name, key)| key_text(&r, key).map(|v| (name.as_str(), v.into_owned())))
            .collect();
        if labels.is_empty() {
            labels.push(("job", "tailship".to_owned()));
        }
        let metadata: BTreeMap<&str, String> = settings
            .structured_metadata
            .iter()
            .filter_map(|(name, key)| key_text(&r, key).map(|v| (name.as_str(), v.into_owned())))
            .collect();
        let text: Cow<str> = match settings.line {
            LineKind::Message => r.message_text(),
            LineKind::Record => {
                line.clear();
                enc.record(&r, &mut line);
                // The encoder writes valid UTF-8; a lossy view never changes it.
                Cow::Owned(String::from_utf8_lossy(&line).into_owned())
            }
        };
        let entry = if metadata.is_empty() {
            Entry::Plain(ns.to_string(), text)
        } else {
            Entry::WithMetadata(ns.to_string(), text, metadata)
        };
        streams.entry(labels).or_default().push(entry);
    }
    let push = Push {
        streams: streams
            .into_iter()
            .map(|(labels, values)| Stream {
                stream: labels.into_iter().collect(),
                values,
            })
            .collect(),
    };
    serde_json::to_vec(&push)
}

/// The protocol of `type = "loki"`.
pub struct Loki {
    pub settings: LokiSettings,
}

impl Protocol for Loki {
    fn name(&self) -> &'static str {
        "loki"
    }

    fn content_type(&self) -> &'static str {
        "application/json"
    }

    fn body(&self, payload: &Payload, items: &[usize]) -> Result<Bytes, BodyError> {
        push_body(payload.refs(items), &self.settings)
            .map(Bytes::from)
            .map_err(|source| BodyError {
                protocol: "loki",
                source,
            })
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        self.settings
            .tenant_id
            .iter()
            .map(|t| ("X-Scope-OrgID", t.clone()))
            .collect()
    }
}

/// Validates a loki sink's own keys (`labels`, `structured_metadata`, `tenant_id`, `line`);
/// `bad(key, message)` reports a problem.
pub fn settings(
    labels: Option<&BTreeMap<String, String>>,
    structured_metadata: Option<&BTreeMap<String, String>>,
    tenant_id: Option<&str>,
    line: Option<&str>,
    bad: &mut dyn FnMut(&str, String),
) -> LokiSettings {
    let labels = record_keys("labels", labels, DEFAULT_LOKI_LABELS, bad);
    let structured_metadata = record_keys("structured_metadata", structured_metadata, &[], bad);
    let line = match line.unwrap_or("message") {
        "message" => LineKind::Message,
        "record" => LineKind::Record,
        other => {
            bad("line", format!("{other:?} must be \"message\" or \"record\""));
            LineKind::Message
        }
    };
    if let Some(t) = tenant_id {
        if t.is_empty() || reqwest::header::HeaderValue::from_str(t).is_err() {
            bad("tenant_id", "not a valid header value".into());
        }
    }
    LokiSettings {
        labels,
        structured_metadata,
        tenant_id: tenant_id.map(str::to_owned),
        line,
    }
}

/// Label (or metadata) names and the record keys their values come from.
fn record_keys(
    key: &str,
    table: Option<&BTreeMap<String, String>>,
    defaults: &[(&str, &str)],
    bad: &mut dyn FnMut(&str, String),
) -> Vec<(String, RecordKey)> {
    let pairs: Vec<(String, String)> = match table {
        Some(t) => t.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        None => defaults.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    let mut out = Vec::new();
    for (name, source) in pairs {
        // Loki's label (and metadata) names: [a-zA-Z_][a-zA-Z0-9_]*.
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            bad(&format!("{key}.{name}"), "a name is [a-zA-Z_][a-zA-Z0-9_]*".into());
            continue;
        }
        match RecordKey::parse(&source) {
            Some(k) => out.push((name, k)),
            None => bad(
                &format!("{key}.{name}"),
                format!("{source:?}: one of level, file, stream, message, resource.<key>, fields.<key>"),
            ),
        }
    }
    out
}

/// `url` is Loki (`http://loki:3100`, maybe under a gateway path); the push API is below it.
/// A URL that already names it is taken as it is.
pub fn endpoint(url: &mut reqwest::Url) {
    if !url.path().ends_with(LOKI_PUSH_PATH) {
        let path = format!("{}{LOKI_PUSH_PATH}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::config::RecordKey;

    fn settings(line: LineKind, metadata: bool) -> LokiSettings {
        LokiSettings {
            labels: vec![
                ("pod".into(), RecordKey::Resource("k8s.pod.name".into())),
                ("level".into(), RecordKey::Level),
            ],
            structured_metadata: if metadata {
                vec![("trace_id".into(), RecordKey::Field("trace_id".into()))]
            } else {
                vec![]
            },
            tenant_id: None,
            line,
        }
    }

    use crate::record::testing::{context, records, Rec};
    use crate::record::{Level, Records};

    fn batch() -> Vec<std::sync::Arc<Records>> {
        let pod = context("/l/a.log", "a-", &[("k8s.pod.name", "web-1")], &[]);
        let bare = context("/l/b.log", "b-", &[], &[]);
        vec![
            records(
                pod,
                vec![
                    Rec {
                        time_ns: Some(1_767_225_600_000_000_001),
                        level: Some(Level::Info),
                        message: Some("one"),
                        ..Rec::default()
                    },
                    Rec {
                        time_ns: Some(1_767_225_600_500_000_000),
                        offset: 4,
                        level: Some(Level::Error),
                        message: Some("two"),
                        fields: Some(json!({"trace_id": "t1"})),
                        ..Rec::default()
                    },
                    Rec {
                        time_ns: Some(1_767_225_601_000_000_000),
                        offset: 8,
                        level: Some(Level::Info),
                        message: Some("three \"q\""),
                        ..Rec::default()
                    },
                ],
            ),
            records(
                bare,
                vec![Rec {
                    time_ns: Some(1_767_225_602_000_000_000),
                    offset: 9,
                    message: Some("bare"),
                    ..Rec::default()
                }],
            ),
        ]
    }

    #[test]
    fn records_are_grouped_into_streams_with_nanosecond_strings() {
        let b = batch();
        let body = push_body(
            b.iter().flat_map(|r| r.iter(0, r.end_position())),
            &settings(LineKind::Message, false),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        let streams = v["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 3);
        let info = streams
            .iter()
            .find(|s| s["stream"] == json!({"pod": "web-1", "level": "info"}))
            .unwrap();
        assert_eq!(
            info["values"],
            json!([["1767225600000000001", "one"], ["1767225601000000000", "three \"q\""]])
        );
        assert!(streams.iter().any(|s| s["stream"] == json!({"job": "tailship"})));
    }

    #[test]
    fn structured_metadata_and_whole_records() {
        let b = batch();
        let body = push_body(
            b.iter().flat_map(|r| r.iter(0, r.end_position())),
            &settings(LineKind::Record, true),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        let error = v["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stream"]["level"] == "error")
            .unwrap();
        let entry = &error["values"][0];
        assert_eq!(entry[0], "1767225600500000000");
        assert_eq!(
            serde_json::from_str::<Value>(entry[1].as_str().unwrap()).unwrap()["id"],
            "a-4"
        );
        assert_eq!(entry[2], json!({"trace_id": "t1"}));
    }
}
