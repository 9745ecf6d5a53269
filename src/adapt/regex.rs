//! The `regex` format: a user pattern with named captures, compiled once per source.
//!
//! Mapping onto the record:
//! - the `timestamp` capture → event time: with `timestamp_format` (chrono's strftime syntax,
//!   e.g. `%y%m%d %H%M%S`; a layout without a year takes it from "now" with the New Year rule,
//!   one without an offset means UTC) first, then the built-in shapes of
//!   `timestamp::parse_any` (RFC 3339, log4j `2015-07-29 17:41:44,747`, Apache
//!   `17/May/2015:10:05:03 +0000`, epoch s/ms/µs/ns). Unreadable → no event time, and the text
//!   is kept as the field `timestamp`. A weekday that contradicts the date is ignored and
//!   noted as the line's `parse_warning`;
//! - the `level` capture → level via `normalize_level`; an unknown name stays the field `level`;
//! - the `message` capture → message; without one the whole line is the message;
//! - every other named capture → a string field named after the capture. Capture names may
//!   contain `.`, so OpenTelemetry names can be used directly: `(?P<process.pid>\d+)`.
//!   A capture that took no part in the match is left out.
//!
//! The pattern is not anchored for you; write `^…$` to require the whole line. A line the
//! pattern does not match is rejected.
//!
//! Speed: the regex crate finds captures of an anchored pattern with its one-pass DFA, a few
//! hundred MB/s, well behind the hand-written formats. Typical patterns are a `^` followed by
//! literals, greedy runs of a class (`[^ ]+`, `\d{6}`, `.*`), capture groups, alternations and
//! `(…)?`; for those `Walk` matches in one forward pass, taking at every choice the option the
//! regex engine tries first (the longest run, the first alternative, an optional group taken),
//! and runs of "all but one to three ASCII bytes" are one `memchr`. A walk that gets through
//! took the path of highest priority that matches, which is the match the regex engine
//! reports (leftmost-first), so its spans are the same. When it fails after a choice point,
//! or meets a character its classes cannot judge (a non-ASCII character against `\d`, `\w`,
//! `\s`, which are Unicode-aware), the line goes to the regex engine, which decides. Patterns
//! with a construct the walk does not know (flags, lazy or repeated groups, other anchors and
//! escapes), or with a run that can also take what follows it (`(?P<thread>.*):`, which the
//! engine must cut back on every line), use the regex engine only.

use std::borrow::Cow;

use regex::{CaptureLocations, Regex};

use super::normalize_level;
use super::parsed::{FieldValue, ParseError, Parsed};
use super::timestamp::{self, Layout};

const FORMAT: &str = "regex";

/// Why a `regex` source's configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum RegexError {
    #[error("invalid pattern: {0}")]
    Pattern(#[from] regex::Error),
    #[error("the pattern has no named capture (write e.g. `(?P<message>.*)`)")]
    NoNamedCapture,
    #[error("{0}")]
    TimestampFormat(String),
    #[error("timestamp_format is set but the pattern has no `timestamp` capture")]
    FormatWithoutTimestamp,
}

/// Per-caller scratch space of `RegexParser::parse_into` (capture positions), made by
/// `RegexParser::locations` and reused across lines.
#[derive(Debug)]
pub struct Scratch {
    locs: CaptureLocations,
    /// The match's capture spans by index, from the walk or copied from `locs`.
    spans: Vec<Option<(usize, usize)>>,
}

/// A compiled `regex` format.
#[derive(Debug, Clone)]
pub struct RegexParser {
    re: Regex,
    timestamp: Option<usize>,
    level: Option<usize>,
    message: Option<usize>,
    /// (group index, name) of every other named capture, in pattern order.
    fields: Vec<(usize, String)>,
    layout: Option<Layout>,
    /// The pattern as a forward walk, when it is in the subset the walk knows.
    walk: Option<Walk>,
}

impl RegexParser {
    /// Compiles `pattern`; `timestamp_format` is an optional strftime-like layout for the
    /// `timestamp` capture.
    pub fn new(pattern: &str, timestamp_format: Option<&str>) -> Result<RegexParser, RegexError> {
        let re = Regex::new(pattern)?;
        let mut p = RegexParser {
            timestamp: None,
            level: None,
            message: None,
            fields: Vec::new(),
            layout: None,
            walk: Walk::compile(pattern, &re),
            re: re.clone(),
        };
        for (i, name) in re.capture_names().enumerate() {
            let Some(name) = name else { continue };
            match name {
                "timestamp" => p.timestamp = Some(i),
                "level" => p.level = Some(i),
                "message" => p.message = Some(i),
                _ => p.fields.push((i, name.to_owned())),
            }
        }
        if p.timestamp.is_none() && p.level.is_none() && p.message.is_none() && p.fields.is_empty() {
            return Err(RegexError::NoNamedCapture);
        }
        if let Some(f) = timestamp_format {
            if p.timestamp.is_none() {
                return Err(RegexError::FormatWithoutTimestamp);
            }
            p.layout = Some(Layout::new(f).map_err(RegexError::TimestampFormat)?);
        }
        Ok(p)
    }

    /// Scratch space for `parse_into`, reusable across lines.
    pub fn locations(&self) -> Scratch {
        Scratch {
            locs: self.re.capture_locations(),
            spans: vec![None; self.re.captures_len()],
        }
    }

    /// Parses one line into a fresh record; `now_ns` supplies a year the layout lacks.
    pub fn parse<'a>(&'a self, line: &'a str, now_ns: i64) -> Result<Parsed<'a>, ParseError> {
        let mut out = Parsed::default();
        let mut locs = self.locations();
        self.parse_into(line, now_ns, &mut out, &mut locs)?;
        Ok(out)
    }

    /// Parses one line (without its ending) into `out`, clearing it first.
    pub fn parse_into<'a>(
        &'a self,
        line: &'a str,
        now_ns: i64,
        out: &mut Parsed<'a>,
        scratch: &mut Scratch,
    ) -> Result<(), ParseError> {
        out.clear();
        if scratch.spans.len() != self.re.captures_len() {
            // Scratch made by another parser: the walk indexes spans by capture number.
            *scratch = self.locations();
        }
        let walked = self.walk.as_ref().and_then(|w| w.run(line, &mut scratch.spans));
        if walked.is_none() {
            if self.re.captures_read(&mut scratch.locs, line).is_none() {
                return Err(ParseError::new(FORMAT, "line does not match the pattern", 0));
            }
            for (i, s) in scratch.spans.iter_mut().enumerate() {
                *s = scratch.locs.get(i);
            }
        }
        let spans = &scratch.spans;
        let span = |i: usize| spans.get(i).copied().flatten();
        let group = |i: Option<usize>| i.and_then(span).map(|(s, e)| &line[s..e]);
        if let Some(t) = group(self.timestamp) {
            match self.layout.as_ref().and_then(|l| l.parse_noting(t, now_ns)) {
                Some((ns, warning)) => {
                    out.timestamp_ns = Some(ns);
                    if let Some(w) = warning {
                        out.warn(w);
                    }
                }
                None => out.timestamp_ns = timestamp::parse_any(t),
            }
            if out.timestamp_ns.is_none() {
                out.time_unparsed = true;
                out.push("timestamp", FieldValue::str(t));
            }
        }
        if let Some(l) = group(self.level) {
            out.level = normalize_level(l.trim());
            if out.level.is_none() {
                out.push("level", FieldValue::str(l));
            }
        }
        out.message = Cow::Borrowed(match self.message {
            Some(_) => group(self.message).unwrap_or(""),
            None => line,
        });
        for (i, name) in &self.fields {
            if let Some((s, e)) = span(*i) {
                out.fields
                    .push((Cow::Borrowed(name.as_str()), FieldValue::str(&line[s..e])));
            }
        }
        Ok(())
    }
}

/// The forward walk: a pattern of the subset described in the module docs, as a tree.
#[derive(Debug, Clone)]
enum Node {
    /// These bytes, exactly.
    Lit(Box<[u8]>),
    /// `min..=max` characters of `class`, greedily (`max` is `u32::MAX` for no bound).
    Rep { class: Class, min: u32, max: u32 },
    /// A group: its alternatives in order; `slot` is its capture index if it captures,
    /// `inner` the capture indices it contains (its own included), cleared when an
    /// alternative is abandoned; `optional` for a trailing `?`.
    Group {
        slot: Option<usize>,
        inner: std::ops::Range<usize>,
        alts: Vec<Vec<Node>>,
        optional: bool,
    },
    /// `$` (no multi-line flag): the end of the line.
    End,
}

/// A character class: membership of each ASCII byte, and what it says of every non-ASCII
/// character at once.
#[derive(Debug, Clone, Copy)]
struct Class {
    ascii: u128,
    non_ascii: NonAscii,
    /// For a class that takes every character but one to three ASCII bytes (`[^ ]`, `[^"]`,
    /// `.`), those bytes: an unbounded run is then one `memchr` call.
    stops: Option<([u8; 3], usize)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonAscii {
    /// Every non-ASCII character is in the class (`[^ ]`, `.`).
    All,
    /// None is (`[A-Z]`, `[0-9]`).
    None,
    /// Some are, by Unicode tables the walk does not carry (`\d`, `\S`, `\w`): meeting one
    /// hands the line to the regex engine.
    Unknown,
}

impl Class {
    fn new(ascii: u128, non_ascii: NonAscii) -> Class {
        let mut stops = None;
        if non_ascii == NonAscii::All && (!ascii).count_ones() <= 3 {
            let mut s = [0u8; 3];
            let mut n = 0;
            for b in 0..128u8 {
                if ascii & (1 << b) == 0 {
                    s[n] = b;
                    n += 1;
                }
            }
            stops = Some((s, n));
        }
        Class {
            ascii,
            non_ascii,
            stops,
        }
    }
}

/// Why the walk stopped short of a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Miss {
    /// Before any choice point: every way through the failing part fails, so the caller may
    /// try its next alternative.
    Clean,
    /// After a choice point, or on a character the walk cannot classify: only the regex
    /// engine can tell.
    GiveUp,
}

/// Capture spans of a walk, by capture index.
type Spans = [Option<(usize, usize)>];

/// Runs `nodes` from `at`: the end and whether a choice point with lower-priority options
/// was passed.
fn walk_seq(nodes: &[Node], b: &[u8], mut at: usize, spans: &mut Spans) -> Result<(usize, bool), Miss> {
    let mut chose = false;
    for n in nodes {
        match walk_node(n, b, at, spans) {
            Ok((next, c)) => {
                at = next;
                chose |= c;
            }
            Err(Miss::Clean) if !chose => return Err(Miss::Clean),
            Err(_) => return Err(Miss::GiveUp),
        }
    }
    Ok((at, chose))
}

fn walk_node(n: &Node, b: &[u8], at: usize, spans: &mut Spans) -> Result<(usize, bool), Miss> {
    match n {
        Node::Lit(lit) => match b.get(at..at + lit.len()) {
            Some(s) if s == &lit[..] => Ok((at + lit.len(), false)),
            _ => Err(Miss::Clean),
        },
        Node::End => match at == b.len() {
            true => Ok((at, false)),
            false => Err(Miss::Clean),
        },
        Node::Rep { class, min, max } => {
            let (end, count) = run(class, *min, *max, b, at)?;
            if count < *min {
                return Err(Miss::Clean);
            }
            Ok((end, count > *min))
        }
        Node::Group {
            slot,
            inner,
            alts,
            optional,
        } => {
            for (i, alt) in alts.iter().enumerate() {
                match walk_seq(alt, b, at, spans) {
                    Ok((end, chose)) => {
                        if let Some(s) = slot {
                            spans[*s] = Some((at, end));
                        }
                        return Ok((end, chose || *optional || i + 1 < alts.len()));
                    }
                    Err(Miss::Clean) => spans[inner.clone()].fill(None),
                    Err(Miss::GiveUp) => return Err(Miss::GiveUp),
                }
            }
            // Skipping an optional group is its last option, so no choice is left behind.
            match optional {
                true => Ok((at, false)),
                false => Err(Miss::Clean),
            }
        }
    }
}

/// The greedy run of `class` from `at`, at most `max` characters: (end, characters taken).
#[inline]
fn run(class: &Class, min: u32, max: u32, b: &[u8], at: usize) -> Result<(usize, u32), Miss> {
    if let (Some((s, n)), u32::MAX) = (class.stops, max) {
        let rest = &b[at..];
        let len = match n {
            0 => rest.len(),
            1 => memchr::memchr(s[0], rest).unwrap_or(rest.len()),
            2 => memchr::memchr2(s[0], s[1], rest).unwrap_or(rest.len()),
            _ => memchr::memchr3(s[0], s[1], s[2], rest).unwrap_or(rest.len()),
        };
        // An unbounded run's count only matters against `min`; a character is at most four
        // bytes, so past `4 * (min + 1)` bytes it is surely above, and counting can be skipped.
        let count = match len / 4 > min as usize {
            true => min.saturating_add(1),
            false => rest[..len].iter().filter(|&&c| (c as i8) >= -0x40).count() as u32,
        };
        return Ok((at + len, count));
    }
    let mut i = at;
    let mut count = 0u32;
    while count < max {
        let Some(&c) = b.get(i) else { break };
        if c < 0x80 {
            if class.ascii & (1 << c) == 0 {
                break;
            }
            i += 1;
        } else {
            match class.non_ascii {
                NonAscii::None => break,
                NonAscii::Unknown => return Err(Miss::GiveUp),
                NonAscii::All => {
                    i += match c {
                        0xF0.. => 4,
                        0xE0.. => 3,
                        _ => 2,
                    }
                }
            }
        }
        count += 1;
    }
    Ok((i, count))
}

/// A pattern compiled for the forward walk, when it is in the subset (module docs).
#[derive(Debug, Clone)]
struct Walk {
    nodes: Vec<Node>,
}

impl Walk {
    /// `None` when `pattern` uses anything outside the subset, when its capture groups do
    /// not line up with the compiled regex's (a guard against misreading the syntax), or when
    /// the walk would rarely get through (`runs_stop_cleanly`).
    fn compile(pattern: &str, re: &Regex) -> Option<Walk> {
        let walk = Walk::parse(pattern, re)?;
        // A run that can also take what follows it (`(?P<thread>.*):`) is usually cut back
        // by the regex engine, so the walk would fail on most lines and only add its cost.
        runs_stop_cleanly(&walk.nodes, First::END).then_some(walk)
    }

    fn parse(pattern: &str, re: &Regex) -> Option<Walk> {
        let rest = pattern.strip_prefix('^')?;
        let mut p = WalkParser {
            s: rest.chars().collect(),
            i: 0,
            names: vec![None],
        };
        let alts = p.alts()?;
        if p.i != p.s.len() {
            return None;
        }
        let names: Vec<Option<&str>> = re.capture_names().collect();
        if names.len() != p.names.len() || names.iter().zip(&p.names).any(|(a, b)| *a != b.as_deref()) {
            return None;
        }
        // `^a|b` anchors only its first alternative: the walk takes a single top-level one.
        let [nodes]: [Vec<Node>; 1] = alts.try_into().ok()?;
        Some(Walk { nodes })
    }

    /// The capture spans of the match, or `None` when the walk cannot vouch for one (no match,
    /// or a match only the regex engine's backtracking order would find).
    fn run(&self, line: &str, spans: &mut Spans) -> Option<()> {
        spans.fill(None);
        let (end, _) = walk_seq(&self.nodes, line.as_bytes(), 0, spans).ok()?;
        spans[0] = Some((0, end));
        Some(())
    }
}

/// What the text after some point of a pattern can start with.
#[derive(Debug, Clone, Copy)]
struct First {
    ascii: u128,
    non_ascii: bool,
}

impl First {
    const END: First = First {
        ascii: 0,
        non_ascii: false,
    };

    fn union(self, o: First) -> First {
        First {
            ascii: self.ascii | o.ascii,
            non_ascii: self.non_ascii || o.non_ascii,
        }
    }

    fn of_class(c: &Class) -> First {
        First {
            ascii: c.ascii,
            non_ascii: c.non_ascii != NonAscii::None,
        }
    }
}

/// The characters `nodes` can start with, when followed by text starting with `follow`.
fn first(nodes: &[Node], follow: First) -> First {
    let Some((n, rest)) = nodes.split_first() else {
        return follow;
    };
    match n {
        Node::Lit(l) => match l[0] {
            c @ 0..=0x7F => First {
                ascii: 1 << c,
                non_ascii: false,
            },
            _ => First {
                ascii: 0,
                non_ascii: true,
            },
        },
        Node::End => First::END,
        Node::Rep { class, min, .. } => match min {
            0 => First::of_class(class).union(first(rest, follow)),
            _ => First::of_class(class),
        },
        Node::Group { alts, optional, .. } => {
            let after = first(rest, follow);
            let mut f = if *optional { after } else { First::END };
            for a in alts {
                f = f.union(first(a, after));
            }
            f
        }
    }
}

/// Whether every run of varying length in `nodes` stops at a character that what follows it
/// cannot start with.
fn runs_stop_cleanly(nodes: &[Node], follow: First) -> bool {
    nodes.iter().enumerate().all(|(k, n)| {
        let after = first(&nodes[k + 1..], follow);
        match n {
            Node::Rep { class, min, max } if min != max => {
                let c = First::of_class(class);
                c.ascii & after.ascii == 0 && !(c.non_ascii && after.non_ascii)
            }
            Node::Group { alts, .. } => alts.iter().all(|a| runs_stop_cleanly(a, after)),
            _ => true,
        }
    })
}

/// Reads the subset's syntax; any construct it does not know makes it return `None`.
struct WalkParser {
    s: Vec<char>,
    i: usize,
    /// Capture names by index, as `Regex::capture_names` lists them.
    names: Vec<Option<String>>,
}

/// An atom before its quantifier.
enum Atom {
    Char(char),
    Class(Class),
}

const WORD: u128 = (0x3FF << b'0') | (0x3FF_FFFF << b'A') | (0x3FF_FFFF << b'a') | (1 << b'_');
const DIGIT: u128 = 0x3FF << b'0';
/// `\s` in ASCII: tab, newline, vertical tab, form feed, carriage return, space.
const SPACE: u128 = (0x1F << 9) | (1 << b' ');

impl WalkParser {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }

    /// Alternatives up to a `)` or the end (not consumed).
    fn alts(&mut self) -> Option<Vec<Vec<Node>>> {
        let mut alts = vec![self.seq()?];
        while self.eat('|') {
            alts.push(self.seq()?);
        }
        Some(alts)
    }

    fn seq(&mut self) -> Option<Vec<Node>> {
        let mut nodes: Vec<Node> = Vec::new();
        let mut lit = String::new();
        let flush = |lit: &mut String, nodes: &mut Vec<Node>| {
            if !lit.is_empty() {
                nodes.push(Node::Lit(std::mem::take(lit).into_bytes().into_boxed_slice()));
            }
        };
        while let Some(c) = self.peek() {
            let atom = match c {
                '|' | ')' => break,
                '(' => {
                    self.i += 1;
                    flush(&mut lit, &mut nodes);
                    nodes.push(self.group()?);
                    continue;
                }
                '$' => {
                    self.i += 1;
                    flush(&mut lit, &mut nodes);
                    nodes.push(Node::End);
                    continue;
                }
                '[' => {
                    self.i += 1;
                    Atom::Class(self.class()?)
                }
                '.' => {
                    self.i += 1;
                    Atom::Class(Class::new(!(1 << b'\n'), NonAscii::All))
                }
                '\\' => {
                    self.i += 1;
                    match self.next()? {
                        'd' => Atom::Class(Class::new(DIGIT, NonAscii::Unknown)),
                        'D' => Atom::Class(Class::new(!DIGIT, NonAscii::Unknown)),
                        'w' => Atom::Class(Class::new(WORD, NonAscii::Unknown)),
                        'W' => Atom::Class(Class::new(!WORD, NonAscii::Unknown)),
                        's' => Atom::Class(Class::new(SPACE, NonAscii::Unknown)),
                        'S' => Atom::Class(Class::new(!SPACE, NonAscii::Unknown)),
                        // `\<` and `\>` are word-boundary assertions, not the characters.
                        e if e.is_ascii_punctuation() && !matches!(e, '<' | '>') => Atom::Char(e),
                        _ => return None,
                    }
                }
                '^' | '*' | '+' | '?' | '{' | '}' | ']' => return None,
                c => {
                    self.i += 1;
                    Atom::Char(c)
                }
            };
            match (self.quantifier()?, atom) {
                (None, Atom::Char(c)) => lit.push(c),
                (None, Atom::Class(class)) => {
                    flush(&mut lit, &mut nodes);
                    nodes.push(Node::Rep { class, min: 1, max: 1 });
                }
                (Some((min, max)), atom) => {
                    let class = match atom {
                        Atom::Class(class) => class,
                        Atom::Char(c) if c.is_ascii() => Class::new(1 << c as u8, NonAscii::None),
                        Atom::Char(_) => return None,
                    };
                    flush(&mut lit, &mut nodes);
                    nodes.push(Node::Rep { class, min, max });
                }
            }
        }
        flush(&mut lit, &mut nodes);
        Some(nodes)
    }

    /// A greedy quantifier after an atom, if any: `Some(None)` for none, `None` for one the
    /// subset does not take (lazy, or unreadable).
    fn quantifier(&mut self) -> Option<Option<(u32, u32)>> {
        let q = match self.peek() {
            Some('*') => (0, u32::MAX),
            Some('+') => (1, u32::MAX),
            Some('?') => (0, 1),
            Some('{') => {
                self.i += 1;
                let min = self.number()?;
                let max = match self.next()? {
                    '}' => return self.after_quantifier((min, min)),
                    ',' if self.eat('}') => return self.after_quantifier((min, u32::MAX)),
                    ',' => self.number()?,
                    _ => return None,
                };
                if !self.eat('}') || max < min {
                    return None;
                }
                return self.after_quantifier((min, max));
            }
            _ => return Some(None),
        };
        self.i += 1;
        self.after_quantifier(q)
    }

    fn after_quantifier(&mut self, q: (u32, u32)) -> Option<Option<(u32, u32)>> {
        match self.peek() {
            Some('*' | '+' | '?' | '{') => None,
            _ => Some(Some(q)),
        }
    }

    fn number(&mut self) -> Option<u32> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let digits: String = self.s[start..self.i].iter().collect();
        digits.parse().ok().filter(|&n| n < u32::MAX)
    }

    /// After `(`: a capturing (named or not) or non-capturing group, with an optional `?`.
    fn group(&mut self) -> Option<Node> {
        let slot = if self.eat('?') {
            if self.eat(':') {
                None
            } else {
                if !self.eat('P') && self.peek() != Some('<') {
                    return None;
                }
                if !self.eat('<') {
                    return None;
                }
                let mut name = String::new();
                loop {
                    match self.next()? {
                        '>' => break,
                        c => name.push(c),
                    }
                }
                self.names.push(Some(name));
                Some(self.names.len() - 1)
            }
        } else {
            self.names.push(None);
            Some(self.names.len() - 1)
        };
        let first = slot.unwrap_or(self.names.len());
        let alts = self.alts()?;
        if !self.eat(')') {
            return None;
        }
        let optional = match self.quantifier()? {
            None => false,
            Some((0, 1)) => true,
            Some(_) => return None,
        };
        Some(Node::Group {
            slot,
            inner: first..self.names.len(),
            alts,
            optional,
        })
    }

    /// After `[`: a class of ASCII characters, ranges and `\d`/`\w`/`\s`, maybe negated.
    fn class(&mut self) -> Option<Class> {
        let negated = self.eat('^');
        let mut set: u128 = 0;
        let mut unicode = false;
        if self.peek() == Some(']') {
            return None;
        }
        loop {
            let c = self.next()?;
            let lo = match c {
                ']' => break,
                '[' => return None,
                '&' | '-' | '~' if self.peek() == Some(c) => return None,
                '\\' => match self.next()? {
                    'd' => {
                        set |= DIGIT;
                        unicode = true;
                        continue;
                    }
                    'w' => {
                        set |= WORD;
                        unicode = true;
                        continue;
                    }
                    's' => {
                        set |= SPACE;
                        unicode = true;
                        continue;
                    }
                    e if e.is_ascii_punctuation() && !matches!(e, '<' | '>') => e,
                    _ => return None,
                },
                c if c.is_ascii() => c,
                _ => return None,
            };
            if self.peek() == Some('-') && self.s.get(self.i + 1).is_some_and(|&n| n != ']') {
                self.i += 1;
                let hi = self.next()?;
                if !hi.is_ascii() || matches!(hi, '\\' | '[') || hi < lo {
                    return None;
                }
                for b in lo as u8..=hi as u8 {
                    set |= 1 << b;
                }
            } else {
                set |= 1 << lo as u8;
            }
        }
        Some(match (negated, unicode) {
            (false, false) => Class::new(set, NonAscii::None),
            (true, false) => Class::new(!set, NonAscii::All),
            (_, true) => Class::new(if negated { !set } else { set }, NonAscii::Unknown),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    use super::*;
    use crate::adapt::Level;

    const NOW: i64 = 1_795_614_680_000_000_000;

    #[test]
    fn maps_the_captures() {
        let p = RegexParser::new(
            r"^(?P<timestamp>\d{6} \d{6}) (?P<process.pid>\d+) (?P<level>\w+) (?P<component>[^:]+): (?P<message>.*)$",
            Some("%y%m%d %H%M%S"),
        )
        .unwrap();
        let r = p
            .parse(
                "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating",
                NOW,
            )
            .unwrap();
        assert_eq!(r.timestamp_ns, Some(1_226_262_975_000_000_000));
        assert_eq!(r.level, Some(Level::Info));
        assert_eq!(r.message, "PacketResponder 1 terminating");
        assert_eq!(r.field("process.pid"), Some(&FieldValue::str("148")));
        assert_eq!(
            r.field("component"),
            Some(&FieldValue::str("dfs.DataNode$PacketResponder"))
        );
        assert_eq!(
            p.parse("no match", NOW).unwrap_err().reason,
            "line does not match the pattern"
        );
    }

    #[test]
    fn builtin_times_unknown_levels_and_no_message_capture() {
        let p = RegexParser::new(r"^(?P<timestamp>\S+ \S+) (?P<level>\S+)(?: (?P<opt>x))?", None).unwrap();
        let r = p.parse("2015-07-29 17:41:44,747 chatty rest", NOW).unwrap();
        assert_eq!(r.timestamp_ns, Some(1_438_191_704_747_000_000));
        assert_eq!(r.level, None);
        assert_eq!(r.field("level"), Some(&FieldValue::str("chatty")));
        assert_eq!(r.field("opt"), None);
        assert_eq!(r.message, "2015-07-29 17:41:44,747 chatty rest");
        let r = p.parse("not-a time warn", NOW).unwrap();
        assert_eq!(r.timestamp_ns, None);
        assert_eq!(r.field("timestamp"), Some(&FieldValue::str("not-a time")));
        assert_eq!(r.level, Some(Level::Warn));
    }

    #[test]
    fn config_errors_name_the_problem() {
        let e = RegexParser::new("(?P<message>", None).unwrap_err();
        assert!(e.to_string().starts_with("invalid pattern:"), "{e}");
        assert!(matches!(
            RegexParser::new("(.*)", None),
            Err(RegexError::NoNamedCapture)
        ));
        assert!(matches!(
            RegexParser::new("(?P<message>.*)", Some("%Y")),
            Err(RegexError::FormatWithoutTimestamp)
        ));
        let e = RegexParser::new("(?P<timestamp>.*)", Some("%Q")).unwrap_err();
        assert!(e.to_string().contains("timestamp_format"), "{e}");
    }

    const COMBINED: &str = r#"^(?P<client.address>[^ ]+) (?P<ident>[^ ]+) (?P<user.name>[^ ]+) \[(?P<timestamp>[^\]]+)\] "(?P<http.request.method>[^ ]+) (?P<url.path>[^ ]+) (?P<proto>[^"]*)" (?P<status>[0-9]{3}) (?P<bytes>[0-9]+|-)(?: "(?P<referer>[^"]*)" "(?P<user_agent.original>[^"]*)")?"#;
    const HDFS: &str =
        r"^(?P<timestamp>\d{6} \d{6}) (?P<process.pid>\d+) (?P<level>[A-Z]+) (?P<component>[^:]+): (?P<message>.*)$";

    /// Patterns in the walk's subset, for the differential tests; not all pass
    /// `runs_stop_cleanly`, so that failures after choice points are exercised too.
    const WALKED: &[&str] = &[
        COMBINED,
        HDFS,
        r"^(?P<a>\S+) (?P<b>\w*)(?:-(?P<c>[a-c]{1,2}|x\d|))?(?P<d>[.;]?)",
        r"^(?:(?P<a>[^ab]+)|(?P<b>a+)|b)(?P<c>[b-d]?)[^\s]*$",
        r"^(?P<t>\d{2}/\d{2}) \[(?P<l>[A-Z]+)\] (?P<m>[^\]]*)",
        r"^(?P<a>x?)(?P<b>[^x:]{2,5}):é(?P<c>[a ]?)",
    ];

    /// A generator for lines shaped like `pattern`: proptest would fill `\d`, `\S` and `\w`
    /// with any Unicode digit, non-space or word character, which the walk hands to the regex
    /// engine, so mostly ASCII ones are asked for.
    fn lines_like(pattern: &str) -> proptest::string::RegexGeneratorStrategy<String> {
        let p = pattern.trim_start_matches('^').trim_end_matches('$');
        let p = p
            .replace(r"\d", "[0-9]")
            .replace(r"\S", "[!-~]")
            .replace(r"\w", "[a-z_0-9]");
        proptest::string::string_regex(&p).unwrap()
    }

    fn regex_spans(re: &Regex, line: &str) -> Option<Vec<Option<(usize, usize)>>> {
        let mut locs = re.capture_locations();
        re.captures_read(&mut locs, line)?;
        Some((0..locs.len()).map(|i| locs.get(i)).collect())
    }

    /// The walk's spans when it vouches for a match; they must equal the regex engine's.
    fn check_walk(pattern: &str, line: &str) -> bool {
        let re = Regex::new(pattern).unwrap();
        let walk = Walk::parse(pattern, &re).unwrap_or_else(|| panic!("{pattern} not walked"));
        let mut spans = vec![None; re.captures_len()];
        if walk.run(line, &mut spans).is_none() {
            return false;
        }
        assert_eq!(Some(spans), regex_spans(&re, line), "{pattern} on {line:?}");
        true
    }

    #[test]
    fn walk_covers_the_usual_patterns() {
        let line = r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 7 "-" "curl""#;
        assert!(check_walk(COMBINED, line));
        assert!(check_walk(
            COMBINED,
            r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 -"#
        ));
        assert!(check_walk(
            HDFS,
            "081109 203615 148 INFO dfs.DataNode: PacketResponder 1 terminating"
        ));
        // Unicode digits: the regex engine decides.
        assert!(!check_walk(HDFS, "081109 203615 1٤8 INFO dfs.DataNode: x"));
        for p in WALKED {
            assert!(Walk::parse(p, &Regex::new(p).unwrap()).is_some(), "{p}");
        }
        for p in [COMBINED, HDFS] {
            assert!(Walk::compile(p, &Regex::new(p).unwrap()).is_some(), "{p}");
        }
        for p in [
            r"(?P<a>x)",        // not anchored
            r"^(?P<a>x)|y",     // only the first alternative anchored
            r"^(?i)(?P<a>x)",   // flags
            r"^(?P<a>.*?):",    // lazy
            r"^(?P<a>.*):",     // a run the regex engine cuts back
            r"^(?:(?P<a>x) )+", // repeated group
            r"^(?P<a>\bx)",     // other escapes
            r"^(?P<a>\<x)",
            r"^(?P<a>[[:alpha:]]+)", // nested class
            r"^(?P<a>[a-z&&[^x]]+)", // class set operation
            r"^(?P<a>[é]+)",         // non-ASCII class member
            r"^(?P<a>x)(?P<b>\p{L})",
        ] {
            assert!(Walk::compile(p, &Regex::new(p).unwrap()).is_none(), "{p}");
        }
    }

    /// The differential test below only checks lines the walk vouches for: make sure that is
    /// a good share of the lines generated from each pattern, so it checks something.
    #[test]
    fn walk_vouches_for_generated_lines() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        for p in WALKED {
            let gen = lines_like(p);
            let walked = (0..200)
                .filter(|_| check_walk(p, &gen.new_tree(&mut runner).unwrap().current()))
                .count();
            assert!(walked > 50, "{p}: {walked} of 200");
        }
    }

    #[test]
    fn fallback_lines_parse_as_before() {
        let p = RegexParser::new(HDFS, Some("%y%m%d %H%M%S")).unwrap();
        let r = p.parse("081109 203615 1٤8 INFO dfs.DataNode: x", NOW).unwrap();
        assert_eq!(r.field("process.pid"), Some(&FieldValue::str("1٤8")));
        assert_eq!(r.message, "x");
        assert!(p.parse("081109 203615 148 INFO dfs.DataNode: x\ny", NOW).is_err());
    }

    proptest! {
        /// Lines shaped like each pattern (proptest generates them from the pattern), then
        /// bent by an insertion from a tricky alphabet.
        #[test]
        fn walk_agrees_with_the_regex_engine(
            k in 0..WALKED.len(),
            seed in any::<u64>(),
            ins in prop::sample::select(vec!["", " ", "\"", "]", "-", "x", "a", "b", "é", "٣", "\n", "7", ":"]),
            at in any::<prop::sample::Index>(),
        ) {
            let pattern = WALKED[k];
            let gen = lines_like(pattern);
            let mut runner = proptest::test_runner::TestRunner::new_with_rng(
                Default::default(),
                proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &{
                    let mut s = [0u8; 32];
                    s[..8].copy_from_slice(&seed.to_le_bytes());
                    s
                }),
            );
            let mut line = gen.new_tree(&mut runner).unwrap().current();
            check_walk(pattern, &line);
            let cut = line.char_indices().map(|(i, _)| i).chain([line.len()]).collect::<Vec<_>>();
            line.insert_str(cut[at.index(cut.len())], ins);
            check_walk(pattern, &line);
        }

        #[test]
        fn never_panics(s in "\\PC*") {
            let p = RegexParser::new(r"^(?P<timestamp>\S+) (?P<level>\S+) (?P<message>.*)$", Some("%Y-%m-%dT%H:%M:%S%.f")).unwrap();
            let _ = p.parse(&s, NOW);
        }
    }
}
