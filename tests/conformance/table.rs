//! The conformance table: `tests/data/conformance/<format>.tsv`, real-world lines of each format
//! (the RFCs' own examples, and lines in the style of the programs that write the format) with
//! every part of the record the parser must give. One test per format; each runs every row and,
//! on failure, lists every disagreeing row with the parts that differ, then a tally per format.
//!
//! Row syntax: the line, then tab-separated `key=value` expectations. Keys starting with `@`
//! are parts of the record: `@time` (RFC 3339; `-` none, `unparsed` for a time the line had but
//! the parser could not read), `@level`, `@message`, `@stream`, `@partial`, `@warning` (the
//! lenient parse's reason, also expected as the field `parse_warning`), `@error` (the line is
//! rejected, with this reason), `@strict.error` (formats with a strict mode: it rejects the
//! line, with this reason; without it strict mode must give the same record), `@todo` (a known disagreement,
//! with why: the row must still disagree, so that a fix is noticed and the row promoted).
//! Other keys are fields, nested maps as `sd.<id>.<param>`, and every field the parser gives
//! must be listed. A part not listed must be absent. `\u{HEX}` in a line or value is that
//! character (a tab, the BOM); nothing else is escaped. `#` starts a comment line.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use tailship::adapt::json::{self, JsonLine, Message};
use tailship::adapt::{access, cri, docker, klog, logfmt, syslog, FieldValue, ParseError, Parsed};

/// Year-less times (RFC 3164, klog) are placed relative to this: 2026-11-25T13:51:20Z.
const NOW: i64 = 1_795_614_680_000_000_000;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/conformance");

type Record = BTreeMap<String, String>;

struct Row {
    /// 1-based line number in the file.
    at: usize,
    line: String,
    want: Record,
}

/// Undoes the `\u{HEX}` escapes.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(k) = rest.find("\\u{") {
        out.push_str(&rest[..k]);
        let after = &rest[k + 3..];
        let end = after.find('}').unwrap_or_else(|| panic!("unclosed \\u{{ in {s:?}"));
        let code = u32::from_str_radix(&after[..end], 16).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        out.push(char::from_u32(code).unwrap_or_else(|| panic!("{s:?}: not a character")));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn rows(format: &str) -> Vec<Row> {
    let path = Path::new(DIR).join(format!("{format}.tsv"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let mut cols = raw.split('\t');
        let line = unescape(cols.next().unwrap_or(""));
        let mut want = Record::new();
        for col in cols {
            let (k, v) = col
                .split_once('=')
                .unwrap_or_else(|| panic!("{format}.tsv:{}: {col:?} is not key=value", n + 1));
            let v = unescape(v);
            let v = if k == "@time" { normal_time(&v) } else { v };
            assert!(
                want.insert(k.to_owned(), v).is_none(),
                "{format}.tsv:{}: {k} twice",
                n + 1
            );
        }
        if let Some(w) = want.get("@warning").cloned() {
            want.entry("parse_warning".to_owned()).or_insert(w);
        }
        rows.push(Row { at: n + 1, line, want });
    }
    assert!(!rows.is_empty(), "{format}.tsv has no rows");
    rows
}

/// An expected time as the record writes it (UTC, nanoseconds as needed).
fn normal_time(v: &str) -> String {
    if v == "-" || v == "unparsed" {
        return v.to_owned();
    }
    let t = chrono::DateTime::parse_from_rfc3339(v).unwrap_or_else(|e| panic!("@time={v}: {e}"));
    rfc3339(t.timestamp_nanos_opt().unwrap())
}

fn rfc3339(ns: i64) -> String {
    let mut v = Vec::new();
    tailship::timefmt::rfc3339_nanos(ns, &mut v);
    String::from_utf8(v).unwrap()
}

fn flatten(prefix: &str, v: &FieldValue<'_>, out: &mut Record) {
    let text = match v {
        FieldValue::Str(s) => s.to_string(),
        FieldValue::Int(n) => n.to_string(),
        FieldValue::Float(f) => f.to_string(),
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::Json(j) => j.to_string(),
        FieldValue::Map(m) if m.is_empty() => "{}".to_owned(),
        FieldValue::Map(m) => {
            for (k, v) in m {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
            return;
        }
    };
    out.insert(prefix.to_owned(), text);
}

/// A parse result in the table's terms.
fn record(result: Result<&Parsed<'_>, ParseError>) -> Record {
    let p = match result {
        Ok(p) => p,
        Err(e) => return Record::from([("@error".to_owned(), e.reason.to_owned())]),
    };
    let mut r = Record::new();
    match (p.timestamp_ns, p.time_unparsed) {
        (Some(ns), _) => r.insert("@time".into(), rfc3339(ns)),
        (None, true) => r.insert("@time".into(), "unparsed".into()),
        (None, false) => None,
    };
    if let Some(l) = p.level {
        r.insert("@level".into(), l.as_str().into());
    }
    if !p.message.is_empty() {
        r.insert("@message".into(), p.message.to_string());
    }
    if let Some(s) = p.stream {
        r.insert("@stream".into(), s.as_str().into());
    }
    if p.partial {
        r.insert("@partial".into(), "true".into());
    }
    if let Some(w) = p.warning {
        r.insert("@warning".into(), w.into());
    }
    for (k, v) in &p.fields {
        let mut one = Record::new();
        flatten(k, v, &mut one);
        for (k, v) in one {
            // A repeated key would hide a value; list it under a numbered name instead.
            let key = match r.contains_key(&k) {
                true => (2..).map(|n| format!("{k}#{n}")).find(|k| !r.contains_key(k)).unwrap(),
                false => k,
            };
            r.insert(key, v);
        }
    }
    r
}

/// The parts where `want` and `have` differ, as `key: want ≠ have` (`∅` for absent).
fn differences(want: &Record, have: &Record) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = want.keys().chain(have.keys()).collect();
    keys.into_iter()
        .filter(|k| !k.starts_with("@strict") && *k != "@todo")
        .filter(|k| want.get(*k) != have.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.map_or("∅".to_owned(), |v| format!("{v:?}"));
            format!("{k}: want {} have {}", show(want.get(k)), show(have.get(k)))
        })
        .collect()
}

/// Runs every row of `<format>.tsv` through `parse` (and `strict`, when the format has a strict
/// mode); panics listing every disagreement. Returns (agreeing rows, rows).
fn check(format: &str, parse: &dyn Fn(&str) -> Record, strict: Option<&dyn Fn(&str) -> Record>) -> (usize, usize) {
    let rows = rows(format);
    let mut bad = Vec::new();
    let mut todo = Vec::new();
    for row in &rows {
        let have = parse(&row.line);
        let mut diffs = differences(&row.want, &have);
        if let Some(strict) = strict {
            let strict_have = strict(&row.line);
            match row.want.get("@strict.error") {
                Some(reason) if strict_have.get("@error") != Some(reason) => {
                    diffs.push(format!("strict: want the error {reason:?}, have {strict_have:?}"));
                }
                Some(_) => {}
                None if strict_have != have => {
                    diffs.push(format!(
                        "strict: not the lenient record: {:?}",
                        differences(&have, &strict_have)
                    ));
                }
                None => {}
            }
        }
        match (row.want.get("@todo"), diffs.is_empty()) {
            (None, true) => {}
            (None, false) => bad.push(format!(
                "{format}.tsv:{} {:?}\n    {}",
                row.at,
                row.line,
                diffs.join("\n    ")
            )),
            (Some(why), false) => todo.push(format!("{format}.tsv:{} known: {why}", row.at)),
            (Some(why), true) => bad.push(format!(
                "{format}.tsv:{} {:?} now agrees: drop its @todo ({why})",
                row.at, row.line
            )),
        }
    }
    let agree = rows.len() - bad.len() - todo.len();
    eprintln!(
        "{format}: {agree}/{} rows agree, {} known disagreements",
        rows.len(),
        todo.len()
    );
    for t in &todo {
        eprintln!("  {t}");
    }
    assert!(
        bad.is_empty(),
        "{format}: {} rows disagree:\n{}",
        bad.len(),
        bad.join("\n")
    );
    (agree, rows.len())
}

fn of(result: Result<(), ParseError>, out: &Parsed<'_>) -> Record {
    record(result.map(|()| out))
}

#[test]
fn syslog() {
    let lenient = |l: &str| {
        let mut out = Parsed::default();
        let r = syslog::parse_into(l, NOW, &mut out);
        of(r, &out)
    };
    let strict = |l: &str| {
        let mut out = Parsed::default();
        let r = syslog::parse_into_with(l, NOW, true, &mut out);
        of(r, &out)
    };
    check("syslog", &lenient, Some(&strict));
}

fn access_check(format: &str, variant: access::Variant) {
    let with = |strict: bool| {
        move |l: &str| {
            let mut out = Parsed::default();
            let r = access::parse_into_with(l, variant, strict, &mut out);
            of(r, &out)
        }
    };
    check(format, &with(false), Some(&with(true)));
}

#[test]
fn combined() {
    access_check("combined", access::Variant::Combined);
}

#[test]
fn common() {
    access_check("common", access::Variant::Common);
}

#[test]
fn cri() {
    check(
        "cri",
        &|l| {
            let mut out = Parsed::default();
            let r = cri::parse_into(l, &mut out);
            of(r, &out)
        },
        None,
    );
}

#[test]
fn docker() {
    check(
        "docker",
        &|l| {
            let mut out = Parsed::default();
            let r = docker::parse_into(l, &mut out);
            of(r, &out)
        },
        None,
    );
}

#[test]
fn klog() {
    check(
        "klog",
        &|l| {
            let mut out = Parsed::default();
            let r = klog::parse_into(l, NOW, &mut out);
            of(r, &out)
        },
        None,
    );
}

#[test]
fn logfmt() {
    let with = |strict: bool| {
        move |l: &str| {
            let mut out = Parsed::default();
            let r = logfmt::parse_into_with(l, strict, &mut out);
            of(r, &out)
        }
    };
    check("logfmt", &with(false), Some(&with(true)));
}

/// The `json` format as the agent ships it: the lifted time, level and message, and every
/// other key as its JSON text.
#[test]
fn json() {
    check(
        "json",
        &|l| {
            let mut j = JsonLine::default();
            if json::parse_into(l, &mut j).is_err() {
                return Record::from([("@error".to_owned(), "not one JSON object".to_owned())]);
            }
            let mut out = Parsed {
                timestamp_ns: j.timestamp_ns,
                time_unparsed: j.time_unparsed,
                level: j.level,
                ..Parsed::default()
            };
            out.message = match j.message {
                Some(Message::Literal(lit)) => Cow::Owned(serde_json::from_str::<String>(lit).unwrap()),
                Some(Message::Text(t)) => Cow::Borrowed(t),
                None => Cow::Borrowed(""),
            };
            for f in &j.fields {
                out.fields
                    .push((f.key.clone(), FieldValue::Json(Cow::Borrowed(f.value.get()))));
            }
            record(Ok(&out))
        },
        None,
    );
}
