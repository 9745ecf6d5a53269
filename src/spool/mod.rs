//! The spool of a network source: what an input accepted, on disk before the client is
//! answered. Append-only segment files in `data_dir/spool/<source>/`, one NDJSON record per
//! line, named by a growing sequence number; the tailer reads them as the source's files
//! (format `json`) with the usual checkpoints, so everything after the spool — adapt,
//! transforms, sinks, acknowledgements — is the file path unchanged.
//!
//! A segment is rolled at `segment_bytes`; a rolled one is deleted once the checkpoint shows
//! every sink acknowledged all of it (`reclaim`, which reads `checkpoints.json` as written,
//! without changing anything in `data_dir`).
//! The bytes on disk are capped at `max_bytes`: an append that would pass it is refused
//! (`AppendError::Full`) and the input pushes back. Each append is one `write` of whole lines,
//! fsynced before it returns with `Fsync::Batch`, or by `sync_if_due` with `Fsync::Interval`.
//!
//! After a crash a segment may end in half a line (a `write` cut short, never acknowledged):
//! `open` cuts it off, before the tailer starts, so no half record is ever shipped.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::checkpoint;
use crate::config::{Fsync, SpoolSettings, SEGMENT_SUFFIX};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("spool {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The spool is at `max_bytes`: push back and let the client retry.
    #[error("the spool is full ({used} of {max} bytes): the sinks are behind")]
    Full { used: u64, max: u64 },
    #[error(transparent)]
    Io(#[from] Error),
}

/// A rolled segment waiting for its records to be acknowledged.
#[derive(Debug)]
struct Closed {
    path: PathBuf,
    ino: u64,
    len: u64,
}

/// One source's spool. Not shared: the input owns it behind a lock.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    data_dir: PathBuf,
    source: String,
    settings: SpoolSettings,
    live: File,
    live_path: PathBuf,
    live_seq: u64,
    live_len: u64,
    closed: VecDeque<Closed>,
    /// Written since the last fsync (`Fsync::Interval`).
    dirty: bool,
    last_sync: Instant,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

impl Spool {
    /// Opens the spool of `source` (creating its directory), takes the segments a previous
    /// run left as rolled, cutting a half-written last line off each, and starts a new live
    /// segment after them.
    pub fn open(data_dir: &Path, source: &str, settings: &SpoolSettings) -> Result<Spool, Error> {
        let dir = settings.dir.clone();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            found.push((seq, entry.path()));
        }
        found.sort();
        let mut closed = VecDeque::new();
        for (_, path) in &found {
            let (ino, len) = trim_partial_line(path)?;
            closed.push_back(Closed {
                path: path.clone(),
                ino,
                len,
            });
        }
        let next = found.last().map_or(1, |(seq, _)| seq + 1);
        let (live, live_path) = create_segment(&dir, next)?;
        sync_dir(&dir)?;
        Ok(Spool {
            dir,
            data_dir: data_dir.to_owned(),
            source: source.to_owned(),
            settings: settings.clone(),
            live,
            live_path,
            live_seq: next,
            live_len: 0,
            closed,
            dirty: false,
            last_sync: Instant::now(),
        })
    }

    /// Bytes on disk: the rolled segments not yet deleted and the live one.
    pub fn used(&self) -> u64 {
        self.closed.iter().map(|c| c.len).sum::<u64>() + self.live_len
    }

    /// Appends `lines` (whole lines, each ending in `\n`) with one `write`, fsynced before
    /// returning under `Fsync::Batch`. Refused, with nothing written, when it would take the
    /// spool past `max_bytes` even after deleting what the sinks have acknowledged.
    pub fn append(&mut self, lines: &[u8]) -> Result<(), AppendError> {
        if lines.is_empty() {
            return Ok(());
        }
        let n = lines.len() as u64;
        if self.used() + n > self.settings.max_bytes {
            self.reclaim();
            let used = self.used();
            if used + n > self.settings.max_bytes {
                return Err(AppendError::Full {
                    used,
                    max: self.settings.max_bytes,
                });
            }
        }
        if self.live_len > 0 && self.live_len + n > self.settings.segment_bytes {
            self.roll()?;
        }
        if let Err(source) = self.live.write_all(lines) {
            // Part of it may be on disk: cut back to the last whole line, so the half written
            // here (never acknowledged) is not read as a record.
            let _ = self.live.set_len(self.live_len);
            return Err(Error::Io {
                path: self.live_path.clone(),
                source,
            }
            .into());
        }
        self.live_len += n;
        match self.settings.fsync {
            Fsync::Batch => self.live.sync_data().map_err(io_err(&self.live_path))?,
            Fsync::Interval(_) => self.dirty = true,
        }
        Ok(())
    }

    /// Under `Fsync::Interval`: fsyncs the live segment if it was written and the interval has
    /// passed since the last fsync.
    pub fn sync_if_due(&mut self) -> Result<(), Error> {
        let Fsync::Interval(every) = self.settings.fsync else {
            return Ok(());
        };
        if self.dirty && self.last_sync.elapsed() >= every {
            self.live.sync_data().map_err(io_err(&self.live_path))?;
            self.dirty = false;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Closes the live segment (fsynced: it is complete) and starts the next one.
    fn roll(&mut self) -> Result<(), Error> {
        self.live.sync_data().map_err(io_err(&self.live_path))?;
        self.dirty = false;
        let ino = self.live.metadata().map_err(io_err(&self.live_path))?.ino();
        let (file, path) = create_segment(&self.dir, self.live_seq + 1)?;
        sync_dir(&self.dir)?;
        let old = std::mem::replace(&mut self.live_path, path);
        self.closed.push_back(Closed {
            path: old,
            ino,
            len: self.live_len,
        });
        self.live = file;
        self.live_seq += 1;
        self.live_len = 0;
        Ok(())
    }

    /// Deletes the rolled segments every sink has acknowledged to their end, as the written
    /// checkpoint says. A checkpoint that cannot be read deletes nothing.
    pub fn reclaim(&mut self) {
        if self.closed.is_empty() {
            return;
        }
        // Read only (`peek`): `load` is for the agent's start — it removes the checkpoint's
        // temporary file, probes `data_dir` by writing that same file, and moves a file it cannot
        // read aside. Run here, beside the checkpoint thread's writes, it could remove or
        // truncate the temporary file between that thread's write and its rename.
        let saved = match checkpoint::peek(&self.data_dir) {
            Ok(saved) => saved.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(source = %self.source, error = %e, "spool: cannot read the checkpoint; keeping every segment");
                return;
            }
        };
        let done = |c: &Closed| {
            saved.iter().any(|e| {
                e.source == self.source && e.ino == c.ino && e.path == c.path.to_string_lossy() && e.at.offset >= c.len
            })
        };
        let before = self.closed.len();
        self.closed.retain(|c| {
            if !done(c) {
                return true;
            }
            match fs::remove_file(&c.path) {
                Ok(()) => false,
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) => {
                    tracing::warn!(path = %c.path.display(), error = %e, "spool: cannot delete a delivered segment");
                    true
                }
            }
        });
        if self.closed.len() != before {
            tracing::debug!(source = %self.source, deleted = before - self.closed.len(), "spool: delivered segments deleted");
        }
    }
}

/// Creates segment `seq` in `dir` for appending.
fn create_segment(dir: &Path, seq: u64) -> Result<(File, PathBuf), Error> {
    let path = dir.join(format!("{seq:020}{SEGMENT_SUFFIX}"));
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    Ok((file, path))
}

/// A new segment's name is durable once its directory is fsynced.
fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Cuts a segment back to the end of its last whole line; returns its inode and length.
fn trim_partial_line(path: &Path) -> Result<(u64, u64), Error> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let file = OpenOptions::new().write(true).open(path).map_err(io_err(path))?;
    if whole < bytes.len() {
        tracing::warn!(path = %path.display(), cut = bytes.len() - whole, "spool: a segment ended in half a line (a write cut by a crash, never acknowledged); cut off");
        file.set_len(whole as u64).map_err(io_err(path))?;
        file.sync_all().map_err(io_err(path))?;
    }
    let ino = file.metadata().map_err(io_err(path))?.ino();
    Ok((ino, whole as u64))
}

#[cfg(test)]
mod tests;
