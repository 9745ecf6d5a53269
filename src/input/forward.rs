//! The `forward` input: the Fluent Forward protocol over TCP (port 24224 by convention), what
//! fluent-logger libraries, Fluent Bit's `out_forward` and Docker's `fluentd` logging driver
//! speak. All four modes are read (`crate::forward::decode`); each message's entries become
//! spool lines (`forward_lines.rs`) and are written to the spool before a requested
//! `{"ack": chunk}` is sent.
//!
//! Pushback: when the spool is full the connection withholds the ack and stops reading (the
//! client's socket fills and its sends wait) until the spool has room again. Limits: a
//! message may not exceed `max_message_bytes` (before and after decompression) and must
//! arrive within `read_timeout` of the previous bytes; a malformed or oversized message is
//! counted (`requests_rejected`), logged, and its connection closed — the client's other
//! connections and every other client are served on.
//!
//! With a `shared_key`, every connection starts with the protocol's handshake (HELO with a
//! fresh random nonce, the client's PING proving it knows the key, our PONG proving we do):
//! a client that fails it gets a PONG saying so, and the connection is closed and counted
//! before anything it sends is read as a message.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::forward_lines;
use super::intake::Refused;
use super::listen::BoxFuture;
use super::Intake;
use crate::config::Secret;
use crate::forward::{decode, encode, handshake};
use crate::logsafe;
use crate::metrics::add;

/// While the spool is full, how long to wait before trying to keep a message again (the
/// first wait; it doubles up to `FULL_WAIT_MAX`).
const FULL_WAIT_MIN: Duration = Duration::from_millis(50);
const FULL_WAIT_MAX: Duration = Duration::from_secs(1);
const READ_SIZE: usize = 64 << 10;

/// Why a connection was closed by the input.
#[derive(Debug, thiserror::Error)]
enum Closed {
    #[error("{0}")]
    Decode(#[from] decode::Error),
    #[error("a message is over max_message_bytes ({max}) and still incomplete at {size} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("the spool cannot be written")]
    Spool,
    #[error("the connection ended (or went quiet past read_timeout) {bytes} bytes into a message")]
    Truncated { bytes: usize },
    #[error("{0}")]
    Handshake(#[from] handshake::Error),
    #[error("the client's PING does not prove the shared key")]
    WrongKey,
    #[error("no PING within read_timeout")]
    NoPing,
    #[error("the shared key cannot be read: {0}")]
    Key(std::io::Error),
    #[error("no random nonce from the system: {0}")]
    Nonce(String),
}

/// Serves each connection with `intake`'s spool and the source's limits.
pub fn serve(
    intake: Arc<Intake>,
    max_message_bytes: usize,
    read_timeout: Duration,
    shared_key: Option<Secret>,
) -> impl Fn(TcpStream) -> BoxFuture {
    let hostname = crate::config::system_hostname().unwrap_or_else(|| "tailship".into());
    move |stream| {
        let intake = Arc::clone(&intake);
        let key = shared_key.clone();
        let hostname = hostname.clone();
        Box::pin(async move {
            let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            let mut stream = stream;
            let served = match &key {
                Some(key) => shake(&mut stream, key, &hostname, read_timeout).await,
                None => Ok(()),
            };
            let served = match served {
                Ok(()) => connection(stream, &intake, max_message_bytes, read_timeout).await,
                Err(e) => Err(e),
            };
            if let Err(e) = served {
                add(&intake.metrics().requests_rejected, 1);
                tracing::warn!(source = %intake.metrics().name, peer = %peer, error = %e, "forward input: closing the connection");
            }
        })
    }
}

/// The server's half of the shared-key handshake: HELO, the client's PING checked, PONG.
async fn shake(stream: &mut TcpStream, key: &Secret, hostname: &str, read_timeout: Duration) -> Result<(), Closed> {
    // Read at each connection: a rotated key file is picked up without a restart.
    let key = key.reveal().map_err(Closed::Key)?;
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| Closed::Nonce(e.to_string()))?;
    if stream.write_all(&handshake::helo(&nonce)).await.is_err() {
        return Err(Closed::NoPing);
    }
    let mut buf = Vec::new();
    let mut scratch = [0u8; 4096];
    let ping = loop {
        if let Some((v, used)) = decode::next_value(&buf, PING_ELEMENTS)? {
            buf.drain(..used);
            break v;
        }
        if buf.len() > PING_BYTES {
            return Err(Closed::TooLarge {
                size: buf.len(),
                max: PING_BYTES,
            });
        }
        match tokio::time::timeout(read_timeout, stream.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&scratch[..n]),
            _ => return Err(Closed::NoPing),
        }
    };
    let ping = handshake::parse_ping(&ping)?;
    let ok = handshake::ping_ok(&ping, &nonce, key.as_bytes());
    let reason = if ok { "" } else { "shared key mismatch" };
    let pong = handshake::pong(&ping, ok, reason, hostname, &nonce, key.as_bytes());
    let _ = stream.write_all(&pong).await;
    if ok {
        Ok(())
    } else {
        Err(Closed::WrongKey)
    }
}

/// A PING has six short fields: more is not a PING.
const PING_ELEMENTS: usize = 64;
const PING_BYTES: usize = 64 << 10;

/// Reads messages until the client closes (or goes quiet past `read_timeout`, or sends what
/// cannot be read: `Err`).
async fn connection(
    mut stream: TcpStream,
    intake: &Arc<Intake>,
    max: usize,
    read_timeout: Duration,
) -> Result<(), Closed> {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_SIZE);
    let mut scratch = vec![0u8; READ_SIZE];
    loop {
        while let Some((value, used)) = decode::next_value(&buf, decode::element_budget(max))? {
            buf.drain(..used);
            let msg = decode::message(value, max)?;
            if !keep(intake, &msg).await? {
                return Ok(());
            }
            if let Some(chunk) = &msg.chunk {
                if stream.write_all(&encode::ack(chunk)).await.is_err() {
                    return Ok(());
                }
            }
        }
        if buf.len() > max {
            return Err(Closed::TooLarge { size: buf.len(), max });
        }
        let n = match tokio::time::timeout(read_timeout, stream.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => n,
            // Between messages, a quiet client is closed without a fuss: it reconnects when it
            // has more.
            _ if buf.is_empty() => return Ok(()),
            _ => return Err(Closed::Truncated { bytes: buf.len() }),
        };
        add(&intake.metrics().bytes_received, n as u64);
        buf.extend_from_slice(&scratch[..n]);
    }
}

/// Writes a message's entries to the spool, waiting while it is full (pushback: nothing is
/// read meanwhile). Ok(false): the runtime is stopping.
async fn keep(intake: &Arc<Intake>, msg: &decode::Message) -> Result<bool, Closed> {
    let lines = forward_lines::to_lines(msg, intake.max_line_bytes);
    if lines.rejected > 0 {
        add(&intake.metrics().records_rejected, lines.rejected);
        let reason = lines.reason.as_deref().unwrap_or("");
        tracing::warn!(source = %intake.metrics().name, tag = %logsafe::escape(&msg.tag), rejected = lines.rejected, reason, "forward input: records refused");
    }
    if lines.accepted == 0 {
        return Ok(true);
    }
    let lines = Arc::new(lines);
    let mut wait = FULL_WAIT_MIN;
    loop {
        let (i, l) = (Arc::clone(intake), Arc::clone(&lines));
        let kept = tokio::task::spawn_blocking(move || i.keep(&l.bytes, l.accepted)).await;
        match kept {
            Ok(Ok(())) => return Ok(true),
            Ok(Err(Refused::Full(_))) => {}
            Ok(Err(Refused::Failed)) => return Err(Closed::Spool),
            // The blocking pool is shutting down: the runtime is stopping.
            Err(_) => return Ok(false),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(FULL_WAIT_MAX);
    }
}
