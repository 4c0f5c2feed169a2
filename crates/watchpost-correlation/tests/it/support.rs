//! Shared helpers: the test app, requests, real OTLP receivers (gRPC and HTTP) built on opentelemetry-proto.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use http::{Request, Response};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tower::ServiceExt;
use watchpost_core::{Principal, Problem, Role};
use watchpost_correlation::{CorrelationConfig, CorrelationLayer};

/// The app every test uses: a few routes, the `/errors` router, the layer via `Router::layer`.
pub(crate) fn app(layer: &CorrelationLayer) -> Router {
    Router::new()
        .route("/hello", get(|| async { "hi" }))
        .route(
            "/items/{id}",
            get(|Path(id): Path<String>| async move {
                tracing::info!(item = %id, "looking the item up");
                let spawned = watchpost_correlation::spawn(async {
                    tracing::info!("inside a spawned task");
                    watchpost_correlation::current().map(|c| c.request_id.to_string())
                })
                .await
                .ok()
                .flatten();
                format!("item {id} {}", spawned.unwrap_or_default())
            }),
        )
        .route(
            "/limited",
            get(|| async {
                Problem::new(http::StatusCode::TOO_MANY_REQUESTS)
                    .with_detail("slow down")
                    .to_http_response()
                    .into_response()
            }),
        )
        .route(
            "/broken/{n}",
            get(|Path(n): Path<u32>| async move {
                Problem::service_unavailable(format!("dependency {n} is down"))
                    .to_http_response()
                    .into_response()
            }),
        )
        .route(
            "/tenant",
            get(|| async {
                let mut r = "ok".into_response();
                r.extensions_mut().insert(Principal::new(
                    "key-7",
                    "ci",
                    Some("acme".into()),
                    Role::Tenant,
                ));
                r
            }),
        )
        .route(
            "/panic/{n}",
            get(|Path(n): Path<u32>| async move {
                if n < 1000 {
                    panic!("secret value {n} exploded");
                }
                "unreachable for small n"
            }),
        )
        .route(
            "/background-panic",
            get(|| async {
                let joined = watchpost_correlation::spawn(async {
                    if std::env::var_os("NEVER_SET_THIS").is_none() {
                        panic!("background job 17 failed");
                    }
                })
                .await;
                if joined.is_err() {
                    "task failed"
                } else {
                    "task ok"
                }
            }),
        )
        .route("/echo", post(|body: String| async move { body }))
        .merge(layer.router())
        .layer(layer.clone())
}

/// A layer with default configuration.
pub(crate) fn layer() -> CorrelationLayer {
    CorrelationLayer::new(CorrelationConfig::default())
}

/// A GET request with `headers`, from 203.0.113.9.
pub(crate) fn get_req(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::get(path)
        .header("host", "api.example.com:4000")
        .header("user-agent", "it/1.0");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = b.body(Body::empty()).expect("valid request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 9], 5555))));
    req
}

/// Sends `req` through `app` (bounded in time) and returns the response with its body as text.
pub(crate) async fn send(app: &Router, req: Request<Body>) -> (Response<()>, String) {
    let response = tokio::time::timeout(Duration::from_secs(10), app.clone().oneshot(req))
        .await
        .expect("the request finishes within 10 s")
        .expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (
        Response::from_parts(parts, ()),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// Spans received by an in-test OTLP receiver.
#[derive(Debug, Clone, Default)]
pub(crate) struct Received(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

impl Received {
    fn push(&self, r: ExportTraceServiceRequest) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    }

    /// Every span received, with its resource's `service.name`.
    pub(crate) fn spans(&self) -> Vec<(String, Span)> {
        let requests = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = Vec::new();
        for req in requests {
            for rs in req.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                    .and_then(|a| a.value.as_ref())
                    .and_then(|v| v.value.as_ref())
                    .map(|v| match v {
                        AnyValue::StringValue(s) => s.clone(),
                        other => format!("{other:?}"),
                    })
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    for span in ss.spans {
                        out.push((service.clone(), span));
                    }
                }
            }
        }
        out
    }

    /// Waits up to 10 s for a span named `name`.
    pub(crate) async fn wait_for(&self, name: &str) -> (String, Span) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(found) = self.spans().into_iter().find(|(_, s)| s.name == name) {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no span named {name:?} arrived within 10 s; got {:?}",
                self.spans()
                    .iter()
                    .map(|(_, s)| s.name.clone())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A span attribute as text (strings as they are, numbers formatted).
pub(crate) fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
        .map(|v| match v {
            AnyValue::StringValue(s) => s.clone(),
            AnyValue::IntValue(i) => i.to_string(),
            AnyValue::BoolValue(b) => b.to_string(),
            AnyValue::DoubleValue(d) => d.to_string(),
            other => format!("{other:?}"),
        })
}

#[derive(Debug, Clone)]
struct GrpcReceiver(Received);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The opentelemetry-proto tonic `TraceService` on 127.0.0.1:0.
pub(crate) async fn grpc_receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the gRPC receiver");
    let addr = listener.local_addr().expect("address");
    let received = Received::default();
    let service = TraceServiceServer::new(GrpcReceiver(received.clone()));
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await;
    });
    (addr, received)
}

/// An HTTP `/v1/traces` receiver decoding protobuf, on 127.0.0.1:0.
pub(crate) async fn http_receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the HTTP receiver");
    let addr = listener.local_addr().expect("address");
    let received = Received::default();
    let r = received.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(move |headers: http::HeaderMap, body: bytes::Bytes| {
            let r = r.clone();
            async move {
                assert_eq!(
                    headers.get("content-type").and_then(|v| v.to_str().ok()),
                    Some("application/x-protobuf")
                );
                match ExportTraceServiceRequest::decode(body) {
                    Ok(req) => {
                        r.push(req);
                        (
                            [("content-type", "application/x-protobuf")],
                            ExportTraceServiceResponse::default().encode_to_vec(),
                        )
                            .into_response()
                    }
                    Err(_) => http::StatusCode::BAD_REQUEST.into_response(),
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, received)
}
