//! Tower layers around every call:
//!
//! - [`TrackCalls`]: records each call on its connection's activity until
//!   its response ends (a stream's call lasts as long as the stream), so
//!   that only connections with no call in progress count as idle.
//! - [`Arrival`]: the request of a unary or server-streaming call must
//!   arrive whole within a bound of its headers; a slower one gets
//!   DEADLINE_EXCEEDED. Client-streaming calls (PublishEvents,
//!   StreamingSubscribe, reflection) are not bounded: their requests are the stream.
//! - [`BadInput`]: a request the gRPC library cannot decode (not protobuf,
//!   or over the size limit) is answered INVALID_ARGUMENT, as bad input is,
//!   instead of the library's INTERNAL or OUT_OF_RANGE.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Sleep;
use tonic::body::Body;
use tonic::Status;
use tower::{Layer, Service};

use super::conn::{Call, ConnInfo};
use crate::error::Error;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Methods whose request is a stream of messages.
const STREAMING_REQUESTS: [&str; 3] = [
    "/PublishEvents",
    "/StreamingSubscribe",
    "/ServerReflectionInfo",
];

/// Records calls on their connection: see the module.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TrackCalls;

impl<S> Layer<S> for TrackCalls {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked(inner)
    }
}

/// The service [`TrackCalls`] makes.
#[derive(Debug, Clone)]
pub(crate) struct Tracked<S>(S);

impl<S, B> Service<http::Request<Body>> for Tracked<S>
where
    S: Service<http::Request<Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let call = request
            .extensions()
            .get::<ConnInfo>()
            .map(|info| info.activity.begin());
        let response = self.0.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Body::new(WithCall { body, _call: call })))
        })
    }
}

/// A response body that keeps its call in progress until it ends.
struct WithCall<B> {
    body: B,
    _call: Option<Call>,
}

impl<B> HttpBody for WithCall<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Answers undecodable requests with INVALID_ARGUMENT: see the module.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BadInput;

impl<S> Layer<S> for BadInput {
    type Service = BadInputAnswered<S>;

    fn layer(&self, inner: S) -> BadInputAnswered<S> {
        BadInputAnswered(inner)
    }
}

/// The service [`BadInput`] makes.
#[derive(Debug, Clone)]
pub(crate) struct BadInputAnswered<S>(S);

impl<S, B> Service<http::Request<Body>> for BadInputAnswered<S>
where
    S: Service<http::Request<Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let response = self.0.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            // A call refused before its handler ran answers with its status
            // in the headers (trailers-only).
            let bad = Status::from_header_map(response.headers())
                .and_then(|status| Error::undecodable(&status));
            if let Some(error) = bad {
                let _ = Status::from(error).add_header(response.headers_mut());
            }
            Ok(response)
        })
    }
}

/// Bounds how long a request takes to arrive: see the module.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival(pub(crate) Duration);

impl<S> Layer<S> for Arrival {
    type Service = Arriving<S>;

    fn layer(&self, inner: S) -> Arriving<S> {
        Arriving {
            inner,
            within: self.0,
        }
    }
}

/// The service [`Arrival`] makes.
#[derive(Debug, Clone)]
pub(crate) struct Arriving<S> {
    inner: S,
    within: Duration,
}

impl<S> Service<http::Request<Body>> for Arriving<S>
where
    S: Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> S::Future {
        let path = request.uri().path();
        if STREAMING_REQUESTS
            .iter()
            .any(|method| path.ends_with(method))
        {
            return self.inner.call(request);
        }
        let within = self.within;
        self.inner.call(request.map(|body| {
            Body::new(Deadline {
                body,
                within,
                timer: Box::pin(tokio::time::sleep(within)),
            })
        }))
    }
}

/// A request body that fails with DEADLINE_EXCEEDED when it has not ended
/// within its bound.
struct Deadline {
    body: Body,
    within: Duration,
    timer: Pin<Box<Sleep>>,
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if frame.is_pending() && self.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Error::RequestTooSlow(self.within).into())));
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
