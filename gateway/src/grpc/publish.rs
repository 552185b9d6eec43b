//! One publish request as PublishEvent and PublishEvents both handle it:
//! validated, published, its outcome logged and counted.

use std::time::Instant as Clock;

use eventgateway::trace_context;
use eventgateway::v1::{PublishEventRequest, PublishEventResponse};
use tokio::time::Instant;
use tonic::{Request, Status};
use tracing::Instrument as _;

use prost::Message as _;

use super::{caller_of, deadline, refused, validate, Gateway};
use crate::auth::access::Access;
use crate::auth::Caller;
use crate::error::Error;
use crate::metrics::{Metrics, UNKNOWN_TOPIC};
use crate::publish::{Publish, Publishing};
use crate::spans;
use crate::text::clip;

impl Gateway {
    /// A batch of events in one call from outside gRPC (plain HTTP), as a
    /// PublishEvents batch takes it: refused whole when over its bounds,
    /// else each event answered, in order; under one unary permit, with
    /// the call's deadline, trace context and caller.
    pub(crate) async fn publish_batch(
        &self,
        request: Request<Vec<PublishEventRequest>>,
    ) -> Result<Vec<Result<PublishEventResponse, Status>>, Status> {
        let _permit = self.unary.take()?;
        let deadline = deadline::deadline(request.metadata(), self.request_timeout);
        let caller = trace_context::from_metadata(request.metadata());
        let span = spans::rpc_server("PublishEvents", &caller);
        let from = caller_of(&request);
        let outcomes = self
            .publishes
            .publish_batch(request.into_inner(), &from, deadline, &caller)
            .instrument(span)
            .await
            .inspect_err(|error| refused("publish batch", error))?;
        Ok(outcomes
            .into_iter()
            .map(|outcome| outcome.map_err(Status::from))
            .collect())
    }
}

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
        let bytes = request.encoded_len();
        let outcome = match self.admit(request, bytes, from) {
            // Boxed: the publish state machine is large, and callers keep
            // many of these futures in flight (PublishEvents); they move a
            // pointer.
            Ok(publish) => Box::pin(self.publishing.publish(publish, deadline, caller)).await,
            Err(error) => Err(error),
        };
        self.counted(&topic, started, outcome)
    }

    /// Publishes a batch: refused whole when over its bounds, else each
    /// event as [`Self::publish`] would, answered in the batch's order (and
    /// reaching the producer in it, so that those of one key keep it).
    pub(super) async fn publish_batch(
        &self,
        batch: Vec<PublishEventRequest>,
        from: &Caller,
        deadline: Instant,
        caller: &opentelemetry::Context,
    ) -> Result<Vec<Result<PublishEventResponse, Error>>, Error> {
        let sizes = validate::batch(&batch, self.max_payload_bytes)?;
        let started = Clock::now();
        // Each event's topic for its count: a batch mostly names one, so a
        // name is kept once for each run of events that share it.
        let mut topics: Vec<String> = Vec::new();
        let mut topic_of: Vec<usize> = Vec::with_capacity(batch.len());
        let admitted: Vec<Result<Publish, Error>> = batch
            .into_iter()
            .zip(sizes)
            .map(|(request, bytes)| {
                if topics.last() != Some(&request.topic) {
                    topics.push(request.topic.clone());
                }
                topic_of.push(topics.len() - 1);
                self.admit(request, bytes, from)
            })
            .collect();
        let outcomes = self
            .publishing
            .publish_batch(admitted, deadline, caller)
            .await;
        // Counted once per topic and status, not once per event.
        let took = started.elapsed();
        // (A batch mostly has one topic and one outcome: a short list.)
        let mut counts: Vec<(&str, tonic::Code, u64)> = Vec::new();
        for (&at, outcome) in topic_of.iter().zip(&outcomes) {
            let code = logged(outcome);
            let label = self.label(&topics[at], outcome);
            match counts
                .iter_mut()
                .find(|(t, c, _)| *t == label && *c == code)
            {
                Some((_, _, count)) => *count += 1,
                None => counts.push((label, code, 1)),
            }
        }
        for (topic, code, count) in counts {
            self.metrics.publish().published(topic, code, took, count);
        }
        Ok(outcomes)
    }

    /// A request checked, and its caller's right and quota to publish it
    /// (`bytes`: its encoded size).
    fn admit(
        &self,
        request: PublishEventRequest,
        bytes: usize,
        from: &Caller,
    ) -> Result<Publish, Error> {
        tracing::debug!(topic = %clip(&request.topic), "publish received");
        let publish = validate::publish_request(request, self.max_payload_bytes)?;
        self.access.publish(from, &publish.request.topic, bytes)?;
        Ok(publish)
    }

    /// Logs and counts the outcome of one publish to `topic`.
    fn counted(
        &self,
        topic: &str,
        started: Clock,
        outcome: Result<PublishEventResponse, Error>,
    ) -> Result<PublishEventResponse, Error> {
        let code = logged(&outcome);
        self.metrics
            .publish()
            .published(self.label(topic, &outcome), code, started.elapsed(), 1);
        outcome
    }

    /// The topic label a publish to `topic` is counted under: the topic
    /// when it is known to exist, else [`UNKNOWN_TOPIC`] (so that clients
    /// cannot make up metric series).
    fn label<'a>(&self, topic: &'a str, outcome: &Result<PublishEventResponse, Error>) -> &'a str {
        if outcome.is_ok() || self.publishing.topic_exists(topic) {
            topic
        } else {
            UNKNOWN_TOPIC
        }
    }
}

/// Logs the outcome of one publish; its status code.
fn logged(outcome: &Result<PublishEventResponse, Error>) -> tonic::Code {
    match outcome {
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
    }
}
