//! What the transforms share: the batch's table to edit (made from a `raw` batch's lines the
//! first time one is needed), dropping records by a decision per record, and reading the value
//! a condition or a key names (`KeyOf`).

use std::borrow::Cow;

use crate::record::{Body, Commit, Record, RecordRef, Records, Table, Text};

/// The text of a record that a condition compares or a key groups by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOf {
    Level,
    Message,
    Stream,
    File,
    /// A top-level member of `fields`.
    Field(String),
}

impl KeyOf {
    /// `level`, `message`, `stream`, `file`, or `fields.NAME` (a bare name is a field too).
    pub fn parse(s: &str) -> Option<KeyOf> {
        Some(match s {
            "" | "fields." => return None,
            "level" => KeyOf::Level,
            "message" => KeyOf::Message,
            "stream" => KeyOf::Stream,
            "file" => KeyOf::File,
            other => KeyOf::Field(other.strip_prefix("fields.").unwrap_or(other).to_owned()),
        })
    }

    /// The value in `r`, `None` when the record has none.
    pub fn read<'a>(&self, r: &RecordRef<'a>) -> Option<Cow<'a, str>> {
        match self {
            KeyOf::Level => r.level.map(|l| Cow::Borrowed(l.as_str())),
            KeyOf::Message => r.message.map(|_| r.message_text()),
            KeyOf::Stream => r.stream.map(|s| Cow::Borrowed(s.as_str())),
            KeyOf::File => Some(Cow::Borrowed(r.file())),
            KeyOf::Field(name) => r.field_text(name),
        }
    }
}

/// The batch's table, for a transform about to change it: a `Lines` body becomes a table of one
/// record per line first. Marks the table as transformed (see `Table::transformed`).
pub(super) fn table(records: &mut Records) -> &mut Table {
    if let Body::Lines { .. } = records.body {
        let t = lines_table(records);
        records.body = Body::Table(t);
    }
    match &mut records.body {
        Body::Table(t) => {
            t.transformed = true;
            t
        }
        Body::Lines { .. } => unreachable!("made a table above"),
    }
}

/// A table of the batch's lines: each line a record whose message is the line (a span of the
/// chunk, or repaired text in the arena for a line that is not UTF-8).
fn lines_table(records: &Records) -> Table {
    let utf8 = matches!(records.body, Body::Lines { utf8: true });
    let mut t = Table::default();
    // One record per line: counted first (a SIMD count), so the vector is allocated once.
    t.records.reserve(records.len());
    let mut pos = 0;
    while let Some((r, next)) = records.record_at(pos) {
        let mut message = r.message;
        if !utf8 {
            if let Some(Cow::Owned(repaired)) = r.message.map(|m| records.text(m)) {
                message = Some(t.push_text(&repaired));
            }
        }
        t.records.push(Record {
            time_ns: None,
            observed_ns: r.observed_ns,
            offset: r.offset,
            level: None,
            message,
            stream: None,
            fields: (t.fields.len() as u32, 0),
            flags: r.flags,
            commit: Commit::After(next as u32),
        });
        pos = next;
    }
    t
}

/// Keeps the records `keep` says yes to; returns how many were dropped. A `Lines` body whose
/// lines are all kept stays one.
pub(super) fn retain(records: &mut Records, mut keep: impl FnMut(&RecordRef<'_>) -> bool) -> u64 {
    let decisions: Vec<bool> = records.iter(0, records.end_position()).map(|r| keep(&r)).collect();
    let dropped = decisions.iter().filter(|k| !**k).count();
    if dropped == 0 {
        return 0;
    }
    let t = table(records);
    let mut i = 0;
    t.records.retain(|_| {
        i += 1;
        decisions.get(i - 1).copied().unwrap_or(true)
    });
    dropped as u64
}

/// The bytes of `text` while the table is being edited (the chunk's bytes are `data`).
pub(super) fn bytes<'a>(data: &'a [u8], t: &'a Table, text: Text) -> &'a [u8] {
    match text {
        Text::Chunk { start, len } | Text::Literal { start, len } => {
            data.get(start as usize..start as usize + len as usize).unwrap_or(&[])
        }
        _ => t.text_bytes(text),
    }
}

/// The batch's table and the chunk's bytes, borrowed apart so text can be read while the
/// table grows.
pub(super) fn parts(records: &mut Records) -> (&[u8], &mut Table) {
    let _ = table(records);
    let Records { chunk, body, .. } = records;
    let data = chunk.as_ref().map_or(&[][..], |c| &c.data[..]);
    match body {
        Body::Table(t) => (data, t),
        Body::Lines { .. } => unreachable!("table() made a table"),
    }
}
