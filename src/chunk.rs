//! The unit that moves from the tailer to the sinks: a run of whole lines read from one
//! file, as one `Bytes` slice of the read buffer (never a per-line copy), plus where it came
//! from. Every sink receives the same `Arc<Chunk>`; the in-flight budget is released when the
//! last holder (the sink batches waiting for their ack) drops it.

use std::sync::Arc;

use bytes::Bytes;

use crate::budget::BudgetGuard;

/// What every record from one open file shares. A rename gives the file a new `FileMeta`
/// (new path), but `uid`, `id_prefix` and `source` stay the same for the file's lifetime.
#[derive(Debug)]
pub struct FileMeta {
    /// Key of the file's checkpoint entry (stable for one generation of one file).
    pub uid: u64,
    /// Index of the `[[sources]]` entry that matched the file.
    pub source: usize,
    /// The path the lines were read from, as the user would recognise it.
    pub path: Arc<str>,
    /// `path` as a JSON string literal, quotes included, escaped once per file.
    pub path_json: Box<str>,
    /// The record `id` of a line is `id_prefix` followed by the line's byte offset. The prefix
    /// is derived from the file's identity and generation so that a replay after a crash
    /// produces the same ids (see `tail::identity`).
    pub id_prefix: Box<str>,
}

/// Lines read from one file: `data` is exactly the file's bytes `[start, start + data.len())`.
///
/// `data` holds whole lines, each ending in `\n`, with two exceptions told by the flags:
/// the last line may lack its `\n` (`tail_truncated`: it is a piece of an over-long line and
/// continues in the next chunk; otherwise an unterminated last line flushed after
/// `partial_line_timeout` or at rotation/shutdown), and the first line may be the remaining
/// piece of such a split line (`head_continues`).
#[derive(Debug)]
pub struct Chunk {
    pub file: Arc<FileMeta>,
    /// File offset of `data[0]`.
    pub start: u64,
    pub data: Bytes,
    /// When the tailer read these bytes, nanoseconds since the Unix epoch.
    pub observed_ns: i64,
    /// The first line continues a line split at `max_line_bytes` in an earlier chunk.
    pub head_continues: bool,
    /// The last line has no `\n` because it was split at `max_line_bytes`; more follows.
    pub tail_truncated: bool,
    /// Holds the chunk's bytes against `max_inflight_bytes` until every sink is done with it.
    pub budget: BudgetGuard,
}

/// Where one line of a chunk lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    /// End of the content: before the `\n`, and before one `\r` preceding it.
    pub end: usize,
    /// Start of the next line (past the `\n`), or the end of the data.
    pub next: usize,
    pub terminated: bool,
}

/// The number of lines in `data`: its newlines, plus one for an unterminated last line.
pub fn count_lines(data: &[u8]) -> usize {
    bytecount::count(data, b'\n') + usize::from(!data.is_empty() && !data.ends_with(b"\n"))
}

impl Chunk {
    /// Where the content of the unterminated last line ends. A flushed partial line loses a
    /// trailing `\r` like any line; a piece of a split line keeps it, because there it is not
    /// a line ending.
    pub fn content_end(&self) -> usize {
        let d = &self.data[..];
        if !self.tail_truncated && !d.ends_with(b"\n") && d.ends_with(b"\r") {
            d.len() - 1
        } else {
            d.len()
        }
    }

    /// The line that starts at `pos` (`pos` < the data's length).
    pub fn line_at(&self, pos: usize) -> Line {
        let d = &self.data[..];
        match memchr::memchr(b'\n', &d[pos..]) {
            Some(i) => {
                let nl = pos + i;
                let end = if i > 0 && d[nl - 1] == b'\r' { nl - 1 } else { nl };
                Line {
                    end,
                    next: nl + 1,
                    terminated: true,
                }
            }
            None => Line {
                end: self.content_end().max(pos),
                next: d.len(),
                terminated: false,
            },
        }
    }

    /// Every line of the chunk: `(start, line)`.
    pub fn lines(&self) -> impl Iterator<Item = (usize, Line)> + '_ {
        let mut pos = 0;
        std::iter::from_fn(move || {
            if pos >= self.data.len() {
                return None;
            }
            let start = pos;
            let line = self.line_at(pos);
            pos = line.next;
            Some((start, line))
        })
    }

    /// File offset just past the chunk's last byte: where the checkpoint moves once every
    /// sink has acknowledged the chunk.
    pub fn end(&self) -> u64 {
        self.start + self.data.len() as u64
    }
}
