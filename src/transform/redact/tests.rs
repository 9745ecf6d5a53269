//! `redact` on texts, on `raw` batches (which stay `Lines` without a hit) and on parsed
//! records' messages and fields.

use serde_json::json;

use super::*;
use crate::record::testing::{context, lines, records, Rec};

fn all_presets() -> Vec<String> {
    PRESETS.iter().map(|p| p.name.to_owned()).collect()
}

fn masker() -> Redact {
    Redact::new(&all_presets(), &[], true, vec![], Replace::Mask("[X]".into())).unwrap()
}

fn redacted(r: &Redact, text: &str) -> String {
    let mut hits = Vec::new();
    r.hits(text.as_bytes(), 0, text.len(), &mut hits);
    let mut out = String::new();
    r.write(text.as_bytes(), 0, text.len(), &hits, &mut out);
    out
}

#[test]
fn every_preset_finds_its_leak_and_leaves_look_alikes() {
    let r = masker();
    for (line, want) in [
        ("paid with 4111 1111 1111 1111 ok", "paid with [X] ok"),
        ("card=5500-0000-0000-0004;", "card=[X];"),
        ("order 4111111111111112 shipped", "order 4111111111111112 shipped"),
        ("amex 3782 822463 10005.", "amex [X]."),
        ("diners 3056-930902-5904 ok", "diners [X] ok"),
        ("long 4111111111111111003 ok", "long [X] ok"),
        ("grouped 4111 1111 1111 1111 003 ok", "grouped [X] ok"),
        // Digit runs not grouped as cards are printed, though their Luhn sums pass: HDFS's
        // date, time and pid; separators mixed; a 20-digit number.
        (
            "081109 203600 102 INFO dfs.DataNode",
            "081109 203600 102 INFO dfs.DataNode",
        ),
        ("4111 1111-1111 1111", "4111 1111-1111 1111"),
        ("id 41111111111111110000", "id 41111111111111110000"),
        ("mail ana.lima+x@shop.example.com now", "mail [X] now"),
        ("from 10.1.2.3:8080", "from [X]:8080"),
        ("version 1.2.3 and 300.1.1.1", "version 1.2.3 and 300.1.1.1"),
        ("peer 2001:db8::8a2e:370:7334 at 12:34:56", "peer [X] at 12:34:56"),
        ("Authorization: Bearer abc.DEF-123_x~y", "Authorization: Bearer [X]"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl end",
            "jwt [X] end",
        ),
        ("key AKIAIOSFODNN7EXAMPLE used", "key [X] used"),
        ("login password=hunter2 user=ana", "login password=[X] user=ana"),
        (
            r#"{"password": "p@ss word", "ok": 1}"#,
            r#"{"password": "[X]", "ok": 1}"#,
        ),
        ("api_key: 'abc123'", "api_key: '[X]'"),
    ] {
        assert_eq!(redacted(&r, line), want, "{line}");
    }
}

#[test]
fn the_keyed_hash_keeps_equal_values_equal_and_needs_the_key() {
    let key = |k: &str| Replace::Hash(k.as_bytes().to_vec());
    let email = vec!["email".to_owned()];
    let a = Redact::new(&email, &[], true, vec![], key("0123456789abcdef-one")).unwrap();
    let b = Redact::new(&email, &[], true, vec![], key("0123456789abcdef-two")).unwrap();
    let x = redacted(&a, "to ana@example.com and ana@example.com, bo@example.com");
    let parts: Vec<&str> = x.split(' ').collect();
    assert_eq!(parts[1], parts[3].trim_end_matches(','), "{x}");
    assert_ne!(parts[1], parts[4], "{x}");
    assert!(
        parts[1].starts_with("[REDACTED:") && parts[1].len() == "[REDACTED:]".len() + 16,
        "{x}"
    );
    assert_ne!(redacted(&b, "ana@example.com"), parts[1], "another key, another hash");
    assert!(matches!(
        Redact::new(&email, &[], true, vec![], key("short")),
        Err(RedactError::ShortKey)
    ));
}

#[test]
fn user_patterns_with_and_without_a_value_group() {
    let r = Redact::new(
        &[],
        &["order-[0-9]+".into(), "ssn=(?P<value>[0-9-]+)".into()],
        true,
        vec![],
        Replace::Mask("*".into()),
    )
    .unwrap();
    assert_eq!(redacted(&r, "order-17 ssn=123-45-6789 done"), "* ssn=* done");
    for bad in [
        Redact::new(&["cards".into()], &[], true, vec![], Replace::Mask("*".into())),
        Redact::new(&[], &["(".into()], true, vec![], Replace::Mask("*".into())),
        Redact::new(&[], &[], true, vec![], Replace::Mask("*".into())),
    ] {
        assert!(bad.is_err());
    }
}

#[test]
fn a_raw_chunk_without_a_hit_stays_lines_and_one_with_hits_keeps_its_other_lines() {
    let r = masker();
    let ctx = context("/l/a.log", "x:", &[], &[]);
    let mut clean = lines(ctx.clone(), b"nothing here\nnor here\n");
    r.apply(&mut clean);
    assert!(matches!(clean.body, Body::Lines { .. }));

    let mut dirty = lines(ctx, b"first\nmail ana@example.com twice ana@example.com\nlast\n");
    r.apply(&mut dirty);
    let Body::Table(t) = &dirty.body else { panic!("a table") };
    assert!(t.transformed);
    let msgs: Vec<String> = dirty
        .iter(0, dirty.end_position())
        .map(|x| x.message_text().into_owned())
        .collect();
    assert_eq!(msgs, vec!["first", "mail [X] twice [X]", "last"]);
    assert!(
        matches!(t.records[0].message, Some(Text::Chunk { .. })),
        "untouched lines stay spans"
    );
    assert_eq!(dirty.mark_at(dirty.end_position()), Some(dirty.end));
}

#[test]
fn parsed_messages_and_chosen_fields() {
    let r = Redact::new(
        &all_presets(),
        &[],
        true,
        vec!["user".into(), "client".into(), "n".into(), "other".into()],
        Replace::Mask("[X]".into()),
    )
    .unwrap();
    let batch = records(
        context("/l/a.log", "x:", &[], &[]),
        vec![Rec {
            message: Some("login by ana@example.com"),
            fields: Some(json!({
                "user": "ana@example.com",
                "client": {"ip": "10.0.0.1"},
                "n": 4111111111111111_i64,
                "other": "fine",
                "kept": "bo@example.com"
            })),
            ..Default::default()
        }],
    );
    let mut batch = std::sync::Arc::try_unwrap(batch).unwrap();
    r.apply(&mut batch);
    let rec = batch.record_at(0).unwrap().0;
    assert_eq!(rec.message_text(), "login by [X]");
    assert_eq!(rec.field_text("user").as_deref(), Some("[X]"));
    assert_eq!(rec.field_text("n").as_deref(), Some("[X]"));
    assert_eq!(rec.field_text("other").as_deref(), Some("fine"));
    assert_eq!(
        rec.field_text("kept").as_deref(),
        Some("bo@example.com"),
        "only the chosen fields"
    );
}

#[test]
fn json_values_stay_json_when_they_can() {
    let r = masker();
    let mut t = Table::default();
    let obj = t.push_text(r#"{"mail":"ana@example.com"}"#);
    let num = t.push_text("4111111111111111");
    let mut hits = Vec::new();
    let data: &[u8] = &[];
    let raw = String::from_utf8(bytes(data, &t, obj).to_vec()).unwrap();
    let new = r.owned(&mut t, &raw, &mut hits).unwrap();
    assert_eq!(t.text_bytes(new), br#"{"mail":"[X]"}"#);
    let raw = String::from_utf8(bytes(data, &t, num).to_vec()).unwrap();
    let new = r.owned(&mut t, &raw, &mut hits).unwrap();
    assert!(serde_json::from_slice::<serde::de::IgnoredAny>(t.text_bytes(new)).is_err());
}
