//! The `http` input: JSON objects `POST`ed to the source's `path`, as NDJSON
//! (`application/x-ndjson`) or one JSON array (`application/json`; the body's first byte
//! decides which), optionally gzipped. The objects go to the spool (`http_lines`) before the
//! answer, all or nothing.
//!
//! Answers (a JSON body): 200 `{"accepted": N}` once the records are in the spool; 400 naming
//! the line (or array element) that is not an object, with nothing of the request kept; 413
//! over `max_request_bytes` (before or after gzip); 415 another content type or encoding; 408
//! the body did not come within `read_timeout`; 429 with `Retry-After` when the spool is full
//! (the client keeps the records and retries); 503 with `Retry-After` when it cannot be
//! written. A wrong method on the path is 405 and another path 404 (axum's routing).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::body::{self, BodyError};
use super::http_lines;
use super::intake::Refused;
use super::Intake;
use crate::config::InputSettings;
use crate::metrics::add;

/// What a client that was pushed back is told to wait, in seconds.
const RETRY_AFTER_SECONDS: &str = "1";
/// The content types taken (besides none at all); the body's shape is read from its first byte.
const CONTENT_TYPES: [&str; 5] = [
    "application/json",
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
];

struct Ctx {
    intake: Arc<Intake>,
    max_request_bytes: usize,
    read_timeout: Duration,
}

/// The route of one `http` input.
pub fn router(intake: Arc<Intake>, s: &InputSettings, path: &str) -> Router {
    let ctx = Arc::new(Ctx {
        intake,
        max_request_bytes: s.max_message_bytes,
        read_timeout: s.read_timeout,
    });
    Router::new().route(path, post(receive)).with_state(ctx)
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    }
    resp
}

fn refuse(ctx: &Ctx, status: StatusCode, reason: String) -> Response {
    if !matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
        add(&ctx.intake.metrics().requests_rejected, 1);
        tracing::debug!(source = %ctx.intake.metrics().name, status = %status, reason = %reason, "http input: request refused");
    }
    answer(status, serde_json::json!({ "error": reason }))
}

async fn receive(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, body: Body) -> Response {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?"))
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    if let Some(other) = ctype.filter(|t| !CONTENT_TYPES.contains(&t.as_str())) {
        let reason = format!(
            "content type {:?}: send application/x-ndjson or application/json",
            crate::logsafe::escape(&other)
        );
        return refuse(&ctx, StatusCode::UNSUPPORTED_MEDIA_TYPE, reason);
    }
    let max = ctx.max_request_bytes;
    let (plain, sent) = match body::read(&headers, body, max, ctx.read_timeout).await {
        Ok(read) => read,
        Err(e) => {
            let status = match e {
                BodyError::TooBig { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::Timeout => StatusCode::REQUEST_TIMEOUT,
                BodyError::Encoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                BodyError::Read(_) | BodyError::Gzip(_) => StatusCode::BAD_REQUEST,
            };
            let reason = match e {
                BodyError::TooBig { .. } => format!("the request is over this input's max_request_bytes ({max})"),
                e => e.to_string(),
            };
            return refuse(&ctx, status, reason);
        }
    };
    add(&ctx.intake.metrics().bytes_received, sent as u64);
    // Parsing a body of megabytes is CPU work: off the runtime's thread, with the write.
    let intake = Arc::clone(&ctx.intake);
    let kept = tokio::task::spawn_blocking(move || -> Result<Result<u64, Refused>, http_lines::Malformed> {
        let lines = http_lines::to_lines(&plain, intake.max_line_bytes)?;
        if lines.count == 0 {
            return Ok(Ok(0));
        }
        Ok(intake.keep(&lines.bytes, lines.count).map(|()| lines.count))
    })
    .await;
    match kept {
        Ok(Ok(Ok(count))) => answer(StatusCode::OK, serde_json::json!({ "accepted": count })),
        Ok(Err(malformed)) => refuse(&ctx, StatusCode::BAD_REQUEST, malformed.to_string()),
        Ok(Ok(Err(Refused::Full(message)))) => refuse(&ctx, StatusCode::TOO_MANY_REQUESTS, message),
        Ok(Ok(Err(Refused::Failed))) | Err(_) => refuse(
            &ctx,
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent cannot write its spool; retry later".into(),
        ),
    }
}
