//! The API as JSON over HTTP: each route is the `google.api.http`
//! annotation of an RPC in `proto/` (a test holds the two lists equal), its
//! body the request in the proto3 JSON mapping (path variables over it),
//! its answer the response in the same mapping, or the call's status as a
//! JSON `google.rpc.Status` with the HTTP status it maps to. The calls go
//! through the EventGateway service itself, as gRPC calls do, so acks and
//! settles reach their subscription's replica the same way.

use eventgateway::v1::event_gateway_server::EventGateway;
use eventgateway::v1::{AcknowledgeRequest, PublishEventRequest, SettleRequest};
use std::future::Future;

use http::{Method, StatusCode};
use prost::Message;
use tonic::body::Body;
use tonic::{Code, Status};

use super::{call, Handler};
use crate::edge::plain_http::{json_response, refusal, status_response};

/// The RPCs with routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rpc {
    /// PublishEvent.
    PublishEvent,
    /// Subscribe, streamed (`stream`).
    Subscribe,
    /// Acknowledge.
    Acknowledge,
    /// Settle.
    Settle,
}

impl Rpc {
    /// The RPC's name in the proto.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::PublishEvent => "PublishEvent",
            Self::Subscribe => "Subscribe",
            Self::Acknowledge => "Acknowledge",
            Self::Settle => "Settle",
        }
    }
}

/// One route: the HTTP method and path template of an annotation, and the
/// RPC it calls. A template has at most one variable, a whole path segment
/// (`{field}`), and may end in a verb (`:settle`).
#[derive(Debug)]
pub(crate) struct Route {
    /// The HTTP method.
    pub(crate) method: Method,
    /// The path template, as the annotation writes it.
    pub(crate) template: &'static str,
    /// Whether the request is the body (`body: "*"`) rather than the query.
    pub(crate) body: bool,
    /// The RPC called.
    pub(crate) rpc: Rpc,
}

/// Every route of the JSON API.
pub(crate) const ROUTES: [Route; 5] = [
    Route {
        method: Method::POST,
        template: "/v1/topics/{topic}:publish",
        body: true,
        rpc: Rpc::PublishEvent,
    },
    Route {
        method: Method::GET,
        template: "/v1/subscriptions",
        body: false,
        rpc: Rpc::Subscribe,
    },
    Route {
        method: Method::POST,
        template: "/v1/subscriptions",
        body: true,
        rpc: Rpc::Subscribe,
    },
    Route {
        method: Method::POST,
        template: "/v1/subscriptions/{subscription_id}:acknowledge",
        body: true,
        rpc: Rpc::Acknowledge,
    },
    Route {
        method: Method::POST,
        template: "/v1/subscriptions/{subscription_id}:settle",
        body: true,
        rpc: Rpc::Settle,
    },
];

/// What a request's method and path found.
#[derive(Debug)]
pub(crate) enum Found {
    /// A route, with the path variable's field and value.
    Route(&'static Route, Vec<(&'static str, String)>),
    /// A path with routes, none for the method: the methods it has.
    OtherMethod(&'static str),
    /// No route.
    Nothing,
}

/// The route of `method` and `path`.
pub(crate) fn find(method: &Method, path: &str) -> Found {
    let mut methods: Vec<&str> = Vec::new();
    for route in &ROUTES {
        let Some(bound) = bind(route.template, path) else {
            continue;
        };
        if route.method == method {
            return Found::Route(route, bound);
        }
        methods.push(route.method.as_str());
    }
    match methods.as_slice() {
        [] => Found::Nothing,
        [_] if methods[0] == "POST" => Found::OtherMethod("POST"),
        _ => Found::OtherMethod("GET, POST"),
    }
}

/// The path variable of `template` in `path` (percent-decoded), or `None`
/// when `path` does not match.
fn bind(template: &'static str, path: &str) -> Option<Vec<(&'static str, String)>> {
    let Some((before, rest)) = template.split_once('{') else {
        return (template == path).then(Vec::new);
    };
    let (field, after) = rest.split_once('}')?;
    let value = path.strip_prefix(before)?.strip_suffix(after)?;
    if value.is_empty() || value.contains('/') || value.contains(':') {
        return None;
    }
    let value = crate::text::percent_decoded(value.as_bytes())?;
    Some(vec![(field, value)])
}

impl Handler {
    /// A unary route's answer: the request read from `body`, the call made
    /// with the request's metadata.
    pub(super) async fn unary(
        &self,
        rpc: Rpc,
        bound: &[(&'static str, String)],
        parts: http::request::Parts,
        body: &[u8],
    ) -> http::Response<Body> {
        let gateway = &self.gateway;
        let input = (bound, parts, body);
        match rpc {
            Rpc::PublishEvent => {
                self.one(rpc, input, |call: tonic::Request<PublishEventRequest>| {
                    gateway.publish_event(call)
                })
                .await
            }
            Rpc::Acknowledge => {
                self.one(rpc, input, |call: tonic::Request<AcknowledgeRequest>| {
                    gateway.acknowledge(call)
                })
                .await
            }
            Rpc::Settle => {
                self.one(rpc, input, |call: tonic::Request<SettleRequest>| {
                    gateway.settle(call)
                })
                .await
            }
            Rpc::Subscribe => self.subscribe(input.1, body).await,
        }
    }

    /// The answer of unary RPC `rpc` (its messages `<name>Request` and
    /// `<name>Response`), called by `call_rpc`.
    async fn one<Q, A, F>(
        &self,
        rpc: Rpc,
        (bound, parts, body): (&[(&'static str, String)], http::request::Parts, &[u8]),
        call_rpc: impl FnOnce(tonic::Request<Q>) -> F,
    ) -> http::Response<Body>
    where
        Q: Message + Default,
        A: Message,
        F: Future<Output = Result<tonic::Response<A>, Status>>,
    {
        let name = rpc.name();
        let request = match self.json.read::<Q>(&format!("{name}Request"), body, bound) {
            Ok(request) => request,
            Err(why) => return unreadable(&why),
        };
        let call = match call(parts, request) {
            Ok(call) => call,
            Err(response) => return *response,
        };
        match call_rpc(call).await {
            Ok(answer) => match self
                .json
                .write(&format!("{name}Response"), answer.get_ref())
            {
                Ok(value) => json_response(StatusCode::OK, &value),
                Err(fault) => status_response(&Status::internal(fault)),
            },
            Err(status) => status_response(&status),
        }
    }
}

/// The answer to a body or query that is not the route's request.
pub(super) fn unreadable(why: &str) -> http::Response<Body> {
    refusal(StatusCode::BAD_REQUEST, Code::InvalidArgument, why)
}

#[cfg(test)]
mod tests;
