//! The agent's own log, as far as it concerns what an app next door can put into it: the text
//! format's field formatter, which escapes control characters in every value (a file name with
//! a newline cannot start a forged line, an ANSI sequence cannot recolour the terminal), and a
//! rate limit on warnings about one path (an unreadable directory found again at every rescan
//! is warned about once per `PATH_WARNING_WINDOW`, not 20,000 times an hour).
//!
//! `main.rs` installs both; they live in the library so they can be tested without a process.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::{MakeExt, RecordFields};
use tracing_subscriber::fmt::format::{self, Writer};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::layer::{Context, Layer};

use crate::logsafe;

/// A warning (or error) from one place in the code about one path is logged at most once in
/// this window.
pub const PATH_WARNING_WINDOW: Duration = Duration::from_secs(600);
/// The (place, path) pairs remembered; past it the expired ones are forgotten, and if none
/// has expired, all (a flood of distinct paths is then logged, not grown in memory).
const MAX_REMEMBERED: usize = 4096;

/// The text format's fields: `name=value`, the message bare, every value escaped
/// (`logsafe::escape`).
#[derive(Clone, Copy, Debug, Default)]
pub struct EscapedFields;

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let inner = format::debug_fn(write_field).delimited(" ");
        inner.format_fields(writer, fields)
    }
}

fn write_field(w: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug) -> fmt::Result {
    let mut text = String::new();
    write!(text, "{value:?}")?;
    let text = logsafe::escape(&text);
    match field.name() {
        "message" => w.write_str(&text),
        name => write!(w, "{name}={text}"),
    }
}

/// A layer that drops a warning or error whose `path` field repeats one logged from the same
/// place within `PATH_WARNING_WINDOW`. Events without a `path` field always pass.
#[derive(Debug)]
pub struct PathRateLimit {
    window: Duration,
    last: Mutex<HashMap<(Identifier, String), Instant>>,
}

impl PathRateLimit {
    pub fn new(window: Duration) -> PathRateLimit {
        PathRateLimit {
            window,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an event from `place` about `path` at `now` is to be logged (and if so, it is
    /// remembered).
    fn admit(&self, place: Identifier, path: String, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let key = (place, path);
        if last.get(&key).is_some_and(|t| now.duration_since(*t) < self.window) {
            return false;
        }
        if last.len() >= MAX_REMEMBERED {
            let window = self.window;
            last.retain(|_, t| now.duration_since(*t) < window);
            if last.len() >= MAX_REMEMBERED {
                last.clear();
            }
        }
        last.insert(key, now);
        true
    }
}

impl<S: Subscriber> Layer<S> for PathRateLimit {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        // Levels compare by verbosity: WARN and ERROR are the ones at or below WARN.
        if *event.metadata().level() > Level::WARN {
            return true;
        }
        let mut visitor = PathField(None);
        event.record(&mut visitor);
        match visitor.0 {
            None => true,
            Some(path) => self.admit(event.metadata().callsite(), path, Instant::now()),
        }
    }
}

/// The value of an event's `path` field, if it has one.
struct PathField(Option<String>);

impl Visit for PathField {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "path" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn logged(f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::registry()
            .with(PathRateLimit::new(Duration::from_secs(60)))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .without_time()
                    .fmt_fields(EscapedFields)
                    .with_writer(move || out.clone()),
            );
        tracing::subscriber::with_default(subscriber, f);
        let text = buf.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn untrusted_text_stays_on_its_line() {
        let name = "/logs/x.log\n2026-11-30T00:00:00Z ERROR forged\u{1b}[31m";
        let text = logged(|| {
            tracing::warn!(path = %name, error = %"body\r\nline", "cannot open {}", name);
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
        assert!(text.contains("path=/logs/x.log\\n2026"), "{text}");
        assert!(
            text.contains("WARN") && text.contains("cannot open /logs/x.log\\n"),
            "{text}"
        );
    }

    #[test]
    fn warnings_about_one_path_are_rate_limited() {
        let text = logged(|| {
            for _ in 0..5 {
                for path in ["/a", "/b"] {
                    tracing::warn!(path, "cannot list directory");
                }
                tracing::info!(path = "/a", "info passes");
                tracing::warn!("no path passes");
            }
        });
        let count = |what: &str| text.lines().filter(|l| l.contains(what)).count();
        assert_eq!(count("cannot list directory"), 2, "{text}");
        assert_eq!((count("info passes"), count("no path passes")), (5, 5), "{text}");
    }

    #[test]
    fn the_memory_is_bounded() {
        let limit = PathRateLimit::new(Duration::from_secs(60));
        let now = Instant::now();
        let place = tracing::callsite::Identifier(&CALLSITE);
        for i in 0..(MAX_REMEMBERED * 3) {
            assert!(limit.admit(place.clone(), format!("/p{i}"), now));
        }
        assert!(limit.last.lock().unwrap().len() <= MAX_REMEMBERED);
    }

    struct Site;
    static CALLSITE: Site = Site;
    impl tracing::callsite::Callsite for Site {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &tracing::Metadata<'_> {
            unreachable!()
        }
    }
}
