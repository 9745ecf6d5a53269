//! Serving an input's connections within its limits: at most `max_connections` open (past
//! that a new one is closed at once, and counted); for HTTP/1.1, `read_timeout` to send a
//! request head, and keep-alive (exporters send batch after batch on one connection). Served with hyper around
//! an axum router, as `server.rs` does, because `axum::serve` sets neither limit.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tower_service::Service as _;

use super::Intake;
use crate::metrics::add;

/// Counts a connection open while it lives.
struct Open<'a>(&'a AtomicU64);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts connections until the runtime stops, each served by `serve` on a task of its own,
/// within the connection cap.
pub async fn accept<F, Fut>(listener: tokio::net::TcpListener, max_connections: usize, intake: Arc<Intake>, serve: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_connections));
    loop {
        let stream = crate::accept::next(&listener, "input").await;
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            add(&intake.metrics().connections_refused, 1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let served = serve(stream);
        let intake = Arc::clone(&intake);
        tokio::spawn(async move {
            let connections = &intake.metrics().connections;
            add(connections, 1);
            let _open = Open(connections);
            served.await;
            drop(permit);
        });
    }
}

/// Serves one HTTP/1.1 connection with `app` (keep-alive; `read_timeout` for each request
/// head). Errors are the client's (a timeout, a reset, a bad request): nothing to log.
pub fn http1(app: Router, read_timeout: Duration) -> impl Fn(TcpStream) -> BoxFuture {
    move |stream| {
        let app = app.clone();
        Box::pin(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let mut app = app.clone();
                async move { Ok::<_, Infallible>(app.call(req).await.unwrap_or_else(|never| match never {})) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(read_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let _ = conn.await;
        })
    }
}

/// A connection being served.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
