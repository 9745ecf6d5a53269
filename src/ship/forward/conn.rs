//! The forward sink's connection to the aggregator, run on its own small tokio runtime
//! (thread `forward-NAME`): connect (TLS if configured), the shared-key handshake if
//! configured, then write every chunk the sink thread hands over and read the acks.
//!
//! It keeps the chunks written and not yet acknowledged (the sink thread bounds them): after
//! any reconnect they are all written again, in order — duplicates, never loss. A chunk whose
//! ack is withheld past `ack_timeout` drops the connection (then the same). A chunk after
//! which the aggregator closes the connection `POISON_CLOSES` times in a row without acking
//! anything is given up as refused (the sink thread dead-letters it). Without
//! `require_ack_response` a chunk counts as delivered once written.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::ForwardSettings;
use crate::forward::{decode, handshake};
use crate::logsafe;
use crate::metrics::{add, Metrics};
use crate::ship::backoff::Backoff;
use crate::ship::resolve;
use crate::ship::tls;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// An aggregator that stops reading must not hang the sink: past this a write fails and the
/// connection is made anew.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The handshake's messages must come within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Closes in a row after which the oldest unacknowledged chunk is taken as refused.
pub const POISON_CLOSES: u32 = 5;
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// An ack is a few dozen bytes; a server sending more than this without a whole msgpack
/// value is not speaking the protocol.
const MAX_ANSWER_BYTES: usize = 64 << 10;
/// An answer (an ack, a HELO, a PONG) has a handful of elements; more is not an answer.
const ANSWER_ELEMENTS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connect to {address}: {source}")]
    Connect { address: String, source: io::Error },
    #[error("{address}: {source}")]
    Io { address: String, source: io::Error },
    #[error("{address}: TLS: {source}")]
    Tls { address: String, source: tls::Error },
    #[error("{address}: {source}")]
    Handshake { address: String, source: handshake::Error },
    #[error("{address}: the server's answer is not msgpack: {source}")]
    Answer { address: String, source: decode::Error },
    #[error("{address} closed the connection")]
    Closed { address: String },
    #[error("{address}: no ack for {secs}s (ack_timeout)")]
    AckTimeout { address: String, secs: u64 },
}

/// A chunk to send: its number in the sink, its chunk id and the whole message.
pub struct Chunk {
    pub seq: u64,
    pub id: String,
    pub message: Arc<Vec<u8>>,
}

/// What the connection tells the sink thread.
#[derive(Debug)]
pub enum Told {
    /// The aggregator has chunk `seq`.
    Acked(u64),
    /// Chunk `seq` was given up as refused: the aggregator closed the connection after it
    /// `POISON_CLOSES` times.
    Refused(u64, String),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Sent {
    chunk: Chunk,
    /// When it was last written (for `ack_timeout`).
    at: Instant,
}

/// The connection task's state.
pub struct Conn {
    pub settings: Box<ForwardSettings>,
    pub sink: String,
    pub index: usize,
    pub metrics: Arc<Metrics>,
    pub chunks: mpsc::UnboundedReceiver<Chunk>,
    pub tell: Sender<Told>,
    pub stop: watch::Receiver<bool>,
    pub tls: Option<tls::Connector>,
}

/// Why serving one connection ended.
enum End {
    /// The sink has no more chunks and every chunk is acknowledged (or the stop).
    Done,
    Failed(Error),
}

impl Conn {
    /// Runs until the sink thread has handed over its last chunk and every chunk is
    /// acknowledged, or until the stop.
    pub async fn run(mut self) {
        let mut window: VecDeque<Sent> = VecDeque::new();
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        let mut failures = 0u32;
        // Closes in a row with no ack in between: the oldest chunk may be what the server
        // cannot take.
        let mut closes = 0u32;
        let mut open = true;
        loop {
            let mut acked = false;
            let served = match self.connect().await {
                Ok(stream) => {
                    self.up(true);
                    self.serve(stream, &mut window, &mut open, &mut acked).await
                }
                Err(e) => End::Failed(e),
            };
            let e = match served {
                End::Done => return,
                End::Failed(e) => e,
            };
            self.up(false);
            let m = &self.metrics.sinks[self.index];
            m.failed();
            add(&m.retries, 1);
            if acked {
                backoff.reset();
                failures = 0;
                closes = 0;
            }
            failures = failures.saturating_add(1);
            // Logged at the 1st, 2nd, 4th, 8th, ... failure in a row: a down aggregator is
            // not a warning per second.
            if failures.is_power_of_two() {
                tracing::warn!(sink = %self.sink, error = %e, failures, unacknowledged = window.len(), "forward: connection failed; reconnecting and sending the unacknowledged chunks again");
            }
            if matches!(e, Error::Closed { .. } | Error::Io { .. }) && !window.is_empty() {
                closes += 1;
                if closes >= POISON_CLOSES {
                    if let Some(s) = window.pop_front() {
                        let why = format!("the server closed the connection {closes} times in a row after this chunk without acknowledging anything ({e})");
                        let _ = self.tell.send(Told::Refused(s.chunk.seq, why));
                    }
                    closes = 0;
                }
            }
            if self.wait(backoff.next_delay(), &mut window, &mut open).await {
                return;
            }
            if !open && window.is_empty() {
                return;
            }
        }
    }

    fn up(&self, up: bool) {
        self.metrics.sinks[self.index]
            .up
            .store(u64::from(up), Ordering::Relaxed);
    }

    /// Sleeps `delay` while taking new chunks into the window; true at the stop.
    async fn wait(&mut self, delay: Duration, window: &mut VecDeque<Sent>, open: &mut bool) -> bool {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return false,
                _ = self.stop.changed() => return true,
                c = self.chunks.recv(), if *open => match c {
                    Some(chunk) => window.push_back(Sent { chunk, at: Instant::now() }),
                    None => *open = false,
                },
            }
        }
    }

    async fn connect(&self) -> Result<Box<dyn Io>, Error> {
        let address = &self.settings.address;
        let err = |source| Error::Connect {
            address: address.clone(),
            source,
        };
        let a = address.clone();
        // Not tokio's lookup: no glibc NSS in the static binary (resolve.rs); blocking.
        let addrs = tokio::task::spawn_blocking(move || resolve::resolve(&a))
            .await
            .map_err(|e| err(io::Error::other(e)))?
            .map_err(err)?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address resolved");
        let mut stream = None;
        for addr in addrs {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    stream = Some(s);
                    break;
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            }
        }
        let stream = stream.ok_or_else(|| err(last))?;
        let _ = stream.set_nodelay(true);
        let mut io: Box<dyn Io> = match &self.tls {
            Some(c) => Box::new(c.connect(address, stream).await.map_err(|source| Error::Tls {
                address: address.clone(),
                source,
            })?),
            None => Box::new(stream),
        };
        if let Some(key) = &self.settings.shared_key {
            let key = key.reveal().map_err(|source| Error::Io {
                address: address.clone(),
                source,
            })?;
            self.handshake(&mut io, key.as_bytes()).await?;
        }
        Ok(io)
    }

    /// HELO → PING → PONG.
    async fn handshake(&self, io: &mut Box<dyn Io>, key: &[u8]) -> Result<(), Error> {
        let address = &self.settings.address;
        let hs = |source| Error::Handshake {
            address: address.clone(),
            source,
        };
        let mut buf = Vec::new();
        let helo = self.read_value(io, &mut buf).await?;
        let helo = handshake::parse_helo(&helo).map_err(hs)?;
        let salt: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
        let ping = handshake::ping(&helo, &self.settings.hostname, &salt, key);
        self.write(io, &ping).await?;
        let pong = self.read_value(io, &mut buf).await?;
        handshake::check_pong(&pong, &helo, &salt, key).map_err(hs)
    }

    /// Reads one msgpack value within the handshake timeout.
    async fn read_value(&self, io: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> Result<rmpv::Value, Error> {
        let address = &self.settings.address;
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        loop {
            if let Some((v, used)) = decode::next_value(buf, ANSWER_ELEMENTS).map_err(|source| Error::Answer {
                address: address.clone(),
                source,
            })? {
                buf.drain(..used);
                return Ok(v);
            }
            let mut scratch = [0u8; 4096];
            let n = match tokio::time::timeout_at(deadline, io.read(&mut scratch)).await {
                Ok(r) => r.map_err(|source| Error::Io {
                    address: address.clone(),
                    source,
                })?,
                Err(_) => {
                    return Err(Error::Io {
                        address: address.clone(),
                        source: io::Error::new(io::ErrorKind::TimedOut, "no handshake message"),
                    })
                }
            };
            if n == 0 {
                return Err(Error::Closed {
                    address: address.clone(),
                });
            }
            buf.extend_from_slice(&scratch[..n]);
        }
    }

    async fn write(&self, io: &mut Box<dyn Io>, bytes: &[u8]) -> Result<(), Error> {
        let address = &self.settings.address;
        let r = tokio::time::timeout(WRITE_TIMEOUT, async {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")));
        r.map_err(|source| Error::Io {
            address: address.clone(),
            source,
        })
    }

    /// Writes a chunk; it joins the window first, so a failed write keeps it for the next
    /// connection. Without acks it is delivered once written.
    async fn send(&self, io: &mut Box<dyn Io>, window: &mut VecDeque<Sent>, chunk: Chunk) -> Result<(), Error> {
        let message = Arc::clone(&chunk.message);
        window.push_back(Sent {
            chunk,
            at: Instant::now(),
        });
        self.write(io, &message).await?;
        if !self.settings.require_ack {
            if let Some(s) = window.pop_back() {
                let _ = self.tell.send(Told::Acked(s.chunk.seq));
            }
        }
        Ok(())
    }

    /// Serves one connection: writes the window again, then new chunks, and reads acks.
    async fn serve(
        &mut self,
        mut io: Box<dyn Io>,
        window: &mut VecDeque<Sent>,
        open: &mut bool,
        acked: &mut bool,
    ) -> End {
        let address = self.settings.address.clone();
        // Everything unacknowledged again, in order; a failed write leaves it all in the window.
        for sent in window.iter_mut() {
            let message = Arc::clone(&sent.chunk.message);
            if let Err(e) = self.write(&mut io, &message).await {
                return End::Failed(e);
            }
            sent.at = Instant::now();
        }
        if !self.settings.require_ack {
            while let Some(s) = window.pop_front() {
                let _ = self.tell.send(Told::Acked(s.chunk.seq));
            }
        }
        let mut answers: Vec<u8> = Vec::new();
        let mut scratch = vec![0u8; 4096];
        loop {
            if !*open && window.is_empty() {
                let _ = io.shutdown().await;
                return End::Done;
            }
            let timeout = window.front().map(|s| s.at + self.settings.ack_timeout);
            let ack_timer = async {
                match timeout {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.stop.changed() => return End::Done,
                c = self.chunks.recv(), if *open => match c {
                    Some(chunk) => {
                        if let Err(e) = self.send(&mut io, window, chunk).await {
                            return End::Failed(e);
                        }
                    }
                    None => *open = false,
                },
                r = io.read(&mut scratch) => match r {
                    Ok(0) => return End::Failed(Error::Closed { address }),
                    Err(source) => return End::Failed(Error::Io { address, source }),
                    Ok(n) => {
                        answers.extend_from_slice(&scratch[..n]);
                        match self.acks(&mut answers, window) {
                            Ok(true) => *acked = true,
                            Ok(false) => {}
                            Err(e) => return End::Failed(e),
                        }
                    }
                },
                () = ack_timer => {
                    let secs = self.settings.ack_timeout.as_secs();
                    return End::Failed(Error::AckTimeout { address, secs });
                }
            }
        }
    }

    /// Takes the whole acks out of `answers`; true if one matched a chunk of the window.
    fn acks(&self, answers: &mut Vec<u8>, window: &mut VecDeque<Sent>) -> Result<bool, Error> {
        let address = &self.settings.address;
        let mut matched = false;
        loop {
            let next = decode::next_value(answers, ANSWER_ELEMENTS).map_err(|source| Error::Answer {
                address: address.clone(),
                source,
            })?;
            let Some((v, used)) = next else { break };
            answers.drain(..used);
            let Some(id) = decode::ack(&v) else {
                tracing::debug!(sink = %self.sink, "forward: ignoring a server message that is not an ack");
                continue;
            };
            match window.iter().position(|s| s.chunk.id == id) {
                Some(i) => {
                    if let Some(s) = window.remove(i) {
                        let _ = self.tell.send(Told::Acked(s.chunk.seq));
                    }
                    matched = true;
                }
                // An ack for a chunk of an earlier connection, already acknowledged.
                None => {
                    tracing::debug!(sink = %self.sink, chunk = %logsafe::escape(id), "forward: ack for no chunk in flight")
                }
            }
        }
        if answers.len() > MAX_ANSWER_BYTES {
            return Err(Error::Answer {
                address: address.clone(),
                source: decode::Error::TooLarge {
                    size: answers.len(),
                    max: MAX_ANSWER_BYTES,
                },
            });
        }
        Ok(matched)
    }
}
