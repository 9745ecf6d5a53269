//! Following a file through rotation: a path that leads elsewhere or nowhere (rename,
//! delete) detaches the file, which is read to its end and closed once quiet; a file renamed
//! away before we opened it is followed to its new name; a truncation (copytruncate) starts
//! a new generation, after reading the lines only the copy still holds.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::discover;
use super::file::FileKey;
use super::identity;
use super::resume::{new_uid, Start};
use super::Tailer;
use crate::mark::Mark;
use crate::metrics::add;

impl Tailer {
    /// The file's path now leads elsewhere (rename rotation) or nowhere (deleted): keep
    /// reading the open descriptor to its end.
    pub(super) fn detach(&mut self, key: FileKey) {
        if self.parking.parked.contains_key(&key) {
            // Its turn finds where it went (by inode) and drains it from there.
            return self.parking.want(key);
        }
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

    /// A file was renamed from a path we tail to one we do not. If we had not opened it yet
    /// (it was created and rotated away between two looks, which fast rotation does), its
    /// lines would be lost: follow it to its new name and drain it there.
    pub(super) fn on_rename(&mut self, from: &Path, to: &Path) {
        if discover::source_for(&self.sources, to).is_some() {
            return;
        }
        let Some(source) = discover::source_for(&self.sources, from) else {
            return;
        };
        let to_key = fs::metadata(to).ok().map(|m| (m.dev(), m.ino()));
        if let Some(k) = to_key {
            if self.files.contains_key(&k) {
                return;
            }
            if self.parking.parked.contains_key(&k) {
                // Parked: its turn finds it at its new name (by inode) and drains it there.
                return self.detach(k);
            }
        }
        self.discover(to, source, false);
        if let Some(&key) = self.by_path.get(to) {
            tracing::debug!(from = %from.display(), to = %to.display(), "following a file rotated away before it was opened");
            self.detach(key);
        }
    }

    /// Closes the rotated-away files that are read to their end and have not grown for
    /// `rotate_wait` (as of `now`): their writer has moved on. An adopted copy is closed as
    /// soon as it is read up to its bound: nobody writes to a copy, and the next rotation may
    /// rewrite it.
    pub(super) fn close_drained(&mut self, now: Instant) {
        let close: Vec<FileKey> = self
            .files
            .iter()
            .filter(|(_, f)| {
                !f.attached && f.at_eof && !f.dirty && (f.copy_done() || now >= f.last_growth + self.rotate_wait)
            })
            .map(|(k, _)| *k)
            .collect();
        for k in close {
            self.flush_partial(k);
            self.close_file(k);
        }
    }

    /// Closes a file for good: nothing more will be read from it.
    pub(super) fn close_file(&mut self, key: FileKey) {
        if let Some(f) = self.files.remove(&key) {
            self.metrics.open_files.fetch_sub(1, Ordering::Relaxed);
            if f.attached && self.by_path.get(&f.path) == Some(&key) {
                self.by_path.remove(&f.path);
            }
            tracing::debug!(path = %f.path.display(), "closed drained rotated file");
            self.ledger.closed(f.uid);
        }
    }

    pub(super) fn truncated(&mut self, key: FileKey) {
        add(&self.metrics.truncations, 1);
        if self.files[&key].limit.is_some() {
            return self.copy_rewritten(key);
        }
        if self.adopt_copy(key) {
            // The copy holds the partial line too; it is read from there.
            let f = self.files.get_mut(&key).expect("file is tracked");
            f.buf.clear();
        } else {
            // The rest of a line we had only begun to read went with the truncation: ship
            // what we have, marked `truncated` so nobody takes it for the whole line.
            self.flush_cut(key);
        }
        let f = self.files.get_mut(&key).expect("file is tracked");
        tracing::info!(path = %f.path.display(), offset = f.read_offset, "file truncated; reading it again from the start");
        let uid = new_uid(key, f.generation + 1);
        f.restart_generation(uid);
        let size = f.file.metadata().map(|m| m.len()).unwrap_or(0);
        f.fp = identity::fingerprint(&f.file, size).unwrap_or_default();
        // `Mark::default()`, not a validated mark at 0: nothing precedes offset 0, and resume
        // at offset 0 never checks the validator.
        self.ledger.register(f, &self.sources[f.source].name, Mark::default());
    }

    /// Ships the partial line of `key` as far as it got, marked `truncated`: its rest is gone.
    fn flush_cut(&mut self, key: FileKey) {
        let f = self.files.get_mut(&key).expect("file is tracked");
        if let Some(mut s) = f.splitter.flush(&mut f.buf) {
            s.tail_truncated = true;
            add(&self.metrics.partial_lines_flushed, 1);
            self.emit(key, s);
        }
        if let Some(f) = self.files.get_mut(&key) {
            f.charge_partial(&self.budget);
        }
    }

    /// An adopted copy was rewritten (the next `cp` over the same file) before we read all of
    /// it: its new content is a later generation of the live file, read there, never here.
    /// What we had not read of the old content is gone with it.
    fn copy_rewritten(&mut self, key: FileKey) {
        let f = &self.files[&key];
        let unread = f.limit.unwrap_or(0).saturating_sub(f.read_offset);
        if unread > 0 {
            add(&self.metrics.files_closed_before_eof, 1);
            tracing::warn!(path = %f.path.display(), offset = f.read_offset, unread, "copy rewritten by the next rotation before it was read to where its file was truncated; those lines are lost");
        }
        self.flush_cut(key);
        self.close_file(key);
    }

    /// copytruncate copies the file (to `app.log.1`, say) and then truncates it. Lines the
    /// writer added after our last read and before the truncation survive only in the copy.
    /// Look for that copy next to the file — same first bytes, same bytes just before our
    /// offset — and read the rest of the old content from it, up to the copy's size now (where
    /// the live file was when it was copied, just before the truncation). Returns true if
    /// found.
    fn adopt_copy(&mut self, key: FileKey) -> bool {
        let f = &self.files[&key];
        let (resume, end) = (f.buf_offset, f.read_offset);
        if end == 0 || f.last_bytes.is_empty() {
            return false;
        }
        let Some(dir) = f.path.parent() else { return false };
        let Ok(entries) = fs::read_dir(dir) else { return false };
        let old_uid = f.uid;
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
            // The copy itself, not a link (which `open_regular` would refuse anyway).
            let Ok(m) = fs::symlink_metadata(&path) else { continue };
            let copy_key = (m.dev(), m.ino());
            // A copy adopted at an earlier rotation may be rewritten in place by this one
            // (`cp` over an existing file keeps its inode): it is a candidate again.
            let earlier_copy = self.files.get(&copy_key).is_some_and(|c| c.limit.is_some());
            if !m.is_file()
                || m.len() < end
                || copy_key == key
                || (self.files.contains_key(&copy_key) && !earlier_copy)
                || discover::source_for(&self.sources, &path).is_some()
            {
                continue;
            }
            let Ok(file) = super::file::open_regular(&path) else {
                continue;
            };
            let same_head = identity::fingerprint_matches(&file, fp).unwrap_or(false);
            let same_tail =
                same_head && identity::read_at(&file, end - last.len() as u64, last.len()).is_ok_and(|b| b == last);
            if !same_tail {
                continue;
            }
            if earlier_copy {
                self.copy_rewritten(copy_key);
            } else if !self.free_slot() {
                tracing::warn!(path = %original.display(), copy = %path.display(), "open-file cap reached; the lines only the copy holds are not read");
                add(&self.metrics.files_closed_before_eof, 1);
                return false;
            }
            // Continue the old generation's ids and its partial line from the copy.
            let start = Start {
                offset: resume,
                generation,
                id_seed: seed,
                uid: None,
            };
            let Ok(mut t) = self.track(file, copy_key, m.len(), &path, source, start) else {
                continue;
            };
            tracing::info!(path = %original.display(), copy = %path.display(), offset = end, until = m.len(), "reading the lines written before the truncation from the copy");
            // Registered at `resume`; what the old generation still has in flight below it
            // holds the copy's checkpoint back until it is acknowledged.
            self.ledger.continues(old_uid, t.uid, resume);
            t.attached = false;
            t.limit = Some(m.len());
            add(&self.metrics.files_discovered, 1);
            add(&self.metrics.open_files, 1);
            self.files.insert(copy_key, t);
            return true;
        }
        false
    }
}
