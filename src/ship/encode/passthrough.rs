//! `encoding = "raw"`: the lines as they were read, one per line — or, once a transform has
//! changed the batch, each record's message, so what a transform dropped or redacted never
//! reaches a raw sink.

use super::Limits;
use crate::chunk::Chunk;
use crate::record::{Body, Records};

/// Whether a transform changed the batch (`Table::transformed`).
pub(super) fn transformed(records: &Records) -> bool {
    matches!(&records.body, Body::Table(t) if t.transformed)
}

/// `Encoding::Raw` of a transformed batch: each record's message (empty without one) plus
/// `\n`, from record position `from`.
pub(super) fn encode_messages(records: &Records, from: usize, out: &mut Vec<u8>, limits: Limits) -> (usize, usize) {
    let Body::Table(t) = &records.body else {
        return (from, 0);
    };
    let mut pos = from;
    while pos < t.records.len() && !limits.reached(pos - from, out.len()) {
        if let Some(m) = t.records[pos].message {
            out.extend_from_slice(records.text(m).as_bytes());
        }
        out.push(b'\n');
        pos += 1;
    }
    (pos, pos - from)
}

/// `Encoding::Raw`: each line as read (without its `\r\n` or `\n`) plus `\n`. When the lines
/// to copy hold no `\r`, that is the input bytes themselves, copied as one run.
pub(super) fn encode_passthrough(chunk: &Chunk, from: usize, out: &mut Vec<u8>, limits: Limits) -> (usize, usize) {
    let data = &chunk.data[..];
    // Find where the per-line limits would stop, assuming output bytes = input bytes.
    let base = out.len();
    let (mut pos, mut records) = (from, 0);
    let mut stopped = false;
    for nl in memchr::memchr_iter(b'\n', &data[from..]) {
        if limits.reached(records, base + (pos - from)) {
            stopped = true;
            break;
        }
        pos = from + nl + 1;
        records += 1;
    }
    let unterminated = !stopped && pos < data.len() && !limits.reached(records, base + (pos - from));
    if unterminated {
        pos = data.len();
        records += 1;
    }
    let run = &data[from..pos];
    if memchr::memchr(b'\r', run).is_none() {
        out.extend_from_slice(run);
        if unterminated {
            out.push(b'\n');
        }
        return (pos, records);
    }
    // Some line ends in `\r\n`: the output differs from the input, so go line by line.
    let (mut pos, mut records) = (from, 0);
    while pos < data.len() && !limits.reached(records, out.len()) {
        let line = chunk.line_at(pos);
        out.extend_from_slice(&data[pos..line.end]);
        out.push(b'\n');
        pos = line.next;
        records += 1;
    }
    (pos, records)
}
