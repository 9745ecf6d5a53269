//! Wires the stages together; the only module that knows the topology.
//!
//! ```text
//!                              ┌──Arc<Records>──▶ sink 0 ──acks──┐
//! tailer ──Arc<Chunk>──▶ adapt worker 0..n ─(transform)─┤        ├──▶ checkpoint thread
//!   (a file's chunks always go to one worker)  └──────────────▶ sink 1 ──acks──┘      │
//!                                                             data_dir/checkpoints.json
//! ```
//!
//! Shutdown flows downstream with the data: `stop()` ends the tailer's discovery; it drains
//! what is on disk and returns, dropping its senders; each adapt worker flushes the events it
//! was joining and returns; each sink delivers its last batch and returns; when every sender
//! is gone the checkpoint thread writes once more and returns.
//! If that takes longer than `shutdown_timeout`, the hard stop cuts it short: unacknowledged
//! lines are then read again at the next start (at-least-once).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::adapt::stage::{self, Lane, SourcePlan, Worker};
use crate::budget::Budget;
use crate::checkpoint::{self, Checkpointer};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::ship::encode::Encoder;
use crate::ship::{self, SinkContext};
use crate::stop::{self, Trigger};
use crate::tail::{self, TailContext};

/// Record batches queued per sink, and chunks per adapt worker: each holds a chunk, so the
/// byte budget, not these counts, is what bounds memory.
const SINK_QUEUE: usize = 1024;
const ADAPT_QUEUE: usize = 1024;
/// More adapt workers than this would only add threads: parsing runs at hundreds of MB/s a core.
const MAX_ADAPT_WORKERS: usize = 8;
const CHECKPOINT_QUEUE: usize = 4096;
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::Error),
    #[error("start thread {name}: {source}")]
    Spawn { name: String, source: std::io::Error },
}

/// A running pipeline.
pub struct Pipeline {
    pub metrics: Arc<Metrics>,
    stop_tx: Option<Sender<()>>,
    hard_stop: Trigger,
    threads: Vec<JoinHandle<()>>,
    /// Disconnected once every thread has returned: each holds a sender until it ends.
    finished: Receiver<()>,
    shutdown_timeout: Duration,
}

impl Pipeline {
    /// Loads the checkpoints and starts every thread.
    pub fn start(settings: Settings) -> Result<Pipeline, Error> {
        let saved = checkpoint::load(&settings.data_dir)?;
        let source_names: Vec<String> = settings.sources.iter().map(|s| s.name.clone()).collect();
        let sink_names: Vec<String> = settings.sinks.iter().map(|s| s.name.clone()).collect();
        let budget = Budget::new(settings.max_inflight_bytes);
        let metrics = Arc::new(Metrics::new(&source_names, &sink_names, Arc::clone(&budget)));
        let (trigger, hard_stop) = stop::hard_stop();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let (cp_tx, cp_rx) = crossbeam_channel::bounded(CHECKPOINT_QUEUE);
        // Nothing is sent on it: each thread's sender is dropped when the thread returns.
        let (finished_tx, finished) = crossbeam_channel::bounded::<()>(0);
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            let finished = finished_tx.clone();
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || {
                    f();
                    drop(finished);
                })
                .map_err(|source| Error::Spawn {
                    name: name.to_owned(),
                    source,
                })
        };

        let sinks_of_source: Vec<Vec<usize>> = (0..settings.sources.len())
            .map(|s| {
                settings
                    .sinks
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| k.inputs.contains(&s))
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        let checkpointer = Checkpointer::new(
            settings.data_dir.clone(),
            saved.clone().unwrap_or_default(),
            sinks_of_source.clone(),
            settings.sinks.len(),
            settings.checkpoint_grace,
            Arc::clone(&metrics),
        );
        threads.push(spawn(
            "checkpoint",
            Box::new(move || checkpoint::run(checkpointer, cp_rx, CHECKPOINT_INTERVAL)),
        )?);

        // The adapt workers: one per core (at least one), none more than the files could use.
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_ADAPT_WORKERS);
        let plans: Arc<[SourcePlan]> = settings.sources.iter().map(SourcePlan::from).collect();
        let mut sink_txs = Vec::new();
        for (index, sink) in settings.sinks.iter().enumerate() {
            let (tx, rx) = crossbeam_channel::bounded(SINK_QUEUE);
            sink_txs.push((
                tx,
                (0..settings.sources.len())
                    .map(|s| sink.inputs.contains(&s))
                    .collect::<Vec<_>>(),
            ));
            let ctx = SinkContext {
                index,
                settings: sink.clone(),
                encoder: Encoder::new(sink.encoding),
                records: rx,
                checkpoints: cp_tx.clone(),
                metrics: Arc::clone(&metrics),
                hard_stop: hard_stop.clone(),
            };
            threads.push(spawn(&format!("sink-{}", sink.name), Box::new(move || ship::run(ctx)))?);
        }
        let mut lanes = Vec::new();
        for w in 0..workers {
            let (tx, rx) = crossbeam_channel::bounded(ADAPT_QUEUE);
            lanes.push(tx);
            let worker = Worker::new(Arc::clone(&plans), &settings.resource, Arc::clone(&metrics));
            let outputs = sink_txs
                .iter()
                .map(|(tx, reads_source)| Lane {
                    tx: tx.clone(),
                    reads_source: reads_source.clone(),
                })
                .collect();
            let hard = hard_stop.clone();
            threads.push(spawn(
                &format!("adapt-{w}"),
                Box::new(move || stage::run(worker, rx, outputs, hard)),
            )?);
        }
        // Only the workers hold the sinks' senders now: the sinks end when the workers do.
        drop(sink_txs);

        let shutdown_timeout = settings.shutdown_timeout;
        let ctx = TailContext {
            settings,
            saved,
            lanes,
            checkpoints: cp_tx,
            budget,
            metrics: Arc::clone(&metrics),
            shutdown: stop_rx,
            hard_stop: hard_stop.clone(),
        };
        threads.push(spawn("tail", Box::new(move || tail::run(ctx)))?);
        drop(finished_tx);

        Ok(Pipeline {
            metrics,
            stop_tx: Some(stop_tx),
            hard_stop: trigger,
            threads,
            finished,
            shutdown_timeout,
        })
    }

    /// Graceful stop: drain, deliver, checkpoint; cut short at `shutdown_timeout`. Returns
    /// true if everything finished in time.
    pub fn stop(mut self) -> bool {
        self.metrics.stopping.store(true, Ordering::Relaxed);
        drop(self.stop_tx.take());
        let deadline = Instant::now() + self.shutdown_timeout;
        let in_time = match self.finished.recv_deadline(deadline) {
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!(timeout = ?self.shutdown_timeout, "shutdown did not finish in time; unacknowledged lines will be read again at the next start");
                self.hard_stop.fire();
                false
            }
            _ => true,
        };
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
        in_time
    }
}
