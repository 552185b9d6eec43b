//! The live event viewer (`--viewer`): a page from `web/viewer` (its
//! script bundled into `web/viewer/dist`), embedded in the binary and
//! served at `/` on the gateway's own port. It
//! calls the gateway with gRPC-Web from the same origin, so it needs no
//! CORS; its calls go through the edge like any other (tokens included).
//! Everything else passes on to the gRPC services.

use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::{self, Either, Ready};
use http::{header, HeaderValue, Method, StatusCode};
use http_body_util::Full;
use tonic::body::Body;
use tower::{Layer, Service};

/// The page's files: path, content type, bytes.
const FILES: [(&str, &str, &[u8]); 3] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../../../web/viewer/index.html"),
    ),
    (
        "/viewer.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../web/viewer/dist/viewer.js"),
    ),
    (
        "/viewer.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../web/viewer/viewer.css"),
    ),
];

/// What a GET for anything else gets.
const NOT_FOUND: &[u8] = b"not found: the viewer serves / only\n";

/// Only the page's own files and calls to the gateway, nothing inline, and
/// never inside another site's frame.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Serves the viewer's files: see the module.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ServeViewer;

impl<S> Layer<S> for ServeViewer {
    type Service = Viewer<S>;

    fn layer(&self, inner: S) -> Viewer<S> {
        Viewer(inner)
    }
}

/// The service [`ServeViewer`] makes.
#[derive(Debug, Clone)]
pub(crate) struct Viewer<S>(S);

impl<S, B> Service<http::Request<B>> for Viewer<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<http::Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let page = matches!(*request.method(), Method::GET | Method::HEAD)
            .then(|| file(request.uri().path()))
            .flatten();
        let head = request.method() == Method::HEAD;
        let answer = match page {
            Some((content_type, bytes)) => (StatusCode::OK, content_type, bytes),
            // A page load asks for more (/favicon.ico): what is not the
            // page's is not found. gRPC and gRPC-Web calls are POSTs.
            None if head || request.method() == Method::GET => (
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                NOT_FOUND,
            ),
            None => return Either::Right(self.0.call(request)),
        };
        let (status, content_type, bytes) = answer;
        let body = if head {
            Bytes::new()
        } else {
            Bytes::from_static(bytes)
        };
        Either::Left(future::ready(Ok(response(
            status,
            content_type,
            bytes.len(),
            body,
        ))))
    }
}

/// The viewer's file at `path` (`/index.html` is `/`).
fn file(path: &str) -> Option<(&'static str, &'static [u8])> {
    let path = if path == "/index.html" { "/" } else { path };
    FILES
        .iter()
        .find(|(at, _, _)| *at == path)
        .map(|(_, content_type, bytes)| (*content_type, *bytes))
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    length: usize,
    body: Bytes,
) -> http::Response<Body> {
    let mut response = http::Response::new(Body::new(Full::new(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
