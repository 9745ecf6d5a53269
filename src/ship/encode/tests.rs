//! The encoders on records made by an adapt worker from hand-made chunks: the NDJSON shape
//! (every key, in order), the raw passthrough, and the limits of one call.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{json, Value};

use super::*;
use crate::adapt::stage::Worker;
use crate::budget::Budget;
use crate::chunk::Chunk;
use crate::config::Format;
use crate::metrics::Metrics;
use crate::record::Buffers;

const OBSERVED: i64 = 1_795_614_680_123_456_789;
const OBSERVED_TEXT: &str = "2026-11-25T13:51:20.123456789Z";

fn chunk(data: &[u8], start: u64, head_continues: bool, tail_truncated: bool) -> Arc<Chunk> {
    Arc::new(Chunk {
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
    })
}

/// Records of `c` made by a worker whose source 1 has `format`, and the worker's metrics.
fn adapt(format: Format, resource: &[(&str, &str)], c: &Arc<Chunk>) -> (Records, Arc<Metrics>) {
    let resource: BTreeMap<String, String> = resource.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let metrics = Arc::new(Metrics::new(
        &["zero".to_string(), "one".to_string()],
        &[],
        Budget::new(1 << 20),
    ));
    let mut w = Worker::new(
        Arc::from(vec![Format::Raw.into(), format.into()]),
        &resource,
        Budget::new(1 << 30),
        Arc::clone(&metrics),
    );
    (w.process(Arc::clone(c)), metrics)
}

const ALL: Limits = Limits {
    max_events: usize::MAX,
    max_bytes: usize::MAX,
};

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

/// Everything `format` makes of `c`, encoded with `encoding`; and the worker's metrics.
fn encode_all(
    encoding: Encoding,
    format: Format,
    resource: &[(&str, &str)],
    c: &Arc<Chunk>,
) -> (Vec<u8>, Arc<Metrics>) {
    let (recs, metrics) = adapt(format, resource, c);
    let mut enc = Encoder::new(encoding);
    let mut out = Vec::new();
    let (pos, _) = enc.encode(&recs, 0, &mut out, ALL);
    assert_eq!(pos, enc.end_of(&recs));
    (out, metrics)
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

fn count(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

#[test]
fn raw_lines_become_records_with_every_key_in_order() {
    let c = chunk(b"first \"q\"\tx\nsecond\r\n\nlast\r", 1000, false, false);
    let (out, m) = encode_all(Encoding::Ndjson, Format::Raw, &[], &c);
    assert_eq!(
        records(&out),
        vec![
            raw_record("first \"q\"\tx", 1000, None),
            raw_record("second", 1012, None),
            raw_record("", 1020, None),
            raw_record("last", 1021, None),
        ]
    );
    assert_eq!(count(&m.lines_read), 4);
    assert_eq!(count(&m.invalid_utf8_lines), 0);
}

#[test]
fn resource_is_rendered_last_and_escaped() {
    let c = chunk(b"x\n", 0, false, false);
    let (out, _) = encode_all(
        Encoding::Ndjson,
        Format::Raw,
        &[("k8s.pod.name", "web-1"), ("q\"", "\n")],
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
    let (out, _) = encode_all(Encoding::Ndjson, Format::Raw, &[], &c);
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
    let (out, _) = encode_all(Encoding::Ndjson, Format::Raw, &[], &c);
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
    let (out, m) = encode_all(Encoding::Ndjson, Format::Json, &[("host.name", "h")], &c);
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
    assert_eq!(count(&m.sources[1].parse_errors), 0);
}

#[test]
fn json_without_time_level_message_uses_observed_time() {
    let c = chunk(b"{\"a\":[1,{\"b\":null}],\"msg\":[1, 2]}\r\n{}\n", 0, false, false);
    let (out, _) = encode_all(Encoding::Ndjson, Format::Json, &[], &c);
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
    let (out, m) = encode_all(Encoding::Ndjson, Format::Json, &[], &c);
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
    assert_eq!(count(&m.sources[1].parse_errors), 2);
}

#[test]
fn json_pieces_are_not_parsed() {
    let c = chunk(b"\"x\":1}\n{\"a\":1}\n{\"b\":", 0, true, true);
    let (out, m) = encode_all(Encoding::Ndjson, Format::Json, &[], &c);
    let recs = records(&out);
    assert_eq!(recs[0], raw_record("\"x\":1}", 0, Some(json!({"continuation": true}))));
    assert_eq!(recs[1].0[5].1, json!({"a": 1}));
    assert_eq!(recs[2], raw_record("{\"b\":", 15, Some(json!({"truncated": true}))));
    assert_eq!(count(&m.sources[1].parse_errors), 0);
}

#[test]
fn invalid_utf8_is_replaced_and_counted_per_line() {
    for format in [Format::Raw, Format::Json] {
        let c = chunk(b"ok\nbad \xff\xfe here\n{\"m\":\"\xc3\"}\n", 0, false, false);
        let (out, m) = encode_all(Encoding::Ndjson, format.clone(), &[], &c);
        let recs = records(&out);
        assert_eq!(recs[1].0[2].1, json!("bad \u{fffd}\u{fffd} here"), "{format:?}");
        assert_eq!(count(&m.invalid_utf8_lines), 2, "{format:?}");
        if matches!(format, Format::Json) {
            assert_eq!(recs[2].0[5].1, json!({"m": "\u{fffd}"}));
        }
    }
}

#[test]
fn raw_encoding_writes_lines_as_read() {
    let (out, _) = encode_all(
        Encoding::Raw,
        Format::Json,
        &[("a", "b")],
        &chunk(b"one\ntwo \"x\"\nthree", 0, false, false),
    );
    assert_eq!(out, b"one\ntwo \"x\"\nthree\n");
    let (out, _) = encode_all(
        Encoding::Raw,
        Format::Json,
        &[],
        &chunk(b"crlf\r\nlf\nlast\r", 0, false, false),
    );
    assert_eq!(out, b"crlf\nlf\nlast\n");
    let (out, m) = encode_all(Encoding::Raw, Format::Json, &[], &chunk(b"a\xff\nb\n", 0, false, false));
    assert_eq!(out, b"a\xff\nb\n");
    assert_eq!(count(&m.invalid_utf8_lines), 1);
}

#[test]
fn stops_at_max_events_and_max_bytes_and_resumes_from() {
    let c = chunk(b"a\nbb\nccc\ndddd\n", 100, false, false);
    let (recs, _) = adapt(Format::Raw, &[], &c);
    let mut enc = Encoder::new(Encoding::Ndjson);
    let mut out = Vec::new();
    let lim = |max_events, max_bytes| Limits { max_events, max_bytes };
    assert_eq!(enc.encode(&recs, 0, &mut out, lim(2, usize::MAX)), (5, 2));
    let mut rest = Vec::new();
    assert_eq!(enc.encode(&recs, 5, &mut rest, lim(10, 1)), (9, 1));
    assert_eq!(records(&rest), vec![raw_record("ccc", 105, None)]);
    // Already over `max_bytes`: still one record, so a caller always makes progress.
    assert_eq!(enc.encode(&recs, 9, &mut out, lim(0, 0)), (14, 1));
    assert_eq!(enc.encode(&recs, 14, &mut out, lim(10, 10)), (14, 0));
    // The marks: at a line start, with the validator of the bytes before it.
    let m = enc.mark_at(&recs, 5).unwrap();
    assert_eq!(m, Mark::at(105, b"a\nbb\n"));
    assert_eq!(enc.mark_at(&recs, 14), Some(recs.end));
    assert_eq!(enc.mark_at(&recs, 0), None);
}

#[test]
fn constants_follow_the_chunk() {
    let mut enc = Encoder::new(Encoding::Ndjson);
    let a = chunk(b"x\n", 0, false, false);
    let b = Arc::new(Chunk {
        file: Arc::clone(&a.file),
        start: 2,
        data: Bytes::from_static(b"y\n"),
        observed_ns: 0,
        head_continues: false,
        tail_truncated: false,
        budget: Budget::new(1 << 20).take(2),
    });
    let (ra, _) = adapt(Format::Raw, &[], &a);
    let (rb, _) = adapt(Format::Raw, &[], &b);
    let mut out = Vec::new();
    enc.encode(&ra, 0, &mut out, ALL);
    out.clear();
    enc.encode(&rb, 0, &mut out, ALL);
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
        let (recs, _) = adapt(format, &[("r", "1")], &c);

        let mut whole = Vec::new();
        let (pos, n) = Encoder::new(encoding).encode(&recs, 0, &mut whole, ALL);
        let mut enc = Encoder::new(encoding);
        prop_assert_eq!(pos, enc.end_of(&recs));
        let line_count = memchr::memchr_iter(b'\n', &data).count() + !data.ends_with(b"\n") as usize;
        prop_assert_eq!(n, line_count);
        prop_assert_eq!(recs.len(), line_count);

        let mut parts = Vec::new();
        let mut from = 0;
        while from < enc.end_of(&recs) {
            let mut out = Vec::new();
            let (next, k) = enc.encode(&recs, from, &mut out, Limits { max_events, max_bytes });
            prop_assert!(k >= 1 && k <= max_events);
            prop_assert!(next > from);
            // Stopped for a reason: the event limit, the byte limit, or the end.
            prop_assert!(k == max_events || out.len() >= max_bytes || next == enc.end_of(&recs));
            parts.extend_from_slice(&out);
            from = next;
        }
        prop_assert_eq!(&parts, &whole);
        if encoding == Encoding::Ndjson {
            // Two sinks sharing one rendering, stepping with different limits, write exactly
            // what an encoder of their own writes; the rendering is charged to the budget.
            let budget = Budget::new(1 << 30);
            let shared = Shared { sources: Arc::from(vec![false, true]), budget: Arc::clone(&budget), buffers: Buffers::new(2) };
            for limits in [Limits { max_events, max_bytes }, ALL] {
                let mut enc = Encoder::sharing(Encoding::Ndjson, shared.clone());
                let (mut copied, mut from) = (Vec::new(), 0);
                while from < enc.end_of(&recs) {
                    let mut out = Vec::new();
                    let (next, k) = enc.encode(&recs, from, &mut out, limits);
                    prop_assert!(k >= 1 && k <= limits.max_events && next > from);
                    prop_assert!(k == limits.max_events || out.len() >= limits.max_bytes || next == enc.end_of(&recs));
                    copied.extend_from_slice(&out);
                    from = next;
                }
                prop_assert_eq!(&copied, &whole);
            }
            prop_assert!(recs.rendering.get().is_some());
            prop_assert!(budget.used() > 0);

            prop_assert_eq!(records(&whole).len(), line_count);
            // The protocol sinks' view reads the same records as the encoder writes.
            let mut via_view = Vec::new();
            let mut one = Encoder::new(Encoding::Ndjson);
            for r in recs.iter(0, recs.end_position()) {
                one.record(&r, &mut via_view);
                via_view.push(b'\n');
            }
            prop_assert_eq!(&via_view, &whole);
        }
    }
}
