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

use crate::adapt::stage::{self, Lane, SourcePlan, Swap, Worker};
use crate::budget::Budget;
use crate::checkpoint::{self, Checkpointer};
use crate::config::{Api, Encoding, Settings, SinkKind, SinkSettings};
use crate::input;
use crate::metrics::{InputMetrics, Metrics};
use crate::record::Buffers;
use crate::ship::encode::{self, Encoder, Shape};
use crate::ship::{self, SinkContext};
use crate::status::Board;
use crate::stop::{self, HardStop, Trigger};
use crate::tail::{self, TailContext};

/// Rendering buffers kept for reuse (`record::Buffers`).
const RENDERING_BUFFERS: usize = 4;
/// Record batches queued per sink: each holds a chunk and its table, so the byte budget, not
/// this count, is what bounds memory.
const SINK_QUEUE: usize = 1024;
/// Chunks queued per adapt worker. Few: a chunk's table (often two or three times its size) is
/// charged to the budget only once a worker has made it, so chunks waiting here are memory the
/// budget does not see yet; a short queue keeps that to a few reads.
const ADAPT_QUEUE: usize = 4;
/// More adapt workers than this would only add threads: parsing runs at hundreds of MB/s a core.
const MAX_ADAPT_WORKERS: usize = 8;
const CHECKPOINT_QUEUE: usize = 4096;
/// A reload's swaps queued per adapt worker: one per rebuilt sink.
const SWAP_QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::Error),
    #[error(transparent)]
    Input(#[from] input::Error),
    #[error("start thread {name}: {source}")]
    Spawn { name: String, source: std::io::Error },
}

/// How long the threads get to return once the hard stop fired.
const HARD_STOP_GRACE: Duration = Duration::from_secs(5);

/// The threads started so far, and the channel their ends disconnect.
struct Threads {
    handles: Vec<JoinHandle<()>>,
    finished: Sender<()>,
}

impl Threads {
    fn spawn(&mut self, name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), Error> {
        let finished = self.finished.clone();
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                f();
                drop(finished);
            })
            .map_err(|source| Error::Spawn {
                name: name.to_owned(),
                source,
            })?;
        self.handles.push(handle);
        Ok(())
    }
}

/// For each source, the sinks that read it.
fn sinks_of_sources(settings: &Settings) -> Vec<Vec<usize>> {
    (0..settings.sources.len())
        .map(|s| {
            settings
                .sinks
                .iter()
                .enumerate()
                .filter(|(_, k)| k.inputs.contains(&s))
                .map(|(i, _)| i)
                .collect()
        })
        .collect()
}

/// Whether a sink writes the NDJSON text `ship::encode` makes into its batches (so a second
/// such sink of a source can copy the first one's rendering).
pub fn writes_ndjson(sink: &SinkSettings) -> bool {
    sink.encoding == Encoding::Ndjson
        && match &sink.kind {
            SinkKind::Http(h) => h.api == Api::Plain,
            _ => true,
        }
}

/// For each source, the shape its NDJSON is rendered in once for every sink of that shape
/// (`record::Rendering`): the shape of the first sink that writes it as NDJSON.
fn rendered_shapes(settings: &Settings) -> Vec<Option<Arc<Shape>>> {
    (0..settings.sources.len())
        .map(|s| {
            let first = settings
                .sinks
                .iter()
                .find(|k| k.inputs.contains(&s) && writes_ndjson(k));
            first.map(|k| Arc::clone(&k.shape))
        })
        .collect()
}

/// For each source, whether at least `n` sinks write its records as NDJSON in `shape`, the
/// shape it is rendered in.
fn ndjson_sources(settings: &Settings, shape: &Shape, n: usize) -> Arc<[bool]> {
    let rendered = rendered_shapes(settings);
    (0..settings.sources.len())
        .map(|s| {
            let same = settings
                .sinks
                .iter()
                .filter(|k| k.inputs.contains(&s) && writes_ndjson(k) && *k.shape == *shape)
                .count();
            rendered[s].as_deref() == Some(shape) && same >= n
        })
        .collect()
}

/// What every sink thread is handed besides its own settings: kept by the pipeline so that a
/// reload can start a sink again (`Pipeline::replace_sinks`).
struct Kit {
    budget: Arc<Budget>,
    buffers: Arc<Buffers>,
    checkpoints: Sender<checkpoint::Msg>,
    metrics: Arc<Metrics>,
    hard_stop: HardStop,
}

/// A running sink as the pipeline tracks it.
struct RunningSink {
    /// The checkpoint slot it acknowledges as (`SinkContext::slot`).
    slot: usize,
    /// Disconnected when its thread has returned.
    ended: Receiver<()>,
}

/// Starts the thread of sink `index` of `settings`, acknowledging as checkpoint `slot`;
/// returns its lane (where its records go, which sources it reads). A sink replacing another
/// (`after`: the old one's `ended`) waits for it to return before it delivers anything, so a
/// collector gets a file's records in order across the handover; its queue holds what comes
/// meanwhile.
fn spawn_sink(
    settings: &Settings,
    index: usize,
    slot: usize,
    after: Option<Receiver<()>>,
    kit: &Kit,
    threads: &mut Threads,
) -> Result<(Lane, RunningSink), Error> {
    let sink = &settings.sinks[index];
    let shared = encode::Shared {
        sources: ndjson_sources(settings, &sink.shape, 2),
        budget: Arc::clone(&kit.budget),
        buffers: Arc::clone(&kit.buffers),
    };
    let (tx, rx) = crossbeam_channel::bounded(SINK_QUEUE);
    let lane = Lane {
        tx,
        reads_source: (0..settings.sources.len()).map(|s| sink.inputs.contains(&s)).collect(),
    };
    let ctx = SinkContext {
        index,
        slot,
        settings: sink.clone(),
        encoder: if writes_ndjson(sink) {
            Encoder::sharing(sink.encoding, shared).with_shape(Arc::clone(&sink.shape))
        } else {
            Encoder::new(sink.encoding)
        },
        records: rx,
        checkpoints: kit.checkpoints.clone(),
        metrics: Arc::clone(&kit.metrics),
        hard_stop: kit.hard_stop.clone(),
        budget: Arc::clone(&kit.budget),
    };
    let (ended_tx, ended) = crossbeam_channel::bounded::<()>(0);
    threads.spawn(&format!("sink-{}", sink.name), move || {
        if let Some(before) = after {
            crossbeam_channel::select! {
                recv(before) -> _ => {}
                recv(ctx.hard_stop.channel()) -> _ => {}
            }
        }
        ship::run(ctx);
        drop(ended_tx);
    })?;
    Ok((lane, RunningSink { slot, ended }))
}

/// Starts a thread per sink, each acknowledging as the slot of its index; returns where each
/// one's records go, and which sources it reads.
fn start_sinks(settings: &Settings, kit: &Kit, threads: &mut Threads) -> Result<(Vec<Lane>, Vec<RunningSink>), Error> {
    let mut lanes = Vec::new();
    let mut running = Vec::new();
    for index in 0..settings.sinks.len() {
        let (lane, sink) = spawn_sink(settings, index, index, None, kit, threads)?;
        lanes.push(lane);
        running.push(sink);
    }
    Ok((lanes, running))
}

/// The tailer's lanes to the adapt workers, and the workers' channels for a reload's swaps.
type AdaptLanes = (Vec<Sender<Arc<crate::chunk::Chunk>>>, Vec<Sender<Swap>>);

/// Starts the adapt workers, one per core (at least one), each with its own copy of the sinks'
/// lanes; returns the lanes the tailer sends chunks on and the workers' swap channels. Only
/// the workers hold the sinks' senders afterwards, so the sinks end when the workers do.
fn start_adapt(settings: &Settings, sinks: Vec<Lane>, kit: &Kit, threads: &mut Threads) -> Result<AdaptLanes, Error> {
    let (budget, buffers, metrics) = (&kit.budget, &kit.buffers, &kit.metrics);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_ADAPT_WORKERS);
    let plans: Arc<[SourcePlan]> = settings.sources.iter().map(SourcePlan::from).collect();
    let (mut lanes, mut swaps) = (Vec::new(), Vec::new());
    for w in 0..workers {
        let (tx, rx) = crossbeam_channel::bounded(ADAPT_QUEUE);
        lanes.push(tx);
        let (swap_tx, swap_rx) = crossbeam_channel::bounded(SWAP_QUEUE);
        swaps.push(swap_tx);
        // Parsed records are rendered as NDJSON on the worker for the sources a sink writes
        // that way (`Encoder::prerender`), in the shape of the source's first such sink: one
        // encoder per shape, each rendering the sources rendered in its shape.
        let mut shapes: Vec<Arc<Shape>> = Vec::new();
        for s in rendered_shapes(settings).into_iter().flatten() {
            if !shapes.iter().any(|k| **k == *s) {
                shapes.push(s);
            }
        }
        let mut renderers: Vec<Encoder> = shapes
            .into_iter()
            .map(|shape| {
                let shared = encode::Shared {
                    sources: ndjson_sources(settings, &shape, 1),
                    budget: Arc::clone(budget),
                    buffers: Arc::clone(buffers),
                };
                Encoder::sharing(Encoding::Ndjson, shared).with_shape(shape)
            })
            .collect();
        let worker = Worker::new(
            Arc::clone(&plans),
            &settings.resource,
            Arc::clone(budget),
            Arc::clone(metrics),
        )
        .with_prerender(Box::new(move |r| renderers.iter_mut().find_map(|e| e.prerender(r))));
        let outputs = sinks
            .iter()
            .map(|l| Lane {
                tx: l.tx.clone(),
                reads_source: l.reads_source.clone(),
            })
            .collect();
        let hard = kit.hard_stop.clone();
        threads.spawn(&format!("adapt-{w}"), move || {
            stage::run(worker, rx, swap_rx, outputs, hard)
        })?;
    }
    Ok((lanes, swaps))
}

/// A running pipeline.
pub struct Pipeline {
    pub metrics: Arc<Metrics>,
    stop_tx: Option<Sender<()>>,
    /// Dropped to stop the network inputs.
    inputs_stop: Option<tokio::sync::watch::Sender<()>>,
    hard_stop: Trigger,
    threads: Vec<JoinHandle<()>>,
    /// Disconnected once every thread has returned: each holds a sender until it ends.
    finished: Receiver<()>,
    shutdown_timeout: Duration,
    /// What rebuilding a sink needs; dropped first at a stop (it holds senders the stages
    /// wait to see disconnected).
    rebuild: Option<Rebuild>,
}

/// What `Pipeline::replace_sinks` needs.
struct Rebuild {
    kit: Kit,
    /// For the threads it starts (`Threads::finished`).
    finished: Sender<()>,
    /// Per adapt worker, where a reload's swaps go.
    swaps: Vec<Sender<Swap>>,
    /// Per sink, in config order.
    sinks: Vec<RunningSink>,
    /// The next checkpoint slot not used yet.
    next_slot: usize,
}

/// The pipeline's metrics: a family per source, sink, transform and input, and the status
/// board, as `settings` name them.
fn metrics_for(settings: &Settings, budget: &Arc<Budget>) -> Arc<Metrics> {
    let source_names: Vec<String> = settings.sources.iter().map(|s| s.name.clone()).collect();
    let sink_names: Vec<String> = settings.sinks.iter().map(|s| s.name.clone()).collect();
    let mut metrics = Metrics::new(&source_names, &sink_names, Arc::clone(budget));
    metrics.per_file = settings.metrics_per_file;
    // A top-level transform is in the list of every source it names: one series each.
    let mut drops: Vec<crate::metrics::DropCounter> = Vec::new();
    for c in settings.sources.iter().flat_map(|s| s.transforms.counters()) {
        if !drops.iter().any(|d| d.transform == c.transform) {
            drops.push(c);
        }
    }
    metrics.transform_drops = drops;
    let formats = settings
        .sources
        .iter()
        .map(|s| (s.name.clone(), s.format.name().to_owned()));
    let kinds = settings
        .sinks
        .iter()
        .map(|s| (s.name.clone(), s.kind.type_name().to_owned()));
    metrics.board = Board::new(&settings.data_dir, formats.collect(), kinds.collect());
    metrics.stall_timeout = Some(settings.stall_timeout);
    metrics.inputs = (settings.sources.iter())
        .filter(|s| s.input.is_some())
        .map(|s| InputMetrics::new(&s.name))
        .collect();
    Arc::new(metrics)
}

impl Pipeline {
    /// Loads the checkpoints and starts every thread.
    pub fn start(settings: Settings) -> Result<Pipeline, Error> {
        let saved = checkpoint::load(&settings.data_dir)?;
        let budget = Budget::new(settings.max_inflight_bytes);
        let metrics = metrics_for(&settings, &budget);
        let (trigger, hard_stop) = stop::hard_stop();
        // One message at most: `stop_for_reload`'s, before the disconnection.
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let (cp_tx, cp_rx) = crossbeam_channel::bounded(CHECKPOINT_QUEUE);
        // Nothing is sent on it: each thread's sender is dropped when the thread returns.
        let (finished_tx, finished) = crossbeam_channel::bounded::<()>(0);
        let mut threads = Threads {
            handles: Vec::new(),
            finished: finished_tx,
        };
        let checkpointer = Checkpointer::new(
            settings.data_dir.clone(),
            saved.clone().unwrap_or_default(),
            sinks_of_sources(&settings),
            settings.sinks.len(),
            settings.checkpoint_grace,
            Arc::clone(&metrics),
            checkpoint::Cadence::default(),
        );
        threads.spawn("checkpoint", move || checkpoint::run(checkpointer, cp_rx))?;
        // Renderings' buffers kept for reuse. Idle ones are memory outside the budget (each
        // about three reads' worth), so only a few: enough that a busy stream reuses its
        // buffers instead of faulting fresh pages in for every chunk.
        let kit = Kit {
            budget: Arc::clone(&budget),
            buffers: Buffers::new(RENDERING_BUFFERS),
            checkpoints: cp_tx.clone(),
            metrics: Arc::clone(&metrics),
            hard_stop: hard_stop.clone(),
        };
        let (sinks, running) = start_sinks(&settings, &kit, &mut threads)?;
        let (lanes, swaps) = start_adapt(&settings, sinks, &kit, &mut threads)?;
        // The inputs' spools are opened (a crash's half-written line cut off) before the
        // tailer reads them.
        let (inputs_stop, inputs_stopping) = tokio::sync::watch::channel(());
        for prepared in input::prepare(&settings, &metrics)? {
            let stop = inputs_stopping.clone();
            threads.spawn(&format!("input-{}", prepared.name), move || prepared.run(stop))?;
        }
        let shutdown_timeout = settings.shutdown_timeout;
        let rebuild = Rebuild {
            kit,
            finished: threads.finished.clone(),
            swaps,
            next_slot: running.len(),
            sinks: running,
        };
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
        threads.spawn("tail", move || tail::run(ctx))?;
        Ok(Pipeline {
            metrics,
            stop_tx: Some(stop_tx),
            inputs_stop: Some(inputs_stop),
            hard_stop: trigger,
            threads: threads.handles,
            finished,
            shutdown_timeout,
            rebuild: Some(rebuild),
        })
    }

    /// Rebuilds the sinks at `changed` (indexes into `settings.sinks`: the new config, equal
    /// to the running one but for those sinks' settings, `reload::diff`) while the tailer, the
    /// adapt workers and the other sinks keep running. For each: the new sink starts, the
    /// checkpoint gives it a slot of its own, every adapt worker switches to it between two
    /// batches, and the old one delivers what it was sent and returns; until it has, its slot
    /// holds the checkpoint back and the new one only queues. Returns false if an old sink did not finish within
    /// `shutdown_timeout` (its collector is down, say): the caller then stops and starts the
    /// whole pipeline, which resumes from a checkpoint the old sink still held back.
    pub fn replace_sinks(&mut self, settings: &Settings, changed: &[usize]) -> Result<bool, Error> {
        let Some(r) = self.rebuild.as_mut() else {
            return Ok(false);
        };
        let mut threads = Threads {
            handles: Vec::new(),
            finished: r.finished.clone(),
        };
        let mut retiring = Vec::new();
        for &index in changed {
            let slot = r.next_slot;
            r.next_slot += 1;
            // Started first: it is sent nothing before the swaps, so a failure here leaves
            // everything as it was.
            let before = r.sinks[index].ended.clone();
            let (lane, sink) = spawn_sink(settings, index, slot, Some(before), &r.kit, &mut threads)?;
            let old = std::mem::replace(&mut r.sinks[index], sink);
            // Before the swaps, so the slot exists when the new sink's first ack comes.
            let _ = r.kit.checkpoints.send(checkpoint::Msg::SinkReplacing {
                old: old.slot,
                new: slot,
            });
            for worker in &r.swaps {
                let _ = worker.send(Swap {
                    index,
                    tx: lane.tx.clone(),
                });
            }
            retiring.push((old, slot));
        }
        self.threads.append(&mut threads.handles);
        let deadline = Instant::now() + self.shutdown_timeout;
        for (old, new) in retiring {
            if !matches!(old.ended.recv_deadline(deadline), Err(RecvTimeoutError::Disconnected)) {
                return Ok(false);
            }
            let _ = r
                .kit
                .checkpoints
                .send(checkpoint::Msg::SinkReplaced { old: old.slot, new });
        }
        Ok(true)
    }

    /// `stop` before a new pipeline takes over (a reload): the same drain, but an unterminated
    /// last line is left for the new pipeline to read whole instead of being shipped now.
    pub fn stop_for_reload(self) -> bool {
        if let Some(tx) = &self.stop_tx {
            let _ = tx.try_send(());
        }
        self.stop()
    }

    /// Graceful stop: drain, deliver, checkpoint; cut short at `shutdown_timeout`. Returns
    /// true if everything finished in time.
    pub fn stop(mut self) -> bool {
        self.metrics.stopping.store(true, Ordering::Relaxed);
        drop(self.rebuild.take());
        drop(self.inputs_stop.take());
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
        // Every waiting thread also waits on the hard stop; one stuck where it cannot see it
        // (a syscall that never returns) is left behind, and ends with the process.
        let all_ended = in_time
            || !matches!(
                self.finished.recv_deadline(Instant::now() + HARD_STOP_GRACE),
                Err(RecvTimeoutError::Timeout)
            );
        for t in std::mem::take(&mut self.threads) {
            if all_ended || t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!(thread = t.thread().name().unwrap_or("?"), grace = ?HARD_STOP_GRACE, "a thread did not stop at the hard stop; exiting without it");
            }
        }
        in_time
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::*;

    fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
        let until = Instant::now() + deadline;
        while !cond() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn settings(dir: &Path) -> Settings {
        let text = format!(
            "data_dir = \"{d}/data\"\n[metrics]\nenabled = false\n[[sources]]\nname = \"app\"\ninclude = [\"{d}/logs/*.log\"]\nformat = \"logfmt\"\n[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = \"{d}/out.ndjson\"\nbatch = {{ linger_ms = 10 }}\n",
            d = dir.display()
        );
        Settings::from_toml(&dir.join("t.toml"), &text, &|_| None).unwrap()
    }

    #[test]
    fn lines_go_through_every_stage_and_the_checkpoint_follows() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let log = dir.path().join("logs/a.log");
        std::fs::write(&log, "level=info msg=one\nlevel=warn msg=two\n").unwrap();
        let p = Pipeline::start(settings(dir.path())).unwrap();
        let out = dir.path().join("out.ndjson");
        let read = || std::fs::read_to_string(&out).unwrap_or_default();
        wait_for("two records", Duration::from_secs(20), || read().lines().count() >= 2);
        let recs: Vec<serde_json::Value> = read().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            (recs[0]["message"].as_str(), recs[1]["level"].as_str()),
            (Some("one"), Some("warn"))
        );
        assert!(p.stop(), "stopped in time");
        let saved = checkpoint::load(&dir.path().join("data")).unwrap().unwrap();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].at.offset, std::fs::metadata(&log).unwrap().len());
    }

    #[test]
    fn a_stop_that_cannot_finish_fires_the_hard_stop_and_returns() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        std::fs::write(dir.path().join("logs/a.log"), "level=info msg=one\n").unwrap();
        let mut s = settings(dir.path());
        // A sink that can never write (its path is a directory) and no time to wait.
        std::fs::create_dir_all(dir.path().join("blocked")).unwrap();
        s.sinks[0].kind = crate::config::SinkKind::File {
            path: dir.path().join("blocked"),
        };
        s.shutdown_timeout = Duration::from_millis(300);
        let p = Pipeline::start(s).unwrap();
        wait_for("the line read", Duration::from_secs(20), || {
            p.metrics.lines_read.load(Ordering::Relaxed) >= 1
        });
        let t = Instant::now();
        assert!(!p.stop(), "not in time");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let saved = checkpoint::load(&dir.path().join("data")).unwrap().unwrap_or_default();
        assert!(
            saved.iter().all(|e| e.at.offset == 0),
            "nothing was delivered: {saved:?}"
        );
    }
}
