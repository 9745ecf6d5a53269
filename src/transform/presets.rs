//! The patterns of `redact`'s presets, and the checks that tell a real hit from a look-alike
//! (the Luhn sum of a card number, an IPv6 address that parses).
//!
//! Every pattern stays on one line (no `\s`, which matches a newline) and uses ASCII word
//! boundaries (`(?-u:\b)`): a Unicode boundary would make the regex engine leave its DFA for a
//! slower one on any non-ASCII text. Keywords are matched case-insensitively in ASCII only
//! (`(?i-u:…)`), and only the keywords: Unicode case folding would add `ſ` to every `s` and
//! the Kelvin sign to every `k` — multi-byte branches that grow the DFA for nothing. A group
//! named `value` marks the part to replace (the token after `Bearer `, the value of
//! `password=`); without it the whole match is replaced.

use std::net::Ipv6Addr;

/// What a hit must pass beyond matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    None,
    /// 13 to 19 digits (separators aside) with a valid Luhn sum.
    Luhn,
    /// Parses as an IPv6 address, is not glued to a word, and is not just `::`.
    Ipv6,
}

/// One preset: its config name, its pattern, its check.
pub struct Preset {
    pub name: &'static str,
    pub pattern: &'static str,
    pub check: Check,
}

/// The preset names `presets = [...]` takes, for messages.
pub const PRESET_NAMES: &str = "credit_card, email, ipv4, ipv6, bearer, jwt, aws_access_key, password";

pub const PRESETS: &[Preset] = &[
    Preset {
        // Written as cards are printed: 13 to 19 digits unbroken, 4-4-4-4 (with 1 to 3 more
        // for 17 to 19 digits), or 4-6-5 and 4-6-4 (American Express, Diners), with spaces or
        // dashes used alike. Any spacing at all would take other digit runs for candidates —
        // HDFS's `081109 203615 148` (date, time, pid) passes the Luhn check one time in ten
        // and was masked — and cost a search and a check on nearly every line of such logs.
        name: "credit_card",
        pattern: r"(?-u:\b)(?:[0-9]{13,19}|[0-9]{4}(?:(?: [0-9]{4}){3}(?: [0-9]{1,3})?|(?:-[0-9]{4}){3}(?:-[0-9]{1,3})?| [0-9]{6} [0-9]{4,5}|-[0-9]{6}-[0-9]{4,5}))(?-u:\b)",
        check: Check::Luhn,
    },
    Preset {
        name: "email",
        pattern: r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?-u:\b)",
        check: Check::None,
    },
    Preset {
        name: "ipv4",
        pattern: r"(?-u:\b)(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?-u:\b)",
        check: Check::None,
    },
    Preset {
        // Candidates only (a run of hex groups with `::` or seven colons); `Check::Ipv6` decides.
        name: "ipv6",
        pattern: r"(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*)?::(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*)?(?:\.[0-9]{1,3}){0,3}",
        check: Check::Ipv6,
    },
    Preset {
        name: "bearer",
        pattern: r"(?-u:\b)(?i-u:bearer)[ \t]+(?P<value>[A-Za-z0-9\-._~+/]+=*)",
        check: Check::None,
    },
    Preset {
        name: "jwt",
        pattern: r"(?-u:\b)eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
        check: Check::None,
    },
    Preset {
        name: "aws_access_key",
        pattern: r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}(?-u:\b)",
        check: Check::None,
    },
    Preset {
        // `password=x`, `"password": "x"`, `api_key: x`, …: the value only, quotes kept.
        name: "password",
        pattern: r#"(?-u:\b)(?i-u:password|passwd|pwd|passphrase|secret|client_secret|api[_-]?key|access[_-]?token|auth[_-]?token|token)["']?[ \t]*[=:][ \t]*(?P<value>"[^"\n]*"|'[^'\n]*'|[^ \t\n,;&"'}]+)"#,
        check: Check::None,
    },
];

/// Whether the hit `text` at `hay[start..end]` passes `check`.
pub fn passes(check: Check, hay: &[u8], start: usize, end: usize) -> bool {
    let text = &hay[start..end];
    match check {
        Check::None => true,
        Check::Luhn => luhn(text),
        Check::Ipv6 => {
            let glued = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b"_:.".contains(b));
            if glued(start.checked_sub(1).and_then(|i| hay.get(i))) || glued(hay.get(end)) {
                return false;
            }
            std::str::from_utf8(text)
                .ok()
                .and_then(|s| s.parse::<Ipv6Addr>().ok())
                .is_some_and(|a| !a.is_unspecified())
        }
    }
}

/// The Luhn sum of the digits of `text` (spaces and dashes skipped), for 13 to 19 digits. No
/// allocation: it runs for every candidate, and on logs with many long digit runs collecting
/// the digits first was a sixth of the `redact` scan's cost.
fn luhn(text: &[u8]) -> bool {
    let (mut count, mut sum) = (0u32, 0u32);
    for &b in text.iter().rev() {
        if !b.is_ascii_digit() {
            continue;
        }
        let d = u32::from(b - b'0');
        sum += match (count % 2, d * 2) {
            (0, _) => d,
            (_, dd) if dd > 9 => dd - 9,
            (_, dd) => dd,
        };
        count += 1;
    }
    (13..=19).contains(&count) && sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_tells_card_numbers_from_other_digits() {
        for card in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "5500-0000-0000-0004",
            "340000000000009",
        ] {
            assert!(luhn(card.as_bytes()), "{card}");
        }
        for not in ["4111111111111112", "1234567890123", "41111111111"] {
            assert!(!luhn(not.as_bytes()), "{not}");
        }
    }

    #[test]
    fn ipv6_candidates_must_parse_and_stand_alone() {
        let ok = |s: &str, start: usize, end: usize| passes(Check::Ipv6, s.as_bytes(), start, end);
        assert!(ok("from 2001:db8::1 x", 5, 16));
        assert!(ok("fe80::1", 0, 7));
        assert!(!ok("12:34:56", 0, 8), "a time");
        assert!(!ok("Foo::bar", 1, 7), "a path in code");
        assert!(!ok("a :: b", 2, 4), "just ::");
    }
}
