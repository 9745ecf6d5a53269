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

use crate::chunk::FileMeta;
use crate::config::Encoding;
use crate::mark::Mark;
use crate::record::{Body, Context, Field, Records, Text, Value};
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
    /// `"` + `record_end`: the end of a record whose id is its last member.
    quote_record_end: Vec<u8>,
}

impl Consts {
    fn prepare_time(&mut self, observed_ns: i64, keys: &Rendered) {
        if self.observed_ns == Some(observed_ns) {
            return;
        }
        let mut t = Vec::with_capacity(30);
        timefmt::rfc3339_nanos(observed_ns, &mut t);
        self.head_observed.clear();
        self.head_observed.extend_from_slice(&keys.ts_open);
        self.head_observed.extend_from_slice(&t);
        self.head_observed.extend_from_slice(&keys.observed);
        self.head_observed.extend_from_slice(&t);
        self.head_observed.push(b'"');
        self.head_raw.clear();
        self.head_raw.extend_from_slice(&self.head_observed);
        self.head_raw.extend_from_slice(&keys.message);
        self.head_raw.push(b'"');
        self.after_event_time.clear();
        self.after_event_time.extend_from_slice(&keys.observed);
        self.after_event_time.extend_from_slice(&t);
        self.after_event_time.push(b'"');
        self.observed_ns = Some(observed_ns);
    }

    fn prepare_context(&mut self, context: &Arc<Context>, keys: &Rendered) {
        if self.context.as_ref().is_some_and(|c| Arc::ptr_eq(c, context)) {
            return;
        }
        let file: &FileMeta = &context.file;
        self.file_offset.clear();
        self.file_offset.extend_from_slice(&keys.file);
        self.file_offset.extend_from_slice(file.path_json.as_bytes());
        self.file_offset.extend_from_slice(&keys.offset);
        self.id_head.clear();
        self.id_head.extend_from_slice(&keys.id);
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
            self.record_end.extend_from_slice(&keys.resource);
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
        self.quote_record_end.clear();
        self.quote_record_end.push(b'"');
        self.quote_record_end.extend_from_slice(&self.record_end);
        self.context = Some(Arc::clone(context));
    }
}

/// `"` + `s` escaped + `"`.
#[inline]
pub(super) fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    escape_into(out, s);
    out.push(b'"');
}

/// Writes `","file":PATH,"offset":N,"id":"PREFIXN` (the id's closing quote is the caller's);
/// `skip` = 1 leaves out the leading quote for records whose message is not an open string.
#[inline]
fn write_location(out: &mut Vec<u8>, c: &Consts, skip: usize, offset: u64) {
    let mut digits = itoa::Buffer::new();
    let offset = digits.format(offset).as_bytes();
    out.extend_from_slice(&c.file_offset[skip..]);
    out.extend_from_slice(offset);
    out.extend_from_slice(&c.id_head);
    out.extend_from_slice(offset);
}

/// Writes `fields` members one by one, opening the object (`head`: `,"fields":{` in the
/// sink's shape) at the first.
struct FieldsWriter<'h> {
    open: bool,
    head: &'h [u8],
}

impl FieldsWriter<'_> {
    #[inline]
    fn member(&mut self, out: &mut Vec<u8>) {
        if self.open {
            out.push(b',');
        } else {
            out.extend_from_slice(self.head);
            self.open = true;
        }
    }

    /// A key already written as `"name":` (see `KeyCache`).
    #[inline]
    fn rendered_key(&mut self, out: &mut Vec<u8>, key: &[u8]) {
        self.member(out);
        out.extend_from_slice(key);
    }

    #[inline]
    fn key(&mut self, out: &mut Vec<u8>, key: &[u8]) {
        self.member(out);
        out.push(b'"');
        escape_into(out, key);
        out.extend_from_slice(b"\":");
    }

    fn raw_members(&mut self, out: &mut Vec<u8>, members: &[u8]) {
        if members.is_empty() {
            return;
        }
        self.member(out);
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

/// `"name":` of the field names of one table, escaped once per call of the encoder rather
/// than once per record: a table's records name their fields with the same few arena spans
/// (`adapt::table` copies the parsers' names into the arena once per table). Only valid for the
/// one `Records` of the call, whose arena the spans point into.
struct KeyCache {
    /// Per slot: the span (`start << 32 | len`, plus one; 0 is empty) and where its rendering
    /// lies in `text`.
    slots: [(u64, u32, u32); 16],
    text: Vec<u8>,
}

impl KeyCache {
    fn new() -> KeyCache {
        KeyCache {
            slots: [(0, 0, 0); 16],
            text: Vec::new(),
        }
    }

    /// The rendering of an arena key, made on first use; `None` for other text.
    #[inline]
    fn get(&mut self, records: &Records, key: Text) -> Option<&[u8]> {
        let Text::Arena { start, len } = key else {
            return None;
        };
        let id = (u64::from(start) << 32 | u64::from(len)) + 1;
        let slot = (start ^ len.rotate_left(4)) as usize % self.slots.len();
        let (known, from, to) = self.slots[slot];
        if known == id {
            return Some(&self.text[from as usize..to as usize]);
        }
        let from = self.text.len();
        write_str(&mut self.text, records.bytes(key));
        self.text.push(b':');
        self.slots[slot] = (id, from as u32, self.text.len() as u32);
        Some(&self.text[from..])
    }
}

/// Encodes batches of records for one sink.
pub struct Encoder {
    encoding: Encoding,
    /// The names of the record's top-level keys (`shape`).
    shape: Arc<Shape>,
    consts: Consts,
    /// The calendar text of the last event time's second.
    event_second: timefmt::SecondText,
    shared: Option<Shared>,
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
            shape: Arc::default(),
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

    /// The encoder with the key names of `shape` in place of the record's own.
    pub fn with_shape(mut self, shape: Arc<Shape>) -> Encoder {
        self.shape = shape;
        self.consts = Consts::default();
        self
    }

    /// The position just past the last thing this encoder writes of `records`.
    pub fn end_of(&self, records: &Records) -> usize {
        match self.encoding {
            Encoding::Raw if !transformed(records) => records.data().len(),
            Encoding::Raw | Encoding::Ndjson => records.end_position(),
        }
    }

    /// The checkpoint mark that writing `records` up to `pos` allows.
    pub fn mark_at(&self, records: &Records, pos: usize) -> Option<Mark> {
        match self.encoding {
            Encoding::Ndjson => records.mark_at(pos),
            Encoding::Raw if transformed(records) => records.mark_at(pos),
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
        if self.encoding == Encoding::Raw && transformed(records) {
            return encode_messages(records, from, out, limits);
        }
        if self.encoding == Encoding::Raw {
            return match &records.chunk {
                Some(chunk) => encode_passthrough(chunk, from, out, limits),
                None => (from, 0),
            };
        }
        // A rendering made by an adapt worker, or by another sink of the source, in this
        // sink's shape.
        if let Some(r) = records.rendering.get() {
            if r.shape == self.shape.id {
                return copy_rendered(r, from, out, limits);
            }
            return self.ndjson(records, from, out, limits, None);
        }
        if let Some(shared) = self.shares(records) {
            let r = records.rendering.get_or_init(|| self.render(records, &shared));
            if r.shape == self.shape.id {
                return copy_rendered(r, from, out, limits);
            }
        }
        self.ndjson(records, from, out, limits, None)
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
        self.consts.prepare_context(&records.context, &self.shape.r);
        match &records.body {
            Body::Lines { utf8 } => {
                let Some(chunk) = records.chunk.as_ref() else {
                    return (from, 0);
                };
                self.consts.prepare_time(chunk.observed_ns, &self.shape.r);
                if *utf8 {
                    self.lines_valid(records, from, out, limits, ends)
                } else {
                    self.lines_lossy(records, from, out, limits, ends)
                }
            }
            Body::Table(t) => {
                let mut ends = ends;
                let mut pos = from;
                let mut keys = KeyCache::new();
                while pos < t.records.len() && !limits.reached(pos - from, out.len()) {
                    self.write_record(out, records, pos, &mut keys);
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
            out.push(b'"');
            let mut fields = FieldsWriter {
                open: false,
                head: &self.shape.r.fields,
            };
            fields.marks(out, continuation, truncated, false);
            fields.raw_members(out, &c.static_fields);
            fields.close(out);
            out.extend_from_slice(&c.record_end);
        } else {
            out.extend_from_slice(&c.quote_record_end);
        }
    }

    /// One record of a `Table`.
    fn write_record(&mut self, out: &mut Vec<u8>, records: &Records, index: usize, keys: &mut KeyCache) {
        let Body::Table(t) = &records.body else { return };
        let rec = &t.records[index];
        let names = &self.shape.r;
        self.consts.prepare_time(rec.observed_ns, names);
        if let Some(ns) = rec.time_ns {
            out.extend_from_slice(&names.ts_open);
            self.event_second.write(ns, out);
        }
        let c = &self.consts;
        out.extend_from_slice(if rec.time_ns.is_some() {
            &c.after_event_time
        } else {
            &c.head_observed
        });
        if let Some(level) = rec.level {
            out.extend_from_slice(&names.level);
            out.extend_from_slice(level.as_str().as_bytes());
            out.push(b'"');
        }
        if let Some(m) = rec.message {
            out.extend_from_slice(&names.message);
            write_text(out, records, m);
        }
        if let Some(stream) = rec.stream {
            out.extend_from_slice(&names.stream);
            out.extend_from_slice(stream.as_str().as_bytes());
            out.push(b'"');
        }
        write_location(out, c, 1, rec.offset);
        out.push(b'"');
        let mut fields = FieldsWriter {
            open: false,
            head: &names.fields,
        };
        for f in records.fields(rec.fields) {
            match keys.get(records, f.key) {
                Some(rendered) => fields.rendered_key(out, rendered),
                None => fields.key(out, records.bytes(f.key)),
            }
            write_value(out, records, &f.value);
        }
        fields.marks(out, rec.flags.continuation, rec.flags.truncated, rec.flags.partial);
        fields.raw_members(out, &c.static_fields);
        fields.close(out);
        out.extend_from_slice(&c.record_end);
    }
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

mod passthrough;
mod shape;
mod shared;
#[cfg(test)]
mod tests;

use passthrough::{encode_messages, encode_passthrough, transformed};
use shape::Rendered;
pub use shape::{Shape, ShapeError, SHAPE_NAMES, TOP_KEYS};
use shared::copy_rendered;
pub use shared::Shared;
