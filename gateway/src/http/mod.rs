//! Plain HTTP on the gateway's port, beside gRPC: `POST
//! /v1/topics/{topic}/events` takes a CloudEvent (`cloudevents`: binary or
//! structured mode) and answers, once Kafka stored it, what PublishEvent
//! answers, as JSON; or a batch (`application/cloudevents-batch+json`),
//! answered event by event as a PublishEvents batch is (200 once the batch
//! was taken, each result `stored` or `error`; refused whole, with the
//! status of why, when it is over its bounds). The call goes through the EventGateway service itself,
//! so the edge (TLS, the token in `Authorization`, already checked by the
//! layers outside this one), the policy, quotas, limits, audit, metrics and
//! traces (`traceparent`) are the same as for gRPC. A deadline comes in
//! `Request-Timeout` (`500ms`, `5s`). Any other path passes on to gRPC.
//!
//! A body is read within `--request-arrival-timeout` (408 after it) and up
//! to the largest publish request the gateway takes (413 past it); a body
//! that is not a CloudEvent is refused with 415 (so that no content type a
//! browser may send cross-site without a preflight gets through).

pub(crate) mod cloudevents;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use eventgateway::bounds::BATCH_PAYLOADS;
use eventgateway::v1::event_gateway_server::EventGateway;
use eventgateway::v1::{PublishEventRequest, PublishEventResponse};
use http::{header, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::Code;
use tower::{Layer, Service};

use self::cloudevents::Mode;
use crate::auth::access::Access;
use crate::auth::webhook::Webhook;
use crate::edge::plain_http::{self, refusal, status_response, ROUTES};
use crate::grpc::Gateway;
use crate::metrics::Metrics;

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
    /// The largest body taken: the payload limit and room for attributes.
    max_body: usize,
    /// How long a body may take to arrive.
    arrival: Duration,
}

impl Handler {
    /// The routes over `gateway` (and `access`'s webhook routes), for payloads up to `max_payload_bytes`
    /// arriving within `arrival`.
    pub(crate) fn new(
        (gateway, access, metrics): (Gateway, Access, Metrics),
        max_payload_bytes: usize,
        arrival: Duration,
    ) -> Self {
        Self {
            gateway,
            access,
            metrics,
            max_body: max_payload_bytes.saturating_add(ATTRIBUTE_ROOM),
            arrival,
        }
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
        let Some(topic) = path
            .strip_prefix("/v1/topics/")
            .and_then(|rest| rest.strip_suffix("/events"))
            .filter(|topic| !topic.contains('/'))
            .map(str::to_owned)
        else {
            return refusal(
                StatusCode::NOT_FOUND,
                Code::NotFound,
                "no such route: events are POSTed to /v1/topics/{topic}/events",
            );
        };
        if request.method() != Method::POST {
            let mut response = refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                Code::Unimplemented,
                "events are POSTed",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        let Some(mode) = cloudevents::mode(request.headers()) else {
            let route = cloudevents::is_json(request.headers())
                .then(|| self.access.webhook(&topic))
                .flatten();
            return match route {
                Some(route) => self.webhook(&route, request).await,
                None => refusal(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    Code::InvalidArgument,
                    "not a CloudEvent: send one in binary mode (ce-specversion, ce-id, ce-source and ce-type headers; the body is the data) or in structured mode (content-type: application/cloudevents+json), or a batch (content-type: application/cloudevents-batch+json); a plain JSON body only to a topic the policy declares a webhook route for",
                ),
            };
        };
        let (parts, body) = request.into_parts();
        let limit = match mode {
            Mode::Batch => self.max_body.saturating_mul(BATCH_PAYLOADS),
            Mode::Binary | Mode::Structured => self.max_body,
        };
        let body = match self.read(body, limit).await {
            Ok(body) => body,
            Err(response) => return *response,
        };
        let events = match mode {
            Mode::Binary => cloudevents::binary(&topic, &parts.headers, body).map(|one| vec![one]),
            Mode::Structured => cloudevents::structured(&topic, &body).map(|one| vec![one]),
            Mode::Batch => cloudevents::batch(&topic, &body),
        };
        let mut events = match events {
            Ok(events) => events,
            Err(why) => return refusal(StatusCode::BAD_REQUEST, Code::InvalidArgument, &why),
        };
        if mode != Mode::Batch {
            return self.publish(parts, events.remove(0)).await;
        }
        let call = match call(parts, events) {
            Ok(call) => call,
            Err(response) => return *response,
        };
        match self.gateway.publish_batch(call).await {
            Ok(outcomes) => {
                let results: Vec<serde_json::Value> = outcomes
                    .iter()
                    .map(|outcome| match outcome {
                        Ok(stored) => serde_json::json!({ "stored": stored_json(stored) }),
                        Err(status) => serde_json::json!({
                            "error": { "code": status.code() as i32, "message": status.message() }
                        }),
                    })
                    .collect();
                let body = serde_json::json!({ "results": results });
                plain_http::json_response(StatusCode::OK, &body)
            }
            Err(status) => status_response(&status),
        }
    }

    /// A plain body POSTed to a webhook route: its signature checked (when
    /// the route signs), then published as the route's event.
    async fn webhook(&self, route: &Webhook, request: http::Request<Body>) -> http::Response<Body> {
        let (parts, body) = request.into_parts();
        let body = match self.read(body, self.max_body).await {
            Ok(body) => body,
            Err(response) => return *response,
        };
        if let Err(why) = route.verify(&parts.headers, &body, SystemTime::now()) {
            return refusal(StatusCode::UNAUTHORIZED, Code::Unauthenticated, &why);
        }
        let event = cloudevents::plain(route, &parts.headers, body);
        self.publish(parts, event).await
    }

    /// Publishes one event with the call's metadata and extensions.
    async fn publish(
        &self,
        parts: http::request::Parts,
        event: PublishEventRequest,
    ) -> http::Response<Body> {
        let call = match call(parts, event) {
            Ok(call) => call,
            Err(response) => return *response,
        };
        match self.gateway.publish_event(call).await {
            Ok(stored) => plain_http::json_response(StatusCode::OK, &stored_json(stored.get_ref())),
            Err(status) => status_response(&status),
        }
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

/// PublishEventResponse in the proto3 JSON mapping.
fn stored_json(stored: &PublishEventResponse) -> serde_json::Value {
    let mut value = serde_json::json!({
        "eventId": stored.event_id,
        "topic": stored.topic,
        "partition": stored.partition,
        "offset": stored.offset.to_string(),
    });
    if let Some(timestamp) = &stored.timestamp {
        value["timestamp"] = serde_json::Value::String(timestamp.to_string());
    }
    value
}
