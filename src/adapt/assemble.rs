//! Turning one file's lines into events, for every format but the fast `raw`/`json` paths:
//! parse each line in the source's format, put container runtimes' split lines back together
//! (`cri`, `docker`), and join multiline events (stack traces). One `Assembler` per file,
//! fed that file's lines in order by the adapt worker that owns the file, chunk after chunk: joining state
//! lives here, across chunks.
//!
//! Events come out through a callback, borrowing from the line when nothing had to be joined.
//! Each event carries the offset of its first line (its record `offset` and `id`). While an
//! event is still being collected, `held` tells the earliest offset it covers: the checkpoint
//! must not move past it, so a restart reads the whole event again rather than half of it.
//!
//! Rejected lines are never dropped: they come out as events whose message is the whole line,
//! with the parser's `ParseError`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::detect::Detected;
use super::join::PartialJoiner;
use super::json::{self, JsonLine};
use super::multiline::{self, MultilineJoiner};
use super::parsed::{FieldValue, ParseError, Parsed, Stream};
use super::regex::{RegexParser, Scratch};
use super::{access, cri, docker, klog, logfmt, syslog};
use crate::config::{Format, MultilineSettings};
use crate::mark::Mark;

/// One finished event.
pub struct Event<'r, 'a> {
    /// Offset of the event's first line.
    pub offset: u64,
    /// When its first line was read.
    pub observed_ns: i64,
    pub rec: &'r Parsed<'a>,
    /// The line did not parse; `rec.message` is the whole line.
    pub error: Option<ParseError>,
    /// The event begins with a line that continues an earlier one (a multiline event cut by
    /// its limits, or a trace whose first line was never seen).
    pub continuation: bool,
}

/// What the assembler of a source needs from its config.
#[derive(Debug, Clone)]
pub struct Adapter {
    pub format: Format,
    pub multiline: Option<MultilineSettings>,
    /// Cap on a joined `cri`/`docker` message.
    pub join_max_bytes: usize,
    /// How long split pieces wait for their last piece once the file is quiet.
    pub join_timeout: Duration,
    /// Reject lines that break the format's RFC instead of salvaging them.
    pub strict: bool,
}

impl Adapter {
    /// Whether lines can go through the encoder's direct `raw`/`json` paths, with no per-file
    /// state.
    pub fn is_stateless(&self) -> bool {
        matches!(self.format, Format::Raw | Format::Json) && self.multiline.is_none()
    }
}

impl From<Format> for Adapter {
    fn from(format: Format) -> Adapter {
        Adapter {
            format,
            multiline: None,
            join_max_bytes: super::join::DEFAULT_MAX_BYTES,
            join_timeout: Duration::from_secs(1),
            strict: false,
        }
    }
}

/// The format `auto` picked, as a `Format`.
pub fn detected_format(d: Detected) -> Format {
    match d {
        Detected::Docker => Format::Docker,
        Detected::Json => Format::Json,
        Detected::Cri => Format::Cri,
        Detected::Klog => Format::Klog,
        Detected::Combined => Format::Combined,
        Detected::Common => Format::Common,
        Detected::Syslog => Format::Syslog,
        Detected::Logfmt => Format::Logfmt,
        Detected::Raw => Format::Raw,
    }
}

/// The head line of a multiline event being collected, and where it began.
struct Head {
    start: Mark,
    observed_ns: i64,
    rec: Parsed<'static>,
    error: Option<ParseError>,
    /// Length of the text the joiner got for the head line: the joined text past it is the
    /// continuation lines, appended to the head's message.
    first_len: usize,
}

struct MultilineSlot {
    joiner: MultilineJoiner,
    head: Option<Head>,
}

/// Per-file joining state. See the module doc.
pub struct Assembler {
    regex: Option<Scratch>,
    /// `cri`/`docker`: split pieces per stream, with where each message began.
    joiner: Option<PartialJoiner>,
    join_start: [Option<(Mark, i64)>; 2],
    join_timeout: Duration,
    /// Multiline events per stream (one slot for formats without streams).
    multiline: Vec<MultilineSlot>,
    multiline_timeout: Duration,
    /// When the file last gave us a line.
    pub last_input: Instant,
}

fn slot_of(stream: Option<Stream>) -> usize {
    usize::from(stream == Some(Stream::Stderr))
}

impl Assembler {
    /// An assembler for a file of `format` (for `auto`, the format detected).
    pub fn new(adapter: &Adapter, format: &Format) -> Assembler {
        let container = matches!(format, Format::Cri | Format::Docker);
        let multiline = adapter
            .multiline
            .as_ref()
            .map(|m| {
                let slots = if container { 2 } else { 1 };
                (0..slots)
                    .map(|_| MultilineSlot {
                        joiner: MultilineJoiner::new(m.rule.clone(), m.max_lines, m.max_bytes),
                        head: None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Assembler {
            regex: match format {
                Format::Regex(p) => Some(p.locations()),
                _ => None,
            },
            joiner: container.then(|| PartialJoiner::new(adapter.join_max_bytes)),
            join_start: [None, None],
            join_timeout: adapter.join_timeout,
            multiline,
            multiline_timeout: adapter.multiline.as_ref().map_or(Duration::ZERO, |m| m.timeout),
            last_input: Instant::now(),
        }
    }

    /// Feeds one line (without its ending) of a file in `format` (the one the assembler was
    /// made for) that begins at `at`; `now_ns` is when it was read (also the "now" of
    /// year-less time formats). `rec` is scratch space reused across lines.
    pub fn push<'a>(
        &mut self,
        parser: &'a LineParser,
        line: &'a str,
        at: Mark,
        now_ns: i64,
        rec: &mut Parsed<'a>,
        emit: &mut dyn FnMut(Event<'_, '_>),
    ) {
        let container = self.joiner.is_some();
        if !container && self.multiline.is_empty() {
            let error = parser.parse(line, now_ns, rec, &mut self.regex).err();
            if error.is_some() {
                rec.clear();
                rec.message = Cow::Borrowed(line);
            }
            emit(Event {
                offset: at.offset,
                observed_ns: now_ns,
                rec,
                error,
                continuation: false,
            });
            return;
        }
        if !container {
            let regex = &mut self.regex;
            feed_multiline(&mut self.multiline[0], line, at, now_ns, emit, |begins| {
                if !begins {
                    return (raw(line), None);
                }
                let mut head = Parsed::default();
                match parser.parse(line, now_ns, &mut head, regex) {
                    Ok(()) => (head.into_owned(), None),
                    Err(e) => (raw(line), Some(e)),
                }
            });
            return;
        }
        if let Err(error) = parser.parse(line, now_ns, rec, &mut self.regex) {
            rec.clear();
            rec.message = Cow::Borrowed(line);
            emit(Event {
                offset: at.offset,
                observed_ns: now_ns,
                rec,
                error: Some(error),
                continuation: false,
            });
            return;
        }
        let Some(joiner) = self.joiner.as_mut() else { return };
        let slot = slot_of(rec.stream);
        if !joiner.is_pending_on(rec.stream) {
            self.join_start[slot] = Some((at, now_ns));
        }
        let Some(whole) = joiner.push(std::mem::take(rec)) else {
            return;
        };
        let (start, observed_ns) = self.join_start[slot].take().unwrap_or((at, now_ns));
        joined(self.multiline.get_mut(slot), whole, start, observed_ns, emit);
    }

    /// Whether an event is being collected.
    pub fn is_pending(&self) -> bool {
        self.join_start.iter().any(Option::is_some) || self.multiline.iter().any(|m| m.head.is_some())
    }

    /// The earliest position an event being collected began at: the checkpoint stays there.
    pub fn held(&self) -> Option<Mark> {
        let joins = self.join_start.iter().flatten().map(|(s, _)| *s);
        let heads = self.multiline.iter().filter_map(|m| m.head.as_ref().map(|h| h.start));
        joins.chain(heads).min_by_key(|s| s.offset)
    }

    /// When the events being collected are due (the file has been quiet long enough), if any.
    pub fn due(&self) -> Option<Instant> {
        let ml = self.multiline.iter().any(|m| m.head.is_some());
        let join = self.join_start.iter().any(Option::is_some);
        match (ml, join) {
            (false, false) => None,
            (true, false) => Some(self.last_input + self.multiline_timeout),
            (false, true) => Some(self.last_input + self.join_timeout),
            (true, true) => Some(self.last_input + self.multiline_timeout.min(self.join_timeout)),
        }
    }

    /// Ships what is being collected: split messages whose last piece never came (marked
    /// `partial`), then the multiline events.
    pub fn flush(&mut self, emit: &mut dyn FnMut(Event<'_, '_>)) {
        self.release(false, emit);
    }

    /// Ships what is being collected because the memory bound wants its bytes back: as
    /// `flush`, but a multiline event is marked `truncated` and its continuation lines that
    /// follow join the rest of it (`MultilineJoiner::cut`).
    pub fn cut(&mut self, emit: &mut dyn FnMut(Event<'_, '_>)) {
        self.release(true, emit);
    }

    /// Heap bytes held by the events being collected: split pieces, multiline text and the
    /// head lines' records (what the adapt worker charges to the budget).
    pub fn held_bytes(&self) -> usize {
        let pieces = self.joiner.as_ref().map_or(0, PartialJoiner::held_bytes);
        let multiline: usize = self
            .multiline
            .iter()
            .map(|m| m.joiner.held_bytes() + m.head.as_ref().map_or(0, |h| h.rec.heap_bytes()))
            .sum();
        pieces + multiline
    }

    fn release(&mut self, cut: bool, emit: &mut dyn FnMut(Event<'_, '_>)) {
        if let Some(joiner) = self.joiner.as_mut() {
            for whole in joiner.flush() {
                let slot = slot_of(whole.stream);
                let Some((start, observed_ns)) = self.join_start[slot].take() else {
                    continue;
                };
                joined(self.multiline.get_mut(slot), whole, start, observed_ns, emit);
            }
            self.join_start = [None, None];
        }
        for ml in &mut self.multiline {
            let done = if cut { ml.joiner.cut() } else { ml.joiner.flush() };
            if let (Some(done), Some(head)) = (done, ml.head.take()) {
                emit_joined(head, done, emit);
            }
        }
    }
}

/// A container message put back together from its pieces (or never split): an event of its
/// own, or a line for the stream's multiline slot.
fn joined(
    multiline: Option<&mut MultilineSlot>,
    whole: Parsed<'_>,
    start: Mark,
    observed_ns: i64,
    emit: &mut dyn FnMut(Event<'_, '_>),
) {
    match multiline {
        None => emit(Event {
            offset: start.offset,
            observed_ns,
            rec: &whole,
            error: None,
            continuation: false,
        }),
        Some(ml) => {
            let text = whole.message.clone();
            feed_multiline(ml, &text, start, observed_ns, emit, |_| (whole.into_owned(), None));
        }
    }
}

/// A record of the whole line as its message.
fn raw(line: &str) -> Parsed<'static> {
    Parsed {
        message: Cow::Owned(line.to_owned()),
        ..Parsed::default()
    }
}

/// Feeds one line (or joined container message) to a multiline slot; `head_of(begins)` makes
/// the record of a line that begins an event (`begins` false: it is a continuation line with
/// nothing before it to join).
fn feed_multiline(
    ml: &mut MultilineSlot,
    text: &str,
    start: Mark,
    observed_ns: i64,
    emit: &mut dyn FnMut(Event<'_, '_>),
    head_of: impl FnOnce(bool) -> (Parsed<'static>, Option<ParseError>),
) {
    if let Some(done) = ml.joiner.push(text) {
        if let Some(head) = ml.head.take() {
            emit_joined(head, done, emit);
        }
    }
    if ml.joiner.lines() == 1 {
        let (rec, error) = head_of(!ml.joiner.continuation());
        ml.head = Some(Head {
            start,
            observed_ns,
            rec,
            error,
            first_len: text.len(),
        });
    }
}

/// The record of a finished multiline event: the head line's record, its message followed
/// by the continuation lines.
fn emit_joined(mut head: Head, done: multiline::Event, emit: &mut dyn FnMut(Event<'_, '_>)) {
    if let Some(rest) = done.text.get(head.first_len..).filter(|r| !r.is_empty()) {
        let mut message = std::mem::take(&mut head.rec.message).into_owned();
        message.push_str(rest);
        head.rec.message = Cow::Owned(message);
    }
    head.rec.truncated |= done.truncated;
    emit(Event {
        offset: head.start.offset,
        observed_ns: head.observed_ns,
        rec: &head.rec,
        error: head.error,
        continuation: done.continuation,
    });
}

/// A format's line parser as a function: `(line, now_ns, out)`.
pub type ParseFn = for<'a> fn(&'a str, i64, &mut Parsed<'a>) -> Result<(), ParseError>;

/// How the lines of one file are parsed, chosen once per file (from its format, or the one
/// `auto` detected), so that parsing a line never looks at the config again.
#[derive(Clone)]
pub enum LineParser {
    Fn(ParseFn),
    /// A user pattern: a record's field names are borrowed from the compiled pattern.
    Regex(Arc<RegexParser>),
}

impl LineParser {
    /// The parser of `format`; `strict`: the formats that have a strict mode reject what
    /// their RFC rejects instead of salvaging it.
    pub fn of(format: &Format, strict: bool) -> LineParser {
        LineParser::Fn(match format {
            Format::Raw | Format::Auto => raw_into,
            Format::Json => json_into,
            Format::Logfmt if strict => logfmt_strict_into,
            Format::Logfmt => logfmt_into,
            Format::Cri => cri_into,
            Format::Docker => docker_into,
            Format::Syslog if strict => syslog_strict_into,
            Format::Syslog => syslog::parse_into,
            Format::Combined if strict => combined_strict_into,
            Format::Combined => combined_into,
            Format::Common if strict => common_strict_into,
            Format::Common => common_into,
            Format::Klog => klog::parse_into,
            Format::Regex(p) => return LineParser::Regex(Arc::clone(p)),
        })
    }

    /// Parses one line into `out`; `scratch` is the regex's reusable capture space.
    pub fn parse<'a>(
        &'a self,
        line: &'a str,
        now_ns: i64,
        out: &mut Parsed<'a>,
        scratch: &mut Option<Scratch>,
    ) -> Result<(), ParseError> {
        match self {
            LineParser::Fn(f) => f(line, now_ns, out),
            LineParser::Regex(p) => {
                let scratch = scratch.get_or_insert_with(|| p.locations());
                p.parse_into(line, now_ns, out, scratch)
            }
        }
    }
}

fn raw_into<'a>(line: &'a str, _now_ns: i64, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    out.clear();
    out.message = Cow::Borrowed(line);
    Ok(())
}

fn logfmt_into<'a>(line: &'a str, _now_ns: i64, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    logfmt::parse_into(line, out)
}

fn logfmt_strict_into<'a>(line: &'a str, _now_ns: i64, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    logfmt::parse_into_with(line, true, out)
}

fn syslog_strict_into<'a>(line: &'a str, now_ns: i64, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    syslog::parse_into_with(line, now_ns, true, out)
}

fn combined_strict_into<'a>(line: &'a str, _now_ns: i64, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    access::parse_into_with(line, access::Variant::Combined, true, out)
}

fn common_strict_into<'a>(line: &'a str, _now_ns: i64, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    access::parse_into_with(line, access::Variant::Common, true, out)
}

fn cri_into<'a>(line: &'a str, _now_ns: i64, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    cri::parse_into(line, out)
}

fn docker_into<'a>(line: &'a str, _now_ns: i64, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    docker::parse_into(line, out)
}

fn combined_into<'a>(line: &'a str, _now_ns: i64, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    access::parse_into(line, access::Variant::Combined, out)
}

fn common_into<'a>(line: &'a str, _now_ns: i64, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    access::parse_into(line, access::Variant::Common, out)
}

/// A `json` line as a `Parsed`, for the paths that join (the direct path writes `JsonLine`s
/// itself): field values stay the JSON text they were written as.
fn json_into<'a>(line: &'a str, _now_ns: i64, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    out.clear();
    let mut j = JsonLine::default();
    if json::parse_into(line, &mut j).is_err() {
        return Err(ParseError::new("json", "not one JSON object", 0));
    }
    out.timestamp_ns = j.timestamp_ns;
    out.time_unparsed = j.time_unparsed;
    out.level = j.level;
    out.message = match j.message {
        Some(json::Message::Literal(lit)) => match serde_json::from_str::<String>(lit) {
            Ok(s) => Cow::Owned(s),
            Err(_) => Cow::Borrowed(lit),
        },
        Some(json::Message::Text(t)) => Cow::Borrowed(t),
        None => Cow::Borrowed(""),
    };
    for f in j.fields {
        out.fields.push((f.key, FieldValue::Json(Cow::Borrowed(f.value.get()))));
    }
    Ok(())
}
