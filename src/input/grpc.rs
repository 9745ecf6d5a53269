//! The `otlp` input over gRPC (`grpc_address`): the `LogsService/Export` call of
//! opentelemetry-proto's tonic server, each connection served by hyper's HTTP/2 within the
//! input's connection cap (`listen::accept`). The records go to the spool before the answer,
//! as over HTTP (`otlp::keep`); a full spool is `RESOURCE_EXHAUSTED`, a spool that cannot be
//! written `UNAVAILABLE`, a message over `max_message_bytes` is refused by tonic
//! (`RESOURCE_EXHAUSTED` before it is read whole). gzip-compressed messages are accepted.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use tokio::net::TcpStream;
use tonic::codec::CompressionEncoding;
use tower_service::Service as _;

use super::listen::BoxFuture;
use super::otlp::{self, Refusal};
use super::Intake;
use crate::metrics::add;

struct Logs {
    intake: Arc<Intake>,
}

#[tonic::async_trait]
impl LogsService for Logs {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        add(
            &self.intake.metrics().bytes_received,
            prost::Message::encoded_len(&request) as u64,
        );
        match otlp::keep(&self.intake, &request).await {
            Ok(answer) => Ok(tonic::Response::new(answer)),
            Err(Refusal { code, message, .. }) => Err(tonic::Status::new(tonic::Code::from(code), message)),
        }
    }
}

/// Serves one HTTP/2 connection with the logs service. `read_timeout` is the keep-alive ping's
/// timeout: a peer that stops answering pings is dropped (an idle channel is normal gRPC).
pub fn http2(intake: Arc<Intake>, max_message_bytes: usize, read_timeout: Duration) -> impl Fn(TcpStream) -> BoxFuture {
    let service = LogsServiceServer::new(Logs { intake })
        .max_decoding_message_size(max_message_bytes)
        .accept_compressed(CompressionEncoding::Gzip);
    move |stream| {
        let service = service.clone();
        Box::pin(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let mut service = service.clone();
                async move { Ok::<_, Infallible>(service.call(req).await.unwrap_or_else(|never| match never {})) }
            });
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(read_timeout))
                .keep_alive_timeout(read_timeout)
                .serve_connection(TokioIo::new(stream), svc);
            // Errors are the client's (a reset, a protocol error): nothing to log.
            let _ = conn.await;
        })
    }
}
