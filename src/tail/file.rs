//! One tailed file: its open descriptor, how far it has been read, the partial line waiting
//! for its newline, and the checks that notice truncation and in-place rewrites.
//!
//! Offsets: `buf` holds the bytes `[buf_offset, read_offset)`, i.e. the partial last line;
//! everything before `buf_offset` has been handed on in chunks.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::identity::{self, Fingerprint};
use super::lines::{LineSplitter, Split};
use crate::budget::{Budget, BudgetGuard};
use crate::chunk::FileMeta;

/// `(device, inode)`.
pub type FileKey = (u64, u64);

/// Opens `path` for tailing: regular files only, checked on the open descriptor. The app next
/// door may swap a FIFO (or a device) in between discovery's type check and this open; a
/// plain open of a FIFO blocks until a writer comes, which would freeze the tailer, so the open
/// does not block (`O_NONBLOCK`, which changes nothing for a regular file) and anything but a
/// regular file is refused. A link at the last name is not followed (`O_NOFOLLOW`): callers
/// pass a path already resolved and allowed (`admit`), or one that must be the file itself
/// (a copytruncate copy, a file found by its inode).
pub fn open_regular(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok(file)
}

pub struct Tracked {
    pub key: FileKey,
    pub uid: u64,
    pub source: usize,
    pub file: File,
    /// The path the file was last seen at.
    pub path: PathBuf,
    /// False once the path no longer leads to this file (renamed away or deleted): the
    /// file is then drained and closed after `rotate_wait` without growth.
    pub attached: bool,
    pub generation: u32,
    pub id_seed: Option<u64>,
    pub fp: Fingerprint,
    /// Shared by the chunks of this file until the path changes; built at the first chunk.
    pub meta: Option<Arc<FileMeta>>,
    pub read_offset: u64,
    /// File offset of `buf[0]`.
    pub buf_offset: u64,
    pub buf: BytesMut,
    /// The in-flight budget charged for `buf` (`charge_partial`): a partial line is memory
    /// held for data not yet shipped, like a chunk.
    held: Option<BudgetGuard>,
    pub splitter: LineSplitter,
    /// The last bytes read (at most `crate::mark::VALIDATOR_MAX`), to notice a rewrite.
    pub last_bytes: Vec<u8>,
    /// When `buf` last grew: the partial line is flushed `partial_line_timeout` after it.
    pub partial_since: Instant,
    /// When the file last grew (or was detached): a detached file is closed `rotate_wait`
    /// after this.
    pub last_growth: Instant,
    /// There may be bytes to read.
    pub dirty: bool,
    /// The last read found no more bytes.
    pub at_eof: bool,
    /// Size seen at the last stat.
    pub size: u64,
    /// For a copy adopted after a copytruncate: where the live file was truncated. Nothing
    /// past it is read, and the copy is closed once read up to it; bytes beyond it (the next
    /// rotation rewriting the same copy) belong to a later generation, read from the live file.
    pub limit: Option<u64>,
}

/// Who a file generation is and where its reading stands, when it is opened or reopened.
pub struct Position {
    pub uid: u64,
    pub source: usize,
    pub generation: u32,
    pub id_seed: Option<u64>,
    pub fp: Fingerprint,
    pub offset: u64,
    /// The bytes just before `offset` (see `Tracked::last_bytes`).
    pub last_bytes: Vec<u8>,
}

impl Tracked {
    /// `file` (`key`, at `path`, `size` bytes at its last stat), to be read from `at.offset` on
    /// with nothing buffered yet.
    pub fn new(key: FileKey, file: File, path: PathBuf, size: u64, max_line_bytes: usize, at: Position) -> Tracked {
        let now = Instant::now();
        Tracked {
            key,
            uid: at.uid,
            source: at.source,
            file,
            path,
            attached: true,
            generation: at.generation,
            id_seed: at.id_seed,
            fp: at.fp,
            meta: None,
            read_offset: at.offset,
            buf_offset: at.offset,
            buf: BytesMut::new(),
            held: None,
            splitter: LineSplitter::new(max_line_bytes),
            last_bytes: at.last_bytes,
            partial_since: now,
            last_growth: now,
            dirty: true,
            at_eof: false,
            size,
            limit: None,
        }
    }
}

/// What a read attempt found.
pub enum ReadResult {
    /// `n` bytes were read; `splits` holds the complete lines (if any).
    Data(usize),
    /// Nothing new.
    Eof,
    /// The file shrank below our offset or the bytes before it changed: it was truncated
    /// (copytruncate) and possibly written again already.
    Truncated,
}

impl Tracked {
    /// Reads the next bytes (at most `max_read`) and splits off complete lines into `splits`.
    pub fn read(&mut self, max_read: usize, splits: &mut Vec<Split>) -> io::Result<ReadResult> {
        let size = self.file.metadata()?.len();
        self.size = size;
        if size < self.read_offset {
            return Ok(ReadResult::Truncated);
        }
        let end = self.limit.map_or(size, |l| l.min(size));
        let avail = end.saturating_sub(self.read_offset);
        if avail == 0 {
            if size == self.read_offset && self.limit.is_none() && self.rewritten_before_offset()? {
                // Truncated and refilled to exactly our offset: the size says nothing.
                return Ok(ReadResult::Truncated);
            }
            self.at_eof = true;
            return Ok(ReadResult::Eof);
        }
        let want = (avail as usize).min(max_read);
        // A fresh allocation sized to what is there, holding the partial line and the new
        // bytes: a chunk pins its allocation, so small writes must not each pin a large
        // buffer, and chunks still in flight must not be copied. `read_to_end` fills the
        // spare capacity without zeroing it first.
        let old_len = self.buf.len();
        let mut v = Vec::with_capacity(old_len + want);
        v.extend_from_slice(&self.buf);
        let read = (&self.file)
            .seek(SeekFrom::Start(self.read_offset))
            .and_then(|_| (&self.file).take(want as u64).read_to_end(&mut v));
        read?;
        let filled = v.len() - old_len;
        self.buf = BytesMut::from(bytes::Bytes::from(v));
        if filled == 0 {
            self.at_eof = true;
            return Ok(ReadResult::Eof);
        }
        // The refill race: the writer truncated the file and wrote past our offset before
        // we looked, so the size alone shows nothing; the bytes just before our offset then
        // differ from the ones we read there. Checked after the read, so a truncation racing
        // with it cannot pass new bytes off as old ones.
        if self.rewritten_before_offset()? {
            self.buf.truncate(old_len);
            return Ok(ReadResult::Truncated);
        }
        self.at_eof = filled as u64 == avail;
        self.read_offset += filled as u64;
        // Remember the last bytes read (not the partial line's older bytes, which are
        // already in `last_bytes`).
        let fresh = &self.buf[old_len..];
        let tail = &fresh[fresh.len().saturating_sub(crate::mark::VALIDATOR_MAX)..];
        let keep = crate::mark::VALIDATOR_MAX - tail.len();
        let drop = self.last_bytes.len().saturating_sub(keep);
        self.last_bytes.drain(..drop);
        self.last_bytes.extend_from_slice(tail);

        let before = splits.len();
        self.splitter.split(&mut self.buf, splits);
        if splits.len() > before {
            // What is left of the buffer (the partial line, or nothing) would pin the whole
            // read's allocation after the chunks split off it are delivered: 256 KiB per
            // file that is quiet after a read. A copy of its own holds only what the budget
            // charges for it (`charge_partial`).
            self.buf = if self.buf.is_empty() {
                BytesMut::new()
            } else {
                BytesMut::from(&self.buf[..])
            };
        }
        let now = Instant::now();
        self.last_growth = now;
        if !self.buf.is_empty() {
            self.partial_since = now;
        }
        Ok(ReadResult::Data(filled))
    }

    /// Charges the budget for the partial line as it is now (after a read, a flush, a cut).
    pub fn charge_partial(&mut self, budget: &Arc<Budget>) {
        let now = self.buf.len();
        if self.held.as_ref().map_or(0, BudgetGuard::bytes) != now {
            self.held = (now > 0).then(|| budget.take(now));
        }
    }

    /// Bytes of the partial line charged to the budget.
    pub fn partial_bytes(&self) -> usize {
        self.held.as_ref().map_or(0, BudgetGuard::bytes)
    }

    /// Whether the bytes just before `read_offset` are no longer the ones read there.
    fn rewritten_before_offset(&self) -> io::Result<bool> {
        if self.read_offset == 0 || self.last_bytes.is_empty() {
            return Ok(false);
        }
        let n = self.last_bytes.len();
        let now = identity::read_at(&self.file, self.read_offset - n as u64, n)?;
        Ok(now != self.last_bytes)
    }

    /// A partial line sits at the end of what is on disk, waiting for its newline. (One cut
    /// short by the in-flight budget, or with new bytes not read yet, has its rest unread,
    /// not missing: the partial-line timeout does not apply to it.)
    pub fn waits_for_newline(&self) -> bool {
        !self.buf.is_empty() && self.at_eof && !self.dirty
    }

    /// An adopted copy read up to where its live file was truncated: nothing more is ours.
    pub fn copy_done(&self) -> bool {
        self.limit.is_some_and(|l| self.read_offset >= l)
    }

    /// Takes the file offset for the next `len` bytes handed on, advancing `buf_offset`.
    pub fn take_range(&mut self, len: usize) -> u64 {
        let start = self.buf_offset;
        self.buf_offset += len as u64;
        start
    }

    /// Starts a new generation at offset 0 after a truncation. The caller flushes the old
    /// partial line first and registers the new generation.
    pub fn restart_generation(&mut self, uid: u64) {
        self.generation += 1;
        self.uid = uid;
        self.id_seed = None;
        self.meta = None;
        self.read_offset = 0;
        self.buf_offset = 0;
        self.buf = BytesMut::new();
        self.held = None;
        self.splitter.reset();
        self.last_bytes.clear();
        self.fp = Fingerprint::default();
        self.at_eof = false;
        self.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    /// A FIFO with no writer: a plain open would block for ever; this one returns at once,
    /// refusing it, while a regular file opens.
    #[test]
    fn open_regular_refuses_a_fifo_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("swapped.log");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo must be installed");
        assert!(made.success(), "mkfifo failed");
        let (tx, rx) = std::sync::mpsc::channel();
        let at = fifo.clone();
        std::thread::spawn(move || tx.send(open_regular(&at).map(|_| ()).map_err(|e| e.kind())));
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("opening a FIFO must not block");
        assert_eq!(got, Err(io::ErrorKind::InvalidInput));
        let plain = dir.path().join("app.log");
        std::fs::write(&plain, b"line\n").unwrap();
        let mut text = String::new();
        open_regular(&plain).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "line\n");
    }

    fn tracked(file: File) -> Tracked {
        let at = Position {
            uid: 1,
            source: 0,
            generation: 0,
            id_seed: None,
            fp: Fingerprint::default(),
            offset: 0,
            last_bytes: Vec::new(),
        };
        Tracked::new((0, 0), file, PathBuf::from("/t.log"), 0, 1 << 20, at)
    }

    fn read_all(t: &mut Tracked) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut splits = Vec::new();
        loop {
            match t.read(7, &mut splits).unwrap() {
                ReadResult::Data(_) => {
                    for s in splits.drain(..) {
                        t.take_range(s.data.len());
                        out.extend_from_slice(&s.data);
                    }
                }
                ReadResult::Eof => return (out, false),
                ReadResult::Truncated => return (out, true),
            }
        }
    }

    #[test]
    fn reads_whole_lines_and_keeps_the_partial_one() {
        let path = tempfile::NamedTempFile::new().unwrap();
        let mut w = path.reopen().unwrap();
        w.write_all(b"one\ntwo\nthr").unwrap();
        let mut t = tracked(File::open(path.path()).unwrap());
        assert_eq!(read_all(&mut t), (b"one\ntwo\n".to_vec(), false));
        assert_eq!(&t.buf[..], b"thr");
        assert_eq!((t.buf_offset, t.read_offset), (8, 11));
        w.write_all(b"ee\n").unwrap();
        assert_eq!(read_all(&mut t), (b"three\n".to_vec(), false));
    }

    #[test]
    fn notices_truncation_by_size() {
        let path = tempfile::NamedTempFile::new().unwrap();
        let w = path.reopen().unwrap();
        (&w).write_all(b"aaaa\nbbbb\n").unwrap();
        let mut t = tracked(File::open(path.path()).unwrap());
        read_all(&mut t);
        w.set_len(0).unwrap();
        w.write_all_at(b"c\n", 0).unwrap();
        assert!(read_all(&mut t).1);
    }

    #[test]
    fn notices_truncation_refilled_past_the_old_offset() {
        // The writer truncated and wrote more than we had read before we looked again: the
        // size alone says "grew", the bytes before our offset say "rewritten".
        let path = tempfile::NamedTempFile::new().unwrap();
        let w = path.reopen().unwrap();
        w.write_all_at(b"line 1\nline 2\n", 0).unwrap();
        let mut t = tracked(File::open(path.path()).unwrap());
        read_all(&mut t);
        w.set_len(0).unwrap();
        w.write_all_at(b"line 3\nline 4\nline 5\n", 0).unwrap();
        assert!(read_all(&mut t).1);
        t.restart_generation(2);
        assert_eq!(read_all(&mut t), (b"line 3\nline 4\nline 5\n".to_vec(), false));
    }

    #[test]
    fn notices_truncation_refilled_to_exactly_the_old_offset() {
        let path = tempfile::NamedTempFile::new().unwrap();
        let w = path.reopen().unwrap();
        w.write_all_at(b"aa\nbb\n", 0).unwrap();
        let mut t = tracked(File::open(path.path()).unwrap());
        read_all(&mut t);
        w.set_len(0).unwrap();
        w.write_all_at(b"cc\ndd\n", 0).unwrap();
        assert!(read_all(&mut t).1, "same size, other bytes: a truncation");
    }

    #[test]
    fn a_bounded_copy_is_not_read_past_its_limit_nor_taken_for_truncated() {
        let path = tempfile::NamedTempFile::new().unwrap();
        let w = path.reopen().unwrap();
        w.write_all_at(b"one\ntwo\n", 0).unwrap();
        let mut t = tracked(File::open(path.path()).unwrap());
        t.limit = Some(4);
        assert_eq!(read_all(&mut t), (b"one\n".to_vec(), false));
        assert!(t.copy_done());
        // The next rotation rewrites the copy: nothing of it is read.
        w.set_len(0).unwrap();
        w.write_all_at(b"ONE\nTWO\nTHREE\n", 0).unwrap();
        assert_eq!(read_all(&mut t), (Vec::new(), false));
    }

    #[test]
    fn plain_appends_are_not_truncations() {
        let path = tempfile::NamedTempFile::new().unwrap();
        let mut w = path.reopen().unwrap();
        let mut t = tracked(File::open(path.path()).unwrap());
        let mut expect = Vec::new();
        for i in 0..200 {
            let line = format!("{i} {}\n", "x".repeat(i % 13));
            w.write_all(line.as_bytes()).unwrap();
            expect.extend_from_slice(line.as_bytes());
            if i % 7 == 0 {
                let (got, truncated) = read_all(&mut t);
                assert!(!truncated);
                let _ = got;
            }
        }
        read_all(&mut t);
        assert_eq!(t.read_offset, expect.len() as u64);
    }
}
