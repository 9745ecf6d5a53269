//! The adapt stage as threads: a few workers (one per core by default) turn the tailer's
//! chunks into `Records`, once per source, and hand them to every sink that reads the source.
//!
//! Order: the tailer sends all the chunks of one file generation to the same worker (its lane
//! is dealt in turn at its first chunk, `tail/lanes.rs`), so a file's records leave in the order of its lines, while different
//! files are parsed in parallel. Joining state (`Assembler`: split container lines, multiline
//! events) is per file, so it lives in the worker that owns the file.
//!
//! Per chunk, a worker: checks UTF-8 once, counts lines, then makes the records on one of
//! three routes — `raw` without joining: nothing to parse, `Body::Lines`; `json` without
//! joining: a direct parse into a `Table`; everything else through the file's `Assembler`.
//! Events still being joined keep the checkpoint at their first line: the batch's `end` mark
//! and the `commit` of each record say so. A quiet file's pending events are flushed when
//! their timeout comes (the worker sleeps until the earliest one), and at shutdown. What they
//! hold is charged to the budget, and past their share of it the oldest are cut
//! (`stage/joining.rs`).
//!
//! Counters of what the lines held (lines, invalid UTF-8, parse errors, unreadable times,
//! formats `auto` picked) are counted here, once per line, whatever the number of sinks.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::assemble::{self, Adapter, Assembler, LineParser};
use super::detect;
use super::json::{self, JsonLine};
use super::k8s_path;
use super::table::Builder;
use super::Parsed;
use crate::budget::{Budget, BudgetGuard};
use crate::chunk::{Chunk, FileMeta, Line};
use crate::config::{Format, SourceSettings};
use crate::mark::Mark;
use crate::metrics::{add, Metrics};
use crate::record::{Body, Commit, Context, Flags, Records, Rendering};
use crate::transform::Transforms;

/// Files not seen for this long, with nothing pending, lose their state (an `auto` file is
/// detected again if it comes back).
const FILE_STATE_IDLE: Duration = Duration::from_secs(3600);

/// How the records of one source are made.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    pub adapter: Adapter,
    /// The source's static fields, in config order.
    pub static_fields: Arc<[(String, String)]>,
    /// Add `k8s.*` resource attributes read off `/var/log/pods/…` paths (never over the
    /// resource's own).
    pub kubernetes_path_metadata: bool,
    /// What runs on every batch right after it is made (`transform`).
    pub transforms: Transforms,
}

impl From<Format> for SourcePlan {
    fn from(format: Format) -> SourcePlan {
        SourcePlan {
            adapter: Adapter::from(format),
            static_fields: Arc::from(Vec::new()),
            kubernetes_path_metadata: false,
            transforms: Transforms::default(),
        }
    }
}

impl From<&SourceSettings> for SourcePlan {
    fn from(s: &SourceSettings) -> SourcePlan {
        SourcePlan {
            adapter: Adapter {
                format: s.format.clone(),
                multiline: s.multiline.clone(),
                join_max_bytes: s.max_line_bytes,
                join_timeout: s.partial_line_timeout,
                strict: s.strict,
            },
            static_fields: s.fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            kubernetes_path_metadata: s.kubernetes_path_metadata,
            transforms: s.transforms.clone(),
        }
    }
}

/// What a worker keeps per file.
struct FileState {
    context: Arc<Context>,
    /// The file's format: the source's, or the one `auto` picked.
    format: Format,
    /// Its line parser, chosen once.
    parser: LineParser,
    /// `None` when the file's lines take a direct route (`raw`, `json`).
    assembler: Option<Assembler>,
    /// Just past the last line fed: where the checkpoint goes once pending events are out.
    consumed: Mark,
    last_input: Instant,
    /// What the events being joined hold, charged to the budget (`joining`).
    joining: Option<BudgetGuard>,
    /// Since when an event has been being joined (the oldest are cut first).
    pending_since: Option<Instant>,
}

/// How a chunk's records are made.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Lines,
    Json,
    Assembled,
}

/// Per-source counts gathered over a chunk, moved to the metrics once per chunk.
#[derive(Default)]
struct Counts {
    invalid_utf8: u64,
    parse_errors: u64,
    parse_warnings: u64,
    bad_timestamps: u64,
}

/// One worker's state: the plans and the files it owns.
pub struct Worker {
    plans: Arc<[SourcePlan]>,
    /// What tables are charged to, beside their chunks.
    budget: Arc<Budget>,
    resource: Arc<BTreeMap<String, String>>,
    files: HashMap<u64, FileState>,
    metrics: Arc<Metrics>,
    /// Renders a batch in the sinks' wire text here, on the worker, where batches of several
    /// files are made in parallel, instead of on each sink's one thread (set by the pipeline,
    /// which knows the sinks; this module does not).
    prerender: Option<Prerender>,
}

/// See `Worker::prerender`: the batch's rendering, or `None` to leave it to the sinks.
pub type Prerender = Box<dyn FnMut(&Records) -> Option<Rendering> + Send>;

impl Worker {
    pub fn new(
        plans: Arc<[SourcePlan]>,
        resource: &BTreeMap<String, String>,
        budget: Arc<Budget>,
        metrics: Arc<Metrics>,
    ) -> Worker {
        Worker {
            plans,
            budget,
            resource: Arc::new(resource.clone()),
            files: HashMap::new(),
            metrics,
            prerender: None,
        }
    }

    /// Has the worker render each batch it makes with `f` (see the field).
    pub fn with_prerender(mut self, f: Prerender) -> Worker {
        self.prerender = Some(f);
        self
    }

    /// What runs on every batch once it is made: the transforms, then the rendering.
    fn finish(&mut self, records: &mut Records) {
        if let Some(plan) = self.plans.get(records.context.file.source) {
            if !plan.transforms.is_empty() {
                plan.transforms.apply(records);
                recharge(&self.budget, records);
            }
        }
        if let Some(render) = self.prerender.as_mut() {
            if let Some(r) = render(records) {
                let _ = records.rendering.set(r);
            }
        }
    }

    /// The records of one chunk.
    pub fn process(&mut self, chunk: Arc<Chunk>) -> Records {
        let source = chunk.file.source;
        let uid = chunk.file.uid;
        let data = &chunk.data[..];
        let lines = crate::chunk::count_lines(data);
        add(&self.metrics.lines_read, lines as u64);
        let route = self.route(&chunk);
        let state = self
            .files
            .get_mut(&chunk.file.uid)
            .expect("route made the file's state");
        state.last_input = Instant::now();
        let context = Arc::clone(&state.context);
        let end_of_chunk = Mark::at(chunk.end(), data);
        let mut counts = Counts::default();
        let (body, end) = match route {
            // The parsed routes check each line as they make its text; raw lines are checked
            // here, once for the chunk, and only a chunk that fails is looked at line by line.
            Route::Lines => {
                let utf8 = simdutf8::basic::from_utf8(data).is_ok();
                if !utf8 {
                    counts.invalid_utf8 = data
                        .split(|b| *b == b'\n')
                        .filter(|l| std::str::from_utf8(l).is_err())
                        .count() as u64;
                }
                (Body::Lines { utf8 }, end_of_chunk)
            }
            Route::Json => {
                let mut b = Builder::with_lines(data, lines);
                json_lines(&chunk, &mut b, &mut counts);
                (Body::Table(b.table), end_of_chunk)
            }
            Route::Assembled => {
                let mut b = Builder::with_lines(data, lines);
                let end = assembled_lines(&chunk, state, &mut b, &mut counts);
                (Body::Table(b.table), end)
            }
        };
        state.consumed = end_of_chunk;
        self.count(source, &counts);
        let mut records = Records {
            budget: charge(&self.budget, &body),
            context,
            chunk: Some(chunk),
            body,
            end,
            rendering: Default::default(),
        };
        self.finish(&mut records);
        if route == Route::Assembled {
            self.recharge_joining(uid);
        }
        records
    }

    /// When the earliest pending event is due for `flush_due`.
    pub fn next_due(&self) -> Option<Instant> {
        self.files.values().filter_map(|f| f.assembler.as_ref()?.due()).min()
    }

    /// The events being collected of files that have been quiet past their timeout (all of
    /// them when `all`: at shutdown), one batch per file; forgets long-idle files.
    pub fn flush_due(&mut self, now: Instant, all: bool) -> Vec<Records> {
        let due: Vec<u64> = self
            .files
            .iter()
            .filter(|(_, f)| {
                f.assembler
                    .as_ref()
                    .and_then(Assembler::due)
                    .is_some_and(|d| all || d <= now)
            })
            .map(|(uid, _)| *uid)
            .collect();
        let mut out: Vec<Records> = due.into_iter().filter_map(|uid| self.release(uid, false)).collect();
        self.files.retain(|_, f| {
            f.assembler.as_ref().is_some_and(Assembler::is_pending)
                || now.saturating_duration_since(f.last_input) < FILE_STATE_IDLE
        });
        for r in &mut out {
            self.finish(r);
        }
        out
    }

    fn count(&self, source: usize, c: &Counts) {
        add(&self.metrics.invalid_utf8_lines, c.invalid_utf8);
        if let Some(s) = self.metrics.sources.get(source) {
            add(&s.parse_errors, c.parse_errors);
            add(&s.parse_warnings, c.parse_warnings);
            add(&s.bad_timestamps, c.bad_timestamps);
        }
    }

    /// Picks the route for `chunk`, making the file's state on its first chunk (where `auto`
    /// detects the format) and its context again after a rename.
    fn route(&mut self, chunk: &Chunk) -> Route {
        let source = chunk.file.source;
        let plan = self
            .plans
            .get(source)
            .cloned()
            .unwrap_or_else(|| SourcePlan::from(Format::Raw));
        let uid = chunk.file.uid;
        if !self.files.contains_key(&uid) {
            let format = match &plan.adapter.format {
                Format::Auto => {
                    let d = detect::detect(&sample_lines(&chunk.data), chunk.observed_ns);
                    if let Some(s) = self.metrics.sources.get(source) {
                        tracing::info!(source = %s.name, file = %chunk.file.path, format = d.format.as_str(), matched = d.matched, sampled = d.sampled, "auto: detected the file's format");
                        s.detected(d.format);
                    }
                    assemble::detected_format(d.format)
                }
                f => f.clone(),
            };
            let direct = plan.adapter.multiline.is_none() && matches!(format, Format::Raw | Format::Json);
            let state = FileState {
                context: self.context(&chunk.file, &plan),
                assembler: (!direct).then(|| Assembler::new(&plan.adapter, &format)),
                parser: LineParser::of(&format, plan.adapter.strict),
                format,
                consumed: Mark::default(),
                last_input: Instant::now(),
                joining: None,
                pending_since: None,
            };
            self.files.insert(uid, state);
        }
        let stale = self
            .files
            .get(&uid)
            .is_some_and(|s| !Arc::ptr_eq(&s.context.file, &chunk.file));
        if stale {
            // Renamed (rotation): records name the path they came from.
            let context = self.context(&chunk.file, &plan);
            if let Some(s) = self.files.get_mut(&uid) {
                s.context = context;
            }
        }
        match self.files.get(&uid).map(|s| (s.assembler.is_some(), &s.format)) {
            Some((true, _)) => Route::Assembled,
            Some((false, Format::Json)) => Route::Json,
            _ => Route::Lines,
        }
    }

    fn context(&self, file: &Arc<FileMeta>, plan: &SourcePlan) -> Arc<Context> {
        let from_path = plan
            .kubernetes_path_metadata
            .then(|| k8s_path::parse(&file.path))
            .flatten();
        let resource = match from_path {
            None => Arc::clone(&self.resource),
            Some(meta) => {
                // Only where the resource says nothing: a value from the Downward API or the
                // config is the agent's own knowledge, a path is what the kubelet (or, if
                // misconfigured, an app) wrote.
                let mut merged = (*self.resource).clone();
                for (k, v) in meta.attributes() {
                    merged.entry(k.to_owned()).or_insert_with(|| v.to_owned());
                }
                Arc::new(merged)
            }
        };
        Arc::new(Context {
            file: Arc::clone(file),
            static_fields: Arc::clone(&plan.static_fields),
            resource,
        })
    }
}

/// Charges a table's memory to the in-flight budget (a `Lines` body has none of its own).
/// The tailer checks the budget before it reads, so a table may take it past the cap by its
/// own size, once; then reading waits until sinks release memory.
fn charge(budget: &Arc<Budget>, body: &Body) -> Option<BudgetGuard> {
    match body {
        Body::Table(t) => Some(budget.take(t.heap_bytes())),
        Body::Lines { .. } => None,
    }
}

/// Charges a table that transforms made or grew (from a `Lines` body, or with edited text in
/// its arena) for all it holds now, in place of its earlier charge.
fn recharge(budget: &Arc<Budget>, records: &mut Records) {
    if let Body::Table(t) = &records.body {
        if t.transformed {
            records.budget = Some(budget.take(t.heap_bytes()));
        }
    }
}

/// Up to `detect::MAX_SAMPLE` lines from the start of `data`, for `auto`.
fn sample_lines(data: &[u8]) -> Vec<Cow<'_, str>> {
    data.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .take(detect::MAX_SAMPLE)
        .map(|l| String::from_utf8_lossy(l.strip_suffix(b"\r").unwrap_or(l)))
        .collect()
}

/// The marks of the line at `pos`: the rest of a line split in an earlier chunk, or the
/// start of one that goes on in the next.
fn piece_flags(chunk: &Chunk, pos: usize, line: &Line) -> Flags {
    Flags {
        continuation: pos == 0 && chunk.head_continues,
        truncated: !line.terminated && chunk.tail_truncated,
        partial: false,
    }
}

/// The line's text, repaired (U+FFFD) and counted if it is not UTF-8.
fn line_text<'d>(
    whole: Option<&'d str>,
    data: &'d [u8],
    range: std::ops::Range<usize>,
    counts: &mut Counts,
) -> Cow<'d, str> {
    // A line of a valid chunk is valid unless it is a piece cut inside a character.
    if let Some(t) = whole.and_then(|w| w.get(range.clone())) {
        return Cow::Borrowed(t);
    }
    let text = String::from_utf8_lossy(&data[range]);
    if let Cow::Owned(_) = text {
        counts.invalid_utf8 += 1;
    }
    text
}

/// The chunk as text when all of it is valid UTF-8, checked once with SIMD, so that its lines
/// need no check of their own.
fn chunk_text(data: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(data).ok()
}

/// `json` lines straight into the table. Pieces of split lines are not parsed (half an
/// object is never valid); they become records of their own with their marks.
fn json_lines(chunk: &Chunk, b: &mut Builder<'_>, counts: &mut Counts) {
    let data = &chunk.data[..];
    // One field list for the chunk: lines borrow from the chunk, so it can be reused.
    let mut rec = JsonLine::default();
    let whole = chunk_text(data);
    for (pos, line) in chunk.lines() {
        let text = line_text(whole, data, pos..line.end, counts);
        let offset = chunk.start + pos as u64;
        let flags = piece_flags(chunk, pos, &line);
        if flags.continuation || flags.truncated {
            b.line(&text, offset, chunk.observed_ns, flags);
        } else {
            match &text {
                Cow::Borrowed(t) => json_line(b, t, &mut rec, offset, chunk.observed_ns, counts),
                Cow::Owned(t) => json_line(b, t, &mut JsonLine::default(), offset, chunk.observed_ns, counts),
            }
        }
        let n = b.len();
        b.commit_from(n - 1, Commit::After(line.next as u32));
    }
}

/// One whole `json` line; one that does not parse becomes a record of the whole line with its
/// `parse_error`, and is counted.
fn json_line<'a>(
    b: &mut Builder<'_>,
    text: &'a str,
    rec: &mut JsonLine<'a>,
    offset: u64,
    observed_ns: i64,
    counts: &mut Counts,
) {
    match json::parse_into(text, rec) {
        Ok(()) => {
            if rec.timestamp_ns.is_none() && rec.time_unparsed {
                counts.bad_timestamps += 1;
            }
            b.json(rec, offset, observed_ns);
        }
        Err(e) => {
            counts.parse_errors += 1;
            b.rejected(text, offset, observed_ns, &e);
        }
    }
}

/// The lines of a file with an `Assembler`: parsed in its format, joined, each finished event
/// a record. Returns the batch's end mark: the first line of an event still being collected,
/// or the chunk's end.
fn assembled_lines(chunk: &Chunk, state: &mut FileState, b: &mut Builder<'_>, counts: &mut Counts) -> Mark {
    let data = &chunk.data[..];
    let Some(asm) = state.assembler.as_mut() else {
        return Mark::at(chunk.end(), data);
    };
    asm.last_input = Instant::now();
    let parser = &state.parser;
    let mut rec = Parsed::default();
    let whole = chunk_text(data);
    for (pos, line) in chunk.lines() {
        let text = line_text(whole, data, pos..line.end, counts);
        let offset = chunk.start + pos as u64;
        let flags = piece_flags(chunk, pos, &line);
        let first = b.len();
        if flags.continuation || flags.truncated {
            // A piece of an over-long line: never parsed (half a line does not parse),
            // shipped as it is with its marks.
            b.line(&text, offset, chunk.observed_ns, flags);
        } else {
            let at = Mark::at(offset, &data[..pos]);
            let mut emit = |ev: assemble::Event<'_, '_>| {
                count_event(counts, &ev);
                b.event(&ev);
            };
            match &text {
                Cow::Borrowed(t) => asm.push(parser, t, at, chunk.observed_ns, &mut rec, &mut emit),
                Cow::Owned(t) => asm.push(parser, t, at, chunk.observed_ns, &mut Parsed::default(), &mut emit),
            }
        }
        if b.len() > first {
            let commit = asm.held().map_or(Commit::After(line.next as u32), Commit::At);
            b.commit_from(first, commit);
        }
    }
    asm.held().unwrap_or_else(|| Mark::at(chunk.end(), data))
}

/// Counts what an event says went wrong with its line: a parse error, an unreadable time.
fn count_event(counts: &mut Counts, ev: &assemble::Event<'_, '_>) {
    if ev.error.is_some() {
        counts.parse_errors += 1;
    }
    if ev.rec.warning.is_some() {
        counts.parse_warnings += 1;
    }
    if ev.rec.time_unparsed && ev.rec.timestamp_ns.is_none() {
        counts.bad_timestamps += 1;
    }
}

mod thread;
pub use thread::{run, Lane, Swap};

mod joining;
#[cfg(test)]
mod tests;
