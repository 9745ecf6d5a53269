//! Reading Forward messages: finding one whole msgpack value in what a connection has sent
//! (`next_value`), telling the four modes apart (`message`: Message `[tag, time, record]`,
//! Forward `[tag, [[time, record], ...]]`, PackedForward `[tag, bin]` and, with the option
//! `compressed: "gzip"`, CompressedPackedForward) and reading their entries and options; and
//! the ack a server answers a chunk with (`ack`).
//!
//! Everything here reads untrusted bytes: every problem is an `Error` naming the part of the
//! message it is about, never a panic; sizes are capped (decompression included), a value's
//! elements are counted before it is decoded (`value_len`, `element_budget`), and nesting is
//! bounded by rmpv's depth limit.

use std::io::Read;

use rmpv::Value;

use super::{EventTime, EVENT_TIME_EXT};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed msgpack: {0}")]
    Msgpack(String),
    #[error("{what}: {why}")]
    Shape { what: &'static str, why: String },
    #[error("message of {size} bytes or more is over the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("a message of more elements than its size allows (see decode::element_budget)")]
    TooManyElements,
    /// Internal to `value_len`: a length field cut off (more bytes are needed).
    #[error("a length cut off")]
    Incomplete,
}

fn shape(what: &'static str, why: impl Into<String>) -> Error {
    Error::Shape { what, why: why.into() }
}

/// One whole msgpack value at the start of `buf` and the bytes it took; `Ok(None)` when
/// `buf` ends before the value does (more bytes are needed). A value of more than
/// `max_elements` elements (itself and everything inside it) is an error, found before it
/// is decoded: see `element_budget`.
pub fn next_value(buf: &[u8], max_elements: usize) -> Result<Option<(Value, usize)>, Error> {
    let mut budget = max_elements;
    let Some(len) = value_len(buf, &mut budget)? else {
        return Ok(None);
    };
    let mut rd = &buf[..len];
    rmpv::decode::read_value(&mut rd)
        .map(|v| Some((v, len)))
        .map_err(|e| Error::Msgpack(e.to_string()))
}

/// How many elements a message of `max_bytes` may hold. Decoded, each element is an
/// `rmpv::Value` of 32 bytes (plus its vector's share), so a message of one-byte elements
/// (8 MiB of `nil`s) would take 32 times its size; a quarter of the bytes caps that at about
/// 8 times, while a real record (keys and values of a few bytes each) stays well under it.
pub fn element_budget(max_bytes: usize) -> usize {
    max_bytes / 4 + 1024
}

/// The length of the msgpack value at the start of `buf`, found by walking its markers
/// without building it: `Ok(None)` when `buf` ends first, an error on a reserved marker or
/// once more than `budget` elements were met (what is left of the budget stays in it, so one
/// budget can cover a stream of values). Written by hand because rmp/rmpv decode as they go
/// and have no element budget; it allocates nothing and does not recurse.
pub fn value_len(buf: &[u8], budget: &mut usize) -> Result<Option<usize>, Error> {
    match walk(buf, budget) {
        Err(Error::Incomplete) => Ok(None),
        other => other,
    }
}

fn walk(buf: &[u8], budget: &mut usize) -> Result<Option<usize>, Error> {
    // A big-endian length of `n` bytes at `at`.
    let be = |at: usize, n: usize| -> Option<usize> {
        let b = buf.get(at..at + n)?;
        Some(b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    };
    let mut at = 0usize;
    // Values still to walk: 1, plus the children of every container met.
    let mut pending: usize = 1;
    while pending > 0 {
        pending -= 1;
        if *budget == 0 {
            return Err(Error::TooManyElements);
        }
        *budget -= 1;
        let Some(&m) = buf.get(at) else { return Ok(None) };
        at += 1;
        // (bytes after the marker and any length, the length's own size, children)
        let (data, children) = match m {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (0, 0),
            0x80..=0x8f => (0, 2 * usize::from(m & 0x0f)),
            0x90..=0x9f => (0, usize::from(m & 0x0f)),
            0xa0..=0xbf => (usize::from(m & 0x1f), 0),
            0xc1 => return Err(Error::Msgpack("the reserved marker 0xc1".into())),
            0xc4 | 0xd9 => (len_at(&be, &mut at, 1)?, 0),
            0xc5 | 0xda => (len_at(&be, &mut at, 2)?, 0),
            0xc6 | 0xdb => (len_at(&be, &mut at, 4)?, 0),
            0xc7 => (len_at(&be, &mut at, 1)? + 1, 0),
            0xc8 => (len_at(&be, &mut at, 2)? + 1, 0),
            0xc9 => (len_at(&be, &mut at, 4)? + 1, 0),
            0xca => (4, 0),
            0xcb => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 => (4, 0),
            0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, len_at(&be, &mut at, 2)?),
            0xdd => (0, len_at(&be, &mut at, 4)?),
            0xde => (0, 2 * len_at(&be, &mut at, 2)?),
            0xdf => (0, 2usize.saturating_mul(len_at(&be, &mut at, 4)?)),
        };
        at = at.saturating_add(data);
        if at > buf.len() {
            return Ok(None);
        }
        pending = pending.saturating_add(children);
    }
    Ok(Some(at))
}

/// The length of `n` bytes at `*at`, moving past it; a length not all there yet is the
/// `Incomplete` error, which `value_len` turns into "more bytes needed".
fn len_at(be: &impl Fn(usize, usize) -> Option<usize>, at: &mut usize, n: usize) -> Result<usize, Error> {
    let v = be(*at, n).ok_or(Error::Incomplete)?;
    *at += n;
    Ok(v)
}

/// One event of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Nanoseconds since the epoch; `None` when the time was not a number (then the
    /// receiver's clock stands in).
    pub time_ns: Option<i64>,
    /// The record: a msgpack map.
    pub record: Value,
}

/// A client's message, any mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub tag: String,
    pub entries: Vec<Entry>,
    /// The `chunk` option: the client wants `{"ack": chunk}` once the entries are safe.
    pub chunk: Option<String>,
}

/// The message `v` (a whole top-level value); `max_bytes` caps the entries after
/// decompression.
pub fn message(v: Value, max_bytes: usize) -> Result<Message, Error> {
    let Value::Array(mut items) = v else {
        return Err(shape("message", "not an array"));
    };
    if !(2..=4).contains(&items.len()) {
        return Err(shape("message", format!("an array of {} items", items.len())));
    }
    let tag = match &items[0] {
        Value::String(s) => s.as_str().ok_or_else(|| shape("tag", "not UTF-8"))?.to_owned(),
        _ => return Err(shape("tag", "not a string")),
    };
    // Message mode is `[tag, time, record, option?]`; the others `[tag, entries, option?]`.
    let is_message_mode = matches!(
        items[1],
        Value::Integer(_) | Value::F32(_) | Value::F64(_) | Value::Ext(..)
    );
    let options_at = if is_message_mode { 3 } else { 2 };
    let options = match items.get(options_at) {
        None | Some(Value::Nil) => Options::default(),
        Some(Value::Map(m)) => options(m)?,
        Some(_) => return Err(shape("option", "not a map")),
    };
    items.truncate(options_at);
    let entries = if is_message_mode {
        let record = items.pop().ok_or_else(|| shape("record", "missing"))?;
        let time = items.pop().ok_or_else(|| shape("time", "missing"))?;
        vec![entry_of(time, record)?]
    } else {
        match items.pop() {
            Some(Value::Array(list)) => list.into_iter().map(entry).collect::<Result<Vec<_>, _>>()?,
            Some(Value::Binary(b)) => packed(&b, options.gzip, max_bytes)?,
            Some(Value::String(s)) => packed(s.as_bytes(), options.gzip, max_bytes)?,
            _ => return Err(shape("entries", "neither an array nor a binary stream")),
        }
    };
    Ok(Message {
        tag,
        entries,
        chunk: options.chunk,
    })
}

#[derive(Debug, Default)]
struct Options {
    chunk: Option<String>,
    gzip: bool,
}

fn options(m: &[(Value, Value)]) -> Result<Options, Error> {
    let mut o = Options::default();
    for (k, v) in m {
        match (k.as_str(), v) {
            (Some("chunk"), Value::String(s)) => {
                o.chunk = Some(s.as_str().ok_or_else(|| shape("option.chunk", "not UTF-8"))?.to_owned());
            }
            (Some("chunk"), _) => return Err(shape("option.chunk", "not a string")),
            (Some("compressed"), v) => match v.as_str() {
                Some("gzip") => o.gzip = true,
                Some("text" | "") => {}
                _ => return Err(shape("option.compressed", format!("{v} is not \"gzip\""))),
            },
            // `size`, `fluent_signal` and whatever else: not needed to read the entries.
            _ => {}
        }
    }
    Ok(o)
}

/// The entries of a PackedForward stream, gunzipped first when `gzip` (a stream may be
/// several gzip members one after the other, as Fluentd appends them).
fn packed(bytes: &[u8], gzip: bool, max_bytes: usize) -> Result<Vec<Entry>, Error> {
    let unzipped;
    let mut stream = if gzip {
        let mut out = Vec::new();
        let mut z = flate2::read::MultiGzDecoder::new(bytes).take(max_bytes as u64 + 1);
        z.read_to_end(&mut out)
            .map_err(|e| shape("entries", format!("gzip: {e}")))?;
        if out.len() > max_bytes {
            return Err(Error::TooLarge {
                size: out.len(),
                max: max_bytes,
            });
        }
        unzipped = out;
        &unzipped[..]
    } else {
        bytes
    };
    let mut out = Vec::new();
    let mut budget = element_budget(max_bytes);
    while !stream.is_empty() {
        let len = match value_len(stream, &mut budget) {
            Ok(Some(len)) => len,
            Ok(None) => {
                return Err(shape("entries", format!("entry {}: cut off", out.len())));
            }
            Err(e) => return Err(e),
        };
        let (mut one, rest) = stream.split_at(len);
        stream = rest;
        let v =
            rmpv::decode::read_value(&mut one).map_err(|e| shape("entries", format!("entry {}: {e}", out.len())))?;
        out.push(entry(v)?);
    }
    Ok(out)
}

/// `[time, record]`.
fn entry(v: Value) -> Result<Entry, Error> {
    let Value::Array(mut pair) = v else {
        return Err(shape("entry", "not a [time, record] array"));
    };
    if pair.len() != 2 {
        return Err(shape(
            "entry",
            format!("an array of {} items, not [time, record]", pair.len()),
        ));
    }
    let record = pair.pop().unwrap_or(Value::Nil);
    let time = pair.pop().unwrap_or(Value::Nil);
    entry_of(time, record)
}

fn entry_of(time: Value, record: Value) -> Result<Entry, Error> {
    if !record.is_map() {
        return Err(shape("record", "not a map"));
    }
    Ok(Entry {
        time_ns: time_ns(&time)?,
        record,
    })
}

/// An entry's time: EventTime, integer seconds, or (some clients) float seconds.
fn time_ns(v: &Value) -> Result<Option<i64>, Error> {
    Ok(match v {
        Value::Ext(EVENT_TIME_EXT, b) => {
            let b: [u8; 8] = b[..]
                .try_into()
                .map_err(|_| shape("time", format!("EventTime of {} bytes, not 8", b.len())))?;
            let secs = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let nanos = u32::from_be_bytes([b[4], b[5], b[6], b[7]]).min(999_999_999);
            Some(EventTime { secs, nanos }.unix_nanos())
        }
        Value::Integer(n) => n.as_i64().and_then(|s| s.checked_mul(1_000_000_000)),
        Value::F64(f) if f.is_finite() => Some((f * 1e9) as i64),
        Value::F32(f) if f.is_finite() => Some((f64::from(*f) * 1e9) as i64),
        Value::Nil => None,
        _ => return Err(shape("time", "not a time")),
    })
}

/// The chunk id of a server's `{"ack": chunk}`; `None` for anything else.
pub fn ack(v: &Value) -> Option<&str> {
    let Value::Map(m) = v else { return None };
    m.iter()
        .find(|(k, _)| k.as_str() == Some("ack"))
        .and_then(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::super::encode::{self, Options, TimeFormat};
    use super::*;

    fn record(out: &mut Vec<u8>, n: i64) {
        encode::map_len(out, 1);
        encode::str(out, "n");
        encode::int(out, n);
    }

    fn entries(n: i64, format: TimeFormat) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            encode::entry_start(&mut out, 1_700_000_000_123_456_789 + i, format);
            record(&mut out, i);
        }
        out
    }

    fn n_of(e: &Entry) -> i64 {
        let Value::Map(m) = &e.record else { panic!("not a map") };
        m[0].1.as_i64().unwrap()
    }

    #[test]
    fn packed_forward_round_trips_with_its_chunk() {
        for gzip in [false, true] {
            let raw = entries(100, TimeFormat::EventTime);
            let stream = if gzip { encode::gzip(&raw) } else { raw };
            let msg = encode::packed_forward(
                "app.log",
                &stream,
                Options {
                    size: 100,
                    chunk: Some("abc"),
                    gzip,
                },
            );
            let (v, used) = next_value(&msg, usize::MAX).unwrap().unwrap();
            assert_eq!(used, msg.len());
            let m = message(v, 1 << 20).unwrap();
            assert_eq!(m.tag, "app.log");
            assert_eq!(m.chunk.as_deref(), Some("abc"));
            assert_eq!(m.entries.len(), 100);
            assert_eq!(m.entries[7].time_ns, Some(1_700_000_000_123_456_796));
            assert_eq!(n_of(&m.entries[99]), 99);
        }
    }

    #[test]
    fn message_and_forward_modes_and_integer_times() {
        let v: Value = Value::Array(vec![
            "t".into(),
            Value::from(1_700_000_000),
            Value::Map(vec![("n".into(), 5.into())]),
            Value::Map(vec![("chunk".into(), "c1".into())]),
        ]);
        let m = message(v, 1024).unwrap();
        assert_eq!(m.entries[0].time_ns, Some(1_700_000_000_000_000_000));
        assert_eq!(m.chunk.as_deref(), Some("c1"));
        let pair = |n: i64| Value::Array(vec![Value::F64(1.5), Value::Map(vec![("n".into(), n.into())])]);
        let v = Value::Array(vec!["t".into(), Value::Array(vec![pair(1), pair(2)])]);
        let m = message(v, 1024).unwrap();
        assert_eq!(m.entries.len(), 2);
        assert_eq!(m.entries[1].time_ns, Some(1_500_000_000));
        assert!(m.chunk.is_none());
    }

    #[test]
    fn a_value_cut_anywhere_waits_for_more_and_never_panics() {
        let raw = entries(20, TimeFormat::Seconds);
        let msg = encode::packed_forward(
            "t",
            &raw,
            Options {
                size: 20,
                chunk: None,
                gzip: false,
            },
        );
        for cut in 0..msg.len() {
            assert!(next_value(&msg[..cut], usize::MAX).unwrap().is_none(), "cut at {cut}");
        }
        // An entry stream cut short inside a whole message is a shape error.
        assert!(message(
            Value::Array(vec!["t".into(), Value::Binary(raw[..raw.len() - 3].to_vec())]),
            1 << 20
        )
        .is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cases: Vec<Vec<u8>> = vec![
            vec![0xc1],
            vec![0x93, 0x01, 0x02, 0x03],
            vec![0x92, 0xa1, b't', 0xc0],
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        ];
        for c in cases {
            if let Ok(Some((v, _))) = next_value(&c, 1 << 20) {
                assert!(message(v, 1024).is_err());
            }
        }
        // Random bytes: whatever they are, no panic.
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let len = rng.usize(0..64);
            let buf: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if let Ok(Some((v, _))) = next_value(&buf, 1 << 20) {
                let _ = message(v, 1024);
            }
        }
    }

    #[test]
    fn a_gzip_bomb_is_refused_at_the_cap() {
        let zeros = vec![0u8; 1 << 20];
        let z = encode::gzip(&zeros);
        let v = Value::Array(vec![
            "t".into(),
            Value::Binary(z),
            Value::Map(vec![("compressed".into(), "gzip".into())]),
        ]);
        assert!(matches!(message(v, 4096), Err(Error::TooLarge { .. })));
    }

    #[test]
    fn too_many_elements_are_refused_before_decoding() {
        // 8 MiB of nils in one array: 32 bytes each decoded, refused from the count.
        let n = 8 << 20;
        let mut msg = vec![0xdd];
        msg.extend_from_slice(&(n as u32).to_be_bytes());
        msg.resize(5 + n, 0xc0);
        assert!(matches!(
            next_value(&msg, element_budget(msg.len())),
            Err(Error::TooManyElements)
        ));
        // The same inside a PackedForward entry.
        let mut entry = vec![0x92, 0x01, 0xdd];
        entry.extend_from_slice(&(100_000u32).to_be_bytes());
        entry.resize(entry.len() + 100_000, 0xc0);
        let v = Value::Array(vec!["t".into(), Value::Binary(entry)]);
        assert!(matches!(message(v, 200_000), Err(Error::TooManyElements)));
        // A real message fits its budget by far.
        let raw = entries(100, TimeFormat::EventTime);
        let msg = encode::packed_forward(
            "t",
            &raw,
            Options {
                size: 100,
                chunk: None,
                gzip: false,
            },
        );
        assert!(next_value(&msg, element_budget(msg.len())).unwrap().is_some());
    }

    #[test]
    fn value_len_agrees_with_rmpv_on_every_marker() {
        let values = vec![
            Value::Nil,
            Value::Boolean(true),
            Value::from(7),
            Value::from(-3),
            Value::from(200u8),
            Value::from(70_000u32),
            Value::from(u64::MAX),
            Value::from(i64::MIN),
            Value::F32(1.5),
            Value::F64(2.5),
            Value::from("s"),
            Value::from("x".repeat(300)),
            Value::from("y".repeat(70_000)),
            Value::Binary(vec![1; 10]),
            Value::Binary(vec![2; 300]),
            Value::Ext(0, vec![0; 8]),
            Value::Ext(5, vec![0; 3]),
            Value::Ext(6, vec![0; 300]),
            Value::Array((0..20).map(Value::from).collect()),
            Value::Map((0..20).map(|i| (Value::from(i), Value::Nil)).collect()),
        ];
        for v in values {
            let mut bytes = Vec::new();
            rmpv::encode::write_value(&mut bytes, &v).unwrap();
            let mut budget = usize::MAX;
            assert_eq!(value_len(&bytes, &mut budget).unwrap(), Some(bytes.len()), "{v:?}");
            for cut in 0..bytes.len() {
                let mut budget = usize::MAX;
                assert_eq!(
                    value_len(&bytes[..cut], &mut budget).unwrap(),
                    None,
                    "{v:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn ack_reads_the_chunk() {
        let bytes = encode::ack("xyz");
        let (v, _) = next_value(&bytes, 16).unwrap().unwrap();
        assert_eq!(ack(&v), Some("xyz"));
    }
}
