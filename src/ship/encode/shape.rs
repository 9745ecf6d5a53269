//! The output shape of an NDJSON sink: the names of the record's top-level keys (`message` →
//! `log`, `timestamp` → `@timestamp`, …), from a preset — `tailship` (the record of
//! ARCHITECTURE.md), `ecs`, `otel` — with the sink's own `keys` over it, so a receiver built
//! for another agent's shape keeps working. Only names change; values, key order and the
//! members of `fields` and `resource` stay.
//!
//! The names are rendered once into the byte runs the encoder copies (`Rendered`), so a shape
//! costs nothing per record. Renderings are shared only between sinks of one shape
//! (`Shape::id`, kept in `record::Rendering::shape`).

use super::write_str;

/// The record's top-level keys, in the order the encoder writes them.
pub const TOP_KEYS: [&str; 10] = [
    "timestamp",
    "observed_timestamp",
    "level",
    "message",
    "stream",
    "file",
    "offset",
    "id",
    "fields",
    "resource",
];

/// The presets' names, for messages.
pub const SHAPE_NAMES: &str = "tailship, ecs, otel";

/// Elastic Common Schema names (as dotted keys, which Elasticsearch reads as objects).
const ECS: [&str; 10] = [
    "@timestamp",
    "event.created",
    "log.level",
    "message",
    "stream",
    "log.file.path",
    "log.offset",
    "event.id",
    "fields",
    "resource",
];

/// The OpenTelemetry log data model's fields, flattened, with the semantic conventions'
/// attribute names for where a line came from.
const OTEL: [&str; 10] = [
    "timestamp",
    "observed_timestamp",
    "severity_text",
    "body",
    "log.iostream",
    "log.file.path",
    "log.file.offset",
    "log.record.uid",
    "attributes",
    "resource",
];

/// A shape that cannot be used; each names the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    #[error("shape {0:?} is not a preset; one of: {SHAPE_NAMES}")]
    Preset(String),
    #[error("keys.{0}: not a top-level key of the record; one of: {keys}", keys = TOP_KEYS.join(", "))]
    Key(String),
    #[error("keys.{0}: the name cannot be empty")]
    Empty(String),
    #[error("keys: {0:?} would name two keys")]
    Twice(String),
}

/// The names of one shape, and their rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    names: [String; 10],
    /// Tells renderings of different shapes apart (a hash of the names).
    pub id: u64,
    pub(super) r: Rendered,
}

/// The byte runs of a shape's names, as the encoder writes them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Rendered {
    /// `{"timestamp":"`
    pub ts_open: Vec<u8>,
    /// `","observed_timestamp":"`
    pub observed: Vec<u8>,
    /// `,"level":"`
    pub level: Vec<u8>,
    /// `,"message":`
    pub message: Vec<u8>,
    /// `,"stream":"`
    pub stream: Vec<u8>,
    /// `","file":`
    pub file: Vec<u8>,
    /// `,"offset":`
    pub offset: Vec<u8>,
    /// `,"id":"`
    pub id: Vec<u8>,
    /// `,"fields":{`
    pub fields: Vec<u8>,
    /// `,"resource":{`
    pub resource: Vec<u8>,
}

impl Default for Shape {
    fn default() -> Shape {
        Shape::new(TOP_KEYS.map(String::from))
    }
}

impl Shape {
    /// A preset with `keys` (record key → name) over it.
    pub fn build(preset: Option<&str>, keys: &[(String, String)]) -> Result<Shape, ShapeError> {
        let base = match preset.unwrap_or("tailship") {
            "tailship" => TOP_KEYS,
            "ecs" => ECS,
            "otel" => OTEL,
            other => return Err(ShapeError::Preset(other.to_owned())),
        };
        let mut names = base.map(String::from);
        for (key, name) in keys {
            let i = TOP_KEYS
                .iter()
                .position(|k| k == key)
                .ok_or_else(|| ShapeError::Key(key.clone()))?;
            if name.is_empty() {
                return Err(ShapeError::Empty(key.clone()));
            }
            names[i] = name.clone();
        }
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(ShapeError::Twice(n.clone()));
            }
        }
        Ok(Shape::new(names))
    }

    fn new(names: [String; 10]) -> Shape {
        let q = |n: &str| {
            let mut v = Vec::new();
            write_str(&mut v, n.as_bytes());
            v
        };
        let join = |a: &[u8], n: &str, b: &[u8]| [a, &q(n), b].concat();
        let r = Rendered {
            ts_open: join(b"{", &names[0], b":\""),
            observed: join(b"\",", &names[1], b":\""),
            level: join(b",", &names[2], b":\""),
            message: join(b",", &names[3], b":"),
            stream: join(b",", &names[4], b":\""),
            file: join(b"\",", &names[5], b":"),
            offset: join(b",", &names[6], b":"),
            id: join(b",", &names[7], b":\""),
            fields: join(b",", &names[8], b":{"),
            resource: join(b",", &names[9], b":{"),
        };
        let id = xxhash_rust::xxh3::xxh3_64(names.join("\0").as_bytes());
        Shape { names, id, r }
    }

    /// The name the record key `key` has in this shape.
    pub fn name(&self, key: &str) -> Option<&str> {
        TOP_KEYS.iter().position(|k| *k == key).map(|i| self.names[i].as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_overrides() {
        let s = Shape::build(Some("ecs"), &[("message".into(), "log".into())]).unwrap();
        assert_eq!(s.name("timestamp"), Some("@timestamp"));
        assert_eq!(s.name("message"), Some("log"));
        assert_eq!(s.r.ts_open, br#"{"@timestamp":""#);
        assert_eq!(Shape::build(None, &[]).unwrap(), Shape::default());
        assert_ne!(Shape::default().id, s.id);
        assert_eq!(Shape::build(Some("otel"), &[]).unwrap().name("message"), Some("body"));
    }

    #[test]
    fn mistakes_are_refused() {
        assert!(matches!(Shape::build(Some("gelf"), &[]), Err(ShapeError::Preset(_))));
        assert!(matches!(
            Shape::build(None, &[("msg".into(), "x".into())]),
            Err(ShapeError::Key(_))
        ));
        assert!(matches!(
            Shape::build(None, &[("message".into(), "".into())]),
            Err(ShapeError::Empty(_))
        ));
        assert!(matches!(
            Shape::build(None, &[("message".into(), "level".into())]),
            Err(ShapeError::Twice(_))
        ));
    }
}
