//! `${VAR}` expansion in the config's string values, before they are validated.
//!
//! The messages name the variable, never its value: a value may be a secret.

use super::Problem;

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
    value: &mut toml::Value,
    key: String,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    match value {
        toml::Value::String(s) => match expand_str(s, env) {
            Ok(expanded) => *s = expanded,
            Err(e) => problems.push(Problem {
                key,
                message: e.to_string(),
            }),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, format!("{key}[{i}]"), env, problems);
            }
        }
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                let child = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                expand_value(v, child, env, problems);
            }
        }
        _ => {}
    }
}

/// `${NAME}` → the variable's value; `${NAME:-default}` → the default when unset or empty.
pub(super) fn expand_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
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
                (Some(v), _) => out.push_str(&v),
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
