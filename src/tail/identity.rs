//! How a file is recognised across renames, restarts and inode reuse.
//!
//! * `(device, inode)` is the fast path: while the tailer holds a file open its inode cannot be
//!   reused, so an open file is identified by it alone.
//! * The *fingerprint* is a hash of the file's first bytes, up to `FINGERPRINT_MAX` — it grows
//!   with a young file, so a 20-byte file is read at once instead of waiting for 1 KiB. It
//!   tells a checkpointed file from a new file that got the same inode after a delete.
//! * The *resume validator* is a hash of the bytes just before a saved offset; if they changed
//!   while the agent was down (truncated, rewritten), reading starts again at 0.
//! * The *id seed* makes record ids deterministic: hash of (device, inode, generation, first
//!   line), so a replay after a crash yields the same ids.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use xxhash_rust::xxh3::xxh3_64;

use crate::mark::Mark;

/// Bytes of the file's start covered by a complete fingerprint.
pub const FINGERPRINT_MAX: usize = 1024;

/// `(len, hash)` of the first `min(size, FINGERPRINT_MAX)` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    pub len: u32,
    pub hash: u64,
}

/// Reads up to `len` bytes at `offset` (short only at end of file).
pub fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// The up to `VALIDATOR_MAX` bytes just before `offset`: what a mark there validates.
pub fn bytes_before(file: &File, offset: u64) -> io::Result<Vec<u8>> {
    let len = offset.min(crate::mark::VALIDATOR_MAX as u64);
    read_at(file, offset - len, len as usize)
}

/// Fingerprint of the first `min(size, FINGERPRINT_MAX)` bytes of `file`.
pub fn fingerprint(file: &File, size: u64) -> io::Result<Fingerprint> {
    let want = (size as usize).min(FINGERPRINT_MAX);
    let head = read_at(file, 0, want)?;
    Ok(Fingerprint {
        len: head.len() as u32,
        hash: xxh3_64(&head),
    })
}

/// Does `file` still start with the bytes `fp` was taken from?
pub fn fingerprint_matches(file: &File, fp: Fingerprint) -> io::Result<bool> {
    let head = read_at(file, 0, fp.len as usize)?;
    Ok(head.len() == fp.len as usize && xxh3_64(&head) == fp.hash)
}

/// Are the bytes before `mark` in `file` the ones its validator was taken from?
pub fn validator_matches(file: &File, mark: &Mark) -> io::Result<bool> {
    let len = u64::from(mark.validator_len);
    if len > mark.offset {
        return Ok(false);
    }
    let bytes = read_at(file, mark.offset - len, len as usize)?;
    Ok(crate::mark::validator_matches(mark, &bytes))
}

/// The seed of a file generation's record ids, from its identity and its first line
/// (`head` = the file's first bytes; only the part up to the first newline is used, so the
/// seed does not depend on how much of the file existed when it was first read).
pub fn id_seed(dev: u64, ino: u64, generation: u32, head: &[u8]) -> u64 {
    let first_line = match memchr::memchr(b'\n', head) {
        Some(i) => &head[..=i],
        None => head,
    };
    let mut key = Vec::with_capacity(20 + first_line.len());
    key.extend_from_slice(&dev.to_le_bytes());
    key.extend_from_slice(&ino.to_le_bytes());
    key.extend_from_slice(&generation.to_le_bytes());
    key.extend_from_slice(first_line);
    xxh3_64(&key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fingerprint_grows_and_matches_prefix() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"hello\n").unwrap();
        let fp = fingerprint(&f, 6).unwrap();
        assert_eq!(fp.len, 6);
        f.write_all(&[b'x'; 2000]).unwrap();
        assert!(fingerprint_matches(&f, fp).unwrap());
        assert_eq!(fingerprint(&f, 2006).unwrap().len, FINGERPRINT_MAX as u32);
        f.set_len(3).unwrap();
        assert!(!fingerprint_matches(&f, fp).unwrap());
    }

    #[test]
    fn validator_detects_rewrite() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"line one\nline two\n").unwrap();
        let m = Mark::at(18, b"line one\nline two\n");
        assert!(validator_matches(&f, &m).unwrap());
        f.set_len(0).unwrap();
        f.write_all_at(b"LINE ONE\nline two\n", 0).unwrap();
        assert!(!validator_matches(&f, &m).unwrap());
        assert!(!validator_matches(&f, &Mark { offset: 3, ..m }).unwrap());
    }

    #[test]
    fn id_seed_uses_first_line_only() {
        assert_eq!(id_seed(1, 2, 0, b"first\nsecond"), id_seed(1, 2, 0, b"first\nother"));
        assert_ne!(id_seed(1, 2, 0, b"first\n"), id_seed(1, 2, 1, b"first\n"));
    }
}
