//! CloudEvents POSTed to `/v1/topics/{topic}/events`: one in binary or
//! structured mode, a batch, or a plain JSON body on a webhook route.

use std::time::SystemTime;

use eventgateway::bounds::BATCH_PAYLOADS;
use eventgateway::v1::event_gateway_server::EventGateway;
use eventgateway::v1::publish_result::Result as Outcome;
use eventgateway::v1::{PublishError, PublishEventRequest, PublishResult};
use http::{header, HeaderValue, Method, StatusCode};
use tonic::body::Body;
use tonic::Code;

use super::cloudevents::{self, Mode};
use super::{call, Handler};
use crate::auth::webhook::Webhook;
use crate::edge::plain_http::{self, refusal, status_response};

impl Handler {
    /// The answer to a request for `/v1/topics/{topic}/events`.
    pub(super) async fn cloudevents(
        &self,
        topic: String,
        request: http::Request<Body>,
    ) -> http::Response<Body> {
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
        // Checked first, so that a batch is refused whole for it (and an
        // empty one too).
        if let Err(error) = crate::grpc::validate::topic_name(&topic) {
            return status_response(&tonic::Status::from(error));
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
                let results: Result<Vec<serde_json::Value>, String> = outcomes
                    .into_iter()
                    .map(|outcome| {
                        let result = match outcome {
                            Ok(stored) => Outcome::Stored(stored),
                            Err(status) => Outcome::Error(PublishError {
                                code: status.code() as i32,
                                message: status.message().to_owned(),
                            }),
                        };
                        let result = PublishResult {
                            result: Some(result),
                        };
                        self.json.write("PublishResult", &result)
                    })
                    .collect();
                match results {
                    Ok(results) => plain_http::json_response(
                        StatusCode::OK,
                        &serde_json::json!({ "results": results }),
                    ),
                    Err(fault) => status_response(&tonic::Status::internal(fault)),
                }
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
        let answer = self.gateway.publish_event(call).await.and_then(|stored| {
            self.json
                .write("PublishEventResponse", stored.get_ref())
                .map_err(tonic::Status::internal)
        });
        match answer {
            Ok(stored) => plain_http::json_response(StatusCode::OK, &stored),
            Err(status) => status_response(&status),
        }
    }
}
