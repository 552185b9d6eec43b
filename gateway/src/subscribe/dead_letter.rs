//! Writing a dead letter: the record as it was read (key, value, timestamp,
//! every header), with `eventgateway-dlq-*` headers saying why, from where,
//! after how many attempts, for which group and when. The write goes
//! through the gateway's producer (acks=all), so that stored means stored.

use std::sync::Arc;
use std::time::SystemTime;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use super::ledger::DeadLetterJob;
use super::spec::headers;
use crate::error::Error;
use crate::kafka::publisher::Publisher;
use crate::kafka::topics::Topics;
use crate::metrics::{Metrics, UNKNOWN_TOPIC};

/// What a subscription asks before writing a dead letter of so many bytes
/// to a topic: whether its subscriber may publish there now (its rights and
/// its publish quota, charged). An error leaves the letter to be tried
/// again later, the event unsettled.
pub(crate) type DeadLetterCheck = Arc<dyn Fn(&str, usize) -> Result<(), Error> + Send + Sync>;

/// Writes dead letters; cloning shares the producer.
#[derive(Clone)]
pub(crate) struct DeadLetters {
    /// Asked before each write, when the subscriber is policed.
    check: Option<DeadLetterCheck>,
    /// The gateway's producer.
    publisher: Publisher,
    /// Which topics exist; missing ones are created when the gateway may.
    topics: Topics,
    /// Where dead letters and failed writes are counted.
    metrics: Metrics,
}

impl DeadLetters {
    /// Writes through `publisher` to topics `topics` checks.
    pub(crate) fn new(publisher: Publisher, topics: Topics, metrics: Metrics) -> Self {
        Self {
            check: None,
            publisher,
            topics,
            metrics,
        }
    }

    /// The same, asking `check` before each write.
    pub(crate) fn checked_by(self, check: Option<DeadLetterCheck>) -> Self {
        Self { check, ..self }
    }

    /// Writes `job` for a subscription of `group`, and waits until Kafka
    /// stored it.
    pub(super) async fn write(
        &self,
        job: &DeadLetterJob,
        group: Option<&str>,
    ) -> Result<(), Error> {
        if let Some(check) = &self.check {
            // Refusals are audited and counted where they are made.
            check(&job.topic, job.record.bytes()).inspect_err(|error| {
                tracing::info!(%error, dead_letter_topic = job.topic, "a dead letter waits: its subscriber may not publish it now; the event stays unsettled and it is tried again");
            })?;
        }
        let outcome = self.store(job, group).await;
        match &outcome {
            Ok(()) => {
                self.metrics
                    .delivery()
                    .dead_lettered(&job.record.topic, job.class.as_str());
                tracing::info!(
                    topic = job.record.topic,
                    partition = job.record.partition,
                    offset = job.record.offset,
                    dead_letter_topic = job.topic,
                    attempts = job.attempts,
                    reason = job.class.as_str(),
                    "event dead-lettered"
                );
            }
            Err(error) => {
                if matches!(error, Error::TopicNotFound(_)) {
                    self.topics.forget(&job.topic);
                }
                // A topic not known to exist is no label of its own (its
                // name came from a client).
                let label = if self.topics.is_known(&job.topic) {
                    job.topic.as_str()
                } else {
                    UNKNOWN_TOPIC
                };
                self.metrics.delivery().dead_letter_failed(label);
                tracing::warn!(%error, dead_letter_topic = job.topic, "cannot write a dead letter; the event stays unsettled and the write is tried again");
            }
        }
        outcome
    }

    async fn store(&self, job: &DeadLetterJob, group: Option<&str>) -> Result<(), Error> {
        self.topics.ensure(&job.topic).await?;
        let record = &job.record;
        let (partition, offset, attempts) = (
            record.partition.to_string(),
            record.offset.to_string(),
            job.attempts.to_string(),
        );
        let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let unreadable = record.unreadable.to_string();
        let mut added = vec![
            (headers::REASON, job.reason.as_bytes()),
            (headers::TOPIC, record.topic.as_bytes()),
            (headers::PARTITION, partition.as_bytes()),
            (headers::OFFSET, offset.as_bytes()),
            (headers::ATTEMPTS, attempts.as_bytes()),
            (headers::GROUP, group.unwrap_or_default().as_bytes()),
            (headers::TIME, time.as_bytes()),
        ];
        if record.unreadable > 0 {
            added.push((headers::UNREADABLE, unreadable.as_bytes()));
        }
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + added.len());
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        for (key, value) in added {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut future_record = FutureRecord::<[u8], [u8]>::to(&job.topic).headers(headers);
        if let Some(key) = &record.key {
            future_record = future_record.key(&key[..]);
        }
        if let Some(value) = &record.value {
            future_record = future_record.payload(&value[..]);
        }
        if let Some(timestamp) = record.timestamp_ms {
            future_record = future_record.timestamp(timestamp);
        }
        self.publisher.send_record(future_record, None).await?;
        Ok(())
    }
}
