//! What differs between the HTTP sinks: the protocol. Each protocol's file (`ship::otlp`,
//! `ship::loki`, `ship::splunk`, `ship::elasticsearch`, and `Plain` here for `type = "http"`)
//! says its content type, writes its body from the records, and reads its answer; the common
//! machinery in `ship::http` (client, retries, compression, concurrency, dead letters, in-order
//! acknowledgement) asks it through this trait. The protocol is chosen once, when the sink
//! starts.

use std::sync::Mutex;

use bytes::Bytes;

use super::payload::Payload;
use crate::config::{Api, Framing, HttpSettings};
use crate::ship::elasticsearch::{Elasticsearch, IndexNames, Verdict};
use crate::ship::loki::Loki;
use crate::ship::otlp::Otlp;
use crate::ship::splunk::Splunk;

/// A body that could not be written (never expected: the records are ours; the batch is then
/// dead-lettered with this reason rather than retried forever).
#[derive(Debug, thiserror::Error)]
#[error("cannot write the {protocol} request body: {source}")]
pub struct BodyError {
    pub protocol: &'static str,
    pub source: serde_json::Error,
}

/// What a 2xx answer says.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Every record was taken.
    Delivered,
    /// The collector took the request but rejected `rejected` records without saying which
    /// (OTLP `partial_success`): they cannot be sent again or dead-lettered, only counted.
    Partial { rejected: i64, message: String },
    /// A verdict per record of the request, in order (Elasticsearch `_bulk`).
    PerItem(Vec<Verdict>),
    /// An answer that should say more but cannot be read: send the whole request again.
    Unreadable(String),
}

/// One HTTP protocol. See the module doc.
pub trait Protocol: Send + Sync {
    /// Its name, for messages.
    fn name(&self) -> &'static str;

    /// The `Content-Type` of its bodies.
    fn content_type(&self) -> &'static str;

    /// The body (before compression) for the records `items` of `payload`.
    fn body(&self, payload: &Payload, items: &[usize]) -> Result<Bytes, BodyError>;

    /// Fixed headers of its own (Loki's tenant).
    fn headers(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Whether a 2xx answer's body is needed by `answer` (else it is read and dropped).
    fn reads_answer(&self) -> bool {
        false
    }

    /// What a 2xx answer's body says about the `n` records of the request.
    fn answer(&self, _body: &[u8], _n: usize) -> Answer {
        Answer::Delivered
    }
}

/// The protocol of a sink's settings.
pub fn of(http: &HttpSettings) -> Box<dyn Protocol> {
    match &http.api {
        Api::Plain => Box::new(Plain { framing: http.framing }),
        Api::Elasticsearch(target) => Box::new(Elasticsearch {
            target: target.clone(),
            names: Mutex::new(IndexNames::default()),
        }),
        Api::Loki(settings) => Box::new(Loki {
            settings: settings.clone(),
        }),
        Api::Otlp { json } => Box::new(Otlp { json: *json }),
        Api::SplunkHec(settings) => Box::new(Splunk {
            settings: settings.clone(),
        }),
    }
}

/// `type = "http"`: the records as NDJSON (the sink thread encodes them), or as a JSON array.
pub struct Plain {
    pub framing: Framing,
}

impl Protocol for Plain {
    fn name(&self) -> &'static str {
        "http"
    }

    fn content_type(&self) -> &'static str {
        match self.framing {
            Framing::Ndjson => "application/x-ndjson",
            Framing::JsonArray => "application/json",
        }
    }

    fn body(&self, payload: &Payload, items: &[usize]) -> Result<Bytes, BodyError> {
        let whole = match payload {
            // The protocol always sends the whole batch: the encoded bytes are the body.
            Payload::Ndjson { bytes, .. } => bytes.clone(),
            Payload::Records { .. } => {
                let mut out = Vec::new();
                payload.ndjson_of(items, &mut out);
                Bytes::from(out)
            }
        };
        Ok(match self.framing {
            Framing::Ndjson => whole,
            Framing::JsonArray => Bytes::from(json_array(&whole)),
        })
    }
}

/// `[r1,r2,…]` from `r1\nr2\n…`: an encoded record never holds a raw newline (JSON escapes
/// it), so every newline is a record boundary.
fn json_array(ndjson: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ndjson.len() + 2);
    out.push(b'[');
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', ndjson) {
        if start > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&ndjson[start..nl]);
        start = nl + 1;
    }
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_protocol_frames_the_batch_as_it_is_or_as_an_array() {
        let ndjson = Bytes::from_static(b"{\"a\":1}\n{\"b\":\"x\\ny\"}\n");
        let payload = Payload::ndjson(ndjson.clone(), Vec::new());
        let plain = Plain {
            framing: Framing::Ndjson,
        };
        assert_eq!(plain.body(&payload, &[0, 1]).unwrap(), ndjson);
        assert_eq!(plain.content_type(), "application/x-ndjson");
        let array = Plain {
            framing: Framing::JsonArray,
        };
        let body = array.body(&payload, &[0, 1]).unwrap();
        assert_eq!(&body[..], b"[{\"a\":1},{\"b\":\"x\\ny\"}]");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(array.content_type(), "application/json");
    }
}
