//! Checkpoints: per file, the offset up to which every sink has acknowledged the lines.
//!
//! One thread owns the state (`run`), fed by one channel: the tailer registers files and their
//! identity, the sinks send acknowledgements. A file's committed offset is the minimum over the
//! sinks that read its source, so a line is never skipped after a restart unless every sink
//! has it. The file `checkpoints.json` in `data_dir` is written atomically (temp file, fsync,
//! rename, fsync of the directory) at most once per interval while it changes, within 50 ms of a
//! new file's registration, and at the end.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde::{Deserialize, Serialize};

use crate::mark::{FileMark, Mark};
use crate::metrics::{add, Metrics};

pub const FILE_NAME: &str = "checkpoints.json";
/// How soon after a file is registered the checkpoint is written (registrations coalesce).
const REGISTER_WRITE_DELAY: Duration = Duration::from_millis(50);
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("create data_dir {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("read checkpoint {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("write checkpoint {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
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
}

/// Loads `data_dir/checkpoints.json`. `Ok(None)` when there is none yet: the agent's first
/// start, where `read_from` applies. A corrupt file is moved aside (kept for inspection) and
/// treated as absent: refusing to start would stop the pod's logging altogether, while
/// starting over costs duplicates, which a crash-looping sidecar would not avoid either.
pub fn load(data_dir: &Path) -> Result<Option<Vec<Entry>>, Error> {
    fs::create_dir_all(data_dir).map_err(|source| Error::CreateDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let path = data_dir.join(FILE_NAME);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Read { path, source }),
    };
    match serde_json::from_slice::<OnDisk>(&text) {
        Ok(d) if d.version == VERSION => Ok(Some(d.files)),
        Ok(d) => {
            tracing::error!(path = %path.display(), version = d.version, "checkpoint has an unknown version; starting over");
            set_aside(&path);
            Ok(Some(Vec::new()))
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "checkpoint is corrupt; moved aside, starting over");
            set_aside(&path);
            Ok(Some(Vec::new()))
        }
    }
}

fn set_aside(path: &Path) {
    let aside = path.with_extension(format!("corrupt-{}", unix_now()));
    if let Err(e) = fs::rename(path, &aside) {
        tracing::error!(path = %path.display(), error = %e, "cannot move corrupt checkpoint aside");
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `files` to `data_dir/checkpoints.json` atomically.
pub fn store(data_dir: &Path, files: &[Entry]) -> Result<(), Error> {
    let path = data_dir.join(FILE_NAME);
    let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
    let write = || -> io::Result<()> {
        let body = serde_json::to_vec(&OnDisk {
            version: VERSION,
            files: files.to_vec(),
        })
        .map_err(io::Error::other)?;
        let mut f = File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        // The rename is durable only once the directory entry is on disk too.
        File::open(data_dir)?.sync_all()
    };
    write().map_err(|source| Error::Write { path, source })
}

/// Live state of one entry: the stored form plus what each sink has acknowledged.
struct Live {
    entry: Entry,
    /// Per sink: the acknowledged mark; `None` for sinks that do not read this file's source.
    acked: Vec<Option<Mark>>,
    closed_at: Option<Instant>,
    /// Loaded from disk and not yet claimed by the tailer in this run.
    unclaimed_since: Option<Instant>,
}

pub struct Checkpointer {
    data_dir: PathBuf,
    /// For each source index, the sinks that read it.
    sinks_of_source: Vec<Vec<usize>>,
    sink_count: usize,
    grace: Duration,
    files: HashMap<u64, Live>,
    dirty: bool,
    metrics: Arc<Metrics>,
}

impl Checkpointer {
    pub fn new(
        data_dir: PathBuf,
        loaded: Vec<Entry>,
        sinks_of_source: Vec<Vec<usize>>,
        sink_count: usize,
        grace: Duration,
        metrics: Arc<Metrics>,
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
                    },
                )
            })
            .collect();
        Checkpointer {
            data_dir,
            sinks_of_source,
            sink_count,
            grace,
            files,
            dirty: false,
            metrics,
        }
    }

    pub fn apply(&mut self, msg: Msg) {
        match msg {
            Msg::Register { mut entry, source_idx } => {
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
                    // Acks for a generation replaced by a truncation find no entry: ignore.
                    let Some(l) = self.files.get_mut(&uid) else { continue };
                    let Some(Some(slot)) = l.acked.get_mut(sink) else {
                        continue;
                    };
                    if mark.offset > slot.offset {
                        *slot = mark;
                        let committed = l.acked.iter().flatten().min_by_key(|a| a.offset).copied();
                        if let Some(at) = committed {
                            if at.offset != l.entry.at.offset {
                                l.entry.at = at;
                                l.entry.updated = unix_now();
                                self.dirty = true;
                            }
                        }
                    }
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

    /// Writes the checkpoint file if anything changed since the last write.
    pub fn flush(&mut self) {
        self.collect_garbage();
        if !self.dirty {
            return;
        }
        let mut entries: Vec<Entry> = self.files.values().map(|l| l.entry.clone()).collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path).then(a.uid.cmp(&b.uid)));
        match store(&self.data_dir, &entries) {
            Ok(()) => {
                self.dirty = false;
                add(&self.metrics.checkpoint_writes, 1);
            }
            Err(e) => {
                // Keep `dirty` so the next tick retries; the previous file stays valid.
                add(&self.metrics.checkpoint_errors, 1);
                tracing::error!(error = %e, "checkpoint write failed");
            }
        }
    }

    /// The committed state, for tests and diagnostics.
    pub fn entries(&self) -> Vec<Entry> {
        self.files.values().map(|l| l.entry.clone()).collect()
    }
}

/// The checkpoint thread: applies messages until every sender is gone (the tailer and all
/// sinks have finished), writing at most once per `interval`, then writes a last time.
pub fn run(mut cp: Checkpointer, rx: Receiver<Msg>, interval: Duration) {
    let mut next_write = Instant::now() + interval;
    loop {
        match rx.recv_timeout(next_write.saturating_duration_since(Instant::now())) {
            Ok(msg) => {
                // A new file is on disk within milliseconds: if it is renamed away while the
                // agent is down, the next start finds it only through its entry.
                if matches!(msg, Msg::Register { .. }) {
                    next_write = next_write.min(Instant::now() + REGISTER_WRITE_DELAY);
                }
                cp.apply(msg)
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_write {
            cp.flush();
            next_write = Instant::now() + interval;
        }
    }
    cp.flush();
}

#[cfg(test)]
mod tests {
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
    fn register_replaces_older_generation_of_same_inode() {
        let dir = tempfile::tempdir().unwrap();
        let mut cp = Checkpointer::new(
            dir.path().into(),
            vec![entry(1, 5, 10)],
            vec![vec![0]],
            1,
            Duration::from_secs(60),
            Arc::default(),
        );
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
}
