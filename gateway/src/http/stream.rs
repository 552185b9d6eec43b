//! Subscribe over plain HTTP: `GET /v1/subscriptions?topics=...` (the
//! request's scalar fields as query parameters, by JSON or proto name,
//! dotted into messages: `retryPolicy.minimumBackoff=1s`) or `POST
//! /v1/subscriptions` (the whole SubscribeRequest as JSON) streams what
//! Subscribe streams, one message a line as newline-delimited JSON
//! (`{"result": {...}}`), or as Server-Sent Events when the caller accepts
//! `text/event-stream` (`event: delivery`, the message as `data`). The
//! stream ends as Subscribe ends, with its status written last
//! (`{"error": {"code": 14, "message": "..."}}`, or `event: error`). A
//! subscription refused at once is answered as a unary call is.
//!
//! A GET a browser sends from another site (`Sec-Fetch-Site`) is refused:
//! such a page could consume a group's events without seeing them; a
//! POST needs `application/json`, which a browser sends cross-site only
//! after a preflight.

use std::convert::Infallible;

use bytes::Bytes;
use eventgateway::v1::event_gateway_server::EventGateway;
use eventgateway::v1::subscribe_response::Kind;
use eventgateway::v1::{SubscribeRequest, SubscribeResponse};
use futures_util::StreamExt as _;
use http::{header, HeaderValue, Method, StatusCode};
use http_body::Frame;
use http_body_util::StreamBody;
use tonic::body::Body;
use tonic::{Code, Status};

use super::api::unreadable;
use super::json::{Json, Refusal};
use super::{call, Handler};
use crate::edge::plain_http::{refusal, status_response};
use crate::text::clip;

/// The most query parameters a subscription takes.
const MAX_PARAMETERS: usize = 256;

impl Handler {
    /// The answer to a subscription request: the stream, or why not.
    pub(super) async fn subscribe(
        &self,
        parts: http::request::Parts,
        body: &[u8],
    ) -> http::Response<Body> {
        let request = if parts.method == Method::GET {
            if cross_site(&parts.headers) {
                return refusal(
                    StatusCode::FORBIDDEN,
                    Code::PermissionDenied,
                    "a subscription is not opened from another site's page: send the request with fetch() and a JSON body (POST), which CORS governs",
                );
            }
            query(&self.json, parts.uri.query().unwrap_or_default())
        } else {
            self.json.read("SubscribeRequest", body, &[])
        };
        let request: SubscribeRequest = match request {
            Ok(request) => request,
            Err(why) => return unreadable(&why),
        };
        let sse = parts
            .headers
            .get_all(header::ACCEPT)
            .iter()
            .any(|accept| accept.as_bytes().starts_with(b"text/event-stream"));
        let call = match call(parts, request) {
            Ok(call) => call,
            Err(response) => return *response,
        };
        let stream = match self.gateway.subscribe(call).await {
            Ok(stream) => stream.into_inner(),
            Err(status) => return status_response(&status),
        };
        let json = self.json.clone();
        let lines = futures_util::stream::unfold(Some(Box::pin(stream)), move |stream| {
            let json = json.clone();
            async move {
                let mut stream = stream?;
                let (text, next) = match stream.next().await? {
                    Ok(message) => match line(&json, &message, sse) {
                        Ok(text) => (text, Some(stream)),
                        Err(fault) => (last(&Status::internal(fault), sse), None),
                    },
                    Err(status) => (last(&status, sse), None),
                };
                Some((Ok::<_, Infallible>(Frame::data(Bytes::from(text))), next))
            }
        });
        let mut response = http::Response::new(Body::new(StreamBody::new(lines)));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(if sse {
                "text/event-stream"
            } else {
                "application/x-ndjson"
            }),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // Proxies that buffer answers would hold deliveries back.
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }
}

/// Whether a browser sent the request from another site's page.
fn cross_site(headers: &http::HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|site| matches!(site.as_bytes(), b"cross-site" | b"same-site"))
}

/// The SubscribeRequest a query string says.
fn query(json: &Json, query: &str) -> Result<SubscribeRequest, Refusal> {
    let mut request = serde_json::Map::new();
    for (at, pair) in query.split('&').filter(|pair| !pair.is_empty()).enumerate() {
        if at == MAX_PARAMETERS {
            return Err(format!(
                "more than {MAX_PARAMETERS} query parameters: send the request as a JSON body with POST"
            ));
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(name), Some(value)) = (decoded(name), decoded(value)) else {
            return Err(format!(
                "query parameter {} is not percent-encoded UTF-8",
                clip(pair)
            ));
        };
        let field = json.query_field("SubscribeRequest", &name)?;
        let value = match (field.boolean, value.as_str()) {
            (false, _) => serde_json::Value::String(value),
            (true, "true" | "") => serde_json::Value::Bool(true),
            (true, "false") => serde_json::Value::Bool(false),
            (true, _) => {
                return Err(format!(
                    "{} is true or false, not {}",
                    clip(&name),
                    clip(&value)
                ))
            }
        };
        let Some((last, parents)) = field.json_path.split_last() else {
            continue;
        };
        let mut object = &mut request;
        for parent in parents {
            let inner = object
                .entry(parent.clone())
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            let serde_json::Value::Object(inner) = inner else {
                return Err(format!("{} is set twice", clip(&name)));
            };
            object = inner;
        }
        match (field.repeated, object.get_mut(last)) {
            (true, Some(serde_json::Value::Array(values))) => values.push(value),
            (true, None) => {
                object.insert(last.clone(), serde_json::Value::Array(vec![value]));
            }
            (false, None) => {
                object.insert(last.clone(), value);
            }
            _ => return Err(format!("{} is set twice", clip(&name))),
        }
    }
    json.read_value("SubscribeRequest", serde_json::Value::Object(request))
}

/// A query string's part decoded (`+` is a space there).
fn decoded(part: &str) -> Option<String> {
    crate::text::percent_decoded(part.replace('+', " ").as_bytes())
}

/// `message` as a line of the stream.
fn line(json: &Json, message: &SubscribeResponse, sse: bool) -> Result<String, String> {
    let value = json.write("SubscribeResponse", message)?;
    Ok(if sse {
        let event = match message.kind {
            Some(Kind::Subscribed(_)) => "subscribed",
            Some(Kind::Delivery(_)) => "delivery",
            Some(Kind::Rebalance(_)) => "rebalance",
            None => "message",
        };
        format!("event: {event}\ndata: {value}\n\n")
    } else {
        format!("{}\n", serde_json::json!({ "result": value }))
    })
}

/// The stream's last line: the status it ended with.
fn last(status: &Status, sse: bool) -> String {
    let status = serde_json::json!({
        "code": status.code() as i32,
        "message": status.message(),
        "details": [],
    });
    if sse {
        format!("event: error\ndata: {status}\n\n")
    } else {
        format!("{}\n", serde_json::json!({ "error": status }))
    }
}

#[cfg(test)]
mod tests {
    use eventgateway::v1::{AckMode, StartFrom};

    use super::*;

    #[test]
    fn a_query_string_is_a_subscribe_request() {
        let json = Json::new().unwrap();
        let request = query(
            &json,
            "topics=a&topics=b%2Dc&group=g+1&startFrom=START_FROM_EARLIEST&ack_mode=ACK_MODE_MANUAL&orderedByKey=true&retryPolicy.minimumBackoff=1s&retry_policy.maximumBackoff=2s&maxUnacked=5",
        )
        .unwrap();
        assert_eq!(request.topics, ["a", "b-c"]);
        assert_eq!(request.group, "g 1");
        assert_eq!(request.start_from(), StartFrom::Earliest);
        assert_eq!(request.ack_mode(), AckMode::Manual);
        assert!(request.ordered_by_key);
        assert_eq!(request.max_unacked, 5);
        let retry = request.retry_policy.unwrap();
        assert_eq!(retry.minimum_backoff.unwrap().seconds, 1);
        assert_eq!(retry.maximum_backoff.unwrap().seconds, 2);
        assert_eq!(query(&json, "").unwrap(), SubscribeRequest::default());

        for (bad, why) in [
            ("group=a&group=b", "set twice"),
            ("nope=1", "no field"),
            ("startOffsets=1", "cannot be a query parameter"),
            ("orderedByKey=yes", "true or false"),
            ("startFrom=SOMETIME", "not a SubscribeRequest"),
            ("topics=%ZZ", "percent-encoded"),
        ] {
            let error = query(&json, bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
        let many = vec!["topics=t"; MAX_PARAMETERS + 1].join("&");
        assert!(query(&json, &many).unwrap_err().contains("more than"));
    }

    #[test]
    fn lines_are_ndjson_results_or_server_sent_events_and_the_status_comes_last() {
        let json = Json::new().unwrap();
        let subscribed = SubscribeResponse {
            kind: Some(Kind::Subscribed(eventgateway::v1::Subscribed {
                subscription_id: "s".into(),
            })),
        };
        assert_eq!(
            line(&json, &subscribed, false).unwrap(),
            "{\"result\":{\"subscribed\":{\"subscriptionId\":\"s\"}}}\n"
        );
        assert_eq!(
            line(&json, &subscribed, true).unwrap(),
            "event: subscribed\ndata: {\"subscribed\":{\"subscriptionId\":\"s\"}}\n\n"
        );
        let ended = Status::unavailable("shutting down");
        assert_eq!(
            last(&ended, false),
            "{\"error\":{\"code\":14,\"details\":[],\"message\":\"shutting down\"}}\n"
        );
        assert!(last(&ended, true).starts_with("event: error\ndata: {\"code\":14"));
    }
}
