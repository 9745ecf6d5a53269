//! The sinks: one thread per `[[sinks]]` entry receives the records of the sources it reads
//! from the adapt stage, batches them by `max_events` / `max_bytes` / `linger`, encodes them
//! into its wire format, sends each batch until it succeeds, and then acknowledges the batch's
//! marks to the checkpoint thread.
//!
//! A batch holds the records it came from (and through them their chunks) until it is
//! acknowledged; the chunks' budget guards are what the tailer waits on when a collector is
//! down.

pub mod backoff;
pub mod batcher;
pub mod deadletter;
pub mod elasticsearch;
pub mod encode;
pub mod escape;
pub mod forward;
pub mod http;
pub mod kafka;
pub mod loki;
pub mod otlp;
pub mod output;
pub mod resolve;
pub mod splunk;
pub mod tcp;
pub mod tls;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use self::backoff::Backoff;
use self::batcher::{Batch, Deliver};
use self::encode::Encoder;
use self::output::Output;
use crate::budget::Budget;
use crate::checkpoint::Msg;
use crate::config::SinkSettings;
use crate::metrics::{add, Metrics};
use crate::record::Records;
use crate::stop::HardStop;

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// What a sink thread needs.
pub struct SinkContext {
    /// The sink's place in the config: its metrics.
    pub index: usize,
    /// Its place in the checkpoint's acknowledgements (`Msg::Ack::sink`): the index at start,
    /// a fresh one for a sink a reload rebuilt (so the one it replaces keeps holding the
    /// checkpoint back until it has drained).
    pub slot: usize,
    pub settings: SinkSettings,
    pub encoder: Encoder,
    /// Records from the adapt workers; disconnected when every worker is done.
    pub records: Receiver<Arc<Records>>,
    pub checkpoints: Sender<Msg>,
    pub metrics: Arc<Metrics>,
    /// Set when the shutdown deadline passed: stop retrying, acknowledge nothing more.
    pub hard_stop: HardStop,
    /// The in-flight byte budget: HTTP sinks charge their request bodies to it.
    pub budget: Arc<Budget>,
}

/// Runs the sink until the adapt stage is gone and the last batch is delivered (or the hard
/// stop).
pub fn run(ctx: SinkContext) {
    // HTTP sinks keep several requests in flight: their `Deliver` is in `http`.
    if matches!(ctx.settings.kind, crate::config::SinkKind::Http(_)) {
        return http::run(ctx);
    }
    // So does the kafka sink, through librdkafka's queue: `ship::kafka`.
    if matches!(ctx.settings.kind, crate::config::SinkKind::Kafka(_)) {
        return kafka::run(ctx);
    }
    // The tcp sink keeps a replay window of what the receiver may not have read: `ship::tcp`.
    if matches!(ctx.settings.kind, crate::config::SinkKind::Tcp(_)) {
        return tcp::run(ctx);
    }
    // And the forward sink, through its connection thread: `ship::forward`.
    if matches!(ctx.settings.kind, crate::config::SinkKind::Forward(_)) {
        return forward::run(ctx);
    }
    let SinkContext {
        index,
        slot,
        settings,
        mut encoder,
        records,
        checkpoints,
        metrics,
        hard_stop,
        budget: _,
    } = ctx;
    metrics.sinks[index].up.store(1, Ordering::Relaxed);
    let mut sink = ByteSink {
        index,
        slot,
        name: settings.name.clone(),
        output: Output::new(&settings.kind),
        backoff: Backoff::new(RETRY_MIN, RETRY_MAX),
        checkpoints,
        metrics,
        hard_stop: hard_stop.clone(),
    };
    let metrics = Arc::clone(&sink.metrics);
    let heartbeat = &metrics.sinks[index].heartbeat;
    batcher::run(
        &records,
        &mut encoder,
        settings.batch,
        true,
        &hard_stop,
        heartbeat,
        &mut sink,
    );
}

/// A stdout or file sink: a batch is delivered once its bytes are written, retried with
/// backoff until they are.
struct ByteSink {
    index: usize,
    slot: usize,
    name: String,
    output: Output,
    backoff: Backoff,
    checkpoints: Sender<Msg>,
    metrics: Arc<Metrics>,
    hard_stop: HardStop,
}

impl Deliver for ByteSink {
    type Event = ();

    fn events(&self) -> Receiver<()> {
        crossbeam_channel::never()
    }

    fn on_event(&mut self, (): ()) -> bool {
        true
    }

    fn deliver(&mut self, batch: &mut Batch) -> bool {
        let m = &self.metrics.sinks[self.index];
        let mut failures = 0u64;
        while let Err(e) = self.output.write(&batch.bytes) {
            m.failed();
            if self.hard_stop.is_set() {
                tracing::warn!(sink = %self.name, error = %e, records = batch.records, "giving up at the shutdown deadline; these lines will be read again at the next start");
                return false;
            }
            if failures == 0 {
                tracing::warn!(sink = %self.name, error = %e, "send failed; retrying");
            }
            failures += 1;
            add(&m.retries, 1);
            // The next attempt, unless the hard stop comes first (seen above). Each attempt
            // is progress; waiting for a collector that is down is not a stall (`liveness`).
            m.heartbeat.wait_for(|| self.hard_stop.sleep(self.backoff.next_delay()));
        }
        if failures > 0 {
            tracing::info!(sink = %self.name, failures, "sink recovered");
        }
        self.backoff.reset();
        m.succeeded();
        add(&m.records_sent, batch.records as u64);
        add(&m.batches_sent, 1);
        add(&m.bytes_sent, batch.bytes.len() as u64);
        let marks = std::mem::take(&mut batch.marks);
        let _ = self.checkpoints.send(Msg::Ack { sink: self.slot, marks });
        true
    }

    fn finish(&mut self) {}
}
