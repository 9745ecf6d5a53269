//! `redact`: replaces what its patterns match — presets for the usual leaks (`presets`) and the
//! user's own regexes — in the message and in chosen fields, with a fixed mask or a keyed hash.
//!
//! All patterns are one multi-pattern regex of `regex-automata` (the engine under `regex` and
//! its `RegexSet`, which reports *whether* patterns match but not where; this one reports
//! where, and which pattern), so a text is scanned once whatever the number of patterns. A
//! `raw` chunk is scanned whole, once, before any record is made of it: a chunk without a hit
//! stays a `Lines` body and costs nothing more. A hit that fails its check (a digit run that is
//! no card number) is skipped and the scan goes on just after its start, so it does not hide a
//! real hit it overlapped.
//!
//! The hash is HMAC-SHA-256 under the configured key, not a plain or seeded fast hash: the
//! values redacted are small spaces (card numbers, addresses) that anyone could hash in full
//! and look up, unless the hash needs a secret; equal values still give equal text, so they
//! stay joinable.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use regex_automata::meta::Regex as MultiRegex;
use regex_automata::Input;
use sha2::Sha256;

use super::edit::{bytes, parts};
use super::presets::{passes, Check, PRESETS, PRESET_NAMES};
use crate::record::{Body, Records, Table, Text, Value};

/// Keys shorter than this are refused: the hash is only as hard to reverse as its key.
const MIN_KEY_BYTES: usize = 16;

/// A `redact` transform that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error("{name:?} is not a preset; one of: {PRESET_NAMES}")]
    Preset { name: String },
    #[error("patterns[{index}]: {source}")]
    Pattern { index: usize, source: Box<regex::Error> },
    #[error("the patterns do not build together: {0}")]
    Build(String),
    #[error("nothing to find: give presets or patterns")]
    Nothing,
    #[error("hash_key must be at least {MIN_KEY_BYTES} bytes (say, 32 random characters)")]
    ShortKey,
}

/// What a hit becomes.
pub enum Replace {
    Mask(String),
    /// `[REDACTED:` + the first 8 bytes of HMAC-SHA-256(key, value) in hex + `]`.
    Hash(Vec<u8>),
}

impl std::fmt::Debug for Replace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Replace::Mask(m) => f.debug_tuple("Mask").field(m).finish(),
            Replace::Hash(_) => f.write_str("Hash(<key>)"),
        }
    }
}

/// One pattern of the set: its check, and the regex that finds its `value` group in a hit.
#[derive(Debug)]
struct Pattern {
    check: Check,
    value: Option<regex::bytes::Regex>,
}

#[derive(Debug)]
pub struct Redact {
    all: MultiRegex,
    patterns: Vec<Pattern>,
    /// Redact the message (else only `fields`).
    message: bool,
    /// Top-level members of `fields` to redact.
    fields: Vec<String>,
    replace: Replace,
}

impl Redact {
    pub fn new(
        presets: &[String],
        user: &[String],
        message: bool,
        fields: Vec<String>,
        replace: Replace,
    ) -> Result<Redact, RedactError> {
        if let Replace::Hash(key) = &replace {
            if key.len() < MIN_KEY_BYTES {
                return Err(RedactError::ShortKey);
            }
        }
        let mut sources: Vec<(String, Check)> = Vec::new();
        for name in presets {
            let p = PRESETS
                .iter()
                .find(|p| p.name == name)
                .ok_or_else(|| RedactError::Preset { name: name.clone() })?;
            sources.push((p.pattern.to_owned(), p.check));
        }
        for (index, pattern) in user.iter().enumerate() {
            regex::Regex::new(pattern).map_err(|e| RedactError::Pattern {
                index,
                source: Box::new(e),
            })?;
            sources.push((pattern.clone(), Check::None));
        }
        if sources.is_empty() {
            return Err(RedactError::Nothing);
        }
        let all = MultiRegex::new_many(&sources.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>())
            .map_err(|e| RedactError::Build(e.to_string()))?;
        let mut patterns = Vec::new();
        for (p, check) in &sources {
            let value = if p.contains("(?P<value>") {
                Some(regex::bytes::Regex::new(p).map_err(|e| RedactError::Build(e.to_string()))?)
            } else {
                None
            };
            patterns.push(Pattern { check: *check, value });
        }
        Ok(Redact {
            all,
            patterns,
            message,
            fields,
            replace,
        })
    }

    /// Redacts the batch's messages and chosen fields.
    pub fn apply(&self, records: &mut Records) {
        let mut hits = Vec::new();
        if let Body::Lines { .. } = records.body {
            // A raw line has a message and nothing else.
            if !self.message {
                return;
            }
            let data = records.data();
            self.hits(data, 0, data.len(), &mut hits);
            if hits.is_empty() {
                return;
            }
            self.lines(records, &hits);
            return;
        }
        let (data, t) = parts(records);
        for i in 0..t.records.len() {
            if self.message {
                if let Some(m) = t.records[i].message {
                    if let Some(new) = self.text(data, t, m, &mut hits) {
                        t.records[i].message = Some(new);
                    }
                }
            }
            if !self.fields.is_empty() {
                self.record_fields(data, t, i, &mut hits);
            }
        }
    }

    /// A `Lines` batch with `hits` (positions in the chunk): made a table, the lines with hits
    /// get their redacted text, written straight into the arena.
    fn lines(&self, records: &mut Records, hits: &[(usize, usize)]) {
        let (data, t) = parts(records);
        // Most lines of a batch with hits have one: room for all of the chunk's text at once,
        // rather than the arena doubling its way up.
        t.arena.reserve(data.len());
        let mut h = 0;
        let mut mine: Vec<(usize, usize)> = Vec::new();
        for i in 0..t.records.len() {
            let Some(Text::Chunk { start, len }) = t.records[i].message else {
                // A repaired line (not UTF-8): its hits are looked for in its repaired text.
                if let Some(m) = t.records[i].message {
                    let mut own = Vec::new();
                    if let Some(new) = self.text(data, t, m, &mut own) {
                        t.records[i].message = Some(new);
                    }
                }
                continue;
            };
            let (start, end) = (start as usize, (start + len) as usize);
            while h < hits.len() && hits[h].1 <= start {
                h += 1;
            }
            let first = h;
            while h < hits.len() && hits[h].0 < end {
                h += 1;
            }
            if first == h {
                continue;
            }
            mine.clear();
            mine.extend(hits[first..h].iter().map(|&(s, e)| (s.max(start), e.min(end))));
            // A hit may go on past this line's end (a user pattern spanning lines): the next
            // line sees it again.
            h = h.saturating_sub(1).max(first);
            let at = t.arena.len();
            self.write(data, start, end, &mine, &mut t.arena);
            t.records[i].message = Some(Text::Arena {
                start: at as u32,
                len: (t.arena.len() - at) as u32,
            });
        }
    }

    /// The redacted version of `text`, in the arena, or `None` when nothing in it matches.
    fn text(&self, data: &[u8], t: &mut Table, text: Text, hits: &mut Vec<(usize, usize)>) -> Option<Text> {
        let unescaped;
        let hay: &[u8] = match text {
            Text::Literal { .. } => {
                unescaped = serde_json::from_slice::<String>(bytes(data, t, text)).ok()?;
                unescaped.as_bytes()
            }
            _ => bytes(data, t, text),
        };
        hits.clear();
        self.hits(hay, 0, hay.len(), hits);
        if hits.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(hay.len());
        self.write(hay, 0, hay.len(), hits, &mut out);
        Some(t.push_text(&out))
    }

    /// Redacts the chosen members of record `i`'s `fields`. Strings (also JSON strings) stay
    /// strings; other JSON keeps being JSON if it still is after the replacement, else
    /// becomes a string; numbers are redacted as their text; nested maps are not walked (lift
    /// them first with `fields`).
    fn record_fields(&self, data: &[u8], t: &mut Table, i: usize, hits: &mut Vec<(usize, usize)>) {
        let (start, len) = t.records[i].fields;
        for k in start as usize..(start + len) as usize {
            let Some(f) = t.fields.get(k).copied() else { return };
            let key = bytes(data, t, f.key);
            if !self.fields.iter().any(|n| n.as_bytes() == key) {
                continue;
            }
            let new = match f.value {
                Value::Str(text) => self.text(data, t, text, hits).map(Value::Str),
                Value::Json(text) => {
                    let raw = bytes(data, t, text);
                    match serde_json::from_slice::<String>(raw) {
                        Ok(s) => self.owned(t, &s, hits).map(Value::Str),
                        Err(_) => {
                            let raw = String::from_utf8_lossy(raw).into_owned();
                            self.owned(t, &raw, hits).map(|new| {
                                let still_json =
                                    serde_json::from_slice::<serde::de::IgnoredAny>(t.text_bytes(new)).is_ok();
                                if still_json {
                                    Value::Json(new)
                                } else {
                                    Value::Str(new)
                                }
                            })
                        }
                    }
                }
                Value::Int(n) => self.owned(t, &n.to_string(), hits).map(Value::Str),
                Value::Float(x) => self.owned(t, &x.to_string(), hits).map(Value::Str),
                Value::Bool(_) | Value::Map { .. } => None,
            };
            if let (Some(v), Some(f)) = (new, t.fields.get_mut(k)) {
                f.value = v;
            }
        }
    }

    /// `text` redacted into the arena, or `None` without a hit.
    fn owned(&self, t: &mut Table, text: &str, hits: &mut Vec<(usize, usize)>) -> Option<Text> {
        hits.clear();
        self.hits(text.as_bytes(), 0, text.len(), hits);
        if hits.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        self.write(text.as_bytes(), 0, text.len(), hits, &mut out);
        Some(t.push_text(&out))
    }

    /// The parts of `hay[from..to]` to replace, in order and apart.
    fn hits(&self, hay: &[u8], from: usize, to: usize, out: &mut Vec<(usize, usize)>) {
        let mut at = from;
        while at < to {
            let Some(m) = self.all.search(&Input::new(hay).range(at..to)) else {
                break;
            };
            let Some(p) = self.patterns.get(m.pattern().as_usize()) else {
                break;
            };
            if !passes(p.check, hay, m.start(), m.end()) {
                at = m.start() + 1;
                continue;
            }
            let (s, e) = match &p.value {
                None => (m.start(), m.end()),
                Some(re) => match re.captures(&hay[m.start()..m.end()]).and_then(|c| c.name("value")) {
                    Some(v) => unquote(hay, m.start() + v.start(), m.start() + v.end()),
                    None => (m.start(), m.end()),
                },
            };
            if e > s {
                out.push((s, e));
            }
            at = m.end().max(m.start() + 1);
        }
    }

    /// `hay[from..to]` with `hits` replaced, appended to `out`.
    fn write(&self, hay: &[u8], from: usize, to: usize, hits: &[(usize, usize)], out: &mut String) {
        let mut at = from;
        for &(s, e) in hits {
            if s < at || e > to {
                continue;
            }
            push_utf8(out, &hay[at..s]);
            self.replacement(&hay[s..e], out);
            at = e;
        }
        push_utf8(out, &hay[at..to]);
    }

    fn replacement(&self, value: &[u8], out: &mut String) {
        match &self.replace {
            Replace::Mask(m) => out.push_str(m),
            Replace::Hash(key) => {
                // `new_from_slice` takes keys of any length for HMAC; the error cannot happen.
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
                    out.push_str("[REDACTED]");
                    return;
                };
                mac.update(value);
                let sum = mac.finalize().into_bytes();
                out.push_str("[REDACTED:");
                for b in &sum[..8] {
                    let _ = write!(out, "{b:02x}");
                }
                out.push(']');
            }
        }
    }
}

/// `bytes` appended to `out`: checked with the SIMD validator (the text is almost always
/// UTF-8 already, and `from_utf8_lossy`'s chunk walk cost more than the regex scan), repaired
/// only when it is not.
fn push_utf8(out: &mut String, bytes: &[u8]) {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

/// A quoted value's content only: the quotes stay, so the text keeps its shape.
fn unquote(hay: &[u8], s: usize, e: usize) -> (usize, usize) {
    match (hay.get(s), hay.get(e.wrapping_sub(1))) {
        (Some(a @ (b'"' | b'\'')), Some(b)) if a == b && e - s >= 2 => (s + 1, e - 1),
        _ => (s, e),
    }
}

#[cfg(test)]
mod tests;
