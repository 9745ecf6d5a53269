//! TOML into the config tree, with the `toml` crate's own parser (`DeTable`, which keeps the
//! byte span of every key and value).

use ::toml::de::{DeTable, DeValue};
use ::toml::Spanned;

use super::{pos_at, Key, Node, SyntaxError, Value};

pub(super) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let table = DeTable::parse(text).map_err(|e| SyntaxError {
        at: e.span().map(|s| pos_at(text, s.start)),
        message: e.message().trim_end().to_owned(),
    })?;
    let span = table.span();
    let root = Spanned::new(span, DeValue::Table(table.into_inner()));
    node(text, &root)
}

fn node(text: &str, v: &Spanned<DeValue<'_>>) -> Result<Node, SyntaxError> {
    let at = pos_at(text, v.span().start);
    let bad = |what: &str, raw: &str| SyntaxError {
        at: Some(at),
        message: format!("{what} {raw:?} is out of range"),
    };
    let value = match v.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => {
            Value::Int(i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| bad("integer", i.as_str()))?)
        }
        DeValue::Float(f) => Value::Float(parse_float(f.as_str()).ok_or_else(|| bad("float", f.as_str()))?),
        DeValue::Boolean(b) => Value::Bool(*b),
        // No key takes a date: kept as its text, so a wrong type is reported as a string.
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => Value::List(items.iter().map(|i| node(text, i)).collect::<Result<_, _>>()?),
        DeValue::Table(table) => Value::Map(
            table
                .iter()
                .map(|(k, v)| {
                    let key = Key {
                        name: k.get_ref().to_string(),
                        at: pos_at(text, k.span().start),
                    };
                    Ok((key, node(text, v)?))
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok(Node { at, value })
}

/// TOML's float text: Rust's syntax plus `inf`/`nan` with an optional sign.
fn parse_float(raw: &str) -> Option<f64> {
    match raw.trim_start_matches(['+', '-']) {
        "inf" if raw.starts_with('-') => Some(f64::NEG_INFINITY),
        "inf" => Some(f64::INFINITY),
        "nan" => Some(f64::NAN),
        _ => raw.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Pos;
    use super::*;

    #[test]
    fn values_keep_their_type_and_place() {
        let text = "a = 0x1f\nb = 1.5\n[t]\nc = [true, \"x\"]\n";
        let root = parse(text).unwrap();
        let Value::Map(entries) = &root.value else { panic!() };
        let get = |k: &str| &entries.iter().find(|(key, _)| key.name == k).unwrap().1;
        assert_eq!(get("a").value, Value::Int(31));
        assert_eq!(get("b").value, Value::Float(1.5));
        let Value::Map(t) = &get("t").value else { panic!() };
        let Value::List(c) = &t[0].1.value else { panic!() };
        assert_eq!(
            c[1],
            Node {
                at: Pos { line: 4, column: 12 },
                value: Value::String("x".into())
            }
        );
        assert_eq!(t[0].0.at, Pos { line: 4, column: 1 });
    }

    #[test]
    fn a_syntax_error_has_a_place() {
        let err = parse("a = 1\nb = \"open\n").unwrap_err();
        assert_eq!(err.at.map(|p| p.line), Some(2), "{err}");
    }
}
