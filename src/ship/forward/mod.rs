//! The forward sink: batches of records sent to a Fluentd / Fluent Bit `in_forward` with the
//! Forward protocol (`crate::forward`). A batch is one PackedForward message (gzip-compressed
//! with `compression = "gzip"`) with a `chunk` id; it is acknowledged to the checkpoint only
//! when the aggregator's `{"ack": chunk}` has come for it and for every batch before it.
//!
//! Threads: the sink thread batches (`ship::batcher`) and writes each batch's entries
//! (`record.rs`); the connection (`conn.rs`) runs on a thread of its own (`forward-NAME`, a
//! small tokio runtime), which writes the chunks, reads the acks, reconnects with backoff and
//! writes every unacknowledged chunk again after a reconnect or a withheld ack
//! (`ack_timeout`): duplicates, never loss. The window of chunks in flight is bounded in
//! bytes (`WINDOW_BYTES`, charged to the in-flight budget) and in chunks. A chunk after which
//! the aggregator closes the connection again and again (`conn::POISON_CLOSES`) is written to
//! the dead-letter file with the reason, so one record the aggregator cannot take does not stop
//! the sink for good.

mod conn;
mod record;

use std::collections::VecDeque;
use std::sync::Arc;

use crossbeam_channel::{select, Receiver};
use tokio::sync::{mpsc, watch};

use self::conn::{Chunk, Conn, Told};
use super::batcher::{self, Batch, Deliver, Part};
use super::deadletter::DeadLetter;
use super::tls;
use super::SinkContext;
use crate::budget::{Budget, BudgetGuard};
use crate::checkpoint::Msg;
use crate::config::{ForwardSettings, SinkKind};
use crate::forward::encode;
use crate::mark::FileMark;
use crate::metrics::{add, Metrics};
use crate::stop::HardStop;

/// Bytes of messages in flight (sent, not yet acknowledged) before the sink waits for acks.
const WINDOW_BYTES: usize = 8 << 20;
/// Chunks in flight at most.
const WINDOW_CHUNKS: usize = 32;

/// A batch between its hand-off and its ack.
struct InFlight {
    seq: u64,
    /// Its records, holding their chunks' budget until the ack.
    _parts: Vec<Part>,
    marks: Vec<FileMark>,
    records: usize,
    /// The batch's NDJSON (for the dead-letter file).
    ndjson: Vec<u8>,
    /// The message's size on the wire.
    wire: usize,
    settled: bool,
    _charge: BudgetGuard,
}

/// Runs a forward sink until the adapt stage is gone and every batch is acknowledged (or the
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
    let SinkKind::Forward(forward) = settings.kind else {
        return;
    };
    let sink = settings.name.clone();
    let tls = match forward.tls.as_ref().map(tls::Connector::new).transpose() {
        Ok(t) => t,
        Err(e) => {
            // Checked at validation; a CA file gone since is the operator's to fix: the lines
            // wait on disk.
            tracing::error!(sink = %sink, error = %e, "forward sink cannot set up TLS; it sends nothing");
            metrics.sinks[index].failed();
            let _ = hard_stop.channel().recv();
            return;
        }
    };
    let (chunks, chunks_rx) = mpsc::unbounded_channel();
    // Unbounded, but at most one message per chunk in the window.
    let (tell, told) = crossbeam_channel::unbounded();
    let (stop, stop_rx) = watch::channel(false);
    let conn = Conn {
        settings: forward.clone(),
        sink: sink.clone(),
        index,
        metrics: Arc::clone(&metrics),
        chunks: chunks_rx,
        tell,
        stop: stop_rx,
        tls,
    };
    let thread = std::thread::Builder::new()
        .name(format!("forward-{sink}"))
        .spawn(
            move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(conn.run()),
                Err(e) => tracing::error!(error = %e, "forward sink: cannot start its runtime"),
            },
        );
    if let Err(e) = thread {
        tracing::error!(sink = %sink, error = %e, "forward sink: cannot start its connection thread");
        return;
    }
    let mut f = ForwardSink {
        dead_letter: DeadLetter::new(&sink, &forward.dead_letter),
        sink,
        index,
        slot,
        prefix: fastrand::u64(..),
        settings: forward,
        chunks: Some(chunks),
        told,
        stop,
        window: VecDeque::new(),
        window_bytes: 0,
        next_seq: 0,
        checkpoints,
        metrics,
        hard_stop: hard_stop.clone(),
        budget,
    };
    let metrics = Arc::clone(&f.metrics);
    let heartbeat = &metrics.sinks[index].heartbeat;
    batcher::run(
        &records,
        &mut encoder,
        settings.batch,
        true,
        &hard_stop,
        heartbeat,
        &mut f,
    );
    f.close();
}

struct ForwardSink {
    sink: String,
    index: usize,
    /// The checkpoint slot its acknowledgements name (`SinkContext::slot`).
    slot: usize,
    /// Chunk ids are this sink's random prefix and the batch number.
    prefix: u64,
    settings: Box<ForwardSettings>,
    chunks: Option<mpsc::UnboundedSender<Chunk>>,
    told: Receiver<Told>,
    stop: watch::Sender<bool>,
    window: VecDeque<InFlight>,
    window_bytes: usize,
    next_seq: u64,
    dead_letter: DeadLetter,
    checkpoints: crossbeam_channel::Sender<Msg>,
    metrics: Arc<Metrics>,
    hard_stop: HardStop,
    budget: Arc<Budget>,
}

impl ForwardSink {
    /// The message of a batch: its records as entries, compressed if configured.
    fn message(&self, parts: &[Part], records: usize, chunk: Option<&str>) -> Vec<u8> {
        let mut entries = Vec::with_capacity(records * 256);
        for p in parts {
            for r in p.records.iter(p.from, p.to) {
                record::entry(&mut entries, &r, self.settings.time_format);
            }
        }
        let entries = if self.settings.gzip {
            encode::gzip(&entries)
        } else {
            entries
        };
        let options = encode::Options {
            size: records as u32,
            chunk,
            gzip: self.settings.gzip,
        };
        encode::packed_forward(&self.settings.tag, &entries, options)
    }

    /// What the connection told; false: stop now.
    fn handle(&mut self, told: Told) -> bool {
        match told {
            Told::Acked(seq) => self.settle(seq, None),
            Told::Refused(seq, why) => self.settle(seq, Some(why)),
        }
        true
    }

    /// Batch `seq` is done (acked, or refused and dead-lettered); acknowledges the settled
    /// batches at the front of the window, in order.
    fn settle(&mut self, seq: u64, refused: Option<String>) {
        let Some(f) = self.window.iter_mut().find(|f| f.seq == seq) else {
            return;
        };
        let m = &self.metrics.sinks[self.index];
        match refused {
            None => {
                m.succeeded();
                add(&m.records_sent, f.records as u64);
                add(&m.batches_sent, 1);
                add(&m.bytes_sent, f.wire as u64);
            }
            Some(why) => match self.dead_letter.write(&f.ndjson) {
                Ok(()) => {
                    add(&m.dead_letter_records, f.records as u64);
                    tracing::error!(sink = %self.sink, records = f.records, file = %self.dead_letter.path().display(), reason = %why, "forward: a batch the server would not take was written to the dead-letter file");
                }
                Err(e) => {
                    // Nowhere to keep it: not acknowledged, so it is read again at the next
                    // start; the sink goes on with the rest.
                    tracing::error!(sink = %self.sink, records = f.records, error = %e, reason = %why, "forward: a batch the server would not take cannot be dead-lettered; it stays unacknowledged");
                    return;
                }
            },
        }
        f.settled = true;
        while self.window.front().is_some_and(|f| f.settled) {
            let Some(f) = self.window.pop_front() else { break };
            self.window_bytes -= f.wire;
            let _ = self.checkpoints.send(Msg::Ack {
                sink: self.slot,
                marks: f.marks,
            });
        }
    }

    /// Waits for one message from the connection; false at the hard stop or when the
    /// connection is gone.
    fn wait_one(&mut self) -> bool {
        select! {
            recv(self.told) -> t => match t {
                Ok(t) => self.handle(t),
                Err(_) => false,
            },
            recv(self.hard_stop.channel()) -> _ => false,
        }
    }

    /// After the last batch, or at the hard stop: the connection stops; what is still
    /// unacknowledged is read again at the next start.
    fn close(mut self) {
        self.chunks = None;
        let _ = self.stop.send(true);
        if !self.window.is_empty() {
            let records: usize = self.window.iter().map(|f| f.records).sum();
            tracing::warn!(sink = %self.sink, records, "forward: stopping with batches not acknowledged; they will be read again at the next start");
        }
    }
}

impl Deliver for ForwardSink {
    type Event = Told;

    fn events(&self) -> Receiver<Told> {
        self.told.clone()
    }

    fn on_event(&mut self, told: Told) -> bool {
        self.handle(told)
    }

    /// Hands the batch to the connection, first waiting (and settling acks) until the window
    /// has room.
    fn deliver(&mut self, batch: &mut Batch) -> bool {
        let metrics = Arc::clone(&self.metrics);
        let heartbeat = &metrics.sinks[self.index].heartbeat;
        while self.window.len() >= WINDOW_CHUNKS || (self.window_bytes >= WINDOW_BYTES && !self.window.is_empty()) {
            if !heartbeat.wait_for(|| self.wait_one()) {
                return false;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let parts = std::mem::take(&mut batch.parts);
        let id = encode::chunk_id(self.prefix, seq);
        let chunk = self.settings.require_ack.then_some(id.as_str());
        let message = self.message(&parts, batch.records, chunk);
        let wire = message.len();
        self.metrics.sinks[self.index]
            .batch_records
            .observe(batch.records as u64);
        self.window.push_back(InFlight {
            seq,
            _parts: parts,
            marks: std::mem::take(&mut batch.marks),
            records: batch.records,
            ndjson: std::mem::take(&mut batch.bytes),
            wire,
            settled: false,
            _charge: self.budget.take(wire),
        });
        self.window_bytes += wire;
        let sent = self.chunks.as_ref().is_some_and(|c| {
            c.send(Chunk {
                seq,
                id,
                message: Arc::new(message),
            })
            .is_ok()
        });
        if !sent {
            tracing::error!(sink = %self.sink, "forward: the connection thread is gone");
            return false;
        }
        true
    }

    /// Waits for every batch to be acknowledged, or the hard stop.
    fn finish(&mut self) {
        while !self.window.is_empty() {
            if !self.wait_one() {
                return;
            }
        }
    }
}
