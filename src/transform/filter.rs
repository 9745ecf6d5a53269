//! `filter`: keeps or drops records by a condition such as
//! `level >= "info" and not message =~ "healthz"`.
//!
//! The condition language is small (comparisons of `level`, `message`, `stream`, `file` or
//! `fields.NAME` with a quoted string, joined by `and`, `or`, `not` and parentheses), so it is
//! parsed here by hand: an expression crate would bring its own value model and operators
//! that the record does not have, and could not say which comparison of a condition is wrong
//! by its column.
//!
//! A record without the value a comparison reads (no level, no such field) does not match it,
//! except `!=` and `!~`, which it does: so `drop = 'level < "info"'` keeps lines without a
//! level, where `keep = 'level >= "info"'` drops them.

use regex::Regex;

use super::edit::{retain, KeyOf};
use crate::record::{Level, RecordRef, Records};

/// A condition that cannot be read, with the column (1-based, in characters) where it fails.
#[derive(Debug, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ConditionError {
    pub column: usize,
    pub message: String,
}

/// A parsed condition.
#[derive(Debug)]
pub enum Condition {
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
    Level(Order, Level),
    Equals(KeyOf, String, bool),
    Matches(KeyOf, Regex, bool),
}

/// A comparison of levels.
#[derive(Debug, Clone, Copy)]
pub enum Order {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// `filter`: keeps the records its condition says yes to (`keep`), or drops them (`drop`).
#[derive(Debug)]
pub struct Filter {
    pub condition: Condition,
    /// True: keep what matches; false: drop what matches.
    pub keep: bool,
}

impl Filter {
    /// Drops what the filter does not keep; returns how many.
    pub fn apply(&self, records: &mut Records) -> u64 {
        retain(records, |r| self.condition.eval(r) == self.keep)
    }
}

impl Condition {
    pub fn eval(&self, r: &RecordRef<'_>) -> bool {
        match self {
            Condition::And(a, b) => a.eval(r) && b.eval(r),
            Condition::Or(a, b) => a.eval(r) || b.eval(r),
            Condition::Not(a) => !a.eval(r),
            Condition::Level(order, want) => match r.level {
                None => matches!(order, Order::Ne),
                Some(l) => match order {
                    Order::Eq => l == *want,
                    Order::Ne => l != *want,
                    Order::Lt => l < *want,
                    Order::Le => l <= *want,
                    Order::Gt => l > *want,
                    Order::Ge => l >= *want,
                },
            },
            Condition::Equals(key, want, equal) => match key.read(r) {
                None => !equal,
                Some(v) => (v == want.as_str()) == *equal,
            },
            Condition::Matches(key, re, matching) => match key.read(r) {
                None => !matching,
                Some(v) => re.is_match(&v) == *matching,
            },
        }
    }

    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let tokens = tokens(text)?;
        let mut p = Parser { tokens, at: 0, text };
        let c = p.or()?;
        match p.tokens.get(p.at) {
            None => Ok(c),
            Some(t) => Err(p.error(t.at, format!("unexpected {:?}", t.text))),
        }
    }
}

/// Level names a condition may compare with, and their spellings in records.
fn level(name: &str) -> Option<Level> {
    Some(match name.to_ascii_lowercase().as_str() {
        "trace" => Level::Trace,
        "debug" => Level::Debug,
        "info" => Level::Info,
        "warn" | "warning" => Level::Warn,
        "error" => Level::Error,
        "fatal" | "critical" => Level::Fatal,
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word,
    Op,
    Str(String),
    Open,
    Close,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Tok,
    text: String,
    /// Byte offset in the condition.
    at: usize,
}

fn tokens(text: &str) -> Result<Vec<Token>, ConditionError> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    let column = |at: usize| text[..at].chars().count() + 1;
    while let Some(&(at, c)) = chars.peek() {
        let token = |kind, text: String| Token { kind, text, at };
        if c.is_whitespace() {
            chars.next();
        } else if c == '(' || c == ')' {
            chars.next();
            out.push(token(if c == '(' { Tok::Open } else { Tok::Close }, c.to_string()));
        } else if c == '"' || c == '\'' {
            chars.next();
            let mut s = String::new();
            let mut closed = false;
            while let Some((_, d)) = chars.next() {
                match d {
                    '\\' => match chars.next() {
                        Some((_, e)) if e == c || e == '\\' => s.push(e),
                        // Other escapes are the regex's: kept as written.
                        Some((_, e)) => {
                            s.push('\\');
                            s.push(e);
                        }
                        None => break,
                    },
                    d if d == c => {
                        closed = true;
                        break;
                    }
                    d => s.push(d),
                }
            }
            if !closed {
                return Err(ConditionError {
                    column: column(at),
                    message: "unterminated string".into(),
                });
            }
            out.push(token(Tok::Str(s), String::new()));
        } else if "=!<>~".contains(c) {
            let mut op = String::new();
            while let Some(&(_, d)) = chars.peek() {
                if !"=!<>~".contains(d) {
                    break;
                }
                op.push(d);
                chars.next();
            }
            out.push(token(Tok::Op, op));
        } else if c.is_alphanumeric() || c == '_' || c == '@' {
            let mut w = String::new();
            while let Some(&(_, d)) = chars.peek() {
                if !(d.is_alphanumeric() || "_.-@/".contains(d)) {
                    break;
                }
                w.push(d);
                chars.next();
            }
            out.push(token(Tok::Word, w));
        } else {
            return Err(ConditionError {
                column: column(at),
                message: format!("unexpected {c:?}"),
            });
        }
    }
    Ok(out)
}

struct Parser<'t> {
    tokens: Vec<Token>,
    at: usize,
    text: &'t str,
}

impl Parser<'_> {
    fn error(&self, at: usize, message: String) -> ConditionError {
        ConditionError {
            column: self.text.get(..at).map_or(1, |s| s.chars().count() + 1),
            message,
        }
    }

    fn end(&self) -> usize {
        self.text.len()
    }

    fn word(&mut self, w: &str) -> bool {
        let hit = self
            .tokens
            .get(self.at)
            .is_some_and(|t| t.kind == Tok::Word && t.text == w);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn or(&mut self) -> Result<Condition, ConditionError> {
        let mut c = self.and()?;
        while self.word("or") {
            c = Condition::Or(Box::new(c), Box::new(self.and()?));
        }
        Ok(c)
    }

    fn and(&mut self) -> Result<Condition, ConditionError> {
        let mut c = self.unary()?;
        while self.word("and") {
            c = Condition::And(Box::new(c), Box::new(self.unary()?));
        }
        Ok(c)
    }

    fn unary(&mut self) -> Result<Condition, ConditionError> {
        if self.word("not") {
            return Ok(Condition::Not(Box::new(self.unary()?)));
        }
        let Some(t) = self.tokens.get(self.at).cloned() else {
            return Err(self.error(self.end(), "a comparison is missing at the end".into()));
        };
        self.at += 1;
        match t.kind {
            Tok::Open => {
                let c = self.or()?;
                match self.tokens.get(self.at) {
                    Some(Token { kind: Tok::Close, .. }) => {
                        self.at += 1;
                        Ok(c)
                    }
                    _ => Err(self.error(t.at, "this ( is not closed".into())),
                }
            }
            Tok::Word => self.comparison(&t),
            _ => Err(self.error(
                t.at,
                "expected level, message, stream, file or fields.NAME, or not / (".into(),
            )),
        }
    }

    fn comparison(&mut self, subject: &Token) -> Result<Condition, ConditionError> {
        let key = KeyOf::parse(&subject.text).ok_or_else(|| self.error(subject.at, "an empty field name".into()))?;
        let (op, value) = match (self.tokens.get(self.at).cloned(), self.tokens.get(self.at + 1).cloned()) {
            (
                Some(op @ Token { kind: Tok::Op, .. }),
                Some(Token {
                    kind: Tok::Str(v), at, ..
                }),
            ) => (op, (v, at)),
            (Some(op @ Token { kind: Tok::Op, .. }), _) => {
                return Err(self.error(op.at, format!("{} needs a quoted value after it", op.text)))
            }
            _ => {
                return Err(self.error(
                    subject.at,
                    format!(
                        "{} needs an operator: == != =~ !~ (or < <= > >= for level)",
                        subject.text
                    ),
                ))
            }
        };
        self.at += 2;
        let (value, value_at) = value;
        match (op.text.as_str(), &key) {
            ("=~" | "!~", _) => {
                let re = Regex::new(&value).map_err(|e| self.error(value_at, format!("bad regex: {e}")))?;
                Ok(Condition::Matches(key, re, op.text == "=~"))
            }
            (o, KeyOf::Level) => {
                let order = match o {
                    "==" => Order::Eq,
                    "!=" => Order::Ne,
                    "<" => Order::Lt,
                    "<=" => Order::Le,
                    ">" => Order::Gt,
                    ">=" => Order::Ge,
                    other => return Err(self.error(op.at, format!("{other:?} is not an operator"))),
                };
                let want = level(&value).ok_or_else(|| {
                    self.error(
                        value_at,
                        format!("{value:?} is not a level (trace, debug, info, warn, error, fatal)"),
                    )
                })?;
                Ok(Condition::Level(order, want))
            }
            ("==" | "!=", _) => Ok(Condition::Equals(key, value, op.text == "==")),
            (other, _) => Err(self.error(op.at, format!("{other:?}: only level is ordered; use == != =~ !~"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::record::testing::{context, records, Rec};

    fn batch() -> Records {
        let recs = vec![
            Rec {
                level: Some(Level::Debug),
                message: Some("GET /healthz 200"),
                ..Default::default()
            },
            Rec {
                level: Some(Level::Info),
                message: Some("GET /orders 200"),
                fields: Some(json!({"user": "ana", "status": 200})),
                ..Default::default()
            },
            Rec {
                level: Some(Level::Error),
                message: Some("boom"),
                ..Default::default()
            },
            Rec {
                message: Some("no level"),
                ..Default::default()
            },
        ];
        std::sync::Arc::try_unwrap(records(context("/l/a.log", "x:", &[], &[]), recs)).unwrap()
    }

    fn kept(cond: &str, keep: bool) -> (Vec<String>, u64) {
        let mut r = batch();
        let f = Filter {
            condition: Condition::parse(cond).unwrap(),
            keep,
        };
        let dropped = f.apply(&mut r);
        let left = r
            .iter(0, r.end_position())
            .map(|x| x.message_text().into_owned())
            .collect();
        (left, dropped)
    }

    #[test]
    fn level_conditions_order_levels_and_missing_levels_match_only_not_equal() {
        assert_eq!(
            kept(r#"level >= "info""#, true),
            (vec!["GET /orders 200".to_owned(), "boom".to_owned()], 2)
        );
        let (left, dropped) = kept(r#"level < "info""#, false);
        assert_eq!((left.len(), dropped), (3, 1), "{left:?}");
        assert!(left.contains(&"no level".to_owned()));
    }

    #[test]
    fn regexes_fields_and_boolean_operators() {
        let (left, _) = kept(
            r#"message =~ "healthz" or (fields.user == "ana" and not level == "error")"#,
            false,
        );
        assert_eq!(left, vec!["boom", "no level"]);
        let (left, _) = kept(r#"fields.status == "200""#, true);
        assert_eq!(left, vec!["GET /orders 200"], "numbers compare as their text");
        let (left, _) = kept(r#"fields.user != 'ana'"#, true);
        assert_eq!(left.len(), 3, "missing fields are not equal: {left:?}");
    }

    #[test]
    fn mistakes_name_their_column() {
        for (cond, column, what) in [
            (r#"level >= "loud""#, 10, "not a level"),
            (r#"message =~ "(""#, 12, "bad regex"),
            (r#"message > "a""#, 9, "only level"),
            (r#"level >= "info" and"#, 20, "missing"),
            (r#"(level == "info""#, 1, "not closed"),
            (r#"message"#, 1, "needs an operator"),
            (r#"message == "x"#, 12, "unterminated"),
            (r#"message == "x" $"#, 16, "unexpected"),
        ] {
            let e = Condition::parse(cond).unwrap_err();
            assert_eq!(e.column, column, "{cond}: {e}");
            assert!(e.message.contains(what), "{cond}: {e}");
        }
    }
}
