//! Finding files: inotify events on the watched directories (hints that make a new or
//! changed path visible at once), the periodic reconcile (the truth), and starting to tail a
//! path that a source matches — or logging once why it cannot be opened.
//!
//! Which paths a source matches, and which directories to watch, is `discover`'s; which of
//! them get an inotify watch and which are polled past the cap is `watches`'; here is what
//! the tailer does when it sees a path, and the poll of the directories it cannot watch.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

use super::admit::Refused;
use super::discover::{self, Root};
use super::file::FileKey;
use super::watches::Watch;
use super::Tailer;
use crate::metrics::add;

impl Tailer {
    pub(super) fn on_event(&mut self, ev: notify::Event, watch: &mut Watch) {
        use notify::event::{ModifyKind, RenameMode};
        use notify::EventKind;
        if matches!(ev.kind, EventKind::Access(_)) {
            return;
        }
        if matches!(
            ev.kind,
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From | RenameMode::Both))
        ) {
            // A watched directory deleted or moved away frees its watch (for a Both, the
            // first path is the old name).
            if let Some(gone) = ev.paths.first() {
                watch.forget(gone);
            }
        }
        let appeared = matches!(
            ev.kind,
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
        );
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
                    self.touch(key);
                    continue;
                }
                self.check_path(&path, key);
            } else if let Some(source) = discover::source_for(&self.sources, &path) {
                self.discover(&path, source, false);
            } else if appeared && fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                // A new directory under a root whose patterns reach below it: files may
                // already be in it. (A new link to a directory is not walked: see
                // `discover::walk`.)
                if let Some(root) = discover::below(&self.roots, &path) {
                    self.list_new_dir(root, watch);
                }
            }
        }
    }

    /// A directory that appeared (by its event, or in a polled directory's listing): watch
    /// it and what is below it (or poll them, past the cap), and start the files already in
    /// them.
    fn list_new_dir(&mut self, root: Root, watch: &mut Watch) {
        // Watched (or its mtime noted) before it is listed: what appears in it meanwhile
        // sends an event or changes the mtime.
        watch.add_dir(root.clone());
        let walked = discover::walk(std::slice::from_ref(&root), &self.sources, &mut |_, _| {});
        for dir in walked.dirs {
            watch.add_dir(dir);
        }
        for (p, s) in walked.found {
            if !self.by_path.contains_key(&p) {
                self.discover(&p, s, false);
            }
        }
    }

    /// The poll of the directories past the watch cap: those whose mtime changed are listed
    /// (new files started, new directories watched or polled), and every open file in a
    /// polled directory is read, since a write to it changes no directory mtime and sends
    /// no event.
    pub(super) fn poll_dirs(&mut self, watch: &mut Watch) {
        if !watch.polls() {
            return;
        }
        for root in watch.poll() {
            let Ok(entries) = fs::read_dir(&root.dir) else { continue };
            // How deep the patterns reach below a subdirectory; `None` inside: none.
            let below = root.max_depth.map_or(Some(None), |d| (d > 1).then_some(Some(d - 1)));
            for entry in entries.flatten().take(discover::WALK_ENTRY_CAP) {
                let path = entry.path();
                // The entry's own type: a link to a directory is not walked into.
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    if let Some(max_depth) = below.filter(|_| !watch.is_known(&path)) {
                        self.list_new_dir(Root { dir: path, max_depth }, watch);
                    }
                } else if let Some(source) = discover::source_for(&self.sources, &path) {
                    match self.by_path.get(&path) {
                        Some(&key) => self.check_path(&path, key),
                        None => self.discover(&path, source, false),
                    }
                }
            }
        }
        for f in self.files.values_mut() {
            if f.attached && f.path.parent().is_some_and(|d| watch.is_polled(d)) {
                f.dirty = true;
            }
        }
    }

    /// The file `key` may have new bytes: read it (or, parked, reopen it when its turn comes).
    fn touch(&mut self, key: FileKey) {
        match self.files.get_mut(&key) {
            Some(f) => f.dirty = true,
            None => self.parking.want(key),
        }
    }

    /// Something happened at the path of a tracked file: is it still the same file?
    pub(super) fn check_path(&mut self, path: &Path, key: FileKey) {
        match fs::metadata(path) {
            Ok(m) if (m.dev(), m.ino()) == key => self.touch(key),
            Ok(_) => {
                self.detach(key);
                if let Some(source) = discover::source_for(&self.sources, path) {
                    self.discover(path, source, false);
                }
            }
            Err(_) => self.detach(key),
        }
    }

    /// The reconcile: walk every root, pick up new files and renames, notice files whose path
    /// is gone, and mark files whose size changed. Stats only; no file is re-read.
    pub(super) fn rescan(&mut self, initial: bool, watch: &mut Watch) {
        let metrics = Arc::clone(&self.metrics);
        let walked = discover::walk(&self.roots, &self.sources, &mut |path, e| {
            tracing::warn!(path = %path.display(), error = %e, "cannot list directory");
            add(&metrics.open_errors, 1);
        });
        watch.sync(&self.roots, walked.dirs);
        if walked.capped {
            tracing::warn!(
                entries = discover::WALK_ENTRY_CAP,
                "the rescan stopped at its cap of directory entries; files past it are found only by their events"
            );
        }
        let found = walked.found;
        let mut seen: HashSet<FileKey> = HashSet::with_capacity(found.len());
        for (path, source) in &found {
            match fs::metadata(path) {
                Ok(m) => {
                    let key = (m.dev(), m.ino());
                    if let Some(p) = self.parking.parked.get(&key).filter(|p| p.path == *path) {
                        seen.insert(key);
                        if m.len() != p.read_offset {
                            self.parking.want(key);
                        }
                        continue;
                    }
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
        self.not_seen(&seen);
        self.count_matches(&found, initial);
        for f in self.files.values_mut() {
            if !f.attached {
                f.dirty = true;
            }
        }
        self.failed.retain(|p, _| p.exists());
        let lag = self
            .files
            .values()
            .map(|f| (f.path.display().to_string(), f.size.saturating_sub(f.read_offset)))
            .collect();
        *self.metrics.file_lag.lock().unwrap_or_else(|p| p.into_inner()) = lag;
        self.publish_status();
    }

    /// Says what each source watches: the `tailship_source_files` gauge, at the first scan a
    /// line per source with its count, and at every scan a warning for a source whose globs
    /// match nothing (a typo looks like a quiet, healthy agent otherwise). The warning names
    /// the globs as its `path`, so the logging layer repeats it at most every
    /// `logging::PATH_WARNING_WINDOW`.
    fn count_matches(&self, found: &[(std::path::PathBuf, usize)], initial: bool) {
        let mut counts = vec![0u64; self.sources.len()];
        for (_, source) in found {
            if let Some(c) = counts.get_mut(*source) {
                *c += 1;
            }
        }
        for ((source, n), m) in self.sources.iter().zip(counts).zip(&self.metrics.sources) {
            m.files.store(n, std::sync::atomic::Ordering::Relaxed);
            let globs = source.include.join(", ");
            if n == 0 {
                tracing::warn!(source = %source.name, path = %globs, "the source's globs match no file yet");
            } else if initial {
                tracing::info!(source = %source.name, files = n, path = %globs, "watching the files the source matches");
            }
        }
    }

    /// The attached files (open or parked) the reconcile did not find at their path.
    fn not_seen(&mut self, seen: &HashSet<FileKey>) {
        let lost: Vec<FileKey> = self
            .files
            .iter()
            .filter(|(k, f)| f.attached && !seen.contains(k))
            .map(|(k, _)| *k)
            .collect();
        let lost_parked: Vec<FileKey> = self
            .parking
            .parked
            .keys()
            .filter(|k| !seen.contains(k))
            .copied()
            .collect();
        for key in lost_parked {
            // Renamed or deleted while parked: its turn finds out which.
            self.parking.want(key);
        }
        for key in lost {
            // Not matched any more: renamed out of the globs, deleted, or replaced.
            let path = self.files[&key].path.clone();
            self.check_path(&path, key);
            if self.files.get(&key).is_some_and(|f| f.attached) && discover::source_for(&self.sources, &path).is_none()
            {
                self.detach(key);
            }
        }
    }

    /// Starts tailing `path` if it is a file not yet tracked (or re-attaches a tracked file
    /// under a new name: a rename).
    pub(super) fn discover(&mut self, path: &Path, source: usize, initial: bool) {
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
        if self.files.contains_key(&key) {
            return self.seen_again(key, path);
        }
        if let Some(p) = self.parking.parked.get_mut(&key) {
            // A parked file under a new matched name: follow it there when it is reopened.
            if p.path != path {
                let old = std::mem::replace(&mut p.path, path.to_owned());
                p.renamed = true;
                if self.by_path.get(&old) == Some(&key) {
                    self.by_path.remove(&old);
                }
                self.by_path.insert(path.to_owned(), key);
            }
            return self.parking.want(key);
        }
        if !meta.file_type().is_file() && !meta.file_type().is_char_device() {
            // FIFOs and sockets would block or never end; they are not log files.
            return self.refused(path, &Refused::NotRegular);
        }
        if !self.free_slot() {
            return self.wait_for_slot(path, source, initial);
        }
        self.open(path, source, initial);
    }

    /// A tracked file found at `path`: a second name for it, or its new name after a rename.
    fn seen_again(&mut self, key: FileKey, path: &Path) {
        let Some(f) = self.files.get_mut(&key) else { return };
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
    }

    /// Opens a newly found file and starts tailing it.
    fn open(&mut self, path: &Path, source: usize, initial: bool) {
        let file = match self.admission.open(path, source) {
            Ok(f) => f,
            Err(e) if e.is_not_found() => return,
            Err(Refused::Io(e)) => return self.open_failed(path, &e),
            Err(e) => return self.refused(path, &e),
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

    /// A matched path that must not be tailed: said once (it is looked at again at every
    /// rescan, and tailed if it changed into something allowed).
    fn refused(&mut self, path: &Path, why: &Refused) {
        if self.failed.insert(path.to_owned(), why.to_string()).is_none() {
            add(&self.metrics.files_refused, 1);
            tracing::warn!(path = %path.display(), reason = %why, "matched path not tailed");
        }
    }

    pub(super) fn open_failed(&mut self, path: &Path, e: &dyn std::error::Error) {
        if self.failed.insert(path.to_owned(), e.to_string()).is_none() {
            add(&self.metrics.open_errors, 1);
            tracing::warn!(path = %path.display(), error = %e, "cannot open file; will retry at the next rescan");
        }
    }
}
