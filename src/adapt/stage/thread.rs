//! A worker as a thread: its loop over the tailer's chunks, a reload's swaps and the pending
//! events' timeouts, and the hand-off of each batch to the sinks that read its source (apart
//! from `stage.rs`, which is what a worker does with a chunk).

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{select, Receiver, Sender};

use super::Worker;
use crate::chunk::Chunk;
use crate::record::Records;
use crate::stop::HardStop;

/// One sink as a worker sees it: where its records go and which sources it reads.
pub struct Lane {
    pub tx: Sender<Arc<Records>>,
    pub reads_source: Vec<bool>,
}

/// A reload rebuilding sink `index`: from the next batch on, its records go to `tx`. The
/// worker drops the old sender, so the old sink ends (once every worker has switched) after
/// delivering what it was sent; per file, it got the lines before the switch, `tx` gets
/// those after.
pub struct Swap {
    pub index: usize,
    pub tx: Sender<Arc<Records>>,
}

/// Runs one worker until the tailer is gone: every chunk of `input` becomes records for the
/// sinks in `lanes`; pending events are flushed when due and at the end. A `Swap` from a
/// reload is applied between two batches. Returning drops the worker's senders, which is how
/// the sinks learn the stage is done.
pub fn run(
    mut worker: Worker,
    input: Receiver<Arc<Chunk>>,
    mut swaps: Receiver<Swap>,
    mut lanes: Vec<Lane>,
    hard_stop: HardStop,
) {
    loop {
        let turn = match worker.next_due() {
            Some(t) => select! {
                recv(input) -> c => c.map_or(Turn::Done, Turn::Chunk),
                recv(swaps) -> s => Turn::Swap(s.ok()),
                default(t.saturating_duration_since(Instant::now())) => Turn::Due,
            },
            None => select! {
                recv(input) -> c => c.map_or(Turn::Done, Turn::Chunk),
                recv(swaps) -> s => Turn::Swap(s.ok()),
            },
        };
        match turn {
            Turn::Chunk(chunk) => {
                let records = worker.process(chunk);
                send(&lanes, records, &hard_stop);
                for r in worker.cut_over_cap() {
                    send(&lanes, r, &hard_stop);
                }
            }
            Turn::Swap(Some(Swap { index, tx })) => {
                if let Some(lane) = lanes.get_mut(index) {
                    lane.tx = tx;
                }
            }
            // The pipeline is stopping: no more swaps.
            Turn::Swap(None) => swaps = crossbeam_channel::never(),
            Turn::Due => {
                for r in worker.flush_due(Instant::now(), false) {
                    send(&lanes, r, &hard_stop);
                }
            }
            Turn::Done => {
                for r in worker.flush_due(Instant::now(), true) {
                    send(&lanes, r, &hard_stop);
                }
                return;
            }
        }
        if hard_stop.is_set() {
            return;
        }
    }
}

/// What woke a worker up.
enum Turn {
    Chunk(Arc<Chunk>),
    /// A reload's swap; `None` once the pipeline dropped its senders.
    Swap(Option<Swap>),
    /// The next pending event's timeout.
    Due,
    /// The tailer is gone.
    Done,
}

/// Hands `records` to every sink reading their source. A sink's queue is full only while it
/// is stalled; waiting here is the backpressure (the tailer then waits on this worker), but
/// the hard stop must still get through.
fn send(lanes: &[Lane], records: Records, hard_stop: &HardStop) {
    let source = records.context.file.source;
    let records = Arc::new(records);
    for lane in lanes {
        if !lane.reads_source.get(source).copied().unwrap_or(false) {
            continue;
        }
        select! {
            send(lane.tx, Arc::clone(&records)) -> _ => {}
            recv(hard_stop.channel()) -> _ => {}
        }
    }
}
