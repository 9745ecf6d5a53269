//! Network inputs: sources whose records arrive over the network instead of in files. Each
//! input writes what it accepts to its source's spool (`spool`) before it answers, and the
//! tailer reads the spool as the source's files: from there on a network record takes the
//! file path (adapt, transforms, sinks, checkpoints).
//!
//! Each network source runs on a thread of its own (`input-NAME`) with a small tokio runtime;
//! the spool's writes and fsyncs run on its blocking pool, so a slow disk does not stall the
//! connections being read. One file per protocol: `otlp.rs` (OTLP/HTTP), `grpc.rs` (OTLP/gRPC),
//! `otlp_lines.rs` (OTLP records as spool lines), `forward.rs` (the Fluent Forward protocol),
//! `forward_lines.rs` (Forward entries as spool lines); `listen.rs` serves connections within
//! the input's limits;
//! `intake.rs` is what every protocol calls to put lines in the spool.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{InputKind, Settings};
use crate::metrics::Metrics;
use crate::spool::{self, Spool};

mod forward;
pub mod forward_lines;
mod grpc;
mod intake;
mod listen;
mod otlp;
pub mod otlp_lines;

pub use self::intake::Intake;

/// How often the spool is looked after: an `interval` fsync that is due, delivered segments
/// deleted, the spool-bytes gauge updated.
const UPKEEP: Duration = Duration::from_millis(200);
/// Delivered segments are looked for this often (it reads `checkpoints.json`).
const RECLAIM_EVERY: u32 = 5;
/// On stop, requests being served get this long to be answered.
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spool(#[from] spool::Error),
    #[error("source {source_name}: listen on {address}: {source}")]
    Bind {
        source_name: String,
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// A network input ready to run: its spool open, its sockets bound.
pub struct Prepared {
    pub name: String,
    intake: Arc<Intake>,
    http: TcpListener,
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
        let bind = |address: SocketAddr| {
            let l = TcpListener::bind(address).and_then(|l| l.set_nonblocking(true).map(|()| l));
            l.map_err(|e| Error::Bind {
                source_name: source.name.clone(),
                address,
                source: e,
            })
        };
        let http = bind(input.address)?;
        let grpc = match input.kind {
            InputKind::Otlp { grpc: Some(a) } => Some(bind(a)?),
            InputKind::Otlp { grpc: None } | InputKind::Forward => None,
        };
        let intake = Intake::new(spool, Arc::clone(metrics), out.len(), source.max_line_bytes);
        out.push(Prepared {
            name: source.name.clone(),
            intake: Arc::new(intake),
            http,
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
            let http = match tokio::net::TcpListener::from_std(self.http) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(source = %name, error = %e, "input: cannot listen");
                    return;
                }
            };
            let limits = self.settings.max_connections;
            if self.settings.kind == InputKind::Forward {
                if let Ok(a) = http.local_addr() {
                    tracing::info!(source = %name, address = %a, "input listening (Forward)");
                }
                let s = &self.settings;
                let serve = forward::serve(Arc::clone(&self.intake), s.max_message_bytes, s.read_timeout);
                tokio::spawn(listen::accept(http, limits, Arc::clone(&self.intake), serve));
                tokio::spawn(upkeep(Arc::clone(&self.intake)));
                let _ = stop.changed().await;
                return;
            }
            if let Ok(a) = http.local_addr() {
                tracing::info!(source = %name, address = %a, "input listening (OTLP/HTTP)");
            }
            let app = otlp::router(Arc::clone(&self.intake), &self.settings);
            let serve = listen::http1(app, self.settings.read_timeout);
            tokio::spawn(listen::accept(http, limits, Arc::clone(&self.intake), serve));
            if let Some(grpc) = self.grpc {
                match tokio::net::TcpListener::from_std(grpc) {
                    Ok(l) => {
                        if let Ok(a) = l.local_addr() {
                            tracing::info!(source = %name, address = %a, "input listening (OTLP/gRPC)");
                        }
                        let s = &self.settings;
                        let serve = grpc::http2(Arc::clone(&self.intake), s.max_message_bytes, s.read_timeout);
                        tokio::spawn(listen::accept(l, limits, Arc::clone(&self.intake), serve));
                    }
                    Err(e) => tracing::error!(source = %name, error = %e, "input: cannot listen for gRPC"),
                }
            }
            tokio::spawn(upkeep(Arc::clone(&self.intake)));
            let _ = stop.changed().await;
        });
        runtime.shutdown_timeout(DRAIN);
    }
}

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
