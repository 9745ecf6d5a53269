//! Multiline events: joining a stack trace (or any continuation lines) into the event that
//! starts it. Fed one message at a time, after `cri`/`docker` partial joining, by the caller;
//! the caller also owns the timeout: when no line arrived for `timeout_ms` it calls `flush` so
//! the last event of a quiet file is not held forever.
//!
//! A `Rule` tells which lines begin an event:
//! - `Rule::Start(re)`: a line matching `re` begins an event, any other line continues the
//!   current one (`multiline = { start = "^\\d{4}-" }`);
//! - `Rule::Continue(re)`: a line matching `re` continues the current event, any other line
//!   begins one. The presets are of this kind, because a stack trace's shape is known while
//!   the application's own line layout is not:
//!   - `java`: indented lines (`\tat …`), `... N more`, `Caused by:`, `Suppressed:`, and an
//!     exception header line such as `java.io.IOException: …` (a dotted name ending in
//!     `Exception`, `Error` or `Throwable`);
//!   - `python`: indented lines, `Traceback (most recent call last):`, the chained-exception
//!     notes, empty lines, and the final `SomeError: …` line;
//!   - `go`: indented lines, empty lines, `goroutine N [state]:`, `created by …`, function
//!     lines of a trace (`main.main()`, `pkg.(*T).M(...)`) and `exit status N`.
//!
//! Limits: an event that would exceed `max_lines` lines or `max_bytes` bytes is ended there
//! (`truncated`) and the line that did not fit starts the next event, marked `continuation`.
//! No line is ever dropped. A single line longer than `max_bytes` is an event on its own.
//! The caller may also `cut` the event being collected (the memory bound wants its bytes
//! back): it ends there the same way, `truncated`, and its continuation lines that follow
//! join the rest of it, marked `continuation`.

use regex::Regex;

/// Which lines begin an event. See the module doc.
#[derive(Debug, Clone)]
pub enum Rule {
    Start(Regex),
    Continue(Regex),
}

/// A multiline configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MultilineError {
    #[error("unknown multiline preset {0:?} (known: java, python, go)")]
    UnknownPreset(String),
    #[error("invalid multiline pattern: {0}")]
    Pattern(#[from] regex::Error),
}

const JAVA: &str = r"^(?:[ \t]+|\.\.\. \d+ (?:more|common frames omitted)|Caused by:|Suppressed:|[\w$]+(?:\.[\w$]+)+(?:Exception|Error|Throwable)(?::|$))";
const PYTHON: &str = r"^(?:[ \t]+|$|Traceback \(most recent call last\):|During handling of the above exception|The above exception was the direct cause|[\w.]*(?:Error|Exception|Warning|Interrupt|Exit)(?::|$))";
const GO: &str = r"^(?:[ \t]+|$|goroutine \d+ \[[^\]]*\]:$|created by |exit status \d+$|[\w./*()-]+\.[\w*()]+\(.*\)$)";

impl Rule {
    /// A rule from a preset name: `java`, `python` or `go`.
    pub fn preset(name: &str) -> Result<Rule, MultilineError> {
        let pattern = match name {
            "java" => JAVA,
            "python" => PYTHON,
            "go" => GO,
            _ => return Err(MultilineError::UnknownPreset(name.to_owned())),
        };
        Ok(Rule::Continue(Regex::new(pattern).expect("preset patterns compile")))
    }

    /// A rule from a user's `start` pattern.
    pub fn start(pattern: &str) -> Result<Rule, MultilineError> {
        Ok(Rule::Start(Regex::new(pattern)?))
    }

    /// A rule from a user's `continue` pattern: matching lines continue the event, any other
    /// line begins one (what Fluent Bit's `cont` rules say, converted by `tailship convert`).
    pub fn continuing(pattern: &str) -> Result<Rule, MultilineError> {
        Ok(Rule::Continue(Regex::new(pattern)?))
    }

    /// Whether `line` begins an event.
    pub fn begins(&self, line: &str) -> bool {
        match self {
            Rule::Start(re) => re.is_match(line),
            Rule::Continue(re) => !re.is_match(line),
        }
    }
}

/// One joined event: its lines separated by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub text: String,
    pub lines: usize,
    /// Ended by `max_lines`/`max_bytes`: the next event holds more of it.
    pub truncated: bool,
    /// Begins with a line that continues an earlier event (cut by a limit, or the first line
    /// seen was a continuation, e.g. after a restart in the middle of a trace).
    pub continuation: bool,
}

/// Joins lines into events. See the module doc.
#[derive(Debug)]
pub struct MultilineJoiner {
    rule: Rule,
    max_lines: usize,
    max_bytes: usize,
    text: String,
    lines: usize,
    continuation: bool,
    /// The event being collected is a line seen before any start line (the top of a file
    /// that begins mid-trace): such lines are shipped one record each, as peers do, rather
    /// than joined into one event of unrelated lines.
    orphan: bool,
    /// The last event was `cut`: a continuation line that follows begins the rest of it, joined
    /// as usual, not an orphan.
    cut: bool,
}

impl MultilineJoiner {
    /// `max_lines` and `max_bytes` are at least 1.
    pub fn new(rule: Rule, max_lines: usize, max_bytes: usize) -> MultilineJoiner {
        MultilineJoiner {
            rule,
            max_lines: max_lines.max(1),
            max_bytes: max_bytes.max(1),
            text: String::new(),
            lines: 0,
            continuation: false,
            orphan: false,
            cut: false,
        }
    }

    /// Feeds one line (without its ending). Returns the event it completed, if any.
    pub fn push(&mut self, line: &str) -> Option<Event> {
        let begins = self.rule.begins(line);
        if self.lines == 0 {
            let after_cut = std::mem::take(&mut self.cut);
            self.begin(line, !begins);
            self.orphan = !begins && !after_cut;
            return None;
        }
        if begins || self.orphan {
            let done = self.take(false);
            self.begin(line, !begins);
            self.orphan = !begins;
            return Some(done);
        }
        if self.lines + 1 > self.max_lines || self.text.len() + 1 + line.len() > self.max_bytes {
            // The rest of a cut event still joins, marked as continuing it.
            let done = self.take(true);
            self.begin(line, true);
            return Some(done);
        }
        self.text.push('\n');
        self.text.push_str(line);
        self.lines += 1;
        None
    }

    /// Takes the event being collected (end of file, rotation, the caller's timeout).
    pub fn flush(&mut self) -> Option<Event> {
        (self.lines > 0).then(|| self.take(false))
    }

    /// Takes the event being collected, cut where it stands (`truncated`; see the module doc).
    pub fn cut(&mut self) -> Option<Event> {
        if self.lines == 0 {
            return None;
        }
        self.cut = true;
        Some(self.take(true))
    }

    /// Heap bytes the event being collected holds.
    pub fn held_bytes(&self) -> usize {
        self.text.capacity()
    }

    /// Whether an event is being collected.
    pub fn is_pending(&self) -> bool {
        self.lines > 0
    }

    /// Lines of the event being collected: 1 right after `push` means the pushed line began
    /// a new event.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Whether the event being collected began with a continuation line.
    pub fn continuation(&self) -> bool {
        self.continuation
    }

    fn begin(&mut self, line: &str, continuation: bool) {
        self.text.push_str(line);
        self.lines = 1;
        self.continuation = continuation;
    }

    fn take(&mut self, truncated: bool) -> Event {
        let lines = std::mem::replace(&mut self.lines, 0);
        Event {
            text: std::mem::take(&mut self.text),
            lines,
            truncated,
            continuation: self.continuation,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn run(j: &mut MultilineJoiner, lines: &[&str]) -> Vec<Event> {
        let mut out: Vec<Event> = lines.iter().filter_map(|l| j.push(l)).collect();
        out.extend(j.flush());
        out
    }

    #[test]
    fn a_cut_event_goes_on_as_a_continuation_not_as_orphans() {
        let mut j = MultilineJoiner::new(Rule::start("^START").unwrap(), 100, 1 << 20);
        assert_eq!(j.cut(), None, "nothing to cut");
        assert!(j.push("START a").is_none());
        assert!(j.push("  one").is_none());
        let cut = j.cut().expect("the event being collected");
        assert_eq!(
            (cut.text.as_str(), cut.truncated, cut.continuation),
            ("START a\n  one", true, false)
        );
        assert!(j.push("  two").is_none(), "joins the rest of the cut event");
        assert!(j.push("  three").is_none());
        let rest = j.push("START b").expect("the rest ends at the next start");
        assert_eq!(
            (rest.text.as_str(), rest.truncated, rest.continuation),
            ("  two\n  three", false, true)
        );
        // Lines before any start line stay one event each, as before.
        let mut k = MultilineJoiner::new(Rule::start("^START").unwrap(), 100, 1 << 20);
        assert!(k.push("  orphan").is_none());
        assert_eq!(k.push("  orphan 2").map(|e| e.text), Some("  orphan".to_owned()));
    }

    #[test]
    fn java_trace_and_cut_at_end() {
        let lines = [
            "2026-11-25 13:51:20,000 ERROR boom",
            "java.lang.IllegalStateException: bad",
            "\tat a.B.c(B.java:1)",
            "Caused by: java.io.IOException: x",
            "\t... 3 more",
            "2026-11-25 13:51:21,000 INFO next",
            "2026-11-25 13:51:22,000 ERROR cut",
            "\tat a.B.c(B.java:1)",
        ];
        let mut j = MultilineJoiner::new(Rule::preset("java").unwrap(), 500, 1 << 20);
        let ev = run(&mut j, &lines);
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].lines, 5);
        assert_eq!(ev[0].text, lines[..5].join("\n"));
        assert_eq!(ev[1].text, lines[5]);
        // The trace cut by rotation/EOF comes out of flush.
        assert_eq!(ev[2].text, lines[6..].join("\n"));
        assert!(!j.is_pending());
    }

    #[test]
    fn python_and_go_presets() {
        let py = [
            "ERROR:root:failed",
            "Traceback (most recent call last):",
            "  File \"x.py\", line 1, in <module>",
            "    foo()",
            "ValueError: bad",
            "INFO:root:ok",
        ];
        let ev = run(
            &mut MultilineJoiner::new(Rule::preset("python").unwrap(), 100, 10_000),
            &py,
        );
        assert_eq!(ev.iter().map(|e| e.lines).collect::<Vec<_>>(), [5, 1]);
        let go = [
            "panic: runtime error: index out of range",
            "",
            "goroutine 1 [running]:",
            "main.main()",
            "\t/tmp/x/main.go:5 +0x1d",
            "main.(*T).Run(0xc000010000)",
            "exit status 2",
            "2026/11/25 13:51:20 next",
        ];
        let ev = run(&mut MultilineJoiner::new(Rule::preset("go").unwrap(), 100, 10_000), &go);
        assert_eq!(ev.iter().map(|e| e.lines).collect::<Vec<_>>(), [7, 1]);
        assert!(Rule::preset("cobol").is_err());
    }

    #[test]
    fn start_rule_and_limits() {
        let rule = Rule::start(r"^\d").unwrap();
        let ev = run(
            &mut MultilineJoiner::new(rule.clone(), 2, 1000),
            &["x", "1 a", "b", "c", "2 d"],
        );
        let got: Vec<(&str, bool, bool)> = ev
            .iter()
            .map(|e| (e.text.as_str(), e.truncated, e.continuation))
            .collect();
        assert_eq!(
            got,
            [
                ("x", false, true),
                ("1 a\nb", true, false),
                ("c", false, true),
                ("2 d", false, false)
            ]
        );
        let ev = run(&mut MultilineJoiner::new(rule, 100, 5), &["1 abc", "d", "1 abcdefgh"]);
        let got: Vec<&str> = ev.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(got, ["1 abc", "d", "1 abcdefgh"]);
        assert!(Rule::start("(").is_err());
    }

    proptest! {
        #[test]
        fn no_line_lost_and_limits_kept(
            lines in proptest::collection::vec("(\\d|\\t|x)[a-z ]{0,12}", 0..40),
            max_lines in 1usize..6,
            max_bytes in 1usize..60,
        ) {
            let rule = Rule::start(r"^\d").unwrap();
            let mut j = MultilineJoiner::new(rule.clone(), max_lines, max_bytes);
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let ev = run(&mut j, &refs);
            let rejoined: Vec<&str> = ev.iter().flat_map(|e| e.text.split('\n')).collect();
            prop_assert_eq!(&rejoined, &refs);
            for e in &ev {
                prop_assert!(e.lines <= max_lines);
                prop_assert!(e.lines == 1 || e.text.len() <= max_bytes);
                prop_assert_eq!(e.lines, e.text.split('\n').count());
                prop_assert_eq!(!e.continuation, rule.begins(e.text.split('\n').next().unwrap()));
            }
        }
    }

    #[test]
    fn lines_before_the_first_start_line_are_a_record_each() {
        let ev = run(
            &mut MultilineJoiner::new(Rule::preset("java").unwrap(), 100, 10_000),
            &[
                "\tat a.b(C.java:1)",
                "\tat c.d(E.java:2)",
                "2026-11-25 12:00:00,001 INFO started",
                "\tat x",
            ],
        );
        let got: Vec<(&str, bool)> = ev.iter().map(|e| (e.text.as_str(), e.continuation)).collect();
        assert_eq!(
            got,
            [
                ("\tat a.b(C.java:1)", true),
                ("\tat c.d(E.java:2)", true),
                ("2026-11-25 12:00:00,001 INFO started\n\tat x", false),
            ]
        );
    }
}
