//! The splunk_hec sink's protocol: Splunk's HTTP Event Collector, `POST
//! /services/collector/event` with `Authorization: Splunk <token>`. The common HTTP machinery
//! (`ship::http`) sends what this module builds; HEC's 503 "server is busy" is retried, its 400
//! "invalid data format" dead-letters the batch.
//!
//! Body: one JSON event object per record, newline-separated (HEC reads concatenated events):
//! `{"time":<epoch seconds, 9 decimals>,"host":…,"source":<file>,"sourcetype":…,"index":…,
//! "event":<the record, or its message>,"fields":{<resource attributes>}}`. The resource
//! attributes go in `fields` (indexed fields, flat strings); `host` is `host.name`, else the
//! pod name.

use std::ops::Range;

use serde::Serialize;
use serde_json::value::RawValue;

use super::record::RecordView;
use crate::config::{LineKind, SplunkSettings};
use crate::timefmt;

#[derive(Serialize)]
struct Event<'a> {
    /// Seconds since the epoch with a fraction, as HEC reads `time` (a JSON number).
    time: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sourcetype: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<&'a str>,
    event: &'a RawValue,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    fields: std::collections::BTreeMap<&'a str, &'a str>,
}

/// `1767261600.123456789` from nanoseconds.
fn seconds(ns: i64) -> String {
    format!("{}.{:09}", ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

/// The HEC body for `records` (ranges of `ndjson`), and the records that cannot be read as
/// records (never expected; dead-lettered).
pub fn event_body(
    ndjson: &[u8],
    records: &[Range<usize>],
    settings: &SplunkSettings,
) -> Result<(Vec<u8>, Vec<Range<usize>>), String> {
    let mut out = Vec::with_capacity(ndjson.len() + records.len() * 160);
    let mut unreadable = Vec::new();
    for r in records {
        let line = &ndjson[r.clone()];
        let Ok(view) = RecordView::parse(line) else {
            unreadable.push(r.clone());
            continue;
        };
        let Some(ns) = timefmt::parse_timestamp_str(&view.timestamp) else {
            unreadable.push(r.clone());
            continue;
        };
        let time = RawValue::from_string(seconds(ns)).map_err(|e| e.to_string())?;
        let message;
        let event: &RawValue = match settings.event {
            // The record is one JSON object already: embedded as it is.
            LineKind::Record => serde_json::from_slice(line).map_err(|e| e.to_string())?,
            LineKind::Message => {
                message = RawValue::from_string(
                    serde_json::to_string(view.message.as_deref().unwrap_or("")).map_err(|e| e.to_string())?,
                )
                .map_err(|e| e.to_string())?;
                &message
            }
        };
        let host = view
            .resource
            .get("host.name")
            .or_else(|| view.resource.get("k8s.pod.name"))
            .map(|h| h.as_ref());
        let e = Event {
            time: &time,
            host,
            source: view.file.as_deref(),
            sourcetype: settings.sourcetype.as_deref(),
            index: settings.index.as_deref(),
            event,
            fields: view.resource.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect(),
        };
        serde_json::to_writer(&mut out, &e).map_err(|e| e.to_string())?;
        out.push(b'\n');
    }
    Ok((out, unreadable))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    const LINE: &str = r#"{"timestamp":"2026-01-01T10:00:00.123456789Z","level":"info","message":"hi \"x\"","file":"/l/a.log","id":"a-0","resource":{"k8s.pod.name":"web-1"}}"#;

    #[test]
    fn events_carry_time_source_fields_and_the_record() {
        let s = SplunkSettings {
            index: Some("main".into()),
            sourcetype: Some("_json".into()),
            event: LineKind::Record,
        };
        let (body, bad) = event_body(LINE.as_bytes(), std::slice::from_ref(&(0..LINE.len())), &s).unwrap();
        assert!(bad.is_empty());
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["time"].as_f64().unwrap(), 1767261600.1234567);
        assert!(body.starts_with(b"{\"time\":1767261600.123456789,"));
        assert_eq!(
            (v["host"].as_str(), v["source"].as_str()),
            (Some("web-1"), Some("/l/a.log"))
        );
        assert_eq!(
            (v["index"].as_str(), v["sourcetype"].as_str()),
            (Some("main"), Some("_json"))
        );
        assert_eq!(v["event"]["id"], "a-0");
        assert_eq!(v["fields"]["k8s.pod.name"], "web-1");
        let s = SplunkSettings {
            event: LineKind::Message,
            ..s
        };
        let (body, _) = event_body(LINE.as_bytes(), std::slice::from_ref(&(0..LINE.len())), &s).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["event"], "hi \"x\"");
    }
}
