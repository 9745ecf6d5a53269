//! Sending one batch until it is settled: every record delivered, or rejected for good (the
//! dead-letter file), or the hard stop. Retries with backoff and jitter, `Retry-After`, the
//! classification of answers, compression on the blocking pool.

use std::io::Write as _;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::payload::{Dead, Payload};
use super::protocol::Answer;
use super::{Outcome, Shared};
use crate::config::{Api, Compression};
use crate::logsafe;
use crate::metrics::add;
use crate::ship::backoff::Backoff;
use crate::ship::elasticsearch::Verdict;

/// A `Retry-After` longer than this is shortened to it: a header set by mistake (or a date
/// far in the future) must not park a sink for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// How much of a rejecting answer's body is logged.
const BODY_HEAD: usize = 512;
/// The most of a 2xx answer's body read: an Elasticsearch `_bulk` answer names every item
/// (its `filter_path` keeps it small, but a large batch of errors is still long); every other
/// protocol answers in a few bytes. A collector that sends more (an endless chunked body) has
/// the request fail and retried, rather than the agent's memory grow without end.
pub const ES_ANSWER_CAP: usize = 8 << 20;
pub const ANSWER_CAP: usize = 1 << 20;
/// Compression levels: log batches shrink 5–10× already at the fastest levels, and CPU is
/// what a sidecar is short of.
const GZIP_LEVEL: u32 = 1;
const ZSTD_LEVEL: i32 = 1;

/// An attempt that got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error(transparent)]
    Headers(#[from] super::client::HeaderError),
    /// reqwest's error with its causes ("error sending request: … : connection refused").
    #[error("{0}")]
    Transport(String),
    /// A 2xx answer whose body went on past the cap (read and dropped as it came).
    #[error("the answer's body is over {cap} bytes; the request is treated as failed")]
    AnswerTooLarge { cap: usize },
}

/// A body that could not be made; the batch is dead-lettered with it.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Body(#[from] super::protocol::BodyError),
    #[error("cannot compress the batch: {0}")]
    Compress(#[from] std::io::Error),
    #[error("the compression task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// An answer: status, headers, and the body (the first `BODY_HEAD` bytes of a failure; all
/// of a success if the protocol reads it, else nothing).
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// What one attempt came to, when it was not the end.
struct Failed {
    what: String,
    /// A wait the answer asked for (`Retry-After`).
    wait: Option<Duration>,
    /// Some bulk items are to be sent again, in a new, smaller request (not an error).
    partial: bool,
}

/// Sends one batch until every record is delivered or rejected for good, or the hard stop.
pub(super) async fn send_until_settled(shared: &Shared, payload: &Payload) -> Outcome {
    let http = &shared.http;
    let m = shared.m();
    let mut dead = Dead::default();
    // The records still to send: all of them at first; for Elasticsearch, then only the items
    // that failed with 429/5xx.
    let mut pending: Vec<usize> = (0..payload.len()).collect();
    let mut backoff = Backoff::new(http.retry.initial, http.retry.max);
    let mut retries = 0u32;
    while !pending.is_empty() {
        let body = match request_body(shared, payload, &pending).await {
            Ok(b) => b,
            Err(why) => {
                dead.add(payload, &pending, &why.to_string());
                return Outcome::Done { dead };
            }
        };
        // A body of its own (built from the records, or compressed) is memory the batch's
        // charge does not cover: held against the budget while its attempts run.
        let _charge = (!payload.holds(&body)).then(|| shared.budget.take(body.len()));
        loop {
            if shared.hard_stop.is_set() {
                return Outcome::Abandoned;
            }
            let started = Instant::now();
            let reply = attempt(shared, body.clone()).await;
            m.request_seconds.observe(started.elapsed().as_nanos() as u64);
            let failed = match judge(shared, payload, &mut pending, &mut dead, reply) {
                Judged::Settled => {
                    if retries > 0 && dead.records == 0 {
                        tracing::info!(sink = %shared.sink, retries, "batch delivered after retries");
                    }
                    return Outcome::Done { dead };
                }
                Judged::Again(f) => f,
            };
            if !failed.partial {
                m.failed();
            }
            if http.retry.max_retries.is_some_and(|max| retries >= max) {
                let why = format!("{} (gave up after {retries} retries, retry.max_retries)", failed.what);
                dead.add(payload, &pending, &why);
                return Outcome::Done { dead };
            }
            retries += 1;
            add(&m.retries, 1);
            let wait = failed.wait.unwrap_or_else(|| backoff.next_delay());
            if retries == 1 {
                tracing::warn!(sink = %shared.sink, error = %failed.what, wait = ?wait, "send failed; retrying");
            } else {
                tracing::debug!(sink = %shared.sink, error = %failed.what, retries, wait = ?wait, "send failed again");
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shared.hard_stop.stopped() => return Outcome::Abandoned,
            }
            if failed.partial {
                break;
            }
        }
    }
    Outcome::Done { dead }
}

/// What an attempt came to.
enum Judged {
    /// Every record delivered or rejected for good.
    Settled,
    Again(Failed),
}

/// Counts an attempt's reply and says whether the batch is settled or what to retry.
fn judge(
    shared: &Shared,
    payload: &Payload,
    pending: &mut Vec<usize>,
    dead: &mut Dead,
    reply: Result<Reply, AttemptError>,
) -> Judged {
    let m = shared.m();
    let r = match reply {
        Ok(r) => r,
        Err(e) => {
            add(&m.http_transport_errors, 1);
            return Judged::Again(Failed {
                what: format!("{}: {e}", shared.shown_url),
                wait: None,
                partial: false,
            });
        }
    };
    if (200..300).contains(&r.status) {
        add(&m.http_status[1], 1);
        m.succeeded();
        return match accepted(shared, payload, pending, dead, &r.body) {
            None => Judged::Settled,
            Some(f) => Judged::Again(f),
        };
    }
    if let Some(c) = m.http_status.get(usize::from(r.status / 100).saturating_sub(1)) {
        add(c, 1);
    }
    // The body is the collector's text: escaped, so it cannot forge a line of our log.
    let what = format!(
        "{} answered HTTP {}: {}",
        shared.shown_url,
        r.status,
        logsafe::escape(&String::from_utf8_lossy(&r.body))
    );
    if !retryable(r.status) {
        // Settled, but not delivered: a failure for the health metrics.
        m.failed();
        dead.add(payload, pending, &what);
        return Judged::Settled;
    }
    let wait = r
        .headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, SystemTime::now()));
    Judged::Again(Failed {
        what,
        wait,
        partial: false,
    })
}

/// Reads a 2xx answer through the protocol: `None` when the request is done; else what to
/// send again (`pending` is narrowed to it).
fn accepted(
    shared: &Shared,
    payload: &Payload,
    pending: &mut Vec<usize>,
    dead: &mut Dead,
    body: &[u8],
) -> Option<Failed> {
    match shared.protocol.answer(body, pending.len()) {
        Answer::Delivered => None,
        Answer::Partial { rejected, message } => {
            // Rejected without saying which: they cannot be dead-lettered, only counted.
            add(&shared.m().errors, 1);
            tracing::warn!(sink = %shared.sink, rejected, message = %message, "the collector accepted the request only in part");
            None
        }
        Answer::PerItem(verdicts) => {
            let mut again = Vec::new();
            let mut rejected = false;
            for (r, verdict) in pending.iter().zip(verdicts) {
                match verdict {
                    Verdict::Done => {}
                    Verdict::Retry => again.push(*r),
                    Verdict::Reject(why) => {
                        rejected = true;
                        dead.add(payload, std::slice::from_ref(r), &why);
                    }
                }
            }
            if rejected || !again.is_empty() {
                // The collector works (the request was answered 2xx), so `up` stays; items
                // rejected or to be sent again make the attempt a failed one all the same.
                add(&shared.m().errors, 1);
            }
            if again.is_empty() {
                return None;
            }
            let what = format!("{} of {} bulk items failed with 429/5xx", again.len(), pending.len());
            *pending = again;
            Some(Failed {
                what,
                wait: None,
                partial: true,
            })
        }
        Answer::Unreadable(why) => {
            tracing::warn!(sink = %shared.sink, error = %why, "sending the whole request again");
            Some(Failed {
                what: why,
                wait: None,
                partial: false,
            })
        }
    }
}

/// The compressed body for the `pending` records. Compression runs on the blocking pool (CPU
/// work off the async worker).
async fn request_body(shared: &Shared, payload: &Payload, pending: &[usize]) -> Result<Bytes, BuildError> {
    let raw = shared.protocol.body(payload, pending)?;
    let compression = shared.http.compression;
    let m = shared.m();
    let len = raw.len();
    add(&m.bytes_uncompressed, len as u64);
    if compression == Compression::None {
        add(&m.bytes_compressed, len as u64);
        return Ok(raw);
    }
    let body = tokio::task::spawn_blocking(move || compress(&raw, compression)).await??;
    add(&m.bytes_compressed, body.len() as u64);
    Ok(Bytes::from(body))
}

/// One request.
async fn attempt(shared: &Shared, body: Bytes) -> Result<Reply, AttemptError> {
    let http = &shared.http;
    let req = shared.client.request(http.method.clone(), http.url.clone());
    let req = shared.parts.apply(req)?;
    // reqwest's errors name the URL, with its password and query: leave it out (the caller
    // names the URL, redacted).
    let transport = |e: reqwest::Error| AttemptError::Transport(error_chain(&e.without_url()));
    let mut resp = req.body(body).send().await.map_err(transport)?;
    let status = resp.status().as_u16();
    let headers = std::mem::take(resp.headers_mut());
    let mut kept = Vec::new();
    if (200..300).contains(&status) {
        // Read to the end (keep-alive needs it), up to the cap; keep it only if the protocol
        // reads it.
        let keep = shared.protocol.reads_answer();
        let cap = answer_cap(&http.api);
        let mut read = 0usize;
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            read += chunk.len();
            if read > cap {
                return Err(AttemptError::AnswerTooLarge { cap });
            }
            if keep {
                kept.extend_from_slice(&chunk);
            }
        }
    } else {
        while kept.len() < BODY_HEAD {
            match resp.chunk().await {
                Ok(Some(c)) => kept.extend_from_slice(&c[..c.len().min(BODY_HEAD - kept.len())]),
                _ => break,
            }
        }
    }
    Ok(Reply {
        status,
        headers,
        body: kept,
    })
}

/// The most of a 2xx answer's body read for this protocol.
pub fn answer_cap(api: &Api) -> usize {
    match api {
        Api::Elasticsearch(_) => ES_ANSWER_CAP,
        _ => ANSWER_CAP,
    }
}

/// reqwest's error with its causes ("error sending request: … : connection refused").
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Whether an answer with this status is worth sending again: 408, 429 and 5xx are the
/// collector's momentary trouble. 401, 403, 404 and 407 (and 3xx) say the agent is knocking
/// at the wrong door or with the wrong key, which is true of every batch alike and which an
/// operator fixes: dead-lettering them would only fill the capped dead-letter files and
/// rotate records away, so the lines wait on disk instead. Every other 4xx rejects the batch
/// itself (malformed, too large, unprocessable): dead-letter it.
pub fn retryable(status: u16) -> bool {
    matches!(status, 401 | 403 | 404 | 407 | 408 | 429) || !(400..500).contains(&status)
}

/// A `Retry-After` value (delay-seconds or an HTTP date) as a wait from `now`, capped at
/// `MAX_RETRY_AFTER`.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// A request body, compressed.
pub fn compress(data: &[u8], compression: Compression) -> std::io::Result<Vec<u8>> {
    match compression {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut enc =
                flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::new(GZIP_LEVEL));
            enc.write_all(data)?;
            enc.finish()
        }
        Compression::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn retry_classification() {
        for s in [401, 403, 404, 407, 408, 429, 500, 502, 503, 504, 505, 301, 307] {
            assert!(retryable(s), "{s}");
        }
        for s in [400, 409, 413, 415, 422] {
            assert!(!retryable(s), "{s}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_784_000_000);
        assert_eq!(retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(retry_after("86400", now), Some(MAX_RETRY_AFTER));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(retry_after(&date, now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn compression_round_trips() {
        let ndjson = b"{\"a\":1}\n{\"b\":\"x\\ny\"}\n";
        assert_eq!(compress(ndjson, Compression::None).unwrap(), ndjson);
        let gz = compress(ndjson, Compression::Gzip).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, ndjson);
        let zs = compress(ndjson, Compression::Zstd).unwrap();
        assert_eq!(zstd::decode_all(&zs[..]).unwrap(), ndjson);
    }
}
