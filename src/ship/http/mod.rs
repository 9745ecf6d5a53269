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
//! Protocols (`protocol::Protocol`, chosen once at start): how a batch's records become a
//! request body and how a 2xx answer is read — NDJSON encoded on the sink thread (`http`),
//! `_bulk` with per-item verdicts (`ship::elasticsearch`), a Loki push (`ship::loki`), an OTLP
//! export (`ship::otlp`), HEC events (`ship::splunk`), each written from the records
//! themselves; everything else here is common to all. Files: `client` (the client, headers and
//! secrets), `payload` (what a batch's requests are made from), `send` (one batch until it is
//! settled), this file (the sink: its window of batches and in-order acknowledgement).
//!
//! Memory: a batch keeps its chunks (and their in-flight budget) until it is acknowledged,
//! like every sink. Its request body counts against the same budget (`max_inflight_bytes`):
//! the encoded NDJSON from its hand-off to its acknowledgement, a body built from the records
//! or compressed while its request runs. The window holds at most `concurrency` batches,
//! running or finished (a finished one waits there for an earlier one still retrying), so a
//! dead or slow collector stops the tailer, not the heap, and a `kill -9` sends again at most
//! one batch per request that was in flight, plus what was acknowledged in the checkpoint's
//! last few milliseconds. What is outside the budget is bounded by the batch size: the batch being filled, the
//! reused buffers, a body while it is compressed, the answers (docs/performance.md).

pub mod client;
pub mod payload;
pub mod protocol;
pub mod send;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::select;

use self::client::{client, RequestParts};
use self::payload::{Dead, Payload};
use self::protocol::Protocol;
use super::batcher::{self, Batch, Deliver};
use super::deadletter::DeadLetter;
use super::SinkContext;
use crate::budget::{Budget, BudgetGuard};
use crate::checkpoint::Msg;
use crate::config::{Api, HttpSettings, SinkKind};
use crate::mark::FileMark;
use crate::metrics::{add, Metrics, SinkMetrics};
use crate::stop::HardStop;

pub use self::send::{retry_after, retryable, MAX_RETRY_AFTER};

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
    #[error("http sink {sink}: {source}")]
    Headers { sink: String, source: client::HeaderError },
}

/// What became of one batch's request.
#[derive(Debug)]
enum Outcome {
    /// Every record delivered, except `dead` (rejected for good: dead-letter them).
    Done { dead: Dead },
    /// The shutdown deadline passed while it was still retrying.
    Abandoned,
}

/// What the request tasks share.
struct Shared {
    sink: String,
    /// The URL as it may be logged (`logsafe::url`: no userinfo, query values masked).
    shown_url: String,
    index: usize,
    /// The checkpoint slot its acknowledgements name (`SinkContext::slot`).
    slot: usize,
    http: HttpSettings,
    client: reqwest::Client,
    /// The protocol: content type, body, answer.
    protocol: Box<dyn Protocol>,
    /// The headers of every request, built once.
    parts: RequestParts,
    metrics: Arc<Metrics>,
    hard_stop: HardStop,
    done: crossbeam_channel::Sender<(u64, Outcome)>,
    /// Request bodies are charged to it.
    budget: Arc<Budget>,
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
    /// What its requests are made from (holding the records, and so their chunks' budget,
    /// until the ack), and the dead-letter file's lines if rejected.
    payload: Arc<Payload>,
    marks: Vec<FileMark>,
    /// Delivered or dead-lettered: acknowledged once every earlier batch is too.
    settled: bool,
    /// The encoded body's share of the in-flight budget, released at the ack.
    _charge: BudgetGuard,
}

/// Runs an `http` sink until the adapt stage is gone and every batch is settled (or the hard
/// stop).
pub fn run(ctx: SinkContext) {
    let SinkContext {
        index,
        slot,
        settings,
        mut encoder,
        records,
        checkpoints,
        metrics,
        hard_stop,
        budget,
    } = ctx;
    let SinkKind::Http(http) = &settings.kind else {
        return;
    };
    let sink = settings.name.clone();
    let Some(runtime) = runtime(&sink, http) else { return };
    let Some(client) = built_client(&sink, http, &hard_stop) else {
        return;
    };
    let protocol = protocol::of(http);
    let parts = match RequestParts::new(http, protocol.as_ref()) {
        Ok(p) => p,
        Err(source) => {
            // Validation checks header values, so this is a file gone bad since: the lines
            // wait on disk, nothing is acknowledged.
            tracing::error!(error = %Error::Headers { sink: sink.clone(), source }, "http sink cannot run");
            return;
        }
    };
    // Unbounded, but each batch in the window sends one outcome, and the window holds at most
    // `concurrency` unsettled batches.
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared {
        sink: sink.clone(),
        shown_url: crate::logsafe::url(&http.url),
        index,
        slot,
        http: (**http).clone(),
        client,
        protocol,
        parts,
        metrics: Arc::clone(&metrics),
        hard_stop: hard_stop.clone(),
        done: done_tx,
        budget,
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
    let heartbeat = &metrics.sinks[index].heartbeat;
    batcher::run(
        &records,
        &mut encoder,
        settings.batch,
        encode,
        &hard_stop,
        heartbeat,
        &mut h,
    );
    h.close();
}

/// The sink's tokio runtime. Without one nothing is acknowledged, so the tailer stops at its
/// budget: lines wait on disk.
fn runtime(sink: &str, http: &HttpSettings) -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(http.concurrency.max(2))
        .thread_name(format!("http-{sink}"))
        .enable_all()
        .build()
        .map_err(|source| {
            let sink = sink.to_owned();
            tracing::error!(error = %Error::Runtime { sink, source }, "http sink cannot run");
        })
        .ok()
}

/// The sink's client. Its files were checked at validation; if one went bad since, keep
/// trying (logged) rather than exit: the lines wait on disk meanwhile. `None` at the hard stop.
fn built_client(sink: &str, http: &HttpSettings, hard_stop: &HardStop) -> Option<reqwest::Client> {
    loop {
        match client(sink, http) {
            Ok(c) => return Some(c),
            Err(e) => {
                tracing::error!(error = %e, "http sink cannot build its client; retrying in 5s");
                if hard_stop.sleep(Duration::from_secs(5)) {
                    return None;
                }
            }
        }
    }
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
                        spawn_request(
                            &self.runtime,
                            shared,
                            seq,
                            Arc::clone(&f.payload),
                            shared.http.retry.max,
                        );
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
                sink: shared.slot,
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

    /// Starts the batch's request, first waiting (and settling what finishes) until the
    /// window holds fewer than `concurrency` batches: finished ones waiting for an earlier one
    /// count too, as each holds its body and would be sent again after a crash.
    fn deliver(&mut self, batch: &mut Batch) -> bool {
        while self.window.len() >= self.shared.http.concurrency {
            // Waiting for the collector's answers (retried, each within `timeout`) is not
            // this thread's stall (`liveness`): a collector that is down must not get the
            // agent restarted.
            let hard_stop = self.shared.hard_stop.channel();
            let done = self.shared.metrics.sinks[self.shared.index].heartbeat.wait_for(|| {
                select! {
                    recv(self.done_rx) -> d => d.ok(),
                    recv(hard_stop) -> _ => None,
                }
            });
            if !done.is_some_and(|d| self.settle(d)) {
                return false;
            }
        }
        let shared = &self.shared;
        let marks = std::mem::take(&mut batch.marks);
        let parts = std::mem::take(&mut batch.parts);
        let charge = shared.budget.take(batch.bytes.len());
        let payload = if shared.http.api == Api::Plain {
            let capacity = batch.bytes.capacity();
            let fresh = shared
                .spare
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(capacity));
            Payload::ndjson(Bytes::from(std::mem::replace(&mut batch.bytes, fresh)), parts)
        } else {
            Payload::records(parts)
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
            marks,
            settled: false,
            _charge: charge,
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

fn spawn_request(
    runtime: &tokio::runtime::Runtime,
    shared: &Arc<Shared>,
    seq: u64,
    payload: Arc<Payload>,
    delay: Duration,
) {
    let shared = Arc::clone(shared);
    runtime.spawn(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let outcome = send::send_until_settled(&shared, &payload).await;
        let _ = shared.done.send((seq, outcome));
    });
}
