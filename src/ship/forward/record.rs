//! A record as a Forward entry: `[time, record]` with the record as a msgpack map in the
//! NDJSON record's keys (`message`, `level`, `stream`, `file`, `offset`, `id`, `fields`,
//! `resource`; a key without a value left out), the time as EventTime (nanoseconds) or
//! integer seconds. Fields keep their types; JSON text a line wrote (a `json` line's values)
//! is read into msgpack values.

use crate::forward::encode::{self, TimeFormat};
use crate::record::{RecordRef, ValueRef};

/// Appends record `r` as one entry.
pub fn entry(out: &mut Vec<u8>, r: &RecordRef<'_>, time: TimeFormat) {
    encode::entry_start(out, r.time_or_observed(), time);
    let fields = r.fields();
    let resource = &r.records.context.resource;
    let n = u32::from(r.message.is_some())
        + u32::from(r.level.is_some())
        + u32::from(r.stream.is_some())
        + 3
        + u32::from(!fields.is_empty())
        + u32::from(!resource.is_empty());
    encode::map_len(out, n);
    if r.message.is_some() {
        encode::str(out, "message");
        encode::str(out, &r.message_text());
    }
    if let Some(level) = r.level {
        encode::str(out, "level");
        encode::str(out, level.as_str());
    }
    if let Some(stream) = r.stream {
        encode::str(out, "stream");
        encode::str(out, stream.as_str());
    }
    encode::str(out, "file");
    encode::str(out, r.file());
    encode::str(out, "offset");
    encode::uint(out, r.offset);
    encode::str(out, "id");
    encode::str(out, &r.id());
    if !fields.is_empty() {
        encode::str(out, "fields");
        encode::map_len(out, fields.len() as u32);
        for f in &fields {
            encode::str(out, &f.key);
            value(out, r, &f.value);
        }
    }
    if !resource.is_empty() {
        encode::str(out, "resource");
        encode::map_len(out, resource.len() as u32);
        for (k, v) in resource.iter() {
            encode::str(out, k);
            encode::str(out, v);
        }
    }
}

fn value(out: &mut Vec<u8>, r: &RecordRef<'_>, v: &ValueRef<'_>) {
    match v {
        ValueRef::Str(s) => encode::str(out, s),
        ValueRef::Int(n) => encode::int(out, *n),
        ValueRef::Float(f) => encode::float(out, *f),
        ValueRef::Bool(b) => encode::bool(out, *b),
        ValueRef::Map(entries) => {
            encode::map_len(out, entries.len() as u32);
            for f in *entries {
                encode::str(out, &r.key(f.key));
                value(out, r, &r.value(&f.value));
            }
        }
        ValueRef::Json(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(j) => json(out, &j),
            // Not JSON after all (cannot happen for what a parser kept): the text as it is.
            Err(_) => encode::str(out, text),
        },
    }
}

/// A JSON value as msgpack (serde_json's own nesting limit bounds the recursion).
fn json(out: &mut Vec<u8>, v: &serde_json::Value) {
    use serde_json::Value as J;
    match v {
        J::Null => encode::nil(out),
        J::Bool(b) => encode::bool(out, *b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => encode::int(out, i),
            (None, Some(u)) => encode::uint(out, u),
            _ => encode::float(out, n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => encode::str(out, s),
        J::Array(items) => {
            encode::array_len(out, items.len() as u32);
            for i in items {
                json(out, i);
            }
        }
        J::Object(map) => {
            encode::map_len(out, map.len() as u32);
            for (k, v) in map {
                encode::str(out, k);
                json(out, v);
            }
        }
    }
}
