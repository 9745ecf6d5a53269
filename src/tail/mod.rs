//! The tailer: finds the files of every source, reads them, and hands whole lines on as
//! chunks to every sink that reads the source.
//!
//! It runs on one plain thread: reading from the page cache and finding the last newline of a
//! 256 KiB read is CPU work measured in microseconds, so a thread per file or async file I/O
//! would only add cost. Discovery is inotify on the watched directories (a hint: "look at this
//! path now") plus a stat-only reconcile every `rescan_interval` (the truth). The thread blocks
//! in one `select!` on watcher events, the in-flight budget and shutdown, so idle costs
//! nothing but the periodic reconcile.

pub mod discover;
pub mod file;
pub mod identity;
mod ledger;
pub mod lines;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use crossbeam_channel::{select, Receiver, Sender};
use notify::Watcher;

use self::discover::Root;
use self::file::{FileKey, ReadResult, Tracked};
use self::identity::Fingerprint;
use self::ledger::Ledger;
use self::lines::{LineSplitter, Split};
use crate::budget::Budget;
use crate::checkpoint::{Entry, Msg};
use crate::chunk::{Chunk, FileMeta};
use crate::config::{ReadFrom, Settings, SourceSettings};
use crate::mark::{self, Mark};
use crate::metrics::{add, Metrics};
use crate::stop::HardStop;
use crate::timefmt;

/// How often a rotated-away file is looked at while its writer may still append to it.
const DETACHED_POLL: Duration = Duration::from_millis(250);
/// Reads per file before moving on to the next one, so one busy file cannot starve others.
const READS_PER_TURN: usize = 8;

/// What the tailer needs from the pipeline.
pub struct TailContext {
    pub settings: Settings,
    /// Checkpoint entries from the last run; `None` on the agent's first start.
    pub saved: Option<Vec<Entry>>,
    /// The adapt stage's lanes. All the chunks of one file generation go to the same lane
    /// (`uid % lanes`), which is what keeps a file's records in order downstream.
    pub lanes: Vec<Sender<Arc<Chunk>>>,
    pub checkpoints: Sender<Msg>,
    pub budget: Arc<Budget>,
    pub metrics: Arc<Metrics>,
    /// Disconnected when a graceful shutdown begins: stop discovering, drain, return.
    pub shutdown: Receiver<()>,
    /// Set when the shutdown deadline passed: stop at once.
    pub hard_stop: HardStop,
}

pub struct Tailer {
    sources: Vec<SourceSettings>,
    roots: Vec<Root>,
    rescan_interval: Duration,
    rotate_wait: Duration,
    read_bytes: usize,
    max_open_files: usize,
    first_start: bool,
    saved: HashMap<FileKey, Entry>,
    files: HashMap<FileKey, Tracked>,
    by_path: HashMap<PathBuf, FileKey>,
    /// Paths whose open failed, so the failure is logged once, not at every rescan.
    failed: HashSet<PathBuf>,
    watched: HashSet<PathBuf>,
    lanes: Vec<Sender<Arc<Chunk>>>,
    ledger: Ledger,
    budget: Arc<Budget>,
    metrics: Arc<Metrics>,
    hard_stop: HardStop,
    splits: Vec<Split>,
}

/// Runs the tailer until shutdown; returns when every file is drained (or at the hard stop),
/// dropping the chunk senders so the sinks flush and finish.
pub fn run(ctx: TailContext) {
    let TailContext {
        settings,
        saved,
        lanes,
        checkpoints,
        budget,
        metrics,
        shutdown,
        hard_stop,
    } = ctx;
    let mut t = Tailer {
        roots: discover::roots(&settings.sources),
        sources: settings.sources.clone(),
        rescan_interval: settings.rescan_interval,
        rotate_wait: settings.rotate_wait,
        read_bytes: settings.read_buffer_bytes,
        max_open_files: settings.max_open_files,
        first_start: saved.is_none(),
        saved: saved
            .unwrap_or_default()
            .into_iter()
            .map(|e| ((e.dev, e.ino), e))
            .collect(),
        files: HashMap::new(),
        by_path: HashMap::new(),
        failed: HashSet::new(),
        watched: HashSet::new(),
        lanes,
        ledger: Ledger::new(checkpoints),
        budget,
        metrics,
        hard_stop,
        splits: Vec::new(),
    };
    t.run_loop(&shutdown);
}

impl Tailer {
    fn run_loop(&mut self, shutdown: &Receiver<()>) {
        // The watcher's callback runs on notify's thread; it must never block, so a full
        // queue only sets `overflow`, which triggers a full reconcile like IN_Q_OVERFLOW.
        let (ev_tx, ev_rx) = crossbeam_channel::bounded::<notify::Event>(8192);
        let overflow = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&overflow);
        let mut watcher = match notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if !ev.need_rescan() => {
                if ev_tx.try_send(ev).is_err() {
                    flag.store(true, Ordering::Relaxed);
                }
            }
            _ => flag.store(true, Ordering::Relaxed),
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "inotify unavailable; relying on the periodic rescan");
                None
            }
        };
        self.watch_roots(&mut watcher);
        self.rescan(true);
        self.resume_renamed_while_down();
        self.metrics.ready.store(true, Ordering::Relaxed);
        let mut next_rescan = Instant::now() + self.rescan_interval;
        let mut next_detached_poll = Instant::now() + DETACHED_POLL;
        // While draining: per file, the size it had when the shutdown began. Lines written
        // after that are left for the next start, so a busy writer cannot hold us up.
        let mut drain_to: Option<HashMap<FileKey, u64>> = None;

        loop {
            if self.hard_stop.is_set() {
                break;
            }
            let draining = drain_to.is_some();
            if !draining {
                while let Ok(ev) = ev_rx.try_recv() {
                    self.on_event(ev);
                }
                if overflow.swap(false, Ordering::Relaxed) || Instant::now() >= next_rescan {
                    self.watch_roots(&mut watcher);
                    self.rescan(false);
                    next_rescan = Instant::now() + self.rescan_interval;
                }
            }
            if Instant::now() >= next_detached_poll {
                // Rotated-away files get no events from the watched directories; a writer
                // that has not reopened its log yet may still append to them.
                for f in self.files.values_mut().filter(|f| !f.attached) {
                    f.dirty = true;
                }
                next_detached_poll = Instant::now() + DETACHED_POLL;
            }
            let blocked = self.read_dirty();
            self.flush_and_close(draining);
            if let Some(targets) = &drain_to {
                let done =
                    |(k, f): (&FileKey, &Tracked)| !f.dirty || f.read_offset >= targets.get(k).copied().unwrap_or(0);
                if !blocked && self.files.iter().all(done) {
                    break;
                }
            }

            let more = !blocked && self.files.values().any(|f| f.dirty);
            if more {
                continue;
            }
            let timeout = self
                .next_deadline(next_rescan, next_detached_poll)
                .saturating_duration_since(Instant::now());
            let never = crossbeam_channel::never();
            let never_ev = crossbeam_channel::never();
            let freed = if blocked { self.budget.freed() } else { &never };
            let stop = if draining { &never } else { shutdown };
            let events = if draining { &never_ev } else { &ev_rx };
            select! {
                recv(events) -> ev => if let Ok(ev) = ev { self.on_event(ev) },
                recv(stop) -> _ => {
                    // Stop discovery: no more events; read what is on disk now.
                    watcher = None;
                    let mut targets = HashMap::new();
                    for (k, f) in self.files.iter_mut() {
                        f.dirty = true;
                        targets.insert(*k, f.file.metadata().map(|m| m.len()).unwrap_or(0));
                    }
                    drain_to = Some(targets);
                    tracing::info!(files = self.files.len(), "draining files before shutdown");
                }
                recv(freed) -> _ => {}
                recv(self.hard_stop.channel()) -> _ => {}
                default(timeout) => {}
            }
        }
        drop(watcher);
        if !self.hard_stop.is_set() {
            // Shutdown: the pod may be ending, so an unterminated last line would be lost
            // with the volume; ship it now (a later restart resumes after it).
            let keys: Vec<FileKey> = self.files.keys().copied().collect();
            for k in keys {
                self.flush_partial(k);
            }
        } else {
            let behind = self.files.values().filter(|f| f.read_offset < f.size).count();
            add(&self.metrics.files_closed_before_eof, behind as u64);
        }
    }

    /// The earliest moment something is due without an event: a rescan, a partial line's
    /// timeout, or a poll of a rotated-away file.
    fn next_deadline(&self, next_rescan: Instant, next_detached_poll: Instant) -> Instant {
        let mut at = next_rescan;
        for f in self.files.values() {
            if f.waits_for_newline() {
                at = at.min(f.partial_since + self.sources[f.source].partial_line_timeout);
            }
        }
        if self.files.values().any(|f| !f.attached) {
            at = at.min(next_detached_poll);
        }
        at
    }

    fn watch_roots(&mut self, watcher: &mut Option<notify::RecommendedWatcher>) {
        let Some(w) = watcher else { return };
        for root in &self.roots {
            if self.watched.contains(&root.dir) {
                continue;
            }
            let mode = if root.max_depth == Some(1) {
                notify::RecursiveMode::NonRecursive
            } else {
                notify::RecursiveMode::Recursive
            };
            match w.watch(&root.dir, mode) {
                Ok(()) => {
                    self.watched.insert(root.dir.clone());
                }
                // A directory the app has not created yet; the rescan retries.
                Err(e) => tracing::debug!(dir = %root.dir.display(), error = %e, "cannot watch directory yet"),
            }
        }
    }

    fn on_event(&mut self, ev: notify::Event) {
        use notify::EventKind;
        if matches!(ev.kind, EventKind::Access(_)) {
            return;
        }
        if let (EventKind::Modify(notify::event::ModifyKind::Name(notify::event::RenameMode::Both)), [from, to]) =
            (&ev.kind, ev.paths.as_slice())
        {
            self.on_rename(from, to);
        }
        let data_only = matches!(ev.kind, EventKind::Modify(notify::event::ModifyKind::Data(_)));
        for path in ev.paths {
            if let Some(&key) = self.by_path.get(&path) {
                if data_only {
                    // The common event by far (one per write); the path still leads to the
                    // same file, or a rename/create event says otherwise.
                    if let Some(f) = self.files.get_mut(&key) {
                        f.dirty = true;
                    }
                    continue;
                }
                self.check_path(&path, key);
            } else if let Some(source) = discover::source_for(&self.sources, &path) {
                self.discover(&path, source, false);
            } else if matches!(ev.kind, EventKind::Create(_)) && path.is_dir() {
                // A new directory under a `**` root: files may already be in it.
                for (p, s) in discover::walk(
                    &[Root {
                        dir: path.clone(),
                        max_depth: None,
                    }],
                    &self.sources,
                    &mut |_, _| {},
                ) {
                    if !self.by_path.contains_key(&p) {
                        self.discover(&p, s, false);
                    }
                }
            }
        }
    }

    /// A file was renamed from a path we tail to one we do not. If we had not opened it yet
    /// (it was created and rotated away between two looks, which fast rotation does), its
    /// lines would be lost: follow it to its new name and drain it there.
    fn on_rename(&mut self, from: &Path, to: &Path) {
        if discover::source_for(&self.sources, to).is_some() {
            return;
        }
        let Some(source) = discover::source_for(&self.sources, from) else {
            return;
        };
        let known = fs::metadata(to).is_ok_and(|m| self.files.contains_key(&(m.dev(), m.ino())));
        if known {
            return;
        }
        self.discover(to, source, false);
        if let Some(&key) = self.by_path.get(to) {
            tracing::debug!(from = %from.display(), to = %to.display(), "following a file rotated away before it was opened");
            self.detach(key);
        }
    }

    /// Something happened at the path of a tracked file: is it still the same file?
    fn check_path(&mut self, path: &Path, key: FileKey) {
        match fs::metadata(path) {
            Ok(m) if (m.dev(), m.ino()) == key => {
                if let Some(f) = self.files.get_mut(&key) {
                    f.dirty = true;
                }
            }
            Ok(_) => {
                self.detach(key);
                if let Some(source) = discover::source_for(&self.sources, path) {
                    self.discover(path, source, false);
                }
            }
            Err(_) => self.detach(key),
        }
    }

    /// Files rotated by rename while the agent was down: their checkpoint entry found no file
    /// at the first scan, because the name they had now belongs to the new file. If the old
    /// file is still in its directory under another name (`app.log` → `app.log.1`), possibly
    /// one the globs do not match, it is resumed at its checkpoint and drained like a file
    /// rotated while we ran, so the lines written between the stop and the rotation are
    /// not lost.
    fn resume_renamed_while_down(&mut self) {
        let mut leftovers: Vec<Entry> = self.saved.values().filter(|e| e.at.offset > 0).cloned().collect();
        leftovers.sort_by_key(|e| e.at.offset);
        for e in leftovers {
            let Some(source) = self.sources.iter().position(|s| s.name == e.source) else {
                continue;
            };
            let Some(dir) = Path::new(&e.path).parent() else {
                continue;
            };
            let Ok(listing) = fs::read_dir(dir) else { continue };
            let found = listing.flatten().find(|d| {
                d.metadata()
                    .is_ok_and(|m| m.is_file() && m.dev() == e.dev && m.ino() == e.ino && m.len() > e.at.offset)
            });
            let Some(found) = found else { continue };
            let path = found.path();
            if self.files.len() >= self.max_open_files {
                tracing::warn!(path = %path.display(), "open-file budget reached; a file rotated while stopped is not drained");
                add(&self.metrics.files_closed_before_eof, 1);
                continue;
            }
            let key = (e.dev, e.ino);
            let Ok(file) = File::open(&path) else { continue };
            let Ok(size) = file.metadata().map(|m| m.len()) else {
                continue;
            };
            // Only our file, unchanged before its offset: an inode reused by another file, or
            // one rewritten while we were down, is not ours to resume.
            let fp = Fingerprint {
                len: e.fp_len,
                hash: e.fp_hash,
            };
            let ours = identity::fingerprint_matches(&file, fp).unwrap_or(false)
                && identity::validator_matches(&file, &e.at).unwrap_or(false);
            if !ours {
                continue;
            }
            match self.start_file(file, key, size, &path, source, false) {
                Ok(mut t) => {
                    tracing::info!(path = %path.display(), was = %e.path, offset = t.read_offset, "file rotated while stopped; draining it from its checkpoint");
                    t.attached = false;
                    t.dirty = true;
                    add(&self.metrics.rotations, 1);
                    add(&self.metrics.open_files, 1);
                    self.files.insert(key, t);
                }
                Err(err) => self.open_failed(&path, &err),
            }
        }
    }

    /// The file's path now leads elsewhere (rename rotation) or nowhere (deleted): keep
    /// reading the open descriptor to its end.
    fn detach(&mut self, key: FileKey) {
        if let Some(f) = self.files.get_mut(&key) {
            if f.attached {
                f.attached = false;
                f.dirty = true;
                f.last_growth = Instant::now();
                self.by_path.remove(&f.path);
                add(&self.metrics.rotations, 1);
                tracing::debug!(path = %f.path.display(), "file rotated or deleted; draining it");
            }
        }
    }

    /// The reconcile: walk every root, pick up new files and renames, notice files whose path
    /// is gone, and mark files whose size changed. Stats only; no file is re-read.
    fn rescan(&mut self, initial: bool) {
        let metrics = Arc::clone(&self.metrics);
        let found = discover::walk(&self.roots, &self.sources, &mut |path, e| {
            tracing::warn!(path = %path.display(), error = %e, "cannot list directory");
            add(&metrics.open_errors, 1);
        });
        let mut seen: HashSet<FileKey> = HashSet::with_capacity(found.len());
        for (path, source) in &found {
            match fs::metadata(path) {
                Ok(m) => {
                    let key = (m.dev(), m.ino());
                    match self.files.get_mut(&key) {
                        Some(f) if f.attached && f.path == *path => {
                            seen.insert(key);
                            if m.len() != f.read_offset || m.len() != f.size {
                                f.dirty = true;
                            }
                        }
                        _ => {
                            if self.by_path.get(path).is_some_and(|k| *k != key) {
                                let old = self.by_path[path];
                                self.detach(old);
                            }
                            self.discover(path, *source, initial);
                            seen.insert(key);
                        }
                    }
                }
                Err(_) => {
                    if let Some(&key) = self.by_path.get(path) {
                        self.detach(key);
                    }
                }
            }
        }
        let lost: Vec<FileKey> = self
            .files
            .iter()
            .filter(|(k, f)| f.attached && !seen.contains(k))
            .map(|(k, _)| *k)
            .collect();
        for key in lost {
            // Not matched any more: renamed out of the globs, deleted, or replaced.
            let path = self.files[&key].path.clone();
            self.check_path(&path, key);
            if self.files.get(&key).is_some_and(|f| f.attached) && discover::source_for(&self.sources, &path).is_none()
            {
                self.detach(key);
            }
        }
        for f in self.files.values_mut() {
            if !f.attached {
                f.dirty = true;
            }
        }
        self.failed.retain(|p| p.exists());
        let lag = self
            .files
            .values()
            .map(|f| (f.path.display().to_string(), f.size.saturating_sub(f.read_offset)))
            .collect();
        *self.metrics.file_lag.lock().unwrap_or_else(|p| p.into_inner()) = lag;
    }

    /// Starts tailing `path` if it is a file not yet tracked (or re-attaches a tracked file
    /// under a new name: a rename).
    fn discover(&mut self, path: &Path, source: usize, initial: bool) {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            // Deleted before we got to it: nothing to read, nothing lost that we could see.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => return self.open_failed(path, &e),
        };
        if meta.is_dir() {
            return;
        }
        let key = (meta.dev(), meta.ino());
        if let Some(f) = self.files.get_mut(&key) {
            let alias = f.attached && f.path != path && fs::metadata(&f.path).is_ok_and(|m| (m.dev(), m.ino()) == key);
            if alias {
                // A second path (symlink, hard link) to a file already tailed: read it once.
                return;
            }
            if !f.attached || f.path != path {
                // Same inode at a new path: a rename. Keep the offset; new chunks carry the
                // new path.
                if f.attached {
                    self.by_path.remove(&f.path);
                }
                f.path = path.to_owned();
                f.attached = true;
                f.meta = None;
                f.dirty = true;
                self.by_path.insert(path.to_owned(), key);
                self.ledger.update(f);
            }
            return;
        }
        if !meta.file_type().is_file() && !meta.file_type().is_char_device() {
            // FIFOs and sockets would block or never end; they are not log files.
            if self.failed.insert(path.to_owned()) {
                tracing::warn!(path = %path.display(), "matched path is not a regular file; skipped");
            }
            return;
        }
        if self.files.len() >= self.max_open_files {
            if self.failed.insert(path.to_owned()) {
                add(&self.metrics.open_errors, 1);
                tracing::warn!(path = %path.display(), max_open_files = self.max_open_files, "open-file budget reached; will retry at the next rescan");
            }
            return;
        }
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => return self.open_failed(path, &e),
        };
        let (key, size) = match file.metadata() {
            Ok(m) => ((m.dev(), m.ino()), m.len()),
            Err(e) => return self.open_failed(path, &e),
        };
        if self.files.contains_key(&key) {
            return;
        }
        self.failed.remove(path);
        match self.start_file(file, key, size, path, source, initial) {
            Ok(t) => {
                add(&self.metrics.files_discovered, 1);
                add(&self.metrics.open_files, 1);
                tracing::debug!(path = %path.display(), offset = t.read_offset, "tailing file");
                self.by_path.insert(path.to_owned(), key);
                self.files.insert(key, t);
            }
            Err(e) => self.open_failed(path, &e),
        }
    }

    fn open_failed(&mut self, path: &Path, e: &io::Error) {
        if self.failed.insert(path.to_owned()) {
            add(&self.metrics.open_errors, 1);
            tracing::warn!(path = %path.display(), error = %e, "cannot open file; will retry at the next rescan");
        }
    }

    /// Decides where to start in a newly opened file (resume, beginning or end), and
    /// registers it with the checkpoint thread.
    fn start_file(
        &mut self,
        file: File,
        key: FileKey,
        size: u64,
        path: &Path,
        source: usize,
        initial: bool,
    ) -> io::Result<Tracked> {
        let mut generation = 0;
        let mut start = 0;
        let mut id_seed = None;
        let mut uid = None;
        if let Some(e) = self.saved.remove(&key) {
            let fp = Fingerprint {
                len: e.fp_len,
                hash: e.fp_hash,
            };
            if identity::fingerprint_matches(&file, fp)? {
                if identity::validator_matches(&file, &e.at)? || e.at.offset == 0 {
                    start = e.at.offset;
                    generation = e.generation;
                    id_seed = e.id_seed;
                    uid = Some(e.uid);
                } else {
                    // Same file, but the bytes before the saved offset changed while we were
                    // down: it was truncated or rewritten. Start over, as a new generation.
                    add(&self.metrics.truncations, 1);
                    tracing::warn!(path = %path.display(), offset = e.at.offset, "file changed before its checkpoint while stopped; reading it from the start");
                    generation = e.generation + 1;
                }
            }
            // Otherwise the inode was reused by a new file: read it from the start.
        } else if initial && self.first_start && self.sources[source].read_from == ReadFrom::End {
            start = size;
        }
        let fp = identity::fingerprint(&file, size)?;
        let uid = uid.unwrap_or_else(|| new_uid(key, generation));
        let last_bytes = identity::read_at(
            &file,
            start.saturating_sub(mark::VALIDATOR_MAX as u64),
            (start as usize).min(mark::VALIDATOR_MAX),
        )?;
        let at = Mark::at(start, &last_bytes);
        let now = Instant::now();
        let t = Tracked {
            key,
            uid,
            source,
            file,
            path: path.to_owned(),
            attached: true,
            generation,
            id_seed,
            fp,
            meta: None,
            read_offset: start,
            buf_offset: start,
            buf: BytesMut::new(),
            splitter: LineSplitter::new(self.sources[source].max_line_bytes),
            last_bytes,
            partial_since: now,
            last_growth: now,
            dirty: true,
            at_eof: false,
            size,
        };
        self.ledger.register(&t, &self.sources[source].name, at);
        Ok(t)
    }

    /// Reads every file that may have new bytes, a few reads each per turn. Returns true when
    /// it stopped because the in-flight budget is used up.
    fn read_dirty(&mut self) -> bool {
        let keys: Vec<FileKey> = self.files.iter().filter(|(_, f)| f.dirty).map(|(k, _)| *k).collect();
        for key in keys {
            for _ in 0..READS_PER_TURN {
                if self.budget.available() == 0 {
                    return true;
                }
                if self.hard_stop.is_set() {
                    return false;
                }
                if !self.read_once(key) {
                    break;
                }
            }
        }
        false
    }

    /// One read of one file; false when the file has nothing more for now.
    fn read_once(&mut self, key: FileKey) -> bool {
        let Some(f) = self.files.get_mut(&key) else {
            return false;
        };
        let max_read = self.read_bytes.min(self.sources[f.source].max_line_bytes);
        let mut splits = std::mem::take(&mut self.splits);
        let result = f.read(max_read, &mut splits);
        let more = match result {
            Ok(ReadResult::Data(n)) => {
                add(&self.metrics.bytes_read, n as u64);
                self.maybe_grow_fingerprint(key);
                for s in splits.drain(..) {
                    self.emit(key, s);
                }
                !self.files[&key].at_eof
            }
            Ok(ReadResult::Eof) => {
                if let Some(f) = self.files.get_mut(&key) {
                    f.dirty = false;
                }
                false
            }
            Ok(ReadResult::Truncated) => {
                self.truncated(key);
                true
            }
            Err(e) => {
                let f = self.files.get_mut(&key).expect("file is tracked");
                f.dirty = false;
                add(&self.metrics.open_errors, 1);
                tracing::warn!(path = %f.path.display(), error = %e, "read failed; will retry");
                false
            }
        };
        self.splits = splits;
        more
    }

    /// While a file is younger than a full fingerprint, extend its fingerprint as it grows so
    /// a later restart can tell it apart from other files.
    fn maybe_grow_fingerprint(&mut self, key: FileKey) {
        let f = self.files.get_mut(&key).expect("file is tracked");
        if (f.fp.len as usize) < identity::FINGERPRINT_MAX && f.read_offset > f.fp.len as u64 {
            if let Ok(fp) = identity::fingerprint(&f.file, f.read_offset) {
                f.fp = fp;
                self.ledger.update(f);
            }
        }
    }

    fn truncated(&mut self, key: FileKey) {
        add(&self.metrics.truncations, 1);
        if self.adopt_copy(key) {
            // The copy holds the partial line too; it is read from there.
            let f = self.files.get_mut(&key).expect("file is tracked");
            f.buf.clear();
        } else {
            // The rest of a line we had only begun to read went with the truncation: ship
            // what we have, marked `truncated` so nobody takes it for the whole line.
            let f = self.files.get_mut(&key).expect("file is tracked");
            if let Some(mut s) = f.splitter.flush(&mut f.buf) {
                s.tail_truncated = true;
                add(&self.metrics.partial_lines_flushed, 1);
                self.emit(key, s);
            }
        }
        let f = self.files.get_mut(&key).expect("file is tracked");
        tracing::info!(path = %f.path.display(), offset = f.read_offset, "file truncated; reading it again from the start");
        let uid = new_uid(key, f.generation + 1);
        f.restart_generation(uid);
        let size = f.file.metadata().map(|m| m.len()).unwrap_or(0);
        f.fp = identity::fingerprint(&f.file, size).unwrap_or_default();
        self.ledger.register(f, &self.sources[f.source].name, Mark::default());
    }

    /// copytruncate copies the file (to `app.log.1`, say) and then truncates it. Lines the
    /// writer added after our last read and before the truncation survive only in the copy.
    /// Look for that copy next to the file — same first bytes, same bytes just before our
    /// offset — and read the rest of the old content from it. Returns true if found.
    fn adopt_copy(&mut self, key: FileKey) -> bool {
        let f = &self.files[&key];
        let (resume, end) = (f.buf_offset, f.read_offset);
        if end == 0 || f.last_bytes.is_empty() {
            return false;
        }
        let Some(dir) = f.path.parent() else { return false };
        let Ok(entries) = fs::read_dir(dir) else { return false };
        let (fp, last, source, generation, seed, original) = (
            f.fp,
            f.last_bytes.clone(),
            f.source,
            f.generation,
            f.id_seed,
            f.path.clone(),
        );
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(m) = fs::metadata(&path) else { continue };
            let copy_key = (m.dev(), m.ino());
            if !m.is_file()
                || m.len() < end
                || copy_key == key
                || self.files.contains_key(&copy_key)
                || discover::source_for(&self.sources, &path).is_some()
            {
                continue;
            }
            let Ok(file) = File::open(&path) else { continue };
            let same_head = identity::fingerprint_matches(&file, fp).unwrap_or(false);
            let same_tail =
                same_head && identity::read_at(&file, end - last.len() as u64, last.len()).is_ok_and(|b| b == last);
            if !same_tail {
                continue;
            }
            let Ok(mut t) = self.start_file(file, copy_key, m.len(), &path, source, false) else {
                continue;
            };
            tracing::info!(path = %original.display(), copy = %path.display(), offset = end, "reading the lines written before the truncation from the copy");
            // Continue the old generation's ids and its partial line from the copy.
            t.generation = generation;
            t.id_seed = seed;
            t.read_offset = resume;
            t.buf_offset = resume;
            t.last_bytes = identity::read_at(
                &t.file,
                resume.saturating_sub(crate::mark::VALIDATOR_MAX as u64),
                (resume as usize).min(crate::mark::VALIDATOR_MAX),
            )
            .unwrap_or_default();
            t.attached = false;
            add(&self.metrics.files_discovered, 1);
            add(&self.metrics.open_files, 1);
            self.files.insert(copy_key, t);
            return true;
        }
        false
    }

    /// Ships a file's pending partial line as it is (timeout, rotation, truncation, shutdown).
    fn flush_partial(&mut self, key: FileKey) {
        let Some(f) = self.files.get_mut(&key) else { return };
        if let Some(s) = f.splitter.flush(&mut f.buf) {
            add(&self.metrics.partial_lines_flushed, 1);
            self.emit(key, s);
        }
    }

    /// Partial-line timeouts, and closing rotated-away files that are drained and quiet.
    fn flush_and_close(&mut self, draining: bool) {
        let now = Instant::now();
        let mut due = Vec::new();
        let mut close = Vec::new();
        for (k, f) in &self.files {
            if f.waits_for_newline() && now >= f.partial_since + self.sources[f.source].partial_line_timeout {
                due.push(*k);
            }
            if !f.attached && !draining && f.at_eof && !f.dirty && now >= f.last_growth + self.rotate_wait {
                close.push(*k);
            }
        }
        for k in due {
            self.flush_partial(k);
        }
        for k in close {
            self.flush_partial(k);
            if let Some(f) = self.files.remove(&k) {
                self.metrics.open_files.fetch_sub(1, Ordering::Relaxed);
                tracing::debug!(path = %f.path.display(), "closed drained rotated file");
                self.ledger.closed(f.uid);
            }
        }
    }

    /// Hands a split of a file on to every sink that reads its source.
    fn emit(&mut self, key: FileKey, split: Split) {
        let f = self.files.get_mut(&key).expect("file is tracked");
        if split.data.is_empty() {
            return;
        }
        let meta = match &f.meta {
            Some(m) => Arc::clone(m),
            None => {
                let seed = match f.id_seed {
                    Some(s) => s,
                    None => {
                        let head = identity::read_at(&f.file, 0, identity::FINGERPRINT_MAX).unwrap_or_default();
                        let s = identity::id_seed(key.0, key.1, f.generation, &head);
                        f.id_seed = Some(s);
                        self.ledger.update(f);
                        s
                    }
                };
                let path: Arc<str> = Arc::from(f.path.display().to_string());
                let m = Arc::new(FileMeta {
                    uid: f.uid,
                    source: f.source,
                    path_json: serde_json::to_string(&*path).unwrap_or_else(|_| "\"\"".into()).into(),
                    path,
                    id_prefix: format!("{seed:016x}-").into(),
                });
                f.meta = Some(Arc::clone(&m));
                m
            }
        };
        let start = f.take_range(split.data.len());
        if split.tail_truncated && !split.head_continues {
            add(&self.metrics.lines_split, 1);
        }
        let len = split.data.len();
        let chunk = Arc::new(Chunk {
            file: meta,
            start,
            data: split.data,
            observed_ns: timefmt::now_ns(),
            head_continues: split.head_continues,
            tail_truncated: split.tail_truncated,
            budget: self.budget.take(len),
        });
        if self.lanes.is_empty() {
            return;
        }
        let lane = &self.lanes[(f.uid % self.lanes.len() as u64) as usize];
        // A lane is full only while the sinks behind it are stalled; waiting here is the
        // backpressure, but the hard stop must still get through.
        select! {
            send(lane, chunk) -> _ => {}
            recv(self.hard_stop.channel()) -> _ => {}
        }
    }
}

/// A fresh checkpoint key for a file generation.
fn new_uid(key: FileKey, generation: u32) -> u64 {
    let mut b = [0u8; 28];
    b[..8].copy_from_slice(&key.0.to_le_bytes());
    b[8..16].copy_from_slice(&key.1.to_le_bytes());
    b[16..20].copy_from_slice(&generation.to_le_bytes());
    b[20..].copy_from_slice(&timefmt::now_ns().to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&b)
}
