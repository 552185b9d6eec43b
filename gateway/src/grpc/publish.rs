//! One publish request as PublishEvent and PublishEvents both handle it:
//! validated, published, its outcome logged and counted.

use std::time::Instant as Clock;

use eventgateway::v1::{PublishEventRequest, PublishEventResponse};
use tokio::time::Instant;

use prost::Message as _;

use super::validate;
use crate::auth::access::Access;
use crate::auth::Caller;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::publish::Publishing;
use crate::text::clip;

/// Publishes requests; cloning shares what it publishes through.
#[derive(Clone)]
pub(super) struct PublishCalls {
    /// Where the events go.
    publishing: Publishing,
    /// Where each call is counted.
    metrics: Metrics,
    /// Largest payload accepted (`--max-payload-bytes`).
    max_payload_bytes: usize,
    /// What callers may publish, and how fast.
    access: Access,
}

impl PublishCalls {
    /// Publishes through `publishing`, counting in `metrics`.
    pub(super) fn new(
        publishing: Publishing,
        metrics: Metrics,
        max_payload_bytes: usize,
        access: Access,
    ) -> Self {
        Self {
            publishing,
            metrics,
            max_payload_bytes,
            access,
        }
    }

    /// Validates one request, checks that its caller `from` may publish it
    /// now, and publishes it, answering by `deadline`; logs
    /// the outcome and counts it under its topic, or under `(unknown)` when
    /// the topic is not known to exist (so that clients cannot make up
    /// metric series).
    pub(super) async fn publish(
        &self,
        request: PublishEventRequest,
        from: &Caller,
        deadline: Instant,
        caller: opentelemetry::Context,
    ) -> Result<PublishEventResponse, Error> {
        let started = Clock::now();
        tracing::debug!(topic = %clip(&request.topic), "publish received");
        let topic = request.topic.clone();
        let bytes = request.encoded_len();
        let allowed =
            validate::publish_request(request, self.max_payload_bytes).and_then(|publish| {
                self.access.publish(from, &topic, bytes)?;
                Ok(publish)
            });
        let outcome = match allowed {
            // Boxed: the publish state machine is large, and callers keep
            // many of these futures in flight (PublishEvents); they move a
            // pointer.
            Ok(publish) => Box::pin(self.publishing.publish(publish, deadline, caller)).await,
            Err(error) => Err(error),
        };
        let code = match &outcome {
            Ok(response) => {
                tracing::debug!(
                    partition = response.partition,
                    offset = response.offset,
                    "event stored"
                );
                tonic::Code::Ok
            }
            Err(error) => {
                tracing::info!(%error, code = ?error.code(), "publish refused");
                error.code()
            }
        };
        let label = (outcome.is_ok() || self.publishing.topic_exists(&topic)).then_some(&*topic);
        self.metrics.published(label, code, started.elapsed());
        outcome
    }
}
