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

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use super::encode::Encoder;
use crate::config::{LineKind, SplunkSettings, SPLUNK_EVENT_PATH};
use crate::record::RecordRef;
use crate::ship::http::payload::Payload;
use crate::ship::http::protocol::{BodyError, Protocol};

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

/// The HEC body for `records`.
pub fn event_body<'a>(
    records: impl Iterator<Item = RecordRef<'a>>,
    settings: &SplunkSettings,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    let mut line = Vec::new();
    let mut enc = Encoder::new(crate::config::Encoding::Ndjson);
    for r in records {
        let time = RawValue::from_string(seconds(r.time_or_observed()))?;
        line.clear();
        match settings.event {
            // The record is one JSON object: embedded as it is.
            LineKind::Record => enc.record(&r, &mut line),
            LineKind::Message => serde_json::to_writer(&mut line, &r.message_text())?,
        }
        let event: &RawValue = serde_json::from_slice(&line)?;
        let resource = &r.records.context.resource;
        let host = resource
            .get("host.name")
            .or_else(|| resource.get("k8s.pod.name"))
            .map(String::as_str);
        let e = Event {
            time: &time,
            host,
            source: Some(r.file()),
            sourcetype: settings.sourcetype.as_deref(),
            index: settings.index.as_deref(),
            event,
            fields: resource.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        };
        serde_json::to_writer(&mut out, &e)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The protocol of `type = "splunk_hec"`.
pub struct Splunk {
    pub settings: SplunkSettings,
}

impl Protocol for Splunk {
    fn name(&self) -> &'static str {
        "splunk_hec"
    }

    fn content_type(&self) -> &'static str {
        "application/json"
    }

    fn body(&self, payload: &Payload, items: &[usize]) -> Result<Bytes, BodyError> {
        event_body(payload.refs(items), &self.settings)
            .map(Bytes::from)
            .map_err(|source| BodyError {
                protocol: "splunk_hec",
                source,
            })
    }
}

/// Validates a splunk_hec sink's own keys (`index`, `sourcetype`, `line`); `bad(key,
/// message)` reports a problem.
pub fn settings(
    index: Option<&str>,
    sourcetype: Option<&str>,
    line: Option<&str>,
    bad: &mut dyn FnMut(&str, String),
) -> SplunkSettings {
    let event = match line.unwrap_or("record") {
        "message" => LineKind::Message,
        "record" => LineKind::Record,
        other => {
            bad("line", format!("{other:?} must be \"message\" or \"record\""));
            LineKind::Record
        }
    };
    if let Some(i) = index {
        if i.is_empty() || i.starts_with('_') || i.chars().any(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            bad("index", format!("{i:?} is not a Splunk index name"));
        }
    }
    SplunkSettings {
        index: index.map(str::to_owned),
        sourcetype: sourcetype.map(str::to_owned),
        event,
    }
}

/// The HEC event endpoint below the configured URL.
pub fn endpoint(url: &mut reqwest::Url) {
    if !url.path().ends_with(SPLUNK_EVENT_PATH) {
        let path = format!("{}{SPLUNK_EVENT_PATH}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    use crate::record::testing::{context, records, Rec};
    use crate::record::Level;

    #[test]
    fn events_carry_time_source_fields_and_the_record() {
        let batch = records(
            context("/l/a.log", "a-", &[("k8s.pod.name", "web-1")], &[]),
            vec![Rec {
                time_ns: Some(1_767_261_600_123_456_789),
                level: Some(Level::Info),
                message: Some("hi \"x\""),
                ..Rec::default()
            }],
        );
        let s = SplunkSettings {
            index: Some("main".into()),
            sourcetype: Some("_json".into()),
            event: LineKind::Record,
        };
        let body = event_body(batch.iter(0, 1), &s).unwrap();
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
        let body = event_body(batch.iter(0, 1), &s).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["event"], "hi \"x\"");
    }
}
