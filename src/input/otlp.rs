//! The `otlp` input over HTTP: `POST /v1/logs` with an `ExportLogsServiceRequest` in protobuf
//! (`application/x-protobuf`) or OTLP/JSON (`application/json`), optionally gzipped, as the
//! OTLP/HTTP specification has it. The records go to the spool (`otlp_lines`) before the
//! answer, which is in the request's encoding: an `ExportLogsServiceResponse`, with
//! `partial_success` counting the records refused and why; a `google.rpc.Status` for a
//! refused request: 400 (malformed), 413 (over `max_message_bytes`), 415 (another encoding),
//! 408 (the body did not come within `read_timeout`), 429 with `Retry-After` (the spool is
//! full: the client keeps the records and retries), 503 (the spool cannot be written).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message as _;

use super::body::{self, BodyError};
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
    let (plain, sent) = body::read(headers, body, max, ctx.read_timeout).await.map_err(|e| {
        let (status, code) = match e {
            BodyError::TooBig { .. } => (StatusCode::PAYLOAD_TOO_LARGE, INVALID_ARGUMENT),
            BodyError::Timeout => (StatusCode::REQUEST_TIMEOUT, DEADLINE_EXCEEDED),
            BodyError::Encoding(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, INVALID_ARGUMENT),
            BodyError::Read(_) | BodyError::Gzip(_) => (StatusCode::BAD_REQUEST, INVALID_ARGUMENT),
        };
        let message = match e {
            BodyError::TooBig { .. } => format!("the request is over this input's max_message_bytes ({max})"),
            e => e.to_string(),
        };
        Refusal::new(status, code, message)
    })?;
    add(&ctx.intake.metrics().bytes_received, sent as u64);
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
