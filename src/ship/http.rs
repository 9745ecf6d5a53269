//! The HTTP sinks (`http`, `elasticsearch`, `loki`, `otlp`, `splunk_hec`): batches of
//! records POSTed to a collector (optionally gzip- or zstd-compressed), with up to
//! `concurrency` requests in flight, retries that never give a record up, and a dead-letter
//! file for records the collector rejects for good.
//!
//! Threads: the sink thread encodes and batches exactly like the byte sinks (the hot path
//! stays synchronous); each sealed batch is handed to a small tokio runtime owned by the
//! sink (one worker thread) as one task that compresses it on the blocking pool and sends
//! it until it succeeds. A runtime rather than worker threads with a blocking client: the
//! in-flight requests, their timeouts and `Retry-After` waits are timers and sockets, which
//! one async worker multiplexes, and reqwest's async client is the maintained one. Tasks
//! report back on a channel; the sink thread applies the outcomes to the checkpoint **in
//! batch order**, over the contiguous prefix of finished batches only, so a later batch
//! that finished first never moves a file's checkpoint past an earlier one still retrying.
//!
//! Retries: no answer (connect error, timeout, reset), 408, 429, 5xx, 3xx (redirects are
//! not followed: a POST body cannot be replayed to a guessed place) and 401/403/404/407 (a
//! wrong URL or credentials: see `retryable`) are retried with exponential backoff and
//! jitter, or after the `Retry-After` the answer asks for (seconds or an HTTP date, capped at
//! `MAX_RETRY_AFTER`), forever unless `retry.max_retries` is set. Other 4xx answers mean "this
//! batch will never be accepted": its records go to the dead-letter file (`ship::deadletter`),
//! the answer's first 512 bytes are logged, and the checkpoint moves on. A batch that
//! exhausted `max_retries` is dead-lettered the same way.
//!
//! Protocols: the `Api` of the settings picks how a batch's records become a request body and
//! how a 2xx answer is read — NDJSON encoded on the sink thread (`http`), `_bulk` with
//! per-item verdicts (`ship::elasticsearch`), a Loki push (`ship::loki`), an OTLP export
//! (`ship::otlp`), HEC events (`ship::splunk`), each written from the records themselves;
//! everything else here is common to all.
//!
//! Memory: a batch keeps its chunks (and their in-flight budget) until it is acknowledged,
//! like every sink, plus its encoded bytes while its request is running; at most
//! `concurrency` requests run at once, so a dead collector stops the tailer, not the heap.

use std::collections::VecDeque;
use std::io::Write as _;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use crossbeam_channel::select;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};

use super::backoff::Backoff;
use super::deadletter::DeadLetter;
use super::elasticsearch::{self, IndexNames, Verdict};
use super::encode::record_ndjson;
use super::loki;
use super::otlp;
use super::splunk;
use super::batcher::{self, Batch, Deliver, Part};
use super::SinkContext;
use crate::checkpoint::Msg;
use crate::mark::FileMark;
use crate::record::RecordRef;
use crate::stop::HardStop;
use crate::config::{client_identity, Api, Auth, Compression, Framing, HttpSettings, SinkKind};
use crate::metrics::{add, Metrics, SinkMetrics};

/// A `Retry-After` longer than this is shortened to it: a header set by mistake (or a date
/// far in the future) must not park a sink for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// How much of a rejecting answer's body is logged.
const BODY_HEAD: usize = 512;
/// Compression levels: log batches shrink 5–10× already at the fastest levels, and CPU is
/// what a sidecar is short of.
const GZIP_LEVEL: u32 = 1;
const ZSTD_LEVEL: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("http sink {sink}: build the client for {url}: {source}")]
    Client {
        sink: String,
        url: String,
        source: reqwest::Error,
    },
    #[error("http sink {sink}: {path}: {message}")]
    Tls {
        sink: String,
        path: String,
        message: String,
    },
    #[error("http sink {sink}: start its runtime: {source}")]
    Runtime { sink: String, source: std::io::Error },
}

/// What became of one batch's request.
#[derive(Debug)]
enum Outcome {
    /// Every record delivered, except `dead` (rejected for good: dead-letter them).
    Done { dead: Dead },
    /// The shutdown deadline passed while it was still retrying.
    Abandoned,
}

/// Records a collector rejected for good, as NDJSON, and the first reason (for the log).
#[derive(Debug, Default)]
struct Dead {
    ndjson: Vec<u8>,
    records: usize,
    why: String,
}

impl Dead {
    fn add(&mut self, payload: &Payload, items: &[usize], why: &str) {
        if items.is_empty() {
            return;
        }
        payload.ndjson_of(items, &mut self.ndjson);
        self.records += items.len();
        if self.why.is_empty() {
            self.why = why.to_owned();
        }
    }
}

/// What a batch's requests are made from. Its items (records) are numbered from 0 in batch
/// order; a retry of some of them names them by number.
#[derive(Debug)]
enum Payload {
    /// The `http` protocol: the records encoded as NDJSON on the sink thread, which is the
    /// body (framed and compressed as configured); `lines[i]` is item `i`.
    Ndjson { bytes: Bytes, lines: Vec<Range<usize>> },
    /// The other protocols build their bodies from the records; item `i` is the record at
    /// position `at[i].1` of `parts[at[i].0]`.
    Records { parts: Vec<Part>, at: Vec<(usize, usize)> },
}

impl Payload {
    fn ndjson(bytes: Bytes) -> Payload {
        let mut lines = Vec::new();
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &bytes) {
            lines.push(start..nl);
            start = nl + 1;
        }
        Payload::Ndjson { bytes, lines }
    }

    fn records(parts: Vec<Part>) -> Payload {
        let mut at = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let mut pos = p.from;
            while pos < p.to {
                let Some((_, next)) = p.records.record_at(pos) else { break };
                at.push((i, pos));
                pos = next;
            }
        }
        Payload::Records { parts, at }
    }

    fn len(&self) -> usize {
        match self {
            Payload::Ndjson { lines, .. } => lines.len(),
            Payload::Records { at, .. } => at.len(),
        }
    }

    /// The records `items`, in order.
    fn refs<'a>(&'a self, items: &'a [usize]) -> impl Iterator<Item = RecordRef<'a>> + 'a {
        items.iter().filter_map(move |&i| match self {
            Payload::Ndjson { .. } => None,
            Payload::Records { parts, at } => {
                let (part, pos) = *at.get(i)?;
                parts.get(part)?.records.record_at(pos).map(|(r, _)| r)
            }
        })
    }

    /// Appends the records `items` as NDJSON lines.
    fn ndjson_of(&self, items: &[usize], out: &mut Vec<u8>) {
        match self {
            Payload::Ndjson { bytes, lines } => {
                for r in items.iter().filter_map(|&i| lines.get(i)) {
                    out.extend_from_slice(&bytes[r.clone()]);
                    out.push(b'\n');
                }
            }
            Payload::Records { .. } => {
                for r in self.refs(items) {
                    record_ndjson(&r, out);
                    out.push(b'\n');
                }
            }
        }
    }
}

/// What the request tasks share.
struct Shared {
    sink: String,
    index: usize,
    http: HttpSettings,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    hard_stop: HardStop,
    done: crossbeam_channel::Sender<(u64, Outcome)>,
    /// Batch buffers back from acknowledged batches, reused for new ones: a fresh 1 MiB
    /// buffer per batch costs page faults that showed up as a third of the sink's CPU.
    spare: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl Shared {
    fn m(&self) -> &SinkMetrics {
        &self.metrics.sinks[self.index]
    }
}

/// A sealed batch between its hand-off and its acknowledgement.
struct InFlight {
    seq: u64,
    records: usize,
    /// Bytes the batch counted against `max_bytes` (for `bytes_sent`).
    size: usize,
    /// What its requests are made from, and the dead-letter file's lines if rejected.
    payload: Arc<Payload>,
    /// Never read: held so that the chunks' budget keeps the tailer back until the ack.
    _held: Vec<Part>,
    marks: Vec<FileMark>,
    /// Delivered or dead-lettered: acknowledged once every earlier batch is too.
    settled: bool,
}

/// Builds the reqwest client: rustls, the configured CA and client certificate, keep-alive,
/// no redirects, the request timeout.
pub fn client(sink: &str, http: &HttpSettings) -> Result<reqwest::Client, Error> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(http.timeout)
        .connect_timeout(http.timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(http.concurrency)
        .tcp_keepalive(Duration::from_secs(30))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tailship/", env!("CARGO_PKG_VERSION")));
    let tls_err = |path: &std::path::Path, message: String| Error::Tls {
        sink: sink.to_owned(),
        path: path.display().to_string(),
        message,
    };
    if let Some(ca) = &http.tls.ca_file {
        let pem = std::fs::read(ca).map_err(|e| tls_err(ca, e.to_string()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| tls_err(ca, e.to_string()))? {
            b = b.add_root_certificate(cert);
        }
    }
    if let Some((cert, key)) = &http.tls.client_cert {
        b = b.identity(client_identity(cert, key).map_err(|m| tls_err(cert, m))?);
    }
    if http.tls.insecure_skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build().map_err(|source| Error::Client {
        sink: sink.to_owned(),
        url: http.url.to_string(),
        source,
    })
}

/// Runs an `http` sink until the adapt stage is gone and every batch is settled (or the hard
/// stop).
pub fn run(ctx: SinkContext) {
    let SinkContext {
        index,
        settings,
        mut encoder,
        records,
        checkpoints,
        metrics,
        hard_stop,
    } = ctx;
    let SinkKind::Http(http) = &settings.kind else {
        return;
    };
    let sink = settings.name.clone();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(http.concurrency.max(2))
        .thread_name(format!("http-{sink}"))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(source) => {
            // Nothing is acknowledged, so the tailer stops at its budget: lines wait on disk.
            tracing::error!(error = %Error::Runtime { sink: sink.clone(), source }, "http sink cannot run");
            return;
        }
    };
    // The files were checked at validation; if one went bad since, keep trying (logged)
    // rather than exit: the lines wait on disk meanwhile.
    let client = loop {
        match client(&sink, http) {
            Ok(c) => break c,
            Err(e) => {
                tracing::error!(error = %e, "http sink cannot build its client; retrying in 5s");
                if hard_stop.sleep(Duration::from_secs(5)) {
                    return;
                }
            }
        }
    };
    // Unbounded, but each batch in the window sends one outcome, and the window holds at most
    // `concurrency` unsettled batches.
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared {
        sink: sink.clone(),
        index,
        http: (**http).clone(),
        client,
        metrics: Arc::clone(&metrics),
        hard_stop: hard_stop.clone(),
        done: done_tx,
        spare: std::sync::Mutex::new(Vec::new()),
    });
    metrics.sinks[index].up.store(1, Ordering::Relaxed);
    let mut h = HttpSink {
        dead_letter: DeadLetter::new(&sink, &http.dead_letter),
        sink,
        runtime,
        shared,
        done_rx,
        window: VecDeque::new(),
        next_seq: 0,
        checkpoints,
    };
    // The `http` protocol sends the NDJSON the encoder writes; the others build their bodies
    // from the records, so encoding them on this thread would be wasted.
    let encode = http.api == Api::Plain;
    batcher::run(&records, &mut encoder, settings.batch, encode, &hard_stop, &mut h);
    h.close();
}

/// An HTTP sink's side of the batcher: the window of batches whose requests are running.
struct HttpSink {
    sink: String,
    runtime: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    done_rx: crossbeam_channel::Receiver<(u64, Outcome)>,
    /// Batches handed off and not yet acknowledged, in order.
    window: VecDeque<InFlight>,
    next_seq: u64,
    dead_letter: DeadLetter,
    checkpoints: crossbeam_channel::Sender<Msg>,
}

impl HttpSink {
    /// Applies one task's outcome, then acknowledges the finished prefix of the window.
    /// False: the hard stop, stop now.
    fn settle(&mut self, (seq, outcome): (u64, Outcome)) -> bool {
        let shared = &self.shared;
        let m = shared.m();
        let Some(f) = self.window.iter_mut().find(|f| f.seq == seq) else {
            return true;
        };
        match outcome {
            Outcome::Abandoned => return false,
            Outcome::Done { dead } => {
                if dead.records > 0 {
                    if let Err(e) = self.dead_letter.write(&dead.ndjson) {
                        // Not acknowledged, so not lost: the batch is sent again after a pause
                        // (elasticsearch `_id`s make the delivered part of it harmless), and
                        // if the collector still rejects it the file is tried again.
                        tracing::error!(sink = %self.sink, error = %e, "{}; cannot write the dead-letter file, will send the batch again", dead.why);
                        spawn_request(&self.runtime, shared, seq, Arc::clone(&f.payload), shared.http.retry.max);
                        return true;
                    }
                    add(&m.dead_letter_records, dead.records as u64);
                    tracing::error!(sink = %self.sink, records = dead.records, file = %self.dead_letter.path().display(), "{}; rejected records were written to the dead-letter file", dead.why);
                }
                if dead.records < f.records {
                    add(&m.records_sent, (f.records - dead.records) as u64);
                    add(&m.batches_sent, 1);
                    add(&m.bytes_sent, f.size as u64);
                }
                f.settled = true;
            }
        }
        while self.window.front().is_some_and(|f| f.settled) {
            let Some(f) = self.window.pop_front() else { break };
            let _ = self.checkpoints.send(Msg::Ack {
                sink: shared.index,
                marks: f.marks,
            });
            // The request is over, so the buffer is normally ours alone again.
            let bytes = match Arc::try_unwrap(f.payload) {
                Ok(Payload::Ndjson { bytes, .. }) => Some(bytes),
                _ => None,
            };
            if let Some(Ok(buf)) = bytes.map(Bytes::try_into_mut) {
                let mut spare = shared.spare.lock().unwrap_or_else(|p| p.into_inner());
                if spare.len() <= shared.http.concurrency {
                    let mut buf = Vec::from(buf);
                    buf.clear();
                    spare.push(buf);
                }
            }
        }
        true
    }

    /// After the last batch, or at the hard stop: what is still unacknowledged is read again
    /// at the next start; requests still retrying are dropped with the runtime.
    fn close(self) {
        if !self.window.is_empty() {
            let records: usize = self.window.iter().map(|f| f.records).sum();
            tracing::warn!(sink = %self.sink, records, "giving up at the shutdown deadline; these lines will be read again at the next start");
        }
        self.runtime.shutdown_background();
    }
}

impl Deliver for HttpSink {
    type Event = (u64, Outcome);

    fn events(&self) -> crossbeam_channel::Receiver<(u64, Outcome)> {
        self.done_rx.clone()
    }

    fn on_event(&mut self, event: (u64, Outcome)) -> bool {
        self.settle(event)
    }

    /// Starts the batch's request, first waiting (and settling what finishes) until fewer than
    /// `concurrency` requests run.
    fn deliver(&mut self, batch: &mut Batch) -> bool {
        while self.window.iter().filter(|f| !f.settled).count() >= self.shared.http.concurrency {
            select! {
                recv(self.done_rx) -> d => {
                    if !d.is_ok_and(|d| self.settle(d)) {
                        return false;
                    }
                }
                recv(self.shared.hard_stop.channel()) -> _ => return false,
            }
        }
        let shared = &self.shared;
        let marks = std::mem::take(&mut batch.marks);
        let parts = std::mem::take(&mut batch.parts);
        let payload = if shared.http.api == Api::Plain {
            let capacity = batch.bytes.capacity();
            let fresh = shared
                .spare
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(capacity));
            Payload::ndjson(Bytes::from(std::mem::replace(&mut batch.bytes, fresh)))
        } else {
            Payload::records(parts.clone())
        };
        let payload = Arc::new(payload);
        shared.m().batch_records.observe(batch.records as u64);
        let seq = self.next_seq;
        self.next_seq += 1;
        spawn_request(&self.runtime, shared, seq, Arc::clone(&payload), Duration::ZERO);
        self.window.push_back(InFlight {
            seq,
            records: batch.records,
            size: batch.size(),
            payload,
            _held: parts,
            marks,
            settled: false,
        });
        true
    }

    /// Waits for every batch to settle, or the hard stop.
    fn finish(&mut self) {
        while !self.window.is_empty() {
            select! {
                recv(self.done_rx) -> d => {
                    if !d.is_ok_and(|d| self.settle(d)) {
                        return;
                    }
                }
                recv(self.shared.hard_stop.channel()) -> _ => return,
            }
        }
    }
}

fn spawn_request(runtime: &tokio::runtime::Runtime, shared: &Arc<Shared>, seq: u64, payload: Arc<Payload>, delay: Duration) {
    let shared = Arc::clone(shared);
    runtime.spawn(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let outcome = send_until_settled(&shared, &payload).await;
        let _ = shared.done.send((seq, outcome));
    });
}

/// Sends one batch until every record is delivered or rejected for good, or the hard stop.
async fn send_until_settled(shared: &Shared, payload: &Payload) -> Outcome {
    let http = &shared.http;
    let m = shared.m();
    let mut dead = Dead::default();
    // The records still to send: all of them at first; for Elasticsearch, then only the items
    // that failed with 429/5xx.
    let mut pending: Vec<usize> = (0..payload.len()).collect();
    let mut names = IndexNames::default();
    let mut backoff = Backoff::new(http.retry.initial, http.retry.max);
    let mut retries = 0u32;
    loop {
        if pending.is_empty() {
            return Outcome::Done { dead };
        }
        let body = match request_body(shared, payload, &pending, &mut names).await {
            Ok(b) => b,
            Err(why) => {
                dead.add(payload, &pending, &why);
                return Outcome::Done { dead };
            }
        };
        loop {
            if shared.hard_stop.is_set() {
                return Outcome::Abandoned;
            }
            let started = Instant::now();
            let answer = attempt(shared, body.clone()).await;
            m.request_seconds.observe(started.elapsed().as_nanos() as u64);
            // `partial`: some bulk items are to be sent again, in a new, smaller request.
            let (what, wait, partial) = match answer {
                Ok((status, _, answer)) if (200..300).contains(&status) => {
                    add(&m.http_status[1], 1);
                    m.up.store(1, Ordering::Relaxed);
                    let again = match &http.api {
                        Api::Plain | Api::Loki(_) | Api::SplunkHec(_) => Vec::new(),
                        Api::Otlp { json } => {
                            otlp_partial_success(shared, &answer, *json);
                            Vec::new()
                        }
                        Api::Elasticsearch(_) => match elasticsearch::verdicts(&answer, pending.len()) {
                            Ok(v) => {
                                let mut again = Vec::new();
                                for (r, verdict) in pending.iter().zip(v) {
                                    match verdict {
                                        Verdict::Done => {}
                                        Verdict::Retry => again.push(*r),
                                        Verdict::Reject(why) => dead.add(payload, std::slice::from_ref(r), &why),
                                    }
                                }
                                again
                            }
                            Err(e) => {
                                tracing::warn!(sink = %shared.sink, error = %e, "sending the whole request again");
                                pending.clone()
                            }
                        },
                    };
                    if again.is_empty() {
                        if retries > 0 {
                            tracing::info!(sink = %shared.sink, retries, "batch delivered after retries");
                        }
                        return Outcome::Done { dead };
                    }
                    let what = format!("{} of {} bulk items failed with 429/5xx", again.len(), pending.len());
                    pending = again;
                    (what, None, true)
                }
                Ok((status, headers, head)) => {
                    if let Some(c) = m.http_status.get(usize::from(status / 100).saturating_sub(1)) {
                        add(c, 1);
                    }
                    let what = format!(
                        "{} answered HTTP {status}: {}",
                        http.url,
                        String::from_utf8_lossy(&head)
                    );
                    if !retryable(status) {
                        dead.add(payload, &pending, &what);
                        return Outcome::Done { dead };
                    }
                    let after = headers
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry_after(v, SystemTime::now()));
                    (what, after, false)
                }
                Err(e) => {
                    add(&m.http_transport_errors, 1);
                    (format!("{}: {e}", http.url), None, false)
                }
            };
            if !partial {
                add(&m.errors, 1);
                m.up.store(0, Ordering::Relaxed);
            }
            if http.retry.max_retries.is_some_and(|max| retries >= max) {
                let why = format!("{what} (gave up after {retries} retries, retry.max_retries)");
                dead.add(payload, &pending, &why);
                return Outcome::Done { dead };
            }
            retries += 1;
            add(&m.retries, 1);
            let wait = wait.unwrap_or_else(|| backoff.next_delay());
            if retries == 1 {
                tracing::warn!(sink = %shared.sink, error = %what, wait = ?wait, "send failed; retrying");
            } else {
                tracing::debug!(sink = %shared.sink, error = %what, retries, wait = ?wait, "send failed again");
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shared.hard_stop.stopped() => return Outcome::Abandoned,
            }
            if partial {
                break;
            }
        }
    }
}

/// An OTLP answer may accept a request only in part (`partial_success`): the rejected
/// records must not be sent again, and the answer does not say which they were, so they
/// cannot be dead-lettered; they are logged and counted as errors, never silent.
fn otlp_partial_success(shared: &Shared, answer: &[u8], json: bool) {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    use prost::Message as _;
    if answer.is_empty() {
        return;
    }
    let parsed = if json {
        serde_json::from_slice::<ExportLogsServiceResponse>(answer).ok()
    } else {
        ExportLogsServiceResponse::decode(answer).ok()
    };
    if let Some(p) = parsed.and_then(|r| r.partial_success) {
        if p.rejected_log_records > 0 || !p.error_message.is_empty() {
            add(&shared.m().errors, 1);
            tracing::warn!(sink = %shared.sink, rejected = p.rejected_log_records, message = %p.error_message, "the collector accepted the request only in part");
        }
    }
}

/// The compressed body for the `pending` records. Compression runs on the blocking pool (CPU
/// work off the async worker); building a body or compressing it in memory cannot fail short
/// of a bug, and the batch is then dead-lettered rather than retried forever or dropped.
async fn request_body(
    shared: &Shared,
    payload: &Payload,
    pending: &[usize],
    names: &mut IndexNames,
) -> Result<Bytes, String> {
    let http = &shared.http;
    let raw: Bytes = match (&http.api, payload) {
        // The plain protocol always sends the whole batch: the encoded bytes are the body.
        (_, Payload::Ndjson { bytes, .. }) => bytes.clone(),
        (Api::Elasticsearch(target), _) => {
            let mut out = Vec::new();
            elasticsearch::bulk_body(payload.refs(pending), target, names, &mut out);
            Bytes::from(out)
        }
        (Api::SplunkHec(settings), _) => Bytes::from(splunk::event_body(payload.refs(pending), settings)?),
        (Api::Otlp { json }, _) => Bytes::from(otlp::export_body(payload.refs(pending), *json)?),
        (Api::Loki(settings), _) => Bytes::from(
            loki::push_body(payload.refs(pending), settings).map_err(|e| format!("cannot build the push body: {e}"))?,
        ),
        (Api::Plain, Payload::Records { .. }) => return Err("the http protocol sends encoded records".into()),
    };
    // Only the plain sink reframes (JSON array); the others built their own bodies.
    let framing = if http.api == Api::Plain {
        http.framing
    } else {
        Framing::Ndjson
    };
    let compression = http.compression;
    let len = raw.len();
    let m = shared.m();
    if (framing, compression) == (Framing::Ndjson, Compression::None) {
        // The batch is the body: no copy.
        add(&m.bytes_uncompressed, len as u64);
        add(&m.bytes_compressed, len as u64);
        return Ok(raw);
    }
    let body = tokio::task::spawn_blocking(move || body(&raw, framing, compression))
        .await
        .map_err(|e| format!("the compression task failed: {e}"))?
        .map_err(|e| format!("cannot compress the batch: {e}"))?;
    add(&m.bytes_uncompressed, len as u64);
    add(&m.bytes_compressed, body.len() as u64);
    Ok(Bytes::from(body))
}

/// One request. `Ok` with the status, headers and the body when the server answered: the
/// first 512 bytes of a failure; all of an elasticsearch success; nothing of another success
/// (read to its end all the same, so the connection is kept alive).
async fn attempt(shared: &Shared, body: Bytes) -> Result<(u16, HeaderMap, Vec<u8>), String> {
    let http = &shared.http;
    let mut req = shared.client.request(http.method.clone(), http.url.clone()).header(
        CONTENT_TYPE,
        match (&http.api, http.framing) {
            (Api::Loki(_) | Api::Otlp { json: true } | Api::SplunkHec(_), _) | (Api::Plain, Framing::JsonArray) => {
                "application/json"
            }
            (Api::Otlp { json: false }, _) => "application/x-protobuf",
            (Api::Elasticsearch(_), _) | (Api::Plain, Framing::Ndjson) => "application/x-ndjson",
        },
    );
    if let Api::Loki(l) = &http.api {
        if let Some(tenant) = &l.tenant_id {
            req = req.header("X-Scope-OrgID", tenant);
        }
    }
    match http.compression {
        Compression::None => {}
        Compression::Gzip => req = req.header(CONTENT_ENCODING, "gzip"),
        Compression::Zstd => req = req.header(CONTENT_ENCODING, "zstd"),
    }
    for (name, value) in &http.headers {
        let mut v = value
            .reveal()
            .ok()
            .and_then(|v| HeaderValue::from_str(&v).ok())
            .ok_or_else(|| format!("header {name}: cannot read its value"))?;
        v.set_sensitive(true);
        req = req.header(name, v);
    }
    match &http.auth {
        None => {}
        Some(Auth::Basic { user, password }) => {
            let password = password.reveal().map_err(|e| format!("auth password file: {e}"))?;
            req = req.basic_auth(user, Some(password));
        }
        Some(Auth::Bearer { token }) => {
            let token = token.reveal().map_err(|e| format!("auth token file: {e}"))?;
            req = req.bearer_auth(token);
        }
        Some(Auth::Splunk { token }) => {
            let token = token.reveal().map_err(|e| format!("auth token file: {e}"))?;
            let mut v = HeaderValue::from_str(&format!("Splunk {token}"))
                .map_err(|_| "the HEC token has characters a header cannot carry".to_owned())?;
            v.set_sensitive(true);
            req = req.header(reqwest::header::AUTHORIZATION, v);
        }
    }
    let mut resp = req.body(body).send().await.map_err(|e| error_chain(&e))?;
    let status = resp.status().as_u16();
    let headers = std::mem::take(resp.headers_mut());
    let mut head = Vec::new();
    if (200..300).contains(&status) {
        // Read to the end (keep-alive needs it); the elasticsearch sink reads the answer.
        while let Some(chunk) = resp.chunk().await.map_err(|e| error_chain(&e))? {
            if matches!(http.api, Api::Elasticsearch(_) | Api::Otlp { .. }) {
                head.extend_from_slice(&chunk);
            }
        }
    } else {
        while head.len() < BODY_HEAD {
            match resp.chunk().await {
                Ok(Some(c)) => head.extend_from_slice(&c[..c.len().min(BODY_HEAD - head.len())]),
                _ => break,
            }
        }
    }
    Ok((status, headers, head))
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

/// The request body of a batch of NDJSON records: framed, then compressed.
pub fn body(ndjson: &[u8], framing: Framing, compression: Compression) -> std::io::Result<Vec<u8>> {
    let framed;
    let data: &[u8] = match framing {
        Framing::Ndjson => ndjson,
        Framing::JsonArray => {
            framed = json_array(ndjson);
            &framed
        }
    };
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

/// `[r1,r2,…]` from `r1\nr2\n…`: an encoded record never holds a raw newline (JSON escapes
/// it), so every newline is a record boundary.
fn json_array(ndjson: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ndjson.len() + 2);
    out.push(b'[');
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', ndjson) {
        if start > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&ndjson[start..nl]);
        start = nl + 1;
    }
    out.push(b']');
    out
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
    fn bodies_frame_and_compress_the_same_records() {
        let ndjson = b"{\"a\":1}\n{\"b\":\"x\\ny\"}\n";
        assert_eq!(body(ndjson, Framing::Ndjson, Compression::None).unwrap(), ndjson);
        let array = body(ndjson, Framing::JsonArray, Compression::None).unwrap();
        assert_eq!(array, b"[{\"a\":1},{\"b\":\"x\\ny\"}]");
        let v: serde_json::Value = serde_json::from_slice(&array).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        let gz = body(ndjson, Framing::Ndjson, Compression::Gzip).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, ndjson);
        let zs = body(ndjson, Framing::Ndjson, Compression::Zstd).unwrap();
        assert_eq!(zstd::decode_all(&zs[..]).unwrap(), ndjson);
    }
}
