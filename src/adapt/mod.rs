//! The adapter stage: turns one line of a source's own format into the parts of the normalized
//! record (event time, level, message, extra fields). The encoders in `ship::encode` call it per
//! line inside a chunk and write its output straight into the wire format.
//!
//! Shared vocabulary lives here: the per-source `Format` and the normalized severity `Level`,
//! with the spellings applications use for it.

pub mod access;
pub mod assemble;
#[cfg(test)]
mod corpus_tests;
pub mod cri;
pub mod detect;
pub mod docker;
pub mod join;
pub mod json;
pub mod k8s_path;
pub mod klog;
pub mod logfmt;
pub mod multiline;
pub mod parsed;
pub mod regex;
pub mod syslog;
pub mod timestamp;

pub use parsed::{Field, FieldValue, ParseError, Parsed, Stream};

pub use crate::config::Format;

/// Normalized severity of a record, as ARCHITECTURE.md's record table spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    /// The record's spelling: `trace`, `debug`, `info`, `warn`, `error`, `fatal`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
}

/// The level a logged severity name stands for, case-insensitively; `None` for names we do not
/// know (the adapter then keeps the value as a plain field rather than guess).
///
/// Syslog's `notice` counts as `info` and its `crit`/`alert`/`emerg` as `fatal`; Go's `panic`
/// and the one-letter forms of klog/glog (`I`, `W`, `E`, `F`) are included, as is Android's
/// `V`/`verbose` (its level below debug, so `trace`).
pub fn normalize_level(s: &str) -> Option<Level> {
    // Lower-case into a stack buffer: this runs once per record, and the longest name we know
    // ("informational") is 13 bytes, so anything longer is not a level.
    let mut buf = [0u8; 13];
    let bytes = s.as_bytes();
    if bytes.is_empty() || bytes.len() > buf.len() {
        return None;
    }
    let lower = &mut buf[..bytes.len()];
    lower.copy_from_slice(bytes);
    lower.make_ascii_lowercase();
    Some(match &*lower {
        b"trace" | b"trc" | b"verbose" | b"v" => Level::Trace,
        b"debug" | b"dbg" | b"d" => Level::Debug,
        b"info" | b"information" | b"informational" | b"notice" | b"i" => Level::Info,
        b"warn" | b"warning" | b"w" => Level::Warn,
        b"error" | b"err" | b"e" => Level::Error,
        b"fatal" | b"crit" | b"critical" | b"alert" | b"emerg" | b"emergency" | b"panic" | b"f" => Level::Fatal,
        _ => return None,
    })
}

/// The level of a numeric severity as bunyan and pino write it: 10 trace, 20 debug, 30 info,
/// 40 warn, 50 error, 60 fatal. A value between two steps (pino's custom levels) takes the
/// step below it; above 60 is fatal; below 10 is not a level we can place.
pub fn level_from_number(n: i64) -> Option<Level> {
    Some(match n {
        i64::MIN..=9 => return None,
        10..=19 => Level::Trace,
        20..=29 => Level::Debug,
        30..=39 => Level::Info,
        40..=49 => Level::Warn,
        50..=59 => Level::Error,
        _ => Level::Fatal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names_normalize_case_insensitively() {
        let cases = [
            ("TRACE", Level::Trace),
            ("trc", Level::Trace),
            ("Debug", Level::Debug),
            ("DBG", Level::Debug),
            ("d", Level::Debug),
            ("info", Level::Info),
            ("Information", Level::Info),
            ("INFORMATIONAL", Level::Info),
            ("notice", Level::Info),
            ("I", Level::Info),
            ("WARN", Level::Warn),
            ("warning", Level::Warn),
            ("w", Level::Warn),
            ("error", Level::Error),
            ("ERR", Level::Error),
            ("e", Level::Error),
            ("fatal", Level::Fatal),
            ("CRIT", Level::Fatal),
            ("critical", Level::Fatal),
            ("alert", Level::Fatal),
            ("emerg", Level::Fatal),
            ("Emergency", Level::Fatal),
            ("panic", Level::Fatal),
            ("F", Level::Fatal),
        ];
        for (name, level) in cases {
            assert_eq!(normalize_level(name), Some(level), "{name}");
        }
        assert_eq!(normalize_level("V"), Some(Level::Trace));
        assert_eq!(normalize_level("Verbose"), Some(Level::Trace));
        for name in ["", "verbosely", "informationall", " info", "warn ", "ïnfo"] {
            assert_eq!(normalize_level(name), None, "{name:?}");
        }
    }

    #[test]
    fn level_names_are_the_record_spelling() {
        let all = [
            Level::Trace,
            Level::Debug,
            Level::Info,
            Level::Warn,
            Level::Error,
            Level::Fatal,
        ];
        for level in all {
            assert_eq!(normalize_level(level.as_str()), Some(level));
        }
    }

    #[test]
    fn bunyan_and_pino_numbers() {
        assert_eq!(level_from_number(10), Some(Level::Trace));
        assert_eq!(level_from_number(20), Some(Level::Debug));
        assert_eq!(level_from_number(30), Some(Level::Info));
        assert_eq!(level_from_number(35), Some(Level::Info));
        assert_eq!(level_from_number(40), Some(Level::Warn));
        assert_eq!(level_from_number(50), Some(Level::Error));
        assert_eq!(level_from_number(60), Some(Level::Fatal));
        assert_eq!(level_from_number(100), Some(Level::Fatal));
        assert_eq!(level_from_number(3), None);
        assert_eq!(level_from_number(-30), None);
    }
}
