//! The dead-letter file: where a batch goes when the collector rejected it for good (a 4xx
//! other than 408/429), so its records are neither retried forever nor lost.
//!
//! One sink writes `data_dir/dead-letter/<sink>.ndjson`: the batch's records as NDJSON, the
//! same bytes the batch was built from. Past `max_file_bytes` the file is renamed to
//! `<sink>.ndjson.<N>` (N grows; the highest is the newest) and a new one is started; past
//! `max_total_bytes` for all of the sink's files together, the oldest rotated files are
//! deleted (logged with their names): the cap keeps a collector that rejects everything from
//! filling the disk the checkpoints live on. Files are written, not fsynced: they are a record
//! for the operator, and losing the last one in a power cut loses no more than the cut does.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::config::DeadLetterSettings;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("dead-letter directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("dead-letter file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("rotate dead-letter file {path}: {source}")]
    Rotate { path: PathBuf, source: io::Error },
}

pub struct DeadLetter {
    dir: PathBuf,
    /// `<sink>.ndjson`: rotated files are this name plus `.<N>`.
    base: String,
    max_file_bytes: u64,
    max_total_bytes: u64,
    /// The open current file and its size; `None` until the first write (most sinks never
    /// dead-letter anything, and then no directory appears).
    current: Option<(File, u64)>,
}

impl DeadLetter {
    pub fn new(sink: &str, settings: &DeadLetterSettings) -> DeadLetter {
        DeadLetter {
            dir: settings.dir.clone(),
            base: format!("{sink}.ndjson"),
            max_file_bytes: settings.max_file_bytes,
            max_total_bytes: settings.max_total_bytes,
            current: None,
        }
    }

    /// The current file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.base)
    }

    /// Appends one batch of NDJSON records (whole: a batch is never split across files).
    pub fn write(&mut self, ndjson: &[u8]) -> Result<(), Error> {
        let path = self.path();
        if self
            .current
            .as_ref()
            .is_some_and(|(_, size)| *size > 0 && size + ndjson.len() as u64 > self.max_file_bytes)
        {
            self.current = None;
            self.rotate(&path)?;
        }
        if self.current.is_none() {
            fs::create_dir_all(&self.dir).map_err(|source| Error::Dir {
                path: self.dir.clone(),
                source,
            })?;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|source| Error::Write {
                    path: path.clone(),
                    source,
                })?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            self.current = Some((file, size));
            // A file left by an earlier run may already be past the limit.
            if size > 0 && size + ndjson.len() as u64 > self.max_file_bytes {
                self.current = None;
                return self.write_after_rotation(&path, ndjson);
            }
        }
        self.append(&path, ndjson)
    }

    fn write_after_rotation(&mut self, path: &Path, ndjson: &[u8]) -> Result<(), Error> {
        self.rotate(path)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::Write {
                path: path.to_owned(),
                source,
            })?;
        self.current = Some((file, 0));
        self.append(path, ndjson)
    }

    fn append(&mut self, path: &Path, ndjson: &[u8]) -> Result<(), Error> {
        let Some((file, size)) = self.current.as_mut() else {
            return Ok(());
        };
        match file.write_all(ndjson) {
            Ok(()) => {
                *size += ndjson.len() as u64;
                Ok(())
            }
            Err(source) => {
                // Reopened next time; the caller keeps the batch and tries again.
                self.current = None;
                Err(Error::Write {
                    path: path.to_owned(),
                    source,
                })
            }
        }
    }

    /// Renames the current file to the next number and deletes the oldest rotated files
    /// while the sink's files exceed `max_total_bytes`.
    fn rotate(&self, path: &Path) -> Result<(), Error> {
        let mut rotated = self.rotated_files();
        let next = rotated.last().map_or(1, |(n, _, _)| n + 1);
        let target = self.dir.join(format!("{}.{next}", self.base));
        fs::rename(path, &target).map_err(|source| Error::Rotate {
            path: path.to_owned(),
            source,
        })?;
        let size = fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
        rotated.push((next, target, size));
        let mut total: u64 = rotated.iter().map(|(_, _, s)| s).sum();
        for (_, old, size) in &rotated {
            // Room is kept for the current file to grow to its limit, so the sink's files
            // together never pass max_total_bytes.
            if total + self.max_file_bytes <= self.max_total_bytes {
                break;
            }
            match fs::remove_file(old) {
                Ok(()) => {
                    tracing::warn!(file = %old.display(), bytes = size, "dead-letter files over max_total_bytes: deleted the oldest");
                    total -= size;
                }
                Err(e) => tracing::warn!(file = %old.display(), error = %e, "cannot delete an old dead-letter file"),
            }
        }
        Ok(())
    }

    /// This sink's rotated files, oldest (lowest number) first.
    fn rotated_files(&self) -> Vec<(u64, PathBuf, u64)> {
        let prefix = format!("{}.", self.base);
        let mut out: Vec<(u64, PathBuf, u64)> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let n = name.to_str()?.strip_prefix(&prefix)?.parse::<u64>().ok()?;
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                Some((n, e.path(), size))
            })
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, file: u64, total: u64) -> DeadLetterSettings {
        DeadLetterSettings {
            dir: dir.join("dead-letter"),
            max_file_bytes: file,
            max_total_bytes: total,
        }
    }

    #[test]
    fn appends_rotates_and_caps_the_total() {
        let tmp = tempfile::tempdir().unwrap();
        let s = settings(tmp.path(), 100, 250);
        let mut dl = DeadLetter::new("out", &s);
        let batch = [b'x'; 59].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        dl.write(&batch).unwrap();
        assert_eq!(fs::read(dl.path()).unwrap(), batch);
        // 60 + 60 > 100: rotated to .1, the new file holds the second batch.
        for _ in 0..6 {
            dl.write(&batch).unwrap();
        }
        let mut names: Vec<String> = fs::read_dir(&s.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        // 7 batches of 60 bytes, one per file; the cap (250, with 100 kept for the current
        // file) keeps the newest two rotated files.
        assert_eq!(names, ["out.ndjson", "out.ndjson.5", "out.ndjson.6"]);
        // A new writer (a restart) continues the numbering and the current file.
        let mut again = DeadLetter::new("out", &s);
        again.write(&batch).unwrap();
        assert!(s.dir.join("out.ndjson.7").exists());
    }

    #[test]
    fn a_batch_larger_than_a_file_is_written_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let s = settings(tmp.path(), 4096, 1 << 20);
        let mut dl = DeadLetter::new("big", &s);
        let batch = vec![b'y'; 10_000];
        dl.write(&batch).unwrap();
        assert_eq!(fs::metadata(dl.path()).unwrap().len(), 10_000);
    }
}
