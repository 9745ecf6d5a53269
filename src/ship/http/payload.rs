//! What one batch's requests are made from (`Payload`: the encoded NDJSON of the `http`
//! protocol, or the records themselves for the others), numbered so that a retry of some of
//! them (Elasticsearch items) can name them; and the records rejected for good (`Dead`), kept
//! as NDJSON for the dead-letter file.

use std::ops::Range;

use bytes::Bytes;

use crate::config::Encoding;
use crate::record::RecordRef;
use crate::ship::batcher::Part;
use crate::ship::encode::Encoder;

/// Records a collector rejected for good, as NDJSON, and the first reason (for the log).
#[derive(Debug, Default)]
pub struct Dead {
    pub ndjson: Vec<u8>,
    pub records: usize,
    pub why: String,
}

impl Dead {
    pub fn add(&mut self, payload: &Payload, items: &[usize], why: &str) {
        if items.is_empty() {
            return;
        }
        payload.ndjson_of(items, &mut self.ndjson);
        self.records += items.len();
        if self.why.is_empty() {
            self.why = why.to_owned();
        }
    }
}

/// What a batch's requests are made from. Its items (records) are numbered from 0 in batch
/// order; a retry of some of them names them by number.
#[derive(Debug)]
pub enum Payload {
    /// The `http` protocol: the records encoded as NDJSON on the sink thread, which is the
    /// body (framed and compressed as configured); `lines[i]` is item `i`. `parts` are never
    /// read: held so that the chunks' budget keeps the tailer back until the ack.
    Ndjson {
        bytes: Bytes,
        lines: Vec<Range<usize>>,
        parts: Vec<Part>,
    },
    /// The other protocols build their bodies from the records; item `i` is the record at
    /// position `at[i].1` of `parts[at[i].0]`.
    Records { parts: Vec<Part>, at: Vec<(usize, usize)> },
}

impl Payload {
    pub fn ndjson(bytes: Bytes, parts: Vec<Part>) -> Payload {
        let mut lines = Vec::new();
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &bytes) {
            lines.push(start..nl);
            start = nl + 1;
        }
        Payload::Ndjson { bytes, lines, parts }
    }

    pub fn records(parts: Vec<Part>) -> Payload {
        let mut at = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let mut pos = p.from;
            while pos < p.to {
                let Some((_, next)) = p.records.record_at(pos) else {
                    break;
                };
                at.push((i, pos));
                pos = next;
            }
        }
        Payload::Records { parts, at }
    }

    /// Whether `body` is this payload's own encoded bytes (not a copy).
    pub fn holds(&self, body: &Bytes) -> bool {
        matches!(self, Payload::Ndjson { bytes, .. } if bytes.as_ptr() == body.as_ptr() && bytes.len() == body.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        match self {
            Payload::Ndjson { lines, .. } => lines.len(),
            Payload::Records { at, .. } => at.len(),
        }
    }

    /// The records `items`, in order.
    pub fn refs<'a>(&'a self, items: &'a [usize]) -> impl Iterator<Item = RecordRef<'a>> + 'a {
        items.iter().filter_map(move |&i| match self {
            Payload::Ndjson { .. } => None,
            Payload::Records { parts, at } => {
                let (part, pos) = *at.get(i)?;
                parts.get(part)?.records.record_at(pos).map(|(r, _)| r)
            }
        })
    }

    /// Appends the records `items` as NDJSON lines.
    pub fn ndjson_of(&self, items: &[usize], out: &mut Vec<u8>) {
        match self {
            Payload::Ndjson { bytes, lines, .. } => {
                for r in items.iter().filter_map(|&i| lines.get(i)) {
                    out.extend_from_slice(&bytes[r.clone()]);
                    out.push(b'\n');
                }
            }
            Payload::Records { .. } => {
                let mut enc = Encoder::new(Encoding::Ndjson);
                for r in self.refs(items) {
                    enc.record(&r, out);
                    out.push(b'\n');
                }
            }
        }
    }
}
