//! The record batch's own promises: spans resolve to their text, positions to marks, and the
//! view reads `Lines` and `Table` bodies alike.

use std::sync::Arc;

use bytes::Bytes;

use super::testing::{context, records, Rec};
use super::*;
use crate::budget::Budget;

fn lines_of(data: &'static [u8], tail_truncated: bool) -> Records {
    let ctx = context("/l/a.log", "p-", &[("host.name", "h")], &[("team", "core")]);
    let chunk = Arc::new(Chunk {
        file: Arc::clone(&ctx.file),
        start: 100,
        data: Bytes::from_static(data),
        observed_ns: 5,
        head_continues: true,
        tail_truncated,
        budget: Budget::new(1 << 20).take(data.len()),
    });
    Records {
        context: ctx,
        chunk: Some(chunk),
        body: Body::Lines { utf8: true },
        end: Mark::at(100 + data.len() as u64, data),
        budget: None,
        rendering: Default::default(),
    }
}

#[test]
fn lines_are_records_with_their_marks_and_positions() {
    let r = lines_of(b"one\r\ntwo\nthr", true);
    assert_eq!(r.len(), 3);
    let all: Vec<RecordRef<'_>> = r.iter(0, r.end_position()).collect();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all.iter().map(|x| x.message_text().into_owned()).collect::<Vec<_>>(),
        ["one", "two", "thr"]
    );
    assert_eq!(all.iter().map(|x| x.offset).collect::<Vec<_>>(), [100, 105, 109]);
    assert!(all[0].flags.continuation && !all[0].flags.truncated);
    assert!(!all[1].flags.continuation && !all[1].flags.truncated);
    assert!(all[2].flags.truncated);
    assert_eq!((all[1].pos, all[1].next), (5, 9));
    assert_eq!(all[1].id(), "p-105");
    assert_eq!(r.mark_at(0), None);
    assert_eq!(r.mark_at(5), Some(Mark::at(105, b"one\r\n")));
    assert_eq!(r.mark_at(r.end_position()), Some(r.end));
    let fields: Vec<String> = all[0].fields().iter().map(|f| f.key.to_string()).collect();
    assert_eq!(fields, ["continuation", "team"], "marks, then the static fields");
}

#[test]
fn table_text_resolves_from_arena_static_and_json_literals() {
    let batch = records(
        context("/l/a.log", "p-", &[], &[]),
        vec![Rec {
            message: Some("arena text"),
            fields: Some(serde_json::json!({"n": 3, "m": {"k": "v"}, "list": [1, 2]})),
            ..Rec::default()
        }],
    );
    let (r, next) = batch.record_at(0).unwrap();
    assert_eq!(next, 1);
    assert!(batch.record_at(1).is_none());
    assert_eq!(r.message_text(), "arena text");
    assert_eq!(r.field_text("n").as_deref(), Some("3"));
    assert_eq!(r.field_text("list").as_deref(), Some("[1,2]"));
    let m = r.fields().into_iter().find(|f| f.key == "m").unwrap();
    let ValueRef::Map(entries) = m.value else {
        panic!("a map")
    };
    assert_eq!(r.key(entries[0].key), "k");
    assert!(matches!(r.value(&entries[0].value), ValueRef::Str(s) if s == "v"));
    assert_eq!(batch.bytes(Text::Static("x")), b"x");
    // A JSON literal is unescaped for readers that want the text.
    let lit = lines_of(b"\"a \\\"q\\\"\"\n", false);
    assert_eq!(lit.text(Text::Literal { start: 0, len: 10 }), "a \"q\"");
    // A span past the data reads as empty rather than panicking.
    assert_eq!(lit.bytes(Text::Chunk { start: 5, len: 100 }), b"");
}
