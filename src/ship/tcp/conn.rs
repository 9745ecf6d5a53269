//! One connection of the tcp sink to its receiver, plain or TLS (rustls, on the blocking
//! socket): connect, write, and the two things raw TCP can tell about what was written — how
//! far the peer's TCP has acknowledged the stream (`written - SIOCOUTQ`, crates/sendq) and
//! whether the peer has closed (a read that sees EOF, an RST or a TLS alert; a raw-TCP
//! receiver sends nothing else).
//!
//! `written` counts every byte handed to the socket, the TLS layer's records and handshake
//! included, because that is the stream the send queue is measured in.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, ClientConnection};

use crate::ship::resolve;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A receiver that stops reading must not hang the sink forever: past this a write fails, the
/// connection is dropped and what was not settled is written again on a new one.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const KEEPALIVE: Duration = Duration::from_secs(1);
/// TLS records are written this much plaintext at a time.
const TLS_SLICE: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connect to {address}: {source}")]
    Connect { address: String, source: io::Error },
    #[error("{address}: TLS handshake: {source}")]
    Handshake { address: String, source: io::Error },
    #[error("write to {address}: {source}")]
    Write { address: String, source: io::Error },
    #[error("{address} closed the connection")]
    Closed { address: String },
    #[error("{address}: {source}")]
    Read { address: String, source: io::Error },
    #[error("{address}: TLS: {source}")]
    Tls {
        address: String,
        source: tokio_rustls::rustls::Error,
    },
    #[error("{address}: reading the socket's send queue: {source}")]
    SendQueue { address: String, source: io::Error },
}

/// What TLS needs to connect: the client configuration and the name to check.
#[derive(Clone)]
pub struct TlsSetup {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

pub struct Conn {
    address: String,
    tcp: TcpStream,
    tls: Option<Box<ClientConnection>>,
    /// Bytes handed to the socket on this connection.
    written: u64,
    /// The largest receive window the peer advertised: its receive buffer, as far as seen.
    max_window: u64,
}

impl Conn {
    pub fn connect(address: &str, tls: Option<&TlsSetup>) -> Result<Conn, Error> {
        let tcp = connect(address)?;
        let mut conn = Conn {
            address: address.to_owned(),
            tcp,
            tls: None,
            written: 0,
            max_window: 0,
        };
        if let Some(t) = tls {
            conn.handshake(t)?;
        }
        Ok(conn)
    }

    fn handshake(&mut self, t: &TlsSetup) -> Result<(), Error> {
        let err = |source| Error::Handshake {
            address: self.address.clone(),
            source,
        };
        let mut c =
            ClientConnection::new(Arc::clone(&t.config), t.name.clone()).map_err(|e| err(io::Error::other(e)))?;
        self.tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(&err)?;
        while c.is_handshaking() {
            let (_, wrote) = c.complete_io(&mut self.tcp).map_err(&err)?;
            self.written += wrote as u64;
        }
        self.tcp.set_read_timeout(None).map_err(&err)?;
        self.tls = Some(Box::new(c));
        Ok(())
    }

    /// Writes `bytes` whole; returns where they end in this connection's stream.
    pub fn write(&mut self, bytes: &[u8]) -> Result<u64, Error> {
        let address = &self.address;
        let err = |source| Error::Write {
            address: address.clone(),
            source,
        };
        match &mut self.tls {
            None => {
                self.tcp.write_all(bytes).map_err(err)?;
                self.written += bytes.len() as u64;
            }
            Some(c) => {
                for slice in bytes.chunks(TLS_SLICE) {
                    c.writer().write_all(slice).map_err(err)?;
                    while c.wants_write() {
                        let n = c.write_tls(&mut self.tcp).map_err(err)?;
                        if n == 0 {
                            return Err(err(io::ErrorKind::WriteZero.into()));
                        }
                        self.written += n as u64;
                    }
                }
            }
        }
        Ok(self.written)
    }

    /// How far the peer's TCP has acknowledged this connection's stream, and how much of that
    /// its kernel may still hold unread. A receiver whose window has shrunk below half of the
    /// largest it advertised is behind: the room it lost is what it holds unread. Above half
    /// it keeps up, and its kernel sends no window update when it reads (Linux waits until
    /// the window would double), so the room it lost is stale: 0, and `settle` covers the
    /// little it may hold.
    /// The third figure is the largest window the peer advertised (0: unknown).
    pub fn progress(&mut self) -> Result<(u64, u64, u64), Error> {
        let unacked = sendq::unacked(&self.tcp).map_err(|source| Error::SendQueue {
            address: self.address.clone(),
            source,
        })?;
        let acked = self.written.saturating_sub(unacked);
        // Without the window (a kernel before 5.19), the caller's bound on unread bytes holds.
        let unread = match sendq::peer_window(&self.tcp) {
            Ok(Some(w)) => {
                let w = u64::from(w);
                self.max_window = self.max_window.max(w);
                if w >= self.max_window / 2 {
                    0
                } else {
                    self.max_window - w
                }
            }
            _ => u64::MAX,
        };
        Ok((acked, unread, self.max_window))
    }

    /// Whether the peer has closed: reads what is there without waiting (a raw-TCP receiver
    /// sends nothing; TLS records such as session tickets are processed and dropped).
    pub fn check_open(&mut self) -> Result<(), Error> {
        let address = self.address.clone();
        self.tcp.set_nonblocking(true).map_err(|source| Error::Read {
            address: address.clone(),
            source,
        })?;
        let r = self.drain_input();
        let restored = self.tcp.set_nonblocking(false);
        r?;
        restored.map_err(|source| Error::Read { address, source })
    }

    fn drain_input(&mut self) -> Result<(), Error> {
        let address = &self.address;
        let closed = || Error::Closed {
            address: address.clone(),
        };
        let read_err = |source| Error::Read {
            address: address.clone(),
            source,
        };
        let mut scratch = [0u8; 4096];
        loop {
            let n = match &mut self.tls {
                None => (&self.tcp).read(&mut scratch),
                Some(c) => c.read_tls(&mut self.tcp),
            };
            match n {
                Ok(0) => return Err(closed()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            }
            if let Some(c) = &mut self.tls {
                let state = c.process_new_packets().map_err(|source| Error::Tls {
                    address: address.clone(),
                    source,
                })?;
                if state.peer_has_closed() {
                    return Err(closed());
                }
                // Whatever plaintext a receiver sends is not part of any protocol we speak.
                while c.reader().read(&mut scratch).is_ok_and(|n| n > 0) {}
            }
        }
    }

    /// A clean end: TLS's close_notify, then our side of the stream.
    pub fn shutdown(mut self) {
        if let Some(c) = &mut self.tls {
            c.send_close_notify();
            while c.wants_write() {
                if !c.write_tls(&mut self.tcp).is_ok_and(|n| n > 0) {
                    break;
                }
            }
        }
        let _ = self.tcp.shutdown(std::net::Shutdown::Write);
    }
}

fn connect(address: &str) -> Result<TcpStream, Error> {
    let err = |source| Error::Connect {
        address: address.to_owned(),
        source,
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address resolved");
    // Not `ToSocketAddrs`: no glibc NSS in the static binary of the scratch image (resolve.rs).
    for addr in resolve::resolve(address).map_err(err)? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
                // When we stop writing, the receiver's last window is often from before its
                // application read the last bytes; a keepalive probe's answer brings the
                // current one, so the last batches settle within a few seconds of idling.
                let keepalive = socket2::TcpKeepalive::new()
                    .with_time(KEEPALIVE)
                    .with_interval(KEEPALIVE);
                let _ = socket2::SockRef::from(&s).set_tcp_keepalive(&keepalive);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(err(last))
}
