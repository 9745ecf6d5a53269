//! What one Kafka message is made of, per record: its topic (fixed, or a template over record
//! keys), its key (a record key, by default the file, so a file's lines stay in one partition
//! and in order), its value (the record's NDJSON or the line as read), its timestamp, and the
//! record `id` as the `id` header, so consumers can drop the duplicates a replay brings.
//!
//! A batch's messages are its items: with `encoding = "ndjson"` its records (positions in
//! their `Records`), with `"raw"` the lines of their chunks (byte positions), since a raw sink
//! ships the lines as read whatever the source's format.

use std::borrow::Cow;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use super::producer::Pending;
use crate::config::{topic_name_problem, Encoding, RecordKey, Topic, TopicPart};
use crate::record::{Context, RecordRef, Records};
use crate::ship::batcher::Part;
use crate::ship::encode::Encoder;
use crate::ship::loki::key_text;

/// One message of a batch: the part it is in, and its position there.
#[derive(Debug, Clone, Copy)]
pub struct Item {
    pub part: u32,
    pub pos: u32,
}

/// The items of a batch's parts, in order.
pub fn items(parts: &[Part], raw: bool, out: &mut Vec<Item>) {
    for (i, p) in parts.iter().enumerate() {
        let mut pos = p.from;
        while pos < p.to {
            let next = if raw {
                match &p.records.chunk {
                    Some(c) if pos < c.data.len() => c.line_at(pos).next,
                    _ => break,
                }
            } else {
                match p.records.record_at(pos) {
                    Some((_, next)) => next,
                    None => break,
                }
            };
            out.push(Item {
                part: i as u32,
                pos: pos as u32,
            });
            pos = next;
        }
    }
}

/// Makes the messages of a sink: its topic, key and encoding, and reused buffers.
pub struct Messages {
    topic: Topic,
    key: Option<RecordKey>,
    raw: bool,
    /// NDJSON of a record sent again or dead-lettered (a first send copies the batch's).
    ndjson: Encoder,
    topic_buf: String,
    key_buf: String,
    value_buf: Vec<u8>,
}

/// A message ready for `producer.send`, borrowing the batch and the buffers.
pub type Out<'a> = BaseRecord<'a, str, [u8], Box<Pending>>;

impl Messages {
    pub fn new(topic: Topic, key: Option<RecordKey>, raw: bool) -> Messages {
        Messages {
            topic,
            key,
            raw,
            ndjson: Encoder::new(Encoding::Ndjson),
            topic_buf: String::new(),
            key_buf: String::new(),
            value_buf: Vec::new(),
        }
    }

    /// The message of `item`; `value`: its NDJSON line from the batch when there is one
    /// (else it is encoded here). `None` if the item is not in its part (cannot happen for
    /// items made by `items` from the same parts).
    pub fn message<'a>(
        &'a mut self,
        parts: &'a [Part],
        item: Item,
        value: Option<&'a [u8]>,
        pending: Box<Pending>,
    ) -> Option<Out<'a>> {
        let Messages {
            topic: template,
            key: key_of,
            raw,
            ndjson,
            topic_buf,
            key_buf,
            value_buf,
        } = self;
        let records: &'a Records = &parts.get(item.part as usize)?.records;
        let ctx = &records.context;
        let pos = item.pos as usize;
        let (record, value, offset, time_ns) = if *raw {
            let chunk = records.chunk.as_ref()?;
            let line = (pos < chunk.data.len()).then(|| chunk.line_at(pos))?;
            (
                None,
                &chunk.data[pos..line.end],
                chunk.start + pos as u64,
                chunk.observed_ns,
            )
        } else {
            let (r, _) = records.record_at(pos)?;
            let value: &'a [u8] = match value {
                Some(v) => v,
                None => {
                    value_buf.clear();
                    ndjson.record(&r, value_buf);
                    value_buf
                }
            };
            let (offset, time) = (r.offset, r.time_or_observed());
            (Some(r), value, offset, time)
        };
        let id = format!("{}{offset}", ctx.file.id_prefix);
        let key: Option<&'a str> = match key_of.as_ref().and_then(|k| resolve(k, ctx, record.as_ref())) {
            Some(Cow::Borrowed(k)) => Some(k),
            Some(Cow::Owned(k)) => {
                *key_buf = k;
                Some(key_buf.as_str())
            }
            None => None,
        };
        let topic = topic(template, ctx, record.as_ref(), topic_buf);
        // librdkafka copies the headers, key, value and topic: nothing here outlives `send`.
        let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: "id",
            value: Some(id.as_str()),
        });
        let mut out: Out<'a> = BaseRecord::with_opaque_to(topic, pending)
            .payload(value)
            .headers(headers)
            .timestamp(time_ns.div_euclid(1_000_000));
        if let Some(k) = key {
            out = out.key(k);
        }
        Some(out)
    }

    /// The dead-letter file's line for `item`: the record's NDJSON, or for a raw line a record
    /// of its file, offset, id and the line as its message.
    pub fn dead_letter_line(&mut self, parts: &[Part], item: Item, out: &mut Vec<u8>) {
        let Some(p) = parts.get(item.part as usize) else { return };
        let records = &p.records;
        let pos = item.pos as usize;
        if !self.raw {
            if let Some((r, _)) = records.record_at(pos) {
                self.ndjson.record(&r, out);
                out.push(b'\n');
            }
            return;
        }
        let Some(chunk) = records.chunk.as_ref().filter(|c| pos < c.data.len()) else {
            return;
        };
        let line = chunk.line_at(pos);
        let offset = chunk.start + pos as u64;
        let record = serde_json::json!({
            "message": String::from_utf8_lossy(&chunk.data[pos..line.end]),
            "file": &*records.context.file.path,
            "offset": offset,
            "id": format!("{}{offset}", records.context.file.id_prefix),
        });
        let _ = serde_json::to_writer(&mut *out, &record);
        out.push(b'\n');
    }
}

/// The value of `key` for a record of `ctx` (`record`: `None` for a raw line, whose keys the
/// config limited to the file and resource attributes).
fn resolve<'a>(key: &RecordKey, ctx: &'a Context, record: Option<&RecordRef<'a>>) -> Option<Cow<'a, str>> {
    match key {
        RecordKey::File => Some(Cow::Borrowed(&*ctx.file.path)),
        RecordKey::Resource(k) => ctx.resource.get(k.as_str()).map(|v| Cow::Borrowed(v.as_str())),
        _ => record.and_then(|r| key_text(r, key)),
    }
}

/// The topic of a record: the fixed one, or the template filled in (`buf`), or its default when
/// a key is missing or the result is not a topic name.
fn topic<'a>(topic: &'a Topic, ctx: &Context, record: Option<&RecordRef<'_>>, buf: &'a mut String) -> &'a str {
    let (parts, default) = match topic {
        Topic::Fixed(t) => return t,
        Topic::Template { parts, default } => (parts, default),
    };
    buf.clear();
    for p in parts {
        match p {
            TopicPart::Text(t) => buf.push_str(t),
            TopicPart::Key(k) => match resolve(k, ctx, record) {
                Some(v) => buf.push_str(&v),
                None => return default,
            },
        }
    }
    if topic_name_problem(buf).is_some() {
        return default;
    }
    buf
}
