//! The record encoders: the hot path that turns a chunk's lines into a sink's wire format.
//!
//! A record is mostly constant for a chunk (the observed time, the file, the id prefix, the
//! resource), so those byte runs are rendered once per chunk or once per file and copied;
//! the per-line work of `raw` is one scan of the line that finds its end and the bytes to
//! escape, two `itoa`s of the offset, and a handful of `extend_from_slice`s, and allocates
//! nothing. `json` has a direct path of its own too. Every other format (and `raw`/`json`
//! with multiline joining) goes through a per-file `adapt::assemble::Assembler`, which keeps
//! the joining state across chunks; while it holds an unfinished event, `commit_point` keeps
//! the checkpoint at that event's first line. The record shape is the table in ARCHITECTURE.md.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::adapt::assemble::{self, Adapter, Assembler, Event, Start};
use crate::adapt::detect::{self, Detection};
use crate::adapt::json::{self, JsonLine, Message};
use crate::adapt::k8s_path;
use crate::adapt::{FieldValue, Parsed};
use crate::checkpoint::Mark;
use crate::chunk::{Chunk, FileMeta};
use crate::config::{Encoding, Format, SourceSettings};
use crate::ship::escape::{escape_into, escape_line_into};
use crate::tail::identity::validator_of;
use crate::timefmt;

/// What encoding found, for the metrics. The per-line problems are kept per source index
/// (grown on demand) because the metrics count them per source.
#[derive(Default, Debug, Clone)]
pub struct EncodeStats {
    pub records: u64,
    /// Lines read (a joined event counts all of its lines), per source index.
    pub lines: Vec<u64>,
    /// Lines whose invalid UTF-8 was replaced with U+FFFD, per source index.
    pub invalid_utf8: Vec<u64>,
    /// Lines that did not parse in their source's format and were shipped raw, per source index.
    pub parse_errors: Vec<u64>,
    /// Records whose time was there but unreadable (observed time used), per source index.
    pub bad_timestamps: Vec<u64>,
    /// Formats `auto` picked for new files: (source index, path, what and why).
    pub detected: Vec<(usize, Arc<str>, Detection)>,
}

fn bump(counts: &mut Vec<u64>, source: usize) {
    bump_by(counts, source, 1);
}

fn bump_by(counts: &mut Vec<u64>, source: usize, n: u64) {
    if counts.len() <= source {
        counts.resize(source + 1, 0);
    }
    counts[source] += n;
}

const MARK_CONTINUATION: &[u8] = br#","fields":{"continuation":true}"#;
const MARK_TRUNCATED: &[u8] = br#","fields":{"truncated":true}"#;
const MARK_BOTH: &[u8] = br#","fields":{"continuation":true,"truncated":true}"#;

/// How the records of one source are made.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    pub adapter: Adapter,
    /// The source's static fields as JSON members (`"k":"v","k2":"v2"`), or empty.
    pub static_fields: Vec<u8>,
    /// Add `k8s.*` resource attributes read off `/var/log/pods/…` paths.
    pub kubernetes_path_metadata: bool,
}

impl From<Format> for SourcePlan {
    fn from(format: Format) -> SourcePlan {
        SourcePlan {
            adapter: Adapter::from(format),
            static_fields: Vec::new(),
            kubernetes_path_metadata: false,
        }
    }
}

impl From<&SourceSettings> for SourcePlan {
    fn from(s: &SourceSettings) -> SourcePlan {
        let mut static_fields = Vec::new();
        for (i, (k, v)) in s.fields.iter().enumerate() {
            if i > 0 {
                static_fields.push(b',');
            }
            static_fields.push(b'"');
            escape_into(&mut static_fields, k.as_bytes());
            static_fields.extend_from_slice(b"\":\"");
            escape_into(&mut static_fields, v.as_bytes());
            static_fields.push(b'"');
        }
        SourcePlan {
            adapter: Adapter {
                format: s.format.clone(),
                multiline: s.multiline.clone(),
                join_max_bytes: s.max_line_bytes,
                join_timeout: s.partial_line_timeout,
            },
            static_fields,
            kubernetes_path_metadata: s.kubernetes_path_metadata,
        }
    }
}

/// Files not seen for this long, with nothing pending, lose their state (an `auto` file is
/// detected again if it comes back).
const FILE_STATE_IDLE: Duration = Duration::from_secs(3600);

/// What the encoder keeps per file of a source that needs it (see the module doc).
struct FileState {
    file: Arc<FileMeta>,
    /// The file's format: the source's, or the one `auto` picked.
    format: Format,
    /// `None` when the file's lines take a direct path (`auto` picked `raw` or `json`).
    assembler: Option<Assembler>,
    /// Just past the last line fed, with its validator: where the checkpoint goes once
    /// pending events are flushed.
    consumed: Option<Start>,
}

/// Encodes chunks for one sink: caches, and the joining state of the files that need it.
pub struct Encoder {
    encoding: Encoding,
    /// How each source's records are made, by source index.
    sources: Vec<SourcePlan>,
    /// The resource every record carries (files under `/var/log/pods` add their own keys).
    resource: BTreeMap<String, String>,
    files: HashMap<u64, FileState>,
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
    /// How the file's records end: `,"resource":{…}}` and the newline, or `}` and the newline.
    record_end: Vec<u8>,
}

impl ChunkConsts {
    fn prepare_time(&mut self, observed_ns: i64) {
        if self.observed_ns != Some(observed_ns) {
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
    }

    fn prepare_file(&mut self, file: &Arc<FileMeta>, resource: &BTreeMap<String, String>, plan: Option<&SourcePlan>) {
        if self.file.as_ref().is_some_and(|f| Arc::ptr_eq(f, file)) {
            return;
        }
        self.file_offset.clear();
        self.file_offset.extend_from_slice(br#"","file":"#);
        self.file_offset.extend_from_slice(file.path_json.as_bytes());
        self.file_offset.extend_from_slice(br#","offset":"#);
        self.id_head.clear();
        self.id_head.extend_from_slice(br#","id":""#);
        escape_into(&mut self.id_head, file.id_prefix.as_bytes());
        let from_path = plan
            .filter(|p| p.kubernetes_path_metadata)
            .and_then(|_| k8s_path::parse(&file.path));
        self.record_end.clear();
        match from_path {
            None => render_resource(&mut self.record_end, resource),
            Some(meta) => {
                let mut merged = resource.clone();
                for (k, v) in meta.attributes() {
                    merged.insert(k.to_owned(), v.to_owned());
                }
                render_resource(&mut self.record_end, &merged);
            }
        }
        self.file = Some(Arc::clone(file));
    }
}

/// `,"resource":{…}}` and the newline (just `}` and the newline without resource).
fn render_resource(out: &mut Vec<u8>, resource: &BTreeMap<String, String>) {
    if !resource.is_empty() {
        out.extend_from_slice(br#","resource":{"#);
        for (i, (k, v)) in resource.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            escape_into(out, k.as_bytes());
            out.extend_from_slice(b"\":\"");
            escape_into(out, v.as_bytes());
            out.push(b'"');
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"}\n");
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

/// Writes the marks of a raw record and the source's static fields as its `fields`, if any.
#[inline]
fn write_marks(out: &mut Vec<u8>, continues: bool, truncated: bool, static_fields: &[u8]) {
    if static_fields.is_empty() {
        out.extend_from_slice(marks(continues, truncated));
        return;
    }
    out.extend_from_slice(br#","fields":{"#);
    if continues {
        out.extend_from_slice(br#""continuation":true,"#);
    }
    if truncated {
        out.extend_from_slice(br#""truncated":true,"#);
    }
    out.extend_from_slice(static_fields);
    out.push(b'}');
}

/// Writes `fields` members one by one, opening the object at the first.
struct FieldsWriter {
    open: bool,
}

impl FieldsWriter {
    #[inline]
    fn key(&mut self, out: &mut Vec<u8>, key: &str) {
        out.extend_from_slice(if self.open { b",\"" } else { b",\"fields\":{\"" });
        self.open = true;
        escape_into(out, key.as_bytes());
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

    fn close(self, out: &mut Vec<u8>) {
        if self.open {
            out.push(b'}');
        }
    }
}

/// A field value as JSON.
fn write_value(out: &mut Vec<u8>, v: &FieldValue) {
    match v {
        FieldValue::Str(s) => {
            out.push(b'"');
            escape_into(out, s.as_bytes());
            out.push(b'"');
        }
        FieldValue::Int(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        FieldValue::Float(f) if f.is_finite() => {
            // serde_json writes the shortest text that reads back as the same f64.
            let _ = serde_json::to_writer(&mut *out, f);
        }
        FieldValue::Float(_) => out.extend_from_slice(b"null"),
        FieldValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        FieldValue::Map(m) => {
            out.push(b'{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                escape_into(out, k.as_bytes());
                out.extend_from_slice(b"\":");
                write_value(out, v);
            }
            out.push(b'}');
        }
        FieldValue::Json(j) => out.extend_from_slice(j.as_bytes()),
    }
}

/// Up to `detect::MAX_SAMPLE` lines from the start of `data`, for `auto`.
fn sample_lines(data: &[u8]) -> Vec<Cow<'_, str>> {
    data.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .take(detect::MAX_SAMPLE)
        .map(|l| String::from_utf8_lossy(l.strip_suffix(b"\r").unwrap_or(l)))
        .collect()
}

/// How a chunk's lines are encoded.
#[derive(Clone, Copy)]
enum Route {
    Raw,
    Json,
    /// Through the file's `Assembler`.
    Assembled,
}

impl Encoder {
    /// `sources[i]` says how the records of source `i` are made; `resource` holds the record's
    /// `resource` attributes, the same for every record but those of `/var/log/pods` files.
    pub fn new(encoding: Encoding, sources: Vec<SourcePlan>, resource: &BTreeMap<String, String>) -> Encoder {
        Encoder {
            encoding,
            sources,
            resource: resource.clone(),
            files: HashMap::new(),
            consts: ChunkConsts::default(),
            utf8_memo: None,
            scratch: String::new(),
        }
    }

    /// Encodes the records of `chunk.data[from..]` (`from` is the start of a line, 0 or a
    /// position an earlier call returned) line by line, appending them to `out`.
    ///
    /// Stops after `max_events` records, or as soon as `out.len() >= max_bytes` (the record
    /// that crosses it is kept); at least one line is consumed if any remain. Returns the
    /// position in `chunk.data` just past the last line consumed and the number of records
    /// written (a line may finish no record, while it waits to be joined, or several).
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
        let (pos, records, lines) = match self.encoding {
            Encoding::Raw => {
                let (pos, n) = encode_passthrough(chunk, from, valid, out, limits, source, stats);
                (pos, n, n)
            }
            Encoding::Ndjson => {
                self.consts.prepare_time(chunk.observed_ns);
                self.consts
                    .prepare_file(&chunk.file, &self.resource, self.sources.get(source));
                let (pos, n, lines) = match self.route(chunk, from, stats) {
                    Route::Raw if valid => {
                        let (pos, n) = self.ndjson_raw_valid(chunk, from, out, limits);
                        (pos, n, n)
                    }
                    Route::Raw => {
                        let (pos, n) = self.ndjson_raw_lossy(chunk, from, out, limits, source, stats);
                        (pos, n, n)
                    }
                    Route::Json => {
                        let (pos, n) = self.ndjson_json(chunk, from, out, limits, source, stats);
                        (pos, n, n)
                    }
                    Route::Assembled => self.ndjson_assembled(chunk, from, out, limits, stats),
                };
                (pos, n, lines)
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
        bump_by(&mut stats.lines, source, lines as u64);
        (pos, records)
    }

    /// Where the checkpoint of `chunk`'s file may go once the records encoded up to `pos`
    /// are delivered: `pos`, or the first line of an event still being collected.
    pub fn commit_point(&self, chunk: &Chunk, pos: usize) -> Mark {
        let uid = chunk.file.uid;
        let held = self
            .files
            .get(&uid)
            .and_then(|f| f.assembler.as_ref())
            .and_then(Assembler::held);
        let at = match held {
            Some(start) => start,
            None => {
                let (validator_len, validator) = validator_of(&chunk.data[..pos]);
                Start {
                    offset: chunk.start + pos as u64,
                    validator_len,
                    validator,
                }
            }
        };
        Mark {
            uid,
            offset: at.offset,
            validator_len: at.validator_len,
            validator: at.validator,
        }
    }

    /// When the next event being collected is due for `flush_due`.
    pub fn next_due(&self) -> Option<Instant> {
        self.files.values().filter_map(|f| f.assembler.as_ref()?.due()).min()
    }

    /// Writes the events being collected of files that have been quiet past their timeout
    /// (all of them when `all`: at shutdown), and forgets long-idle files. Returns the number
    /// of records written and the checkpoint marks they allow.
    pub fn flush_due(
        &mut self,
        now: Instant,
        all: bool,
        out: &mut Vec<u8>,
        stats: &mut EncodeStats,
    ) -> (usize, Vec<Mark>) {
        let mut records = 0;
        let mut marks = Vec::new();
        let Encoder {
            files,
            consts,
            sources,
            resource,
            scratch,
            ..
        } = self;
        for (uid, state) in files.iter_mut() {
            let Some(asm) = state.assembler.as_mut() else { continue };
            if !asm.due().is_some_and(|d| all || d <= now) {
                continue;
            }
            let source = state.file.source;
            let plan = sources.get(source);
            consts.prepare_file(&state.file, resource, plan);
            let static_fields = plan.map_or(&[][..], |p| &p.static_fields[..]);
            asm.flush(&mut |ev| {
                write_event(out, consts, scratch, static_fields, &ev);
                count_event(stats, source, &ev);
                records += 1;
            });
            if let Some(at) = state.consumed {
                marks.push(Mark {
                    uid: *uid,
                    offset: at.offset,
                    validator_len: at.validator_len,
                    validator: at.validator,
                });
            }
        }
        files.retain(|_, f| {
            f.assembler
                .as_ref()
                .is_none_or(|a| a.is_pending() || now.saturating_duration_since(a.last_input) < FILE_STATE_IDLE)
        });
        stats.records += records as u64;
        (records, marks)
    }

    /// Picks the path for `chunk`: the source's direct one, or the file's state (made on its
    /// first chunk, where `auto` detects the format).
    fn route(&mut self, chunk: &Chunk, from: usize, stats: &mut EncodeStats) -> Route {
        let source = chunk.file.source;
        let Some(plan) = self.sources.get(source) else {
            return Route::Raw;
        };
        if plan.adapter.is_stateless() {
            return match plan.adapter.format {
                Format::Json => Route::Json,
                _ => Route::Raw,
            };
        }
        let state = self.files.entry(chunk.file.uid).or_insert_with(|| {
            let format = match &plan.adapter.format {
                Format::Auto => {
                    let detection = detect::detect(&sample_lines(&chunk.data[from..]), chunk.observed_ns);
                    stats.detected.push((source, Arc::clone(&chunk.file.path), detection));
                    assemble::detected_format(detection.format)
                }
                f => f.clone(),
            };
            let direct = plan.adapter.multiline.is_none() && matches!(format, Format::Raw | Format::Json);
            FileState {
                file: Arc::clone(&chunk.file),
                assembler: (!direct).then(|| Assembler::new(&plan.adapter, &format)),
                format,
                consumed: None,
            }
        });
        if !Arc::ptr_eq(&state.file, &chunk.file) {
            // Renamed (rotation): the records of pending events name the path they came from.
            state.file = Arc::clone(&chunk.file);
        }
        match (&state.assembler, &state.format) {
            (Some(_), _) => Route::Assembled,
            (None, Format::Json) => Route::Json,
            (None, _) => Route::Raw,
        }
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

    fn static_fields(&self, source: usize) -> &[u8] {
        self.sources.get(source).map_or(&[][..], |p| &p.static_fields[..])
    }

    /// NDJSON of `raw` lines from valid UTF-8: the hot path. One scan per line finds its end
    /// and its bytes to escape.
    fn ndjson_raw_valid(&self, chunk: &Chunk, from: usize, out: &mut Vec<u8>, limits: Limits) -> (usize, usize) {
        let data = &chunk.data[..];
        let content_end = unterminated_content_end(chunk);
        let c = &self.consts;
        let static_fields = self.static_fields(chunk.file.source);
        let (mut pos, mut records) = (from, 0);
        while pos < data.len() && !limits.reached(records, out.len()) {
            out.extend_from_slice(&c.head_raw);
            let (next, terminated) = match escape_line_into(out, &data[pos..content_end.max(pos)]) {
                Some(nl) => (pos + nl + 1, true),
                None => (data.len(), false),
            };
            write_location(out, c, 0, chunk.start + pos as u64);
            write_marks(
                out,
                pos == 0 && chunk.head_continues,
                !terminated && chunk.tail_truncated,
                static_fields,
            );
            out.extend_from_slice(&c.record_end);
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
            self.write_raw_record(
                out,
                text.as_bytes(),
                chunk.start + pos as u64,
                pos == 0 && chunk.head_continues,
                !line.terminated && chunk.tail_truncated,
                source,
            );
            pos = line.next;
            records += 1;
        }
        (pos, records)
    }

    /// A raw record: the line as the message, then its marks and static fields.
    #[inline]
    fn write_raw_record(
        &self,
        out: &mut Vec<u8>,
        message: &[u8],
        offset: u64,
        continues: bool,
        truncated: bool,
        source: usize,
    ) {
        out.extend_from_slice(&self.consts.head_raw);
        escape_into(out, message);
        write_location(out, &self.consts, 0, offset);
        write_marks(out, continues, truncated, self.static_fields(source));
        out.extend_from_slice(&self.consts.record_end);
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
                    self.write_raw_record(out, content, offset, continues, truncated, source)
                }
                Ok(text) => self.write_json_line(out, text, &mut rec, offset, source, stats),
                Err(_) => {
                    bump(&mut stats.invalid_utf8, source);
                    let text = String::from_utf8_lossy(content);
                    if continues || truncated {
                        self.write_raw_record(out, text.as_bytes(), offset, continues, truncated, source);
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
        let static_fields = self.sources.get(source).map_or(&[][..], |p| &p.static_fields[..]);
        if let Err(e) = json::parse_into(text, rec) {
            bump(&mut stats.parse_errors, source);
            self.scratch.clear();
            let _ = write!(self.scratch, "{e}");
            out.extend_from_slice(&c.head_raw);
            escape_into(out, text.as_bytes());
            write_location(out, c, 0, offset);
            out.extend_from_slice(br#","fields":{"parse_error":""#);
            escape_into(out, self.scratch.as_bytes());
            out.push(b'"');
            if !static_fields.is_empty() {
                out.push(b',');
                out.extend_from_slice(static_fields);
            }
            out.push(b'}');
            out.extend_from_slice(&c.record_end);
            return;
        }
        match rec.timestamp_ns {
            Some(ns) => {
                out.extend_from_slice(br#"{"timestamp":""#);
                timefmt::rfc3339_nanos(ns, out);
                out.extend_from_slice(&c.after_event_time);
            }
            None => {
                if rec.time_unparsed {
                    bump(&mut stats.bad_timestamps, source);
                }
                out.extend_from_slice(&c.head_observed)
            }
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
        let mut fields = FieldsWriter { open: false };
        for field in &rec.fields {
            fields.key(out, &field.key);
            out.extend_from_slice(field.value.get().as_bytes());
        }
        fields.raw_members(out, static_fields);
        fields.close(out);
        out.extend_from_slice(&c.record_end);
    }

    /// NDJSON of the lines of a file that has an `Assembler`: parsed in its format, joined,
    /// each finished event written as a record. Returns the position, records and lines.
    fn ndjson_assembled(
        &mut self,
        chunk: &Chunk,
        from: usize,
        out: &mut Vec<u8>,
        limits: Limits,
        stats: &mut EncodeStats,
    ) -> (usize, usize, usize) {
        let data = &chunk.data[..];
        let content_end = unterminated_content_end(chunk);
        let source = chunk.file.source;
        let Encoder {
            files,
            consts,
            sources,
            scratch,
            ..
        } = self;
        let static_fields = sources.get(source).map_or(&[][..], |p| &p.static_fields[..]);
        let Some(state) = files.get_mut(&chunk.file.uid) else {
            return (from, 0, 0);
        };
        let format = state.format.clone();
        let Some(asm) = state.assembler.as_mut() else {
            return (from, 0, 0);
        };
        asm.last_input = Instant::now();
        let (mut pos, mut records, mut lines) = (from, 0, 0);
        let mut rec = Parsed::default();
        while pos < data.len() && !limits.reached(records, out.len()) {
            let line = line_at(data, pos, content_end);
            let content = &data[line.start..line.end];
            let offset = chunk.start + pos as u64;
            let continues = pos == 0 && chunk.head_continues;
            let truncated = !line.terminated && chunk.tail_truncated;
            let text = match std::str::from_utf8(content) {
                Ok(t) => Cow::Borrowed(t),
                Err(_) => {
                    bump(&mut stats.invalid_utf8, source);
                    Cow::Owned(String::from_utf8_lossy(content).into_owned())
                }
            };
            if continues || truncated {
                // A piece of an over-long line: never parsed (half a line does not parse),
                // shipped as it is with its marks.
                out.extend_from_slice(&consts.head_raw);
                escape_into(out, text.as_bytes());
                write_location(out, consts, 0, offset);
                write_marks(out, continues, truncated, static_fields);
                out.extend_from_slice(&consts.record_end);
                records += 1;
            } else {
                let (validator_len, validator) = validator_of(&data[..pos]);
                let at = Start {
                    offset,
                    validator_len,
                    validator,
                };
                let mut emit = |ev: Event<'_, '_>| {
                    write_event(out, consts, scratch, static_fields, &ev);
                    count_event(stats, source, &ev);
                    records += 1;
                };
                match &text {
                    Cow::Borrowed(t) => asm.push(&format, t, at, chunk.observed_ns, &mut rec, &mut emit),
                    Cow::Owned(t) => asm.push(&format, t, at, chunk.observed_ns, &mut Parsed::default(), &mut emit),
                }
            }
            pos = line.next;
            lines += 1;
        }
        let (validator_len, validator) = validator_of(&data[..pos]);
        state.consumed = Some(Start {
            offset: chunk.start + pos as u64,
            validator_len,
            validator,
        });
        (pos, records, lines)
    }
}

/// Counts what an event says went wrong with its line: a parse error, an unreadable time.
fn count_event(stats: &mut EncodeStats, source: usize, ev: &Event<'_, '_>) {
    if ev.error.is_some() {
        bump(&mut stats.parse_errors, source);
    }
    if ev.rec.time_unparsed && ev.rec.timestamp_ns.is_none() {
        bump(&mut stats.bad_timestamps, source);
    }
}

/// One event from an `Assembler` as a record.
fn write_event(out: &mut Vec<u8>, c: &ChunkConsts, scratch: &mut String, static_fields: &[u8], ev: &Event<'_, '_>) {
    let rec = ev.rec;
    let same_time = c.observed_ns == Some(ev.observed_ns);
    match (rec.timestamp_ns, same_time) {
        (Some(ns), true) => {
            out.extend_from_slice(br#"{"timestamp":""#);
            timefmt::rfc3339_nanos(ns, out);
            out.extend_from_slice(&c.after_event_time);
        }
        (None, true) => out.extend_from_slice(&c.head_observed),
        (ts, false) => {
            out.extend_from_slice(br#"{"timestamp":""#);
            timefmt::rfc3339_nanos(ts.unwrap_or(ev.observed_ns), out);
            out.extend_from_slice(br#"","observed_timestamp":""#);
            timefmt::rfc3339_nanos(ev.observed_ns, out);
            out.push(b'"');
        }
    }
    if let Some(level) = rec.level {
        out.extend_from_slice(br#","level":""#);
        out.extend_from_slice(level.as_str().as_bytes());
        out.push(b'"');
    }
    if !rec.message.is_empty() {
        out.extend_from_slice(br#","message":""#);
        escape_into(out, rec.message.as_bytes());
        out.push(b'"');
    }
    if let Some(stream) = rec.stream {
        out.extend_from_slice(br#","stream":""#);
        out.extend_from_slice(stream.as_str().as_bytes());
        out.push(b'"');
    }
    write_location(out, c, 1, ev.offset);
    let mut fields = FieldsWriter { open: false };
    for (k, v) in &rec.fields {
        fields.key(out, k);
        write_value(out, v);
    }
    if let Some(e) = &ev.error {
        scratch.clear();
        let _ = write!(scratch, "{e}");
        fields.key(out, "parse_error");
        out.push(b'"');
        escape_into(out, scratch.as_bytes());
        out.push(b'"');
    }
    for (set, key) in [
        (ev.continuation, "continuation"),
        (rec.truncated, "truncated"),
        (rec.partial, "partial"),
    ] {
        if set {
            fields.key(out, key);
            out.extend_from_slice(b"true");
        }
    }
    fields.raw_members(out, static_fields);
    fields.close(out);
    out.extend_from_slice(&c.record_end);
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
        Encoder::new(encoding, vec![Format::Raw.into(), format.into()], &resource)
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
            let (out, stats) = encode_all(&mut encoder(Encoding::Ndjson, format.clone(), &[]), &c);
            let recs = records(&out);
            assert_eq!(recs[1].0[2].1, json!("bad \u{fffd}\u{fffd} here"), "{format:?}");
            assert_eq!(stats.invalid_utf8, vec![0, 2], "{format:?}");
            if matches!(format, Format::Json) {
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
            let (encoding, format) = [(Encoding::Ndjson, Format::Raw), (Encoding::Ndjson, Format::Json), (Encoding::Raw, Format::Raw)][mode].clone();

            let mut whole = Vec::new();
            let mut whole_stats = EncodeStats::default();
            let (pos, n) = encoder(encoding, format.clone(), &[("r", "1")]).encode(&c, 0, &mut whole, usize::MAX, usize::MAX, &mut whole_stats);
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

    /// A chunk of `data` at `start` in file `uid` of source 1 at `path`.
    fn file_chunk(path: &str, uid: u64, data: &[u8], start: u64) -> Arc<Chunk> {
        let path_json = serde_json::to_string(path).unwrap();
        Arc::new(Chunk {
            file: Arc::new(FileMeta {
                uid,
                source: 1,
                path: Arc::from(path),
                path_json: path_json.into(),
                id_prefix: format!("{uid:016x}-").into(),
            }),
            start,
            data: Bytes::copy_from_slice(data),
            observed_ns: OBSERVED,
            head_continues: false,
            tail_truncated: false,
            budget: Budget::new(1 << 20).take(data.len()),
        })
    }

    fn plan(format: Format, multiline: Option<&str>) -> SourcePlan {
        let mut p = SourcePlan::from(format);
        p.adapter.multiline = multiline.map(|preset| crate::config::MultilineSettings {
            rule: crate::adapt::multiline::Rule::preset(preset).unwrap(),
            max_lines: 500,
            max_bytes: 1 << 20,
            timeout: Duration::from_millis(50),
        });
        p
    }

    fn plan_encoder(p: SourcePlan) -> Encoder {
        Encoder::new(Encoding::Ndjson, vec![Format::Raw.into(), p], &BTreeMap::new())
    }

    /// Encodes every chunk whole, one after the other; returns the output.
    fn feed(enc: &mut Encoder, chunks: &[Arc<Chunk>], stats: &mut EncodeStats) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks {
            let (pos, _) = enc.encode(c, 0, &mut out, usize::MAX, usize::MAX, stats);
            assert_eq!(pos, c.data.len());
        }
        out
    }

    fn values(out: &[u8]) -> Vec<Value> {
        out.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(l))))
            .collect()
    }

    const CRI: &[u8] = b"2026-11-25T12:00:00.000000001Z stdout P first \n\
2026-11-25T12:00:00.000000002Z stderr F an error\n\
2026-11-25T12:00:00.000000003Z stdout P second \n\
2026-11-25T12:00:00.000000004Z stdout F third\n\
2026-11-25T12:00:00.000000005Z stdout F alone\n";

    #[test]
    fn cri_pieces_join_across_chunks_and_hold_the_checkpoint() {
        let mut enc = plan_encoder(Format::Cri.into());
        let mut stats = EncodeStats::default();
        // Cut after the first P piece and the stderr line: the stdout message is pending.
        let cut = CRI.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(1).unwrap().0 + 1;
        let a = file_chunk("/l/c.log", 1, &CRI[..cut], 100);
        let b = file_chunk("/l/c.log", 1, &CRI[cut..], 100 + cut as u64);
        let out_a = feed(&mut enc, std::slice::from_ref(&a), &mut stats);
        let recs = values(&out_a);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0]["message"], "an error");
        assert_eq!(recs[0]["stream"], "stderr");
        // The checkpoint may not pass the pending message's first piece.
        assert_eq!(enc.commit_point(&a, a.data.len()).offset, 100);
        let out_b = feed(&mut enc, std::slice::from_ref(&b), &mut stats);
        let recs = values(&out_b);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0]["message"], "first second third");
        assert_eq!(recs[0]["stream"], "stdout");
        assert_eq!(recs[0]["timestamp"], "2026-11-25T12:00:00.000000001Z");
        assert_eq!(recs[0]["offset"], 100);
        assert_eq!(recs[0]["id"], "0000000000000001-100");
        assert_eq!(recs[1]["message"], "alone");
        assert_eq!(enc.commit_point(&b, b.data.len()).offset, b.end());
        assert_eq!(stats.lines, vec![0, 5]);
        assert_eq!(stats.records, 3);
    }

    #[test]
    fn docker_split_line_at_eof_is_flushed_marked_partial() {
        let data = b"{\"log\":\"whole\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-25T12:00:00Z\"}\n\
{\"log\":\"piece one \",\"stream\":\"stdout\",\"time\":\"2026-11-25T12:00:01Z\"}\n";
        let mut enc = plan_encoder(Format::Docker.into());
        let mut stats = EncodeStats::default();
        let c = file_chunk("/l/d.log", 2, data, 0);
        let out = feed(&mut enc, std::slice::from_ref(&c), &mut stats);
        assert_eq!(values(&out).len(), 1);
        let first_len = data.iter().position(|b| *b == b'\n').unwrap() as u64 + 1;
        assert_eq!(enc.commit_point(&c, c.data.len()).offset, first_len);
        assert!(enc.next_due().is_some());
        let mut out = Vec::new();
        let (n, marks) = enc.flush_due(Instant::now(), true, &mut out, &mut stats);
        assert_eq!(n, 1);
        let recs = values(&out);
        assert_eq!(recs[0]["message"], "piece one ");
        assert_eq!(recs[0]["fields"]["partial"], true);
        assert_eq!(recs[0]["offset"], first_len);
        assert_eq!(marks.len(), 1);
        assert_eq!((marks[0].uid, marks[0].offset), (2, c.end()));
        assert!(enc.next_due().is_none());
    }

    const JAVA: &str = "2026-11-25 12:00:00,001 INFO started\n\
2026-11-25 12:00:01,002 ERROR failed\n\
java.lang.IllegalStateException: boom\n\
\tat a.b.C.d(C.java:1)\n\
\t... 3 more\n\
2026-11-25 12:00:02,003 WARN next\n";

    #[test]
    fn java_stack_traces_join_into_their_event_for_any_chunking() {
        let re =
            crate::adapt::regex::RegexParser::new(r"^(?P<timestamp>\S+ \S+) (?P<level>\w+) (?P<message>.*)$", None)
                .unwrap();
        for format in [Format::Raw, Format::Regex(Arc::new(re))] {
            for cut in 1..JAVA.len() {
                let Some(nl) = JAVA[..cut].rfind('\n') else { continue };
                let cut = nl + 1;
                let mut enc = plan_encoder(plan(format.clone(), Some("java")));
                let mut stats = EncodeStats::default();
                let chunks = [
                    file_chunk("/l/j.log", 3, &JAVA.as_bytes()[..cut], 0),
                    file_chunk("/l/j.log", 3, &JAVA.as_bytes()[cut..], cut as u64),
                ];
                let mut out = feed(&mut enc, &chunks, &mut stats);
                enc.flush_due(Instant::now(), true, &mut out, &mut stats);
                let recs = values(&out);
                assert_eq!(recs.len(), 3, "{format:?} cut {cut}");
                let m = recs[1]["message"].as_str().unwrap();
                assert!(m.ends_with("boom\n\tat a.b.C.d(C.java:1)\n\t... 3 more"), "{m}");
                assert_eq!(recs[1]["offset"], 37);
                if matches!(format, Format::Regex(_)) {
                    assert_eq!(recs[1]["level"], "error");
                    assert!(m.starts_with("failed\njava.lang"), "{m}");
                    assert_eq!(recs[2]["level"], "warn");
                } else {
                    assert!(m.starts_with("2026-11-25 12:00:01,002 ERROR failed\n"), "{m}");
                }
                assert_eq!(stats.lines, vec![0, 6]);
            }
        }
    }

    #[test]
    fn a_quiet_file_ships_its_last_event_after_the_timeout() {
        let mut enc = plan_encoder(plan(Format::Raw, Some("java")));
        let mut stats = EncodeStats::default();
        let c = file_chunk("/l/j.log", 4, JAVA.as_bytes(), 0);
        let out = feed(&mut enc, std::slice::from_ref(&c), &mut stats);
        assert_eq!(values(&out).len(), 2);
        let last = JAVA.trim_end().rfind('\n').unwrap() as u64 + 1;
        assert_eq!(enc.commit_point(&c, c.data.len()).offset, last);
        let due = enc.next_due().unwrap();
        let mut out = Vec::new();
        assert_eq!(
            enc.flush_due(due - Duration::from_millis(10), false, &mut out, &mut stats)
                .0,
            0
        );
        assert_eq!(enc.flush_due(due, false, &mut out, &mut stats).0, 1);
        assert_eq!(values(&out)[0]["message"], "2026-11-25 12:00:02,003 WARN next");
    }

    #[test]
    fn a_stack_trace_cut_by_rotation_loses_no_line() {
        // The trace starts in the rotated file and continues at the top of the new one.
        let old = b"2026-11-25 12:00:01,002 ERROR failed\njava.lang.IllegalStateException: boom\n";
        let new = b"\tat a.b.C.d(C.java:1)\n2026-11-25 12:00:02,003 INFO next\n";
        let mut enc = plan_encoder(plan(Format::Raw, Some("java")));
        let mut stats = EncodeStats::default();
        let chunks = [
            file_chunk("/l/app.log.1", 5, old, 0),
            file_chunk("/l/app.log", 6, new, 0),
        ];
        let mut out = feed(&mut enc, &chunks, &mut stats);
        enc.flush_due(Instant::now(), true, &mut out, &mut stats);
        let recs = values(&out);
        let messages: Vec<&str> = recs.iter().map(|r| r["message"].as_str().unwrap()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages.contains(&"2026-11-25 12:00:01,002 ERROR failed\njava.lang.IllegalStateException: boom"));
        let cont = recs.iter().find(|r| r["message"] == "\tat a.b.C.d(C.java:1)").unwrap();
        assert_eq!(cont["fields"]["continuation"], true);
        assert_eq!(cont["file"], "/l/app.log");
    }

    #[test]
    fn parsed_fields_parse_errors_and_static_fields() {
        let mut p = SourcePlan::from(Format::Logfmt);
        p.static_fields = br#""team":"core""#.to_vec();
        let mut enc = plan_encoder(p);
        let mut stats = EncodeStats::default();
        let c = file_chunk(
            "/l/f.log",
            7,
            b"level=warn msg=\"disk \\\"low\\\"\" free=12 ratio=0.5\n=broken \"\n",
            0,
        );
        let out = feed(&mut enc, std::slice::from_ref(&c), &mut stats);
        let recs = values(&out);
        assert_eq!(recs[0]["level"], "warn");
        assert_eq!(recs[0]["message"], "disk \"low\"");
        assert_eq!(recs[0]["fields"]["team"], "core");
        assert!(recs[0]["fields"]["free"] == json!(12) || recs[0]["fields"]["free"] == json!("12"));
        assert_eq!(recs[1]["message"], "=broken \"");
        assert!(recs[1]["fields"]["parse_error"]
            .as_str()
            .unwrap()
            .starts_with("logfmt: "));
        assert_eq!(recs[1]["fields"]["team"], "core");
        assert_eq!(stats.parse_errors, vec![0, 1]);
    }

    #[test]
    fn unreadable_times_keep_the_line_use_the_observed_time_and_are_counted() {
        let re = crate::adapt::regex::RegexParser::new(r"^(?P<timestamp>\S+) (?P<message>.*)$", None).unwrap();
        for format in [Format::Json, Format::Logfmt, Format::Regex(Arc::new(re))] {
            let line: &[u8] = match format {
                Format::Json => b"{\"time\":\"yesterday\",\"msg\":\"m\"}\n",
                Format::Logfmt => b"ts=yesterday msg=m\n",
                _ => b"yesterday m\n",
            };
            let mut enc = plan_encoder(format.clone().into());
            let mut stats = EncodeStats::default();
            let out = feed(&mut enc, &[file_chunk("/l/t.log", 12, line, 0)], &mut stats);
            let rec = &values(&out)[0];
            assert_eq!(rec["timestamp"], OBSERVED_TEXT, "{format:?}");
            assert_eq!(rec["message"], "m", "{format:?}");
            let kept = rec["fields"].as_object().unwrap();
            assert!(kept.values().any(|v| v == "yesterday"), "{format:?}: {rec}");
            assert_eq!(stats.bad_timestamps, vec![0, 1], "{format:?}");
            assert!(stats.parse_errors.iter().all(|n| *n == 0));
        }
    }

    #[test]
    fn auto_detects_per_file_and_reports_it() {
        let mut enc = plan_encoder(Format::Auto.into());
        let mut stats = EncodeStats::default();
        let cri = file_chunk("/l/a.log", 8, CRI, 0);
        let json_lines = file_chunk("/l/b.log", 9, b"{\"msg\":\"hi\",\"level\":\"error\"}\n", 0);
        let out = feed(&mut enc, &[cri, json_lines], &mut stats);
        let recs = values(&out);
        assert_eq!(recs.last().unwrap()["message"], "hi");
        assert_eq!(recs.last().unwrap()["level"], "error");
        assert_eq!(recs[0]["stream"], "stderr");
        let picked: Vec<(&str, &str)> = stats
            .detected
            .iter()
            .map(|(_, p, d)| (&**p, d.format.as_str()))
            .collect();
        assert_eq!(picked, vec![("/l/a.log", "cri"), ("/l/b.log", "json")]);
    }

    #[test]
    fn pod_log_paths_add_kubernetes_resource() {
        let mut p = SourcePlan::from(Format::Cri);
        p.kubernetes_path_metadata = true;
        let resource: BTreeMap<String, String> = [("k8s.node.name".to_string(), "node-1".to_string())].into();
        let mut enc = Encoder::new(Encoding::Ndjson, vec![Format::Raw.into(), p], &resource);
        let mut stats = EncodeStats::default();
        let c = file_chunk(
            "/var/log/pods/shop_web-1_0f1e-aa/nginx/0.log",
            10,
            b"2026-11-25T12:00:00Z stdout F hello\n",
            0,
        );
        let out = feed(&mut enc, &[c], &mut stats);
        assert_eq!(
            values(&out)[0]["resource"],
            json!({"k8s.container.name": "nginx", "k8s.namespace.name": "shop", "k8s.node.name": "node-1",
                   "k8s.pod.name": "web-1", "k8s.pod.uid": "0f1e-aa"})
        );
    }

    proptest! {
        #[test]
        fn cri_and_docker_joining_ignores_chunk_boundaries(
            pieces in proptest::collection::vec((any::<bool>(), any::<bool>(), "[a-z \"\\\\]{0,12}"), 1..12),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
            docker in any::<bool>(),
        ) {
            let mut data = Vec::new();
            for (i, (stderr, partial, text)) in pieces.iter().enumerate() {
                let stream = if *stderr { "stderr" } else { "stdout" };
                if docker {
                    let log = if *partial { text.clone() } else { format!("{text}\n") };
                    let line = json!({"log": log, "stream": stream, "time": format!("2026-11-25T12:00:{:02}Z", i % 60)});
                    data.extend_from_slice(line.to_string().as_bytes());
                } else {
                    let tag = if *partial { "P" } else { "F" };
                    data.extend_from_slice(format!("2026-11-25T12:00:{:02}Z {stream} {tag} {text}", i % 60).as_bytes());
                }
                data.push(b'\n');
            }
            let line_ends: Vec<usize> = data.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect();
            let mut bounds: Vec<usize> = cuts.iter().map(|c| line_ends[c.index(line_ends.len())]).collect();
            bounds.push(0);
            bounds.push(data.len());
            bounds.sort_unstable();
            bounds.dedup();
            let format = if docker { Format::Docker } else { Format::Cri };
            let run = |bounds: &[usize]| {
                let mut enc = plan_encoder(format.clone().into());
                let mut stats = EncodeStats::default();
                let chunks: Vec<_> = bounds.windows(2).map(|w| file_chunk("/l/p.log", 11, &data[w[0]..w[1]], w[0] as u64)).collect();
                let mut out = feed(&mut enc, &chunks, &mut stats);
                enc.flush_due(Instant::now(), true, &mut out, &mut stats);
                (values(&out), stats.parse_errors.iter().sum::<u64>())
            };
            let (whole, errors) = run(&[0, data.len()]);
            prop_assert_eq!(errors, 0);
            let (cut, _) = run(&bounds);
            prop_assert_eq!(&whole, &cut);
            // Every piece's text is in some message, in order per stream.
            let joined: String = whole.iter().map(|r| r["message"].as_str().unwrap_or("").trim_end_matches('\n').to_owned()).collect();
            let texts: String = pieces.iter().map(|p| p.2.as_str()).collect();
            prop_assert_eq!(joined.len(), texts.len());
        }
    }
}
