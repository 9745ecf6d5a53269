//! Network inputs: sources whose records arrive over the network instead of in files. Each
//! input writes what it accepts to its source's spool (`spool`) before it answers, and the
//! tailer reads the spool as the source's files: from there on a network record takes the
//! file path (adapt, transforms, sinks, checkpoints).
//!
//! Each network source runs on a thread of its own (`input-NAME`) with a small tokio runtime;
//! the spool's writes and fsyncs run on its blocking pool, so a slow disk does not stall the
//! connections being read. One file per protocol: `otlp.rs` (OTLP/HTTP), `grpc.rs` (OTLP/gRPC),
//! `otlp_lines.rs` (OTLP records as spool lines), `forward.rs` (the Fluent Forward protocol),
//! `forward_lines.rs` (Forward entries as spool lines), `syslog.rs` (syslog over UDP and TCP,
//! RFC 6587 framing), `syslog_lines.rs` (syslog messages as spool lines, parsed by the file
//! path's `syslog` format), `http.rs` (NDJSON or a JSON array posted over HTTP),
//! `http_lines.rs` (those objects as spool lines, all or nothing); `body.rs` reads an HTTP
//! body within the limits (for `otlp.rs` and `http.rs`); `listen.rs` serves connections within
//! the input's limits;
//! `intake.rs` is what every protocol calls to put lines in the spool.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{InputKind, Settings};
use crate::metrics::Metrics;
use crate::spool::{self, Spool};

mod body;
mod forward;
pub mod forward_lines;
mod grpc;
mod http;
pub mod http_lines;
mod intake;
mod listen;
mod otlp;
pub mod otlp_lines;
mod syslog;
pub mod syslog_lines;

pub use self::intake::Intake;

/// How often the spool is looked after: an `interval` fsync that is due, delivered segments
/// deleted, the spool-bytes gauge updated.
const UPKEEP: Duration = Duration::from_millis(200);
/// Delivered segments are looked for this often (it reads `checkpoints.json`).
const RECLAIM_EVERY: u32 = 5;
/// The UDP receive buffer asked for (syslog): about 8 MiB of datagrams queued while the
/// spool is written.
const UDP_RECEIVE_BUFFER: usize = 8 << 20;
/// On stop, requests being served get this long to be answered.
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spool(#[from] spool::Error),
    #[error("source {source_name}: listen on {address} ({transport}): {source}")]
    Bind {
        transport: &'static str,
        source_name: String,
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// A network input ready to run: its spool open, its sockets bound.
pub struct Prepared {
    pub name: String,
    intake: Arc<Intake>,
    /// The TCP listener at `address` (all but a `syslog` source with `mode = "udp"`).
    tcp: Option<TcpListener>,
    /// The UDP socket at `address` (a `syslog` source unless `mode = "tcp"`).
    udp: Option<UdpSocket>,
    grpc: Option<TcpListener>,
    settings: crate::config::InputSettings,
}

/// Opens the spool and binds the sockets of every network source (before the tailer starts,
/// so a half-written line from a crash is cut first, and a port in use is a start-up error).
/// `metrics.inputs` must have one entry per network source, in order.
pub fn prepare(settings: &Settings, metrics: &Arc<Metrics>) -> Result<Vec<Prepared>, Error> {
    let mut out = Vec::new();
    for source in &settings.sources {
        let Some(input) = &source.input else { continue };
        let spool = Spool::open(&settings.data_dir, &source.name, &input.spool)?;
        let failed = |address: SocketAddr, transport: &'static str| {
            move |e: std::io::Error| Error::Bind {
                transport,
                source_name: source.name.clone(),
                address,
                source: e,
            }
        };
        let bind = |address: SocketAddr| {
            let l = TcpListener::bind(address).and_then(|l| l.set_nonblocking(true).map(|()| l));
            l.map_err(failed(address, "tcp"))
        };
        let (tcp, udp) = match input.kind {
            InputKind::Syslog { udp, tcp } => (tcp, udp),
            _ => (true, false),
        };
        let udp = match udp {
            true => {
                let u = UdpSocket::bind(input.address).and_then(|u| u.set_nonblocking(true).map(|()| u));
                let u = u.map_err(failed(input.address, "udp"))?;
                // UDP cannot push back: what arrives while the spool is being written waits
                // in this buffer, and a burst past it is lost before the agent sees it. The
                // kernel caps the request at net.core.rmem_max.
                if let Err(e) = socket2::SockRef::from(&u).set_recv_buffer_size(UDP_RECEIVE_BUFFER) {
                    tracing::warn!(source = %source.name, error = %e, "input: cannot enlarge the UDP receive buffer");
                }
                Some(u)
            }
            false => None,
        };
        let tcp = match tcp {
            true => Some(bind(input.address)?),
            false => None,
        };
        let grpc = match input.kind {
            InputKind::Otlp { grpc: Some(a) } => Some(bind(a)?),
            _ => None,
        };
        let intake = Intake::new(spool, Arc::clone(metrics), out.len(), source.max_line_bytes);
        out.push(Prepared {
            name: source.name.clone(),
            intake: Arc::new(intake),
            tcp,
            udp,
            grpc,
            settings: input.clone(),
        });
    }
    Ok(out)
}

impl Prepared {
    /// Serves until `stop` changes or its sender is dropped; then answers what is being
    /// served (for at most `DRAIN`) and returns.
    pub fn run(self, mut stop: watch::Receiver<()>) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(source = %self.name, error = %e, "input: cannot start its runtime; the source receives nothing");
                return;
            }
        };
        let name = self.name.clone();
        runtime.block_on(async move {
            let limits = self.settings.max_connections;
            let s = &self.settings;
            let listener = |l: TcpListener, what: &str| match tokio::net::TcpListener::from_std(l) {
                Ok(l) => {
                    if let Ok(a) = l.local_addr() {
                        tracing::info!(source = %name, address = %a, "input listening ({what})");
                    }
                    Some(l)
                }
                Err(e) => {
                    tracing::error!(source = %name, error = %e, "input: cannot listen ({what})");
                    None
                }
            };
            let tcp = self.tcp.and_then(|l| {
                let what = match s.kind {
                    InputKind::Otlp { .. } => "OTLP/HTTP",
                    InputKind::Forward => "Forward",
                    InputKind::Syslog { .. } => "syslog over TCP",
                    InputKind::Http { .. } => "HTTP",
                };
                listener(l, what)
            });
            let intake = &self.intake;
            let accept = |l: tokio::net::TcpListener, serve: Serve| {
                tokio::spawn(listen::accept(l, limits, Arc::clone(intake), serve))
            };
            match (&s.kind, tcp) {
                (_, None) => {}
                (InputKind::Forward, Some(l)) => {
                    accept(
                        l,
                        Box::new(forward::serve(
                            Arc::clone(intake),
                            s.max_message_bytes,
                            s.read_timeout,
                            s.shared_key.clone(),
                        )),
                    );
                }
                (InputKind::Syslog { .. }, Some(l)) => {
                    accept(
                        l,
                        Box::new(syslog::serve_tcp(
                            Arc::clone(intake),
                            s.max_message_bytes,
                            s.read_timeout,
                        )),
                    );
                }
                (InputKind::Otlp { .. }, Some(l)) => {
                    let app = otlp::router(Arc::clone(intake), s);
                    accept(l, Box::new(listen::http1(app, s.read_timeout)));
                }
                (InputKind::Http { path }, Some(l)) => {
                    let app = http::router(Arc::clone(intake), s, path);
                    accept(l, Box::new(listen::http1(app, s.read_timeout)));
                }
            }
            if let Some(udp) = self.udp {
                match tokio::net::UdpSocket::from_std(udp) {
                    Ok(u) => {
                        if let Ok(a) = u.local_addr() {
                            tracing::info!(source = %name, address = %a, "input listening (syslog over UDP)");
                        }
                        tokio::spawn(syslog::serve_udp(u, Arc::clone(intake), s.max_message_bytes));
                    }
                    Err(e) => tracing::error!(source = %name, error = %e, "input: cannot listen (syslog over UDP)"),
                }
            }
            if let Some(l) = self.grpc.and_then(|l| listener(l, "OTLP/gRPC")) {
                accept(
                    l,
                    Box::new(grpc::http2(Arc::clone(intake), s.max_message_bytes, s.read_timeout)),
                );
            }
            tokio::spawn(upkeep(Arc::clone(intake)));
            let _ = stop.changed().await;
        });
        runtime.shutdown_timeout(DRAIN);
    }
}

/// How a protocol serves one TCP connection.
type Serve = Box<dyn Fn(tokio::net::TcpStream) -> listen::BoxFuture + Send>;

/// Looks after the spool every `UPKEEP` until the runtime stops.
async fn upkeep(intake: Arc<Intake>) {
    let mut tick = tokio::time::interval(UPKEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u32 = 0;
    loop {
        tick.tick().await;
        n = n.wrapping_add(1);
        let reclaim = n.is_multiple_of(RECLAIM_EVERY);
        let i = Arc::clone(&intake);
        let _ = tokio::task::spawn_blocking(move || i.upkeep(reclaim)).await;
    }
}
