//! The `http` input's bodies → spool lines: NDJSON (one JSON object per line, blank lines
//! skipped) or one JSON array of objects, each object written as one line the `json` format
//! reads back into a record — its keys in their order, duplicates kept; `message` / `msg`
//! become the message there, and an object with neither but a `log` key (what Docker and
//! Fluent Bit write) has that key written as `message`, as the forward input does.
//!
//! All or nothing: the first element that is not a JSON object (or whose line would pass
//! the source's `max_line_bytes`) refuses the whole body, naming its line (NDJSON) or its
//! index (array), so a client that fixes and resends it does not duplicate the rest.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A body turned into spool lines.
#[derive(Debug, Default)]
pub struct Lines {
    /// Whole lines, each ending in `\n`.
    pub bytes: Vec<u8>,
    pub count: u64,
}

/// Why a body was refused: where, and what was wrong there.
#[derive(Debug, thiserror::Error)]
#[error("{place}: {reason}")]
pub struct Malformed {
    /// `line 3` (NDJSON) or `element 3` (array), counted from 1.
    pub place: String,
    pub reason: String,
}

/// `body` (NDJSON, or a JSON array when its first non-blank byte is `[`) as lines.
pub fn to_lines(body: &[u8], max_line_bytes: usize) -> Result<Lines, Malformed> {
    let mut out = Lines::default();
    let first = body.iter().find(|c| !c.is_ascii_whitespace());
    if first == Some(&b'[') {
        let text = std::str::from_utf8(body).map_err(|e| Malformed {
            place: "the body".into(),
            reason: format!("not UTF-8: {e}"),
        })?;
        let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| Malformed {
            place: "the body".into(),
            reason: format!("not a JSON array: {e}"),
        })?;
        for (i, item) in items.iter().enumerate() {
            push(&mut out, item.get(), max_line_bytes).map_err(|reason| Malformed {
                place: format!("element {}", i + 1),
                reason,
            })?;
        }
        return Ok(out);
    }
    for (i, line) in body.split(|&c| c == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let place = || format!("line {}", i + 1);
        let text = std::str::from_utf8(line).map_err(|e| Malformed {
            place: place(),
            reason: format!("not UTF-8: {e}"),
        })?;
        push(&mut out, text, max_line_bytes).map_err(|reason| Malformed { place: place(), reason })?;
    }
    Ok(out)
}

/// Writes the object `text` as a line; the reason it cannot be.
fn push(out: &mut Lines, text: &str, max_line_bytes: usize) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let object = de
        .deserialize_map(ObjectVisitor)
        .and_then(|o| de.end().map(|()| o))
        .map_err(|e| format!("not a JSON object: {e}"))?;
    let start = out.bytes.len();
    write_object(&mut out.bytes, &object);
    let len = out.bytes.len() - start;
    if len > max_line_bytes {
        out.bytes.truncate(start);
        return Err(format!(
            "{len} bytes as a line, over the source's max_line_bytes ({max_line_bytes})"
        ));
    }
    out.count += 1;
    Ok(())
}

/// An object's keys (unescaped) and values (as written), in order.
type Object<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'de>, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let value: &'de RawValue = map.next_value()?;
            out.push((key, value));
        }
        Ok(out)
    }
}

fn write_object(out: &mut Vec<u8>, object: &Object<'_>) {
    let has = |k: &str| object.iter().any(|(key, _)| key == k);
    let log_is_message = !has("message") && !has("msg");
    out.push(b'{');
    for (i, (key, value)) in object.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let key: &str = key;
        let key = if log_is_message && key == "log" { "message" } else { key };
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        write_compact(out, value.get());
    }
    out.extend_from_slice(b"}\n");
}

/// A JSON value's text with the whitespace outside its strings removed (a pretty-printed
/// value spans lines; a spool line may not). Strings hold no raw line breaks in valid JSON.
fn write_compact(out: &mut Vec<u8>, raw: &str) {
    if !raw.contains(['\n', '\r']) {
        out.extend_from_slice(raw.as_bytes());
        return;
    }
    let (mut in_string, mut escaped) = (false, false);
    for &c in raw.as_bytes() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if c == b'"' {
            in_string = true;
        } else if c.is_ascii_whitespace() {
            continue;
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(lines: &Lines) -> Vec<serde_json::Value> {
        let text = std::str::from_utf8(&lines.bytes).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn ndjson_and_an_array_become_one_line_per_object() {
        let body = b"{\"msg\":\"a\",\"n\":1}\n\n  \r\n{\"log\":\"b\\n\",\"nested\":{\"k\": [1, 2]}}\n";
        let lines = to_lines(body, 1 << 20).unwrap();
        assert_eq!(lines.count, 2);
        let v = values(&lines);
        assert_eq!(v[0]["msg"], "a");
        assert_eq!(v[1]["message"], "b\n");
        assert_eq!(v[1]["nested"]["k"][1], 2);
        let pretty = b"[\n  {\n    \"message\": \"x y\",\n    \"obj\": {\n      \"a\": \"q \\\" r\"\n    }\n  },\n  {\"log\": \"z\", \"message\": \"m\"}\n]";
        let lines = to_lines(pretty, 1 << 20).unwrap();
        assert_eq!(lines.count, 2);
        assert_eq!(std::str::from_utf8(&lines.bytes).unwrap().lines().count(), 2);
        let v = values(&lines);
        assert_eq!(v[0]["obj"]["a"], "q \" r");
        assert_eq!(v[0]["message"], "x y");
        assert_eq!((v[1]["log"].as_str(), v[1]["message"].as_str()), (Some("z"), Some("m")));
    }

    #[test]
    fn the_first_bad_element_refuses_the_body_and_is_named() {
        let e = to_lines(b"{\"a\":1}\n{\"a\":2}\n[1]\n{\"a\":3}\n", 1 << 20).unwrap_err();
        assert_eq!(e.place, "line 3");
        assert!(e.reason.contains("not a JSON object"), "{e}");
        let e = to_lines(b"{\"a\":1} {\"b\":2}\n", 1 << 20).unwrap_err();
        assert_eq!(e.place, "line 1", "{e}");
        let e = to_lines(b"[{\"a\":1}, \"text\"]", 1 << 20).unwrap_err();
        assert_eq!(e.place, "element 2");
        let e = to_lines(b"[{\"a\":1}", 1 << 20).unwrap_err();
        assert_eq!(e.place, "the body");
        let e = to_lines(b"{\"a\":\"\xff\"}", 1 << 20).unwrap_err();
        assert!(e.reason.contains("UTF-8"), "{e}");
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(300));
        let e = to_lines(big.as_bytes(), 256).unwrap_err();
        assert!(e.reason.contains("max_line_bytes"), "{e}");
    }
}
