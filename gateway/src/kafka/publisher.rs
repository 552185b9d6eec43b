//! The one producer every publish and every dead letter goes through:
//! acks=all and idempotence, so that an OK means Kafka stored the record.
//! ([`super::producer::Producer`] replaces it when it fails for good.)

use std::time::Duration;

use eventgateway::record::OutgoingRecord;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::{Delivery, DeliveryFuture};
use rdkafka::producer::{FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use tokio::time::Instant;

use super::producer::Producer;
use super::Cluster;
use crate::error::Error;

/// Room in a record for its key and headers beside the payload.
const RECORD_OVERHEAD_BYTES: usize = 64 * 1024;

/// How much nearer than twice the delivery timeout a deadline may be and
/// still need no timer (see [`Publisher::needs_timer`]).
const TIMER_SLACK: Duration = Duration::from_secs(1);

/// The producer's default linger.ms (`--kafka-property linger.ms=...`
/// overrides it).
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub))]
pub const LINGER_MS: &str = "2";

/// The producer's default partitioner: the Java client's placement of
/// keys (murmur2), records without a key spread at random
/// (`--kafka-property partitioner=...` overrides it).
const PARTITIONER: &str = "murmur2_random";

/// The librdkafka record for `record` on `topic`: key, value, headers and
/// timestamp (the event's time; the time it is sent when the event's time
/// is later than that, since brokers refuse timestamps far ahead of their
/// clock: Kafka 4 by default more than an hour. The event keeps its own
/// time in `ce_time`).
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub))]
pub fn future_record<'a>(
    topic: &'a str,
    record: &'a OutgoingRecord,
) -> FutureRecord<'a, [u8], [u8]> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (key, value) in &record.headers {
        headers = headers.insert(Header {
            key: key.as_ref(),
            value: Some(value),
        });
    }
    let mut future_record = FutureRecord::to(topic)
        .payload(&record.value[..])
        .headers(headers);
    if let Some(key) = &record.key {
        future_record = future_record.key(&key[..]);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        });
    if let Some(timestamp) = record.timestamp_ms.filter(|at| *at <= now) {
        future_record = future_record.timestamp(timestamp);
    }
    future_record
}

/// The gateway's shared producer.
#[derive(Clone)]
pub(crate) struct Publisher {
    /// The producer; cloning shares it.
    producer: Producer,
    /// Longest Kafka gets to store an event (message.timeout.ms): librdkafka
    /// answers every send within it.
    delivery_timeout: Duration,
}

impl Publisher {
    /// Creates the producer. `create_topics_on_metadata` lets metadata
    /// requests create missing topics (the embedded cluster's behaviour).
    pub(crate) fn new(
        cluster: &Cluster,
        delivery_timeout: Duration,
        create_topics_on_metadata: bool,
        max_payload_bytes: usize,
        compression: &str,
    ) -> Result<Self, KafkaError> {
        // A record is its payload, its key and headers: the producer takes
        // every payload the gateway accepts.
        let max_record = max_payload_bytes
            .saturating_add(RECORD_OVERHEAD_BYTES)
            .to_string();
        let config = cluster.client_config(
            &[
                ("message.max.bytes", &max_record),
                // Gateway traffic is many callers each waiting for its own
                // answer, so the linger adds to every call, and under load
                // librdkafka batches anyway while requests are in flight.
                // 2 ms measured best for unary publishes from 64 callers
                // (about 2x librdkafka's default of 5 ms) and keeps about 90%
                // of streaming throughput (BENCHMARKS.md).
                ("linger.ms", LINGER_MS),
                ("compression.type", compression),
                // A key goes to the partition the Java client (and so most
                // Kafka services) puts it on: murmur2 of the key, as
                // Kafka's default partitioner; librdkafka's own default
                // (CRC32) places keys elsewhere.
                ("partitioner", PARTITIONER),
            ],
            &[
                ("acks", "all".into()),
                ("enable.idempotence", "true".into()),
                (
                    "message.timeout.ms",
                    delivery_timeout.as_millis().to_string(),
                ),
                (
                    "allow.auto.create.topics",
                    create_topics_on_metadata.to_string(),
                ),
            ],
        );
        Ok(Self {
            producer: Producer::new(config)?,
            delivery_timeout,
        })
    }

    /// The underlying producer, for metadata requests, health and its
    /// replacement.
    pub(crate) fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Sends a librdkafka record and waits until Kafka stored it, or until
    /// `deadline`; answers where it was stored.
    pub(crate) async fn send_record(
        &self,
        future_record: FutureRecord<'_, [u8], [u8]>,
        deadline: Option<Instant>,
    ) -> Result<Delivery, Error> {
        let topic = future_record.topic;
        let delivery = self.enqueue(future_record)?;
        let answer = match deadline.filter(|deadline| self.needs_timer(*deadline)) {
            Some(deadline) => tokio::time::timeout_at(deadline, delivery)
                .await
                .map_err(|_| Error::DeadlineExceeded)?,
            None => delivery.await,
        };
        stored(topic, answer)
    }

    /// Hands a record to librdkafka (in the order of the calls); its answer
    /// comes through the future, within the delivery timeout.
    pub(crate) fn enqueue(
        &self,
        future_record: FutureRecord<'_, [u8], [u8]>,
    ) -> Result<DeliveryFuture, Error> {
        let topic = future_record.topic;
        self.producer.with(|producer| {
            producer
                .send_result(future_record)
                .map_err(|(error, _)| Error::from_kafka(&error, Some(topic)))
        })
    }

    /// Whether a wait until `deadline` needs a timer of its own: one about
    /// twice the delivery timeout away or more does not (one timer per event
    /// saved), as librdkafka answers well before. "About": the deadline was
    /// set when the call began, so a call with the default deadlines
    /// (`--request-timeout` twice `--delivery-timeout`) finds it a little
    /// less than twice the delivery timeout away by now.
    pub(crate) fn needs_timer(&self, deadline: Instant) -> bool {
        timer_needed(deadline, Instant::now(), self.delivery_timeout)
    }

    /// Waits until every queued event was answered by Kafka, at most `timeout`.
    /// Blocking: call it off the async runtime.
    pub(crate) fn flush(&self, timeout: Duration) -> Result<(), Error> {
        let producer = self.producer.current();
        producer
            .flush(Timeout::After(timeout))
            .map_err(|error| match error.rdkafka_error_code() {
                Some(RDKafkaErrorCode::OperationTimedOut) => Error::KafkaUnavailable(format!(
                    "{} events still unconfirmed after {timeout:?}",
                    producer.in_flight_count()
                )),
                _ => Error::from_kafka(&error, None),
            })
    }
}

/// Whether a wait from `now` until `deadline` needs a timer, when
/// librdkafka answers every send within `delivery_timeout`.
fn timer_needed(deadline: Instant, now: Instant, delivery_timeout: Duration) -> bool {
    deadline + TIMER_SLACK < now + 2 * delivery_timeout
}

/// What a record's [`DeliveryFuture`] gives.
pub(crate) type Answer = <DeliveryFuture as std::future::Future>::Output;

/// What librdkafka answered for a record of `topic`: where Kafka stored it,
/// or why not.
pub(crate) fn stored(topic: &str, answer: Answer) -> Result<Delivery, Error> {
    match answer {
        Ok(Ok(stored)) => Ok(stored),
        Ok(Err((error, _))) => {
            tracing::warn!(%error, topic, "Kafka did not store an event");
            Err(Error::from_kafka(&error, Some(topic)))
        }
        // The producer was torn down before it answered.
        Err(_) => Err(Error::ShuttingDown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_needs_a_timer_only_when_the_deadline_comes_before_librdkafka_answers() {
        let delivery = Duration::from_secs(30);
        let began = Instant::now();
        // The defaults: a 60 s request timeout set when the call began, looked
        // at a little later.
        let deadline = began + Duration::from_secs(60);
        assert!(!timer_needed(
            deadline,
            began + Duration::from_millis(5),
            delivery
        ));
        // A client's shorter deadline.
        let deadline = began + Duration::from_secs(10);
        assert!(timer_needed(deadline, began, delivery));
        let deadline = began + Duration::from_secs(58);
        assert!(timer_needed(deadline, began, delivery));
    }
}
