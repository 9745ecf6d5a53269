//! The sinks: one thread per `[[sinks]]` entry receives every chunk of the sources it reads,
//! encodes the records straight into its wire format, batches them by `max_events` /
//! `max_bytes` / `linger`, writes each batch until it succeeds, and then acknowledges the
//! batch's end offsets to the checkpoint thread.
//!
//! A batch holds the chunks it came from until it is acknowledged; their budget guards are
//! what the tailer waits on when a collector is down.

pub mod backoff;
pub mod deadletter;
pub mod elasticsearch;
pub mod encode;
pub mod escape;
pub mod http;
pub mod loki;
pub mod otlp;
pub mod output;
pub mod record;
pub mod resolve;
pub mod splunk;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use self::backoff::Backoff;
use self::encode::{EncodeStats, Encoder};
use self::output::Output;
use crate::checkpoint::{Mark, Msg};
use crate::chunk::Chunk;
use crate::config::{BatchSettings, SinkSettings};
use crate::metrics::{add, Metrics};

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// What a sink thread needs.
pub struct SinkContext {
    pub index: usize,
    pub settings: SinkSettings,
    pub encoder: Encoder,
    /// Per source: this sink counts the source's per-line problems (the first sink reading it).
    pub counts_source: Vec<bool>,
    pub chunks: Receiver<Arc<Chunk>>,
    pub checkpoints: Sender<Msg>,
    pub metrics: Arc<Metrics>,
    /// Set when the shutdown deadline passed: stop retrying, acknowledge nothing more.
    pub hard_stop: Arc<AtomicBool>,
}

/// The batch being filled, in both sink loops.
pub(crate) struct Batch {
    pub bytes: Vec<u8>,
    pub records: usize,
    /// The chunks the batch's records came from, kept (with their budget) until the ack.
    pub held: Vec<Arc<Chunk>>,
    /// Per file, where its checkpoint may go once the batch is delivered.
    pub marks: Vec<Mark>,
    pub opened: Option<Instant>,
}

impl Batch {
    pub fn new(limits: &BatchSettings) -> Batch {
        Batch {
            bytes: Vec::with_capacity(limits.max_bytes + (limits.max_bytes >> 3)),
            records: 0,
            held: Vec::new(),
            marks: Vec::new(),
            opened: None,
        }
    }

    /// Encodes `chunk.data[from..]` into the batch up to its limits; returns the position
    /// reached in the chunk.
    pub fn fill(
        &mut self,
        encoder: &mut Encoder,
        chunk: &Arc<Chunk>,
        from: usize,
        limits: &BatchSettings,
        stats: &mut EncodeStats,
    ) -> usize {
        let room = limits.max_events.saturating_sub(self.records);
        let (pos, n) = encoder.encode(chunk, from, &mut self.bytes, room, limits.max_bytes, stats);
        if n > 0 {
            self.records += n;
            self.opened.get_or_insert_with(Instant::now);
            self.held.push(Arc::clone(chunk));
        }
        if pos > from {
            self.set_mark(encoder.commit_point(chunk, pos));
        }
        pos
    }

    /// Adds the events the encoder has been collecting for files that went quiet (all of them
    /// when `all`).
    pub fn flush_due(&mut self, encoder: &mut Encoder, all: bool, stats: &mut EncodeStats) {
        let (n, marks) = encoder.flush_due(Instant::now(), all, &mut self.bytes, stats);
        if n > 0 {
            self.records += n;
            self.opened.get_or_insert_with(Instant::now);
        }
        for m in marks {
            self.set_mark(m);
        }
    }

    fn set_mark(&mut self, mark: Mark) {
        match self.marks.iter_mut().find(|m| m.uid == mark.uid) {
            Some(m) => *m = mark,
            None => self.marks.push(mark),
        }
    }

    pub fn is_full(&self, limits: &BatchSettings) -> bool {
        self.records >= limits.max_events || self.bytes.len() >= limits.max_bytes
    }

    /// When the sink loop must wake: the linger of an open batch, or an event due.
    pub fn wake_at(&self, encoder: &Encoder, limits: &BatchSettings) -> Option<Instant> {
        let linger = self.opened.map(|t| t + limits.linger);
        match (linger, encoder.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Runs the sink until the tailer is gone and the last batch is delivered (or the hard stop).
pub fn run(ctx: SinkContext) {
    // HTTP sinks keep several requests in flight; they have a loop of their own.
    if matches!(ctx.settings.kind, crate::config::SinkKind::Http(_)) {
        return http::run(ctx);
    }
    let SinkContext {
        index,
        settings,
        mut encoder,
        counts_source,
        chunks,
        checkpoints,
        metrics,
        hard_stop,
    } = ctx;
    let limits = settings.batch;
    let mut output = Output::new(&settings.kind);
    let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
    let mut stats = EncodeStats::default();
    let mut batch = Batch::new(&limits);
    let m = &metrics.sinks[index];
    m.up.store(1, Ordering::Relaxed);

    let mut deliver = |batch: &mut Batch, stats: &mut EncodeStats| -> bool {
        flush_stats(&metrics, stats, &counts_source);
        if batch.records == 0 {
            return true;
        }
        let mut failures = 0u64;
        loop {
            match output.write(&batch.bytes) {
                Ok(()) => break,
                Err(e) => {
                    add(&m.errors, 1);
                    m.up.store(0, Ordering::Relaxed);
                    if hard_stop.load(Ordering::Relaxed) {
                        tracing::warn!(sink = %settings.name, error = %e, records = batch.records, "giving up at the shutdown deadline; these lines will be read again at the next start");
                        return false;
                    }
                    if failures == 0 {
                        tracing::warn!(sink = %settings.name, error = %e, "send failed; retrying");
                    }
                    failures += 1;
                    add(&m.retries, 1);
                    let wait = backoff.next_delay();
                    let until = Instant::now() + wait;
                    while Instant::now() < until && !hard_stop.load(Ordering::Relaxed) {
                        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
                    }
                }
            }
        }
        if failures > 0 {
            tracing::info!(sink = %settings.name, failures, "sink recovered");
        }
        backoff.reset();
        m.up.store(1, Ordering::Relaxed);
        add(&m.records_sent, batch.records as u64);
        add(&m.batches_sent, 1);
        add(&m.bytes_sent, batch.bytes.len() as u64);
        let marks = std::mem::take(&mut batch.marks);
        let _ = checkpoints.send(Msg::Ack { sink: index, marks });
        batch.bytes.clear();
        batch.records = 0;
        batch.held.clear();
        batch.opened = None;
        true
    };

    let mut pending: Option<(Arc<Chunk>, usize)> = None;
    loop {
        let (chunk, from) = match pending.take() {
            Some(p) => p,
            None => {
                let got = match batch.wake_at(&encoder, &limits) {
                    Some(t) => chunks.recv_timeout(t.saturating_duration_since(Instant::now())),
                    None => chunks.recv().map_err(|_| RecvTimeoutError::Disconnected),
                };
                match got {
                    Ok(c) => (c, 0),
                    Err(RecvTimeoutError::Timeout) => {
                        batch.flush_due(&mut encoder, false, &mut stats);
                        let lingered = batch.opened.is_some_and(|t| t + limits.linger <= Instant::now());
                        if (lingered || batch.is_full(&limits)) && !deliver(&mut batch, &mut stats) {
                            return;
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        batch.flush_due(&mut encoder, true, &mut stats);
                        deliver(&mut batch, &mut stats);
                        return;
                    }
                }
            }
        };
        let pos = batch.fill(&mut encoder, &chunk, from, &limits, &mut stats);
        if pos < chunk.data.len() {
            pending = Some((chunk, pos));
        }
        if batch.is_full(&limits) && !deliver(&mut batch, &mut stats) {
            return;
        }
        if hard_stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

/// Moves the encoder's per-line counts into the shared metrics (once per batch, not per line).
pub(crate) fn flush_stats(metrics: &Metrics, stats: &mut EncodeStats, counts_source: &[bool]) {
    for (i, n) in stats.lines.iter_mut().enumerate() {
        let n = std::mem::take(n);
        if counts_source.get(i) == Some(&true) {
            add(&metrics.lines_read, n);
        }
    }
    for (source, path, d) in stats.detected.drain(..) {
        if let (Some(s), Some(true)) = (metrics.sources.get(source), counts_source.get(source)) {
            tracing::info!(source = %s.name, file = %path, format = d.format.as_str(), matched = d.matched, sampled = d.sampled, "auto: detected the file's format");
            s.detected(d.format);
        }
    }
    for (i, n) in stats.invalid_utf8.iter_mut().enumerate() {
        let n = std::mem::take(n);
        if counts_source.get(i) == Some(&true) {
            add(&metrics.invalid_utf8_lines, n);
        }
    }
    for (i, n) in stats.parse_errors.iter_mut().enumerate() {
        let n = std::mem::take(n);
        if let (Some(s), Some(true)) = (metrics.sources.get(i), counts_source.get(i)) {
            add(&s.parse_errors, n);
        }
    }
}
