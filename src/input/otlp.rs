//! The `otlp` input over HTTP: `POST /v1/logs` with an `ExportLogsServiceRequest` in protobuf
//! (`application/x-protobuf`) or OTLP/JSON (`application/json`), optionally gzipped, as the
//! OTLP/HTTP specification has it. The records go to the spool (`otlp_lines`) before the
//! answer, which is in the request's encoding: an `ExportLogsServiceResponse`, with
//! `partial_success` counting the records refused and why; a `google.rpc.Status` for a
//! refused request: 400 (malformed), 413 (over `max_message_bytes`), 415 (another encoding),
//! 408 (the body did not come within `read_timeout`), 429 with `Retry-After` (the spool is
//! full: the client keeps the records and retries), 503 (the spool cannot be written).

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt as _;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message as _;

use super::intake::Refused;
use super::{otlp_lines, Intake};
use crate::config::InputSettings;
use crate::metrics::add;

/// The path OTLP/HTTP exporters post logs to.
pub const LOGS_PATH: &str = "/v1/logs";
/// What a client that was pushed back is told to wait, in seconds.
const RETRY_AFTER_SECONDS: &str = "1";

/// `google.rpc.Status`, the body of an OTLP/HTTP error answer (not in opentelemetry-proto).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// gRPC status codes the answers carry (google.rpc.Code).
const INVALID_ARGUMENT: i32 = 3;
const DEADLINE_EXCEEDED: i32 = 4;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNAVAILABLE: i32 = 14;

struct Ctx {
    intake: Arc<Intake>,
    max_message_bytes: usize,
    read_timeout: Duration,
}

/// The routes of one `otlp` input.
pub fn router(intake: Arc<Intake>, s: &InputSettings) -> Router {
    let ctx = Arc::new(Ctx {
        intake,
        max_message_bytes: s.max_message_bytes,
        read_timeout: s.read_timeout,
    });
    Router::new().route(LOGS_PATH, post(export)).with_state(ctx)
}

/// The body's encoding, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

/// A request refused whole: its status and why.
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) code: i32,
    pub(super) message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: i32, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }

    fn answer(self, encoding: Encoding) -> Response {
        let status = Status {
            code: self.code,
            message: self.message,
        };
        let mut resp = encoded(encoding, &status, |s| s.encode_to_vec());
        *resp.status_mut() = self.status;
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        resp
    }
}

/// `value` as the body, in `encoding`, with its content type.
fn encoded<T: serde::Serialize>(encoding: Encoding, value: &T, protobuf: impl FnOnce(&T) -> Vec<u8>) -> Response {
    let (bytes, ctype) = match encoding {
        Encoding::Protobuf => (protobuf(value), "application/x-protobuf"),
        Encoding::Json => (serde_json::to_vec(value).unwrap_or_default(), "application/json"),
    };
    ([(header::CONTENT_TYPE, ctype)], bytes).into_response()
}

async fn export(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, body: Body) -> Response {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let encoding = match ctype.split(';').next().unwrap_or("").trim() {
        "application/x-protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        other => {
            add(&ctx.intake.metrics().requests_rejected, 1);
            let message = format!(
                "content type {:?}: send application/x-protobuf or application/json",
                crate::logsafe::escape(other)
            );
            return Refusal::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, INVALID_ARGUMENT, message).answer(Encoding::Json);
        }
    };
    match receive(&ctx, &headers, body, encoding).await {
        Ok(resp) => resp,
        Err(refusal) => {
            if refusal.status != StatusCode::TOO_MANY_REQUESTS && refusal.status != StatusCode::SERVICE_UNAVAILABLE {
                add(&ctx.intake.metrics().requests_rejected, 1);
                tracing::debug!(status = %refusal.status, reason = %refusal.message, "otlp input: request refused");
            }
            refusal.answer(encoding)
        }
    }
}

/// Reads, decodes and keeps one request.
async fn receive(ctx: &Ctx, headers: &HeaderMap, body: Body, encoding: Encoding) -> Result<Response, Refusal> {
    let max = ctx.max_message_bytes;
    let too_big = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            INVALID_ARGUMENT,
            format!("the request is over this input's max_message_bytes ({max})"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_big());
    }
    let raw = tokio::time::timeout(ctx.read_timeout, read_body(body, max))
        .await
        .map_err(|_| {
            Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                DEADLINE_EXCEEDED,
                "the body did not arrive within read_timeout",
            )
        })?
        .map_err(|e| match e {
            BodyError::TooBig => too_big(),
            BodyError::Read(e) => Refusal::new(
                StatusCode::BAD_REQUEST,
                INVALID_ARGUMENT,
                format!("reading the body: {e}"),
            ),
        })?;
    add(&ctx.intake.metrics().bytes_received, raw.len() as u64);
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    let plain = match content_encoding {
        "identity" | "" => raw,
        "gzip" => gunzip(&raw, max).map_err(|e| match e {
            BodyError::TooBig => too_big(),
            BodyError::Read(e) => Refusal::new(StatusCode::BAD_REQUEST, INVALID_ARGUMENT, format!("gzip: {e}")),
        })?,
        other => {
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                INVALID_ARGUMENT,
                format!(
                    "content encoding {:?}: send gzip or none",
                    crate::logsafe::escape(other)
                ),
            ))
        }
    };
    let request = match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(&plain[..]).map_err(|e| e.to_string()),
        Encoding::Json => serde_json::from_slice::<ExportLogsServiceRequest>(&plain).map_err(|e| e.to_string()),
    }
    .map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            INVALID_ARGUMENT,
            format!("not an OTLP ExportLogsServiceRequest: {e}"),
        )
    })?;
    let response = keep(&ctx.intake, &request).await?;
    Ok(encoded(encoding, &response, |r| r.encode_to_vec()))
}

/// Writes the request's records to the spool; the answer to send once they are there.
pub(super) async fn keep(
    intake: &Arc<Intake>,
    request: &ExportLogsServiceRequest,
) -> Result<ExportLogsServiceResponse, Refusal> {
    let lines = otlp_lines::to_lines(request, intake.max_line_bytes);
    add(&intake.metrics().records_rejected, lines.rejected);
    let i = Arc::clone(intake);
    let (bytes, accepted) = (lines.bytes, lines.accepted);
    let kept = tokio::task::spawn_blocking(move || i.keep(&bytes, accepted))
        .await
        .unwrap_or(Err(Refused::Failed));
    match kept {
        Ok(()) => Ok(ExportLogsServiceResponse {
            partial_success: (lines.rejected > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: i64::try_from(lines.rejected).unwrap_or(i64::MAX),
                error_message: lines.reason.unwrap_or_default(),
            }),
        }),
        Err(Refused::Full(message)) => Err(Refusal::new(StatusCode::TOO_MANY_REQUESTS, RESOURCE_EXHAUSTED, message)),
        Err(Refused::Failed) => Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE,
            "the agent cannot write its spool; retry later",
        )),
    }
}

enum BodyError {
    TooBig,
    Read(String),
}

/// The whole body, refused as soon as it passes `max` bytes.
async fn read_body(mut body: Body, max: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(BodyError::TooBig);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// `raw` un-gzipped, refused once it passes `max` bytes (a small bomb stays small).
fn gunzip(raw: &[u8], max: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(raw)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Read(e.to_string()))?;
    if out.len() > max {
        return Err(BodyError::TooBig);
    }
    Ok(out)
}
