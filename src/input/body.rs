//! Reading an HTTP request body within an input's limits, shared by the HTTP inputs (`otlp.rs`,
//! `http.rs`): the declared length checked first, the body read until it passes the cap or
//! `read_timeout` runs out, then un-gzipped within the same cap (a small bomb stays small).

use std::io::Read as _;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt as _;

/// Why a body could not be read; each input answers it in its own way.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request is over this input's cap of {max} bytes")]
    TooBig { max: usize },
    #[error("the body did not arrive within read_timeout")]
    Timeout,
    #[error("reading the body: {0}")]
    Read(String),
    #[error("gzip: {0}")]
    Gzip(String),
    #[error("content encoding {0:?}: send gzip or none")]
    Encoding(String),
}

/// The body, read within `max` bytes and `read_timeout`, and its size as sent (before
/// decompression), un-gzipped when `Content-Encoding` says so.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    read_timeout: Duration,
) -> Result<(Vec<u8>, usize), BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooBig { max });
    }
    let raw = tokio::time::timeout(read_timeout, read_capped(body, max))
        .await
        .map_err(|_| BodyError::Timeout)??;
    let sent = raw.len();
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    let plain = match content_encoding {
        "identity" | "" => raw,
        "gzip" => gunzip(&raw, max)?,
        other => return Err(BodyError::Encoding(crate::logsafe::escape(other).into_owned())),
    };
    Ok((plain, sent))
}

/// The whole body, refused as soon as it passes `max` bytes.
async fn read_capped(mut body: Body, max: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(BodyError::TooBig { max });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// `raw` un-gzipped, refused once it passes `max` bytes.
fn gunzip(raw: &[u8], max: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(raw)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Gzip(e.to_string()))?;
    if out.len() > max {
        return Err(BodyError::TooBig { max });
    }
    Ok(out)
}
