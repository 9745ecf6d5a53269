//! The elasticsearch sink's protocol: the `_bulk` API. The common HTTP machinery
//! (`ship::http`: client, retries, compression, dead-letter, in-order acks) sends what this
//! module builds and hands back the answer to read.
//!
//! Request: for each record an action line, then the record as the document:
//! `{"index":{"_index":"logs-2026.11.25","_id":"<id>"}}` (or `"create"` for a data stream),
//! with `_id` = the record's deterministic `id`, so a batch replayed after a crash overwrites
//! (index) or is refused as already there (create, 409) instead of duplicating. The document is
//! the NDJSON record with `@timestamp` (the field data streams require and Kibana expects)
//! added in front.
//!
//! Answer: per-item statuses, in request order. Items that failed with 429/5xx are sent again
//! (only they); 409 on `create` means the document is already there (a replay): success;
//! any other 4xx (a mapping error, say) rejects that record for good: dead-letter.
//!
//! The index date and `_id` come from the record itself; the document is the record's NDJSON.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use serde::Deserialize;

use super::encode::Encoder;
use super::escape::escape_into;
use crate::config::{EsTarget, DEFAULT_ES_INDEX};
use crate::record::RecordRef;
use crate::ship::http::payload::Payload;
use crate::ship::http::protocol::{Answer, BodyError, Protocol};
use crate::timefmt;

/// Index names by date, so the pattern is expanded once per day seen, not per record.
#[derive(Default)]
pub struct IndexNames {
    by_date: HashMap<[u8; 10], String>,
}

impl IndexNames {
    fn name(&mut self, pattern: &str, timestamp: &[u8]) -> &str {
        let mut date = [0u8; 10];
        date.copy_from_slice(&timestamp[..10]);
        self.by_date.entry(date).or_insert_with(|| {
            let text = String::from_utf8_lossy(&date);
            pattern
                .replace("%Y", &text[0..4])
                .replace("%m", &text[5..7])
                .replace("%d", &text[8..10])
        })
    }
}

/// Appends the bulk request for `records` to `out`.
pub fn bulk_body<'a>(
    records: impl Iterator<Item = RecordRef<'a>>,
    target: &EsTarget,
    names: &mut IndexNames,
    out: &mut Vec<u8>,
) {
    let mut timestamp = Vec::with_capacity(32);
    let mut doc = Vec::new();
    let mut enc = Encoder::new(crate::config::Encoding::Ndjson);
    for r in records {
        timestamp.clear();
        timefmt::rfc3339_nanos(r.time_or_observed(), &mut timestamp);
        let (op, index) = match target {
            EsTarget::Index(pattern) => ("index", names.name(pattern, &timestamp)),
            EsTarget::DataStream(ds) => ("create", ds.as_str()),
        };
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(op.as_bytes());
        out.extend_from_slice(b"\":{\"_index\":\"");
        // Validated names need no JSON escaping; the id is escaped like the record's.
        out.extend_from_slice(index.as_bytes());
        out.extend_from_slice(b"\",\"_id\":\"");
        escape_into(out, r.id().as_bytes());
        out.extend_from_slice(b"\"}}\n{\"@timestamp\":\"");
        out.extend_from_slice(&timestamp);
        out.extend_from_slice(b"\",");
        doc.clear();
        enc.record(&r, &mut doc);
        out.extend_from_slice(doc.get(1..).unwrap_or(b"}"));
        out.push(b'\n');
    }
}

/// What became of one item of a bulk request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Done,
    /// 429 or 5xx: send it again.
    Retry,
    /// Rejected for good (a mapping error, …): the reason, for the log.
    Reject(String),
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// The verdict on each of the `n` items of a request from its answer (a 2xx). An answer that
/// cannot be read item by item is an error: the caller sends the whole request again, which
/// the `_id`s make harmless.
pub fn verdicts(answer: &[u8], n: usize) -> Result<Vec<Verdict>, AnswerError> {
    let resp: BulkResponse = serde_json::from_slice(answer)?;
    if !resp.errors && resp.items.is_empty() {
        return Ok((0..n).map(|_| Verdict::Done).collect());
    }
    if resp.items.len() != n {
        return Err(AnswerError::Count {
            items: resp.items.len(),
            actions: n,
        });
    }
    Ok(resp
        .items
        .into_iter()
        .map(|item| {
            let Some(item) = item.into_values().next() else {
                return Verdict::Retry;
            };
            match item.status {
                200..=299 | 409 => Verdict::Done,
                408 | 429 | 500..=599 => Verdict::Retry,
                status => {
                    let e = item.error.unwrap_or_default();
                    let reason = match (
                        e.get("type").and_then(|v| v.as_str()),
                        e.get("reason").and_then(|v| v.as_str()),
                    ) {
                        (Some(t), Some(r)) => format!("{t}: {r}"),
                        _ => e.to_string(),
                    };
                    Verdict::Reject(format!("status {status}: {reason}"))
                }
            }
        })
        .collect())
}

/// A bulk answer that cannot be read item by item.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("the bulk answer is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the bulk answer has {items} items for {actions} actions")]
    Count { items: usize, actions: usize },
}

/// The protocol of `type = "elasticsearch"`.
pub struct Elasticsearch {
    pub target: EsTarget,
    /// Shared by the sink's requests; held only while a body is written.
    pub names: Mutex<IndexNames>,
}

impl Protocol for Elasticsearch {
    fn name(&self) -> &'static str {
        "elasticsearch"
    }

    fn content_type(&self) -> &'static str {
        "application/x-ndjson"
    }

    fn body(&self, payload: &Payload, items: &[usize]) -> Result<Bytes, BodyError> {
        let mut out = Vec::new();
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        bulk_body(payload.refs(items), &self.target, &mut names, &mut out);
        Ok(Bytes::from(out))
    }

    fn reads_answer(&self) -> bool {
        true
    }

    fn answer(&self, body: &[u8], n: usize) -> Answer {
        match verdicts(body, n) {
            Ok(v) => Answer::PerItem(v),
            Err(e) => Answer::Unreadable(e.to_string()),
        }
    }
}

/// Validates an elasticsearch sink's target (`index` or `data_stream`); `bad(key, message)`
/// reports a problem.
pub fn target(index: Option<&str>, data_stream: Option<&str>, bad: &mut dyn FnMut(&str, String)) -> Option<EsTarget> {
    match (index, data_stream) {
        (Some(_), Some(_)) => {
            bad("data_stream", "give index or data_stream, not both".into());
            None
        }
        (None, Some(ds)) => match name_problem(ds, false) {
            None => Some(EsTarget::DataStream(ds.to_owned())),
            Some(m) => {
                bad("data_stream", m);
                None
            }
        },
        (index, None) => {
            let pattern = index.unwrap_or(DEFAULT_ES_INDEX);
            match name_problem(pattern, true) {
                None => Some(EsTarget::Index(pattern.to_owned())),
                Some(m) => {
                    bad("index", m);
                    None
                }
            }
        }
    }
}

/// `url` is the cluster (`http://es:9200`, maybe under a proxy path); the API is `_bulk`
/// below it. `filter_path` trims the answer to what is read: per-item status and error.
pub fn endpoint(url: &mut reqwest::Url) {
    let path = format!("{}/_bulk", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(Some("filter_path=errors,items.*.status,items.*.error"));
}

/// What is wrong with an index or data stream name (ES: lowercase, no `\ / * ? " < > | , #`
/// or space, not starting with `-`, `_`, `+`); for a pattern, only `%Y`, `%m`, `%d`.
pub fn name_problem(name: &str, pattern: bool) -> Option<String> {
    let mut rest = name;
    let mut literal = String::new();
    while let Some(at) = rest.find('%') {
        literal.push_str(&rest[..at]);
        match rest[at + 1..].chars().next() {
            Some('Y' | 'm' | 'd') if pattern => literal.push('0'),
            _ if pattern => return Some(format!("{name:?}: only %Y, %m and %d are known")),
            _ => return Some(format!("{name:?} cannot hold '%'")),
        }
        rest = &rest[at + 2..];
    }
    literal.push_str(rest);
    if literal.is_empty()
        || literal.starts_with(['-', '_', '+'])
        || literal
            .chars()
            .any(|c| c.is_uppercase() || "\\/*?\"<>|,# :".contains(c))
    {
        return Some(format!(
            "{name:?} is not a valid Elasticsearch name (lowercase, no spaces or \\/*?\"<>|,#:)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::testing::{context, records, Rec};

    #[test]
    fn bulk_lines_pair_actions_and_documents() {
        let ctx = context("/l/a.log", "00ff-", &[], &[]);
        let batch = records(
            ctx,
            vec![
                Rec {
                    time_ns: Some(1_795_614_680_123_456_789),
                    observed_ns: 1_795_651_200_000_000_000,
                    message: Some("x \",\"id\":\"fake"),
                    fields: Some(serde_json::json!({"id": "inner"})),
                    ..Rec::default()
                },
                Rec {
                    observed_ns: 1_767_312_000_000_000_000,
                    offset: 9,
                    ..Rec::default()
                },
            ],
        );
        let mut out = Vec::new();
        let mut names = IndexNames::default();
        bulk_body(
            batch.iter(0, 2),
            &EsTarget::Index("logs-%Y.%m.%d".into()),
            &mut names,
            &mut out,
        );
        let lines: Vec<serde_json::Value> = out
            .split(|c| *c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["index"]["_index"], "logs-2026.11.25");
        assert_eq!(lines[0]["index"]["_id"], "00ff-0");
        assert_eq!(lines[1]["@timestamp"], "2026-11-25T13:51:20.123456789Z");
        assert_eq!(lines[1]["message"], "x \",\"id\":\"fake");
        assert_eq!(lines[1]["fields"]["id"], "inner");
        assert_eq!(lines[1]["id"], "00ff-0");
        assert_eq!(lines[2]["index"]["_index"], "logs-2026.01.02");
        out.clear();
        bulk_body(
            batch.iter(1, 2),
            &EsTarget::DataStream("logs-app-default".into()),
            &mut names,
            &mut out,
        );
        let action: serde_json::Value = serde_json::from_slice(out.split(|c| *c == b'\n').next().unwrap()).unwrap();
        assert_eq!(action["create"]["_index"], "logs-app-default");
        assert_eq!(action["create"]["_id"], "00ff-9");
    }

    #[test]
    fn verdicts_per_item() {
        let answer = br#"{"errors":true,"items":[
            {"index":{"status":201}},
            {"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [level]"}}},
            {"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
            {"index":{"status":503}}]}"#;
        assert_eq!(
            verdicts(answer, 5).unwrap(),
            vec![
                Verdict::Done,
                Verdict::Retry,
                Verdict::Reject("status 400: mapper_parsing_exception: failed to parse field [level]".into()),
                Verdict::Done,
                Verdict::Retry,
            ]
        );
        assert_eq!(
            verdicts(br#"{"errors":false}"#, 2).unwrap(),
            vec![Verdict::Done, Verdict::Done]
        );
        assert!(verdicts(br#"{"errors":true,"items":[]}"#, 2).is_err());
        assert!(verdicts(b"<html>", 1).is_err());
    }
}
