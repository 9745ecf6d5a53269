//! The config structs (`file.rs`) read from the syntax tree (`syntax/`) by serde, reporting
//! every unknown key at once instead of stopping at the first.
//!
//! Where a struct is read, serde hands the deserializer the struct's field names; keys not
//! among them are set aside here (with their place and the closest known name) rather than
//! passed on to `deny_unknown_fields`, so reading goes on and the user gets the whole list. The
//! first other error (a wrong type, a missing value) ends the reading and carries the key path
//! and place of the innermost value it is about.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use super::syntax::{Key, Node, Pos, Value};

/// A key no struct at its place knows.
#[derive(Debug, Clone)]
pub(super) struct Unknown {
    /// `sinks[0].adress`.
    pub(super) path: String,
    pub(super) at: Pos,
    pub(super) suggestion: Option<&'static str>,
    pub(super) known: &'static [&'static str],
}

impl Unknown {
    pub(super) fn message(&self) -> String {
        let key = self.path.rsplit('.').next().unwrap_or(&self.path);
        let mut out = format!("unknown key {key:?}");
        if let Some(s) = self.suggestion {
            out.push_str(&format!(" (did you mean {s:?}?)"));
        }
        out.push_str("; known here: ");
        out.push_str(&self.known.join(", "));
        out
    }
}

/// An error other than an unknown key: where, about which key, and what.
#[derive(Debug)]
pub(super) struct Error {
    pub(super) path: String,
    pub(super) at: Option<Pos>,
    pub(super) message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            path: String::new(),
            at: None,
            message: msg.to_string(),
        }
    }
}

/// Reads `T` from `root`; the unknown keys are returned whether or not reading succeeded.
pub(super) fn read<T: DeserializeOwned>(root: &Node) -> (Result<T, Error>, Vec<Unknown>) {
    let unknown = RefCell::new(Vec::new());
    let result = T::deserialize(De {
        node: root,
        path: String::new(),
        unknown: &unknown,
    });
    (result, unknown.into_inner())
}

/// The closest known name to `key`, if one is close enough to be a typo of it.
fn suggest(key: &str, known: &'static [&'static str]) -> Option<&'static str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(key, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

struct De<'de> {
    node: &'de Node,
    path: String,
    unknown: &'de RefCell<Vec<Unknown>>,
}

impl<'de> De<'de> {
    fn child(&self, node: &'de Node, path: String) -> De<'de> {
        De {
            node,
            path,
            unknown: self.unknown,
        }
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Gives an error that does not know its place yet this node's place and key.
    fn place(&self, mut e: Error) -> Error {
        if e.at.is_none() {
            e.at = Some(self.node.at);
            e.path.clone_from(&self.path);
        }
        e
    }

    fn any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::List(items) => visitor.visit_seq(Seq {
                de: &self,
                items: items.iter().enumerate(),
            }),
            Value::Map(entries) => visitor.visit_map(Map {
                de: &self,
                entries: entries.iter().collect::<Vec<_>>().into_iter(),
                value: None,
            }),
        };
        result.map_err(|e| self.place(e))
    }
}

impl<'de> de::Deserializer<'de> for De<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let Value::Map(entries) = &self.node.value else {
            return self.any(visitor);
        };
        let mut known = Vec::with_capacity(entries.len());
        for entry in entries {
            if fields.contains(&entry.0.name.as_str()) {
                known.push(entry);
            } else {
                self.unknown.borrow_mut().push(Unknown {
                    path: self.key_path(&entry.0.name),
                    at: entry.0.at,
                    suggestion: suggest(&entry.0.name, fields),
                    known: fields,
                });
            }
        }
        let result = visitor.visit_map(Map {
            de: &self,
            entries: known.into_iter(),
            value: None,
        });
        result.map_err(|e| self.place(e))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let result = match &self.node.value {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => Err(de::Error::custom(format!(
                "expected a name, found {}",
                self.node.kind()
            ))),
        };
        result.map_err(|e| self.place(e))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier
    }
}

struct Seq<'d, 'de, I> {
    de: &'d De<'de>,
    items: I,
}

impl<'de, I: Iterator<Item = (usize, &'de Node)>> de::SeqAccess<'de> for Seq<'_, 'de, I> {
    type Error = Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            Some((i, node)) => seed
                .deserialize(self.de.child(node, format!("{}[{i}]", self.de.path)))
                .map(Some),
            None => Ok(None),
        }
    }
}

struct Map<'d, 'de> {
    de: &'d De<'de>,
    entries: std::vec::IntoIter<&'de (Key, Node)>,
    value: Option<&'de (Key, Node)>,
}

impl<'de> de::MapAccess<'de> for Map<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(entry);
        let key: de::value::BorrowedStrDeserializer<'de, Error> =
            de::value::BorrowedStrDeserializer::new(&entry.0.name);
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let Some((key, node)) = self.value.take() else {
            return Err(de::Error::custom("a value without its key"));
        };
        seed.deserialize(self.de.child(node, self.de.key_path(&key.name)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::syntax::{parse, Syntax};
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        name: Option<String>,
        #[serde(default)]
        inner: Vec<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        address: Option<String>,
        port: Option<u16>,
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_place_and_a_guess() {
        let text = "nmae: x\ninner:\n  - adress: a\n    port: 1\n  - colour: red\n";
        let (result, unknown) = read::<Outer>(&parse(Syntax::Yaml, text).unwrap());
        let outer = result.unwrap();
        assert_eq!(outer.inner.len(), 2);
        assert!(outer.name.is_none() && outer.inner[0].address.is_none());
        assert_eq!(
            outer.inner[0].port,
            Some(1),
            "the known keys beside an unknown one are read"
        );
        let got: Vec<(String, usize, Option<&str>)> = unknown
            .iter()
            .map(|u| (u.path.clone(), u.at.line, u.suggestion))
            .collect();
        assert_eq!(
            got,
            [
                ("nmae".to_owned(), 1, Some("name")),
                ("inner[0].adress".to_owned(), 3, Some("address")),
                ("inner[1].colour".to_owned(), 5, None),
            ]
        );
        assert!(
            unknown[1].message().contains("did you mean \"address\"?"),
            "{}",
            unknown[1].message()
        );
    }

    #[test]
    fn a_wrong_type_names_the_innermost_key_and_its_place() {
        let text = "[[inner]]\naddress = \"a\"\n[[inner]]\nport = \"many\"\n";
        let (result, _) = read::<Outer>(&parse(Syntax::Toml, text).unwrap());
        let e = result.unwrap_err();
        assert_eq!(e.path, "inner[1].port");
        assert_eq!(e.at.map(|p| p.line), Some(4), "{e}");
        let (result, _) = read::<Outer>(&parse(Syntax::Yaml, "inner:\n  - port: 70000\n").unwrap());
        assert_eq!(result.unwrap_err().path, "inner[0].port");
    }
}
