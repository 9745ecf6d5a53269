//! Wires the stages together; the only module that knows the topology.
//!
//! ```text
//! tailer ──Arc<Chunk>──▶ sink 0 ──acks──▶ checkpoint thread ──▶ data_dir/checkpoints.json
//!        └─────────────▶ sink 1 ──acks──┘
//! ```
//!
//! Shutdown flows downstream with the data: `stop()` ends the tailer's discovery; it drains
//! what is on disk and returns, dropping its senders; each sink delivers its last batch and
//! returns; when every sender is gone the checkpoint thread writes once more and returns.
//! If that takes longer than `shutdown_timeout`, the hard stop cuts it short: unacknowledged
//! lines are then read again at the next start (at-least-once).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::budget::Budget;
use crate::checkpoint::{self, Checkpointer};
use crate::config::{Encoding, Settings};
use crate::metrics::Metrics;
use crate::ship::encode::{Encoder, SourcePlan};
use crate::ship::{self, SinkContext};
use crate::tail::{self, SinkPort, TailContext};

/// Chunks queued per sink; the byte budget, not this count, is what bounds memory.
const SINK_QUEUE: usize = 1024;
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
    hard_stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
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
        let hard_stop = Arc::new(AtomicBool::new(false));
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let (cp_tx, cp_rx) = crossbeam_channel::bounded(CHECKPOINT_QUEUE);
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(f)
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

        let plans = settings.sources.iter().map(SourcePlan::from).collect::<Vec<_>>();
        let mut ports = Vec::new();
        for (index, sink) in settings.sinks.iter().enumerate() {
            let (tx, rx) = crossbeam_channel::bounded(SINK_QUEUE);
            ports.push(SinkPort {
                tx,
                reads_source: (0..settings.sources.len()).map(|s| sink.inputs.contains(&s)).collect(),
            });
            // Per-line quality counters (invalid UTF-8, parse errors) are counted by one sink
            // per source, so two sinks do not count one line twice: the first NDJSON sink
            // (a raw sink never parses), else the first sink.
            let counts_source: Vec<bool> = sinks_of_source
                .iter()
                .map(|readers| {
                    let ndjson = readers
                        .iter()
                        .find(|&&k| settings.sinks[k].encoding == Encoding::Ndjson);
                    ndjson.or(readers.first()) == Some(&index)
                })
                .collect();
            let ctx = SinkContext {
                index,
                settings: sink.clone(),
                encoder: Encoder::new(sink.encoding, plans.clone(), &settings.resource),
                counts_source,
                chunks: rx,
                checkpoints: cp_tx.clone(),
                metrics: Arc::clone(&metrics),
                hard_stop: Arc::clone(&hard_stop),
            };
            threads.push(spawn(&format!("sink-{}", sink.name), Box::new(move || ship::run(ctx)))?);
        }

        let shutdown_timeout = settings.shutdown_timeout;
        let ctx = TailContext {
            settings,
            saved,
            sinks: ports,
            checkpoints: cp_tx,
            budget,
            metrics: Arc::clone(&metrics),
            shutdown: stop_rx,
            hard_stop: Arc::clone(&hard_stop),
        };
        threads.push(spawn("tail", Box::new(move || tail::run(ctx)))?);

        Ok(Pipeline {
            metrics,
            stop_tx: Some(stop_tx),
            hard_stop,
            threads,
            shutdown_timeout,
        })
    }

    /// Graceful stop: drain, deliver, checkpoint; cut short at `shutdown_timeout`. Returns
    /// true if everything finished in time.
    pub fn stop(mut self) -> bool {
        self.metrics.stopping.store(true, Ordering::Relaxed);
        drop(self.stop_tx.take());
        let deadline = Instant::now() + self.shutdown_timeout;
        let mut in_time = true;
        for t in std::mem::take(&mut self.threads) {
            while !t.is_finished() {
                if in_time && Instant::now() >= deadline {
                    in_time = false;
                    tracing::warn!(timeout = ?self.shutdown_timeout, "shutdown did not finish in time; unacknowledged lines will be read again at the next start");
                    self.hard_stop.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = t.join();
        }
        in_time
    }
}
