//! The checkpoint file on disk: read at start (a bad one is moved aside, never a crash loop),
//! replaced atomically (temporary file, rename) at least once a second while it lags the
//! in-place copy (`inplace.rs`) and at the end, fsynced on its own cadence.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::inplace;
use super::{Entry, Error, OnDisk, FILE_NAME, VERSION};

/// Loads `data_dir/checkpoints.json`. `Ok(None)` when there is none yet: the agent's first
/// start, where `read_from` applies. A corrupt or unreadable file (or a directory, a FIFO… in
/// its place, or in the temporary file's) is moved aside (kept for inspection) and treated as
/// absent: refusing to start would stop the pod's logging altogether, while starting over costs
/// duplicates, which a crash-looping sidecar would not avoid either. Then `data_dir` must be
/// writable: without checkpoints every restart would send everything again.
pub fn load(data_dir: &Path) -> Result<Option<Vec<Entry>>, Error> {
    fs::create_dir_all(data_dir).map_err(|source| Error::CreateDir {
        path: data_dir.to_owned(),
        source,
    })?;
    clear_tmp(data_dir);
    // The in-place copy is never older than `checkpoints.json` when it is whole (inplace.rs).
    let loaded = match inplace::read(data_dir) {
        Ok(Some(files)) => Some(files),
        Ok(None) => read_saved(&data_dir.join(FILE_NAME)),
        Err(e) => {
            tracing::warn!(error = %e, "the in-place checkpoint cannot be used; resuming from checkpoints.json (up to about a second older: duplicates)");
            read_saved(&data_dir.join(FILE_NAME))
        }
    };
    check_writable(data_dir)?;
    Ok(loaded)
}

/// A checkpoint file that `peek` cannot use.
#[derive(Debug, thiserror::Error)]
pub enum PeekError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not a checkpoint: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("{path} has version {version}, this tailship reads {VERSION}")]
    Version { path: PathBuf, version: u32 },
}

/// The saved entries of `data_dir`, read without changing anything (`tailship status` while
/// an agent may be running): `Ok(None)` when there is no checkpoint yet.
pub fn peek(data_dir: &Path) -> Result<Option<Vec<Entry>>, PeekError> {
    // A copy torn by a write under way reads as unusable: `checkpoints.json` is then read.
    if let Ok(Some(files)) = inplace::read(data_dir) {
        return Ok(Some(files));
    }
    let path = data_dir.join(FILE_NAME);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PeekError::Read { path, source }),
    };
    match serde_json::from_slice::<OnDisk>(&text) {
        Ok(d) if d.version == VERSION => Ok(Some(d.files)),
        Ok(d) => Err(PeekError::Version {
            path,
            version: d.version,
        }),
        Err(source) => Err(PeekError::Corrupt { path, source }),
    }
}

/// The saved entries, or `None` if there are none; anything unusable is set aside.
pub(super) fn read_saved(path: &Path) -> Option<Vec<Entry>> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        // A FIFO would block the read forever, a directory fail it every time.
        Ok(meta) if !meta.is_file() && !meta.file_type().is_symlink() => {
            tracing::error!(path = %path.display(), "checkpoint is not a regular file; moved aside, starting over");
            set_aside(path);
            return Some(Vec::new());
        }
        _ => {}
    }
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "checkpoint is unreadable; moved aside, starting over");
            set_aside(path);
            return Some(Vec::new());
        }
    };
    match serde_json::from_slice::<OnDisk>(&text) {
        Ok(d) if d.version == VERSION => Some(d.files),
        Ok(d) => {
            tracing::error!(path = %path.display(), version = d.version, "checkpoint has an unknown version; starting over");
            set_aside(path);
            Some(Vec::new())
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "checkpoint is corrupt; moved aside, starting over");
            set_aside(path);
            Some(Vec::new())
        }
    }
}

pub(super) fn tmp_path(data_dir: &Path) -> PathBuf {
    data_dir.join(format!("{FILE_NAME}.tmp"))
}

/// A temporary file left by a crash is removed; anything else in its place (a directory) would
/// fail every write, so it is moved aside.
pub(super) fn clear_tmp(data_dir: &Path) {
    let tmp = tmp_path(data_dir);
    match fs::symlink_metadata(&tmp) {
        Ok(m) if m.is_file() || m.file_type().is_symlink() => {
            let _ = fs::remove_file(&tmp);
        }
        Ok(_) => {
            tracing::error!(path = %tmp.display(), "the checkpoint's temporary path is not a regular file; moved aside");
            set_aside(&tmp);
        }
        Err(_) => {}
    }
}

/// Writes and removes the temporary file, as every checkpoint write will.
pub(super) fn check_writable(data_dir: &Path) -> Result<(), Error> {
    let tmp = tmp_path(data_dir);
    let probe = || -> io::Result<()> {
        File::create(&tmp)?.write_all(b"{}")?;
        fs::remove_file(&tmp)
    };
    probe().map_err(|source| Error::NotWritable {
        path: data_dir.to_owned(),
        source,
    })
}

pub(super) fn set_aside(path: &Path) {
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{}", unix_now()));
    if let Err(e) = fs::rename(path, &aside) {
        tracing::error!(path = %path.display(), error = %e, "cannot move the checkpoint aside");
    }
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The JSON of `files`, as both checkpoint files hold it.
pub(super) fn body(data_dir: &Path, files: &[Entry]) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(&OnDisk {
        version: VERSION,
        files: files.to_vec(),
    })
    .map_err(|e| Error::Write {
        path: data_dir.join(FILE_NAME),
        source: io::Error::other(e),
    })
}

/// Writes `files` to `data_dir/checkpoints.json` atomically: readers see the old file or the
/// new one. `durable`: also fsync the file and the directory, so it survives a power cut; without
/// it, it survives the process's death (the page cache is the kernel's).
/// Returns the bytes written.
pub fn store(data_dir: &Path, files: &[Entry], durable: bool) -> Result<usize, Error> {
    let body = body(data_dir, files)?;
    store_body(data_dir, &body, durable)?;
    Ok(body.len())
}

/// `store` of a body already made.
pub(super) fn store_body(data_dir: &Path, body: &[u8], durable: bool) -> Result<(), Error> {
    let path = data_dir.join(FILE_NAME);
    let tmp = tmp_path(data_dir);
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(body)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        if durable {
            // The rename is durable only once the directory entry is on disk too.
            File::open(data_dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|source| Error::Write { path, source })
}

/// Makes the last write durable (file and directory fsynced).
pub(super) fn sync(data_dir: &Path) -> Result<(), Error> {
    let path = data_dir.join(FILE_NAME);
    let run = || -> io::Result<()> {
        inplace::sync(data_dir)?;
        match File::open(&path) {
            Ok(f) => f.sync_all()?,
            // Not written yet: the in-place copy holds everything there is.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        File::open(data_dir)?.sync_all()
    };
    run().map_err(|source| Error::Write { path, source })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A valid checkpoint to mutate: the reader sees near-misses more often than noise.
    const VALID: &str = r#"{"version":1,"files":[{"uid":7,"source":"app","path":"/var/log/a.log","dev":2049,"ino":131,"fp_len":12,"fp_hash":99,"generation":0,"id_seed":5,"offset":120,"validator_len":4,"validator":77,"updated":1796000000}]}"#;

    /// The checkpoint fuzz target's entry point (`crate::fuzzing::checkpoint`: loaded, or
    /// set aside; what loads survives a store), run here on every test run.
    fn check(bytes: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        crate::fuzzing::checkpoint(&dir.path().join("data"), bytes);
    }

    #[test]
    fn the_valid_example_loads() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), VALID).unwrap();
        assert_eq!(load(dir.path()).unwrap().map(|e| e.len()), Some(1));
        check(VALID.as_bytes());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_load_or_are_set_aside(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            check(&bytes);
        }

        #[test]
        fn a_mutated_checkpoint_loads_or_is_set_aside(at in 0..VALID.len(), cut in any::<bool>(), byte in any::<u8>()) {
            let mut bytes = VALID.as_bytes().to_vec();
            if cut {
                bytes.truncate(at);
            } else {
                bytes[at] = byte;
            }
            check(&bytes);
        }
    }
}
