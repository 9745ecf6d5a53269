//! The metrics and health endpoint: `GET /metrics` (Prometheus text), `/healthz` (the
//! process is alive and serving) and `/readyz` (the first scan is done and no shutdown has
//! begun, and checkpoints can be written). Served by axum on the tokio runtime that also waits for signals.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::metrics::Metrics;

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

/// Serves on `listener` until the runtime stops. Returns the bound address.
pub fn serve(listener: std::net::TcpListener, metrics: Arc<Metrics>) -> Result<SocketAddr, Error> {
    let address = listener.local_addr().map_err(|source| Error {
        address: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|source| Error { address, source })?;
    let bound = address;
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(metrics);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(bound)
}

async fn metrics_text(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], m.render())
}

async fn ready(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
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
