//! The record: what one log event is once the adapt stage has read it, made once per line and
//! shared by every sink that ships it.
//!
//! Records travel in `Records`, a batch of the records made from one chunk of one file (or
//! flushed from the joining state of one file), shared through an `Arc` by every sink reading
//! the source. A batch keeps the chunk it was made from, so a record's text can be a span of
//! the chunk's bytes instead of a copy; text that had to be unescaped or joined lives in the
//! batch's `arena`, and all the batch's fields in one vector: making the records of a chunk
//! allocates a few vectors per chunk, never one per line.
//!
//! Two bodies:
//! - `Body::Lines`: every line of the chunk is a record whose message is the line (format
//!   `raw`). Nothing per line is stored at all; sinks walk the lines themselves, which keeps
//!   the `raw` → NDJSON path as fast as copying with escapes.
//! - `Body::Table`: records the parsers made, in `Table`.
//!
//! Positions. A sink takes a batch in steps (its own batches fill up); it names how far it got
//! with a *position*: a byte offset in the chunk for `Lines`, a record index for `Table`.
//! `Records::mark_at` turns a position into the checkpoint mark that delivering everything
//! before it allows. `view` reads any record the same way whatever the body (`RecordRef`), for
//! the sinks that are not on the hot path.

mod rendering;
mod view;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

pub use rendering::{Buffers, Rendering};
pub use view::{FieldRef, RecordRef, ValueRef};

use crate::budget::BudgetGuard;
use crate::chunk::{Chunk, FileMeta};
use crate::mark::Mark;

/// Normalized severity of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    /// The record's spelling: `trace`, `debug`, `info`, `warn`, `error`, `fatal`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
}

/// Which output stream of a container a line came from (`cri`, `docker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The record's spelling: `stdout` / `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// `stdout` / `stderr` exactly (the spelling both runtimes write); anything else is `None`.
    pub fn from_name(s: &str) -> Option<Stream> {
        match s {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// What every record of one file shares, made once per file (again after a rename).
#[derive(Debug)]
pub struct Context {
    pub file: Arc<FileMeta>,
    /// The source's static `fields`, in config order.
    pub static_fields: Arc<[(String, String)]>,
    /// The record's `resource`: the agent's own attributes, with those read off a
    /// `/var/log/pods` path over them.
    pub resource: Arc<BTreeMap<String, String>>,
}

/// Text of a record: where its bytes are. Every kind holds valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// `chunk.data[start..start + len]`, as the line wrote it.
    Chunk {
        start: u32,
        len: u32,
    },
    /// `arena[start..start + len]`: text that was unescaped, joined or repaired.
    Arena {
        start: u32,
        len: u32,
    },
    /// A JSON string literal in the chunk, quotes and escapes included (a `json` line's
    /// message): copied as it stands into JSON, unescaped for other protocols.
    Literal {
        start: u32,
        len: u32,
    },
    Static(&'static str),
}

/// A value of a record's `fields`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Str(Text),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A nested object: `table.fields[start..start + len]`.
    Map {
        start: u32,
        len: u32,
    },
    /// Text that is already JSON (a `json` line's value, a `docker` line's `attrs`), kept as
    /// the line wrote it.
    Json(Text),
}

/// One key of `fields` with its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    pub key: Text,
    pub value: Value,
}

/// Marks a record can carry (they become `fields.<name> = true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// The record begins with a line that continues an earlier one (a piece of a split line,
    /// a multiline event cut by its limits, lines before any start line).
    pub continuation: bool,
    /// The message was cut (a piece of an over-long line, an event at its byte cap).
    pub truncated: bool,
    /// Container pieces whose last piece never came.
    pub partial: bool,
}

/// One structured record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The event's own time, nanoseconds since the epoch; `None`: use `observed_ns`.
    pub time_ns: Option<i64>,
    /// When its first line was read.
    pub observed_ns: i64,
    /// Byte offset of its first line in the file (its `offset`, and the tail of its `id`).
    pub offset: u64,
    pub level: Option<Level>,
    /// `None`: the line had no message (the key is left out).
    pub message: Option<Text>,
    pub stream: Option<Stream>,
    /// Its top-level fields: `table.fields[fields.0..fields.0 + fields.1]`.
    pub fields: (u32, u32),
    pub flags: Flags,
    /// Where the file's checkpoint may go once this record and every one before it in the
    /// batch are delivered.
    pub commit: Commit,
}

/// Where the checkpoint may go after a record: usually just past a line of the chunk, whose
/// mark (with its validator) is made only when a sink asks for it, not for every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The chunk position just past the last line the record took.
    After(u32),
    /// A mark elsewhere: the first line of an event still being joined, or where a file's
    /// flushed events end.
    At(Mark),
}

impl Default for Commit {
    fn default() -> Commit {
        Commit::At(Mark::default())
    }
}

/// The records the parsers made from one chunk, and what their text points into.
#[derive(Debug, Default)]
pub struct Table {
    pub records: Vec<Record>,
    pub fields: Vec<Field>,
    pub arena: String,
    /// A transform changed the records (dropped, edited, redacted some, or made them from a
    /// `Lines` body): an `encoding = "raw"` sink then writes the records' messages, not the
    /// chunk's lines, so nothing a transform removed reaches it.
    pub transformed: bool,
}

impl Table {
    /// The bytes of arena or static text (empty for chunk text, which the table does not hold,
    /// and for a span past the arena).
    pub fn text_bytes(&self, text: Text) -> &[u8] {
        match text {
            Text::Arena { start, len } => self
                .arena
                .as_bytes()
                .get(start as usize..start as usize + len as usize)
                .unwrap_or(&[]),
            Text::Static(s) => s.as_bytes(),
            Text::Chunk { .. } | Text::Literal { .. } => &[],
        }
    }

    /// Copies `s` into the arena.
    pub fn push_text(&mut self, s: &str) -> Text {
        let start = self.arena.len() as u32;
        self.arena.push_str(s);
        Text::Arena {
            start,
            len: s.len() as u32,
        }
    }
}

/// How the records of a batch are stored. See the module doc.
#[derive(Debug)]
pub enum Body {
    /// Every line of the chunk is a `raw` record. `utf8`: the chunk is valid UTF-8 (else
    /// lines are repaired with U+FFFD as they are written).
    Lines {
        utf8: bool,
    },
    Table(Table),
}

/// A batch of records of one file, in file order. See the module doc.
#[derive(Debug)]
pub struct Records {
    pub context: Arc<Context>,
    /// The chunk the records were made from (its bytes back `Text::Chunk`; it also holds their
    /// in-flight budget). `None` for events flushed from joining state, whose text is all in
    /// the arena.
    pub chunk: Option<Arc<Chunk>>,
    pub body: Body,
    /// Where the file's checkpoint may go once every record here is delivered.
    pub end: Mark,
    /// Holds the table's own memory (records, fields, arena) against `max_inflight_bytes`
    /// until every sink is done with the batch, as the chunk's guard holds its bytes.
    pub budget: Option<BudgetGuard>,
    /// The batch as NDJSON, made once for every sink that writes that text: by the adapt
    /// worker for parsed records, else by the first sink to need it (`ship::encode`).
    pub rendering: OnceLock<Rendering>,
}

impl Table {
    /// The heap memory the table holds.
    pub fn heap_bytes(&self) -> usize {
        self.records.capacity() * std::mem::size_of::<Record>()
            + self.fields.capacity() * std::mem::size_of::<Field>()
            + self.arena.capacity()
    }
}

impl Records {
    /// The bytes of the chunk (empty without one).
    pub fn data(&self) -> &[u8] {
        self.chunk.as_ref().map_or(&[][..], |c| &c.data[..])
    }

    /// The position just past the last record (see the module doc).
    pub fn end_position(&self) -> usize {
        match &self.body {
            Body::Lines { .. } => self.data().len(),
            Body::Table(t) => t.records.len(),
        }
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        match &self.body {
            Body::Lines { .. } => crate::chunk::count_lines(self.data()),
            Body::Table(t) => t.records.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.end_position() == 0
    }

    /// The checkpoint mark that delivering every record before position `pos` allows;
    /// `None` at 0 (nothing delivered).
    pub fn mark_at(&self, pos: usize) -> Option<Mark> {
        if pos == 0 {
            return None;
        }
        match &self.body {
            _ if pos >= self.end_position() => Some(self.end),
            Body::Lines { .. } => self
                .chunk
                .as_ref()
                .map(|c| Mark::at(c.start + pos as u64, &c.data[..pos])),
            Body::Table(t) => Some(match t.records[pos - 1].commit {
                Commit::At(m) => m,
                Commit::After(p) => {
                    let c = self.chunk.as_ref()?;
                    let p = (p as usize).min(c.data.len());
                    Mark::at(c.start + p as u64, &c.data[..p])
                }
            }),
        }
    }

    /// The bytes of `text`.
    pub fn bytes(&self, text: Text) -> &[u8] {
        match (text, &self.body) {
            (Text::Chunk { start, len } | Text::Literal { start, len }, _) => self
                .data()
                .get(start as usize..start as usize + len as usize)
                .unwrap_or(&[]),
            (_, Body::Table(t)) => t.text_bytes(text),
            (Text::Static(s), Body::Lines { .. }) => s.as_bytes(),
            (Text::Arena { .. }, Body::Lines { .. }) => &[],
        }
    }

    /// `text` as a string: unescaped for a JSON literal, repaired if it were not UTF-8 (it
    /// always is; the parsers only make text from `&str`).
    pub fn text(&self, text: Text) -> std::borrow::Cow<'_, str> {
        let bytes = self.bytes(text);
        if let Text::Literal { .. } = text {
            if let Ok(s) = serde_json::from_slice::<String>(bytes) {
                return std::borrow::Cow::Owned(s);
            }
        }
        String::from_utf8_lossy(bytes)
    }

    /// The fields `table.fields[start..start + len]`.
    pub fn fields(&self, (start, len): (u32, u32)) -> &[Field] {
        match &self.body {
            Body::Table(t) => t.fields.get(start as usize..(start + len) as usize).unwrap_or(&[]),
            Body::Lines { .. } => &[],
        }
    }
}

#[cfg(test)]
mod tests;

/// Records built by hand, for the tests of the stages that read them.
#[cfg(test)]
pub mod testing {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde_json::Value as Json;

    use super::{Body, Commit, Context, Field, Flags, Level, Record, Records, Stream, Table, Value};
    use crate::chunk::FileMeta;
    use crate::mark::Mark;

    /// One record to build; `fields` is a JSON object (arrays become JSON text, objects maps).
    #[derive(Default)]
    pub struct Rec {
        pub time_ns: Option<i64>,
        pub observed_ns: i64,
        pub offset: u64,
        pub level: Option<Level>,
        pub message: Option<&'static str>,
        pub stream: Option<Stream>,
        pub fields: Option<Json>,
        pub flags: Flags,
    }

    /// A file's context.
    pub fn context(
        path: &str,
        id_prefix: &str,
        resource: &[(&str, &str)],
        static_fields: &[(&str, &str)],
    ) -> Arc<Context> {
        Arc::new(Context {
            file: Arc::new(FileMeta {
                uid: 1,
                source: 0,
                path: Arc::from(path),
                path_json: serde_json::to_string(path).unwrap().into(),
                id_prefix: id_prefix.into(),
            }),
            static_fields: static_fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            resource: Arc::new(
                resource
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            ),
        })
    }

    /// A batch (without a chunk: all text in the arena) of `recs` in `context`.
    pub fn records(context: Arc<Context>, recs: Vec<Rec>) -> Arc<Records> {
        let mut t = Table::default();
        for r in recs {
            let message = r.message.map(|m| t.push_text(m));
            let fields = match &r.fields {
                Some(Json::Object(map)) => push_map(&mut t, map),
                _ => (t.fields.len() as u32, 0),
            };
            t.records.push(Record {
                time_ns: r.time_ns,
                observed_ns: r.observed_ns,
                offset: r.offset,
                level: r.level,
                message,
                stream: r.stream,
                fields,
                flags: r.flags,
                commit: Commit::default(),
            });
        }
        Arc::new(Records {
            context,
            chunk: None,
            body: Body::Table(t),
            end: Mark::default(),
            budget: None,
            rendering: Default::default(),
        })
    }

    /// A `raw` batch (a `Lines` body) of `data` read at offset 0 of `context`'s file.
    pub fn lines(context: Arc<Context>, data: &[u8]) -> Records {
        let chunk = Arc::new(crate::chunk::Chunk {
            file: Arc::clone(&context.file),
            start: 0,
            data: bytes::Bytes::copy_from_slice(data),
            observed_ns: 5,
            head_continues: false,
            tail_truncated: false,
            budget: crate::budget::Budget::new(1 << 30).take(data.len()),
        });
        Records {
            context,
            chunk: Some(chunk),
            body: Body::Lines {
                utf8: std::str::from_utf8(data).is_ok(),
            },
            end: Mark::at(data.len() as u64, data),
            budget: None,
            rendering: Default::default(),
        }
    }

    fn push_map(t: &mut Table, map: &serde_json::Map<String, Json>) -> (u32, u32) {
        let start = t.fields.len();
        let placeholder = Field {
            key: super::Text::Static(""),
            value: Value::Bool(false),
        };
        t.fields.resize(start + map.len(), placeholder);
        for (i, (k, v)) in map.iter().enumerate() {
            let key = t.push_text(k);
            let value = match v {
                Json::String(s) => Value::Str(t.push_text(s)),
                Json::Bool(b) => Value::Bool(*b),
                Json::Number(n) => match n.as_i64() {
                    Some(i) => Value::Int(i),
                    None => Value::Float(n.as_f64().unwrap_or(0.0)),
                },
                Json::Object(m) => {
                    let (start, len) = push_map(t, m);
                    Value::Map { start, len }
                }
                other => Value::Json(t.push_text(&other.to_string())),
            };
            t.fields[start + i] = Field { key, value };
        }
        (start as u32, map.len() as u32)
    }
}
