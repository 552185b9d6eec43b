//! The Kafka consumer of a subscription: configured for at-least-once
//! (offsets stored only once a delivery was handed over or acknowledged),
//! then pointed at its partitions: it joins the group, or (ephemeral)
//! assigns every partition at the asked start.

use std::collections::HashMap;
use std::sync::Arc;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::context::{start_offsets, RebalanceEvent, SubscriptionContext};
use super::spec::{StartPosition, SubscriptionSpec, TopicPartition};
use crate::error::Error;
use crate::kafka::{blocking, redacted, Cluster, GroupProtocol, METADATA_TIMEOUT};
use crate::limit::{Limit, Permit};
use crate::metrics::Metrics;

/// librdkafka's longest auto-commit interval (a day): its own timer is
/// left out.
const NEVER_MS: &str = "86400000";
/// The most one consumer prefetches, in KiB.
const MAX_PREFETCH_KIB: usize = 16 * 1024;
/// The least.
const MIN_PREFETCH_KIB: usize = 1024;
/// How long a consumer whose prefetch queue is full waits before it
/// fetches again.
const FETCH_QUEUE_BACKOFF_MS: &str = "50";

/// A subscription's Kafka consumer.
pub(super) type SubscriptionConsumer = StreamConsumer<SubscriptionContext>;

/// Opens subscription consumers on one cluster, at most a set number at
/// once; cloning shares them.
#[derive(Clone)]
pub(super) struct Consumers {
    /// The cluster they consume from.
    cluster: Cluster,
    /// Where consumer lag is reported.
    metrics: Metrics,
    /// One permit per consumer that may be open (`--max-consumers`).
    slots: Limit,
    /// How group consumers take part in their group.
    group_protocol: GroupProtocol,
    /// Whether revoked partitions wait for their task to release them.
    revoke_grace: bool,
    /// What all consumers together prefetch, in KiB.
    prefetch_kib: usize,
    /// The most one consumer prefetches, in KiB.
    prefetch_each_kib: usize,
}

/// A consumer's place among the open ones: held until it is closed.
pub(super) type Slot = Permit;

impl Consumers {
    /// Consumers of `cluster`, reporting lag to `metrics`, at most `limit`
    /// open at once, in groups of `group_protocol`, whose revoked
    /// partitions wait for their task when `revoke_grace` is on.
    pub(super) fn new(
        cluster: Cluster,
        metrics: Metrics,
        limit: usize,
        group_protocol: GroupProtocol,
        revoke_grace: bool,
    ) -> Self {
        Self {
            cluster,
            metrics,
            slots: Limit::new(
                limit,
                "Kafka consumers are open, its --max-consumers; subscriptions that share a live tail need none",
            ),
            group_protocol,
            revoke_grace,
            prefetch_kib: MAX_PREFETCH_KIB,
            prefetch_each_kib: MAX_PREFETCH_KIB,
        }
    }

    /// Consumers that prefetch `total` bytes at most together, and half of
    /// `each` (what one stream may hold) at most each, as far as
    /// [`MAX_PREFETCH_KIB`] and [`MIN_PREFETCH_KIB`] allow: each new one gets
    /// its share of `total` among those open.
    pub(super) fn prefetching_within(mut self, total: usize, each: usize) -> Self {
        self.prefetch_kib = total / 1024;
        self.prefetch_each_kib = each / 2048;
        self
    }

    /// What a consumer opened now may prefetch, in KiB: min(16 MiB, half of
    /// what its stream may hold, the budget / the consumers open), at least
    /// 1 MiB. A stream out of room has its consumer paused and what it
    /// prefetched dropped, so until then it holds both: half keeps a stream
    /// at full speed (gateway-bench) and that peak low.
    fn prefetch(&self) -> usize {
        let open = self.slots.taken().max(1);
        (self.prefetch_kib / open)
            .min(self.prefetch_each_kib)
            .clamp(MIN_PREFETCH_KIB, MAX_PREFETCH_KIB)
    }

    /// The group protocol of group consumers.
    pub(super) fn group_protocol(&self) -> GroupProtocol {
        self.group_protocol
    }

    /// A place for one more consumer, or RESOURCE_EXHAUSTED.
    pub(super) fn slot(&self) -> Result<Slot, Error> {
        self.slots.take()
    }

    /// Creates the consumer of a subscription and points it at its
    /// partitions: joins the group, or (ephemeral) assigns every partition
    /// of `partitions`. Rebalances are reported to `rebalances`;
    /// `ephemeral_id` names the group of an ephemeral consumer. Runs off the
    /// async runtime (librdkafka blocks).
    pub(super) async fn open(
        &self,
        spec: &SubscriptionSpec,
        partitions: HashMap<String, Vec<i32>>,
        ephemeral_id: String,
        rebalances: mpsc::UnboundedSender<RebalanceEvent>,
    ) -> Result<SubscriptionConsumer, Error> {
        let (consumers, spec) = (self.clone(), spec.clone());
        blocking(move || consumers.open_blocking(&spec, &partitions, &ephemeral_id, rebalances))
            .await
    }

    fn open_blocking(
        &self,
        spec: &SubscriptionSpec,
        partitions: &HashMap<String, Vec<i32>>,
        ephemeral_id: &str,
        rebalances: mpsc::UnboundedSender<RebalanceEvent>,
    ) -> Result<SubscriptionConsumer, Error> {
        let reset = match spec.start {
            StartPosition::Earliest => "earliest",
            _ => "latest",
        };
        let group = spec
            .group
            .clone()
            .unwrap_or_else(|| format!("event-gateway-ephemeral-{ephemeral_id}"));
        // An ephemeral consumer is assigned its partitions and joins no
        // group: the classic protocol's settings are harmless there.
        let protocol = match spec.group {
            Some(_) => self.group_protocol,
            None => GroupProtocol::Classic,
        };
        // Bound what librdkafka prefetches for one stream: its share of the
        // budget.
        let prefetch = self.prefetch().to_string();
        let mut defaults = vec![
            ("queued.max.messages.kbytes", prefetch.as_str()),
            // A full queue postpones the next fetch this long (librdkafka's
            // default, a second, held a stream with an 8 MiB queue at about
            // half its rate): the queue refills as soon as the stream reads.
            ("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS),
            // Consumer lag for the metrics.
            ("statistics.interval.ms", "5000"),
        ];
        if protocol == GroupProtocol::Classic {
            defaults.extend([
                ("session.timeout.ms", "30000"),
                // Rebalances move only the partitions that change owner,
                // and a member keeps the others (librdkafka's default
                // assignors revoke every partition of every member).
                ("partition.assignment.strategy", "cooperative-sticky"),
            ]);
        }
        let config = self.cluster.client_config(
            &defaults,
            &[
                ("group.protocol", protocol.as_str().into()),
                ("group.id", group),
                // With auto-commit on, librdkafka commits what was stored of
                // a partition it releases, and at close. Its timer skips
                // every commit while a rebalance is under way (which a
                // revoke grace can hold for seconds), so the subscription
                // task commits every --commit-interval itself.
                ("enable.auto.commit", spec.group.is_some().to_string()),
                ("auto.commit.interval.ms", NEVER_MS.into()),
                // Offsets are stored only once a delivery was handed over.
                ("enable.auto.offset.store", "false".into()),
                ("auto.offset.reset", reset.into()),
                ("enable.partition.eof", "false".into()),
            ],
        );
        let lag_label = spec.group.clone();
        let context = SubscriptionContext::new(
            spec.start.clone(),
            rebalances,
            self.metrics.clone(),
            lag_label,
            self.revoke_grace,
        );
        let kafka = |error| Error::from_kafka(&error, None);
        let consumer: SubscriptionConsumer = config
            .create_with_context(context)
            .map_err(|error| kafka(redacted(error)))?;
        if spec.group.is_some() {
            let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
            consumer.subscribe(&topics).map_err(kafka)?;
        } else {
            let all: Vec<TopicPartition> = partitions
                .iter()
                .flat_map(|(topic, ids)| {
                    let topic: Arc<str> = topic.as_str().into();
                    ids.iter()
                        .map(move |id| TopicPartition::new(topic.clone(), *id))
                })
                .collect();
            let offsets = start_offsets(&consumer, &spec.start, &all).map_err(kafka)?;
            let mut tpl = TopicPartitionList::new();
            for (TopicPartition { topic, partition }, offset) in offsets {
                let offset = match (offset, &spec.start) {
                    (Some(offset), _) => offset,
                    (None, StartPosition::Earliest) => Offset::Beginning,
                    // "Latest" is the end of the partition now, not whenever
                    // fetching starts: every event stored after the client is
                    // told `subscribed` reaches it.
                    (None, _) => consumer
                        .fetch_watermarks(&topic, partition, METADATA_TIMEOUT)
                        .map(|(_, high)| Offset::Offset(high))
                        .map_err(|error| Error::from_kafka(&error, Some(&topic)))?,
                };
                tpl.add_partition_offset(&topic, partition, offset)
                    .map_err(|error| Error::from_kafka(&error, Some(&topic)))?;
            }
            consumer.assign(&tpl).map_err(kafka)?;
        }
        Ok(consumer)
    }
}

/// Closes a consumer (or the last handle of one) off the async runtime:
/// closing commits the stored offsets and leaves the group, which blocks on
/// the group coordinator. Its slot is free once it is closed.
pub(super) async fn close<C: Send + 'static>(consumer: C, slot: Slot) {
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    drop(slot);
}

/// The error that ends a subscription for a consumer error, if any: a
/// fatal one, read from the consumer, with what to do when the cluster
/// refused the group protocol.
pub(super) fn ended(
    consumer: &SubscriptionConsumer,
    error: &rdkafka::error::KafkaError,
    protocol: GroupProtocol,
) -> Option<Error> {
    let fatal = Error::fatal_to_consumer(error)?;
    Some(match consumer.client().fatal_error() {
        Some((code, reason)) => {
            tracing::warn!(%code, reason, "the Kafka consumer failed for good");
            Error::consumer_fatal(code, protocol == GroupProtocol::Consumer)
        }
        None => fatal,
    })
}
