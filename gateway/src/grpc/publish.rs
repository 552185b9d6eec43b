//! One publish request as PublishEvent and PublishEvents both handle it:
//! validated, published, its outcome logged and counted.

use std::collections::BTreeSet;
use std::time::Instant as Clock;

use eventgateway::v1::{PublishEventRequest, PublishEventResponse};
use futures_util::future::join_all;
use tokio::time::Instant;

use prost::Message as _;

use super::validate;
use crate::auth::access::Access;
use crate::auth::Caller;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::publish::{Publish, Publishing};
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
    /// now, and publishes it, answering by `deadline`; logs the outcome and
    /// counts it under its topic, or under `(unknown)` when the topic is not
    /// known to exist (so that clients cannot make up metric series).
    pub(super) async fn publish(
        &self,
        request: PublishEventRequest,
        from: &Caller,
        deadline: Instant,
        caller: opentelemetry::Context,
    ) -> Result<PublishEventResponse, Error> {
        let started = Clock::now();
        let topic = request.topic.clone();
        let outcome = match self.admit(request, from) {
            // Boxed: the publish state machine is large, and callers keep
            // many of these futures in flight (PublishEvents); they move a
            // pointer.
            Ok(publish) => Box::pin(self.publishing.publish(publish, deadline, caller)).await,
            Err(error) => Err(error),
        };
        self.counted(&topic, started, outcome)
    }

    /// Publishes a batch: refused whole when over its bounds, else each
    /// event as [`Self::publish`] would, answered in the batch's order. The
    /// batch's topics are looked up first, so that its events reach the
    /// producer in the batch's order (and those of one key keep it).
    pub(super) async fn publish_batch(
        &self,
        batch: Vec<PublishEventRequest>,
        from: &Caller,
        deadline: Instant,
        caller: &opentelemetry::Context,
    ) -> Result<Vec<Result<PublishEventResponse, Error>>, Error> {
        validate::batch(&batch, self.max_payload_bytes)?;
        let started = Clock::now();
        let admitted: Vec<(String, Result<Publish, Error>)> = batch
            .into_iter()
            .map(|request| (request.topic.clone(), self.admit(request, from)))
            .collect();
        let topics: BTreeSet<&str> = admitted
            .iter()
            .filter(|(_, publish)| publish.is_ok())
            .map(|(topic, _)| topic.as_str())
            .collect();
        for topic in topics {
            // A topic that is not there fails its events below, each with
            // its own answer.
            let _ = tokio::time::timeout_at(deadline, self.publishing.ensure(topic)).await;
        }
        let outcomes = admitted.into_iter().map(|(topic, admitted)| async move {
            let outcome = match admitted {
                Ok(publish) => {
                    Box::pin(self.publishing.publish(publish, deadline, caller.clone())).await
                }
                Err(error) => Err(error),
            };
            self.counted(&topic, started, outcome)
        });
        Ok(join_all(outcomes).await)
    }

    /// A request checked, and its caller's right and quota to publish it.
    fn admit(&self, request: PublishEventRequest, from: &Caller) -> Result<Publish, Error> {
        tracing::debug!(topic = %clip(&request.topic), "publish received");
        let bytes = request.encoded_len();
        let topic = request.topic.clone();
        let publish = validate::publish_request(request, self.max_payload_bytes)?;
        self.access.publish(from, &topic, bytes)?;
        Ok(publish)
    }

    /// Logs and counts the outcome of one publish to `topic`.
    fn counted(
        &self,
        topic: &str,
        started: Clock,
        outcome: Result<PublishEventResponse, Error>,
    ) -> Result<PublishEventResponse, Error> {
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
        let label = (outcome.is_ok() || self.publishing.topic_exists(topic)).then_some(topic);
        self.metrics.published(label, code, started.elapsed());
        outcome
    }
}
