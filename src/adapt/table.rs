//! Filling a `record::Table` from what the parsers return (`Parsed`, `JsonLine`): text that
//! lies in the chunk becomes a span of it, anything else (unescaped, joined, repaired text,
//! keys the parsers name) is copied once into the table's arena.
//!
//! Whether a `&str` lies in the chunk is told by its address: the parsers borrow from the line
//! they were given, which is either a slice of the chunk or a repaired copy.

use std::fmt::Write as _;

use super::assemble::Event;
use super::json::{JsonLine, Message};
use super::parsed::{Field as ParsedField, FieldValue};
use crate::record::{Commit, Field, Flags, Record, Table, Text, Value};

/// Names remembered per table; past this, names are copied again (a line with many
/// distinct keys, say JSON with per-request key names, gains nothing from a longer search).
const MAX_KEYS: usize = 32;

/// A table being filled from the lines of one chunk (`data`; empty for flushed events).
pub struct Builder<'d> {
    data: &'d [u8],
    pub table: Table,
    /// Field names already copied into the arena, with where they came from: the parsers'
    /// names (`http.request.method`, …) are the same few for every line, so each is copied
    /// once per table rather than once per record.
    keys: Vec<(usize, Text)>,
    /// Where the next search of `keys` starts.
    next_key: usize,
}

impl<'d> Builder<'d> {
    pub fn new(data: &'d [u8]) -> Builder<'d> {
        Builder {
            data,
            table: Table::default(),
            keys: Vec::new(),
            next_key: 0,
        }
    }

    /// A builder for a chunk of `lines` lines: room for a record per line up front, so the
    /// table does not grow by doubling (its memory is charged to the in-flight budget).
    pub fn with_lines(data: &'d [u8], lines: usize) -> Builder<'d> {
        let mut b = Builder::new(data);
        b.table.records.reserve_exact(lines);
        b
    }

    /// `s` as a span of the chunk when it lies in it, else copied into the arena.
    pub fn text(&mut self, s: &str) -> Text {
        match self.span(s) {
            Some((start, len)) => Text::Chunk { start, len },
            None => self.table.push_text(s),
        }
    }

    /// A field name: like `text`, but a name outside the chunk that this table has seen
    /// before is shared. The cache is keyed by address and checked by content, so a name that
    /// happens to reuse the address of another is never mistaken for it.
    pub fn key(&mut self, s: &str) -> Text {
        if let Some(t) = self.span(s).map(|(start, len)| Text::Chunk { start, len }) {
            return t;
        }
        let at = s.as_ptr() as usize;
        // Records of a chunk name their fields in the same order, so the search starts just
        // after the last name found and almost always hits at once.
        let n = self.keys.len();
        let is = |&(p, t): &(usize, Text)| p == at && self.table.text_bytes(t) == s.as_bytes();
        let hint = if self.next_key < n { self.next_key } else { 0 };
        let known = if n > 0 && is(&self.keys[hint]) {
            Some(hint)
        } else {
            self.keys.iter().position(is)
        };
        if let Some(i) = known {
            self.next_key = i + 1;
            return self.keys[i].1;
        }
        let t = self.table.push_text(s);
        if n < MAX_KEYS {
            self.keys.push((at, t));
            self.next_key = n + 1;
        }
        t
    }

    fn span(&self, s: &str) -> Option<(u32, u32)> {
        let base = self.data.as_ptr() as usize;
        let at = s.as_ptr() as usize;
        (at >= base && at + s.len() <= base + self.data.len()).then(|| ((at - base) as u32, s.len() as u32))
    }

    /// The record of a line kept whole (a piece of an over-long line, which is never parsed,
    /// or a `raw` line).
    pub fn line(&mut self, line: &str, offset: u64, observed_ns: i64, flags: Flags) {
        let message = Some(self.text(line));
        let start = self.table.fields.len() as u32;
        self.table.records.push(Record {
            time_ns: None,
            observed_ns,
            offset,
            level: None,
            message,
            stream: None,
            fields: (start, 0),
            flags,
            commit: Commit::default(),
        });
    }

    /// The record of a `json` line (see `adapt::json`): values stay the JSON text of the line.
    pub fn json(&mut self, line: &JsonLine<'_>, offset: u64, observed_ns: i64) {
        let message = match line.message {
            Some(Message::Literal(lit)) => self.span(lit).map(|(start, len)| Text::Literal { start, len }).or_else(
                // A repaired line's literal is not in the chunk: unescape it into the arena.
                || match serde_json::from_str::<String>(lit) {
                    Ok(s) => Some(self.table.push_text(&s)),
                    Err(_) => Some(self.table.push_text(lit)),
                },
            ),
            Some(Message::Text(t)) => Some(self.text(t)),
            None => None,
        };
        let start = self.table.fields.len() as u32;
        for f in &line.fields {
            let key = self.key(&f.key);
            let value = Value::Json(self.text(f.value.get()));
            self.table.fields.push(Field { key, value });
        }
        let len = self.table.fields.len() as u32 - start;
        self.table.records.push(Record {
            time_ns: line.timestamp_ns,
            observed_ns,
            offset,
            level: line.level,
            message,
            stream: None,
            fields: (start, len),
            flags: Flags::default(),
            commit: Commit::default(),
        });
    }

    /// The record of a line its parser rejected: the whole line as the message, and the
    /// reason as `fields.parse_error`.
    pub fn rejected(&mut self, line: &str, offset: u64, observed_ns: i64, why: &dyn std::fmt::Display) {
        self.line(line, offset, observed_ns, Flags::default());
        let reason = self.reason(why);
        self.push_last_field("parse_error", reason);
    }

    /// The record of an event from an `Assembler`.
    pub fn event(&mut self, ev: &Event<'_, '_>) {
        let rec = ev.rec;
        let message = (!rec.message.is_empty()).then(|| self.text(&rec.message));
        let (start, len) = self.fields(&rec.fields);
        self.table.records.push(Record {
            time_ns: rec.timestamp_ns,
            observed_ns: ev.observed_ns,
            offset: ev.offset,
            level: rec.level,
            message,
            stream: rec.stream,
            fields: (start, len),
            flags: Flags {
                continuation: ev.continuation,
                truncated: rec.truncated,
                partial: rec.partial,
            },
            commit: Commit::default(),
        });
        if let Some(e) = &ev.error {
            let reason = self.reason(e);
            self.push_last_field("parse_error", reason);
        }
    }

    /// Sets where the checkpoint may go after the records from index `from` on.
    pub fn commit_from(&mut self, from: usize, commit: Commit) {
        for r in &mut self.table.records[from..] {
            r.commit = commit;
        }
    }

    pub fn len(&self) -> usize {
        self.table.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.records.is_empty()
    }

    fn reason(&mut self, why: &dyn std::fmt::Display) -> Text {
        let start = self.table.arena.len();
        let _ = write!(self.table.arena, "{why}");
        Text::Arena {
            start: start as u32,
            len: (self.table.arena.len() - start) as u32,
        }
    }

    /// Appends a field to the last record. Its fields are the last ones of the table unless
    /// it has nested maps, whose entries follow its own; then its fields move to the end.
    fn push_last_field(&mut self, key: &'static str, value: Text) {
        let t = &mut self.table;
        let Some(rec) = t.records.last_mut() else { return };
        let (start, len) = rec.fields;
        if (start + len) as usize != t.fields.len() {
            let own: Vec<Field> = t.fields[start as usize..(start + len) as usize].to_vec();
            rec.fields.0 = t.fields.len() as u32;
            t.fields.extend(own);
        }
        t.fields.push(Field {
            key: Text::Static(key),
            value: Value::Str(value),
        });
        rec.fields.1 += 1;
    }

    /// Appends `list` as contiguous fields (nested maps after them) and returns their span.
    fn fields(&mut self, list: &[ParsedField<'_>]) -> (u32, u32) {
        let start = self.table.fields.len();
        if start + list.len() > self.table.fields.capacity() {
            // A chunk's records have about as many fields each: room for the rest of its lines
            // at this record's count, where doubling would copy the whole vector a dozen times
            // per chunk (3 % of `combined`'s instructions).
            let records = &self.table.records;
            let rest = records.capacity().saturating_sub(records.len()).max(1);
            self.table.fields.reserve(list.len() * rest);
        }
        let placeholder = Field {
            key: Text::Static(""),
            value: Value::Bool(false),
        };
        self.table.fields.resize(start + list.len(), placeholder);
        for (i, (k, v)) in list.iter().enumerate() {
            let key = self.key(k);
            let value = self.value(v);
            self.table.fields[start + i] = Field { key, value };
        }
        (start as u32, list.len() as u32)
    }

    fn value(&mut self, v: &FieldValue<'_>) -> Value {
        match v {
            FieldValue::Str(s) => Value::Str(self.text(s)),
            FieldValue::Int(n) => Value::Int(*n),
            FieldValue::Float(f) => Value::Float(*f),
            FieldValue::Bool(b) => Value::Bool(*b),
            FieldValue::Json(j) => Value::Json(self.text(j)),
            FieldValue::Map(m) => {
                let (start, len) = self.fields(m);
                Value::Map { start, len }
            }
        }
    }
}
