//! Where a newly opened file starts: at its checkpoint entry if the file is still the one
//! saved and unchanged before the saved offset, at its end for `read_from = "end"` on the
//! agent's first start, else at its beginning. Also the files rotated by rename while the
//! agent was down, and the uids that key a file generation's checkpoint entry.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use super::discover;
use super::file::{FileKey, Position, Tracked};
use super::identity::{self, Fingerprint};
use super::index;
use super::Tailer;
use crate::checkpoint::Entry;
use crate::config::ReadFrom;
use crate::mark::Mark;
use crate::metrics::add;
use crate::timefmt;

/// Where a file generation starts, and what it continues from a checkpoint entry.
#[derive(Debug, Default)]
pub(super) struct Start {
    pub(super) offset: u64,
    pub(super) generation: u32,
    pub(super) id_seed: Option<u64>,
    /// The saved entry's key, when the file resumes it.
    pub(super) uid: Option<u64>,
}

impl Tailer {
    /// Decides where to start in a newly opened file (resume, beginning or end), and
    /// registers it with the checkpoint thread.
    pub(super) fn start_file(
        &mut self,
        file: File,
        key: FileKey,
        size: u64,
        path: &Path,
        source: usize,
        initial: bool,
    ) -> io::Result<Tracked> {
        let start = match self.saved.remove(&key) {
            Some(e) => self.resume_point(&file, &e, path)?,
            None if initial && self.first_start && self.sources[source].read_from == ReadFrom::End => Start {
                offset: size,
                ..Start::default()
            },
            None => Start::default(),
        };
        self.track(file, key, size, path, source, start)
    }

    /// Starts tailing `file` at `start` and registers it: from the moment it is opened, the
    /// file is in the checkpoint, so a restart finds it even if it is renamed away meanwhile.
    pub(super) fn track(
        &mut self,
        file: File,
        key: FileKey,
        size: u64,
        path: &Path,
        source: usize,
        start: Start,
    ) -> io::Result<Tracked> {
        let fp = identity::fingerprint(&file, size)?;
        let uid = start.uid.unwrap_or_else(|| new_uid(key, start.generation));
        let last_bytes = identity::bytes_before(&file, start.offset)?;
        let at = Mark::at(start.offset, &last_bytes);
        let position = Position {
            uid,
            source,
            generation: start.generation,
            id_seed: start.id_seed,
            fp,
            offset: start.offset,
            last_bytes,
        };
        let max_line_bytes = self.sources[source].max_line_bytes;
        let t = Tracked::new(key, file, path.to_owned(), size, max_line_bytes, position);
        self.ledger.register(&t, &self.sources[source].name, at);
        Ok(t)
    }

    /// Where `file`, which has the saved entry `e`, starts.
    fn resume_point(&self, file: &File, e: &Entry, path: &Path) -> io::Result<Start> {
        let fp = Fingerprint {
            len: e.fp_len,
            hash: e.fp_hash,
        };
        if !identity::fingerprint_matches(file, fp)? {
            // The inode was reused by a new file: read it from the start.
            return Ok(Start::default());
        }
        if identity::validator_matches(file, &e.at)? || e.at.offset == 0 {
            return Ok(Start {
                offset: e.at.offset,
                generation: e.generation,
                id_seed: e.id_seed,
                uid: Some(e.uid),
            });
        }
        // Same file, but the bytes before the saved offset changed while we were down: it
        // was truncated or rewritten. Start over, as a new generation.
        add(&self.metrics.truncations, 1);
        tracing::warn!(path = %path.display(), offset = e.at.offset, "file changed before its checkpoint while stopped; reading it from the start");
        Ok(Start {
            generation: e.generation + 1,
            ..Start::default()
        })
    }

    /// Files rotated by rename while the agent was down: their checkpoint entry found no file
    /// at the first scan, because the name they had now belongs to the new file. If the old
    /// file is still in its directory under another name (`app.log` → `app.log.1`), possibly
    /// one the globs do not match, it is resumed at its checkpoint and drained like a file
    /// rotated while we ran, so the lines written between the stop and the rotation are
    /// not lost. Run at start, and again after lost inotify events: a saved file renamed
    /// while we were blind is found the same way.
    ///
    /// The saved entries are already keyed by (device, inode), so this is one listing per
    /// directory (`index::find`), whatever the number of entries.
    pub(super) fn resume_renamed_while_down(&mut self) {
        if self.saved.is_empty() {
            return;
        }
        let wanted: HashSet<FileKey> = self.saved.keys().copied().collect();
        let dirs: Vec<PathBuf> = self
            .saved
            .values()
            .filter_map(|e| Path::new(&e.path).parent().map(Path::to_path_buf))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let found = index::find(dirs.iter().map(PathBuf::as_path), &wanted);
        // Offset 0 included: a file registered when it was still empty, or whose lines no
        // sink had confirmed yet (the collector was down), is still ours to drain. A file at a
        // name the globs match is the scan's (it may only be waiting for a descriptor).
        let mut leftovers: Vec<(Entry, index::Found)> = found
            .into_iter()
            .filter_map(|(key, at)| {
                let e = self.saved.get(&key)?;
                let ours = at.len > e.at.offset
                    && !self.files.contains_key(&key)
                    && discover::source_for(&self.sources, &at.path).is_none()
                    && !reused(e, &at);
                ours.then(|| (e.clone(), at))
            })
            .collect();
        leftovers.sort_by_key(|(e, _)| e.at.offset);
        for (e, at) in leftovers {
            let Some(source) = self.sources.iter().position(|s| s.name == e.source) else {
                continue;
            };
            if !self.free_slot() {
                tracing::warn!(path = %at.path.display(), "open-file cap reached; a file rotated while stopped is not drained");
                add(&self.metrics.files_closed_before_eof, 1);
                continue;
            }
            self.resume_renamed(&e, &at.path, source);
        }
    }

    /// Drains the file saved as `e`, now at `path`, from its checkpoint, if it is still ours.
    fn resume_renamed(&mut self, e: &Entry, path: &Path, source: usize) {
        let key = (e.dev, e.ino);
        let Ok(file) = super::file::open_regular(path) else {
            return;
        };
        let Ok(size) = file.metadata().map(|m| m.len()) else {
            return;
        };
        // Only our file, unchanged before its offset: an inode reused by another file, or
        // one rewritten while we were down, is not ours to resume.
        let fp = Fingerprint {
            len: e.fp_len,
            hash: e.fp_hash,
        };
        let ours = identity::fingerprint_matches(&file, fp).unwrap_or(false)
            && (e.at.offset == 0 || identity::validator_matches(&file, &e.at).unwrap_or(false));
        if !ours {
            self.saved.remove(&key);
            return;
        }
        match self.start_file(file, key, size, path, source, false) {
            Ok(mut t) => {
                tracing::info!(path = %path.display(), was = %e.path, offset = t.read_offset, "file rotated while stopped; draining it from its checkpoint");
                t.attached = false;
                t.dirty = true;
                add(&self.metrics.rotations, 1);
                add(&self.metrics.open_files, 1);
                self.files.insert(key, t);
            }
            Err(err) => self.open_failed(path, &err),
        }
    }
}

/// Whether the file found with `e`'s inode was created after `e` last changed: the inode was
/// reused by a newer file. Matters for entries without a fingerprint (the file was empty when
/// seen), which any file would match.
fn reused(e: &Entry, at: &index::Found) -> bool {
    if e.fp_len > 0 || e.updated == 0 {
        return false;
    }
    let saved = UNIX_EPOCH + Duration::from_secs(e.updated);
    // `updated` has whole seconds; a file created in the same second is not newer.
    at.created.is_some_and(|c| c > saved + Duration::from_secs(1))
}

/// A fresh checkpoint key for a file generation.
pub(super) fn new_uid(key: FileKey, generation: u32) -> u64 {
    let mut b = [0u8; 28];
    b[..8].copy_from_slice(&key.0.to_le_bytes());
    b[8..16].copy_from_slice(&key.1.to_le_bytes());
    b[16..20].copy_from_slice(&generation.to_le_bytes());
    b[20..].copy_from_slice(&timefmt::now_ns().to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&b)
}
