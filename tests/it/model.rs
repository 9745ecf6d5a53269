//! The model-based test of the tailer: seeded random sequences of appends, partial writes,
//! rename rotation, copytruncate, plain truncation, deletion, agent stops (SIGTERM and
//! `kill -9`) and collector outages on a few files in one watched directory, run against the
//! real binary, with the arrivals checked against a model of what the README's guarantees
//! promise. The in-flight cap is at its minimum (64 KiB) and some appends are larger, so while
//! the collector is down the files change under an agent that is behind.
//!
//! Why a model: the other rotation and restart tests each script one scenario; the bugs of a
//! tailer live in the interleavings (a rename while stopped after a partial write, a copy
//! deleted before it was read, a truncation right after a restart). Here a sequence is drawn
//! from a seed, so a failure is replayed with `TAILSHIP_MODEL_SEEDS=<seed>` (and
//! `TAILSHIP_MODEL_OPS=<n>` for the length), and the message prints the operations as they ran
//! (`TAILSHIP_MODEL_VERBOSE=1` prints them for passing seeds too).
//!
//! What the model promises, and only that (see `Model::required`):
//! - a line is owed while a file that holds it exists (the glob `*.log*` matches the live
//!   files, the renamed ones and the copies, so every file is tailed; copies are re-read whole,
//!   which the README allows: duplicates);
//! - a file deleted while the current agent had it open is drained ("Delete while open:
//!   drained, then closed"), unless the agent is then killed before it could;
//! - a plain truncation, or a delete of a file the agent had not opened, ends what that file
//!   owed: those lines may be lost ("Without a copy, a line tailship had only begun to read is
//!   shipped as far as it got, marked `fields.truncated`");
//! - a line written in two writes may arrive in two pieces (the partial-line timeout and the
//!   shutdown ship an unterminated last line as it is).
//!
//! Always checked, whatever was owed: no record that was never written, no line cut unless
//! allowed, per file generation the arrivals form a prefix (no holes: the tailer reads in
//! order), and the first deliveries of a generation come in order of their lines.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::*;

/// Fixed seeds: a handful of sequences of `OPS` operations each keeps the run near 30 s.
const SEEDS: &[u64] = &[11, 23, 37, 41, 59, 73, 89, 97, 101, 113];
const OPS: usize = 60;
/// The apps writing into the watched directory: `a.log`, `b.log`.
const APPS: &[&str] = &["a", "b"];
/// A settle that sees no new arrival for this long fails: a rescan (5 s) is the slowest path
/// the agent may legitimately take, so this is several of them.
const SETTLE_STALL: Duration = Duration::from_secs(25);
const SETTLE_LIMIT: Duration = Duration::from_secs(90);

#[derive(Clone, Debug)]
enum Op {
    /// `n` whole lines at the end of the app's live file (completing its partial line first),
    /// in one write or one write per line.
    Append {
        app: usize,
        n: u64,
        one_write: bool,
    },
    /// The start of the app's next line without its newline: `permille` of the line.
    Partial {
        app: usize,
        permille: u32,
    },
    /// logrotate's default: live → `<live>.rN`, `late` more lines written to the renamed file
    /// (the app has not reopened yet), then a new empty live file.
    Rename {
        app: usize,
        late: u64,
    },
    /// logrotate's copytruncate: copy live → `<live>.cN`, truncate live in place.
    CopyTruncate {
        app: usize,
    },
    /// Truncate the live file in place, without a copy.
    Truncate {
        app: usize,
    },
    /// Delete one of the app's files (`pick` modulo how many it has; the live one first).
    Delete {
        app: usize,
        pick: usize,
    },
    Stop {
        kill9: bool,
    },
    Start,
    /// The collector goes away (connections closed, connects refused) or comes back. With the
    /// in-flight cap at its minimum, an agent whose collector is down stops reading after
    /// 64 KiB: the files change under an agent that is behind.
    Collector {
        up: bool,
    },
    /// Wait (with a deadline) until every line owed so far has arrived: a quiet moment.
    Settle,
}

fn generate(seed: u64, ops: usize) -> Vec<Op> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut running = true;
    let mut collector = true;
    let mut out = Vec::with_capacity(ops);
    while out.len() < ops {
        let app = rng.usize(..APPS.len());
        if !running && rng.u32(..100) < 35 {
            out.push(Op::Start);
            running = true;
            continue;
        }
        if !collector && rng.u32(..100) < 20 {
            out.push(Op::Collector { up: true });
            collector = true;
            continue;
        }
        let op = match rng.u32(..100) {
            // A burst is larger than the in-flight cap.
            0..=4 => Op::Append {
                app,
                n: rng.u64(300..=900),
                one_write: rng.bool(),
            },
            5..=27 => Op::Append {
                app,
                n: rng.u64(1..=12),
                one_write: rng.bool(),
            },
            28..=37 => Op::Partial {
                app,
                permille: rng.u32(0..=1000),
            },
            38..=49 => Op::Rename {
                app,
                late: if rng.bool() { 0 } else { rng.u64(1..=4) },
            },
            50..=57 => Op::CopyTruncate { app },
            58..=63 => Op::Truncate { app },
            64..=73 => Op::Delete {
                app,
                pick: rng.usize(..8),
            },
            74..=85 if running => {
                running = false;
                Op::Stop { kill9: rng.bool() }
            }
            86..=93 if !matches!(out.last(), Some(Op::Settle)) => Op::Settle,
            97..=99 if collector => {
                collector = false;
                Op::Collector { up: false }
            }
            _ => continue,
        };
        out.push(op);
    }
    out
}

/// One file generation: the lines written to one file between its creation or truncation
/// and its next truncation. Its lines are `"<tag> <seq> <body>"` with a tag of its own.
struct Gen {
    tag: String,
    /// Lines `0..written` are complete on disk (or were, before a truncation).
    written: u64,
    /// Bytes of line `written` already written without its newline.
    pending: Option<usize>,
    /// Lines written in two writes: they may arrive as a prefix plus a rest.
    split_ok: HashSet<u64>,
    /// Lines `0..owed` must arrive whatever happens to the files later.
    owed: u64,
}

/// One file on disk (one inode).
struct PFile {
    app: usize,
    path: PathBuf,
    /// Every name it has had, to tell whether an arrival came from it.
    names: Vec<String>,
    gen: usize,
    /// It holds lines `0..lines` of `gen`.
    lines: u64,
}

struct Model {
    logs: PathBuf,
    gens: Vec<Gen>,
    files: Vec<PFile>,
    /// Per app, the index in `files` of the file it writes to.
    live: Vec<Option<usize>>,
    /// Per app, the counter behind the `.rN` / `.cN` names.
    rotations: Vec<u32>,
    /// (gen, lines) of files deleted while the agent had them open: owed once the agent
    /// had the chance to drain them (a settle or a clean stop), not after a `kill -9`.
    draining: Vec<(usize, u64)>,
}

impl Model {
    fn new(logs: PathBuf) -> Model {
        Model {
            logs,
            gens: Vec::new(),
            files: Vec::new(),
            live: vec![None; APPS.len()],
            rotations: vec![0; APPS.len()],
            draining: Vec::new(),
        }
    }

    fn new_gen(&mut self, app: usize) -> usize {
        let g = self.gens.len();
        self.gens.push(Gen {
            tag: format!("{}{g}", APPS[app]),
            written: 0,
            pending: None,
            split_ok: HashSet::new(),
            owed: 0,
        });
        g
    }

    fn live_path(&self, app: usize) -> PathBuf {
        self.logs.join(format!("{}.log", APPS[app]))
    }

    fn rotated_path(&mut self, app: usize, kind: char) -> PathBuf {
        self.rotations[app] += 1;
        self.logs
            .join(format!("{}.log.{kind}{}", APPS[app], self.rotations[app]))
    }

    /// The app's live file, created (as a new generation) if it has none.
    fn live_file(&mut self, app: usize, log: &mut String) -> usize {
        if let Some(f) = self.live[app] {
            return f;
        }
        let g = self.new_gen(app);
        let path = self.live_path(app);
        OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        let _ = write!(log, " [create {} as {}]", name(&path), self.gens[g].tag);
        self.files.push(PFile {
            app,
            names: vec![name(&path)],
            path,
            gen: g,
            lines: 0,
        });
        let f = self.files.len() - 1;
        self.live[app] = Some(f);
        f
    }

    /// The rest of the file's pending line, with its newline.
    fn completion(&mut self, f: usize) -> Vec<u8> {
        let g = self.files[f].gen;
        let gen = &mut self.gens[g];
        let Some(done) = gen.pending.take() else {
            return Vec::new();
        };
        let line = corpus().line(&gen.tag, gen.written);
        gen.written += 1;
        self.files[f].lines = gen.written;
        line.as_bytes()[done..].to_vec()
    }

    /// Appends `n` whole lines (after completing a pending one) to file `f`.
    fn write_lines(&mut self, f: usize, n: u64, one_write: bool, log: &mut String) {
        let mut writes = vec![self.completion(f)];
        if !writes[0].is_empty() {
            let _ = write!(log, " [completes line {}]", self.gens[self.files[f].gen].written - 1);
        }
        let g = self.files[f].gen;
        for _ in 0..n {
            let gen = &mut self.gens[g];
            let line = corpus().line(&gen.tag, gen.written).into_bytes();
            gen.written += 1;
            if one_write {
                writes[0].extend_from_slice(&line);
            } else {
                writes.push(line);
            }
        }
        self.files[f].lines = self.gens[g].written;
        append(&self.files[f].path, &writes);
    }

    /// The app finishes the line it was writing (before anything replaces its file).
    fn finish_line(&mut self, app: usize, log: &mut String) {
        if let Some(f) = self.live[app] {
            let rest = self.completion(f);
            if !rest.is_empty() {
                let _ = write!(log, " [completes line {}]", self.gens[self.files[f].gen].written - 1);
                append(&self.files[f].path, &[rest]);
            }
        }
    }

    /// The lines owed per generation now: those promised for good, and those held by a file
    /// that still exists (the agent will read every file the glob matches).
    fn required(&self) -> Vec<u64> {
        let mut req: Vec<u64> = self.gens.iter().map(|g| g.owed).collect();
        for f in &self.files {
            req[f.gen] = req[f.gen].max(f.lines);
        }
        req
    }

    /// Everything owed now has arrived: it stays owed, whatever happens to the files.
    fn settled(&mut self) {
        let req = self.required();
        for (g, r) in self.gens.iter_mut().zip(req) {
            g.owed = r;
        }
        self.draining.clear();
    }
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn append(path: &Path, writes: &[Vec<u8>]) {
    let mut f = OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    for w in writes.iter().filter(|w| !w.is_empty()) {
        f.write_all(w)
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// One record as it arrived.
struct Arrival {
    message: String,
    /// File name (without directory) the agent read it from.
    file: String,
    truncated: bool,
}

/// The receiver's records, read incrementally, with the first arrival of every line that
/// arrived whole or as a prefix.
#[derive(Default)]
struct Seen {
    arrivals: Vec<Arrival>,
    /// tag → seq → index of its first arrival.
    first: HashMap<String, HashMap<u64, usize>>,
}

impl Seen {
    fn update(&mut self, rx: &Receiver) {
        let c = corpus();
        rx.with_state(|s| {
            for r in &s.records[self.arrivals.len()..] {
                let a = Arrival {
                    message: r.message.clone(),
                    file: Path::new(r.file())
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    truncated: r.mark("truncated"),
                };
                if let Some((tag, seq, body)) = c.parse(&a.message) {
                    if !a.truncated && c.body(tag, seq).starts_with(body) {
                        let i = self.arrivals.len();
                        self.first.entry(tag.to_owned()).or_default().entry(seq).or_insert(i);
                    }
                }
                self.arrivals.push(a);
            }
        });
    }

    fn has(&self, tag: &str, seq: u64) -> bool {
        self.first.get(tag).is_some_and(|m| m.contains_key(&seq))
    }

    /// Lines owed by `req` that have not arrived, as (tag, first missing seq, count).
    fn missing(&self, m: &Model, req: &[u64]) -> Vec<(String, u64, u64)> {
        let mut out = Vec::new();
        for (g, &r) in m.gens.iter().zip(req) {
            let miss: Vec<u64> = (0..r).filter(|&s| !self.has(&g.tag, s)).collect();
            if let Some(&first) = miss.first() {
                out.push((g.tag.clone(), first, miss.len() as u64));
            }
        }
        out
    }
}

/// One run of one seed; `Err` holds everything needed to understand and replay a failure.
struct Run {
    seed: u64,
    dir: TestDir,
    rx: Receiver,
    cfg: Config,
    agent: Option<Agent>,
    collector_down: bool,
    model: Model,
    seen: Seen,
    /// Index of the first arrival of the running agent (earlier ones came from earlier runs).
    incarnation_from: usize,
    log: Vec<String>,
}

impl Run {
    fn new(seed: u64) -> Run {
        let dir = TestDir::new(&format!("model-{seed}"));
        let logs = dir.subdir("logs");
        let rx = Receiver::keeping();
        let cfg = Config::tcp(&dir, &[format!("{}/*.log*", logs.display())], &rx)
            .top("max_inflight_bytes = 65536")
            .top("read_buffer_bytes = 4096");
        Run {
            seed,
            rx,
            cfg,
            agent: None,
            collector_down: false,
            model: Model::new(logs),
            seen: Seen::default(),
            incarnation_from: 0,
            log: Vec::new(),
            dir,
        }
    }

    fn start(&mut self) {
        self.cfg.fresh_metrics_port();
        self.seen.update(&self.rx);
        self.incarnation_from = self.seen.arrivals.len();
        self.agent = Some(Agent::start(&self.dir, &self.cfg));
    }

    /// Did the running agent ship a line of file `f`'s generation read from `f`? Then it
    /// holds `f` open and will drain it even if it is deleted now.
    fn observed_open(&mut self, f: usize) -> bool {
        if self.agent.is_none() {
            return false;
        }
        self.seen.update(&self.rx);
        let file = &self.model.files[f];
        let tag = &self.model.gens[file.gen].tag;
        self.seen.arrivals[self.incarnation_from..]
            .iter()
            .any(|a| file.names.contains(&a.file) && corpus().parse(&a.message).is_some_and(|(t, _, _)| t == tag))
    }

    fn apply(&mut self, op: &Op) -> Result<(), String> {
        let mut log = format!("{op:?}");
        let m = &mut self.model;
        match *op {
            Op::Append { app, n, one_write } => {
                let f = m.live_file(app, &mut log);
                m.write_lines(f, n, one_write, &mut log);
                let g = &m.gens[m.files[f].gen];
                let _ = write!(log, " → {} lines {}..{}", g.tag, g.written - n, g.written);
            }
            Op::Partial { app, permille } => {
                let f = m.live_file(app, &mut log);
                m.write_lines(f, 0, true, &mut log);
                let g = &mut m.gens[m.files[f].gen];
                let line = corpus().line(&g.tag, g.written);
                let text = &line[..line.len() - 1];
                // At least "<tag> <seq> ", so a piece shipped alone still says whose it is.
                let head = g.tag.len() + 1 + g.written.to_string().len() + 1;
                let mut cut = head + (text.len() - head) * permille as usize / 1000;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                g.pending = Some(cut);
                g.split_ok.insert(g.written);
                let _ = write!(log, " → {} line {} bytes 0..{cut} of {}", g.tag, g.written, line.len());
                append(&m.files[f].path, &[line.as_bytes()[..cut].to_vec()]);
            }
            Op::Rename { app, late } => {
                let Some(f) = m.live[app] else {
                    log.push_str(" (no live file)");
                    self.log.push(log);
                    return Ok(());
                };
                let to = m.rotated_path(app, 'r');
                fs::rename(&m.files[f].path, &to).expect("rename");
                let _ = write!(log, " → {} is now {}", m.gens[m.files[f].gen].tag, name(&to));
                m.files[f].path = to.clone();
                m.files[f].names.push(name(&to));
                // The app still writes through its descriptor: it finishes its line and
                // writes `late` more into the renamed file before it reopens.
                m.write_lines(f, late, true, &mut log);
                m.live[app] = None;
                m.live_file(app, &mut log);
            }
            Op::CopyTruncate { app } => {
                let Some(f) = m.live[app] else {
                    log.push_str(" (no live file)");
                    self.log.push(log);
                    return Ok(());
                };
                m.finish_line(app, &mut log);
                let to = m.rotated_path(app, 'c');
                fs::copy(&m.files[f].path, &to).expect("copytruncate: copy");
                OpenOptions::new()
                    .write(true)
                    .open(&m.files[f].path)
                    .and_then(|t| t.set_len(0))
                    .expect("copytruncate: truncate");
                let old = m.files[f].gen;
                m.files.push(PFile {
                    app,
                    names: vec![name(&to)],
                    path: to.clone(),
                    gen: old,
                    lines: m.files[f].lines,
                });
                let g = m.new_gen(app);
                m.files[f].gen = g;
                m.files[f].lines = 0;
                let _ = write!(
                    log,
                    " → {} ({} lines) copied to {}; live file is now {}",
                    m.gens[old].tag,
                    m.gens[old].written,
                    name(&to),
                    m.gens[g].tag
                );
            }
            Op::Truncate { app } => {
                let Some(f) = m.live[app] else {
                    log.push_str(" (no live file)");
                    self.log.push(log);
                    return Ok(());
                };
                m.finish_line(app, &mut log);
                OpenOptions::new()
                    .write(true)
                    .open(&m.files[f].path)
                    .and_then(|t| t.set_len(0))
                    .expect("truncate");
                let old = m.files[f].gen;
                let g = m.new_gen(app);
                m.files[f].gen = g;
                m.files[f].lines = 0;
                let _ = write!(
                    log,
                    " → {} ({} lines) truncated; live file is now {}",
                    m.gens[old].tag, m.gens[old].written, m.gens[g].tag
                );
            }
            Op::Delete { app, pick } => {
                let mut mine: Vec<usize> = (0..m.files.len()).filter(|&i| m.files[i].app == app).collect();
                // The live file first, then the rotated ones in the order they were made.
                mine.sort_by_key(|&i| (Some(i) != m.live[app], i));
                if mine.is_empty() {
                    log.push_str(" (no file)");
                    self.log.push(log);
                    return Ok(());
                }
                let f = mine[pick % mine.len()];
                if Some(f) == m.live[app] {
                    m.finish_line(app, &mut log);
                    m.live[app] = None;
                }
                let open = self.observed_open(f);
                let m = &mut self.model;
                fs::remove_file(&m.files[f].path).expect("delete");
                let file = m.files.remove(f);
                for l in m.live.iter_mut().flatten() {
                    if *l > f {
                        *l -= 1;
                    }
                }
                let _ = write!(
                    log,
                    " → {} holding {} lines 0..{} ({})",
                    name(&file.path),
                    m.gens[file.gen].tag,
                    file.lines,
                    if open {
                        "open in the agent: owed"
                    } else {
                        "not seen open: may be lost"
                    }
                );
                if open {
                    m.draining.push((file.gen, file.lines));
                }
            }
            Op::Stop { kill9 } => {
                let Some(mut agent) = self.agent.take() else {
                    log.push_str(" (not running)");
                    self.log.push(log);
                    return Ok(());
                };
                if !kill9 && self.collector_down {
                    // A clean stop delivers what it read within `shutdown_timeout`.
                    self.rx.restart();
                    self.collector_down = false;
                    log.push_str(" [collector up first]");
                }
                if kill9 {
                    agent.kill9();
                    m.draining.clear();
                } else {
                    agent.sigterm();
                    let code = agent.wait_exit(Duration::from_secs(40));
                    if code != Some(0) {
                        self.log.push(log);
                        return Err(format!(
                            "SIGTERM: exit {code:?}, expected 0 (None = still running)\n{}",
                            agent.diag()
                        ));
                    }
                    // A clean stop drains every open file, the deleted ones too.
                    for (g, n) in std::mem::take(&mut m.draining) {
                        m.gens[g].owed = m.gens[g].owed.max(n);
                    }
                }
                if !self.rx.wait_drained(Duration::from_secs(10)) {
                    self.log.push(log);
                    return Err("the agent's connections did not close after it exited".into());
                }
            }
            Op::Start => {
                if self.agent.is_some() {
                    log.push_str(" (running)");
                } else {
                    self.start();
                }
            }
            Op::Collector { up } => {
                if up != self.collector_down {
                    log.push_str(" (already)");
                } else if up {
                    self.rx.restart();
                    self.collector_down = false;
                } else {
                    // Quiet first: a connection the agent opens while the receiver stops can
                    // sit unaccepted in the listen backlog and be reset with the agent's bytes
                    // in it; they count as sent ("TCP limits" in docs/guarantees.md), so a line in
                    // flight at that moment may be lost without any fault of the tailer.
                    if self.agent.is_some() {
                        log.push_str(" [settle first]");
                        if let Err(e) = self.settle() {
                            self.log.push(log);
                            return Err(e);
                        }
                    }
                    self.rx.stop();
                    self.collector_down = true;
                    // An idle agent does not notice the FIN; the receiver then closes the
                    // connection itself. Harmless unless the agent had written into it: bytes
                    // dropped unread are lost without the agent knowing (docs/guarantees.md, "TCP limits").
                    let discarded = self.rx.with_state(|s| s.discarded_bytes);
                    if discarded > 0 {
                        self.log.push(log);
                        return Err(format!(
                            "the receiver dropped {discarded} unread bytes at its stop: the oracle cannot hold"
                        ));
                    }
                }
            }
            Op::Settle => {
                if self.agent.is_none() {
                    log.push_str(" (not running)");
                } else if self.collector_down {
                    log.push_str(" (collector down)");
                } else {
                    let t = Instant::now();
                    if let Err(e) = self.settle() {
                        self.log.push(log);
                        return Err(e);
                    }
                    let _ = write!(log, " ({:.1?})", t.elapsed());
                }
            }
        }
        self.log.push(log);
        Ok(())
    }

    /// Waits for every owed line; afterwards they stay owed.
    fn settle(&mut self) -> Result<(), String> {
        let req = self.model.required();
        let (rx, seen, model) = (&self.rx, &mut self.seen, &self.model);
        let agent = self.agent.as_mut().expect("running");
        let mut last = Vec::new();
        wait_progress(Some(agent), "every owed line", SETTLE_STALL, SETTLE_LIMIT, || {
            seen.update(rx);
            last = seen.missing(model, &req);
            (seen.arrivals.len() as u64, last.is_empty())
        })
        .map_err(|e| format!("{e}; missing (tag, first seq, count): {last:?}"))?;
        self.model.settled();
        Ok(())
    }

    /// The final check over every record that arrived.
    fn check(&mut self) -> Vec<String> {
        self.seen.update(&self.rx);
        let c = corpus();
        let m = &self.model;
        let by_tag: HashMap<&str, &Gen> = m.gens.iter().map(|g| (g.tag.as_str(), g)).collect();
        let mut problems = Vec::new();
        let mut cut = 0;
        for (i, a) in self.seen.arrivals.iter().enumerate() {
            let parsed = c.parse(&a.message).and_then(|(t, s, b)| Some((*by_tag.get(t)?, s, b)));
            let what = match parsed {
                Some((g, seq, body)) if seq < g.written => {
                    let full = c.body(&g.tag, seq);
                    if body == full {
                        continue;
                    }
                    if full.starts_with(body) && a.truncated {
                        cut += 1;
                        continue;
                    }
                    if full.starts_with(body) && g.split_ok.contains(&seq) {
                        continue;
                    }
                    "a test line, cut or mangled"
                }
                Some(_) => "a line beyond what was written",
                None => {
                    // The rest of a line whose start was shipped alone.
                    let rest_of_split = m.gens.iter().any(|g| {
                        g.split_ok.iter().any(|&s| {
                            let line = c.line(&g.tag, s);
                            let line = &line[..line.len() - 1];
                            self.seen.has(&g.tag, s) && line.ends_with(a.message.as_str()) && line != a.message
                        })
                    });
                    if rest_of_split {
                        continue;
                    }
                    // A line cut before its seq was complete: a write that crosses a page
                    // boundary becomes visible in two steps, and a truncation in between cuts
                    // the line where the agent's read ended.
                    let cut_early = a.truncated
                        && m.gens
                            .iter()
                            .any(|g| (0..g.written).any(|s| c.line(&g.tag, s).starts_with(a.message.as_str())));
                    if cut_early {
                        cut += 1;
                        continue;
                    }
                    "not a test line (nor the rest of a line written in two parts)"
                }
            };
            if problems.len() < 20 {
                problems.push(format!(
                    "record #{i} from {}{}: {what}: {:?}",
                    a.file,
                    if a.truncated { " (marked truncated)" } else { "" },
                    short(&a.message)
                ));
            }
        }
        let req = m.required();
        for (tag, first, n) in self.seen.missing(m, &req) {
            problems.push(format!("{tag}: {n} owed lines never arrived, the first is {first}"));
        }
        for g in &m.gens {
            let Some(firsts) = self.seen.first.get(&g.tag) else {
                continue;
            };
            let top = firsts.keys().copied().filter(|&s| s < g.written).max().unwrap_or(0);
            let holes: Vec<u64> = (0..top).filter(|s| !firsts.contains_key(s)).collect();
            if !holes.is_empty() {
                problems.push(format!(
                    "{}: a hole: lines {:?} never arrived but line {top} did",
                    g.tag,
                    &holes[..holes.len().min(10)]
                ));
            }
            for s in 1..=top {
                if let (Some(a), Some(b)) = (firsts.get(&(s - 1)), firsts.get(&s)) {
                    if a > b {
                        problems.push(format!(
                            "{}: line {s} first arrived (record #{b}) before line {} (record #{a})",
                            g.tag,
                            s - 1
                        ));
                        break;
                    }
                }
            }
        }
        if !problems.is_empty() {
            problems.push(format!("({cut} records marked truncated were accepted as cut lines)"));
        }
        problems
    }

    fn report(&self, ops: &[Op], what: &str) -> String {
        let mut s = format!(
            "model test, seed {} ({} ops): {what}\nreplay: TAILSHIP_MODEL_SEEDS={} TAILSHIP_MODEL_OPS={} cargo test --test it model::\noperations as they ran:\n",
            self.seed,
            ops.len(),
            self.seed,
            ops.len()
        );
        for (i, l) in self.log.iter().enumerate() {
            let _ = writeln!(s, "  {i:>2}: {l}");
        }
        let _ = writeln!(s, "files at the end:");
        for f in &self.model.files {
            let _ = writeln!(
                s,
                "  {} holds {} lines 0..{}",
                name(&f.path),
                self.model.gens[f.gen].tag,
                f.lines
            );
        }
        let _ = writeln!(s, "data dir: {}", self.dir.path().display());
        s
    }
}

fn short(s: &str) -> String {
    let mut cut = s.len().min(100);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    if cut < s.len() {
        format!("{}…", &s[..cut])
    } else {
        s.to_owned()
    }
}

fn run_seed(seed: u64, n_ops: usize) -> Duration {
    let t0 = Instant::now();
    let ops = generate(seed, n_ops);
    let mut run = Run::new(seed);
    run.start();
    let mut failure = None;
    for op in &ops {
        if let Err(e) = run.apply(op) {
            failure = Some(e);
            break;
        }
    }
    if failure.is_none() {
        // The end: the apps finish their lines, the agent (re)starts and gets every owed
        // line, then stops cleanly so that nothing more can arrive.
        let mut log = String::from("End");
        for app in 0..APPS.len() {
            run.model.finish_line(app, &mut log);
        }
        if run.collector_down {
            run.rx.restart();
            run.collector_down = false;
            log.push_str(" [collector up]");
        }
        if run.agent.is_none() {
            run.start();
            log.push_str(" [start]");
        }
        run.log.push(log);
        failure = run.settle().err();
        if failure.is_none() {
            if let Err(e) = run.apply(&Op::Stop { kill9: false }) {
                failure = Some(e);
            }
        }
    }
    let problems = match failure {
        Some(e) => vec![e],
        None => run.check(),
    };
    if problems.is_empty() {
        if std::env::var_os("TAILSHIP_MODEL_VERBOSE").is_some() {
            eprintln!("{}{}", run.report(&ops, "passed"), run.rx.summary());
        }
        return t0.elapsed();
    }
    let mut msg = run.report(&ops, "FAILED");
    let _ = writeln!(msg, "problems:");
    for p in &problems {
        let _ = writeln!(msg, "  {p}");
    }
    // Panics here, with the run alive, so that the agent prints its diagnostics, the receiver
    // its summary, and `TAILSHIP_KEEP_TEST_DIRS` keeps the directory.
    panic!("{msg}");
}

fn env_list(name: &str) -> Option<Vec<u64>> {
    let v = std::env::var(name).ok()?;
    Some(
        v.split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: not a number: {s:?}"))
            })
            .collect(),
    )
}

#[test]
fn random_file_operations_and_restarts_lose_no_owed_line() {
    let seeds = env_list("TAILSHIP_MODEL_SEEDS").unwrap_or_else(|| SEEDS.to_vec());
    let n_ops = env_list("TAILSHIP_MODEL_OPS").map_or(OPS, |v| v[0] as usize);
    for seed in seeds {
        let t = run_seed(seed, n_ops);
        eprintln!("model seed {seed}: {n_ops} operations passed in {t:.1?}");
    }
}
