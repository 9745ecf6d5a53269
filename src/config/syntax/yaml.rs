//! YAML into the config tree, with `yaml-rust2` (already the reader of Fluent Bit's YAML in
//! `convert/yaml.rs`: maintained, pure Rust, passes the YAML test suite). Its event API is
//! used because the events carry line and column, which every message about the config names;
//! a serde YAML deserializer would instead stop at the first unknown key and know the place of
//! errors only. Plain scalars are typed by the YAML 1.2 core schema (`true`, `5`, `0x1f`,
//! `1.5`, `null`, `~`); quoted ones are strings, so `"5"` stays text.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Yaml;

use super::{Key, Node, Pos, SyntaxError, Value};

/// Nodes one file may expand to: aliases copy their anchor, so a few lines of nested aliases
/// could otherwise ask for billions of nodes.
const MAX_NODES: usize = 1_000_000;

pub(super) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder::default();
    Parser::new_from_str(text)
        .load(&mut builder, false)
        .map_err(|e| SyntaxError {
            at: Some(pos(*e.marker())),
            message: e.info().to_owned(),
        })?;
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder.root.unwrap_or(Node {
        at: Pos { line: 1, column: 1 },
        value: Value::Null,
    }))
}

fn pos(m: Marker) -> Pos {
    Pos {
        line: m.line(),
        column: m.col() + 1,
    }
}

/// A map or list being built, with the key waiting for its value and the anchor to record.
struct Open {
    node: Node,
    key: Option<Key>,
    anchor: usize,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: Vec<(usize, Node)>,
    root: Option<Node>,
    nodes: usize,
    error: Option<SyntaxError>,
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let at = pos(mark);
        match ev {
            Event::MappingStart(anchor, _) => self.open(at, Value::Map(Vec::new()), anchor),
            Event::SequenceStart(anchor, _) => self.open(at, Value::List(Vec::new()), anchor),
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(open) = self.stack.pop() {
                    self.add(open.node, open.anchor);
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let string_tag = tag
                    .as_ref()
                    .is_some_and(|t| t.handle == "tag:yaml.org,2002:" && t.suffix == "str");
                let value = if style != TScalarStyle::Plain || string_tag {
                    Value::String(text)
                } else {
                    typed(text)
                };
                self.add(Node { at, value }, anchor);
            }
            Event::Alias(id) => match self.anchors.iter().rev().find(|(a, _)| *a == id) {
                Some((_, node)) => {
                    let mut copy = node.clone();
                    copy.at = at;
                    self.add(copy, 0);
                }
                None => self.fail(at, "an alias to an unknown anchor".into()),
            },
            _ => {}
        }
    }
}

/// A plain scalar's value by the YAML 1.2 core schema.
fn typed(text: String) -> Value {
    match Yaml::from_str(&text) {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::Int(i),
        Yaml::Real(r) => match r.parse::<f64>() {
            Ok(f) => Value::Float(f),
            // `.inf`, `-.Inf`, `.nan`: the core schema's spellings, not Rust's.
            Err(_) => match r.to_ascii_lowercase().as_str() {
                ".inf" | "+.inf" => Value::Float(f64::INFINITY),
                "-.inf" => Value::Float(f64::NEG_INFINITY),
                ".nan" => Value::Float(f64::NAN),
                _ => Value::String(text),
            },
        },
        _ => Value::String(text),
    }
}

impl Builder {
    fn fail(&mut self, at: Pos, message: String) {
        self.error.get_or_insert(SyntaxError { at: Some(at), message });
    }

    fn open(&mut self, at: Pos, value: Value, anchor: usize) {
        self.stack.push(Open {
            node: Node { at, value },
            key: None,
            anchor,
        });
    }

    fn add(&mut self, node: Node, anchor: usize) {
        self.nodes += count(&node);
        if self.nodes > MAX_NODES {
            return self.fail(
                node.at,
                format!("more than {MAX_NODES} values (aliases nested too deep?)"),
            );
        }
        if anchor != 0 {
            self.anchors.push((anchor, node.clone()));
        }
        let Some(parent) = self.stack.last_mut() else {
            self.root.get_or_insert(node);
            return;
        };
        match &mut parent.node.value {
            Value::List(items) => items.push(node),
            Value::Map(entries) => match parent.key.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    let name = match node.value {
                        Value::String(s) => s,
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Null => "null".to_owned(),
                        Value::List(_) | Value::Map(_) => {
                            return self.fail(node.at, "a key must be a single value, not a list or a map".into())
                        }
                    };
                    if entries.iter().any(|(k, _)| k.name == name) {
                        return self.fail(node.at, format!("duplicate key {name:?}"));
                    }
                    parent.key = Some(Key { name, at: node.at });
                }
            },
            _ => {}
        }
    }
}

/// Values in `node`, itself included (a small node counts once: the copy of an alias is what
/// can be large).
fn count(node: &Node) -> usize {
    match &node.value {
        Value::List(items) => 1 + items.iter().map(count).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|(_, v)| count(v)).sum::<usize>(),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Vec<(Key, Node)> {
        match parse(text).unwrap().value {
            Value::Map(entries) => entries,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_scalars_are_typed_quoted_ones_are_text() {
        let m = root("a: 5\nb: \"5\"\nc: true\nd: 1.5\ne: ~\nf: !!str 7\ng: text\n");
        let values: Vec<&Value> = m.iter().map(|(_, v)| &v.value).collect();
        assert_eq!(
            values,
            [
                &Value::Int(5),
                &Value::String("5".into()),
                &Value::Bool(true),
                &Value::Float(1.5),
                &Value::Null,
                &Value::String("7".into()),
                &Value::String("text".into()),
            ]
        );
        assert_eq!(m[1].0.at, Pos { line: 2, column: 1 });
        assert_eq!(m[1].1.at, Pos { line: 2, column: 4 });
    }

    #[test]
    fn aliases_copy_their_anchor() {
        let m = root("base: &b {x: 1}\nother: *b\n");
        assert_eq!(m[0].1.value, m[1].1.value);
        assert_eq!(m[1].1.at.line, 2);
    }

    #[test]
    fn mistakes_name_their_place() {
        for (text, line) in [
            ("a: 1\na: 2\n", 2),
            ("a: *nope\n", 1),
            ("a: 1\n  b: [\n", 2),
            ("? [x]\n: 1\n", 1),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.at.map(|p| p.line), Some(line), "{text:?}: {err}");
        }
    }

    #[test]
    fn nested_aliases_cannot_blow_up() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("more than"), "{err}");
    }
}
