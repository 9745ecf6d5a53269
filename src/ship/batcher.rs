//! The one batcher every sink uses: it takes the records the adapt stage sends, fills a batch
//! up to `max_events` / `max_bytes`, seals it when it is full or has lingered `linger`, and
//! hands it to the sink's `Deliver` — which writes it to a socket (byte sinks) or starts its
//! requests (HTTP sinks). When the records stop coming (the pipeline is shutting down) the last
//! batch is sealed and the sink finishes; at the hard stop it returns at once.
//!
//! `Batcher` is the state (the batch, the records not yet taken, the linger deadline) with
//! time passed in, so it is tested without a clock; `run` is the thread's loop around it.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{select, Receiver};

use super::encode::{Encoder, Limits};
use crate::config::BatchSettings;
use crate::liveness::Heartbeat;
use crate::mark::FileMark;
use crate::record::{RecordRef, Records};
use crate::stop::HardStop;

/// Records a batch holds: `records` from position `from` up to `to`.
#[derive(Debug, Clone)]
pub struct Part {
    pub records: Arc<Records>,
    pub from: usize,
    pub to: usize,
}

/// A batch being filled, then handed to `Deliver`.
#[derive(Debug)]
pub struct Batch {
    /// The encoded records (byte sinks and the `http` protocol); empty for sinks that build
    /// their own bodies from `parts`.
    pub bytes: Vec<u8>,
    /// Whether records are encoded into `bytes` (else only collected in `parts`).
    encode: bool,
    /// Bytes the batch counts against `max_bytes`: `bytes.len()`, or an estimate of the
    /// records' size when they are not encoded here.
    size: usize,
    pub records: usize,
    /// The records of the batch, kept (with their chunks' budget) until the ack.
    pub parts: Vec<Part>,
    /// Per file, where its checkpoint may go once the batch is delivered.
    pub marks: Vec<FileMark>,
    /// When its first record came in.
    pub opened: Option<Instant>,
}

/// What a record adds to a batch that does not encode it, roughly its NDJSON size: the
/// message, a fixed part for the keys, times, file and id, and a share per field.
fn approx_size(r: &RecordRef<'_>) -> usize {
    let message = r.message.map_or(0, |t| r.records.bytes(t).len());
    message + 160 + 32 * r.field_count()
}

impl Batch {
    pub fn new(limits: &BatchSettings, encode: bool) -> Batch {
        let capacity = if encode {
            limits.max_bytes + (limits.max_bytes >> 3)
        } else {
            0
        };
        Batch {
            bytes: Vec::with_capacity(capacity),
            encode,
            size: 0,
            records: 0,
            parts: Vec::new(),
            marks: Vec::new(),
            opened: None,
        }
    }

    /// Takes the records of `records` from position `from` into the batch, up to its limits;
    /// returns the position reached.
    pub fn fill(
        &mut self,
        encoder: &mut Encoder,
        records: &Arc<Records>,
        from: usize,
        limits: &BatchSettings,
        now: Instant,
    ) -> usize {
        let room = Limits {
            max_events: limits.max_events.saturating_sub(self.records),
            max_bytes: limits.max_bytes,
        };
        let (pos, n) = if self.encode {
            let r = encoder.encode(records, from, &mut self.bytes, room);
            self.size = self.bytes.len();
            r
        } else {
            self.collect(records, from, room)
        };
        if n > 0 {
            self.records += n;
            self.opened.get_or_insert(now);
        }
        if pos > from {
            self.parts.push(Part {
                records: Arc::clone(records),
                from,
                to: pos,
            });
            if let Some(mark) = encoder.mark_at(records, pos) {
                self.set_mark(FileMark {
                    uid: records.context.file.uid,
                    mark,
                });
            }
        } else if from == 0 && encoder.end_of(records) == 0 {
            // A batch with no record to write (a transform dropped them all): its end still
            // moves the file's checkpoint, acknowledged with this sink batch, after the
            // records before it.
            self.set_mark(FileMark {
                uid: records.context.file.uid,
                mark: records.end,
            });
        }
        pos
    }

    /// `fill` for a batch that does not encode: counts records and their approximate size.
    fn collect(&mut self, records: &Records, from: usize, room: Limits) -> (usize, usize) {
        let (mut pos, mut n) = (from, 0);
        while n < room.max_events.max(1) && !(n > 0 && self.size >= room.max_bytes) {
            let Some((r, next)) = records.record_at(pos) else { break };
            self.size += approx_size(&r);
            pos = next;
            n += 1;
        }
        (pos, n)
    }

    fn set_mark(&mut self, mark: FileMark) {
        match self.marks.iter_mut().find(|m| m.uid == mark.uid) {
            Some(m) => *m = mark,
            None => self.marks.push(mark),
        }
    }

    /// Bytes the batch counts against `max_bytes`.
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn is_full(&self, limits: &BatchSettings) -> bool {
        self.records >= limits.max_events || self.size >= limits.max_bytes
    }

    /// Empties the batch after its hand-off, keeping the buffer.
    pub fn reset(&mut self) {
        self.bytes.clear();
        self.size = 0;
        self.records = 0;
        self.parts.clear();
        self.marks.clear();
        self.opened = None;
    }
}

/// A batch, the records not yet taken into it, and the limits. See the module doc.
pub struct Batcher {
    pub batch: Batch,
    limits: BatchSettings,
    /// Records of which only a part fitted, and the position to go on from.
    pending: Option<(Arc<Records>, usize)>,
}

impl Batcher {
    /// `encode`: whether batches hold the encoded records (see `Batch::bytes`).
    pub fn new(limits: BatchSettings, encode: bool) -> Batcher {
        Batcher {
            batch: Batch::new(&limits, encode),
            limits,
            pending: None,
        }
    }

    /// Takes new records, as many as fit.
    pub fn take(&mut self, encoder: &mut Encoder, records: Arc<Records>, now: Instant) {
        self.pending = Some((records, 0));
        self.resume(encoder, now);
    }

    /// Goes on with the records of which only a part fitted (after the batch was handed off).
    pub fn resume(&mut self, encoder: &mut Encoder, now: Instant) {
        let Some((records, from)) = self.pending.take() else {
            return;
        };
        if self.batch.is_full(&self.limits) {
            self.pending = Some((records, from));
            return;
        }
        let pos = self.batch.fill(encoder, &records, from, &self.limits, now);
        if pos < encoder.end_of(&records) {
            self.pending = Some((records, pos));
        }
    }

    /// Whether records wait for room in the next batch.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether the batch must be handed off now: it is full, or has lingered long enough.
    pub fn ready(&self, now: Instant) -> bool {
        self.batch.records > 0 && (self.batch.is_full(&self.limits) || self.deadline().is_some_and(|d| d <= now))
    }

    /// When an open batch has lingered long enough.
    pub fn deadline(&self) -> Option<Instant> {
        self.batch.opened.map(|t| t + self.limits.linger)
    }
}

/// What a sink does with its batches.
pub trait Deliver {
    /// Something else the sink waits on (the HTTP sinks' finished requests).
    type Event;

    /// The channel its events come on (`crossbeam_channel::never()` if none).
    fn events(&self) -> Receiver<Self::Event>;

    /// Handles one event; false: stop now (the hard stop).
    fn on_event(&mut self, event: Self::Event) -> bool;

    /// Sends a sealed batch (or starts sending it); the batch is reset afterwards. False: stop
    /// now (the hard stop).
    fn deliver(&mut self, batch: &mut Batch) -> bool;

    /// Called once after the last batch: wait for what is still on its way.
    fn finish(&mut self);

    /// When the sink wants `on_poll` called even if nothing comes (the tcp sink, while
    /// batches wait for the receiver's acknowledgement); `None`: never.
    fn poll_at(&self) -> Option<Instant> {
        None
    }

    /// Called once `poll_at` has come; false: stop now (the hard stop).
    fn on_poll(&mut self) -> bool {
        true
    }
}

/// What ended a sink's wait.
enum Woke<E> {
    /// Records, or `None`: the input is closed.
    Records(Option<Arc<Records>>),
    /// An event of the sink, or `None`: it has no more.
    Event(Option<E>),
    /// The linger deadline or the hard stop.
    Time,
}

/// Runs a sink: batches the records of `input` until it is disconnected and the last batch
/// is delivered, or until the hard stop.
pub fn run<D: Deliver>(
    input: &Receiver<Arc<Records>>,
    encoder: &mut Encoder,
    limits: BatchSettings,
    encode: bool,
    hard_stop: &HardStop,
    heartbeat: &Heartbeat,
    sink: &mut D,
) {
    run_loop(input, encoder, Batcher::new(limits, encode), hard_stop, heartbeat, sink);
    heartbeat.finished();
}

/// `run`'s loop; each turn is a beat of the sink's heartbeat, and waiting for records or the
/// sink's events is not a stall.
fn run_loop<D: Deliver>(
    input: &Receiver<Arc<Records>>,
    encoder: &mut Encoder,
    mut b: Batcher,
    hard_stop: &HardStop,
    heartbeat: &Heartbeat,
    sink: &mut D,
) {
    let mut events = sink.events();
    let mut closed = false;
    loop {
        heartbeat.beat();
        if hard_stop.is_set() {
            return;
        }
        let now = Instant::now();
        let last = closed && !b.has_pending();
        if b.ready(now) || (last && b.batch.records > 0) {
            if !sink.deliver(&mut b.batch) {
                return;
            }
            b.batch.reset();
            continue;
        }
        if last {
            sink.finish();
            return;
        }
        if b.has_pending() {
            b.resume(encoder, now);
            continue;
        }
        let poll = sink.poll_at();
        if poll.is_some_and(|p| p <= now) {
            if !sink.on_poll() {
                return;
            }
            continue;
        }
        let wake = match (b.deadline(), poll) {
            (Some(d), Some(p)) => Some(d.min(p)),
            (d, p) => d.or(p),
        };
        let timer = wake.map_or_else(crossbeam_channel::never, crossbeam_channel::at);
        let woke = heartbeat.wait_for(|| {
            select! {
                recv(input) -> r => Woke::Records(r.ok()),
                recv(events) -> e => Woke::Event(e.ok()),
                recv(timer) -> _ => Woke::Time,
                recv(hard_stop.channel()) -> _ => Woke::Time,
            }
        });
        match woke {
            Woke::Records(Some(r)) => b.take(encoder, r, Instant::now()),
            Woke::Records(None) => closed = true,
            Woke::Event(Some(e)) => {
                if !sink.on_event(e) {
                    return;
                }
            }
            Woke::Event(None) => events = crossbeam_channel::never(),
            Woke::Time => {}
        }
    }
}

#[cfg(test)]
mod tests;
