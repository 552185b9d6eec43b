//! Plain HTTP on the gateway's port, beside gRPC (any path under `/v1/`;
//! everything else passes on to gRPC):
//! - `events`: `POST /v1/topics/{topic}/events` takes a CloudEvent
//!   (`cloudevents`: binary or structured mode, or a batch), or a plain JSON
//!   body on a webhook route of the policy, and answers what PublishEvent
//!   answers once Kafka stored it;
//! - `api`: the API as JSON, a route for each `google.api.http` annotation
//!   of `proto/` (`json`: the proto3 JSON mapping), Subscribe streamed as
//!   newline-delimited JSON or Server-Sent Events (`stream`);
//! - `/v1/openapi.json`: the OpenAPI document of all of them.
//!
//! Every call goes through the EventGateway service itself, so the edge
//! (TLS, the token in `Authorization`, already checked by the layers
//! outside this one), the policy, quotas, limits, audit, metrics and traces
//! (`traceparent`) are the same as for gRPC. A deadline comes in
//! `Request-Timeout` (`500ms`, `5s`). A body is read within
//! `--request-arrival-timeout` (408 after it) and up to a bound (413 past
//! it); a body must say it is JSON or a CloudEvent (415 otherwise), so that
//! no content type a browser may send cross-site without a preflight gets
//! through.

mod api;
pub(crate) mod cloudevents;
mod events;
mod json;
mod stream;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use eventgateway::bounds::BATCH_PAYLOADS;
use http::{header, HeaderValue, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::Code;
use tower::{Layer, Service};

use self::api::Found;
use self::json::Json;
use crate::auth::access::Access;
use crate::edge::plain_http::{refusal, ROUTES};
use crate::grpc::Gateway;
use crate::metrics::Metrics;

/// Where the OpenAPI document is served.
const OPENAPI: &str = "/v1/openapi.json";
/// The OpenAPI document of every route (scripts/openapi.sh makes it).
const OPENAPI_DOCUMENT: &[u8] = include_bytes!("../../../docs/openapi.json");

/// The header a plain HTTP caller sets its deadline with.
const REQUEST_TIMEOUT: &str = "request-timeout";
/// Room in a request for the CloudEvents attributes around the payload.
const ATTRIBUTE_ROOM: usize = 64 * 1024;

/// The plain HTTP routes themselves: answers every request it gets.
#[derive(Clone)]
pub(crate) struct Handler {
    /// The service the routes call.
    gateway: Gateway,
    /// The policy's webhook routes.
    access: Access,
    /// Where answers are counted.
    metrics: Metrics,
    /// The API's JSON mapping.
    json: Json,
    /// The largest CloudEvent taken: the payload limit and room for
    /// attributes.
    max_body: usize,
    /// The largest JSON request taken: the largest gRPC message.
    max_json: usize,
    /// How long a body may take to arrive.
    arrival: Duration,
}

impl Handler {
    /// The routes over `gateway` (and `access`'s webhook routes), for
    /// payloads up to `max_payload_bytes` and requests up to `max_message`
    /// bytes, arriving within `arrival`.
    pub(crate) fn new(
        (gateway, access, metrics): (Gateway, Access, Metrics),
        (max_payload_bytes, max_message): (usize, usize),
        arrival: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            gateway,
            access,
            metrics,
            json: Json::new()?,
            max_body: max_payload_bytes.saturating_add(ATTRIBUTE_ROOM),
            max_json: max_message,
            arrival,
        })
    }
}

impl Service<http::Request<Body>> for Handler {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let handler = self.clone();
        Box::pin(async move {
            let response = handler.answer(request).await;
            handler
                .metrics
                .edge()
                .http_answered(response.status().as_u16());
            Ok(response)
        })
    }
}

/// Sends requests for the plain HTTP routes to `routes` (the [`Handler`]
/// behind the edge's authentication and call tracking), everything else
/// on to gRPC. It sits outside gRPC-Web, which refuses HTTP/1.1 requests
/// that are not gRPC-Web.
#[derive(Clone)]
pub(crate) struct ServeHttp<H>(pub(crate) H);

impl<S, H: Clone> Layer<S> for ServeHttp<H> {
    type Service = Routes<S, H>;

    fn layer(&self, inner: S) -> Routes<S, H> {
        Routes {
            inner,
            routes: self.0.clone(),
        }
    }
}

/// The service [`ServeHttp`] makes.
#[derive(Clone)]
pub(crate) struct Routes<S, H> {
    inner: S,
    routes: H,
}

impl<S, H> Service<http::Request<Body>> for Routes<S, H>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    H: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    H::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if !request.uri().path().starts_with(ROUTES) {
            return Box::pin(self.inner.call(request));
        }
        let mut routes = self.routes.clone();
        Box::pin(async move {
            let Ok(()) = std::future::poll_fn(|cx| routes.poll_ready(cx)).await;
            let Ok(response) = routes.call(request).await;
            Ok(response)
        })
    }
}

impl Handler {
    /// The answer to a request for one of the routes.
    async fn answer(&self, request: http::Request<Body>) -> http::Response<Body> {
        let path = request.uri().path();
        if let Some(topic) = path
            .strip_prefix("/v1/topics/")
            .and_then(|rest| rest.strip_suffix("/events"))
            .filter(|topic| !topic.contains('/'))
        {
            let topic = topic.to_owned();
            return self.cloudevents(topic, request).await;
        }
        if path == OPENAPI {
            return openapi(request.method());
        }
        let (route, bound) = match api::find(request.method(), path) {
            Found::Route(route, bound) => (route, bound),
            Found::OtherMethod(allowed) => {
                let mut response = refusal(
                    StatusCode::METHOD_NOT_ALLOWED,
                    Code::Unimplemented,
                    &format!("this route takes {allowed}"),
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allowed));
                return response;
            }
            Found::Nothing => {
                return refusal(
                    StatusCode::NOT_FOUND,
                    Code::NotFound,
                    "no such route: events are POSTed to /v1/topics/{topic}/events, and the API's routes are in /v1/openapi.json",
                )
            }
        };
        if route.body && !cloudevents::is_json(request.headers()) {
            return refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::InvalidArgument,
                "the body is the request in JSON: content-type: application/json",
            );
        }
        let (parts, body) = request.into_parts();
        let body = match self.read(body, self.max_json).await {
            Ok(body) => body,
            Err(response) => return *response,
        };
        self.unary(route.rpc, &bound, parts, &body).await
    }

    /// The body whole, within the size and time bounds, or the answer that
    /// says which it broke.
    async fn read(
        &self,
        body: Body,
        limit: usize,
    ) -> Result<bytes::Bytes, Box<http::Response<Body>>> {
        let limited = Limited::new(body, limit);
        match tokio::time::timeout(self.arrival, limited.collect()).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
                Err(Box::new(refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Code::InvalidArgument,
                    &format!(
                        "the body is over {limit} bytes: --max-payload-bytes and 64 KiB for the attributes (times {BATCH_PAYLOADS} for a batch)"
                    ),
                )))
            }
            Ok(Err(_)) => Err(Box::new(refusal(
                StatusCode::BAD_REQUEST,
                Code::InvalidArgument,
                "the body did not arrive whole",
            ))),
            Err(_) => Err(Box::new(refusal(
                StatusCode::REQUEST_TIMEOUT,
                Code::DeadlineExceeded,
                &format!("the body did not arrive within {:?}", self.arrival),
            ))),
        }
    }
}

/// The call of `message` with the request's headers as its metadata (its
/// deadline from `Request-Timeout`) and its extensions (the caller).
fn call<T>(
    parts: http::request::Parts,
    message: T,
) -> Result<tonic::Request<T>, Box<http::Response<Body>>> {
    let mut metadata = MetadataMap::from_headers(parts.headers);
    deadline(&mut metadata).map_err(|why| {
        Box::new(refusal(
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            &why,
        ))
    })?;
    Ok(tonic::Request::from_parts(
        metadata,
        parts.extensions,
        message,
    ))
}

/// `Request-Timeout` (a duration: `500ms`, `5s`) as the call's
/// `grpc-timeout`.
fn deadline(metadata: &mut MetadataMap) -> Result<(), String> {
    let Some(value) = metadata.remove(REQUEST_TIMEOUT) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or_default().to_owned();
    let timeout = humantime::parse_duration(text.trim()).map_err(|_| {
        format!(
            "Request-Timeout {} is not a duration such as 500ms or 5s",
            crate::text::clip(&text)
        )
    })?;
    let millis = timeout.as_millis().clamp(1, 99_999_999);
    let grpc = format!("{millis}m")
        .parse()
        .map_err(|_| "Request-Timeout cannot be read".to_owned())?;
    metadata.insert("grpc-timeout", grpc);
    Ok(())
}

/// The answer to a request for the OpenAPI document.
fn openapi(method: &http::Method) -> http::Response<Body> {
    if method != http::Method::GET {
        let mut response = refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::Unimplemented,
            "the document is read with GET",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    let mut response = http::Response::new(Body::new(http_body_util::Full::new(
        bytes::Bytes::from_static(OPENAPI_DOCUMENT),
    )));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
