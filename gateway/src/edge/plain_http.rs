//! Answers to plain HTTP callers (the `/v1/` routes): a gRPC status as the
//! HTTP status Google's API design maps it to, with a JSON
//! `google.rpc.Status` body (`{"code": 3, "message": "...", "details": []}`),
//! and JSON bodies of success.

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body_util::Full;
use tonic::body::Body;
use tonic::{Code, Status};

/// Where the plain HTTP routes are.
pub(crate) const ROUTES: &str = "/v1/";

/// The HTTP status of gRPC code `code` (google/rpc/code.proto's mapping).
pub(crate) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `status` answered to a plain HTTP caller.
pub(crate) fn status_response(status: &Status) -> http::Response<Body> {
    let body = serde_json::json!({
        "code": status.code() as i32,
        "message": status.message(),
        "details": [],
    });
    json_response(http_status(status.code()), &body)
}

/// An answer of `status` that is not a gRPC status (405, 413, 415...),
/// with the gRPC code nearest to it in its body.
pub(crate) fn refusal(status: StatusCode, code: Code, message: &str) -> http::Response<Body> {
    let body = serde_json::json!({
        "code": code as i32,
        "message": message,
        "details": [],
    });
    json_response(status, &body)
}

/// `body` as JSON with `status`.
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> http::Response<Body> {
    let mut text = body.to_string();
    text.push('\n');
    let mut response = http::Response::new(Body::new(Full::new(Bytes::from(text))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_as_google_s_api_design_says() {
        for (code, http) in [
            (Code::InvalidArgument, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::ResourceExhausted, 429),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
        ] {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
        }
    }
}
