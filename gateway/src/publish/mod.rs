//! Where a published event goes: the gateway fills its id and time, makes
//! sure its topic exists, carries the caller's trace into the record, and
//! hands the record to the one producer; the answer comes once Kafka stored
//! it. PublishEvent and PublishEvents publish through here alike.

mod producer;

use std::time::SystemTime;

use eventgateway::record::{payload_to_record, Payload};
use eventgateway::trace_context;
use eventgateway::v1::{PublishEventRequest, PublishEventResponse};
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::Error;
use crate::health::Readiness;
use crate::kafka::topics::Topics;
use crate::spans;

pub(crate) use producer::Publisher;
pub use producer::{future_record, LINGER_MS};

/// A publish request that passed validation, with its payload encoded once
/// (and its size checked against that encoding).
#[derive(Debug)]
pub(crate) struct Publish {
    /// The request: a legal topic, and an event whose payload was moved
    /// into `payload`.
    pub(crate) request: PublishEventRequest,
    /// The payload as the record value.
    pub(crate) payload: Payload,
}

/// Publishes events; cloning shares the producer and the topic cache.
#[derive(Clone)]
pub(crate) struct Publishing {
    /// The one producer.
    publisher: Publisher,
    /// Which topics exist.
    topics: Topics,
    /// Whether new work may start.
    readiness: Readiness,
}

impl Publishing {
    /// Publishes through `publisher` to the topics `topics` checks, while
    /// `readiness` allows.
    pub(crate) fn new(publisher: Publisher, topics: Topics, readiness: Readiness) -> Self {
        Self {
            publisher,
            topics,
            readiness,
        }
    }

    /// Makes sure `topic` exists (creating it if allowed); cached.
    pub(crate) async fn ensure(&self, topic: &str) -> Result<(), Error> {
        self.topics.ensure(topic).await
    }

    /// Whether `topic` is known to exist.
    pub(crate) fn topic_exists(&self, topic: &str) -> bool {
        self.topics.is_known(topic)
    }

    /// Publishes one event and answers where Kafka stored it; the answer
    /// comes by `deadline`. The produce span continues `caller`'s trace.
    pub(crate) async fn publish(
        &self,
        publish: Publish,
        deadline: Instant,
        caller: opentelemetry::Context,
    ) -> Result<PublishEventResponse, Error> {
        self.readiness.check()?;
        let Publish { request, payload } = publish;
        let PublishEventRequest { topic, key, event } = request;
        let mut event = event.unwrap_or_default();
        if event.id.is_empty() {
            let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
            event.id = uuid::Uuid::now_v7()
                .hyphenated()
                .encode_lower(&mut text)
                .to_owned();
        }
        let time = *event
            .time
            .get_or_insert_with(|| prost_types::Timestamp::from(SystemTime::now()));
        tokio::time::timeout_at(deadline, self.topics.ensure(&topic))
            .await
            .map_err(|_| Error::DeadlineExceeded)??;
        // The record carries the send's trace context to its consumers.
        let produce = spans::produce(&topic);
        let context = spans::downstream_context(&produce, &caller);
        if let Some(trace_id) = trace_context::trace_id(&context) {
            produce.record("trace_id", trace_id.as_str());
            trace_context::into_attributes(&context, &mut event.attributes);
        }
        let event_id = event.id.clone();
        let record = payload_to_record(&key, event, payload);
        // Once sent, the answer is Kafka's own (or the deadline's): a failed
        // health probe meanwhile is no reason to give up on the event.
        let stored = self
            .publisher
            .send(&topic, &record, Some(deadline))
            .instrument(produce.clone())
            .await
            .inspect(|stored| {
                produce.record("messaging.destination.partition.id", stored.partition);
                produce.record("messaging.kafka.offset", stored.offset);
            })
            .inspect_err(|error| {
                if matches!(error, Error::TopicNotFound(_)) {
                    self.topics.forget(&topic);
                }
            })?;
        Ok(PublishEventResponse {
            event_id,
            topic,
            partition: stored.partition,
            offset: stored.offset,
            timestamp: Some(time),
        })
    }
}
