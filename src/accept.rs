//! Accepting TCP connections on a listener the agent serves (the metrics endpoint, the network
//! inputs) without spinning when `accept` fails, which at the descriptor limit it does at once
//! and again at every retry.

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// The next connection on `listener`. A failure (out of file descriptors, most likely) is
/// warned about once per run of failures as `what`, then retried every 100 ms.
pub async fn next(listener: &TcpListener, what: &str) -> TcpStream {
    let mut failing = false;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return stream,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "{what}: cannot accept connections; retrying");
                }
                failing = true;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
