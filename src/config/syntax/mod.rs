//! The config file as a tree of values that remember where they were written, whatever the
//! syntax (`toml.rs`, `yaml.rs`): `${VAR}` expansion, deserialization (`config/de.rs`) and
//! every problem message work on this one tree, so TOML and YAML get the same checks and
//! every message names a line and a column.

use std::fmt;
use std::path::Path;

mod toml;
mod yaml;

/// Where a value starts: line and column, both from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) at: Pos,
    pub(crate) value: Value,
}

/// A key of a map and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub(crate) name: String,
    pub(crate) at: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    List(Vec<Node>),
    /// In the order written (YAML) or the parser's order (TOML): lookups are by name.
    Map(Vec<(Key, Node)>),
}

/// The config's syntax, chosen by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Toml,
    Yaml,
}

impl Syntax {
    /// `.yaml` and `.yml` are YAML; anything else is TOML.
    pub fn of(path: &Path) -> Syntax {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml") => Syntax::Yaml,
            _ => Syntax::Toml,
        }
    }
}

/// A syntax error: where, and what (never the line itself: it may hold a secret).
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub(crate) at: Option<Pos>,
    pub(crate) message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some(at) => write!(f, "{at}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Parses `text` in `syntax` into a tree whose root is a map (an empty file is an empty map).
pub(crate) fn parse(syntax: Syntax, text: &str) -> Result<Node, SyntaxError> {
    let root = match syntax {
        Syntax::Toml => toml::parse(text)?,
        Syntax::Yaml => yaml::parse(text)?,
    };
    match root.value {
        Value::Map(_) => Ok(root),
        Value::Null => Ok(Node {
            at: root.at,
            value: Value::Map(Vec::new()),
        }),
        _ => Err(SyntaxError {
            at: Some(root.at),
            message: "the top level must be a map of keys (data_dir, sources, sinks, …)".into(),
        }),
    }
}

/// Line and column (from 1, columns in characters) of byte `offset` of `text`.
pub(crate) fn pos_at(text: &str, offset: usize) -> Pos {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or("");
    Pos {
        line: before.matches('\n').count() + 1,
        column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
    }
}

impl Node {
    /// The value at a problem's key path (`sinks[0].batch.max_events`), or the nearest
    /// enclosing one that exists (a missing key is about the map that lacks it).
    pub(crate) fn locate(&self, path: &str) -> Pos {
        let mut node = self;
        for step in steps(path) {
            let next = match (&node.value, step) {
                (Value::Map(entries), Step::Key(k)) => entries.iter().find(|(key, _)| key.name == k).map(|(_, v)| v),
                (Value::List(items), Step::Index(i)) => items.get(i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.at
    }

    /// A short name of the value's type, for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::String(_) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a map",
        }
    }
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[2].c` as keys and indices. Quoted keys (`resource."host.name"`) are not split further:
/// problems name them rarely, and the enclosing map is then close enough.
fn steps(path: &str) -> impl Iterator<Item = Step<'_>> {
    path.split('.').flat_map(|part| {
        let (name, rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        let indices = rest
            .split('[')
            .filter_map(|i| i.trim_end_matches(']').parse::<usize>().ok())
            .map(Step::Index);
        (!name.is_empty())
            .then_some(Step::Key(name))
            .into_iter()
            .chain(indices.collect::<Vec<_>>())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_located_at_its_value_or_the_nearest_enclosing_one() {
        let text = "[metrics]\naddress = \"x\"\n\n[[sinks]]\ntype = \"tcp\"\n\n[[sinks]]\nbatch = { linger_ms = 5 }\n";
        let tree = parse(Syntax::Toml, text).unwrap();
        assert_eq!(tree.locate("metrics.address"), Pos { line: 2, column: 11 });
        assert_eq!(tree.locate("sinks[1].batch.linger_ms").line, 8);
        assert_eq!(tree.locate("sinks[1].address").line, 7, "the sink that lacks it");
        let yaml = "metrics:\n  address: x\nsinks:\n  - type: tcp\n  - batch:\n      linger_ms: 5\n";
        let tree = parse(Syntax::Yaml, yaml).unwrap();
        assert_eq!(tree.locate("metrics.address"), Pos { line: 2, column: 12 });
        assert_eq!(tree.locate("sinks[1].batch.linger_ms"), Pos { line: 6, column: 18 });
    }

    #[test]
    fn the_syntax_follows_the_extension() {
        assert_eq!(Syntax::of(Path::new("/etc/t/agent.yaml")), Syntax::Yaml);
        assert_eq!(Syntax::of(Path::new("agent.YML")), Syntax::Yaml);
        assert_eq!(Syntax::of(Path::new("agent.toml")), Syntax::Toml);
        assert_eq!(Syntax::of(Path::new("agent")), Syntax::Toml);
    }

    #[test]
    fn the_top_level_must_be_a_map() {
        assert!(parse(Syntax::Yaml, "").is_ok());
        let err = parse(Syntax::Yaml, "- a\n- b\n").unwrap_err();
        assert_eq!(err.at.map(|p| p.line), Some(1), "{err}");
    }
}
