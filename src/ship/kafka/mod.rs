//! The kafka sink: batches of records produced to Kafka through librdkafka (`producer`), one
//! message per record (`message`), acknowledged to the checkpoint only once the brokers have
//! every record of the batch and of the batches before it.
//!
//! Threads: the sink thread batches and encodes like every sink (`ship::batcher`), then hands
//! each record of a sealed batch to librdkafka's queue; librdkafka's own threads send them
//! (its linger and batch size make the produce requests, compressed as configured) and its
//! polling thread runs the delivery reports, which count down the batch's `Acks`; the last one
//! sends the batch's number back here. The window holds the batches handed over and not yet
//! acknowledged; they are acknowledged **in batch order**, so a file's checkpoint never passes a
//! record the brokers do not have.
//!
//! Delivery: `acks = all` and the idempotent producer, so librdkafka's own retries never write
//! a record twice or out of order; messages never time out, so a broker outage is waited out
//! however long it lasts (the files are the buffer). A record the brokers refuse for good
//! (`producer::permanent`: too large, unknown or forbidden topic, …) goes to the dead-letter
//! file with the reason logged. Any other failure a delivery report brings (rare: librdkafka
//! retries those itself; the producer's fatal idempotence errors, after which it is made anew)
//! sends the record again after a backoff — then after records of later batches of its
//! partition, and possibly twice: the `id` header tells the copies apart.
//!
//! Memory: a batch keeps its records (and their chunks' budget) until it is acknowledged, and
//! the copy librdkafka keeps of its messages is charged to the same budget
//! (`max_inflight_bytes`); the window holds at most `WINDOW` batches. A `kill -9` sends again
//! what was in the window, plus what was acknowledged in the checkpoint's last milliseconds.

pub mod message;
pub mod producer;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{select, Receiver, Sender};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer as _;

use self::message::{Item, Messages};
use self::producer::{fatal, permanent, Acks, KafkaProducer, Pending};
use super::backoff::Backoff;
use super::batcher::{self, Batch, Deliver, Part};
use super::deadletter::DeadLetter;
use super::SinkContext;
use crate::budget::{Budget, BudgetGuard};
use crate::checkpoint::Msg;
use crate::config::{BatchSettings, Encoding, KafkaSettings, SinkKind};
use crate::mark::FileMark;
use crate::metrics::{add, KafkaMetrics, Metrics, SinkMetrics};
use crate::stop::HardStop;

/// Batches handed to librdkafka and not yet acknowledged. Enough to keep the brokers busy
/// while earlier batches' acknowledgements come back; the byte budget bounds them too.
const WINDOW: usize = 16;
/// How long to wait for room when librdkafka's queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long to wait before trying again to make a producer that could not be made.
const REBUILD_WAIT: Duration = Duration::from_secs(5);

/// A batch between its hand-off and its acknowledgement.
struct InFlight {
    seq: u64,
    /// Its records, holding their chunks' budget until the ack.
    parts: Vec<Part>,
    items: Vec<Item>,
    marks: Vec<FileMark>,
    /// Bytes the batch counted against `max_bytes` (for `bytes_sent`).
    size: usize,
    /// The delivery reports due for what was sent last (all items, or the ones sent again).
    acks: Arc<Acks>,
    /// Items written to the dead-letter file.
    dead: usize,
    settled: bool,
    /// librdkafka's copy of the messages, charged to the budget until the ack.
    _charge: BudgetGuard,
}

/// Runs a kafka sink until the adapt stage is gone and every batch is acknowledged (or the
/// hard stop).
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
    let SinkKind::Kafka(kafka) = settings.kind else {
        return;
    };
    let sink = settings.name.clone();
    // Unbounded, but each batch in the window sends one number per time it is sent, and the
    // window holds at most `WINDOW` batches.
    let (tell, told) = crossbeam_channel::unbounded();
    let Some(producer) = built(&sink, index, &kafka, &settings.batch, &metrics, &tell, &hard_stop) else {
        return;
    };
    let m = &metrics.sinks[index];
    m.kafka.start();
    m.up.store(1, Ordering::Relaxed);
    let raw = settings.encoding == Encoding::Raw;
    let mut k = KafkaSink {
        messages: Messages::new(kafka.topic.clone(), kafka.key.clone(), raw),
        dead_letter: DeadLetter::new(&sink, &kafka.dead_letter),
        sink,
        index,
        slot,
        kafka,
        batch: settings.batch,
        raw,
        producer,
        tell,
        told,
        window: VecDeque::new(),
        next_seq: 0,
        backoff: Backoff::new(RETRY_MIN, RETRY_MAX),
        checkpoints,
        metrics,
        hard_stop: hard_stop.clone(),
        budget,
    };
    let metrics = Arc::clone(&k.metrics);
    let heartbeat = &metrics.sinks[index].heartbeat;
    batcher::run(
        &records,
        &mut encoder,
        settings.batch,
        true,
        &hard_stop,
        heartbeat,
        &mut k,
    );
    k.close();
}

/// The sink's producer. Its settings were checked at validation; if one went bad since (a
/// password file gone), keep trying (logged): the lines wait on disk. `None` at the hard stop.
fn built(
    sink: &str,
    index: usize,
    kafka: &KafkaSettings,
    batch: &BatchSettings,
    metrics: &Arc<Metrics>,
    tell: &Sender<u64>,
    hard_stop: &HardStop,
) -> Option<KafkaProducer> {
    loop {
        match producer::build(sink, index, kafka, batch, metrics, tell.clone()) {
            Ok(p) => return Some(p),
            Err(e) => {
                tracing::error!(error = %e, "kafka sink cannot make its producer; retrying in 5s");
                if hard_stop.sleep(REBUILD_WAIT) {
                    return None;
                }
            }
        }
    }
}

struct KafkaSink {
    sink: String,
    index: usize,
    /// The checkpoint slot its acknowledgements name (`SinkContext::slot`).
    slot: usize,
    kafka: Box<KafkaSettings>,
    batch: BatchSettings,
    raw: bool,
    producer: KafkaProducer,
    messages: Messages,
    tell: Sender<u64>,
    told: Receiver<u64>,
    /// Batches handed off and not yet acknowledged, in order.
    window: VecDeque<InFlight>,
    next_seq: u64,
    backoff: Backoff,
    dead_letter: DeadLetter,
    checkpoints: Sender<Msg>,
    metrics: Arc<Metrics>,
    hard_stop: HardStop,
    budget: Arc<Budget>,
}

/// What sending a batch's items needs besides the items.
struct Sending<'a> {
    producer: &'a KafkaProducer,
    messages: &'a mut Messages,
    acks: &'a Arc<Acks>,
    tell: &'a Sender<u64>,
    metrics: &'a KafkaMetrics,
    hard_stop: &'a HardStop,
}

impl Sending<'_> {
    /// Hands items to librdkafka: `which` (item numbers, in order), or all of them. `values`:
    /// the batch's NDJSON lines, one per item, for a first send of all items. A record refused
    /// at once (too large) is settled as failed here. False: the hard stop came while waiting
    /// for room in librdkafka's queue.
    fn send(self, parts: &[Part], items: &[Item], which: Option<&[u32]>, values: Option<&[u8]>) -> bool {
        let n = which.map_or(items.len(), <[u32]>::len);
        let mut line_start = 0;
        for j in 0..n {
            let i = which.map_or(j as u32, |w| w[j]);
            let value = values.and_then(|b| {
                let end = line_start + memchr::memchr(b'\n', b.get(line_start..)?)?;
                let v = &b[line_start..end];
                line_start = end + 1;
                Some(v)
            });
            let pending = Box::new(Pending {
                acks: Arc::clone(self.acks),
                item: i,
            });
            let Some(mut msg) = self.messages.message(parts, items[i as usize], value, pending) else {
                // Items are made from these parts: cannot happen. Settled as refused, so the
                // batch is never stuck waiting for it.
                let e = KafkaError::MessageProduction(RDKafkaErrorCode::InvalidMessage);
                self.acks.done(i, Some(e), self.tell);
                continue;
            };
            loop {
                match self.producer.send(msg) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        msg = back;
                        if self.hard_stop.sleep(QUEUE_FULL_WAIT) {
                            return false;
                        }
                    }
                    Err((e, back)) => {
                        drop(back);
                        self.metrics.error(&producer::kind(&e));
                        self.acks.done(i, Some(e), self.tell);
                        break;
                    }
                }
            }
        }
        true
    }
}

impl KafkaSink {
    fn m(&self) -> &SinkMetrics {
        &self.metrics.sinks[self.index]
    }

    fn gauge_queue(&self) {
        let n = self.producer.in_flight_count().max(0) as u64;
        self.m().kafka.queue_messages.store(n, Ordering::Relaxed);
    }

    /// Batch `seq` has all its delivery reports: dead-letter what was refused for good, send
    /// again what failed otherwise, else acknowledge it (and the settled batches after it)
    /// once every earlier batch is. False: the hard stop.
    fn settle(&mut self, seq: u64) -> bool {
        let Some(w) = self.window.iter().position(|f| f.seq == seq) else {
            return true;
        };
        let failed = self.window[w].acks.take_failed();
        let (refused, mut again): (Vec<_>, Vec<_>) = failed.into_iter().partition(|(_, e)| permanent(e));
        if !refused.is_empty() {
            again.extend(self.dead_letter_items(w, refused));
        }
        if !again.is_empty() {
            return self.send_again(w, again);
        }
        self.backoff.reset();
        let m = &self.metrics.sinks[self.index];
        let f = &mut self.window[w];
        f.settled = true;
        m.succeeded();
        add(&m.records_sent, (f.items.len() - f.dead) as u64);
        add(&m.batches_sent, 1);
        add(&m.bytes_sent, f.size as u64);
        while self.window.front().is_some_and(|f| f.settled) {
            let Some(f) = self.window.pop_front() else { break };
            let _ = self.checkpoints.send(Msg::Ack {
                sink: self.slot,
                marks: f.marks,
            });
        }
        self.gauge_queue();
        true
    }

    /// Writes refused items of window batch `w` to the dead-letter file; returns them back if
    /// the file cannot be written (they are then sent again, and refused again, until it can).
    fn dead_letter_items(&mut self, w: usize, refused: Vec<(u32, KafkaError)>) -> Vec<(u32, KafkaError)> {
        let f = &mut self.window[w];
        let mut lines = Vec::new();
        for (i, _) in &refused {
            self.messages
                .dead_letter_line(&f.parts, f.items[*i as usize], &mut lines);
        }
        let why = &refused[0].1;
        match self.dead_letter.write(&lines) {
            Ok(()) => {
                f.dead += refused.len();
                let m = &self.metrics.sinks[self.index];
                add(&m.dead_letter_records, refused.len() as u64);
                tracing::error!(sink = %self.sink, records = refused.len(), file = %self.dead_letter.path().display(), "the brokers refused records for good ({why}); they were written to the dead-letter file");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(sink = %self.sink, error = %e, "the brokers refused records for good ({why}); cannot write the dead-letter file, will send them again");
                refused
            }
        }
    }

    /// Sends the items `again` of window batch `w` again after a backoff, with a new producer
    /// if the old one failed for good. False: the hard stop.
    fn send_again(&mut self, w: usize, again: Vec<(u32, KafkaError)>) -> bool {
        let m = &self.metrics.sinks[self.index];
        add(&m.retries, 1);
        m.failed();
        let first = &again[0].1;
        tracing::warn!(sink = %self.sink, records = again.len(), error = %first, "kafka delivery failed; sending these records again");
        if again.iter().any(|(_, e)| fatal(e)) || self.producer.client().fatal_error().is_some() {
            tracing::warn!(sink = %self.sink, "the kafka producer failed for good; making a new one (records in flight may arrive twice: see the id header)");
            let Some(p) = built(
                &self.sink,
                self.index,
                &self.kafka,
                &self.batch,
                &self.metrics,
                &self.tell,
                &self.hard_stop,
            ) else {
                return false;
            };
            self.producer = p;
        }
        if self.hard_stop.sleep(self.backoff.next_delay()) {
            return false;
        }
        let mut which: Vec<u32> = again.iter().map(|(i, _)| *i).collect();
        which.sort_unstable();
        let f = &mut self.window[w];
        f.acks = Acks::new(f.seq, which.len());
        let sending = Sending {
            producer: &self.producer,
            messages: &mut self.messages,
            acks: &f.acks,
            tell: &self.tell,
            metrics: &self.metrics.sinks[self.index].kafka,
            hard_stop: &self.hard_stop,
        };
        sending.send(&f.parts, &f.items, Some(&which), None)
    }

    /// After the last batch, or at the hard stop: what is still unacknowledged is read again
    /// at the next start. Dropping the producer purges its queue.
    fn close(self) {
        if !self.window.is_empty() {
            let records: usize = self.window.iter().map(|f| f.items.len()).sum();
            tracing::warn!(sink = %self.sink, records, "giving up at the shutdown deadline; these lines will be read again at the next start");
        }
    }
}

impl Deliver for KafkaSink {
    type Event = u64;

    fn events(&self) -> Receiver<u64> {
        self.told.clone()
    }

    fn on_event(&mut self, seq: u64) -> bool {
        self.settle(seq)
    }

    /// Hands the batch's records to librdkafka, first waiting (and settling what is
    /// acknowledged) until the window has room.
    fn deliver(&mut self, batch: &mut Batch) -> bool {
        while self.window.len() >= WINDOW {
            select! {
                recv(self.told) -> s => {
                    if !s.is_ok_and(|s| self.settle(s)) {
                        return false;
                    }
                }
                recv(self.hard_stop.channel()) -> _ => return false,
            }
        }
        let parts = std::mem::take(&mut batch.parts);
        let mut items = Vec::with_capacity(batch.records);
        message::items(&parts, self.raw, &mut items);
        let seq = self.next_seq;
        self.next_seq += 1;
        let acks = Acks::new(seq, items.len());
        self.m().batch_records.observe(items.len() as u64);
        let sending = Sending {
            producer: &self.producer,
            messages: &mut self.messages,
            acks: &acks,
            tell: &self.tell,
            metrics: &self.metrics.sinks[self.index].kafka,
            hard_stop: &self.hard_stop,
        };
        let values = (!self.raw).then_some(&batch.bytes[..]);
        let sent = sending.send(&parts, &items, None, values);
        if items.is_empty() {
            let _ = self.tell.send(seq);
        }
        self.window.push_back(InFlight {
            seq,
            parts,
            items,
            marks: std::mem::take(&mut batch.marks),
            size: batch.size(),
            acks,
            dead: 0,
            settled: false,
            _charge: self.budget.take(batch.bytes.len()),
        });
        self.gauge_queue();
        sent
    }

    /// Waits for every batch to be acknowledged, or the hard stop.
    fn finish(&mut self) {
        while !self.window.is_empty() {
            select! {
                recv(self.told) -> s => {
                    if !s.is_ok_and(|s| self.settle(s)) {
                        return;
                    }
                }
                recv(self.hard_stop.channel()) -> _ => return,
            }
        }
    }
}
