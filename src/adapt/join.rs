//! Putting container runtimes' split lines back together. Both runtimes cut a long message into
//! pieces: CRI (containerd, CRI-O) tags every piece but the last `P`, Docker's json-file driver
//! writes 16 KiB pieces whose `log` lacks the trailing newline. The parsers mark such a piece
//! `partial`; a `PartialJoiner` (one per file) buffers the pieces per stream and returns the
//! whole message when its last piece arrives.
//!
//! - The joined record takes the first piece's time and fields; its message is the pieces'
//!   messages in order.
//! - `max_bytes` caps a joined message: the text past it is dropped (cut at a character
//!   boundary) and the record is marked `truncated`, so one runaway writer cannot hold the
//!   agent's memory.
//! - A piece with no pending partner (the usual, unsplit line) passes through untouched, still
//!   borrowing from its line.
//! - The joiner is fed whole lines; how the file was cut into read chunks does not matter, only
//!   that the caller keeps the same joiner for a file across chunks. At end of file, rotation
//!   or a flush timeout the caller takes what is left with `flush`, marked `partial`.

use std::borrow::Cow;

use super::parsed::{Parsed, Stream};

/// The default cap on a joined message, 1 MiB.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

/// Joins partial pieces per stream. See the module doc.
#[derive(Debug)]
pub struct PartialJoiner {
    max_bytes: usize,
    /// Pending message per stream: index 0 stdout (and lines without a stream), 1 stderr.
    pending: [Option<Parsed<'static>>; 2],
}

/// The joiner for `cri` lines.
pub type CriJoiner = PartialJoiner;
/// The joiner for `docker` lines.
pub type DockerJoiner = PartialJoiner;

impl Default for PartialJoiner {
    fn default() -> Self {
        PartialJoiner::new(DEFAULT_MAX_BYTES)
    }
}

impl PartialJoiner {
    /// A joiner that caps a joined message at `max_bytes` bytes (at least 1).
    pub fn new(max_bytes: usize) -> PartialJoiner {
        PartialJoiner {
            max_bytes: max_bytes.max(1),
            pending: [None, None],
        }
    }

    fn slot(stream: Option<Stream>) -> usize {
        usize::from(stream == Some(Stream::Stderr))
    }

    /// Feeds one parsed line. Returns the complete record when `rec` ends a message (or was
    /// never split); `None` while a split message is still being collected.
    pub fn push<'a>(&mut self, rec: Parsed<'a>) -> Option<Parsed<'a>> {
        let slot = Self::slot(rec.stream);
        match self.pending[slot].take() {
            None if !rec.partial => Some(rec),
            None => {
                let mut first = rec.into_owned();
                let mut message = first.message.into_owned();
                first.truncated |= cap(&mut message, self.max_bytes);
                first.message = Cow::Owned(message);
                self.pending[slot] = Some(first);
                None
            }
            Some(mut acc) => {
                let mut message = std::mem::take(&mut acc.message).into_owned();
                if !acc.truncated {
                    message.push_str(&rec.message);
                    acc.truncated |= cap(&mut message, self.max_bytes);
                }
                acc.truncated |= rec.truncated;
                acc.message = Cow::Owned(message);
                if rec.partial {
                    self.pending[slot] = Some(acc);
                    None
                } else {
                    acc.partial = false;
                    Some(acc)
                }
            }
        }
    }

    /// Whether a split message of `stream` is waiting for its last piece.
    pub fn is_pending_on(&self, stream: Option<Stream>) -> bool {
        self.pending[Self::slot(stream)].is_some()
    }

    /// Whether a split message is waiting for its last piece.
    pub fn is_pending(&self) -> bool {
        self.pending.iter().any(Option::is_some)
    }

    /// Heap bytes the waiting pieces hold (charged to the budget by the adapt worker).
    pub fn held_bytes(&self) -> usize {
        self.pending.iter().flatten().map(Parsed::heap_bytes).sum()
    }

    /// Takes the messages still waiting (stdout first), marked `partial`: their last piece never
    /// came (end of file, rotation, the caller's timeout).
    pub fn flush(&mut self) -> Vec<Parsed<'static>> {
        self.pending
            .iter_mut()
            .filter_map(Option::take)
            .map(|mut p| {
                p.partial = true;
                p
            })
            .collect()
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary; true if it cut.
fn cap(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}
