//! Writing Forward messages: the entries of a PackedForward stream (`[time, record]` pairs,
//! the record written by the caller), the message around them with its options (`size`,
//! `chunk`, `compressed`), and the ack a server sends for a chunk.
//!
//! Every write goes into a `Vec<u8>`, which cannot fail; rmp's writers still return a
//! `Result` (they take any `io::Write`), so `put` discards it in one place.

use std::io::Write as _;

use rmp::encode as enc;

use super::{EventTime, EVENT_TIME_EXT};

/// How an entry's time is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// The EventTime extension: seconds and nanoseconds (Fluentd v0.14+, Fluent Bit).
    EventTime,
    /// Integer seconds: for v0 servers (Fluentd before v0.14) that cannot read the extension.
    Seconds,
}

/// Runs an rmp writer on a `Vec<u8>`: it cannot fail.
fn put<T, E>(r: Result<T, E>) {
    let _ = r;
}

/// The start of one PackedForward entry: the two-element array and its time. The caller
/// writes the record (a map) next.
pub fn entry_start(out: &mut Vec<u8>, time_ns: i64, format: TimeFormat) {
    put(enc::write_array_len(out, 2));
    let t = EventTime::from_unix_nanos(time_ns);
    match format {
        TimeFormat::EventTime => {
            put(enc::write_ext_meta(out, 8, EVENT_TIME_EXT));
            out.extend_from_slice(&t.secs.to_be_bytes());
            out.extend_from_slice(&t.nanos.to_be_bytes());
        }
        TimeFormat::Seconds => put(enc::write_uint(out, u64::from(t.secs))),
    }
}

/// A map's header.
pub fn map_len(out: &mut Vec<u8>, len: u32) {
    put(enc::write_map_len(out, len));
}

/// An array's header.
pub fn array_len(out: &mut Vec<u8>, len: u32) {
    put(enc::write_array_len(out, len));
}

pub fn str(out: &mut Vec<u8>, s: &str) {
    put(enc::write_str(out, s));
}

pub fn int(out: &mut Vec<u8>, n: i64) {
    put(enc::write_sint(out, n));
}

pub fn uint(out: &mut Vec<u8>, n: u64) {
    put(enc::write_uint(out, n));
}

pub fn float(out: &mut Vec<u8>, f: f64) {
    put(enc::write_f64(out, f));
}

pub fn bool(out: &mut Vec<u8>, b: bool) {
    put(enc::write_bool(out, b));
}

pub fn nil(out: &mut Vec<u8>) {
    put(enc::write_nil(out));
}

/// The options of a PackedForward message.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// How many entries the stream holds.
    pub size: u32,
    /// The chunk id the server acknowledges with `{"ack": chunk}`; `None`: no ack wanted.
    pub chunk: Option<&'a str>,
    /// Whether `entries` is gzip-compressed (CompressedPackedForward).
    pub gzip: bool,
}

/// A whole PackedForward (or, with `gzip`, CompressedPackedForward) message:
/// `[tag, entries, {size, chunk?, compressed?}]`. `entries` is the stream as it goes on the
/// wire (already compressed when `gzip`); it is written as msgpack `bin`.
pub fn packed_forward(tag: &str, entries: &[u8], options: Options<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() + tag.len() + 64);
    array_len(&mut out, 3);
    str(&mut out, tag);
    put(enc::write_bin(&mut out, entries));
    let n = 1 + u32::from(options.chunk.is_some()) + u32::from(options.gzip);
    map_len(&mut out, n);
    str(&mut out, "size");
    uint(&mut out, u64::from(options.size));
    if let Some(chunk) = options.chunk {
        str(&mut out, "chunk");
        str(&mut out, chunk);
    }
    if options.gzip {
        str(&mut out, "compressed");
        str(&mut out, "gzip");
    }
    out
}

/// gzip of an entry stream, for CompressedPackedForward.
pub fn gzip(entries: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::with_capacity(entries.len() / 4 + 64), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = z.write_all(entries);
    z.finish().unwrap_or_default()
}

/// The server's answer to a message with a `chunk` option: `{"ack": chunk}`.
pub fn ack(chunk: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunk.len() + 8);
    map_len(&mut out, 1);
    str(&mut out, "ack");
    str(&mut out, chunk);
    out
}

/// A chunk id: unique per message over the agent's life (a random prefix per sink and a
/// sequence number), as base64 text as Fluent's clients send it.
pub fn chunk_id(prefix: u64, seq: u64) -> String {
    use base64::Engine as _;
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&prefix.to_be_bytes());
    raw[8..].copy_from_slice(&seq.to_be_bytes());
    base64::engine::general_purpose::STANDARD.encode(raw)
}
