//! JSON string escaping for the encoders' hot path.
//!
//! Almost every byte of a log line needs no escaping, so the cost that matters is finding the
//! rare one that does (`"`, `\`, a control byte). The scan looks at sixteen bytes at a time
//! with SSE2 compares (through the safe `wide` types), the tail with word arithmetic, and copies
//! each clean run with one `extend_from_slice`; the per-byte work happens only at the bytes
//! that are actually escaped.

use wide::u8x16;

/// Eight copies of a byte value spread over a word.
const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101 * b as u64
}

const ONES: u64 = splat(0x01);
const HIGHS: u64 = splat(0x80);

/// A mask whose lowest set bit (`0x80` of some byte) marks the first byte of `w` (read
/// little-endian) that needs escaping; zero when none does.
///
/// Each term is the classic "has a byte below n" test. Borrows only travel upward, so a term can
/// have false positives, but only in bytes above a true one: the lowest set bit is exact, which
/// is all the callers use.
#[inline(always)]
fn special_mask(w: u64) -> u64 {
    let control = w.wrapping_sub(splat(0x20)) & !w;
    let q = w ^ splat(b'"');
    let quote = q.wrapping_sub(ONES) & !q;
    let b = w ^ splat(b'\\');
    let backslash = b.wrapping_sub(ONES) & !b;
    (control | quote | backslash) & HIGHS
}

#[inline(always)]
fn word_at(s: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[i..i + 8]);
    u64::from_le_bytes(w)
}

/// Index of the first byte at or after `from` that needs escaping, or `s.len()`.
#[inline]
fn find_special(s: &[u8], mut i: usize) -> usize {
    // Sixteen bytes a step with SSE2 (`wide`): `"`, `\\` and bytes below 0x20 (those the
    // unsigned minimum with 0x1F leaves unchanged), as one bit per byte.
    let quote = u8x16::splat(b'"');
    let backslash = u8x16::splat(b'\\');
    let control = u8x16::splat(0x1f);
    while i + 16 <= s.len() {
        let mut a = [0u8; 16];
        a.copy_from_slice(&s[i..i + 16]);
        let v = u8x16::new(a);
        let hit = v.simd_eq(quote) | v.simd_eq(backslash) | v.min(control).simd_eq(v);
        let mask = hit.to_bitmask();
        if mask != 0 {
            return i + mask.trailing_zeros() as usize;
        }
        i += 16;
    }
    while i + 8 <= s.len() {
        let m = special_mask(word_at(s, i));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < s.len() {
        if needs_escape(s[i]) {
            return i;
        }
        i += 1;
    }
    i
}

#[inline(always)]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The short escape letter of each control byte, 0 where JSON has none (`\u00XX` is used).
const SHORT: [u8; 32] = {
    let mut t = [0u8; 32];
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t
};

#[inline]
fn write_escape(out: &mut Vec<u8>, b: u8) {
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        _ => {
            let short = SHORT[b as usize];
            if short != 0 {
                out.extend_from_slice(&[b'\\', short]);
            } else {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
            }
        }
    }
}

/// Appends `s` escaped as the content of a JSON string (no surrounding quotes).
///
/// `s` must be valid UTF-8: bytes at and above 0x80 are copied unchanged.
#[inline]
pub fn escape_into(out: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    loop {
        let at = find_special(s, start);
        out.extend_from_slice(&s[start..at]);
        if at == s.len() {
            return;
        }
        write_escape(out, s[at]);
        start = at + 1;
    }
}

/// Escapes the first line of `s` into `out`, the way the NDJSON encoder needs it: one scan finds
/// both the line's end and the bytes to escape.
///
/// Returns the index of the line's `\n` (whose content excludes one `\r` just before it), or
/// `None` when `s` holds no `\n` and all of it was escaped.
#[inline]
pub fn escape_line_into(out: &mut Vec<u8>, s: &[u8]) -> Option<usize> {
    let mut start = 0;
    loop {
        let at = find_special(s, start);
        if at == s.len() {
            out.extend_from_slice(&s[start..]);
            return None;
        }
        match s[at] {
            b'\n' => {
                out.extend_from_slice(&s[start..at]);
                return Some(at);
            }
            b'\r' if s.get(at + 1) == Some(&b'\n') => {
                out.extend_from_slice(&s[start..at]);
                return Some(at + 1);
            }
            b => {
                out.extend_from_slice(&s[start..at]);
                write_escape(out, b);
                start = at + 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn esc(s: &str) -> String {
        let mut out = Vec::new();
        escape_into(&mut out, s.as_bytes());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn short_and_unicode_escapes() {
        assert_eq!(esc("plain text"), "plain text");
        assert_eq!(esc("a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(esc("\n\r\t\u{8}\u{c}"), "\\n\\r\\t\\b\\f");
        assert_eq!(esc("\u{0}\u{1f}\u{7f}"), "\\u0000\\u001f\u{7f}");
        assert_eq!(esc("héllo ✓ 😀"), "héllo ✓ 😀");
        assert_eq!(esc(""), "");
    }

    #[test]
    fn special_byte_in_every_position_of_long_input() {
        for len in 0..40 {
            for at in 0..len {
                for special in [b'"', b'\\', b'\n', 0u8, 0x1f] {
                    let mut s = vec![b'x'; len];
                    s[at] = special;
                    let mut out = Vec::new();
                    escape_into(&mut out, &s);
                    let back: String = serde_json::from_slice(&[b"\"".as_slice(), &out, b"\""].concat()).unwrap();
                    assert_eq!(back.as_bytes(), &s[..], "len {len} at {at} byte {special:#x}");
                }
            }
        }
    }

    #[test]
    fn line_escape_stops_at_newline_and_strips_cr() {
        let mut out = Vec::new();
        assert_eq!(escape_line_into(&mut out, b"a\tb\r\nrest"), Some(4));
        assert_eq!(out, b"a\\tb");
        out.clear();
        assert_eq!(escape_line_into(&mut out, b"a\rb\nrest"), Some(3));
        assert_eq!(out, b"a\\rb");
        out.clear();
        assert_eq!(escape_line_into(&mut out, b"no end\r"), None);
        assert_eq!(out, b"no end\\r");
        out.clear();
        assert_eq!(escape_line_into(&mut out, b"\n"), Some(0));
        assert_eq!(out, b"");
    }

    proptest! {
        #[test]
        fn round_trips_through_serde_json(s in any::<String>()) {
            let mut out = b"\"".to_vec();
            escape_into(&mut out, s.as_bytes());
            out.push(b'"');
            let back: String = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(back, s);
        }

        #[test]
        fn round_trips_control_heavy_strings(s in "[\\x00-\\x1f\"\\\\a-z\u{80}-\u{10ffff}]{0,80}") {
            let mut out = b"\"".to_vec();
            escape_into(&mut out, s.as_bytes());
            out.push(b'"');
            let back: String = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(back, s);
        }

        #[test]
        fn line_escape_matches_escape_of_first_line(s in "[\\x00-\\x1f\r\n\"a-z]{0,80}") {
            let mut out = Vec::new();
            let end = escape_line_into(&mut out, s.as_bytes());
            let line = match s.find('\n') {
                Some(i) => {
                    prop_assert_eq!(end, Some(i));
                    s[..i].strip_suffix('\r').unwrap_or(&s[..i])
                }
                None => {
                    prop_assert_eq!(end, None);
                    &s[..]
                }
            };
            let mut want = Vec::new();
            escape_into(&mut want, line.as_bytes());
            prop_assert_eq!(out, want);
        }
    }
}
