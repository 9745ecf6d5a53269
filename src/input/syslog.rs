//! The `syslog` input: RFC 5424 and RFC 3164 messages over UDP (one datagram, one message)
//! and TCP, each message written to the spool as a line (`syslog_lines.rs`).
//!
//! TCP framing follows RFC 6587, both kinds, told apart per message by its first byte: a
//! digit starts octet counting (`<len> <msg>`, so a message may hold newlines), `<` starts a
//! message that ends at a newline or a NUL (non-transparent framing; NUL is what Python's
//! `SysLogHandler` and some appliances send). Newlines, carriage returns, NULs and spaces
//! between messages are skipped. Framing is hand-written: it is a few lines, and the crates
//! that do it (tokio-util codecs) would still need both kinds told apart per message.
//!
//! Limits: a message over `max_message_bytes` closes its TCP connection (an octet count over
//! it at once, a newline-framed message once it passes it) and drops the datagram on UDP; a
//! frame starting with anything else closes the connection. Every close is counted
//! (`requests_rejected`) and logged; the client's other connections and every other client
//! are served on.
//!
//! Pushback: TCP writes what one read brought to the spool before reading more, and waits
//! while the spool is full — the client's socket fills and its sends wait. UDP cannot push
//! back: at the cap what arrives is dropped and counted (`dropped{reason="spool_full"}`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpStream, UdpSocket};

use super::intake::Refused;
use super::listen::BoxFuture;
use super::syslog_lines::{self, Lines, Origin};
use super::Intake;
use crate::metrics::add;
use crate::timefmt;

/// While the spool is full, how long to wait before trying again (the first wait; it doubles
/// up to `FULL_WAIT_MAX`).
const FULL_WAIT_MIN: Duration = Duration::from_millis(50);
const FULL_WAIT_MAX: Duration = Duration::from_secs(1);
const READ_SIZE: usize = 64 << 10;
/// The largest UDP payload (IPv4: 65,535 less the IP and UDP headers).
const MAX_DATAGRAM: usize = 65_507;
/// Datagrams already waiting are read into one spool write, up to this many.
const DATAGRAMS_PER_WRITE: usize = 512;
/// An octet count has at most this many digits (RFC 6587's MSG-LEN is a non-zero number;
/// ten digits are more than any message we take).
const MAX_COUNT_DIGITS: usize = 10;

/// Why a TCP connection was closed by the input.
#[derive(Debug, thiserror::Error)]
enum Closed {
    #[error("an octet count of {count} is over max_message_bytes ({max})")]
    CountTooLarge { count: u64, max: usize },
    #[error("a message is over max_message_bytes ({max}) and still has no newline at {size} bytes")]
    LineTooLarge { size: usize, max: usize },
    #[error("a message starts with byte 0x{byte:02x}: neither an octet count nor `<` (syslog framing, RFC 6587)")]
    Framing { byte: u8 },
    #[error("a malformed octet count (digits then a space expected)")]
    BadCount,
    #[error("the spool cannot be written")]
    Spool,
    #[error("the connection ended (or went quiet past read_timeout) {bytes} bytes into a message")]
    Truncated { bytes: usize },
}

/// What may come between two frames.
fn is_separator(c: &u8) -> bool {
    matches!(c, b'\n' | b'\r' | b'\0' | b' ')
}

/// A whole frame found at the start of a buffer.
struct Frame {
    /// Where its message lies in the buffer.
    msg: std::ops::Range<usize>,
    /// Bytes consumed: skipped separators, the frame and its trailer.
    used: usize,
}

/// The next whole frame of `b`; `Ok(None)` when more bytes are needed; `Ok(Some)` with an
/// empty message when `b` holds nothing but separators.
fn next_frame(b: &[u8], max: usize) -> Result<Option<Frame>, Closed> {
    let start = b.iter().position(|c| !is_separator(c)).unwrap_or(b.len());
    let Some(&first) = b.get(start) else {
        return Ok((start > 0).then_some(Frame {
            msg: start..start,
            used: start,
        }));
    };
    match first {
        b'0'..=b'9' => {
            let digits = b[start..]
                .iter()
                .take(MAX_COUNT_DIGITS + 1)
                .take_while(|c| c.is_ascii_digit())
                .count();
            let after = start + digits;
            match b.get(after) {
                None if digits <= MAX_COUNT_DIGITS => return Ok(None),
                Some(b' ') if digits <= MAX_COUNT_DIGITS => {}
                _ => return Err(Closed::BadCount),
            }
            let count: u64 = std::str::from_utf8(&b[start..after])
                .ok()
                .and_then(|d| d.parse().ok())
                .ok_or(Closed::BadCount)?;
            if count > max as u64 {
                return Err(Closed::CountTooLarge { count, max });
            }
            let msg = after + 1..after + 1 + count as usize;
            if b.len() < msg.end {
                return Ok(None);
            }
            Ok(Some(Frame { used: msg.end, msg }))
        }
        b'<' => match memchr::memchr2(b'\n', b'\0', &b[start..]) {
            Some(k) if k > max => Err(Closed::LineTooLarge { size: k, max }),
            Some(k) => Ok(Some(Frame {
                msg: start..start + k,
                used: start + k + 1,
            })),
            None if b.len() - start > max => Err(Closed::LineTooLarge {
                size: b.len() - start,
                max,
            }),
            None => Ok(None),
        },
        byte => Err(Closed::Framing { byte }),
    }
}

/// Serves each TCP connection with `intake`'s spool and the source's limits.
pub fn serve_tcp(
    intake: Arc<Intake>,
    max_message_bytes: usize,
    read_timeout: Duration,
) -> impl Fn(TcpStream) -> BoxFuture {
    move |stream| {
        let intake = Arc::clone(&intake);
        Box::pin(async move {
            let Ok(peer) = stream.peer_addr() else { return };
            if let Err(e) = connection(stream, peer, &intake, max_message_bytes, read_timeout).await {
                add(&intake.metrics().requests_rejected, 1);
                tracing::warn!(source = %intake.metrics().name, peer = %peer, error = %e, "syslog input: closing the connection");
            }
        })
    }
}

/// Reads messages until the client closes (or goes quiet past `read_timeout`, or breaks the
/// framing or the limits: `Err`).
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    intake: &Arc<Intake>,
    max: usize,
    read_timeout: Duration,
) -> Result<(), Closed> {
    let origin = Origin { peer, transport: "tcp" };
    let mut buf: Vec<u8> = Vec::with_capacity(READ_SIZE);
    let mut scratch = vec![0u8; READ_SIZE];
    loop {
        let mut lines = Lines::default();
        let now = timefmt::now_ns();
        let mut pos = 0;
        // Frames before a bad one are kept first: the client sent them whole.
        let framing = loop {
            match next_frame(&buf[pos..], max) {
                Ok(Some(f)) => {
                    if !f.msg.is_empty() {
                        lines.push(
                            &buf[pos + f.msg.start..pos + f.msg.end],
                            origin,
                            now,
                            intake.max_line_bytes,
                        );
                    }
                    pos += f.used;
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        buf.drain(..pos);
        if !keep(intake, lines).await? {
            return Ok(());
        }
        framing?;
        let n = match tokio::time::timeout(read_timeout, stream.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => n,
            // Between messages, a quiet client is closed without a fuss: it reconnects when it
            // has more.
            _ if buf.is_empty() => return Ok(()),
            // A newline-framed message the client ended by closing: whole all the same.
            Ok(Ok(_)) if buf.iter().find(|c| !is_separator(c)) == Some(&b'<') => {
                let start = buf.iter().position(|c| !is_separator(c)).unwrap_or(0);
                let mut lines = Lines::default();
                lines.push(&buf[start..], origin, timefmt::now_ns(), intake.max_line_bytes);
                keep(intake, lines).await?;
                return Ok(());
            }
            _ => return Err(Closed::Truncated { bytes: buf.len() }),
        };
        add(&intake.metrics().bytes_received, n as u64);
        buf.extend_from_slice(&scratch[..n]);
    }
}

/// Counts what `lines` refused or could not parse.
fn count(intake: &Intake, lines: &Lines) {
    add(&intake.metrics().unparsed, lines.unparsed);
    if lines.too_long > 0 {
        add(&intake.metrics().records_rejected, lines.too_long);
        tracing::warn!(
            source = %intake.metrics().name,
            refused = lines.too_long,
            max_line_bytes = intake.max_line_bytes,
            "syslog input: messages longer than the source's max_line_bytes as JSON lines refused"
        );
    }
}

/// Writes `lines` to the spool, waiting while it is full (pushback: nothing is read
/// meanwhile). Ok(false): the runtime is stopping.
async fn keep(intake: &Arc<Intake>, lines: Lines) -> Result<bool, Closed> {
    count(intake, &lines);
    if lines.count == 0 {
        return Ok(true);
    }
    let lines = Arc::new(lines);
    let mut wait = FULL_WAIT_MIN;
    loop {
        let (i, l) = (Arc::clone(intake), Arc::clone(&lines));
        let kept = tokio::task::spawn_blocking(move || i.keep(&l.bytes, l.count)).await;
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

/// Receives datagrams until the runtime stops; the ones already waiting after the first are
/// written to the spool with it.
pub async fn serve_udp(socket: UdpSocket, intake: Arc<Intake>, max: usize) {
    // One byte more than the cap: a datagram that fills it is over the cap (the kernel cuts
    // what does not fit without saying so).
    let mut buf = vec![0u8; max.min(MAX_DATAGRAM) + 1];
    loop {
        let mut lines = Lines::default();
        let now = timefmt::now_ns();
        let mut got = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!(error = %e, "syslog input: UDP receive failed");
                continue;
            }
        };
        for taken in 1.. {
            let (n, peer) = got;
            add(&intake.metrics().bytes_received, n as u64);
            if n > max {
                add(&intake.metrics().dropped_too_large, 1);
                tracing::warn!(source = %intake.metrics().name, peer = %peer, max_message_bytes = max, "syslog input: a datagram over max_message_bytes dropped");
            } else if !syslog_lines::trim_trailer(&buf[..n]).is_empty() {
                lines.push(&buf[..n], Origin { peer, transport: "udp" }, now, intake.max_line_bytes);
            }
            if taken == DATAGRAMS_PER_WRITE {
                break;
            }
            // Nothing more waiting (`WouldBlock`), or an error the next `recv_from` reports.
            let Ok(next) = socket.try_recv_from(&mut buf) else {
                break;
            };
            got = next;
        }
        count(&intake, &lines);
        if lines.count == 0 {
            continue;
        }
        let i = Arc::clone(&intake);
        let kept = tokio::task::spawn_blocking(move || {
            let kept = i.keep(&lines.bytes, lines.count);
            (kept, lines.count)
        })
        .await;
        match kept {
            Ok((Ok(()), _)) => {}
            Ok((Err(Refused::Full(_) | Refused::Failed), dropped)) => {
                add(&intake.metrics().dropped_spool_full, dropped);
                tracing::warn!(source = %intake.metrics().name, dropped, "syslog input: the spool is full or failing; UDP messages dropped");
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(mut b: &[u8], max: usize) -> (Vec<String>, Option<Closed>, usize) {
        let mut out = Vec::new();
        loop {
            match next_frame(b, max) {
                Ok(Some(f)) => {
                    if !f.msg.is_empty() {
                        out.push(String::from_utf8_lossy(&b[f.msg]).into_owned());
                    }
                    b = &b[f.used..];
                }
                Ok(None) => return (out, None, b.len()),
                Err(e) => return (out, Some(e), b.len()),
            }
        }
    }

    #[test]
    fn both_framings_are_told_apart_per_message() {
        let (msgs, err, left) = frames(b"<13>a\n11 <13>b\nline2\0<14>c\r\n\n5 <13>", 1024);
        assert_eq!(msgs, ["<13>a", "<13>b\nline2", "<14>c\r"]);
        assert!(err.is_none());
        assert_eq!(
            left, 7,
            "an incomplete octet-counted frame waits for more (its separator too)"
        );
    }

    #[test]
    fn bad_framing_and_oversize_are_errors() {
        assert!(matches!(
            frames(b"999999999 <13>x", 1024).1,
            Some(Closed::CountTooLarge { count: 999_999_999, .. })
        ));
        assert!(matches!(frames(b"12345678901 x", 1 << 20).1, Some(Closed::BadCount)));
        assert!(matches!(frames(b"12x", 1 << 20).1, Some(Closed::BadCount)));
        assert!(matches!(
            frames(b"GET / HTTP/1.1", 1024).1,
            Some(Closed::Framing { byte: b'G' })
        ));
        let long = [b"<13>".as_slice(), &[b'x'; 2000]].concat();
        assert!(matches!(frames(&long, 1024).1, Some(Closed::LineTooLarge { .. })));
        let (msgs, err, _) = frames(b"<13>ok\n\xff", 1024);
        assert_eq!(msgs, ["<13>ok"]);
        assert!(matches!(err, Some(Closed::Framing { byte: 0xff })));
    }
}
