//! The layer that authenticates each call before any service sees it: a
//! guarded call without valid credentials is answered UNAUTHENTICATED (and
//! audited) here (a plain HTTP call to `/v1/` as JSON with 401); every
//! call that goes on carries its [`Caller`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::Status;
use tower::{Layer, Service};

use super::conn::ConnInfo;
use super::plain_http;
use crate::auth::{audit, Authentication, Caller};
use crate::error::Error;
use crate::metrics::Metrics;

/// Authenticates calls: see the module.
#[derive(Clone)]
pub(crate) struct Authenticate {
    pub(crate) authentication: Arc<Authentication>,
    pub(crate) metrics: Metrics,
}

impl<S> Layer<S> for Authenticate {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Authenticated<S> {
        Authenticated {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`Authenticate`] makes.
#[derive(Clone)]
pub(crate) struct Authenticated<S> {
    inner: S,
    layer: Authenticate,
}

impl<S> Service<http::Request<Body>> for Authenticated<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let conn = request.extensions().get::<ConnInfo>();
        let peer = conn.and_then(|conn| conn.remote);
        let certificate = conn.and_then(|conn| conn.certificate_principal.clone());
        let authentication = &self.layer.authentication;
        if !authentication.guards(request.uri().path()) {
            request.extensions_mut().insert(Caller {
                principal: authentication.is_on().then_some(certificate).flatten(),
                peer,
            });
            return Box::pin(self.inner.call(request));
        }
        // The service that was made ready goes with the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Authenticate {
            authentication,
            metrics,
        } = self.layer.clone();
        let plain = request.uri().path().starts_with(plain_http::ROUTES);
        Box::pin(async move {
            let authorization = request.headers().get(http::header::AUTHORIZATION);
            match authentication
                .authenticate(authorization, certificate.as_ref())
                .await
            {
                Ok(principal) => {
                    request.extensions_mut().insert(Caller {
                        principal: Some(principal),
                        peer,
                    });
                    inner.call(request).await
                }
                Err(failure) => {
                    audit::authentication_failed(failure, peer, &metrics);
                    let status = Status::from(Error::CallerUnauthenticated(failure.message()));
                    Ok(match plain {
                        true => plain_http::status_response(&status),
                        false => status.into_http(),
                    })
                }
            }
        })
    }
}
