//! `tailship status` asking the running agent: `GET /api/v1/status` on the metrics address of
//! the config (on this host when the agent listens on every interface).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::Status;

/// The agent answers from memory and one small file read; longer means it is not answering.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ask the agent at {url}: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error("the agent at {url} answered {status}")]
    Answer { url: String, status: reqwest::StatusCode },
    #[error("the agent at {url} answered what is not a status: {source}")]
    Json { url: String, source: serde_json::Error },
    #[error("start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// The running agent's status, or `None` when nothing listens at `address` (no agent runs).
pub fn fetch(address: SocketAddr) -> Result<Option<Status>, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let url = format!("http://{}/api/v1/status", local(address));
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|source| Error::Request {
                url: url.clone(),
                source,
            })?;
        let answer = match client.get(&url).send().await {
            Ok(a) => a,
            Err(e) if e.is_connect() => return Ok(None),
            Err(source) => return Err(Error::Request { url, source }),
        };
        if !answer.status().is_success() {
            return Err(Error::Answer {
                url,
                status: answer.status(),
            });
        }
        let body = answer.bytes().await.map_err(|source| Error::Request {
            url: url.clone(),
            source,
        })?;
        let status = serde_json::from_slice(&body).map_err(|source| Error::Json { url, source })?;
        Ok(Some(status))
    })
}

/// An address to connect to for one the agent listens on: its own IP, or loopback for "all".
fn local(address: SocketAddr) -> SocketAddr {
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, address.port())
}
