//! The `cri` format: what containerd and CRI-O write to `/var/log/pods/*/*/*.log`, one line per
//! piece: `<RFC 3339 time> <stdout|stderr> <tags> <message>`. The first tag is `F` (the piece
//! ends a message) or `P` (more pieces follow); further `:`-separated tags are ignored.
//!
//! Mapping: the time → event time, `stdout`/`stderr` → `stream`, `P` → `partial`, the rest of
//! the line (possibly empty) → message, borrowed. No level and no fields: the runtime does not
//! know them; run a second parser on the joined message if the application logs JSON or logfmt.
//! Split messages are joined by `join::CriJoiner`.
//!
//! A line is rejected when its time is not RFC 3339, its stream is neither `stdout` nor
//! `stderr`, or its first tag is neither `F` nor `P`.

use std::borrow::Cow;

use super::parsed::{ParseError, Parsed, Stream};
use super::timestamp;

const FORMAT: &str = "cri";

/// Parses one line into a fresh record.
pub fn parse(line: &str) -> Result<Parsed<'_>, ParseError> {
    let mut out = Parsed::default();
    parse_into(line, &mut out)?;
    Ok(out)
}

/// Parses one line (without its ending) into `out`, clearing it first.
pub fn parse_into<'a>(line: &'a str, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    out.clear();
    let b = line.as_bytes();
    let (time, mut i) = timestamp::rfc3339_prefix(b).ok_or(ParseError::new(FORMAT, "expected an RFC 3339 time", 0))?;
    if b.get(i) != Some(&b' ') {
        return Err(ParseError::new(FORMAT, "expected a space after the time", i));
    }
    i += 1;
    let stream = match b.get(i..i + 7) {
        Some(b"stdout ") => Stream::Stdout,
        Some(b"stderr ") => Stream::Stderr,
        _ => return Err(ParseError::new(FORMAT, "expected `stdout` or `stderr`", i)),
    };
    i += 7;
    let tag_end = memchr::memchr(b' ', &b[i..]).map_or(b.len(), |k| i + k);
    let first_tag = b[i..tag_end].split(|&c| c == b':').next().unwrap_or(b"");
    let partial = match first_tag {
        b"F" => false,
        b"P" => true,
        _ => return Err(ParseError::new(FORMAT, "expected the tag `F` or `P`", i)),
    };
    out.timestamp_ns = Some(time);
    out.stream = Some(stream);
    out.partial = partial;
    out.message = Cow::Borrowed(line.get(tag_end + 1..).unwrap_or(""));
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::adapt::join::CriJoiner;

    const T: i64 = 1_795_614_680_123_456_789;

    #[test]
    fn parses_the_four_parts() {
        let p = parse("2026-11-25T13:51:20.123456789Z stdout F hello world").unwrap();
        assert_eq!(p.timestamp_ns, Some(T));
        assert_eq!(p.stream, Some(Stream::Stdout));
        assert!(!p.partial);
        assert!(matches!(p.message, Cow::Borrowed("hello world")));
        let p = parse("2026-11-25T14:51:20.123456789+01:00 stderr P part:").unwrap();
        assert_eq!(
            (p.timestamp_ns, p.stream, p.partial),
            (Some(T), Some(Stream::Stderr), true)
        );
        assert_eq!(p.message, "part:");
    }

    #[test]
    fn empty_messages_and_extra_tags() {
        assert_eq!(parse("2026-11-25T13:51:20Z stdout F ").unwrap().message, "");
        assert_eq!(parse("2026-11-25T13:51:20Z stdout F").unwrap().message, "");
        assert_eq!(
            parse("2026-11-25T13:51:20Z stdout F  two spaces").unwrap().message,
            " two spaces"
        );
        assert!(parse("2026-11-25T13:51:20Z stdout P:x msg").unwrap().partial);
    }

    #[test]
    fn rejects() {
        for (line, reason) in [
            ("", "expected an RFC 3339 time"),
            ("hello", "expected an RFC 3339 time"),
            ("2026-11-25T13:51:20Zstdout F x", "expected a space after the time"),
            ("2026-11-25T13:51:20Z stdin F x", "expected `stdout` or `stderr`"),
            ("2026-11-25T13:51:20Z stdout X x", "expected the tag `F` or `P`"),
            ("2026-11-25T13:51:20Z stdout  F x", "expected the tag `F` or `P`"),
        ] {
            assert_eq!(parse(line).unwrap_err().reason, reason, "{line:?}");
        }
    }

    fn joined(lines: &[&str], max: usize) -> Vec<(Option<Stream>, String, bool, bool)> {
        let mut j = CriJoiner::new(max);
        let mut out = Vec::new();
        for l in lines {
            if let Some(r) = j.push(parse(l).unwrap()) {
                out.push((r.stream, r.message.into_owned(), r.partial, r.truncated));
            }
        }
        for r in j.flush() {
            out.push((r.stream, r.message.into_owned(), r.partial, r.truncated));
        }
        out
    }

    #[test]
    fn joins_per_stream_and_keeps_the_first_time() {
        let lines = [
            "2026-11-25T13:51:20Z stdout P abc",
            "2026-11-25T13:51:21Z stderr F err line",
            "2026-11-25T13:51:22Z stdout P def",
            "2026-11-25T13:51:23Z stdout F ghi",
            "2026-11-25T13:51:24Z stderr P cut at eof",
        ];
        assert_eq!(
            joined(&lines, 100),
            vec![
                (Some(Stream::Stderr), "err line".into(), false, false),
                (Some(Stream::Stdout), "abcdefghi".into(), false, false),
                (Some(Stream::Stderr), "cut at eof".into(), true, false),
            ]
        );
        let mut j = CriJoiner::new(100);
        assert!(j.push(parse(lines[0]).unwrap()).is_none());
        assert!(j.is_pending());
        let r = j.push(parse(lines[3]).unwrap()).unwrap();
        assert_eq!(r.timestamp_ns, Some(1_795_614_680_000_000_000));
    }

    #[test]
    fn caps_joined_messages_at_a_char_boundary() {
        let lines = [
            "2026-11-25T13:51:20Z stdout P aaaä",
            "2026-11-25T13:51:20Z stdout P bbb",
            "2026-11-25T13:51:20Z stdout F c",
        ];
        assert_eq!(
            joined(&lines, 4),
            vec![(Some(Stream::Stdout), "aaa".into(), false, true)]
        );
        assert_eq!(
            joined(&lines, 5),
            vec![(Some(Stream::Stdout), "aaaä".into(), false, true)]
        );
        assert_eq!(
            joined(&lines, 9),
            vec![(Some(Stream::Stdout), "aaaäbbbc".into(), false, false)]
        );
    }

    /// Writes `messages` as CRI lines, each cut into pieces at the given byte positions, as a
    /// file image; then reads it back cut into read chunks at `chunk_cuts`, assembling lines
    /// across chunks the way the tailer does, and joins.
    fn round_trip(messages: &[(bool, String)], piece: usize, chunk_cuts: &[usize]) -> Vec<(Option<Stream>, String)> {
        let mut file = String::new();
        for (stderr, m) in messages {
            let stream = if *stderr { "stderr" } else { "stdout" };
            let chars: Vec<char> = m.chars().collect();
            let pieces: Vec<String> = chars.chunks(piece.max(1)).map(|c| c.iter().collect()).collect();
            if pieces.is_empty() {
                file.push_str(&format!("2026-11-25T13:51:20Z {stream} F \n"));
            }
            for (k, p) in pieces.iter().enumerate() {
                let tag = if k + 1 == pieces.len() { "F" } else { "P" };
                file.push_str(&format!("2026-11-25T13:51:20Z {stream} {tag} {p}\n"));
            }
        }
        let bytes = file.as_bytes();
        let mut cuts: Vec<usize> = chunk_cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let mut joiner = CriJoiner::new(usize::MAX);
        let mut carry = Vec::new();
        let mut out = Vec::new();
        let mut prev = 0;
        for cut in cuts {
            carry.extend_from_slice(&bytes[prev..cut]);
            prev = cut;
            while let Some(nl) = carry.iter().position(|&c| c == b'\n') {
                let line: Vec<u8> = carry.drain(..=nl).collect();
                let line = std::str::from_utf8(&line[..nl]).unwrap();
                if let Some(r) = joiner.push(parse(line).unwrap()) {
                    out.push((r.stream, r.message.into_owned()));
                }
            }
        }
        assert!(carry.is_empty() && !joiner.is_pending());
        out
    }

    #[test]
    fn p_pieces_split_across_read_chunks() {
        // A three-piece stdout message interleaved with stderr, the file cut into read chunks
        // in the middle of a P line's time, its tag and its message.
        let messages = [
            (false, "0123456789abcdefghij".to_owned()),
            (true, "err".to_owned()),
            (false, "x".to_owned()),
        ];
        let want = vec![
            (Some(Stream::Stdout), "0123456789abcdefghij".to_owned()),
            (Some(Stream::Stderr), "err".to_owned()),
            (Some(Stream::Stdout), "x".to_owned()),
        ];
        assert_eq!(round_trip(&messages, 7, &[10, 31, 33, 40, 41]), want);
        assert_eq!(round_trip(&messages, 7, &[]), want);
        assert_eq!(round_trip(&messages, 7, &(0..200).collect::<Vec<_>>()), want);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_near_the_format(s in "2026-11-25T13:51:20(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:[0-9]{2})? (stdout|stderr|x) [FPx:]{0,3}( .{0,10})?") {
            let _ = parse(&s);
        }

        #[test]
        fn joining_ignores_piece_and_chunk_boundaries(
            messages in proptest::collection::vec((any::<bool>(), "[^\\n\\r]{0,60}"), 0..8),
            piece in 1usize..20,
            chunk_cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            // Per stream, the joined messages are the written ones in order.
            let got = round_trip(&messages, piece, &chunk_cuts);
            for stderr in [false, true] {
                let stream = Some(if stderr { Stream::Stderr } else { Stream::Stdout });
                let want: Vec<&String> = messages.iter().filter(|m| m.0 == stderr).map(|m| &m.1).collect();
                let have: Vec<&String> = got.iter().filter(|g| g.0 == stream).map(|g| &g.1).collect();
                prop_assert_eq!(want, have);
            }
        }
    }
}
