//! The entry points of the fuzz targets: what each target of `fuzz/` does with its input,
//! here in the library so that the property tests below drive the very same code on every
//! `cargo test` (bounded case counts), while `fuzz/` runs it under libFuzzer for as long as one
//! likes (`fuzz/README.md`). Each takes arbitrary bytes, as the app next door may write them,
//! and fails only by a panic: a parser's error is a normal outcome, a broken invariant (a
//! joined line lost or invented, a capped message over its cap) is asserted.
//!
//! Not part of the agent: nothing else in the library calls these.

use std::path::Path;

use crate::adapt::detect::detect;
use crate::adapt::join::{CriJoiner, DockerJoiner};
use crate::adapt::multiline::{MultilineJoiner, Rule};
use crate::adapt::regex::RegexParser;
use crate::adapt::{access, cri, docker, klog, logfmt, syslog, timestamp, Parsed};

/// The "now" of the formats whose times have no year (2026-11-25).
const NOW_NS: i64 = 1_795_614_680_000_000_000;

/// Splits the first 8 bytes off as "now" (little-endian nanoseconds) when there are 8: the
/// year-less formats read their time relative to it.
fn now_and_rest(data: &[u8]) -> (i64, &[u8]) {
    match data.split_first_chunk::<8>() {
        Some((now, rest)) => (i64::from_le_bytes(*now), rest),
        None => (0, data),
    }
}

pub fn logfmt(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    if let Ok(p) = logfmt::parse(&line) {
        let _ = p.message.len();
    }
    let mut out = Parsed::default();
    let _ = logfmt::parse_into_with(&line, true, &mut out);
}

/// CRI lines through the parser and a joiner with a small cap, so that truncation at a
/// character boundary is exercised too.
pub fn cri(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut joiner = CriJoiner::new(64);
    for line in text.split('\n') {
        if let Ok(p) = cri::parse(line) {
            if let Some(r) = joiner.push(p) {
                assert!(r.message.len() <= 64 || !r.truncated);
            }
        }
    }
    for r in joiner.flush() {
        assert!(r.partial && r.message.len() <= 64);
    }
}

pub fn docker(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut joiner = DockerJoiner::new(64);
    for line in text.split('\n') {
        if let Ok(p) = docker::parse(line) {
            let _ = joiner.push(p);
        }
    }
    let _ = joiner.flush();
}

pub fn syslog(data: &[u8]) {
    let (now, rest) = now_and_rest(data);
    let line = String::from_utf8_lossy(rest);
    let _ = syslog::parse(&line, now);
    let _ = syslog::parse_strict(&line, now);
}

/// A syslog message as the syslog input writes it to the spool: always one line of one JSON
/// object, whatever the bytes.
pub fn syslog_input(data: &[u8]) {
    let (now, rest) = now_and_rest(data);
    let mut lines = crate::input::syslog_lines::Lines::default();
    let origin = crate::input::syslog_lines::Origin {
        peer: std::net::SocketAddr::from(([127, 0, 0, 1], 5140)),
        transport: "udp",
    };
    lines.push(rest, origin, now, 1 << 20);
    assert_eq!(lines.count, 1);
    let line = lines.bytes.strip_suffix(b"\n").expect("a whole line");
    assert!(!line.contains(&b'\n'), "one line");
    let v: serde_json::Value = serde_json::from_slice(line).expect("JSON");
    assert!(v.is_object());
}

/// A body of the http input: refused, or every line written is one JSON object.
pub fn http_input(data: &[u8]) {
    if let Ok(lines) = crate::input::http_lines::to_lines(data, 1 << 20) {
        let text = std::str::from_utf8(&lines.bytes).expect("UTF-8 lines");
        assert_eq!(text.lines().count() as u64, lines.count);
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
            assert!(v.is_object());
        }
    }
}

pub fn access(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let _ = access::parse_combined(&line);
    let _ = access::parse_common(&line);
    let mut out = Parsed::default();
    let _ = access::parse_into_with(&line, access::Variant::Combined, true, &mut out);
}

pub fn klog(data: &[u8]) {
    let (now, rest) = now_and_rest(data);
    let _ = klog::parse(&String::from_utf8_lossy(rest), now);
}

/// Input: a pattern, a NUL, an optional `timestamp_format`, a NUL, then lines.
pub fn regex(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let pattern = parts.next().unwrap_or("");
    let format = parts.next().filter(|f| !f.is_empty());
    let lines = parts.next().unwrap_or("");
    if pattern.len() > 200 {
        // Compiling is the regex crate's work; the parser around it is under test.
        return;
    }
    let Ok(p) = RegexParser::new(pattern, format) else {
        return;
    };
    for line in lines.split('\n') {
        let _ = p.parse(line, NOW_NS);
    }
}

/// Every preset over the lines, with small limits and a `cut` every 7th line: the events
/// hold every line once, in order, and nothing else.
pub fn multiline(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let input: Vec<&str> = text.split('\n').collect();
    for preset in ["java", "python", "go"] {
        let mut j = MultilineJoiner::new(Rule::preset(preset).expect("presets compile"), 4, 40);
        let mut out = Vec::new();
        for (i, line) in input.iter().enumerate() {
            out.extend(j.push(line));
            if i % 7 == 6 {
                out.extend(j.cut());
            }
        }
        out.extend(j.flush());
        let rejoined: Vec<&str> = out.iter().flat_map(|e| e.text.split('\n')).collect();
        assert_eq!(rejoined, input);
    }
}

pub fn detect_format(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').collect();
    let d = detect(&lines, NOW_NS);
    assert!(d.matched <= d.sampled);
}

pub fn timestamps(data: &[u8]) {
    let (now, rest) = now_and_rest(data);
    let s = String::from_utf8_lossy(rest);
    let _ = timestamp::parse_any(&s);
    let _ = timestamp::rfc3164_prefix(s.as_bytes(), now);
    let _ = timestamp::apache(&s);
    let _ = timestamp::log4j(&s);
    if let Ok(layout) = timestamp::Layout::new("%m-%d %H:%M:%S%.3f") {
        let _ = layout.parse(&s, now);
    }
    // Chrono layouts: a weekday to check against the date, an offset without a year.
    for format in ["%a %b %d %H:%M:%S %Y", "%b %d %H:%M:%S %z"] {
        if let Ok(layout) = timestamp::Layout::new(format) {
            let _ = layout.parse_noting(&s, now);
        }
    }
}

/// `data_dir/checkpoints.json` holding `data` (`data_dir` is made empty first, and removed
/// after): loading it never panics nor fails a writable `data_dir`; an unusable file is moved
/// aside (a second load finds none), and what loads survives a store and a second load
/// unchanged.
pub fn checkpoint(data_dir: &Path, data: &[u8]) {
    let _ = std::fs::remove_dir_all(data_dir);
    std::fs::create_dir_all(data_dir).expect("makes the scratch data_dir");
    std::fs::write(data_dir.join(crate::checkpoint::FILE_NAME), data).expect("writes the checkpoint");
    let entries = crate::checkpoint::load(data_dir)
        .expect("a writable data_dir loads")
        .expect("a file was there");
    if entries.is_empty() {
        let again = crate::checkpoint::load(data_dir).expect("loads");
        assert!(again.is_none() || again == Some(Vec::new()), "{again:?}");
    } else {
        crate::checkpoint::store(data_dir, &entries, false).expect("stores");
        assert_eq!(crate::checkpoint::load(data_dir).expect("loads"), Some(entries));
    }
    let _ = std::fs::remove_dir_all(data_dir);
}

#[cfg(test)]
mod tests;
