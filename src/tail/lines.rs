//! Splits a file's read buffer into runs of whole lines for the tailer, and cuts lines longer
//! than `max_line_bytes` into marked pieces so that no line can grow the buffer without bound.
//!
//! Every run handed out is `BytesMut::split_to(..).freeze()` of the read buffer, never a copy.
//! The splitter remembers how much of the pending partial line it has already searched for a
//! newline, so a long line that arrives in many small reads costs O(its length), not O(n²).

use bytes::{Bytes, BytesMut};

/// A run of bytes split off the front of the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Whole lines each ending in `\n`; or a piece of an over-long line (`tail_truncated`); or
    /// a flushed partial line without its `\n`.
    pub data: Bytes,
    /// The first line of `data` continues the piece handed out just before it.
    pub head_continues: bool,
    /// `data` is a piece of an over-long line with no `\n`; the line continues in the next split.
    pub tail_truncated: bool,
}

/// The line-splitting state of one open file.
#[derive(Debug)]
pub struct LineSplitter {
    max_line_bytes: usize,
    /// The front of the buffer continues a line that was already cut into pieces.
    in_long_line: bool,
    /// `buf[..scanned]` is known to hold no `\n`; the next search starts there.
    scanned: usize,
}

impl LineSplitter {
    /// `max_line_bytes` is the longest line (without its `\n`) handed out whole; at least 1.
    pub fn new(max_line_bytes: usize) -> Self {
        LineSplitter {
            max_line_bytes: max_line_bytes.max(1),
            in_long_line: false,
            scanned: 0,
        }
    }

    /// Splits what can be handed on off the front of `buf`, after the caller appended freshly
    /// read bytes to it (`buf` starts with the pending partial line, if any).
    ///
    /// Pushes onto `out`, in order: the pieces of an over-long front line (each at most
    /// `max_line_bytes`, cut back to a UTF-8 character boundary when one is within 3 bytes),
    /// then every complete line up to the last `\n` as one split. The partial last line stays in
    /// `buf`.
    ///
    /// The caller appends at most `max_line_bytes` between two calls. Then only the front line
    /// can be too long: everything after its end arrived in the last append.
    pub fn split(&mut self, buf: &mut BytesMut, out: &mut Vec<Split>) {
        let max = self.max_line_bytes;
        let first_newline = loop {
            // The front line fits iff a `\n` is within its first `max + 1` bytes, so the search
            // never needs to look further than that.
            let limit = buf.len().min(max + 1);
            let from = self.scanned.min(limit);
            if let Some(i) = memchr::memchr(b'\n', &buf[from..limit]) {
                break from + i;
            }
            self.scanned = limit;
            if buf.len() <= max {
                return;
            }
            let cut = char_boundary_before(buf, max);
            out.push(Split {
                data: buf.split_to(cut).freeze(),
                head_continues: self.in_long_line,
                tail_truncated: true,
            });
            self.in_long_line = true;
            self.scanned -= cut;
        };
        let last_newline = first_newline + memchr::memrchr(b'\n', &buf[first_newline..]).expect("a newline was found");
        out.push(Split {
            data: buf.split_to(last_newline + 1).freeze(),
            head_continues: self.in_long_line,
            tail_truncated: false,
        });
        self.in_long_line = false;
        // What is left follows the last newline, so it has none.
        self.scanned = buf.len();
    }

    /// Hands out the pending partial line as an unterminated line (partial-line timeout,
    /// rotation, shutdown); `None` when nothing is pending.
    pub fn flush(&mut self, buf: &mut BytesMut) -> Option<Split> {
        if buf.is_empty() {
            return None;
        }
        // `take`, not `split`: an emptied `BytesMut` still holds its allocation, which the
        // split-off bytes share, so it would pin it past their delivery.
        let split = Split {
            data: std::mem::take(buf).freeze(),
            head_continues: self.in_long_line,
            tail_truncated: false,
        };
        self.reset();
        Some(split)
    }

    /// Hands out the pending partial line as a piece of a line that goes on (`tail_truncated`;
    /// the next split continues it), to free the memory it holds; `None` when nothing is
    /// pending.
    pub fn cut(&mut self, buf: &mut BytesMut) -> Option<Split> {
        if buf.is_empty() {
            return None;
        }
        let split = Split {
            data: std::mem::take(buf).freeze(),
            head_continues: self.in_long_line,
            tail_truncated: true,
        };
        self.in_long_line = true;
        self.scanned = 0;
        Some(split)
    }

    /// Whether nothing of a line is pending in the splitter itself (not in the middle of an
    /// over-long line), so the file can be closed and reopened at its offset.
    pub fn is_idle(&self) -> bool {
        !self.in_long_line
    }

    /// Forgets everything about the buffer (the caller replaced it, e.g. after a truncation).
    pub fn reset(&mut self) {
        self.in_long_line = false;
        self.scanned = 0;
    }
}

/// Where to cut `buf` at or just before `max` so that a UTF-8 sequence is not split: `max`
/// moved back over at most 3 continuation bytes. Bytes that are not UTF-8 get no such care,
/// and a piece is never empty.
fn char_boundary_before(buf: &[u8], max: usize) -> usize {
    let is_continuation = |b: u8| b & 0xC0 == 0x80;
    (max.saturating_sub(3).max(1)..=max)
        .rev()
        .find(|&cut| !is_continuation(buf[cut]))
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Feeds `input` in appends of `sizes` (cycled; each at most `max`), then flushes.
    fn run(input: &[u8], sizes: &[usize], max: usize) -> Vec<Split> {
        let mut splitter = LineSplitter::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < input.len() {
            let n = sizes[i % sizes.len()].clamp(1, max).min(input.len() - at);
            buf.extend_from_slice(&input[at..at + n]);
            splitter.split(&mut buf, &mut out);
            at += n;
            i += 1;
        }
        out.extend(splitter.flush(&mut buf));
        assert!(buf.is_empty());
        out
    }

    /// The naive oracle: the segments (lines and pieces) the splitter must produce, with
    /// whether each one ends its line.
    fn oracle(input: &[u8], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut segments = Vec::new();
        let mut lines: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
        let unterminated = lines.pop().unwrap();
        for (line, terminated) in lines.into_iter().map(|l| (l, true)).chain([(unterminated, false)]) {
            let mut rest = line;
            while rest.len() > max {
                let cut = (max.saturating_sub(3).max(1)..=max)
                    .rev()
                    .find(|&c| rest[c] & 0xC0 != 0x80)
                    .unwrap_or(max);
                segments.push((rest[..cut].to_vec(), false));
                rest = &rest[cut..];
            }
            if terminated {
                let mut l = rest.to_vec();
                l.push(b'\n');
                segments.push((l, true));
            } else if !rest.is_empty() {
                segments.push((rest.to_vec(), true));
            }
        }
        segments
    }

    /// The segments of the splitter's output, checking the flags as it goes.
    fn segments(splits: &[Split], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut segments = Vec::new();
        let mut previous_truncated = false;
        for (n, s) in splits.iter().enumerate() {
            assert!(!s.data.is_empty(), "split {n} is empty");
            assert_eq!(s.head_continues, previous_truncated, "split {n}: head_continues");
            if s.tail_truncated {
                assert!(!s.data.contains(&b'\n'), "split {n}: a piece holds a newline");
                let len = s.data.len();
                assert!(
                    len <= max && len >= max.saturating_sub(3).max(1),
                    "split {n}: piece of {len} bytes"
                );
                segments.push((s.data.to_vec(), false));
            } else {
                let last = n == splits.len() - 1;
                assert!(
                    s.data.ends_with(b"\n") || last,
                    "split {n}: unterminated before the end"
                );
                for line in s.data.split_inclusive(|b| *b == b'\n') {
                    let content = line.len() - line.ends_with(b"\n") as usize;
                    assert!(content <= max, "split {n}: line of {content} bytes");
                    segments.push((line.to_vec(), true));
                }
            }
            previous_truncated = s.tail_truncated;
        }
        segments
    }

    #[test]
    fn whole_lines_go_out_as_one_split_and_the_partial_waits() {
        let mut s = LineSplitter::new(16);
        let mut buf = BytesMut::from(&b"one\ntwo\nthr"[..]);
        let mut out = Vec::new();
        s.split(&mut buf, &mut out);
        assert_eq!(
            out,
            vec![Split {
                data: Bytes::from_static(b"one\ntwo\n"),
                head_continues: false,
                tail_truncated: false
            }]
        );
        assert_eq!(&buf[..], b"thr");
        out.clear();
        buf.extend_from_slice(b"ee");
        s.split(&mut buf, &mut out);
        assert!(out.is_empty());
        assert_eq!(s.flush(&mut buf).unwrap().data, Bytes::from_static(b"three"));
        assert_eq!(s.flush(&mut buf), None);
    }

    #[test]
    fn long_line_is_cut_into_marked_pieces() {
        let mut s = LineSplitter::new(4);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for part in [&b"abcd"[..], b"efgh", b"ij\nk"] {
            buf.extend_from_slice(part);
            s.split(&mut buf, &mut out);
        }
        let got: Vec<_> = out
            .iter()
            .map(|s| (&s.data[..], s.head_continues, s.tail_truncated))
            .collect();
        assert_eq!(
            got,
            vec![
                (&b"abcd"[..], false, true),
                (b"efgh", true, true),
                (b"ij\n", true, false)
            ]
        );
        assert_eq!(&buf[..], b"k");
    }

    #[test]
    fn line_of_exactly_max_bytes_is_not_cut() {
        assert_eq!(run(b"abcd\nefgh", &[4], 4).len(), 2);
        assert!(run(b"abcd\nefgh", &[1], 4).iter().all(|s| !s.tail_truncated));
    }

    #[test]
    fn cut_moves_back_to_a_utf8_boundary() {
        // "ab€" is 5 bytes; a cut at 4 would split the euro sign.
        let out = run("ab€cd\n".as_bytes(), &[5], 4);
        assert_eq!(&out[0].data[..], b"ab");
        assert!(out.iter().all(|s| std::str::from_utf8(&s.data).is_ok()));
    }

    #[test]
    fn flush_of_a_piece_tail_continues_it() {
        let out = run(b"abcdefg", &[4], 4);
        let got: Vec<_> = out
            .iter()
            .map(|s| (&s.data[..], s.head_continues, s.tail_truncated))
            .collect();
        assert_eq!(got, vec![(&b"abcd"[..], false, true), (b"efg", true, false)]);
    }

    #[test]
    fn growing_partial_line_is_not_rescanned() {
        // 1 MiB limit, a 900 KiB line in 1-byte appends: quadratic rescanning would take
        // minutes; this finishes at once.
        let mut s = LineSplitter::new(1 << 20);
        let mut buf = BytesMut::with_capacity(1 << 20);
        let mut out = Vec::new();
        for _ in 0..900 << 10 {
            buf.extend_from_slice(b"x");
            s.split(&mut buf, &mut out);
        }
        buf.extend_from_slice(b"\n");
        s.split(&mut buf, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data.len(), (900 << 10) + 1);
    }

    #[test]
    fn reset_forgets_a_long_line() {
        let mut s = LineSplitter::new(4);
        let mut buf = BytesMut::from(&b"abcdef"[..]);
        let mut out = Vec::new();
        s.split(&mut buf, &mut out);
        s.reset();
        let mut buf = BytesMut::from(&b"xy\n"[..]);
        out.clear();
        s.split(&mut buf, &mut out);
        assert!(!out[0].head_continues);
    }

    fn input_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![units(2), units(0)]
    }

    /// Newlines and multibyte characters often enough to matter, plus any byte at all; with
    /// `newline_weight` 0, newlines come only from `any::<u8>()`, so lines are long.
    fn units(newline_weight: u32) -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => Just(b"a".to_vec()),
            newline_weight => Just(b"\n".to_vec()),
            1 => Just("é".as_bytes().to_vec()),
            1 => Just("€".as_bytes().to_vec()),
            1 => Just("😀".as_bytes().to_vec()),
            1 => any::<u8>().prop_map(|b| vec![b]),
        ];
        proptest::collection::vec(byte, 0..400).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn matches_the_oracle_for_any_chunking(
            input in input_strategy(),
            max in 4usize..64,
            sizes in proptest::collection::vec(1usize..64, 1..8),
        ) {
            let out = run(&input, &sizes, max);
            let joined: Vec<u8> = out.iter().flat_map(|s| s.data.iter().copied()).collect();
            prop_assert_eq!(&joined, &input);
            prop_assert_eq!(segments(&out, max), oracle(&input, max));
        }

        #[test]
        fn valid_utf8_stays_valid_in_every_split(
            input in ".{0,200}",
            max in 4usize..32,
            sizes in proptest::collection::vec(1usize..32, 1..8),
        ) {
            for s in run(input.as_bytes(), &sizes, max) {
                prop_assert!(std::str::from_utf8(&s.data).is_ok());
            }
        }

        #[test]
        fn tiny_limits_still_make_progress(input in input_strategy(), max in 1usize..4) {
            let out = run(&input, &[1, 3, 2], max);
            let joined: Vec<u8> = out.iter().flat_map(|s| s.data.iter().copied()).collect();
            prop_assert_eq!(&joined, &input);
            prop_assert_eq!(segments(&out, max), oracle(&input, max));
        }
    }
}
