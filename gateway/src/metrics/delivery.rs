//! Subscriptions: streams open, deliveries and redeliveries, acks, nacks
//! and extensions, acks forwarded to another replica, dead letters, bytes
//! buffered, stalls, and consumer lag.

use std::collections::HashMap;
use std::sync::RwLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{counter, read, registered, write};

/// A topic.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

/// A topic read, and why its event was dead-lettered.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeadLetterLabels {
    topic: String,
    reason: &'static str,
}

/// A group's consumer on one partition.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    group: String,
    topic: String,
    partition: i32,
}

/// A share of a group (names of at most 249 bytes): a series per share
/// open, removed when it closes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShareLabels {
    group: String,
    share: String,
}

/// A unary call forwarded to the replica holding its subscription, and
/// what became of it.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardLabels {
    call: &'static str,
    outcome: &'static str,
}

/// The subscriptions' families.
pub(crate) struct DeliveryMetrics {
    deliveries: Family<TopicLabels, Counter>,
    redeliveries: Family<TopicLabels, Counter>,
    acks: Counter,
    nacks: Family<TopicLabels, Counter>,
    extensions: Family<TopicLabels, Counter>,
    dead_letters: Family<DeadLetterLabels, Counter>,
    dead_letter_failures: Family<TopicLabels, Counter>,
    active_subscriptions: Gauge,
    buffered_bytes: Gauge,
    stalled: Counter,
    forwarded: Family<ForwardLabels, Counter>,
    consumer_lag: Family<LagLabels, Gauge>,
    /// Per share: streams, deliveries out, events held back for their key.
    share_gauges: [Family<ShareLabels, Gauge>; 3],
    /// The delivery series by topic, found without building a label set.
    delivery_series: RwLock<HashMap<String, Counter>>,
}

/// A new family registered as `name`.
fn family<L, M>(registry: &mut Registry, name: &str, help: &str) -> Family<L, M>
where
    Family<L, M>: prometheus_client::registry::Metric + Clone + Default,
{
    registered(registry, name, help, Family::default())
}

impl DeliveryMetrics {
    /// The families, registered in `registry`.
    pub(super) fn new(r: &mut Registry) -> Self {
        Self {
            deliveries: family(r, "gateway_deliveries", "First deliveries handed to streams"),
            redeliveries: family(
                r,
                "gateway_redeliveries",
                "Redeliveries after a nack or the ack timeout",
            ),
            acks: counter(r, "gateway_acks", "Acknowledgements received"),
            nacks: family(
                r,
                "gateway_nacks",
                "Deliveries given back by their client, by topic",
            ),
            extensions: family(
                r,
                "gateway_extensions",
                "Delivery deadlines pushed out by their client, by topic",
            ),
            dead_letters: family(
                r,
                "gateway_dead_letters",
                "Events written to a dead-letter topic, by topic read and reason (client, max_attempts)",
            ),
            dead_letter_failures: family(
                r,
                "gateway_dead_letter_failures",
                "Dead-letter writes that failed (the event stays unsettled and is written again), by dead-letter topic",
            ),
            active_subscriptions: registered(
                r,
                "gateway_active_subscriptions",
                "Open Subscribe streams",
                Gauge::default(),
            ),
            buffered_bytes: registered(
                r,
                "gateway_subscription_buffered_bytes",
                "Bytes of deliveries buffered for clients, within --total-buffer-bytes",
                Gauge::default(),
            ),
            stalled: counter(
                r,
                "gateway_stalled_subscriptions",
                "Streams ended because their client read nothing for --stall-timeout",
            ),
            forwarded: family(
                r,
                "gateway_forwarded",
                "Unary Acknowledge and Settle calls forwarded to the replica holding their subscription, by call and outcome (answered, refused, gone)",
            ),
            consumer_lag: family(
                r,
                "gateway_consumer_lag",
                "Records a subscription's consumer is behind the end of a partition",
            ),
            share_gauges: [
                family(r, "gateway_share_streams", "Streams open on a share, by group and share"),
                family(
                    r,
                    "gateway_share_out",
                    "Deliveries a share's streams hold, by group and share",
                ),
                family(
                    r,
                    "gateway_share_held_by_key",
                    "Events of a share held back behind an earlier event of their key, by group and share",
                ),
            ],
            delivery_series: RwLock::default(),
        }
    }

    /// Sets a share's gauges: streams, deliveries out, held back by key.
    pub(crate) fn share(&self, group: &str, share: &str, values: [i64; 3]) {
        let labels = share_labels(group, share);
        for (family, value) in self.share_gauges.iter().zip(values) {
            family.get_or_create(&labels).set(value);
        }
    }

    /// Removes a share's series once it closed.
    pub(crate) fn forget_share(&self, group: &str, share: &str) {
        let labels = share_labels(group, share);
        for family in &self.share_gauges {
            family.remove(&labels);
        }
    }

    /// Counts `count` first deliveries of one record of `topic`.
    pub(crate) fn delivered(&self, topic: &str, count: u64) {
        if let Some(counter) = read(&self.delivery_series).get(topic) {
            counter.inc_by(count);
            return;
        }
        let counter = self.deliveries.get_or_create(&topic_labels(topic)).clone();
        counter.inc_by(count);
        write(&self.delivery_series).insert(topic.to_owned(), counter);
    }

    /// Counts a redelivery.
    pub(crate) fn redelivered(&self, topic: &str) {
        self.redeliveries.get_or_create(&topic_labels(topic)).inc();
    }

    /// Counts a delivery of `topic` given back.
    pub(crate) fn nacked(&self, topic: &str) {
        self.nacks.get_or_create(&topic_labels(topic)).inc();
    }

    /// Counts a delivery of `topic` whose deadline moved out.
    pub(crate) fn extended(&self, topic: &str) {
        self.extensions.get_or_create(&topic_labels(topic)).inc();
    }

    /// Counts an event of `topic` stored in its dead-letter topic, for a
    /// reason of class `reason`.
    pub(crate) fn dead_lettered(&self, topic: &str, reason: &'static str) {
        let labels = DeadLetterLabels {
            topic: topic.to_owned(),
            reason,
        };
        self.dead_letters.get_or_create(&labels).inc();
    }

    /// Counts a write to dead-letter topic `topic` that failed.
    pub(crate) fn dead_letter_failed(&self, topic: &str) {
        self.dead_letter_failures
            .get_or_create(&topic_labels(topic))
            .inc();
    }

    /// Counts acknowledged deliveries.
    pub(crate) fn acked(&self, count: usize) {
        self.acks.inc_by(count as u64);
    }

    /// A stream opened (`+1`) or closed (`-1`).
    pub(crate) fn subscriptions(&self, change: i64) {
        self.active_subscriptions.inc_by(change);
    }

    /// The gauge of bytes buffered for clients, for the budget to keep.
    pub(crate) fn buffered_bytes(&self) -> Gauge {
        self.buffered_bytes.clone()
    }

    /// A stream ended because its client read nothing for too long.
    pub(crate) fn stalled(&self) {
        self.stalled.inc();
    }

    /// A `call` forwarded to its owner, with `outcome` (`answered`,
    /// `refused`, `gone`).
    pub(crate) fn forwarded(&self, call: &'static str, outcome: &'static str) {
        self.forwarded
            .get_or_create(&ForwardLabels { call, outcome })
            .inc();
    }

    /// Sets the lag of a group's consumer on one partition.
    pub(crate) fn lag(&self, group: &str, topic: &str, partition: i32, lag: i64) {
        let labels = lag_labels(group, topic, partition);
        self.consumer_lag.get_or_create(&labels).set(lag);
    }

    /// Removes the lag series of a group's consumer on one partition.
    pub(crate) fn forget_lag(&self, group: &str, topic: &str, partition: i32) {
        self.consumer_lag
            .remove(&lag_labels(group, topic, partition));
    }
}

fn topic_labels(topic: &str) -> TopicLabels {
    TopicLabels {
        topic: topic.to_owned(),
    }
}

fn lag_labels(group: &str, topic: &str, partition: i32) -> LagLabels {
    LagLabels {
        group: group.to_owned(),
        topic: topic.to_owned(),
        partition,
    }
}

fn share_labels(group: &str, share: &str) -> ShareLabels {
    ShareLabels {
        group: group.to_owned(),
        share: share.to_owned(),
    }
}
