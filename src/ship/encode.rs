//! The byte encoders: records (`crate::record`) into NDJSON, or a chunk's lines as they were
//! read (`encoding = "raw"`). This is the hot path of every byte sink and of the `http` sink.
//!
//! A record is mostly constant for a batch (the observed time, the file, the id prefix, the
//! resource, the static fields), so those byte runs are rendered once per file or per observed
//! time and copied; the per-line work of a `raw` record is one scan of the line that finds its
//! end and the bytes to escape, two `itoa`s of the offset, and a handful of
//! `extend_from_slice`s, and allocates nothing. Records of a `Table` are written key by key
//! from their spans. The record shape (key order, marks) is described in ARCHITECTURE.md.
//!
//! Positions (`record::Records`): NDJSON walks the batch's records; `raw` walks the chunk's
//! lines whatever the body, so a raw sink ships exactly the lines that were read and never
//! waits for events being joined.

use std::sync::Arc;

use crate::budget::Budget;
use crate::chunk::{Chunk, FileMeta};
use crate::config::Encoding;
use crate::mark::Mark;
use crate::record::{Body, Context, Field, Records, Rendering, Text, Value};
use crate::ship::escape::{escape_into, escape_line_into};
use crate::timefmt;

/// When a call stops: after `max_events` records, or once the output reached `max_bytes`;
/// never before the first record.
#[derive(Clone, Copy)]
pub struct Limits {
    pub max_events: usize,
    pub max_bytes: usize,
}

impl Limits {
    #[inline]
    fn reached(&self, records: usize, out_len: usize) -> bool {
        records >= self.max_events || (records > 0 && out_len >= self.max_bytes)
    }
}

/// Byte runs shared by many records, rebuilt only when the observed time or the file changes.
#[derive(Default)]
struct Consts {
    observed_ns: Option<i64>,
    /// `{"timestamp":"OBS","observed_timestamp":"OBS"`: the head of a record without event time.
    head_observed: Vec<u8>,
    /// `head_observed` + `,"message":"`: the head of a raw record.
    head_raw: Vec<u8>,
    /// `","observed_timestamp":"OBS"`: follows an event time.
    after_event_time: Vec<u8>,
    context: Option<Arc<Context>>,
    /// `","file":PATH,"offset":`. Its leading `"` closes a raw record's message; records whose
    /// message is not open skip it.
    file_offset: Vec<u8>,
    /// `,"id":"PREFIX`: the offset and the closing quote follow.
    id_head: Vec<u8>,
    /// The source's static fields as JSON members (`"k":"v","k2":"v2"`), or empty.
    static_fields: Vec<u8>,
    /// How the file's records end: `,"resource":{…}}` and the newline, or `}` and the newline.
    record_end: Vec<u8>,
}

impl Consts {
    fn prepare_time(&mut self, observed_ns: i64) {
        if self.observed_ns == Some(observed_ns) {
            return;
        }
        let mut t = Vec::with_capacity(30);
        timefmt::rfc3339_nanos(observed_ns, &mut t);
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
        self.observed_ns = Some(observed_ns);
    }

    fn prepare_context(&mut self, context: &Arc<Context>) {
        if self.context.as_ref().is_some_and(|c| Arc::ptr_eq(c, context)) {
            return;
        }
        let file: &FileMeta = &context.file;
        self.file_offset.clear();
        self.file_offset.extend_from_slice(br#"","file":"#);
        self.file_offset.extend_from_slice(file.path_json.as_bytes());
        self.file_offset.extend_from_slice(br#","offset":"#);
        self.id_head.clear();
        self.id_head.extend_from_slice(br#","id":""#);
        escape_into(&mut self.id_head, file.id_prefix.as_bytes());
        self.static_fields.clear();
        for (i, (k, v)) in context.static_fields.iter().enumerate() {
            if i > 0 {
                self.static_fields.push(b',');
            }
            write_str(&mut self.static_fields, k.as_bytes());
            self.static_fields.push(b':');
            write_str(&mut self.static_fields, v.as_bytes());
        }
        self.record_end.clear();
        if !context.resource.is_empty() {
            self.record_end.extend_from_slice(br#","resource":{"#);
            for (i, (k, v)) in context.resource.iter().enumerate() {
                if i > 0 {
                    self.record_end.push(b',');
                }
                write_str(&mut self.record_end, k.as_bytes());
                self.record_end.push(b':');
                write_str(&mut self.record_end, v.as_bytes());
            }
            self.record_end.push(b'}');
        }
        self.record_end.extend_from_slice(b"}\n");
        self.context = Some(Arc::clone(context));
    }
}

/// `"` + `s` escaped + `"`.
#[inline]
fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    escape_into(out, s);
    out.push(b'"');
}

/// Writes `","file":PATH,"offset":N,"id":"PREFIXN"`; `skip` = 1 leaves out the leading quote
/// for records whose message is not an open string.
#[inline]
fn write_location(out: &mut Vec<u8>, c: &Consts, skip: usize, offset: u64) {
    let mut digits = itoa::Buffer::new();
    let offset = digits.format(offset).as_bytes();
    out.extend_from_slice(&c.file_offset[skip..]);
    out.extend_from_slice(offset);
    out.extend_from_slice(&c.id_head);
    out.extend_from_slice(offset);
    out.push(b'"');
}

/// Writes `fields` members one by one, opening the object at the first.
struct FieldsWriter {
    open: bool,
}

impl FieldsWriter {
    #[inline]
    fn key(&mut self, out: &mut Vec<u8>, key: &[u8]) {
        out.extend_from_slice(if self.open { b",\"" } else { b",\"fields\":{\"" });
        self.open = true;
        escape_into(out, key);
        out.extend_from_slice(b"\":");
    }

    fn raw_members(&mut self, out: &mut Vec<u8>, members: &[u8]) {
        if members.is_empty() {
            return;
        }
        out.extend_from_slice(if self.open { b"," } else { b",\"fields\":{" });
        self.open = true;
        out.extend_from_slice(members);
    }

    fn marks(&mut self, out: &mut Vec<u8>, continuation: bool, truncated: bool, partial: bool) {
        for (set, key) in [
            (continuation, &b"continuation"[..]),
            (truncated, b"truncated"),
            (partial, b"partial"),
        ] {
            if set {
                self.key(out, key);
                out.extend_from_slice(b"true");
            }
        }
    }

    fn close(self, out: &mut Vec<u8>) {
        if self.open {
            out.push(b'}');
        }
    }
}

/// Encodes batches of records for one sink.
pub struct Encoder {
    encoding: Encoding,
    consts: Consts,
    /// The calendar text of the last event time's second.
    event_second: timefmt::SecondText,
    shared: Option<Shared>,
}

/// Sources whose NDJSON several sinks write: the same text, since an NDJSON record depends on
/// nothing but the record. For those, the first sink to reach a batch renders all of it into
/// `Records::rendering` and every sink copies runs of it, so a second sink costs a copy, not
/// a second encoding.
#[derive(Clone)]
pub struct Shared {
    /// Indexed by source.
    pub sources: Arc<[bool]>,
    /// Renderings are charged to it, like the batch they belong to.
    pub budget: Arc<Budget>,
}

/// Records written by one call, for a batch's rendering: after each, the position after it
/// and the output's length.
type Ends<'a> = Option<&'a mut Vec<(usize, usize)>>;

#[inline]
fn push_end(ends: &mut Ends<'_>, pos: usize, out_len: usize) {
    if let Some(e) = ends.as_deref_mut() {
        e.push((pos, out_len));
    }
}

impl Encoder {
    pub fn new(encoding: Encoding) -> Encoder {
        Encoder {
            encoding,
            consts: Consts::default(),
            event_second: timefmt::SecondText::default(),
            shared: None,
        }
    }

    /// An encoder that shares its NDJSON renderings of `shared.sources` with other sinks.
    pub fn sharing(encoding: Encoding, shared: Shared) -> Encoder {
        Encoder {
            shared: Some(shared),
            ..Encoder::new(encoding)
        }
    }

    /// The position just past the last thing this encoder writes of `records`.
    pub fn end_of(&self, records: &Records) -> usize {
        match self.encoding {
            Encoding::Raw => records.data().len(),
            Encoding::Ndjson => records.end_position(),
        }
    }

    /// The checkpoint mark that writing `records` up to `pos` allows.
    pub fn mark_at(&self, records: &Records, pos: usize) -> Option<Mark> {
        match self.encoding {
            Encoding::Ndjson => records.mark_at(pos),
            Encoding::Raw => {
                let c = records.chunk.as_ref()?;
                (pos > 0).then(|| Mark::at(c.start + pos as u64, &c.data[..pos]))
            }
        }
    }

    /// Appends the records of `records` from position `from` (0, or a position an earlier
    /// call returned) to `out`. Stops after `limits.max_events` records, or as soon as
    /// `out.len() >= limits.max_bytes` (the record that crosses it is kept); at least one
    /// record is written if any remain. Returns the position reached and the records written.
    pub fn encode(&mut self, records: &Records, from: usize, out: &mut Vec<u8>, limits: Limits) -> (usize, usize) {
        let limits = Limits {
            max_events: limits.max_events.max(1),
            ..limits
        };
        if from >= self.end_of(records) {
            return (from, 0);
        }
        if self.encoding == Encoding::Raw {
            return match &records.chunk {
                Some(chunk) => encode_passthrough(chunk, from, out, limits),
                None => (from, 0),
            };
        }
        if let Some(budget) = self.shares(records) {
            let r = records.rendering.get_or_init(|| self.render(records, &budget));
            return copy_rendered(r, from, out, limits);
        }
        self.ndjson(records, from, out, limits, None)
    }

    /// The budget to charge a rendering to, if `records` come from a shared source.
    fn shares(&self, records: &Records) -> Option<Arc<Budget>> {
        let s = self.shared.as_ref()?;
        let source = records.context.file.source;
        s.sources
            .get(source)
            .copied()
            .unwrap_or(false)
            .then(|| Arc::clone(&s.budget))
    }

    /// All of `records` as NDJSON, with where each record ends.
    fn render(&mut self, records: &Records, budget: &Arc<Budget>) -> Rendering {
        let all = Limits {
            max_events: usize::MAX,
            max_bytes: usize::MAX,
        };
        let mut r = Rendering {
            // NDJSON of raw lines is about three times their size.
            bytes: Vec::with_capacity(records.data().len() * 3 + 4096),
            ends: Vec::new(),
            budget: None,
        };
        self.ndjson(records, 0, &mut r.bytes, all, Some(&mut r.ends));
        r.budget = Some(budget.take(r.heap_bytes()));
        r
    }

    /// `encode` for NDJSON, written here; `ends` collects where each record ends.
    fn ndjson(
        &mut self,
        records: &Records,
        from: usize,
        out: &mut Vec<u8>,
        limits: Limits,
        ends: Ends<'_>,
    ) -> (usize, usize) {
        self.consts.prepare_context(&records.context);
        match &records.body {
            Body::Lines { utf8 } => {
                let Some(chunk) = records.chunk.as_ref() else {
                    return (from, 0);
                };
                self.consts.prepare_time(chunk.observed_ns);
                if *utf8 {
                    self.lines_valid(records, from, out, limits, ends)
                } else {
                    self.lines_lossy(records, from, out, limits, ends)
                }
            }
            Body::Table(t) => {
                let mut ends = ends;
                let mut pos = from;
                while pos < t.records.len() && !limits.reached(pos - from, out.len()) {
                    self.write_record(out, records, pos);
                    pos += 1;
                    push_end(&mut ends, pos, out.len());
                }
                (pos, pos - from)
            }
        }
    }

    /// NDJSON of `raw` lines from valid UTF-8: the hot path. One scan per line finds its end
    /// and its bytes to escape.
    fn lines_valid(
        &self,
        records: &Records,
        from: usize,
        out: &mut Vec<u8>,
        limits: Limits,
        mut ends: Ends<'_>,
    ) -> (usize, usize) {
        let Some(chunk) = records.chunk.as_ref() else {
            return (from, 0);
        };
        let data = &chunk.data[..];
        let content_end = chunk.content_end();
        let c = &self.consts;
        let (mut pos, mut n) = (from, 0);
        while pos < data.len() && !limits.reached(n, out.len()) {
            out.extend_from_slice(&c.head_raw);
            let (next, terminated) = match escape_line_into(out, &data[pos..content_end.max(pos)]) {
                Some(nl) => (pos + nl + 1, true),
                None => (data.len(), false),
            };
            write_location(out, c, 0, chunk.start + pos as u64);
            self.raw_tail(
                out,
                pos == 0 && chunk.head_continues,
                !terminated && chunk.tail_truncated,
            );
            pos = next;
            n += 1;
            push_end(&mut ends, pos, out.len());
        }
        (pos, n)
    }

    /// NDJSON of `raw` lines from a chunk with invalid UTF-8 somewhere: lines that have it are
    /// repaired (U+FFFD).
    fn lines_lossy(
        &self,
        records: &Records,
        from: usize,
        out: &mut Vec<u8>,
        limits: Limits,
        mut ends: Ends<'_>,
    ) -> (usize, usize) {
        let c = &self.consts;
        let (mut pos, mut n) = (from, 0);
        while !limits.reached(n, out.len()) {
            let Some((r, next)) = records.record_at(pos) else { break };
            out.extend_from_slice(&c.head_raw);
            escape_into(out, r.message_text().as_bytes());
            write_location(out, c, 0, r.offset);
            self.raw_tail(out, r.flags.continuation, r.flags.truncated);
            pos = next;
            n += 1;
            push_end(&mut ends, pos, out.len());
        }
        (pos, n)
    }

    /// The marks and static fields of a raw record, and its end.
    #[inline]
    fn raw_tail(&self, out: &mut Vec<u8>, continuation: bool, truncated: bool) {
        let c = &self.consts;
        if continuation || truncated || !c.static_fields.is_empty() {
            let mut fields = FieldsWriter { open: false };
            fields.marks(out, continuation, truncated, false);
            fields.raw_members(out, &c.static_fields);
            fields.close(out);
        }
        out.extend_from_slice(&c.record_end);
    }

    /// One record of a `Table`.
    fn write_record(&mut self, out: &mut Vec<u8>, records: &Records, index: usize) {
        let Body::Table(t) = &records.body else { return };
        let rec = &t.records[index];
        self.consts.prepare_time(rec.observed_ns);
        if let Some(ns) = rec.time_ns {
            out.extend_from_slice(br#"{"timestamp":""#);
            self.event_second.write(ns, out);
        }
        let c = &self.consts;
        out.extend_from_slice(if rec.time_ns.is_some() {
            &c.after_event_time
        } else {
            &c.head_observed
        });
        if let Some(level) = rec.level {
            out.extend_from_slice(br#","level":""#);
            out.extend_from_slice(level.as_str().as_bytes());
            out.push(b'"');
        }
        if let Some(m) = rec.message {
            out.extend_from_slice(br#","message":"#);
            write_text(out, records, m);
        }
        if let Some(stream) = rec.stream {
            out.extend_from_slice(br#","stream":""#);
            out.extend_from_slice(stream.as_str().as_bytes());
            out.push(b'"');
        }
        write_location(out, c, 1, rec.offset);
        let mut fields = FieldsWriter { open: false };
        for f in records.fields(rec.fields) {
            fields.key(out, records.bytes(f.key));
            write_value(out, records, &f.value);
        }
        fields.marks(out, rec.flags.continuation, rec.flags.truncated, rec.flags.partial);
        fields.raw_members(out, &c.static_fields);
        fields.close(out);
        out.extend_from_slice(&c.record_end);
    }
}

/// `encode` from a batch's rendering: the whole records from position `from` that fit the
/// limits, copied as one run.
fn copy_rendered(r: &Rendering, from: usize, out: &mut Vec<u8>, limits: Limits) -> (usize, usize) {
    // Records before `from` are those whose position-after is at most `from`.
    let first = r.ends.partition_point(|&(pos, _)| pos <= from);
    let start = if first == 0 { 0 } else { r.ends[first - 1].1 };
    let base = out.len();
    let (mut k, mut end) = (first, start);
    while k < r.ends.len() && !limits.reached(k - first, base + (end - start)) {
        end = r.ends[k].1;
        k += 1;
    }
    out.extend_from_slice(&r.bytes[start..end]);
    let pos = if k == first { from } else { r.ends[k - 1].0 };
    (pos, k - first)
}

/// Text as a JSON string (a literal is one already).
#[inline]
fn write_text(out: &mut Vec<u8>, records: &Records, text: Text) {
    match text {
        Text::Literal { .. } => out.extend_from_slice(records.bytes(text)),
        _ => write_str(out, records.bytes(text)),
    }
}

/// A field value as JSON.
fn write_value(out: &mut Vec<u8>, records: &Records, v: &Value) {
    match *v {
        Value::Str(t) => write_text(out, records, t),
        Value::Int(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        Value::Float(f) if f.is_finite() => {
            // serde_json writes the shortest text that reads back as the same f64.
            let _ = serde_json::to_writer(&mut *out, &f);
        }
        Value::Float(_) => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Value::Map { start, len } => {
            out.push(b'{');
            for (i, Field { key, value }) in records.fields((start, len)).iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_text(out, records, *key);
                out.push(b':');
                write_value(out, records, value);
            }
            out.push(b'}');
        }
        Value::Json(t) => out.extend_from_slice(records.bytes(t)),
    }
}

/// `Encoding::Raw`: each line as read (without its `\r\n` or `\n`) plus `\n`. When the lines
/// to copy hold no `\r`, that is the input bytes themselves, copied as one run.
fn encode_passthrough(chunk: &Chunk, from: usize, out: &mut Vec<u8>, limits: Limits) -> (usize, usize) {
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

impl Encoder {
    /// One record as an NDJSON line without its newline, for the protocol sinks that carry the
    /// whole record (a Loki line, a Splunk event, an Elasticsearch document) and for the
    /// dead-letter file. Keep one encoder for a whole body: its constant runs are then rendered
    /// once per file, not once per record.
    pub fn record(&mut self, r: &crate::record::RecordRef<'_>, out: &mut Vec<u8>) {
        let one = Limits {
            max_events: 1,
            max_bytes: usize::MAX,
        };
        self.encode(r.records, r.pos, out, one);
        if out.last() == Some(&b'\n') {
            out.pop();
        }
    }
}

#[cfg(test)]
mod tests;
