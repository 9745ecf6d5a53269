//! Descriptors: how many files may be held open, and what happens past that.
//!
//! The cap is the configured `max_open_files`, but never more than the process's descriptor
//! limit minus what is in use at start and a reserve for the sinks' connections, the
//! checkpoint's writes, the dead-letter files and the metrics server: running out of
//! descriptors for tailed files must never leave a sink unable to reconnect or the checkpoint
//! unable to be written. At the cap, a file that is read to its end, quiet and attached is
//! *parked*: its descriptor is closed and where it stopped is kept (its checkpoint entry stays
//! live). Files that have something to read wait in a queue and take the slot of the
//! longest-quiet open file; a parked file that changes is reopened by path (or found by its
//! inode if it was renamed meanwhile) and goes on where it stopped.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::file::{FileKey, Position, Tracked};
use super::identity::Fingerprint;
use super::index;
use super::Tailer;
use crate::config::{SinkKind, SinkSettings};
use crate::metrics::add;

/// Descriptors kept free for everything but tailed files: the checkpoint's temp file and
/// directory, the metrics server's connections, the inotify instance, the runtime's own.
pub const RESERVED_FDS: u64 = 64;

/// How many files may be open at once, given the configured maximum, the soft descriptor
/// limit, the descriptors in use when tailing starts and the sinks.
pub fn open_file_cap(configured: usize, limit: u64, in_use: u64, sinks: &[SinkSettings]) -> usize {
    let reserved = in_use + RESERVED_FDS + sinks.iter().map(sink_fds).sum::<u64>();
    let room = limit.saturating_sub(reserved).max(1);
    configured.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// Descriptors a sink may hold: its connections (an HTTP sink one per concurrent request),
/// a dead-letter file and one to reconnect with while the old one closes.
fn sink_fds(s: &SinkSettings) -> u64 {
    match &s.kind {
        SinkKind::Http(h) => h.concurrency as u64 + 2,
        // librdkafka: a connection to each broker of the cluster (more than the bootstrap
        // list), its wake-up pipes, the dead-letter file.
        SinkKind::Kafka(k) => 16 + 2 * k.brokers.len() as u64,
        _ => 3,
    }
}

/// The cap for this process: reads the soft descriptor limit (`main` has raised it to the
/// hard limit where allowed) and the descriptors open now, and logs the numbers once when
/// the limit, not `max_open_files`, is what binds.
pub fn process_cap(configured: usize, sinks: &[SinkSettings]) -> usize {
    let limit = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the descriptor limit; using max_open_files as it is");
            return configured;
        }
    };
    let in_use = std::fs::read_dir("/proc/self/fd").map_or(16, |d| d.count() as u64);
    let cap = open_file_cap(configured, limit, in_use, sinks);
    if cap < configured {
        tracing::info!(
            cap,
            max_open_files = configured,
            descriptor_limit = limit,
            in_use,
            reserved = limit.saturating_sub(cap as u64),
            "holding fewer files open than max_open_files, to stay below the descriptor limit; more files wait their turn"
        );
    }
    cap
}

/// A file whose descriptor was closed to make room: enough to go on where it stopped.
pub struct Parked {
    pub uid: u64,
    pub source: usize,
    pub path: PathBuf,
    generation: u32,
    id_seed: Option<u64>,
    fp: Fingerprint,
    pub read_offset: u64,
    last_bytes: Vec<u8>,
    /// Queued to be reopened.
    pub wanted: bool,
    /// Found under another matched name while parked: the checkpoint learns it when reopened.
    pub renamed: bool,
}

/// What waits for a descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Turn {
    /// A parked file that changed.
    Parked(FileKey),
    /// A file never opened yet: its path, its source, and whether it was found by the first
    /// scan (where `read_from` applies).
    New(PathBuf, usize, bool),
}

/// The parked files and the queue of those waiting for a descriptor.
#[derive(Default)]
pub struct Parking {
    pub parked: std::collections::HashMap<FileKey, Parked>,
    /// At most one turn per file: a parked file is queued only while not `wanted` already, a
    /// new path only while not in `queued_new`.
    queue: VecDeque<Turn>,
    queued_new: HashSet<PathBuf>,
    /// The cap was reached at least once (logged then, not at every file).
    reached: bool,
}

impl Parking {
    /// Queues a parked file that has something new (once).
    pub fn want(&mut self, key: FileKey) {
        if let Some(p) = self.parked.get_mut(&key) {
            if !p.wanted {
                p.wanted = true;
                self.queue.push_back(Turn::Parked(key));
            }
        }
    }

    /// Queues a file not opened yet (once); false if it already waits.
    pub fn queue_new(&mut self, path: &Path, source: usize, initial: bool) -> bool {
        if !self.queued_new.insert(path.to_owned()) {
            return false;
        }
        self.queue.push_back(Turn::New(path.to_owned(), source, initial));
        true
    }
}

impl Tailer {
    /// Whether a file may be opened now, parking the longest-quiet file if that is what it
    /// takes.
    pub(super) fn free_slot(&mut self) -> bool {
        self.files.len() < self.max_open_files || self.park_one()
    }

    /// At the cap: queues `path` until a descriptor is free (logged once per run).
    pub(super) fn wait_for_slot(&mut self, path: &Path, source: usize, initial: bool) {
        if self.parking.queue_new(path, source, initial) && !self.parking.reached {
            self.parking.reached = true;
            add(&self.metrics.open_errors, 1);
            tracing::warn!(path = %path.display(), cap = self.max_open_files, "open-file cap reached; files that have lines to read take turns with quiet ones");
        }
    }

    /// Parks the open file that has been quiet longest, if one can be parked: attached, read to
    /// its end, nothing pending. False if every open file is busy.
    fn park_one(&mut self) -> bool {
        let Some(key) = self
            .files
            .iter()
            .filter(|(_, f)| parkable(f))
            .min_by_key(|(_, f)| f.last_growth)
            .map(|(k, _)| *k)
        else {
            return false;
        };
        self.park(key)
    }

    /// `close_inactive`: parks every file that can be and has not grown since `idle_since`,
    /// below the cap too. An idle descriptor pins a deleted file's space and counts against
    /// the cap; a parked file is reopened when it changes (its event, or the next rescan).
    pub(super) fn close_inactive(&mut self, idle_since: std::time::Instant) {
        let idle: Vec<FileKey> = self
            .files
            .iter()
            .filter(|(_, f)| parkable(f) && f.last_growth <= idle_since)
            .map(|(k, _)| *k)
            .collect();
        for key in idle {
            self.park(key);
        }
    }

    /// Closes the descriptor of `key` and keeps where it stopped.
    fn park(&mut self, key: FileKey) -> bool {
        let Some(f) = self.files.remove(&key) else { return false };
        self.metrics
            .open_files
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(path = %f.path.display(), "parked a quiet file to free a descriptor");
        self.parking.parked.insert(
            key,
            Parked {
                uid: f.uid,
                source: f.source,
                path: f.path,
                generation: f.generation,
                id_seed: f.id_seed,
                fp: f.fp,
                read_offset: f.read_offset,
                last_bytes: f.last_bytes,
                wanted: false,
                renamed: false,
            },
        );
        true
    }

    /// Gives queued files a descriptor while one can be had; called every turn of the loop.
    pub(super) fn take_turns(&mut self) {
        while let Some(turn) = self.parking.queue.front().cloned() {
            if !self.free_slot() {
                return;
            }
            self.parking.queue.pop_front();
            match turn {
                Turn::Parked(key) => self.unpark(key),
                Turn::New(path, source, initial) => {
                    self.parking.queued_new.remove(&path);
                    if !self.by_path.contains_key(&path) {
                        self.discover(&path, source, initial);
                    }
                }
            }
        }
    }

    /// Reopens a parked file where it stopped: at its path if that still leads to it, else
    /// wherever its inode went in the same directory (renamed while parked: drained like any
    /// rotated file). Truncations while parked are then noticed by the next read.
    fn unpark(&mut self, key: FileKey) {
        let Some(p) = self.parking.parked.remove(&key) else {
            return;
        };
        let at_path = self
            .admission
            .open(&p.path, p.source)
            .ok()
            .filter(|f| f.metadata().is_ok_and(|m| (m.dev(), m.ino()) == key));
        let attached = at_path.is_some();
        let moved = || {
            let dir = p.path.parent()?;
            let found = index::find([dir], &[key].into_iter().collect()).remove(&key)?;
            let file = super::file::open_regular(&found.path).ok()?;
            file.metadata()
                .is_ok_and(|m| (m.dev(), m.ino()) == key)
                .then_some((file, found.path))
        };
        let (file, path) = match at_path {
            Some(f) => (f, p.path.clone()),
            None => match moved() {
                Some(found) => found,
                None => {
                    // Deleted while parked: what was appended after we parked is gone.
                    tracing::info!(path = %p.path.display(), "a parked file is gone; it had been read to where it was parked");
                    self.forget_path(&p.path, key);
                    self.ledger.closed(p.uid);
                    return;
                }
            },
        };
        if !attached {
            self.forget_path(&p.path, key);
            add(&self.metrics.rotations, 1);
        }
        let renamed = !attached || p.renamed;
        let t = self.reopened(key, p, file, path, attached);
        if renamed {
            self.ledger.update(&t);
        }
        add(&self.metrics.open_files, 1);
        self.files.insert(key, t);
    }

    fn forget_path(&mut self, path: &Path, key: FileKey) {
        if self.by_path.get(path) == Some(&key) {
            self.by_path.remove(path);
        }
    }

    fn reopened(&self, key: FileKey, p: Parked, file: File, path: PathBuf, attached: bool) -> Tracked {
        let at = Position {
            uid: p.uid,
            source: p.source,
            generation: p.generation,
            id_seed: p.id_seed,
            fp: p.fp,
            offset: p.read_offset,
            last_bytes: p.last_bytes,
        };
        let size = file.metadata().map_or(0, |m| m.len());
        let mut t = Tracked::new(key, file, path, size, self.sources[p.source].max_line_bytes, at);
        t.attached = attached;
        t
    }
}

/// A file whose descriptor can be closed without losing anything: it still is at its path (so
/// it can be reopened), it is read to its end and nothing of it is pending.
fn parkable(f: &Tracked) -> bool {
    f.attached && f.at_eof && !f.dirty && f.buf.is_empty() && f.splitter.is_idle() && f.limit.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_descriptor_limit() {
        // 1,024 descriptors, 10 in use, one tcp sink: 1024 - 10 - 64 - 3.
        let tcp = SinkSettings {
            name: "out".into(),
            kind: SinkKind::Tcp(Box::new(crate::config::TcpSettings {
                address: "127.0.0.1:9".into(),
                tls: None,
                settle: std::time::Duration::from_millis(250),
                settle_bytes: 4 << 20,
                replay_window_bytes: 8 << 20,
                poison_closes: 3,
                dead_letter: crate::config::DeadLetterSettings {
                    dir: "/nonexistent".into(),
                    max_file_bytes: 1 << 20,
                    max_total_bytes: 1 << 20,
                },
            })),
            encoding: crate::config::Encoding::Ndjson,
            inputs: vec![0],
            batch: Default::default(),
            shape: Default::default(),
        };
        assert_eq!(open_file_cap(4096, 1024, 10, std::slice::from_ref(&tcp)), 947);
        assert_eq!(open_file_cap(100, 1024, 10, std::slice::from_ref(&tcp)), 100);
        assert_eq!(open_file_cap(4096, 1 << 20, 10, &[]), 4096);
        // A limit smaller than the reserve still lets one file be tailed.
        assert_eq!(open_file_cap(4096, 50, 10, &[]), 1);
    }
}
