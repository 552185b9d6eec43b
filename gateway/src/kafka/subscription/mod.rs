//! One Subscribe stream: a Kafka consumer of its own ([`open`]), a task that
//! moves its records into a bounded channel ([`task::run`]), and the stream
//! the client reads ([`stream::DeliveryStream`]).
//!
//! - [`acks`]: ACK_MODE_MANUAL bookkeeping (commit point, redelivery).
//! - [`context`]: rebalances and replay positioning.
//! - [`fanout`]: live tails shared by ephemeral streams from the latest event.
//! - [`task`]: flow control (bounded channel, paused consumer, ack window),
//!   redelivery, rebalance notices, shutdown.
//! - [`stream`]: offsets stored as deliveries are handed to gRPC (AUTO).

pub mod acks;
pub mod context;
pub mod fanout;
pub mod stream;
pub mod task;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use eventgateway::record::{record_to_event, IncomingRecord};
use eventgateway::v1::{subscribe_response::Kind, Delivery, SubscribeResponse};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tonic::Status;

use self::acks::{ack_id, Partition};
use self::context::{start_offsets, RebalanceEvent, SubscriptionContext};
use super::{client_config, METADATA_TIMEOUT};
use crate::error::Error;
use crate::metrics::Metrics;

/// Where a subscription starts reading.
#[derive(Debug, Clone, PartialEq)]
pub enum StartPosition {
    /// After the last event (or the group's committed offsets).
    Latest,
    /// At the first event still kept (or the group's committed offsets).
    Earliest,
    /// At the first record at or after this time, in ms since the epoch.
    Timestamp(i64),
    /// At these offsets; unlisted partitions as [`StartPosition::Latest`].
    Offsets(HashMap<Partition, i64>),
}

/// The settings of an ACK_MODE_MANUAL subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManualAcks {
    /// How long a delivery may stay unacknowledged before it is sent again.
    pub ack_timeout: Duration,
    /// The most deliveries out and unacknowledged.
    pub max_unacked: usize,
}

/// What a client asked to consume.
#[derive(Debug, Clone)]
pub struct SubscriptionSpec {
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Consumer group; `None` for an ephemeral subscription.
    pub group: Option<String>,
    /// Where to start.
    pub start: StartPosition,
    /// `Some` for ACK_MODE_MANUAL, `None` for ACK_MODE_AUTO.
    pub manual: Option<ManualAcks>,
}

/// Counters of one subscription, for observing flow control and redelivery.
#[derive(Debug, Default)]
pub struct SubscriptionStats {
    /// Whether the consumer is paused (client behind, or ack window full).
    paused: AtomicBool,
    /// How many times it was paused.
    pauses: AtomicU64,
    /// First deliveries handed to the channel.
    delivered: AtomicU64,
    /// Redeliveries handed to the channel.
    redelivered: AtomicU64,
    /// Records read from Kafka and held by the task, not yet in the channel.
    held: AtomicUsize,
    /// ACK_MODE_MANUAL: deliveries out and not acknowledged.
    unacked: AtomicUsize,
}

impl SubscriptionStats {
    /// Whether the consumer is paused right now.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }
    /// How many times the consumer was paused.
    pub fn pauses(&self) -> u64 {
        self.pauses.load(Ordering::SeqCst)
    }
    /// First deliveries handed to the channel so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::SeqCst)
    }
    /// Redeliveries handed to the channel so far.
    pub fn redelivered(&self) -> u64 {
        self.redelivered.load(Ordering::SeqCst)
    }
    /// Records the task holds outside the channel.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
    /// ACK_MODE_MANUAL: deliveries out and not acknowledged.
    pub fn unacked(&self) -> usize {
        self.unacked.load(Ordering::SeqCst)
    }
}

/// A subscription's Kafka consumer.
pub type SubscriptionConsumer = StreamConsumer<SubscriptionContext>;

/// Creates the consumer of a subscription and points it at its partitions:
/// joins the group, or (ephemeral) assigns every partition of `partitions`.
/// Rebalances are reported to `rebalances`. Blocking.
pub fn open(
    brokers: &str,
    properties: &[(String, String)],
    spec: &SubscriptionSpec,
    partitions: &HashMap<String, Vec<i32>>,
    ephemeral_id: &str,
    rebalances: mpsc::UnboundedSender<RebalanceEvent>,
    metrics: Metrics,
) -> Result<SubscriptionConsumer, Error> {
    let reset = match spec.start {
        StartPosition::Earliest => "earliest",
        _ => "latest",
    };
    let group = spec
        .group
        .clone()
        .unwrap_or_else(|| format!("event-gateway-ephemeral-{ephemeral_id}"));
    let config = client_config(
        brokers,
        &[
            // Bound what librdkafka prefetches for one stream. Less than
            // 16 MiB held a single stream at about 0.7 of a plain consumer's
            // rate (gateway-bench): librdkafka backs off fetching for a
            // second whenever the bound is reached.
            ("queued.max.messages.kbytes", "16384"),
            ("session.timeout.ms", "30000"),
            // Consumer lag for the metrics.
            ("statistics.interval.ms", "5000"),
        ],
        properties,
        &[
            ("group.id", group),
            ("enable.auto.commit", spec.group.is_some().to_string()),
            // Offsets are stored only once a delivery was handed over.
            ("enable.auto.offset.store", "false".into()),
            ("auto.offset.reset", reset.into()),
            ("enable.partition.eof", "false".into()),
        ],
    );
    let lag_label = spec.group.clone().unwrap_or_else(|| "(ephemeral)".into());
    let context = SubscriptionContext::new(spec.start.clone(), rebalances, metrics, lag_label);
    let consumer: SubscriptionConsumer = config
        .create_with_context(context)
        .map_err(|error| Error::from_kafka(&error, ""))?;
    if spec.group.is_some() {
        let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|error| Error::from_kafka(&error, ""))?;
    } else {
        let all: Vec<(String, i32)> = partitions
            .iter()
            .flat_map(|(topic, ids)| ids.iter().map(move |id| (topic.clone(), *id)))
            .collect();
        let offsets = start_offsets(&consumer, &spec.start, &all)
            .map_err(|error| Error::from_kafka(&error, ""))?;
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in offsets {
            let offset = match (offset, &spec.start) {
                (Some(offset), _) => offset,
                (None, StartPosition::Earliest) => Offset::Beginning,
                // "Latest" is the end of the partition now, not whenever
                // fetching starts: every event stored after the client is
                // told `subscribed` reaches it.
                (None, _) => consumer
                    .fetch_watermarks(&topic, partition, METADATA_TIMEOUT)
                    .map(|(_, high)| Offset::Offset(high))
                    .map_err(|error| Error::from_kafka(&error, &topic))?,
            };
            tpl.add_partition_offset(&topic, partition, offset)
                .map_err(|error| Error::from_kafka(&error, &topic))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|error| Error::from_kafka(&error, ""))?;
    }
    Ok(consumer)
}

/// Turns a Kafka record into a delivery.
fn delivery(message: &BorrowedMessage<'_>) -> Delivery {
    let headers = message
        .headers()
        .map(|headers| headers.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default();
    let record = IncomingRecord {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        value: message.payload(),
        timestamp_ms: message.timestamp().to_millis(),
        headers,
    };
    Delivery {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message
            .key()
            .map(|key| String::from_utf8_lossy(key).into_owned())
            .unwrap_or_default(),
        event: Some(record_to_event(&record)),
        ack_id: ack_id(message.topic(), message.partition(), message.offset()),
        attempt: 1,
    }
}

/// A stream message carrying one delivery.
fn delivery_message(delivery: Delivery) -> SubscribeResponse {
    SubscribeResponse {
        kind: Some(Kind::Delivery(delivery)),
    }
}

/// The status that ends a stream for a consumer error, if it is fatal.
fn fatal(error: &KafkaError) -> Option<Status> {
    use rdkafka::error::RDKafkaErrorCode as C;
    match error.rdkafka_error_code() {
        Some(C::UnknownTopicOrPartition | C::UnknownTopic) => Some(Status::not_found(format!(
            "a subscribed topic no longer exists ({error})"
        ))),
        Some(C::TopicAuthorizationFailed | C::GroupAuthorizationFailed) => Some(
            Status::permission_denied(format!("Kafka denied access ({error})")),
        ),
        Some(C::Fatal) => Some(Status::unavailable(format!(
            "the Kafka consumer failed ({error}); resubscribe"
        ))),
        _ => None,
    }
}
