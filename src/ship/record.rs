//! A borrowed view of one encoded NDJSON record, for the sinks that need its parts rather
//! than its bytes (Loki groups by labels taken from it).
//!
//! Why a view over the encoder's output rather than a second encoder: the NDJSON path is the
//! hot path of every sink and stays exactly as fast as it is; a sink that needs the parts
//! pays for one `serde_json` pass over its own batches only (strings are borrowed unless they
//! hold escapes). The record shape is the one of ARCHITECTURE.md, so the view is its contract.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::RecordKey;

#[derive(Debug, Deserialize)]
pub struct RecordView<'a> {
    #[serde(borrow)]
    pub timestamp: Cow<'a, str>,
    #[serde(borrow, default)]
    pub observed_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub level: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub stream: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub file: Option<Cow<'a, str>>,
    #[serde(default)]
    pub offset: Option<u64>,
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub fields: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub resource: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
}

impl<'a> RecordView<'a> {
    pub fn parse(line: &'a [u8]) -> Result<RecordView<'a>, serde_json::Error> {
        serde_json::from_slice(line)
    }

    /// The value of `key` as text: strings as they are, other JSON values (a number in
    /// `fields`) as their JSON text; `None` when the record does not have it.
    pub fn get(&self, key: &RecordKey) -> Option<Cow<'_, str>> {
        fn borrowed<'s>(v: &'s Option<Cow<'_, str>>) -> Option<Cow<'s, str>> {
            v.as_deref().map(Cow::Borrowed)
        }
        match key {
            RecordKey::Level => borrowed(&self.level),
            RecordKey::File => borrowed(&self.file),
            RecordKey::Stream => borrowed(&self.stream),
            RecordKey::Message => borrowed(&self.message),
            RecordKey::Resource(k) => self.resource.get(k.as_str()).map(|v| Cow::Borrowed(v.as_ref())),
            RecordKey::Field(k) => {
                let fields: BTreeMap<&str, &RawValue> = serde_json::from_str(self.fields?.get()).ok()?;
                let raw = fields.get(k.as_str())?.get();
                Some(match serde_json::from_str::<String>(raw) {
                    Ok(s) => Cow::Owned(s),
                    Err(_) => Cow::Owned(raw.to_owned()),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_a_record() {
        let line = br#"{"timestamp":"2026-01-01T00:00:00.000000001Z","observed_timestamp":"2026-01-01T00:00:01.000000000Z","level":"warn","message":"a \"q\"","file":"/l/a.log","offset":7,"id":"x-7","fields":{"user":"u1","n":3},"resource":{"k8s.pod.name":"web-1"}}"#;
        let r = RecordView::parse(line).unwrap();
        assert_eq!(r.get(&RecordKey::Level).as_deref(), Some("warn"));
        assert_eq!(r.get(&RecordKey::Message).as_deref(), Some("a \"q\""));
        assert_eq!(
            r.get(&RecordKey::Resource("k8s.pod.name".into())).as_deref(),
            Some("web-1")
        );
        assert_eq!(r.get(&RecordKey::Field("user".into())).as_deref(), Some("u1"));
        assert_eq!(r.get(&RecordKey::Field("n".into())).as_deref(), Some("3"));
        assert_eq!(r.get(&RecordKey::Field("nope".into())), None);
        assert_eq!(r.get(&RecordKey::Stream), None);
        assert_eq!(r.offset, Some(7));
    }
}
