//! Where a sink's encoded batches go: stdout, an appended file, or one persistent TCP
//! connection. A batch counts as delivered once `write` returns `Ok` (for TCP: written and
//! flushed to the socket; for a file: written, not fsynced).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use super::resolve;
use crate::config::SinkKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connect to {address}: {source}")]
    Connect { address: String, source: io::Error },
    #[error("write to {target}: {source}")]
    Write { target: String, source: io::Error },
    #[error("open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{address} closed the connection")]
    PeerClosed { address: String },
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A collector that stops reading must not hang the sink forever; after this the write
/// fails, the connection is dropped and the batch is sent again on a new one.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

pub enum Output {
    Stdout(io::Stdout),
    File { path: PathBuf, file: Option<File> },
    Tcp { address: String, conn: Option<TcpStream> },
}

impl Output {
    pub fn new(kind: &SinkKind) -> Output {
        match kind {
            SinkKind::Stdout => Output::Stdout(io::stdout()),
            SinkKind::File { path } => Output::File {
                path: path.clone(),
                file: None,
            },
            SinkKind::Tcp { address } => Output::Tcp {
                address: address.clone(),
                conn: None,
            },
            // `ship::run` hands HTTP and kafka sinks to their own `run` before it builds an Output.
            SinkKind::Http(_) | SinkKind::Kafka(_) | SinkKind::Forward(_) => {
                unreachable!("an http, kafka or forward sink has no byte Output")
            }
        }
    }

    /// Writes one whole batch. On error the output is reset (reconnect / reopen next time)
    /// and the caller sends the same batch again: at-least-once, never a partial skip.
    pub fn write(&mut self, batch: &[u8]) -> Result<(), Error> {
        match self {
            Output::Stdout(out) => {
                let mut lock = out.lock();
                lock.write_all(batch)
                    .and_then(|_| lock.flush())
                    .map_err(|source| Error::Write {
                        target: "stdout".into(),
                        source,
                    })
            }
            Output::File { path, file } => {
                if file.is_none() {
                    *file = Some(
                        OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&*path)
                            .map_err(|source| Error::Open {
                                path: path.clone(),
                                source,
                            })?,
                    );
                }
                let f = file.as_mut().expect("opened above");
                f.write_all(batch).map_err(|source| {
                    *file = None;
                    Error::Write {
                        target: path.display().to_string(),
                        source,
                    }
                })
            }
            Output::Tcp { address, conn } => {
                // A collector that went away while we were idle has sent a FIN; writing into
                // that socket would "succeed" into the void. Look first.
                if conn.as_ref().is_some_and(peer_closed) {
                    *conn = None;
                }
                if conn.is_none() {
                    *conn = Some(connect(address)?);
                }
                let stream = conn.as_mut().expect("connected above");
                let result = stream.write_all(batch).and_then(|_| stream.flush());
                match result {
                    Err(source) => {
                        *conn = None;
                        Err(Error::Write {
                            target: address.clone(),
                            source,
                        })
                    }
                    // The peer closed while we wrote: part of the batch may be lost in its
                    // socket, so report failure and send the batch again.
                    Ok(()) if peer_closed(stream) => {
                        *conn = None;
                        Err(Error::PeerClosed {
                            address: address.clone(),
                        })
                    }
                    Ok(()) => Ok(()),
                }
            }
        }
    }

    /// Whether the output has a live connection/handle (for the `sink_up` gauge).
    pub fn is_up(&self) -> bool {
        match self {
            Output::Stdout(_) => true,
            Output::File { file, .. } => file.is_some(),
            Output::Tcp { conn, .. } => conn.is_some(),
        }
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
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(err(last))
}

/// True if the peer has closed its side (a non-blocking read sees EOF or an error). Bytes
/// the peer sends us are not part of any protocol we speak; they are discarded.
fn peer_closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut scratch = [0u8; 512];
    let closed = loop {
        match (&*stream).read(&mut scratch) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break true,
        }
    };
    let _ = stream.set_nonblocking(false);
    closed
}
