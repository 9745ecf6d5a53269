//! The metrics and health endpoint: `GET /metrics` (Prometheus text), `/healthz` (the
//! process serves, and the tailer and every sink make progress or wait for something not
//! theirs, see `liveness`), `/readyz` (the first scan is done, no shutdown has begun, and
//! checkpoints can be written), `GET /api/v1/status` (`tailship status`, JSON: file paths
//! only to callers on this host or with `metrics.per_file`, see docs/status.md) and
//! `POST /-/reload` (read the config again, `reload.rs`; callers on this host only).
//! Routed by axum on the tokio runtime that also waits for signals.
//!
//! The port may be reachable from other pods, so a client is not trusted to be quick or few:
//! each connection gets `HEADER_READ_TIMEOUT` to send its request head and
//! `CONNECTION_LIFETIME` in all, serves one request (no keep-alive: a scrape every few seconds
//! costs a handshake, not a parked connection), and at most `MAX_CONNECTIONS` are open; past
//! that new ones are closed at once. The connections are served here with hyper, not with
//! `axum::serve`, because that sets neither limit.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tower_service::Service as _;

use crate::metrics::Metrics;
use crate::reload::{Outcome, Reloads};

/// A client that has not sent its whole request head by then is disconnected.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection lives, whatever it does (a client that never reads its answer).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// Connections served at once; a probe and a scraper need a few, 64 leaves ample room while
/// bounding what idle connections can hold (about 16 KiB each).
pub const MAX_CONNECTIONS: usize = 64;

#[derive(Debug, thiserror::Error)]
#[error("metrics endpoint {address}: {source}")]
pub struct Error {
    pub address: SocketAddr,
    pub source: std::io::Error,
}

/// Binds `address` (before anything else starts, so a port conflict is a start-up error).
pub fn bind(address: SocketAddr) -> Result<std::net::TcpListener, Error> {
    let listener = std::net::TcpListener::bind(address).map_err(|source| Error { address, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| Error { address, source })?;
    Ok(listener)
}

/// What the endpoints serve: the running pipeline's metrics (replaced by a reload), the
/// reload counters, and where `POST /-/reload` asks for one.
#[derive(Clone)]
pub struct Served {
    pub metrics: Arc<RwLock<Arc<Metrics>>>,
    pub reloads: Arc<Reloads>,
    /// `None`: reloading is not offered.
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
}

impl Served {
    fn current(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics.read().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A reload asked for over HTTP, and where its outcome goes.
pub struct ReloadRequest {
    pub answer: oneshot::Sender<Outcome>,
}

/// Serves on `listener` until the runtime stops. Returns the bound address.
pub fn serve(listener: std::net::TcpListener, served: Served) -> Result<SocketAddr, Error> {
    let address = listener.local_addr().map_err(|source| Error {
        address: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|source| Error { address, source })?;
    let bound = address;
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/api/v1/status", get(status))
        .route("/-/reload", post(reload))
        .with_state(served);
    tokio::spawn(accept(listener, app));
    Ok(bound)
}

/// Accepts connections until the runtime stops, each on a task of its own within the limits
/// of the module doc.
async fn accept(listener: tokio::net::TcpListener, app: Router) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = crate::accept::next(&listener, "metrics endpoint").await;
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            // At the cap: closed unanswered. The connections holding the cap end within
            // HEADER_READ_TIMEOUT unless they are being served, so a probe's retry gets in.
            tracing::debug!("metrics endpoint: connection cap reached; closing a new connection");
            drop(stream);
            continue;
        };
        let app = app.clone();
        let caller = Caller::of(&stream);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let mut app = app.clone();
                req.extensions_mut().insert(caller);
                async move { Ok::<_, Infallible>(app.call(req).await.unwrap_or_else(|never| match never {})) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            // Errors are the client's (a timeout, a reset, a bad request): nothing to log.
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            drop(permit);
        });
    }
}

async fn metrics_text(State(s): State<Served>) -> impl IntoResponse {
    let text = s.current().render() + &s.reloads.render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// 200 while the tailer and every sink make progress (or wait for something that is not
/// theirs to do); 503 naming the one that has been busy without progress past `stall_timeout`,
/// so the kubelet restarts an agent that is stuck rather than one whose collector is down.
async fn health(State(s): State<Served>) -> impl IntoResponse {
    match s.current().stalled() {
        Some((thread, busy)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stalled: {thread} busy for {}s without progress\n", busy.as_secs()),
        ),
        None => (StatusCode::OK, "ok\n".to_owned()),
    }
}

async fn ready(State(s): State<Served>) -> impl IntoResponse {
    let m = s.current();
    if m.stopping.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping\n")
    } else if m.checkpoint_failing.load(Ordering::Relaxed) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "checkpoints cannot be written to data_dir\n",
        )
    } else if m.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

/// Who is asking: a caller on this host (loopback, or this very address: `kubectl exec` into
/// the pod) may see what the agent would not show the network, such as file paths.
#[derive(Debug, Clone, Copy)]
struct Caller {
    local: bool,
}

impl Caller {
    fn of(stream: &tokio::net::TcpStream) -> Caller {
        let local = match (stream.peer_addr(), stream.local_addr()) {
            (Ok(peer), Ok(me)) => peer.ip().is_loopback() || peer.ip() == me.ip(),
            _ => false,
        };
        Caller { local }
    }
}

async fn status(State(s): State<Served>, Extension(caller): Extension<Caller>) -> impl IntoResponse {
    let m = s.current();
    let files_shown = caller.local || m.per_file;
    // Reads the checkpoint file: off the runtime's thread.
    let status = tokio::task::spawn_blocking(move || crate::status::report::report(&m, files_shown)).await;
    match status.ok().and_then(|s| serde_json::to_vec(&s).ok()) {
        Some(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "status unavailable\n").into_response(),
    }
}

/// `POST /-/reload`: 200 when the new config runs (or nothing changed), 422 with the problems
/// when it is refused (the old config keeps running).
async fn reload(State(s): State<Served>, Extension(caller): Extension<Caller>) -> impl IntoResponse {
    if !caller.local {
        return (
            StatusCode::FORBIDDEN,
            "reload is taken from this host only\n".to_owned(),
        );
    }
    let Some(tx) = s.reload else {
        return (StatusCode::SERVICE_UNAVAILABLE, "reloading is not offered\n".to_owned());
    };
    let (answer, outcome) = oneshot::channel();
    if tx.send(ReloadRequest { answer }).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping\n".to_owned());
    }
    match outcome.await {
        Ok(Outcome::Applied { gap }) => (
            StatusCode::OK,
            format!("reloaded (shipping paused {} ms)\n", gap.as_millis()),
        ),
        Ok(Outcome::Rebuilt { sinks }) => (
            StatusCode::OK,
            format!("reloaded (rebuilt sinks {}; the rest kept running)\n", sinks.join(", ")),
        ),
        Ok(Outcome::Unchanged) => (StatusCode::OK, "unchanged\n".to_owned()),
        Ok(Outcome::Refused(problems)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("refused; the old config keeps running:\n{}\n", problems.join("\n")),
        ),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping\n".to_owned()),
    }
}
