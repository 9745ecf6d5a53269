//! The checkpoint's in-place copy, `data_dir/checkpoints.live`: the same JSON as
//! `checkpoints.json`, behind a header with its length and hash, overwritten at offset 0 by one
//! `pwrite` at every write while acknowledgements stream in.
//!
//! Why a second file: replacing `checkpoints.json` (a new inode, a write, a rename over the old
//! one) cost about 0.3 ms of kernel time here — ext4 starts writing a file renamed over another
//! at once and frees the old inode — and at 50 writes a second that was most of an idle
//! sidecar's checkpoint cost. An overwrite is a copy into the page cache. It survives a
//! `kill -9` as the rename did; what it does not have is atomicity: a write of several pages
//! cut by the kill, or a power cut with half the pages on disk, leaves a torn copy. The hash
//! tells, and the start then falls back to `checkpoints.json`, still replaced atomically, at
//! least once a second while it lags, and fsynced with this file every 5 s: a torn copy costs
//! duplicates (at most about a second's), never a skipped line.
//!
//! A valid copy wins over `checkpoints.json`: it is never older, except after a failed write
//! here, which removes the file. Resetting an agent's checkpoints means removing both.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

use super::file::set_aside;
use super::{Entry, OnDisk, VERSION};

pub const LIVE_NAME: &str = "checkpoints.live";
const MAGIC: &[u8; 8] = b"tailcp01";
/// Magic, the body's length, its hash.
const HEADER: usize = 24;
/// The file is cut back to what it holds when it has shrunk by more than this (files expired).
const SHRINK_SLACK: u64 = 64 << 10;

/// The open in-place copy, owned by the checkpoint thread.
#[derive(Debug)]
pub struct InPlace {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    /// The file's length: it only grows, but for a cut back when much shorter.
    len: u64,
}

impl InPlace {
    /// Opens (or creates) the copy. Anything but a regular file in its place (a directory, a
    /// FIFO, a link) is moved aside first.
    pub fn open(data_dir: &Path) -> io::Result<InPlace> {
        let path = data_dir.join(LIVE_NAME);
        if fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
            tracing::error!(path = %path.display(), "the in-place checkpoint is not a regular file; moved aside");
            set_aside(&path);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        let len = file.metadata()?.len();
        Ok(InPlace {
            file,
            path,
            buf: Vec::new(),
            len,
        })
    }

    /// Overwrites the copy with `body` (the JSON of `checkpoints.json`); `durable`: fsynced too.
    pub fn write(&mut self, body: &[u8], durable: bool) -> io::Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(MAGIC);
        self.buf.extend_from_slice(&(body.len() as u64).to_le_bytes());
        self.buf.extend_from_slice(&xxh3_64(body).to_le_bytes());
        self.buf.extend_from_slice(body);
        self.file.write_all_at(&self.buf, 0)?;
        let total = self.buf.len() as u64;
        if self.len > total + SHRINK_SLACK {
            self.file.set_len(total)?;
            self.len = total;
        } else {
            self.len = self.len.max(total);
        }
        if durable {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// After a failed write the copy may hold an older state that would win at the next start:
    /// it is removed (and this copy no longer used).
    pub fn discard(self) {
        if let Err(e) = fs::remove_file(&self.path) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot remove the in-place checkpoint after a failed write; the next start may resume from an older state (duplicates)");
        }
    }
}

/// Why the copy was not used (then `checkpoints.json` is).
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: not a regular file")]
    NotFile { path: PathBuf },
    #[error("{path}: torn ({why})")]
    Torn { path: PathBuf, why: &'static str },
    #[error("{path}: not an in-place checkpoint")]
    Foreign { path: PathBuf },
    #[error("{path}: version {version}, this tailship reads {VERSION}")]
    Version { path: PathBuf, version: u32 },
    #[error("{path}: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
}

/// The copy's entries when it is there and whole; `Ok(None)` when there is none (or it was
/// never written). Reads only.
pub fn read(data_dir: &Path) -> Result<Option<Vec<Entry>>, Unusable> {
    let path = data_dir.join(LIVE_NAME);
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Unusable::Read { path, source }),
        Ok(m) if !m.is_file() => return Err(Unusable::NotFile { path }),
        Ok(_) => {}
    }
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(source) => return Err(Unusable::Read { path, source }),
    };
    if bytes.is_empty() {
        return Ok(None);
    }
    let torn = |why| Unusable::Torn {
        path: path.clone(),
        why,
    };
    let header = bytes.get(..HEADER).ok_or_else(|| torn("shorter than its header"))?;
    if &header[..8] != MAGIC {
        return Err(Unusable::Foreign { path });
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let (len, hash) = (word(8), word(16));
    let body = usize::try_from(len)
        .ok()
        .and_then(|len| bytes.get(HEADER..HEADER.checked_add(len)?))
        .ok_or_else(|| torn("shorter than its length"))?;
    if xxh3_64(body) != hash {
        return Err(torn("its hash does not match"));
    }
    match serde_json::from_slice::<OnDisk>(body) {
        Ok(d) if d.version == VERSION => Ok(Some(d.files)),
        Ok(d) => Err(Unusable::Version {
            path,
            version: d.version,
        }),
        Err(source) => Err(Unusable::Json { path, source }),
    }
}

/// Fsyncs the copy if there is one.
pub fn sync(data_dir: &Path) -> io::Result<()> {
    match File::open(data_dir.join(LIVE_NAME)) {
        Ok(f) => f.sync_data(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(offset: u64) -> Vec<u8> {
        format!(r#"{{"version":1,"files":[{{"uid":7,"source":"app","path":"/var/log/a.log","dev":1,"ino":2,"fp_len":0,"fp_hash":0,"generation":0,"offset":{offset},"validator_len":0,"validator":0,"updated":0}}]}}"#).into_bytes()
    }

    #[test]
    fn a_written_copy_reads_back_and_a_shorter_one_replaces_a_longer() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = InPlace::open(dir.path()).unwrap();
        assert!(matches!(read(dir.path()), Ok(None)), "empty until written");
        c.write(&body(123456789), false).unwrap();
        c.write(&body(5), true).unwrap();
        let got = read(dir.path()).unwrap().unwrap();
        assert_eq!(got[0].at.offset, 5);
    }

    #[test]
    fn a_torn_or_foreign_copy_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = InPlace::open(dir.path()).unwrap();
        c.write(&body(1000), false).unwrap();
        let path = dir.path().join(LIVE_NAME);
        let whole = fs::read(&path).unwrap();
        // A write of a longer body cut short: the header is new, the rest is not all there.
        let mut torn = whole.clone();
        torn[8..16].copy_from_slice(&((whole.len() - HEADER + 10) as u64).to_le_bytes());
        fs::write(&path, &torn).unwrap();
        assert!(matches!(read(dir.path()), Err(Unusable::Torn { .. })));
        // The new header and body but an old digit: the hash does not match.
        let mut mixed = whole.clone();
        let at = mixed.len() - 60;
        mixed[at] ^= 1;
        fs::write(&path, &mixed).unwrap();
        assert!(matches!(read(dir.path()), Err(Unusable::Torn { .. })));
        fs::write(&path, b"{\"version\":1,\"files\":[]}").unwrap();
        assert!(matches!(read(dir.path()), Err(Unusable::Foreign { .. })));
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        assert!(matches!(read(dir.path()), Err(Unusable::NotFile { .. })));
        // Opening moves the directory aside and starts a new copy.
        let mut c = InPlace::open(dir.path()).unwrap();
        c.write(&body(7), false).unwrap();
        assert_eq!(read(dir.path()).unwrap().unwrap()[0].at.offset, 7);
    }
}
