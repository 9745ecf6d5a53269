//! The kafka sink's librdkafka producer: its configuration from `KafkaSettings` (acks=all and
//! idempotence, messages that never time out, compression, TLS, SASL), and its context — the
//! callbacks librdkafka's polling thread calls: a message's delivery report, the client's
//! errors and its log lines.
//!
//! A delivery report is counted against its batch's `Acks`; the last report of a batch sends
//! the batch's number to the sink thread, so the channel carries one message per batch, not one
//! per record. Which errors are permanent (the record is dead-lettered) is decided here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::config::{BatchSettings, KafkaSettings, Secret};
use crate::metrics::Metrics;

pub type KafkaProducer = ThreadedProducer<Context>;

/// librdkafka's own lingering after a batch is handed over: short, as the batch has already
/// lingered in the sink's batcher.
const CLIENT_LINGER_MS: &str = "5";
/// The most librdkafka puts in one produce request per partition (its default).
const MAX_CLIENT_BATCH_BYTES: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka sink {sink}: create the producer: {source}")]
    Client { sink: String, source: KafkaError },
    #[error("kafka sink {sink}: read sasl.password_file {path}: {source}")]
    Password {
        sink: String,
        path: String,
        source: std::io::Error,
    },
}

/// The delivery reports still due for one batch, and its records that failed.
#[derive(Debug)]
pub struct Acks {
    seq: u64,
    remaining: AtomicUsize,
    failed: Mutex<Vec<(u32, KafkaError)>>,
}

impl Acks {
    pub fn new(seq: u64, items: usize) -> Arc<Acks> {
        Arc::new(Acks {
            seq,
            remaining: AtomicUsize::new(items),
            failed: Mutex::new(Vec::new()),
        })
    }

    /// Item `item` is settled (acknowledged, or failed with `error`); the batch's last one
    /// tells the sink thread.
    pub fn done(&self, item: u32, error: Option<KafkaError>, tell: &Sender<u64>) {
        if let Some(e) = error {
            self.failed.lock().unwrap_or_else(|p| p.into_inner()).push((item, e));
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = tell.send(self.seq);
        }
    }

    /// The items that failed, in item order.
    pub fn take_failed(&self) -> Vec<(u32, KafkaError)> {
        let mut f = std::mem::take(&mut *self.failed.lock().unwrap_or_else(|p| p.into_inner()));
        f.sort_by_key(|(i, _)| *i);
        f
    }
}

/// What travels with a message through librdkafka to its delivery report.
pub struct Pending {
    pub acks: Arc<Acks>,
    pub item: u32,
}

/// The callbacks of one sink's producer.
pub struct Context {
    sink: String,
    index: usize,
    metrics: Arc<Metrics>,
    /// The sink thread's channel of settled batches.
    tell: Sender<u64>,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        let sink = &self.sink;
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(sink, facility, "librdkafka: {line}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(sink, facility, "librdkafka: {line}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(sink, facility, "librdkafka: {line}"),
            RDKafkaLogLevel::Debug => tracing::debug!(sink, facility, "librdkafka: {line}"),
        }
    }

    /// Errors of the client as a whole (brokers down, authentication): librdkafka retries
    /// them itself; they are counted and make the sink look down until the next delivery. A
    /// broker connection failing is already in librdkafka's own log line, so it is not logged
    /// twice.
    fn error(&self, error: KafkaError, reason: &str) {
        let m = &self.metrics.sinks[self.index];
        m.kafka.error(&kind(&error));
        m.failed();
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::BrokerTransportFailure) {
            tracing::debug!(sink = %self.sink, error = %error, "kafka: {reason}");
        } else {
            tracing::warn!(sink = %self.sink, error = %error, "kafka: {reason}");
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = Box<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Box<Pending>) {
        let k = &self.metrics.sinks[self.index].kafka;
        let error = match result {
            Ok(m) => {
                k.acknowledged(m.topic(), m.partition(), m.offset());
                None
            }
            Err((e, _)) => {
                k.error(&kind(e));
                Some(e.clone())
            }
        };
        pending.acks.done(pending.item, error, &self.tell);
    }
}

/// An error's kind for the metrics: librdkafka's name for its code.
pub fn kind(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => "Other".to_owned(),
    }
}

/// Whether the brokers will never take this record, however often it is sent: too large, a
/// topic that does not exist or may not be written, a record or compression they refuse.
/// Everything else (brokers down, leader changes, timeouts, a producer fenced) is retried.
pub fn permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidMessage
                | C::InvalidRecord
                | C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::UnknownPartition
                | C::InvalidTopic
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::PolicyViolation
                | C::UnsupportedCompressionType
                | C::UnsupportedForMessageFormat
        )
    )
}

/// Whether the producer is unusable after this error (an idempotence failure it cannot
/// recover from) and must be made anew.
pub fn fatal(e: &KafkaError) -> bool {
    e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal)
}

/// librdkafka's configuration for a sink.
pub fn config(sink: &str, k: &KafkaSettings, batch: &BatchSettings) -> Result<ClientConfig, Error> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", k.brokers.join(","))
        .set("client.id", format!("tailship-{sink}"))
        // Every in-sync replica has the record before it counts as delivered, and retries
        // never write it twice or out of order within this producer's session.
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Never give a message up: an outage is waited out (the files are the buffer);
        // only what the brokers refuse for good fails.
        .set("message.timeout.ms", "0")
        .set("compression.codec", k.compression.codec())
        .set("linger.ms", CLIENT_LINGER_MS)
        .set("batch.size", batch.max_bytes.min(MAX_CLIENT_BATCH_BYTES).to_string())
        .set("message.max.bytes", k.message_max_bytes.to_string())
        .set("socket.keepalive.enable", "true")
        .set_log_level(RDKafkaLogLevel::Warning);
    let protocol = match (&k.tls, &k.sasl) {
        (None, None) => "plaintext",
        (Some(_), None) => "ssl",
        (None, Some(_)) => "sasl_plaintext",
        (Some(_), Some(_)) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if let Some(tls) = &k.tls {
        if let Some(ca) = &tls.ca_file {
            c.set("ssl.ca.location", ca.display().to_string());
        }
        if let Some((cert, key)) = &tls.client_cert {
            c.set("ssl.certificate.location", cert.display().to_string())
                .set("ssl.key.location", key.display().to_string());
        }
        if tls.insecure_skip_verify {
            c.set("enable.ssl.certificate.verification", "false")
                .set("ssl.endpoint.identification.algorithm", "none");
        }
    }
    if let Some(sasl) = &k.sasl {
        let password = sasl.password.reveal().map_err(|source| Error::Password {
            sink: sink.to_owned(),
            path: match &sasl.password {
                Secret::File(p) => p.display().to_string(),
                Secret::Value(_) => String::new(),
            },
            source,
        })?;
        c.set("sasl.mechanisms", sasl.mechanism)
            .set("sasl.username", &sasl.user)
            .set("sasl.password", password);
    }
    Ok(c)
}

/// Makes the sink's producer; its delivery reports come on `tell`.
pub fn build(
    sink: &str,
    index: usize,
    k: &KafkaSettings,
    batch: &BatchSettings,
    metrics: &Arc<Metrics>,
    tell: Sender<u64>,
) -> Result<KafkaProducer, Error> {
    let config = config(sink, k, batch)?;
    let context = Context {
        sink: sink.to_owned(),
        index,
        metrics: Arc::clone(metrics),
        tell,
    };
    ThreadedProducer::from_config_and_context(&config, context).map_err(|source| Error::Client {
        sink: sink.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_and_retried_errors() {
        let e = |c| KafkaError::MessageProduction(c);
        assert!(permanent(&e(RDKafkaErrorCode::MessageSizeTooLarge)));
        assert!(permanent(&e(RDKafkaErrorCode::TopicAuthorizationFailed)));
        assert!(!permanent(&e(RDKafkaErrorCode::BrokerTransportFailure)));
        assert!(!permanent(&e(RDKafkaErrorCode::MessageTimedOut)));
        assert!(fatal(&e(RDKafkaErrorCode::Fatal)));
        assert_eq!(kind(&e(RDKafkaErrorCode::MessageSizeTooLarge)), "MessageSizeTooLarge");
    }

    #[test]
    fn the_last_report_of_a_batch_tells_the_sink_once() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let acks = Acks::new(7, 3);
        acks.done(
            2,
            Some(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)),
            &tx,
        );
        acks.done(0, None, &tx);
        assert!(rx.try_recv().is_err());
        acks.done(
            1,
            Some(KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord)),
            &tx,
        );
        assert_eq!(rx.try_recv().ok(), Some(7));
        let failed: Vec<u32> = acks.take_failed().into_iter().map(|(i, _)| i).collect();
        assert_eq!(failed, [1, 2]);
    }
}
