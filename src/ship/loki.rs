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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use serde::Serialize;

use super::record::RecordView;
use crate::config::{LineKind, LokiSettings};
use crate::timefmt;

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

/// The push body for `records` (ranges of `ndjson`). Records that cannot be read as records
/// (never expected from the encoder) are returned apart, for the dead-letter file.
pub fn push_body(
    ndjson: &[u8],
    records: &[Range<usize>],
    settings: &LokiSettings,
) -> Result<(Vec<u8>, Vec<Range<usize>>), serde_json::Error> {
    let mut streams: BTreeMap<Vec<(&str, String)>, Vec<Entry>> = BTreeMap::new();
    let mut unreadable = Vec::new();
    for r in records {
        let line = &ndjson[r.clone()];
        let Ok(mut view) = RecordView::parse(line) else {
            unreadable.push(r.clone());
            continue;
        };
        let Some(ns) = timefmt::parse_timestamp_str(&view.timestamp) else {
            unreadable.push(r.clone());
            continue;
        };
        let mut labels: Vec<(&str, String)> = settings
            .labels
            .iter()
            .filter_map(|(name, key)| view.get(key).map(|v| (name.as_str(), v.into_owned())))
            .collect();
        if labels.is_empty() {
            labels.push(("job", "tailship".to_owned()));
        }
        let metadata: BTreeMap<&str, String> = settings
            .structured_metadata
            .iter()
            .filter_map(|(name, key)| view.get(key).map(|v| (name.as_str(), v.into_owned())))
            .collect();
        let text: Cow<str> = match settings.line {
            LineKind::Message => view.message.take().unwrap_or(Cow::Borrowed("")),
            // The encoder writes valid UTF-8; a lossy view never changes it.
            LineKind::Record => String::from_utf8_lossy(line),
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
    Ok((serde_json::to_vec(&push)?, unreadable))
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

    const BATCH: &str = concat!(
        r#"{"timestamp":"2026-01-01T00:00:00.000000001Z","level":"info","message":"one","id":"a-0","resource":{"k8s.pod.name":"web-1"}}"#,
        "\n",
        r#"{"timestamp":"2026-01-01T00:00:00.5Z","level":"error","message":"two","id":"a-4","fields":{"trace_id":"t1"},"resource":{"k8s.pod.name":"web-1"}}"#,
        "\n",
        r#"{"timestamp":"2026-01-01T00:00:01Z","level":"info","message":"three \"q\"","id":"a-8","resource":{"k8s.pod.name":"web-1"}}"#,
        "\n",
        r#"{"timestamp":"2026-01-01T00:00:02Z","message":"bare","id":"a-9"}"#,
        "\n",
    );

    fn ranges(text: &str) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                out.push(start..i);
                start = i + 1;
            }
        }
        out
    }

    #[test]
    fn records_are_grouped_into_streams_with_nanosecond_strings() {
        let (body, bad) = push_body(BATCH.as_bytes(), &ranges(BATCH), &settings(LineKind::Message, false)).unwrap();
        assert!(bad.is_empty());
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
        let (body, _) = push_body(BATCH.as_bytes(), &ranges(BATCH), &settings(LineKind::Record, true)).unwrap();
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
