//! Browsers as clients: gRPC-Web calls (HTTP/1.1 or HTTP/2, with trailers
//! in the body) are turned into gRPC calls before the edge's other layers
//! see them, so TLS, tokens and the policy apply to them exactly as to
//! native calls; and CORS, for pages of the origins an operator allows
//! (none by default).

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Request headers a gRPC-Web page may send.
const ALLOWED_HEADERS: [&str; 10] = [
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "grpc-accept-encoding",
    "grpc-encoding",
    "authorization",
    "traceparent",
    "tracestate",
    "connect-protocol-version",
];

/// Response headers a page may read: the call's status, when the call
/// ends without a body (trailers-only), comes in them.
const EXPOSED_HEADERS: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

/// CORS for pages of `origins` (already checked: bare origins, or `*` for
/// any); none when there are none.
pub(crate) fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    let names = |names: &[&'static str]| -> Vec<HeaderName> {
        names
            .iter()
            .map(|name| HeaderName::from_static(name))
            .collect()
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::POST])
            .allow_headers(names(&ALLOWED_HEADERS))
            .expose_headers(names(&EXPOSED_HEADERS))
            .max_age(PREFLIGHT_MAX_AGE),
    )
}
