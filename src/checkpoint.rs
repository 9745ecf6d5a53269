//! Checkpoints: per file, the offset up to which every sink has acknowledged the lines.
//!
//! One thread owns the state (`run`), fed by one channel: the tailer registers files and their
//! identity, the sinks send acknowledgements. A file's committed offset is the minimum over the
//! sinks that read its source, so a line is never skipped after a restart unless every sink
//! has it. Within tens of milliseconds of an acknowledgement (see `Cadence`) the state is
//! overwritten in place in `data_dir/checkpoints.live` (`inplace.rs`: one `pwrite`, a length and
//! a hash), and `checkpoints.json` is replaced atomically (temp file, rename) at least once a
//! second while it lags: a `kill -9` keeps the page cache, so only what was not yet acknowledged
//! is sent again. Durability against a power cut costs an fsync, which is paid on a slower
//! cadence and at the end.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::{Deserialize, Serialize};

mod cadence;
mod file;
mod inplace;

pub use self::cadence::Cadence;
use self::cadence::{Writes, COST_PER_BYTE, MAX_GAP};
use self::file::{body, store_body, sync, unix_now};
pub use self::file::{load, peek, store, PeekError};
use self::inplace::InPlace;
use crate::mark::{FileMark, Mark};
use crate::metrics::{add, Metrics};

pub const FILE_NAME: &str = "checkpoints.json";
/// A registered file is in the written checkpoint within this long (docs/rotation.md).
const REGISTER_WRITE_DELAY: Duration = Duration::from_millis(40);
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("create data_dir {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("write checkpoint {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("data_dir {path} is not writable: {source}")]
    NotWritable { path: PathBuf, source: io::Error },
}

/// One file generation's saved state, as stored on disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// Key of the entry (unique per file generation; not meaningful outside this file).
    pub uid: u64,
    pub source: String,
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    pub fp_len: u32,
    pub fp_hash: u64,
    /// Bumped when the file is truncated in place, so record ids of the new content differ.
    pub generation: u32,
    /// Seed of the record ids; absent until the first line was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_seed: Option<u64>,
    /// Every sink has acknowledged the bytes before this mark (stored as flat keys).
    #[serde(flatten)]
    pub at: Mark,
    /// Unix seconds when the entry last changed or its file was last seen.
    pub updated: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    files: Vec<Entry>,
}

/// What the tailer and the sinks tell the checkpoint thread.
#[derive(Debug)]
pub enum Msg {
    /// The tailer started (or resumed) a file generation; `entry.offset` is where it starts.
    /// Replaces any other entry for the same (dev, ino): the older generation is over.
    Register { entry: Entry, source_idx: usize },
    /// The file's identity grew (fingerprint, id seed) or its path changed (rename).
    Update {
        uid: u64,
        path: String,
        fp_len: u32,
        fp_hash: u64,
        id_seed: Option<u64>,
    },
    /// The tailer closed the file for good (rotated away and drained, or deleted).
    Closed { uid: u64 },
    /// A sink delivered everything up to these marks.
    Ack { sink: usize, marks: Vec<FileMark> },
    /// The copy `to` (copytruncate's `app.log.1`) continues generation `from` from offset
    /// `at`, where the tailer had read `from` when its file was truncated. Until every sink
    /// has acknowledged `from` up to `at`, `from`'s acknowledged marks (valid in the copy,
    /// which holds the same bytes) are `to`'s checkpoint: a `kill -9` before those
    /// acknowledgements come reads the copy again from them, not from `at`.
    Continues { from: u64, to: u64, at: u64 },
    /// A reload rebuilds the sink acknowledging as `old`; its successor acknowledges as `new`
    /// (a slot not used before) and reads what `old` read. Sent before the successor gets
    /// its first batch, so its slot exists when its first acknowledgement comes; it starts at
    /// the committed mark, below anything it will be sent.
    SinkReplacing { old: usize, new: usize },
    /// The sink of slot `old` has returned, every batch it was sent delivered and
    /// acknowledged: it stops holding the checkpoint back. Per file, it was sent the lines
    /// before the adapt worker switched to `new` and `new` the lines after, so `new` takes
    /// over `old`'s mark where it is further (an idle file's checkpoint does not fall behind
    /// what `old` delivered).
    SinkReplaced { old: usize, new: usize },
}

/// Live state of one entry: the stored form plus what each sink has acknowledged.
struct Live {
    entry: Entry,
    /// Per sink: the acknowledged mark; `None` for sinks that do not read this file's source.
    acked: Vec<Option<Mark>>,
    closed_at: Option<Instant>,
    /// Loaded from disk and not yet claimed by the tailer in this run.
    unclaimed_since: Option<Instant>,
    /// A copy still waiting for the generation it continues (`Msg::Continues`).
    behind: Option<Behind>,
}

/// The generation a copy continues, while some sink has not acknowledged it up to `until`.
struct Behind {
    /// Per sink, its acknowledged mark (as `Live::acked`).
    acked: Vec<Option<Mark>>,
    until: u64,
}

pub struct Checkpointer {
    data_dir: PathBuf,
    /// For each source index, the sinks that read it.
    sinks_of_source: Vec<Vec<usize>>,
    sink_count: usize,
    grace: Duration,
    files: HashMap<u64, Live>,
    /// A generation replaced by a truncation → the copy that continues it (`Msg::Continues`).
    continued: HashMap<u64, u64>,
    dirty: bool,
    metrics: Arc<Metrics>,
    writes: Writes,
    /// Asks the sync thread for an fsync (see `run`); `None`: fsync here.
    sync_tx: Option<Sender<()>>,
    /// The in-place copy, written at every write; `None` once a write to it failed (then
    /// `checkpoints.json` is replaced at every write, as it is without one).
    inplace: Option<InPlace>,
    /// Since when `checkpoints.json` lags what the in-place copy holds.
    json_behind: Option<Instant>,
}

impl Checkpointer {
    pub fn new(
        data_dir: PathBuf,
        loaded: Vec<Entry>,
        sinks_of_source: Vec<Vec<usize>>,
        sink_count: usize,
        grace: Duration,
        metrics: Arc<Metrics>,
        cadence: Cadence,
    ) -> Checkpointer {
        let now = Instant::now();
        let files = loaded
            .into_iter()
            .map(|entry| {
                (
                    entry.uid,
                    Live {
                        entry,
                        acked: Vec::new(),
                        closed_at: None,
                        unclaimed_since: Some(now),
                        behind: None,
                    },
                )
            })
            .collect();
        Checkpointer {
            sinks_of_source,
            sink_count,
            grace,
            files,
            continued: HashMap::new(),
            dirty: false,
            metrics,
            writes: Writes {
                cadence,
                gap: cadence.coalesce,
                last_write: now.checked_sub(cadence.coalesce).unwrap_or(now),
                last_sync: now,
                unsynced: false,
                failing: false,
                last_gc: now,
                register_due: None,
                credit: cadence.burst,
                credited: now,
            },
            sync_tx: None,
            inplace: InPlace::open(&data_dir)
                .map_err(|e| tracing::warn!(data_dir = %data_dir.display(), error = %e, "cannot open the in-place checkpoint; replacing checkpoints.json at every write"))
                .ok(),
            data_dir,
            json_behind: None,
        }
    }

    /// An acknowledgement for `from`, a generation the copy `to` continues; true if the
    /// copy's checkpoint moved. Once every sink is past where the copy starts, the copy is on
    /// its own.
    fn ack_behind(&mut self, from: u64, to: u64, sink: usize, mark: Mark) -> bool {
        let Some(copy) = self.files.get_mut(&to) else {
            self.continued.remove(&from);
            return false;
        };
        let Some(b) = copy.behind.as_mut() else {
            self.continued.remove(&from);
            return false;
        };
        if let Some(Some(slot)) = b.acked.get_mut(sink) {
            if mark.offset > slot.offset {
                *slot = mark;
            }
        }
        let until = b.until;
        if b.acked.iter().flatten().all(|m| m.offset >= until) {
            copy.behind = None;
            self.continued.remove(&from);
        }
        recommit(copy)
    }

    pub fn apply(&mut self, msg: Msg) {
        match msg {
            Msg::Register { mut entry, source_idx } => {
                // A new file must be on disk soon whatever the pace of acknowledgements: if it
                // is renamed away while the agent is down, the next start finds it only
                // through its entry.
                let due = Instant::now() + REGISTER_WRITE_DELAY;
                self.writes.register_due = Some(self.writes.register_due.map_or(due, |d| d.min(due)));
                self.files
                    .retain(|uid, l| *uid == entry.uid || (l.entry.dev, l.entry.ino) != (entry.dev, entry.ino));
                entry.updated = unix_now();
                let readers = self.sinks_of_source.get(source_idx).cloned().unwrap_or_default();
                let acked = (0..self.sink_count)
                    .map(|s| readers.contains(&s).then_some(entry.at))
                    .collect();
                self.files.insert(
                    entry.uid,
                    Live {
                        entry,
                        acked,
                        closed_at: None,
                        unclaimed_since: None,
                        behind: None,
                    },
                );
                self.dirty = true;
            }
            Msg::Update {
                uid,
                path,
                fp_len,
                fp_hash,
                id_seed,
            } => {
                if let Some(l) = self.files.get_mut(&uid) {
                    l.entry.path = path;
                    l.entry.fp_len = fp_len;
                    l.entry.fp_hash = fp_hash;
                    if id_seed.is_some() {
                        l.entry.id_seed = id_seed;
                    }
                    l.entry.updated = unix_now();
                    self.dirty = true;
                }
            }
            Msg::Closed { uid } => {
                if let Some(l) = self.files.get_mut(&uid) {
                    l.closed_at = Some(Instant::now());
                }
            }
            Msg::Ack { sink, marks } => {
                for FileMark { uid, mark } in marks {
                    if let Some(&to) = self.continued.get(&uid) {
                        self.dirty |= self.ack_behind(uid, to, sink, mark);
                    }
                    // Acks for a generation replaced by a truncation find no entry: ignore.
                    let Some(l) = self.files.get_mut(&uid) else { continue };
                    let Some(Some(slot)) = l.acked.get_mut(sink) else {
                        continue;
                    };
                    if mark.offset > slot.offset {
                        *slot = mark;
                        self.dirty |= recommit(l);
                    }
                }
            }
            Msg::Continues { from, to, at } => {
                let acked = self.files.get(&from).map(|l| l.acked.clone());
                if let (Some(acked), Some(copy)) = (acked, self.files.get_mut(&to)) {
                    copy.behind = Some(Behind { acked, until: at });
                    self.continued.insert(from, to);
                    self.dirty |= recommit(copy);
                }
            }
            Msg::SinkReplacing { old, new } => {
                self.sink_count = self.sink_count.max(new + 1);
                for readers in &mut self.sinks_of_source {
                    if readers.contains(&old) {
                        readers.push(new);
                    }
                }
                for l in self.files.values_mut() {
                    let reads = l.acked.get(old).is_some_and(Option::is_some);
                    l.acked.resize(self.sink_count, None);
                    if reads {
                        l.acked[new] = Some(l.entry.at);
                    }
                }
            }
            Msg::SinkReplaced { old, new } => {
                for readers in &mut self.sinks_of_source {
                    readers.retain(|&s| s != old);
                }
                for l in self.files.values_mut() {
                    let Some(done) = l.acked.get_mut(old).and_then(Option::take) else {
                        continue;
                    };
                    if let Some(Some(next)) = l.acked.get_mut(new) {
                        if done.offset > next.offset {
                            *next = done;
                        }
                    }
                    self.dirty |= recommit(l);
                }
            }
        }
    }

    /// Drops entries of files closed, or never seen in this run, for longer than the grace.
    fn collect_garbage(&mut self) {
        let grace = self.grace;
        let before = self.files.len();
        self.files.retain(|_, l| {
            let gone_since = l.closed_at.or(l.unclaimed_since);
            gone_since.is_none_or(|t| t.elapsed() < grace)
        });
        if self.files.len() != before {
            self.dirty = true;
        }
    }

    /// When `tick` has something to do next: a pending write, an fsync, or (idle) the next
    /// garbage collection.
    fn next_due(&self, now: Instant) -> Instant {
        let w = &self.writes;
        let due = if self.dirty {
            let next = w.next_write();
            w.register_due.map_or(next, |d| d.min(next)).max(now)
        } else if w.unsynced {
            w.last_sync + w.cadence.sync
        } else {
            now + IDLE_TICK
        };
        self.json_behind.map_or(due, |t| due.min(t + w.cadence.json))
    }

    /// Writes what changed once the gap since the last write has passed (durably when the
    /// sync interval is over), or fsyncs the last write when it is due.
    fn tick(&mut self, now: Instant) {
        if now >= self.writes.last_gc + IDLE_TICK {
            self.writes.last_gc = now;
            self.collect_garbage();
        }
        self.writes.refill(now);
        let registered = self.writes.register_due.is_some_and(|d| now >= d);
        if (self.dirty && (registered || now >= self.writes.next_write())) || self.json_due(now) {
            self.writes.credit -= 1.0;
            self.writes.register_due = None;
            self.write(false);
        }
        let w = &mut self.writes;
        if w.unsynced && now >= w.last_sync + w.cadence.sync {
            w.unsynced = false;
            w.last_sync = now;
            match &self.sync_tx {
                // Full: a sync is pending, which will cover this write too.
                Some(tx) => drop(tx.try_send(())),
                None => {
                    let result = sync(&self.data_dir);
                    self.wrote(result, true, Duration::ZERO);
                }
            }
        }
    }

    /// Writes the checkpoint file if anything changed, durably (at the end of a run).
    pub fn flush(&mut self) {
        self.collect_garbage();
        if self.dirty || self.json_behind.is_some() {
            self.write(true);
        } else if self.writes.unsynced {
            let result = sync(&self.data_dir);
            self.wrote(result, true, Duration::ZERO);
        }
    }

    /// Whether `checkpoints.json` has lagged the in-place copy for `Cadence::json`.
    fn json_due(&self, now: Instant) -> bool {
        self.json_behind.is_some_and(|t| now >= t + self.writes.cadence.json)
    }

    /// Overwrites the in-place copy, and replaces `checkpoints.json` when `durable`, when it has
    /// lagged the copy for `Cadence::json`, or without a copy.
    fn write(&mut self, durable: bool) {
        let mut entries: Vec<Entry> = self.files.values().map(|l| l.entry.clone()).collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path).then(a.uid.cmp(&b.uid)));
        let now = Instant::now();
        let result = body(&self.data_dir, &entries).and_then(|body| {
                let mut json = durable || self.json_due(now);
                // Unchanged since the last write (`checkpoints.json` catching up): the copy
                // already holds this body.
                let changed = self.dirty || durable;
                match self.inplace.as_mut().filter(|_| changed).map(|c| c.write(&body, durable)) {
                    Some(Ok(())) => {}
                    Some(Err(e)) => {
                        tracing::error!(data_dir = %self.data_dir.display(), error = %e, "in-place checkpoint write failed; replacing checkpoints.json at every write from now on");
                        if let Some(c) = self.inplace.take() {
                            c.discard();
                        }
                        json = true;
                    }
                    // No copy (or nothing new for it, and then `checkpoints.json` is due).
                    None => json = true,
                }
                if json {
                    store_body(&self.data_dir, &body, durable)?;
                    self.json_behind = None;
                } else {
                    self.json_behind.get_or_insert(now);
                }
                Ok(body.len())
            });
        let cost = match &result {
            Ok(len) => {
                self.dirty = false;
                add(&self.metrics.checkpoint_writes, 1);
                COST_PER_BYTE * (*len as u32)
            }
            Err(_) => Duration::ZERO,
        };
        self.wrote(result.map(drop), durable, cost);
    }

    /// Books a write or sync: the next gap (ten times the write's estimated CPU cost, at
    /// least `coalesce`), the failure state (`/readyz`, the error count). On failure `dirty`
    /// stays set and the next try comes after `retry`; the previous file stays valid meanwhile.
    fn wrote(&mut self, result: Result<(), Error>, durable: bool, cost: Duration) {
        let now = Instant::now();
        let w = &mut self.writes;
        w.last_write = now;
        match result {
            Ok(()) => {
                if !durable {
                    w.gap = (cost * 10).clamp(w.cadence.coalesce, MAX_GAP);
                }
                if durable {
                    w.last_sync = now;
                    w.unsynced = false;
                } else {
                    w.unsynced = true;
                }
                if w.failing {
                    w.failing = false;
                    self.metrics.checkpoint_failing.store(false, Ordering::Relaxed);
                    tracing::info!(data_dir = %self.data_dir.display(), "checkpoint writes work again");
                }
            }
            Err(e) => {
                w.gap = w.cadence.retry;
                add(&self.metrics.checkpoint_errors, 1);
                if !w.failing {
                    w.failing = true;
                    self.metrics.checkpoint_failing.store(true, Ordering::Relaxed);
                    tracing::error!(error = %e, "checkpoint write failed; not ready until it works again (retrying every {:?})", w.cadence.retry);
                } else {
                    tracing::debug!(error = %e, "checkpoint write failed again");
                }
            }
        }
    }

    /// The committed state, for tests and diagnostics.
    pub fn entries(&self) -> Vec<Entry> {
        self.files.values().map(|l| l.entry.clone()).collect()
    }
}

/// Idle, the thread still wakes this often to forget files gone longer than the grace.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Moves a file's committed mark to the lowest one its sinks acknowledged; true if it moved.
fn recommit(l: &mut Live) -> bool {
    let behind = |s: usize| {
        let b = l.behind.as_ref()?;
        b.acked.get(s).copied().flatten().filter(|m| m.offset < b.until)
    };
    let committed = l
        .acked
        .iter()
        .enumerate()
        .filter_map(|(s, a)| a.map(|a| behind(s).unwrap_or(a)))
        .min_by_key(|a| a.offset);
    match committed {
        Some(at) if at.offset != l.entry.at.offset => {
            l.entry.at = at;
            l.entry.updated = unix_now();
            true
        }
        _ => false,
    }
}

/// The checkpoint thread: applies messages until every sender is gone (the tailer and all
/// sinks have finished), writing as `Cadence` says, then writes a last time, durably. The
/// fsyncs run on a thread of their own (`checkpoint-sync`): one can take tens of milliseconds
/// on a busy disk, and the writes that follow acknowledgements must not wait for it.
pub fn run(mut cp: Checkpointer, rx: Receiver<Msg>) {
    std::thread::scope(|scope| {
        let (sync_tx, sync_rx) = crossbeam_channel::bounded::<()>(1);
        let (dir, metrics) = (cp.data_dir.clone(), Arc::clone(&cp.metrics));
        let spawned = std::thread::Builder::new()
            .name("checkpoint-sync".into())
            .spawn_scoped(scope, move || sync_thread(&dir, &sync_rx, &metrics));
        match spawned {
            Ok(_) => cp.sync_tx = Some(sync_tx),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the checkpoint sync thread; syncing on the checkpoint thread")
            }
        }
        loop {
            match rx.recv_deadline(cp.next_due(Instant::now())) {
                Ok(msg) => {
                    cp.apply(msg);
                    // Whatever is queued already goes into the same write.
                    for msg in rx.try_iter().take(CHECKPOINT_BATCH) {
                        cp.apply(msg);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            cp.tick(Instant::now());
        }
        // Ends the sync thread; the last write is durable on its own.
        cp.sync_tx = None;
        cp.flush();
    });
}

/// Fsyncs the checkpoint file and `data_dir` whenever asked, until the sender is gone. A
/// failure is counted and logged (once until a sync works again); the next one tries again.
fn sync_thread(data_dir: &Path, asks: &Receiver<()>, metrics: &Metrics) {
    let mut failing = false;
    for () in asks {
        match sync(data_dir) {
            Ok(()) => {
                if failing {
                    tracing::info!(data_dir = %data_dir.display(), "checkpoint fsync works again");
                }
                failing = false;
            }
            Err(e) => {
                add(&metrics.checkpoint_errors, 1);
                if !failing {
                    tracing::error!(error = %e, "checkpoint fsync failed; a power cut could cost more than the sync interval");
                }
                failing = true;
            }
        }
    }
}

/// Messages applied before the next write is considered, so a flood cannot starve the writes.
const CHECKPOINT_BATCH: usize = 4096;

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn entry(uid: u64, ino: u64, offset: u64) -> Entry {
        Entry {
            uid,
            source: "app".into(),
            path: format!("/log/{uid}"),
            dev: 1,
            ino,
            fp_len: 0,
            fp_hash: 0,
            generation: 0,
            id_seed: None,
            at: Mark {
                offset,
                ..Mark::default()
            },
            updated: 0,
        }
    }

    /// A checkpointer in `dir` whose one source is read by `sinks` sinks (a 60 s grace).
    fn with_sinks(dir: &Path, loaded: Vec<Entry>, sinks: usize, metrics: Arc<Metrics>) -> Checkpointer {
        Checkpointer::new(
            dir.into(),
            loaded,
            vec![(0..sinks).collect()],
            sinks,
            Duration::from_secs(60),
            metrics,
            Cadence::default(),
        )
    }

    fn mark(uid: u64, offset: u64) -> FileMark {
        FileMark {
            uid,
            mark: Mark {
                offset,
                validator_len: 1,
                validator: offset,
            },
        }
    }

    #[test]
    fn committed_offset_is_the_minimum_over_reading_sinks() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        // Source 0 is read by sinks 0 and 1; source 1 only by sink 1.
        let mut cp = Checkpointer::new(
            dir.path().into(),
            vec![],
            vec![vec![0, 1], vec![1]],
            2,
            Duration::from_secs(60),
            metrics,
            Cadence::default(),
        );
        cp.apply(Msg::Register {
            entry: entry(7, 70, 0),
            source_idx: 0,
        });
        cp.apply(Msg::Register {
            entry: entry(8, 80, 0),
            source_idx: 1,
        });
        cp.apply(Msg::Ack {
            sink: 0,
            marks: vec![mark(7, 100)],
        });
        assert_eq!(cp.files[&7].entry.at.offset, 0);
        cp.apply(Msg::Ack {
            sink: 1,
            marks: vec![mark(7, 50), mark(8, 30)],
        });
        assert_eq!(cp.files[&7].entry.at.offset, 50);
        assert_eq!(cp.files[&8].entry.at.offset, 30);
        cp.flush();
        let loaded = load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.len(), 2);
        let text = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(
            text.contains("\"offset\":50,\"validator_len\":1,\"validator\":50"),
            "flat keys on disk: {text}"
        );
        assert!(loaded
            .iter()
            .any(|e| e.uid == 7 && e.at.offset == 50 && e.at.validator == 50));
    }

    #[test]
    fn a_copytruncate_copy_starts_from_what_the_old_generation_had_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut cp = with_sinks(dir.path(), vec![], 1, Arc::new(Metrics::default()));
        let ack = |cp: &mut Checkpointer, uid, offset| {
            cp.apply(Msg::Ack {
                sink: 0,
                marks: vec![mark(uid, offset)],
            })
        };
        // The live file (uid 1, inode 10), read to 500, acknowledged to 200, is truncated;
        // its copy (uid 2, inode 20) is registered where the reading was, then the live
        // file's new generation (uid 3, same inode) replaces uid 1's entry.
        cp.apply(Msg::Register {
            entry: entry(1, 10, 0),
            source_idx: 0,
        });
        ack(&mut cp, 1, 200);
        cp.apply(Msg::Register {
            entry: entry(2, 20, 500),
            source_idx: 0,
        });
        cp.apply(Msg::Continues {
            from: 1,
            to: 2,
            at: 500,
        });
        cp.apply(Msg::Register {
            entry: entry(3, 10, 0),
            source_idx: 0,
        });
        assert!(!cp.files.contains_key(&1));
        assert_eq!(
            cp.files[&2].entry.at.offset, 200,
            "the copy resumes where uid 1 was acknowledged"
        );
        // The copy's own lines acknowledged first (another adapt worker): still held back.
        ack(&mut cp, 2, 800);
        assert_eq!(cp.files[&2].entry.at.offset, 200);
        ack(&mut cp, 1, 400);
        assert_eq!(cp.files[&2].entry.at.offset, 400);
        ack(&mut cp, 1, 500);
        assert_eq!(cp.files[&2].entry.at.offset, 800, "on its own once uid 1 reached 500");
        assert!(cp.continued.is_empty());
    }

    #[test]
    fn a_replaced_sink_holds_the_checkpoint_until_it_has_drained_then_hands_over() {
        let dir = tempfile::tempdir().unwrap();
        // Source 0 is read by sinks 0 and 1; sink 1 is rebuilt as slot 2.
        let mut cp = with_sinks(dir.path(), vec![], 2, Arc::new(Metrics::default()));
        let ack = |cp: &mut Checkpointer, sink, uid, offset| {
            cp.apply(Msg::Ack {
                sink,
                marks: vec![mark(uid, offset)],
            })
        };
        cp.apply(Msg::Register {
            entry: entry(7, 70, 0),
            source_idx: 0,
        });
        ack(&mut cp, 0, 7, 100);
        ack(&mut cp, 1, 7, 40);
        cp.apply(Msg::SinkReplacing { old: 1, new: 2 });
        // A file found after the replacement began is read by both.
        cp.apply(Msg::Register {
            entry: entry(8, 80, 0),
            source_idx: 0,
        });
        assert_eq!(cp.files[&8].acked.len(), 3);
        // The successor delivers the lines after the switch before the old one has finished
        // those before it: the old one still holds the checkpoint.
        ack(&mut cp, 2, 7, 90);
        assert_eq!(cp.files[&7].entry.at.offset, 40);
        ack(&mut cp, 1, 7, 60);
        assert_eq!(cp.files[&7].entry.at.offset, 60);
        // File 8 went quiet: the old sink delivered up to 30, the successor got nothing of it.
        ack(&mut cp, 0, 8, 30);
        ack(&mut cp, 1, 8, 30);
        assert_eq!(cp.files[&8].entry.at.offset, 0);
        cp.apply(Msg::SinkReplaced { old: 1, new: 2 });
        assert_eq!(cp.files[&7].entry.at.offset, 90);
        assert_eq!(cp.files[&8].entry.at.offset, 30, "the successor took over the old mark");
        // Acknowledgements of the old slot are over; a new file is read by sinks 0 and 2.
        cp.apply(Msg::Register {
            entry: entry(9, 90, 0),
            source_idx: 0,
        });
        let readers: Vec<bool> = cp.files[&9].acked.iter().map(Option::is_some).collect();
        assert_eq!(readers, vec![true, false, true]);
    }

    #[test]
    fn register_replaces_older_generation_of_same_inode() {
        let dir = tempfile::tempdir().unwrap();
        let mut cp = with_sinks(dir.path(), vec![entry(1, 5, 10)], 1, Arc::new(Metrics::default()));
        cp.apply(Msg::Register {
            entry: entry(2, 5, 0),
            source_idx: 0,
        });
        assert!(!cp.files.contains_key(&1));
    }

    #[test]
    fn unclaimed_and_closed_entries_expire_after_grace() {
        let dir = tempfile::tempdir().unwrap();
        let mut cp = Checkpointer::new(
            dir.path().into(),
            vec![entry(1, 5, 10)],
            vec![vec![0]],
            1,
            Duration::ZERO,
            Arc::default(),
            Cadence::default(),
        );
        cp.apply(Msg::Register {
            entry: entry(2, 6, 0),
            source_idx: 0,
        });
        cp.apply(Msg::Closed { uid: 2 });
        cp.flush();
        assert!(cp.entries().is_empty());
    }

    #[test]
    fn corrupt_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(vec![]));
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    /// An ack is on disk tens of milliseconds later, and a stream of acks is coalesced into
    /// far fewer writes.
    #[test]
    fn acks_are_written_within_tens_of_milliseconds_and_coalesced() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let cp = with_sinks(dir.path(), vec![], 1, Arc::clone(&metrics));
        let (tx, rx) = crossbeam_channel::bounded(64);
        let thread = std::thread::spawn(move || run(cp, rx));
        tx.send(Msg::Register {
            entry: entry(1, 10, 0),
            source_idx: 0,
        })
        .unwrap();
        for off in 1..=200u64 {
            tx.send(Msg::Ack {
                sink: 0,
                marks: vec![mark(1, off * 10)],
            })
            .unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        let last_ack = Instant::now();
        // What a restart would resume from: the in-place copy (or checkpoints.json).
        let on_disk = |want: u64| {
            peek(dir.path())
                .ok()
                .flatten()
                .is_some_and(|files| files.iter().any(|e| e.at.offset == want))
        };
        let in_json = |want: u64| {
            let text = fs::read(dir.path().join(FILE_NAME)).unwrap_or_default();
            serde_json::from_slice::<OnDisk>(&text).is_ok_and(|d| d.files.iter().any(|e| e.at.offset == want))
        };
        while !on_disk(2000) {
            assert!(
                last_ack.elapsed() < Duration::from_secs(5),
                "the last ack never reached the disk"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let took = last_ack.elapsed();
        let writes = metrics.checkpoint_writes.load(Ordering::Relaxed);
        assert!(took < Duration::from_millis(500), "written {took:?} after the ack");
        assert!(writes < 100, "200 acks in ~200 ms took {writes} writes");
        // checkpoints.json follows within `Cadence::json` (1 s), with no further ack.
        while !in_json(2000) {
            assert!(
                last_ack.elapsed() < Duration::from_secs(5),
                "checkpoints.json never caught up with the in-place copy"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(tx);
        thread.join().unwrap();
        assert!(!dir.path().join(format!("{FILE_NAME}.tmp")).exists());
    }

    /// A restart resumes from the in-place copy, which is ahead of checkpoints.json between
    /// its replacements; from checkpoints.json when the copy is torn.
    #[test]
    fn a_start_resumes_from_the_in_place_copy_or_from_checkpoints_json_when_it_is_torn() {
        let dir = tempfile::tempdir().unwrap();
        let mut cp = with_sinks(dir.path(), vec![], 1, Arc::new(Metrics::default()));
        cp.apply(Msg::Register {
            entry: entry(1, 10, 0),
            source_idx: 0,
        });
        cp.apply(Msg::Ack {
            sink: 0,
            marks: vec![mark(1, 100)],
        });
        cp.flush();
        cp.apply(Msg::Ack {
            sink: 0,
            marks: vec![mark(1, 200)],
        });
        cp.write(false);
        let offset = |files: Option<Vec<Entry>>| files.unwrap()[0].at.offset;
        assert_eq!(offset(load(dir.path()).unwrap()), 200, "the in-place copy");
        let json = fs::read(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(serde_json::from_slice::<OnDisk>(&json).unwrap().files[0].at.offset, 100);
        // Torn: its last bytes are not those hashed.
        let live = dir.path().join(inplace::LIVE_NAME);
        let mut bytes = fs::read(&live).unwrap();
        let at = bytes.len() - 2;
        bytes[at] = b' ';
        fs::write(&live, &bytes).unwrap();
        assert_eq!(offset(load(dir.path()).unwrap()), 100, "checkpoints.json");
        assert_eq!(offset(peek(dir.path()).unwrap()), 100);
    }

    #[test]
    fn a_directory_in_the_checkpoints_place_or_the_temporary_ones_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(FILE_NAME).join("x")).unwrap();
        fs::create_dir_all(dir.path().join(format!("{FILE_NAME}.tmp"))).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(vec![]));
        store(dir.path(), &[entry(1, 2, 3)], false).unwrap();
        assert_eq!(load(dir.path()).unwrap().unwrap().len(), 1);
        let aside = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            .count();
        assert_eq!(aside, 2);
    }
}
