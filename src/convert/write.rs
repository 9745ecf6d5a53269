//! Writes the converted config as TOML with comments. Values are rendered by the `toml` crate
//! (quoting and escaping are its business); the layout — top-level keys, then `[metrics]`,
//! `[[sources]]` and `[[sinks]]`, each with its comments — is written here, because `toml`'s
//! serializer has no comments and `toml_edit` would be a second TOML crate for a flat file.
//! Nested keys are written dotted (`multiline.preset = "java"`), so every table is flat.

use std::fmt::Write as _;
use std::path::Path;

use super::filters::Transform;
use super::{file_name, filters, service, sinks, sources, ConvertError, Entry, FluentBit, Section};

/// A line of a table: a key and its value, or a comment.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    Key(String, toml::Value),
    Note(String),
}

/// One table of the output (the top level has no header).
#[derive(Debug, Default, Clone)]
pub(crate) struct Table {
    pub(crate) items: Vec<Item>,
}

impl Table {
    /// Sets `key` (dotted for nested keys) to `value`.
    pub(crate) fn set(&mut self, key: &str, value: impl Into<toml::Value>) {
        self.items.push(Item::Key(key.to_owned(), value.into()));
    }

    /// A comment line (without the `# `).
    pub(crate) fn note(&mut self, text: impl Into<String>) {
        self.items.push(Item::Note(text.into()));
    }

    /// The value set for `key`, if any.
    pub(crate) fn value(&self, key: &str) -> Option<&toml::Value> {
        self.items.iter().rev().find_map(|i| match i {
            Item::Key(k, v) if k == key => Some(v),
            _ => None,
        })
    }

    /// One "not carried over" comment per entry of `section` nothing consumed.
    pub(crate) fn leftovers(&mut self, section: &Section, reason: &dyn Fn(&str) -> Option<&'static str>) {
        for e in section.unused() {
            let why = reason(&e.key.to_ascii_lowercase()).unwrap_or("no tailship equivalent");
            self.note(format!(
                "not carried over: {} ({}): {why}",
                shown(e),
                where_(section, e)
            ));
        }
    }
}

/// `Key value` as written, with values of secret-looking keys hidden: the output is printed
/// and pasted around, and a password has no business in a comment.
pub(crate) fn shown(e: &Entry) -> String {
    let key = e.key.to_ascii_lowercase();
    let secret = ["passwd", "password", "token", "secret", "auth"]
        .iter()
        .any(|s| key.contains(s));
    if secret {
        format!("{} (value hidden)", e.key)
    } else {
        format!("{} {}", e.key, e.value)
    }
}

/// `file:line` of an entry.
pub(crate) fn where_(section: &Section, e: &Entry) -> String {
    format!("{}:{}", file_name(&section.file), e.line)
}

/// The whole output for the config read from `path`.
pub(super) fn document(path: &Path, fb: &FluentBit) -> Result<String, ConvertError> {
    let mut top = Table::default();
    let mut metrics = Table::default();
    let mut notes = Table::default();
    let mut srcs = sources::convert(fb, &mut top)?;
    let sinks = sinks::convert(fb, &srcs, &mut top);
    service::convert(fb, &mut top, &mut metrics);
    filters::convert(fb, &mut srcs, &mut notes);
    service::others(fb, &mut notes);
    for s in srcs.iter().filter(|s| !read(&sinks, &s.name)) {
        notes.note(format!(
            "not carried over: the tail input tagged {} ({}): no output matches its tag, so Fluent Bit drops its records",
            s.tag, s.at
        ));
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# tailship config converted by `tailship convert` from {}.",
        path.display()
    );
    out.push_str(
        "# Comments starting with \"not carried over\" name Fluent Bit settings this config does\n\
         # not reproduce, and why: read them before you switch. Check with `tailship validate`.\n",
    );
    write_items(&mut out, &top.items);
    write_items(&mut out, &notes.items);
    if !metrics.items.is_empty() {
        out.push_str("\n[metrics]\n");
        write_items(&mut out, &metrics.items);
    }
    for s in srcs.iter().filter(|s| read(&sinks, &s.name)) {
        out.push_str("\n[[sources]]\n");
        write_items(&mut out, &s.table.items);
        write_transforms(&mut out, &s.transforms);
    }
    for s in &sinks {
        out.push_str("\n[[sinks]]\n");
        write_items(&mut out, &s.items);
    }
    Ok(out)
}

/// Whether some sink reads source `name` (a sink without `inputs` reads every source).
fn read(sinks: &[Table], name: &str) -> bool {
    sinks.iter().any(|t| match t.value("inputs") {
        None => true,
        Some(v) => v.as_array().is_some_and(|a| a.iter().any(|i| i.as_str() == Some(name))),
    })
}

fn write_items(out: &mut String, items: &[Item]) {
    for item in items {
        match item {
            Item::Key(k, v) => {
                let _ = writeln!(out, "{} = {}", key(k), value(v));
            }
            Item::Note(text) => {
                for line in text.lines() {
                    let _ = writeln!(out, "# {line}");
                }
            }
        }
    }
}

/// A source's `transforms` list, one inline table a line.
fn write_transforms(out: &mut String, list: &[Transform]) {
    if list.is_empty() {
        return;
    }
    out.push_str("transforms = [\n");
    for t in list {
        let keys: Vec<String> = t.iter().map(|(k, v)| format!("{} = {}", part(k), value(v))).collect();
        let _ = writeln!(out, "  {{ {} }},", keys.join(", "));
    }
    out.push_str("]\n");
}

/// A dotted key with each part bare where TOML allows it, quoted otherwise.
fn key(dotted: &str) -> String {
    // A header or label name such as `X-Api.Key` is one part, whatever it holds.
    let parts: Vec<&str> = match dotted.split_once('.') {
        Some((head @ ("headers" | "labels" | "structured_metadata"), name)) => vec![head, name],
        _ => dotted.split('.').collect(),
    };
    parts.iter().map(|p| part(p)).collect::<Vec<_>>().join(".")
}

/// One part of a key: bare where TOML allows it, quoted otherwise (a dot included).
fn part(p: &str) -> String {
    if !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        p.to_owned()
    } else {
        toml::Value::String(p.to_owned()).to_string()
    }
}

fn value(v: &toml::Value) -> String {
    match v {
        toml::Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(value).collect();
            format!("[{}]", inner.join(", "))
        }
        // Inline, since a table's value sits on its key's line (`set = { env = "prod" }`).
        toml::Value::Table(members) => {
            let inner: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{} = {}", part(k), value(v)))
                .collect();
            format!("{{ {} }}", inner.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_render_as_toml() {
        let mut t = Table::default();
        t.set(
            "include",
            toml::Value::Array(vec!["/var/log/*.log".into(), "a\"b".into()]),
        );
        t.set("pattern", r"^(?<timestamp>\S+) (?<message>.*)$");
        t.set("headers.X-Api.Key", "v");
        t.set("multiline.preset", "java");
        t.set("max_inflight_bytes", 5_000_000_i64);
        t.note("two\nlines");
        let mut out = String::new();
        write_items(&mut out, &t.items);
        let parsed: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(parsed["include"][1].as_str(), Some("a\"b"));
        assert_eq!(parsed["pattern"].as_str(), Some(r"^(?<timestamp>\S+) (?<message>.*)$"));
        assert_eq!(parsed["headers"]["X-Api.Key"].as_str(), Some("v"));
        assert_eq!(parsed["multiline"]["preset"].as_str(), Some("java"));
        assert!(out.contains("# two\n# lines\n"), "{out}");
    }
}
