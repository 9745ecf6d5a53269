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
//! The records' parts come from the encoder's bytes, not from a re-parse: every encoded
//! record starts with `{"timestamp":"<RFC 3339, UTC>"`, and its top-level `id` is the first
//! `,"id":"` in it (the keys before it are fixed tokens, numbers, or strings, and inside a
//! JSON string a quote is always escaped, so `,"` cannot occur there). That keeps the NDJSON
//! hot path exactly as it is and costs one short memmem per record here.

use std::collections::HashMap;
use std::ops::Range;

use serde::Deserialize;

use crate::config::EsTarget;

const TS_HEAD: &[u8] = br#"{"timestamp":""#;
const ID_HEAD: &[u8] = br#","id":""#;

/// The parts of one encoded record the bulk API needs.
#[derive(Debug, PartialEq, Eq)]
pub struct RecordParts<'a> {
    /// The RFC 3339 text, without quotes.
    pub timestamp: &'a [u8],
    pub id: &'a [u8],
}

pub fn parts(line: &[u8]) -> Option<RecordParts<'_>> {
    let rest = line.strip_prefix(TS_HEAD)?;
    let ts_end = memchr::memchr(b'"', rest)?;
    let timestamp = &rest[..ts_end];
    // YYYY-MM-DDT…: the index date is read from fixed positions.
    if timestamp.len() < 10 || timestamp[4] != b'-' || timestamp[7] != b'-' {
        return None;
    }
    let at = memchr::memmem::find(line, ID_HEAD)? + ID_HEAD.len();
    let id_len = memchr::memchr(b'"', &line[at..])?;
    Some(RecordParts {
        timestamp,
        id: &line[at..at + id_len],
    })
}

/// The records of a batch (line ranges without the newline): those the bulk API can take,
/// and those that are not records (never expected from the encoder; dead-lettered).
pub fn split(ndjson: &[u8]) -> (Vec<Range<usize>>, Vec<Range<usize>>) {
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', ndjson) {
        if parts(&ndjson[start..nl]).is_some() {
            ok.push(start..nl);
        } else {
            bad.push(start..nl);
        }
        start = nl + 1;
    }
    (ok, bad)
}

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

/// Appends the bulk request for `records` (ranges of `ndjson`, each a record that `parts`
/// accepts) to `out`.
pub fn bulk_body(
    ndjson: &[u8],
    records: &[Range<usize>],
    target: &EsTarget,
    names: &mut IndexNames,
    out: &mut Vec<u8>,
) {
    for r in records {
        let line = &ndjson[r.clone()];
        let Some(p) = parts(line) else { continue };
        let (op, index) = match target {
            EsTarget::Index(pattern) => ("index", names.name(pattern, p.timestamp)),
            EsTarget::DataStream(ds) => ("create", ds.as_str()),
        };
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(op.as_bytes());
        out.extend_from_slice(b"\":{\"_index\":\"");
        // Validated names and encoder ids need no JSON escaping.
        out.extend_from_slice(index.as_bytes());
        out.extend_from_slice(b"\",\"_id\":\"");
        out.extend_from_slice(p.id);
        out.extend_from_slice(b"\"}}\n{\"@timestamp\":\"");
        out.extend_from_slice(p.timestamp);
        out.extend_from_slice(b"\",");
        out.extend_from_slice(&line[1..]);
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
pub fn verdicts(answer: &[u8], n: usize) -> Result<Vec<Verdict>, String> {
    let resp: BulkResponse =
        serde_json::from_slice(answer).map_err(|e| format!("the bulk answer is not the expected JSON: {e}"))?;
    if !resp.errors && resp.items.is_empty() {
        return Ok((0..n).map(|_| Verdict::Done).collect());
    }
    if resp.items.len() != n {
        return Err(format!(
            "the bulk answer has {} items for {n} actions",
            resp.items.len()
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = br#"{"timestamp":"2026-11-25T13:51:20.123456789Z","observed_timestamp":"2026-11-26T00:00:00.000000000Z","message":"x \",\"id\":\"fake","file":"/l/a.log","offset":0,"id":"00ff-0","fields":{"id":"inner"}}"#;

    #[test]
    fn parts_come_from_the_fixed_key_order() {
        let p = parts(A).unwrap();
        assert_eq!(p.timestamp, b"2026-11-25T13:51:20.123456789Z");
        assert_eq!(p.id, b"00ff-0");
        assert_eq!(parts(b"{\"message\":\"x\"}"), None);
    }

    #[test]
    fn bulk_lines_pair_actions_and_documents() {
        let b = br#"{"timestamp":"2026-01-02T00:00:00.000000000Z","id":"f-9"}"#;
        let ndjson = [A, b"\n", b, b"\n", b"not a record\n"].concat();
        let (ok, bad) = split(&ndjson);
        assert_eq!((ok.len(), bad.len()), (2, 1));
        let mut out = Vec::new();
        let mut names = IndexNames::default();
        bulk_body(
            &ndjson,
            &ok,
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
        assert_eq!(lines[2]["index"]["_index"], "logs-2026.01.02");
        out.clear();
        bulk_body(
            &ndjson,
            &ok[1..],
            &EsTarget::DataStream("logs-app-default".into()),
            &mut names,
            &mut out,
        );
        let action: serde_json::Value = serde_json::from_slice(out.split(|c| *c == b'\n').next().unwrap()).unwrap();
        assert_eq!(action["create"]["_index"], "logs-app-default");
        assert_eq!(action["create"]["_id"], "f-9");
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
