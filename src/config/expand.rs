//! `${VAR}` expansion in the config's string values, before they are validated.
//!
//! The messages name the variable, never its value: a value may be a secret. The values that
//! came from variables, and the values of the secret keys (`auth.password`, `auth.token`,
//! `headers.*`), are kept in `Redactions`, which takes them out of every later message about
//! the config (a validation problem echoing a bad value, a type error).

use std::borrow::Cow;

use super::syntax::{Node, Value};
use super::Problem;

/// What a redacted value is shown as in a config message.
const REDACTED: &str = "<redacted>";
/// Values at least this long are taken out of every message; shorter ones (a port, `true`)
/// only out of the messages about their own key, where they could not be told from chance
/// text elsewhere.
const GLOBAL_MIN: usize = 4;

/// Values that must not appear in config messages, each with the key it was found at.
#[derive(Debug, Default)]
pub(super) struct Redactions {
    values: Vec<(String, String)>,
}

impl Redactions {
    fn add(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.values.push((key.to_owned(), value.to_owned()));
        }
    }

    /// Records the values of the secret keys of the (expanded) file.
    pub(super) fn add_secrets(&mut self, node: &Node, key: &str) {
        match &node.value {
            Value::String(s) if is_secret_key(key) => self.add(key, s),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.add_secrets(item, &format!("{key}[{i}]"));
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries {
                    let child = if key.is_empty() {
                        k.name.clone()
                    } else {
                        format!("{key}.{}", k.name)
                    };
                    self.add_secrets(v, &child);
                }
            }
            _ => {}
        }
    }

    /// `text` without the recorded values; `about` is the key the message is about, if known.
    pub(super) fn scrub<'a>(&self, text: &'a str, about: Option<&str>) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        let mut values: Vec<&(String, String)> = self.values.iter().collect();
        // Longest first, so a value that holds a shorter one is taken out whole.
        values.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        for (key, value) in values {
            let related = about.is_some_and(|a| a.starts_with(key.as_str()) || key.starts_with(a));
            if value.len() < GLOBAL_MIN && !related {
                continue;
            }
            // Messages quote values with `{:?}`, which escapes some characters.
            let debug = format!("{value:?}");
            for form in [value.as_str(), &debug[1..debug.len() - 1]] {
                if out.contains(form) {
                    out = Cow::Owned(out.replace(form, REDACTED));
                }
            }
        }
        out
    }

    /// Scrubs every problem's message.
    pub(super) fn scrub_problems(&self, problems: &mut [Problem]) {
        for p in problems {
            if let Cow::Owned(clean) = self.scrub(&p.message, Some(&p.key)) {
                p.message = clean;
            }
        }
    }
}

/// Keys whose values are credentials: an auth or SASL password, a token, and any header value
/// (an API key travels as one).
fn is_secret_key(key: &str) -> bool {
    key.ends_with(".auth.password")
        || key.ends_with(".auth.token")
        || key.contains(".headers.")
        || key.ends_with(".hash_key")
        || key.ends_with(".sasl.password")
}

/// A `${…}` that cannot be expanded.
#[derive(Debug, thiserror::Error)]
pub(super) enum ExpandError {
    #[error("unterminated ${{")]
    Unterminated,
    #[error("bad variable name {0:?}")]
    Name(String),
    #[error("environment variable {0} is not set")]
    Unset(String),
}

/// Expands `${VAR}` (and `$${` as a literal `${`) in every string of the parsed file, so the
/// error can name the key whose value referenced an unset variable.
pub(super) fn expand_value(
    node: &mut Node,
    key: String,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
    redactions: &mut Redactions,
) {
    match &mut node.value {
        Value::String(s) => match expand_str(s, env) {
            Ok(expanded) => {
                if expanded != *s {
                    // What each variable gave, and the whole value it is part of.
                    let mut seen = |v: &str| redactions.add(&key, v);
                    let _ = expand_with(s, env, &mut seen);
                    redactions.add(&key, &expanded);
                }
                *s = expanded;
            }
            Err(e) => problems.push(Problem {
                key,
                message: e.to_string(),
            }),
        },
        Value::List(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, format!("{key}[{i}]"), env, problems, redactions);
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                let child = if key.is_empty() {
                    k.name.clone()
                } else {
                    format!("{key}.{}", k.name)
                };
                expand_value(v, child, env, problems, redactions);
            }
        }
        _ => {}
    }
}

/// `${NAME}` → the variable's value; `${NAME:-default}` → the default when unset or empty.
pub(super) fn expand_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    expand_with(s, env, &mut |_| {})
}

/// `expand_str`, telling `seen` each variable's value it substituted.
fn expand_with(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
    seen: &mut dyn FnMut(&str),
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(ExpandError::Unterminated)?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ExpandError::Name(name.to_owned()));
            }
            match (env(name).filter(|v| !v.is_empty() || default.is_none()), default) {
                (Some(v), _) => {
                    seen(&v);
                    out.push_str(&v);
                }
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(ExpandError::Unset(name.to_owned())),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}
