//! The record encoders: the hot path that turns a chunk's lines into a sink's wire format.
//!
//! A record is mostly constant for a chunk (the observed time, the file, the id prefix, the
//! resource), so those byte runs are rendered once per chunk or once per encoder and copied;
//! the per-line work is one scan of the line that finds its end and the bytes to escape,
//! two `itoa`s of the offset, and a handful of `extend_from_slice`s. The raw path allocates
//! nothing per line. The record shape is the table in DESIGN.md.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::adapt::json::{self, JsonLine, Message};
use crate::chunk::{Chunk, FileMeta};
use crate::config::{Encoding, Format};
use crate::ship::escape::{escape_into, escape_line_into};
use crate::timefmt;

/// What encoding found, for the metrics. The per-line problems are kept per source index
/// (grown on demand) because the metrics count them per source.
#[derive(Default, Debug, Clone)]
pub struct EncodeStats {
    pub records: u64,
    /// Lines whose invalid UTF-8 was replaced with U+FFFD, per source index.
    pub invalid_utf8: Vec<u64>,
    /// Lines that did not parse in their source's format and were shipped raw, per source index.
    pub parse_errors: Vec<u64>,
}

fn bump(counts: &mut Vec<u64>, source: usize) {
    if counts.len() <= source {
        counts.resize(source + 1, 0);
    }
    counts[source] += 1;
}

const MARK_CONTINUATION: &[u8] = br#","fields":{"continuation":true}"#;
const MARK_TRUNCATED: &[u8] = br#","fields":{"truncated":true}"#;
const MARK_BOTH: &[u8] = br#","fields":{"continuation":true,"truncated":true}"#;

/// Encodes chunks for one sink. Holds only caches; any chunk can follow any other.
pub struct Encoder {
    encoding: Encoding,
    /// The format of each source, by source index.
    formats: Vec<Format>,
    /// How every record ends: `,"resource":{…}}` and the newline, or just `}` and the newline.
    record_end: Vec<u8>,
    consts: ChunkConsts,
    /// The UTF-8 verdict on a chunk the last call did not finish, so the next call (which
    /// resumes it at `from > 0`) need not check the rest of it again.
    utf8_memo: Option<Utf8Memo>,
    /// The text of a parse error, reused so that bad lines do not allocate each time.
    scratch: String,
}

/// Identifies a chunk by where its bytes are and which file range they hold. A later chunk
/// could only match by reusing the freed address for the same range of the same file
/// generation, which is the same bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Utf8Memo {
    data_addr: usize,
    len: usize,
    uid: u64,
    start: u64,
    valid: bool,
}

/// Byte runs shared by every record of a chunk, rebuilt only when the observed time or the
/// file changes.
#[derive(Default)]
struct ChunkConsts {
    observed_ns: Option<i64>,
    /// `{"timestamp":"OBS","observed_timestamp":"OBS"`: the head of a record without event time.
    head_observed: Vec<u8>,
    /// `head_observed` + `,"message":"`: the head of a raw record.
    head_raw: Vec<u8>,
    /// `","observed_timestamp":"OBS"`: follows an event time.
    after_event_time: Vec<u8>,
    file: Option<Arc<FileMeta>>,
    /// `","file":PATH,"offset":`. Its leading `"` closes a raw record's message; records whose
    /// message is not open skip it.
    file_offset: Vec<u8>,
    /// `,"id":"PREFIX`: the offset and the closing quote follow.
    id_head: Vec<u8>,
}

impl ChunkConsts {
    fn prepare(&mut self, chunk: &Chunk) {
        if self.observed_ns != Some(chunk.observed_ns) {
            let mut t = Vec::with_capacity(30);
            timefmt::rfc3339_nanos(chunk.observed_ns, &mut t);
            self.head_observed.clear();
            self.head_observed.extend_from_slice(br#"{"timestamp":""#);
            self.head_observed.extend_from_slice(&t);
            self.head_observed.extend_from_slice(br#"","observed_timestamp":""#);
            self.head_observed.extend_from_slice(&t);
            self.head_observed.push(b'"');
            self.head_raw.clear();
            self.head_raw.extend_from_slice(&self.head_observed);
            self.head_raw.extend_from_slice(br#","message":""#);
            self.after_event_time.clear();
            self.after_event_time.extend_from_slice(br#"","observed_timestamp":""#);
            self.after_event_time.extend_from_slice(&t);
            self.after_event_time.push(b'"');
            self.observed_ns = Some(chunk.observed_ns);
        }
        if !self.file.as_ref().is_some_and(|f| Arc::ptr_eq(f, &chunk.file)) {
            self.file_offset.clear();
            self.file_offset.extend_from_slice(br#"","file":"#);
            self.file_offset.extend_from_slice(chunk.file.path_json.as_bytes());
            self.file_offset.extend_from_slice(br#","offset":"#);
            self.id_head.clear();
            self.id_head.extend_from_slice(br#","id":""#);
            escape_into(&mut self.id_head, chunk.file.id_prefix.as_bytes());
            self.file = Some(Arc::clone(&chunk.file));
        }
    }
}

/// When a call stops: after `max_events` records, or once the output reached `max_bytes`;
/// never before the first record.
#[derive(Clone, Copy)]
struct Limits {
    max_events: usize,
    max_bytes: usize,
}

impl Limits {
    #[inline]
    fn reached(&self, records: usize, out_len: usize) -> bool {
        records >= self.max_events || (records > 0 && out_len >= self.max_bytes)
    }
}

/// Where one line of a chunk lies.
struct Line {
    start: usize,
    /// End of the content: before the `\n`, and before one `\r` preceding it.
    end: usize,
    /// Start of the next line (past the `\n`), or the end of the data.
    next: usize,
    terminated: bool,
}

/// The line starting at `pos`. `content_end` is where an unterminated last line's content
/// ends (the data's end, or one byte before it to drop a trailing `\r`).
#[inline]
fn line_at(data: &[u8], pos: usize, content_end: usize) -> Line {
    match memchr::memchr(b'\n', &data[pos..]) {
        Some(i) => {
            let nl = pos + i;
            let end = if i > 0 && data[nl - 1] == b'\r' { nl - 1 } else { nl };
            Line {
                start: pos,
                end,
                next: nl + 1,
                terminated: true,
            }
        }
        None => Line {
            start: pos,
            end: content_end.max(pos),
            next: data.len(),
            terminated: false,
        },
    }
}

/// Where the content of the chunk's unterminated last line ends. A flushed partial line loses
/// a trailing `\r` like any line; a piece of a split line keeps it, because there it is not
/// a line ending.
fn unterminated_content_end(chunk: &Chunk) -> usize {
    let d = &chunk.data[..];
    if !chunk.tail_truncated && !d.ends_with(b"\n") && d.ends_with(b"\r") {
        d.len() - 1
    } else {
        d.len()
    }
}

fn marks(continues: bool, truncated: bool) -> &'static [u8] {
    match (continues, truncated) {
        (false, false) => b"",
        (true, false) => MARK_CONTINUATION,
        (false, true) => MARK_TRUNCATED,
        (true, true) => MARK_BOTH,
    }
}

/// Writes `","file":PATH,"offset":N,"id":"PREFIXN"`; `skip` = 1 leaves out the leading quote
/// for records whose message is not an open string.
#[inline]
fn write_location(out: &mut Vec<u8>, consts: &ChunkConsts, skip: usize, offset: u64) {
    let mut digits = itoa::Buffer::new();
    let offset = digits.format(offset).as_bytes();
    out.extend_from_slice(&consts.file_offset[skip..]);
    out.extend_from_slice(offset);
    out.extend_from_slice(&consts.id_head);
    out.extend_from_slice(offset);
    out.push(b'"');
}

impl Encoder {
    /// `formats[i]` is the format of source `i`; `resource` holds the record's `resource`
    /// attributes, the same for every record, so they are rendered here once.
    pub fn new(encoding: Encoding, formats: Vec<Format>, resource: &BTreeMap<String, String>) -> Encoder {
        let mut record_end = Vec::new();
        if !resource.is_empty() {
            record_end.extend_from_slice(br#","resource":{"#);
            for (i, (k, v)) in resource.iter().enumerate() {
                if i > 0 {
                    record_end.push(b',');
                }
                record_end.push(b'"');
                escape_into(&mut record_end, k.as_bytes());
                record_end.extend_from_slice(b"\":\"");
                escape_into(&mut record_end, v.as_bytes());
                record_end.push(b'"');
            }
            record_end.push(b'}');
        }
        record_end.extend_from_slice(b"}\n");
        Encoder {
            encoding,
            formats,
            record_end,
            consts: ChunkConsts::default(),
            utf8_memo: None,
            scratch: String::new(),
        }
    }

    /// Encodes the records of `chunk.data[from..]` (`from` is the start of a line, 0 or a
    /// position an earlier call returned) line by line, appending them to `out`.
    ///
    /// Stops after `max_events` records, or as soon as `out.len() >= max_bytes` (the record
    /// that crosses it is kept); at least one record is encoded if any remain. Returns the
    /// position in `chunk.data` just past the last line encoded and the number of records.
    pub fn encode(
        &mut self,
        chunk: &Chunk,
        from: usize,
        out: &mut Vec<u8>,
        max_events: usize,
        max_bytes: usize,
        stats: &mut EncodeStats,
    ) -> (usize, usize) {
        let data = &chunk.data[..];
        if from >= data.len() {
            return (from, 0);
        }
        let valid = self.utf8_valid(chunk, from);
        let limits = Limits {
            max_events: max_events.max(1),
            max_bytes,
        };
        let source = chunk.file.source;
        let (pos, records) = match self.encoding {
            Encoding::Raw => encode_passthrough(chunk, from, valid, out, limits, source, stats),
            Encoding::Ndjson => {
                self.consts.prepare(chunk);
                match self.formats.get(source).copied().unwrap_or(Format::Raw) {
                    Format::Raw if valid => self.ndjson_raw_valid(chunk, from, out, limits),
                    Format::Raw => self.ndjson_raw_lossy(chunk, from, out, limits, source, stats),
                    Format::Json => self.ndjson_json(chunk, from, out, limits, source, stats),
                }
            }
        };
        self.utf8_memo = (pos < data.len()).then_some(Utf8Memo {
            data_addr: data.as_ptr() as usize,
            len: data.len(),
            uid: chunk.file.uid,
            start: chunk.start,
            valid,
        });
        stats.records += records as u64;
        (pos, records)
    }

    /// Whether `chunk.data[from..]` is valid UTF-8, checked once per chunk: a call that
    /// resumes the chunk the previous call left unfinished reuses its verdict.
    fn utf8_valid(&self, chunk: &Chunk, from: usize) -> bool {
        if from > 0 {
            if let Some(m) = self.utf8_memo {
                if m.data_addr == chunk.data.as_ptr() as usize
                    && m.len == chunk.data.len()
                    && m.uid == chunk.file.uid
                    && m.start == chunk.start
                {
                    return m.valid;
                }
            }
        }
        simdutf8::basic::from_utf8(&chunk.data[from..]).is_ok()
    }

    /// NDJSON of `raw` lines from valid UTF-8: the hot path. One scan per line finds its end
    /// and its bytes to escape.
    fn ndjson_raw_valid(&self, chunk: &Chunk, from: usize, out: &mut Vec<u8>, limits: Limits) -> (usize, usize) {
        let data = &chunk.data[..];
        let content_end = unterminated_content_end(chunk);
        let c = &self.consts;
        let (mut pos, mut records) = (from, 0);
        while pos < data.len() && !limits.reached(records, out.len()) {
            out.extend_from_slice(&c.head_raw);
            let (next, terminated) = match escape_line_into(out, &data[pos..content_end.max(pos)]) {
                Some(nl) => (pos + nl + 1, true),
                None => (data.len(), false),
            };
            write_location(out, c, 0, chunk.start + pos as u64);
            out.extend_from_slice(marks(
                pos == 0 && chunk.head_continues,
                !terminated && chunk.tail_truncated,
            ));
            out.extend_from_slice(&self.record_end);
            pos = next;
            records += 1;
        }
        (pos, records)
    }

    /// NDJSON of `raw` lines from a chunk with invalid UTF-8 somewhere: lines that have it are
    /// repaired (U+FFFD) and counted.
    fn ndjson_raw_lossy(
        &self,
        chunk: &Chunk,
        from: usize,
        out: &mut Vec<u8>,
        limits: Limits,
        source: usize,
        stats: &mut EncodeStats,
    ) -> (usize, usize) {
        let data = &chunk.data[..];
        let content_end = unterminated_content_end(chunk);
        let (mut pos, mut records) = (from, 0);
        while pos < data.len() && !limits.reached(records, out.len()) {
            let line = line_at(data, pos, content_end);
            let text = String::from_utf8_lossy(&data[line.start..line.end]);
            if matches!(text, Cow::Owned(_)) {
                bump(&mut stats.invalid_utf8, source);
            }
            let marks = marks(
                pos == 0 && chunk.head_continues,
                !line.terminated && chunk.tail_truncated,
            );
            self.write_raw_record(out, text.as_bytes(), chunk.start + pos as u64, marks);
            pos = line.next;
            records += 1;
        }
        (pos, records)
    }

    /// A raw record: the line as the message, then `marks` (a `,"fields":{…}` or nothing).
    #[inline]
    fn write_raw_record(&self, out: &mut Vec<u8>, message: &[u8], offset: u64, marks: &[u8]) {
        out.extend_from_slice(&self.consts.head_raw);
        escape_into(out, message);
        write_location(out, &self.consts, 0, offset);
        out.extend_from_slice(marks);
        out.extend_from_slice(&self.record_end);
    }

    /// NDJSON of `json` lines. Pieces of split lines are not parsed (half an object is never
    /// valid); they go out as raw records with their marks.
    fn ndjson_json(
        &mut self,
        chunk: &Chunk,
        from: usize,
        out: &mut Vec<u8>,
        limits: Limits,
        source: usize,
        stats: &mut EncodeStats,
    ) -> (usize, usize) {
        let data = &chunk.data[..];
        let content_end = unterminated_content_end(chunk);
        let (mut pos, mut records) = (from, 0);
        // One field list for the whole call: lines borrow from the chunk, so it can be reused.
        let mut rec = JsonLine::default();
        while pos < data.len() && !limits.reached(records, out.len()) {
            let line = line_at(data, pos, content_end);
            let content = &data[line.start..line.end];
            let offset = chunk.start + pos as u64;
            let continues = pos == 0 && chunk.head_continues;
            let truncated = !line.terminated && chunk.tail_truncated;
            // Lines are checked one by one here rather than trusting the chunk's verdict:
            // the parser needs `&str`, and the check costs little next to parsing.
            match std::str::from_utf8(content) {
                Ok(_) if continues || truncated => {
                    self.write_raw_record(out, content, offset, marks(continues, truncated))
                }
                Ok(text) => self.write_json_line(out, text, &mut rec, offset, source, stats),
                Err(_) => {
                    bump(&mut stats.invalid_utf8, source);
                    let text = String::from_utf8_lossy(content);
                    if continues || truncated {
                        self.write_raw_record(out, text.as_bytes(), offset, marks(continues, truncated));
                    } else {
                        self.write_json_line(out, &text, &mut JsonLine::default(), offset, source, stats);
                    }
                }
            }
            pos = line.next;
            records += 1;
        }
        (pos, records)
    }

    /// One `json` line as a record; a line that does not parse goes out raw with its
    /// `parse_error` in `fields`, and is counted.
    fn write_json_line<'a>(
        &mut self,
        out: &mut Vec<u8>,
        text: &'a str,
        rec: &mut JsonLine<'a>,
        offset: u64,
        source: usize,
        stats: &mut EncodeStats,
    ) {
        let c = &self.consts;
        if let Err(e) = json::parse_into(text, rec) {
            bump(&mut stats.parse_errors, source);
            self.scratch.clear();
            let _ = write!(self.scratch, "{e}");
            out.extend_from_slice(&c.head_raw);
            escape_into(out, text.as_bytes());
            write_location(out, c, 0, offset);
            out.extend_from_slice(br#","fields":{"parse_error":""#);
            escape_into(out, self.scratch.as_bytes());
            out.extend_from_slice(b"\"}");
            out.extend_from_slice(&self.record_end);
            return;
        }
        match rec.timestamp_ns {
            Some(ns) => {
                out.extend_from_slice(br#"{"timestamp":""#);
                timefmt::rfc3339_nanos(ns, out);
                out.extend_from_slice(&c.after_event_time);
            }
            None => out.extend_from_slice(&c.head_observed),
        }
        if let Some(level) = rec.level {
            out.extend_from_slice(br#","level":""#);
            out.extend_from_slice(level.as_str().as_bytes());
            out.push(b'"');
        }
        match rec.message {
            Some(Message::Literal(literal)) => {
                out.extend_from_slice(br#","message":"#);
                out.extend_from_slice(literal.as_bytes());
            }
            Some(Message::Text(json_text)) => {
                out.extend_from_slice(br#","message":""#);
                escape_into(out, json_text.as_bytes());
                out.push(b'"');
            }
            None => {}
        }
        write_location(out, c, 1, offset);
        if !rec.fields.is_empty() {
            out.extend_from_slice(br#","fields":{"#);
            for (i, field) in rec.fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                escape_into(out, field.key.as_bytes());
                out.extend_from_slice(b"\":");
                out.extend_from_slice(field.value.get().as_bytes());
            }
            out.push(b'}');
        }
        out.extend_from_slice(&self.record_end);
    }
}

/// `Encoding::Raw`: each line as read (without its `\r\n` or `\n`) plus `\n`. When the lines
/// to copy hold no `\r`, that is the input bytes themselves, copied as one run.
fn encode_passthrough(
    chunk: &Chunk,
    from: usize,
    valid: bool,
    out: &mut Vec<u8>,
    limits: Limits,
    source: usize,
    stats: &mut EncodeStats,
) -> (usize, usize) {
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
        if !valid {
            for line in run.split_inclusive(|b| *b == b'\n') {
                if std::str::from_utf8(line).is_err() {
                    bump(&mut stats.invalid_utf8, source);
                }
            }
        }
        return (pos, records);
    }
    // Some line ends in `\r\n`: the output differs from the input, so go line by line.
    let content_end = unterminated_content_end(chunk);
    let (mut pos, mut records) = (from, 0);
    while pos < data.len() && !limits.reached(records, out.len()) {
        let line = line_at(data, pos, content_end);
        let content = &data[line.start..line.end];
        out.extend_from_slice(content);
        out.push(b'\n');
        if !valid && std::str::from_utf8(content).is_err() {
            bump(&mut stats.invalid_utf8, source);
        }
        pos = line.next;
        records += 1;
    }
    (pos, records)
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use bytes::Bytes;
    use proptest::prelude::*;
    use serde::de::{Deserializer, MapAccess, Visitor};
    use serde_json::{json, Value};

    use super::*;
    use crate::budget::Budget;

    const OBSERVED: i64 = 1_795_614_680_123_456_789;
    const OBSERVED_TEXT: &str = "2026-11-25T13:51:20.123456789Z";

    fn chunk(data: &[u8], start: u64, head_continues: bool, tail_truncated: bool) -> Chunk {
        Chunk {
            file: Arc::new(FileMeta {
                uid: 7,
                source: 1,
                path: Arc::from("/var/log/a \"b\".log"),
                path_json: r#""/var/log/a \"b\".log""#.into(),
                id_prefix: "00000000000000ff-".into(),
            }),
            start,
            data: Bytes::copy_from_slice(data),
            observed_ns: OBSERVED,
            head_continues,
            tail_truncated,
            budget: Budget::new(1 << 20).take(data.len()),
        }
    }

    fn encoder(encoding: Encoding, format: Format, resource: &[(&str, &str)]) -> Encoder {
        let resource = resource.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Encoder::new(encoding, vec![Format::Raw, format], &resource)
    }

    /// A JSON object with its keys in written order (serde_json's `Map` would sort them).
    #[derive(Debug, PartialEq)]
    struct Ordered(Vec<(String, Value)>);

    impl<'de> serde::Deserialize<'de> for Ordered {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Ordered;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                    let mut entries = Vec::new();
                    while let Some(entry) = map.next_entry()? {
                        entries.push(entry);
                    }
                    Ok(Ordered(entries))
                }
            }
            d.deserialize_map(V)
        }
    }

    fn records(out: &[u8]) -> Vec<Ordered> {
        assert!(out.ends_with(b"\n"), "output ends with a newline");
        out.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(l))))
            .collect()
    }

    fn encode_all(enc: &mut Encoder, c: &Chunk) -> (Vec<u8>, EncodeStats) {
        let mut out = Vec::new();
        let mut stats = EncodeStats::default();
        let (pos, n) = enc.encode(c, 0, &mut out, usize::MAX, usize::MAX, &mut stats);
        assert_eq!(pos, c.data.len());
        assert_eq!(n as u64, stats.records);
        (out, stats)
    }

    fn raw_record(message: &str, offset: u64, fields: Option<Value>) -> Ordered {
        let mut e = vec![
            ("timestamp".to_string(), json!(OBSERVED_TEXT)),
            ("observed_timestamp".to_string(), json!(OBSERVED_TEXT)),
            ("message".to_string(), json!(message)),
            ("file".to_string(), json!("/var/log/a \"b\".log")),
            ("offset".to_string(), json!(offset)),
            ("id".to_string(), json!(format!("00000000000000ff-{offset}"))),
        ];
        if let Some(f) = fields {
            e.push(("fields".to_string(), f));
        }
        Ordered(e)
    }

    #[test]
    fn raw_lines_become_records_with_every_key_in_order() {
        let c = chunk(b"first \"q\"\tx\nsecond\r\n\nlast\r", 1000, false, false);
        let (out, stats) = encode_all(&mut encoder(Encoding::Ndjson, Format::Raw, &[]), &c);
        assert_eq!(
            records(&out),
            vec![
                raw_record("first \"q\"\tx", 1000, None),
                raw_record("second", 1012, None),
                raw_record("", 1020, None),
                raw_record("last", 1021, None),
            ]
        );
        assert_eq!(stats.records, 4);
        assert!(stats.invalid_utf8.iter().all(|n| *n == 0));
    }

    #[test]
    fn resource_is_rendered_last_and_escaped() {
        let c = chunk(b"x\n", 0, false, false);
        let (out, _) = encode_all(
            &mut encoder(
                Encoding::Ndjson,
                Format::Raw,
                &[("k8s.pod.name", "web-1"), ("q\"", "\n")],
            ),
            &c,
        );
        let Ordered(entries) = records(&out).remove(0);
        assert_eq!(
            entries.last().unwrap(),
            &("resource".to_string(), json!({"k8s.pod.name": "web-1", "q\"": "\n"}))
        );
    }

    #[test]
    fn pieces_of_split_lines_carry_marks() {
        let c = chunk(b"end of long\nmiddle\nstart of next", 50, true, true);
        let (out, _) = encode_all(&mut encoder(Encoding::Ndjson, Format::Raw, &[]), &c);
        assert_eq!(
            records(&out),
            vec![
                raw_record("end of long", 50, Some(json!({"continuation": true}))),
                raw_record("middle", 62, None),
                raw_record("start of next", 69, Some(json!({"truncated": true}))),
            ]
        );
        // A middle piece is both; a piece keeps a trailing `\r` (it is not a line ending).
        let c = chunk(b"middle piece\r", 0, true, true);
        let (out, _) = encode_all(&mut encoder(Encoding::Ndjson, Format::Raw, &[]), &c);
        assert_eq!(
            records(&out),
            vec![raw_record(
                "middle piece\r",
                0,
                Some(json!({"continuation": true, "truncated": true}))
            )]
        );
    }

    #[test]
    fn json_lines_lift_time_level_message() {
        let line = br#"{"time":"2026-11-25T14:51:20.5+01:00","level":30,"msg":"hello \"w\"","user":{"id":7},"n":1.50}"#;
        let c = chunk(&[&line[..], b"\n"].concat(), 0, false, false);
        let (out, stats) = encode_all(&mut encoder(Encoding::Ndjson, Format::Json, &[("host.name", "h")]), &c);
        let want = Ordered(vec![
            ("timestamp".into(), json!("2026-11-25T13:51:20.500000000Z")),
            ("observed_timestamp".into(), json!(OBSERVED_TEXT)),
            ("level".into(), json!("info")),
            ("message".into(), json!("hello \"w\"")),
            ("file".into(), json!("/var/log/a \"b\".log")),
            ("offset".into(), json!(0)),
            ("id".into(), json!("00000000000000ff-0")),
            ("fields".into(), json!({"user": {"id": 7}, "n": 1.5})),
            ("resource".into(), json!({"host.name": "h"})),
        ]);
        assert_eq!(records(&out), vec![want]);
        // Field values are copied as written, number formatting included.
        assert!(out.windows(8).any(|w| w == b"\"n\":1.50"));
        assert!(stats.parse_errors.iter().all(|n| *n == 0));
    }

    #[test]
    fn json_without_time_level_message_uses_observed_time() {
        let c = chunk(b"{\"a\":[1,{\"b\":null}],\"msg\":[1, 2]}\r\n{}\n", 0, false, false);
        let (out, _) = encode_all(&mut encoder(Encoding::Ndjson, Format::Json, &[]), &c);
        let recs = records(&out);
        assert_eq!(
            recs[0],
            Ordered(vec![
                ("timestamp".into(), json!(OBSERVED_TEXT)),
                ("observed_timestamp".into(), json!(OBSERVED_TEXT)),
                ("message".into(), json!("[1, 2]")),
                ("file".into(), json!("/var/log/a \"b\".log")),
                ("offset".into(), json!(0)),
                ("id".into(), json!("00000000000000ff-0")),
                ("fields".into(), json!({"a": [1, {"b": null}]})),
            ])
        );
        assert_eq!(
            recs[1].0.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["timestamp", "observed_timestamp", "file", "offset", "id"]
        );
    }

    #[test]
    fn bad_json_goes_out_raw_with_the_parse_error_and_is_counted() {
        let c = chunk(b"plain text\n[1]\n{\"ok\":true}\n", 0, false, false);
        let (out, stats) = encode_all(&mut encoder(Encoding::Ndjson, Format::Json, &[]), &c);
        let recs = records(&out);
        let Ordered(first) = &recs[0];
        assert_eq!(first[2], ("message".to_string(), json!("plain text")));
        let (key, fields) = &first[6];
        assert_eq!(key, "fields");
        assert!(
            fields["parse_error"].as_str().unwrap().contains("expected value"),
            "{fields}"
        );
        assert!(recs[1].0[6].1["parse_error"]
            .as_str()
            .unwrap()
            .contains("expected a JSON object"));
        assert_eq!(recs[2].0[5].1, json!({"ok": true}));
        assert_eq!(stats.parse_errors, vec![0, 2]);
    }

    #[test]
    fn json_pieces_are_not_parsed() {
        let c = chunk(b"\"x\":1}\n{\"a\":1}\n{\"b\":", 0, true, true);
        let (out, stats) = encode_all(&mut encoder(Encoding::Ndjson, Format::Json, &[]), &c);
        let recs = records(&out);
        assert_eq!(recs[0], raw_record("\"x\":1}", 0, Some(json!({"continuation": true}))));
        assert_eq!(recs[1].0[5].1, json!({"a": 1}));
        assert_eq!(recs[2], raw_record("{\"b\":", 15, Some(json!({"truncated": true}))));
        assert!(stats.parse_errors.iter().all(|n| *n == 0));
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted_per_line() {
        for format in [Format::Raw, Format::Json] {
            let c = chunk(b"ok\nbad \xff\xfe here\n{\"m\":\"\xc3\"}\n", 0, false, false);
            let (out, stats) = encode_all(&mut encoder(Encoding::Ndjson, format, &[]), &c);
            let recs = records(&out);
            assert_eq!(recs[1].0[2].1, json!("bad \u{fffd}\u{fffd} here"), "{format:?}");
            assert_eq!(stats.invalid_utf8, vec![0, 2], "{format:?}");
            if format == Format::Json {
                assert_eq!(recs[2].0[5].1, json!({"m": "\u{fffd}"}));
            }
        }
    }

    #[test]
    fn raw_encoding_writes_lines_as_read() {
        let mut enc = encoder(Encoding::Raw, Format::Json, &[("a", "b")]);
        let (out, _) = encode_all(&mut enc, &chunk(b"one\ntwo \"x\"\nthree", 0, false, false));
        assert_eq!(out, b"one\ntwo \"x\"\nthree\n");
        let (out, _) = encode_all(&mut enc, &chunk(b"crlf\r\nlf\nlast\r", 0, false, false));
        assert_eq!(out, b"crlf\nlf\nlast\n");
        let (out, stats) = encode_all(&mut enc, &chunk(b"a\xff\nb\n", 0, false, false));
        assert_eq!(out, b"a\xff\nb\n");
        assert_eq!(stats.invalid_utf8, vec![0, 1]);
    }

    #[test]
    fn stops_at_max_events_and_max_bytes_and_resumes_from() {
        let c = chunk(b"a\nbb\nccc\ndddd\n", 100, false, false);
        let mut enc = encoder(Encoding::Ndjson, Format::Raw, &[]);
        let mut stats = EncodeStats::default();
        let mut out = Vec::new();
        assert_eq!(enc.encode(&c, 0, &mut out, 2, usize::MAX, &mut stats), (5, 2));
        let mut rest = Vec::new();
        assert_eq!(enc.encode(&c, 5, &mut rest, 10, 1, &mut stats), (9, 1));
        assert_eq!(records(&rest), vec![raw_record("ccc", 105, None)]);
        // Already over `max_bytes`: still one record, so a caller always makes progress.
        assert_eq!(enc.encode(&c, 9, &mut out, 0, 0, &mut stats), (14, 1));
        assert_eq!(enc.encode(&c, 14, &mut out, 10, 10, &mut stats), (14, 0));
        assert_eq!(stats.records, 4);
    }

    #[test]
    fn constants_follow_the_chunk() {
        let mut enc = encoder(Encoding::Ndjson, Format::Raw, &[]);
        let a = chunk(b"x\n", 0, false, false);
        let mut b = chunk(b"y\n", 0, false, false);
        b.observed_ns = 0;
        encode_all(&mut enc, &a);
        let (out, _) = encode_all(&mut enc, &b);
        assert_eq!(records(&out)[0].0[0].1, json!("1970-01-01T00:00:00.000000000Z"));
    }

    /// Lines a property test can combine: plain, escapes, `\r\n`, invalid UTF-8, JSON good
    /// and bad.
    fn line_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "[ -~]{0,40}".prop_map(String::into_bytes),
            "[\\x00-\\x1f\"\\\\a-z€]{0,20}".prop_map(String::into_bytes),
            Just(b"with cr\r".to_vec()),
            Just(b"bad \xff utf8".to_vec()),
            Just(br#"{"level":"warn","msg":"m","k":[1,2]}"#.to_vec()),
            Just(br#"{"ts":1700000000,"x":"\u00e9"}"#.to_vec()),
            Just(b"{broken".to_vec()),
        ]
    }

    proptest! {
        #[test]
        fn several_calls_equal_one_call(
            lines in proptest::collection::vec(line_strategy(), 1..20),
            terminated in any::<bool>(),
            head_continues in any::<bool>(),
            tail_truncated in any::<bool>(),
            max_events in 1usize..5,
            max_bytes in 1usize..600,
            mode in 0usize..3,
        ) {
            let mut data = lines.join(&b'\n');
            if terminated || data.is_empty() {
                data.push(b'\n');
            }
            let tail_truncated = tail_truncated && !terminated;
            let c = chunk(&data, 10, head_continues, tail_truncated);
            let (encoding, format) = [(Encoding::Ndjson, Format::Raw), (Encoding::Ndjson, Format::Json), (Encoding::Raw, Format::Raw)][mode];

            let mut whole = Vec::new();
            let mut whole_stats = EncodeStats::default();
            let (pos, n) = encoder(encoding, format, &[("r", "1")]).encode(&c, 0, &mut whole, usize::MAX, usize::MAX, &mut whole_stats);
            prop_assert_eq!(pos, data.len());
            let line_count = memchr::memchr_iter(b'\n', &data).count() + !data.ends_with(b"\n") as usize;
            prop_assert_eq!(n, line_count);

            let mut enc = encoder(encoding, format, &[("r", "1")]);
            let mut parts = Vec::new();
            let mut stats = EncodeStats::default();
            let mut from = 0;
            while from < data.len() {
                let mut out = Vec::new();
                let (next, k) = enc.encode(&c, from, &mut out, max_events, max_bytes, &mut stats);
                prop_assert!(k >= 1 && k <= max_events);
                prop_assert!(next > from);
                // Stopped for a reason: the event limit, the byte limit, or the end.
                prop_assert!(k == max_events || out.len() >= max_bytes || next == data.len());
                parts.extend_from_slice(&out);
                from = next;
            }
            prop_assert_eq!(&parts, &whole);
            prop_assert_eq!(stats.records, whole_stats.records);
            prop_assert_eq!(stats.invalid_utf8, whole_stats.invalid_utf8);
            prop_assert_eq!(stats.parse_errors, whole_stats.parse_errors);
            if encoding == Encoding::Ndjson {
                prop_assert_eq!(records(&whole).len(), line_count);
            }
        }
    }
}
