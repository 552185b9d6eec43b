//! The layer in front of the internal listener: a call must carry the
//! replicas' secret (UNAUTHENTICATED otherwise, whatever it asks for) and
//! be a forwarded Acknowledge or Settle (UNIMPLEMENTED otherwise). A call
//! that passes carries the caller's principal the forwarding replica
//! authenticated, and is marked [`FromReplica`]: it is answered here, never
//! forwarded again.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine as _;
use tonic::body::Body;
use tonic::Status;
use tower::{Layer, Service};

use super::{Routing, BASE64, PRINCIPAL_HEADER, SECRET_HEADER};
use crate::auth::Caller;

/// The calls the internal listener takes.
const FORWARDED: [&str; 2] = [
    "/eventgateway.v1.EventGateway/Acknowledge",
    "/eventgateway.v1.EventGateway/Settle",
];

/// Marks a call another replica forwarded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FromReplica;

/// Guards the internal listener: see the module.
#[derive(Clone)]
pub(crate) struct InternalOnly(pub(crate) Routing);

impl<S> Layer<S> for InternalOnly {
    type Service = Internal<S>;

    fn layer(&self, inner: S) -> Internal<S> {
        Internal {
            inner,
            routing: self.0.clone(),
        }
    }
}

/// The service [`InternalOnly`] makes.
#[derive(Clone)]
pub(crate) struct Internal<S> {
    inner: S,
    routing: Routing,
}

impl<S> Service<http::Request<Body>> for Internal<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let headers = request.headers();
        let replica = headers
            .get(SECRET_HEADER)
            .is_some_and(|secret| self.routing.accepts_secret(secret.as_bytes()));
        if !replica {
            let status = Status::unauthenticated(
                "this is the internal listener of the gateway's replicas: only a replica may call it; clients call the gateway's own address",
            );
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        if !FORWARDED.contains(&request.uri().path()) {
            let status = Status::unimplemented(
                "the internal listener takes forwarded Acknowledge and Settle calls only",
            );
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        let principal = headers
            .get(PRINCIPAL_HEADER)
            .and_then(|value| BASE64.decode(value.as_bytes()).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .map(|principal| principal.into());
        let extensions = request.extensions_mut();
        extensions.insert(Caller {
            principal,
            peer: None,
        });
        extensions.insert(FromReplica);
        Box::pin(self.inner.call(request))
    }
}
