//! Making values safe to put in the agent's own log and error messages: URLs without their
//! secrets, and untrusted text (file names the app chose, collector answer bodies) with its
//! control characters escaped so it cannot forge or recolour a log line.
//!
//! One place for both because both answer the same question — what may an operator's log
//! show of a value the agent did not choose — and every stage that logs uses them.

use std::borrow::Cow;
use std::fmt;

/// What a masked secret is shown as.
pub const MASK: &str = "***";

/// A URL as it may be logged: no user name or password, every query value masked
/// (`?api_key=***&x=***`), the fragment dropped. Keys stay: they say which parameter was
/// set without saying its value.
pub fn url(u: &reqwest::Url) -> String {
    let mut shown = u.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_fragment(None);
    if let Some(query) = u.query() {
        shown.set_query(Some(&mask_query(query)));
    }
    shown.to_string()
}

/// `url` for text that may not parse as a URL (a config value): anything between `://` and
/// the next `@` before the path is dropped, and everything after `?` or `#` is masked.
pub fn url_text(text: &str) -> String {
    if let Ok(u) = reqwest::Url::parse(text) {
        if u.has_host() {
            return url(&u);
        }
    }
    let (head, query) = match text.find(['?', '#']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let rest = match rest[..authority_end].rfind('@') {
                Some(at) => &rest[at + 1..],
                None => rest,
            };
            format!("{scheme}://{rest}")
        }
        None => head.to_owned(),
    };
    if let Some(q) = query {
        out.push('?');
        out.push_str(&mask_query(q));
    }
    escape(&out).into_owned()
}

/// `a=1&b&c=2` → `a=***&b&c=***`.
fn mask_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) => format!("{k}={MASK}"),
            None => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Untrusted text with every control character (newline, carriage return, escape, the C1
/// range, and the Unicode line and paragraph separators) written as a visible escape (`\n`,
/// `\u{1b}`), so the text stays on its line and cannot start a terminal sequence.
/// Borrowed when there is nothing to escape (the usual case).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// `escape` as a `Display` adapter, for `tracing` fields: `error = %Escaped(&text)`.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(self.0))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn urls_lose_userinfo_and_query_values() {
        let u = reqwest::Url::parse("https://user:pa55@c.example:8443/in?api_key=s3cret&x&y=2#frag").unwrap();
        assert_eq!(url(&u), "https://c.example:8443/in?api_key=***&x&y=***");
        let plain = reqwest::Url::parse("http://c/in").unwrap();
        assert_eq!(url(&plain), "http://c/in");
    }

    #[test]
    fn url_text_that_does_not_parse_is_masked_too() {
        assert_eq!(url_text("http://u:p@ho st/x?token=abc"), "http://ho st/x?token=***");
        assert_eq!(url_text("ftp://u:p@h/?k=v"), "ftp://h/?k=***");
        assert_eq!(url_text("no scheme?k=v"), "no scheme?k=***");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("plain /var/log/a.log"), "plain /var/log/a.log");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("a\nb\r\u{1b}[31m"), "a\\nb\\r\\u{1b}[31m");
        assert_eq!(escape("x\u{2028}y\u{85}"), "x\\u{2028}y\\u{85}");
        assert_eq!(Escaped("l1\nl2").to_string(), "l1\\nl2");
    }

    proptest! {
        #[test]
        fn escaped_text_has_no_control_characters(s in "\\PC*|[\\x00-\\x1f\\x7f-\\x{9f}a-z\\n]*") {
            let e = escape(&s);
            prop_assert!(!e.chars().any(needs_escape));
            let shown = url_text(&s);
            prop_assert!(!shown.chars().any(needs_escape));
        }
    }
}
