//! The consumer context of a subscription: it positions partitions on their
//! first assignment for timestamp and offset replays, reports every
//! rebalance to the subscription task, and reports consumer lag (whose
//! series it removes again when the consumer closes, so that the group
//! names clients choose never pile up in the metrics).
//!
//! One rebalance path serves every group protocol: partitions come and go
//! incrementally (cooperative-sticky, or the consumer protocol of KIP-848),
//! or all at once (an eager assignor an operator chose). Revoked partitions
//! are not handed on in the callback: the subscription task settles what it
//! can of them within the revoke grace, then [`release`]s them, and
//! librdkafka commits what was stored of them before the group goes on.
//! Partitions that are lost (the member was dropped), or revoked while the
//! consumer closes, are released at once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::ClientContext;
use tokio::sync::mpsc;

use rdkafka::statistics::Statistics;

use super::spec::{StartPosition, TopicPartition};
use crate::kafka::METADATA_TIMEOUT;
use crate::metrics::Metrics;

/// The group label of an ephemeral subscription's lag.
const EPHEMERAL: &str = "(ephemeral)";

/// A change in the partitions a group subscription reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RebalanceEvent {
    /// These partitions were taken away, and are handed on already.
    Revoked(Vec<TopicPartition>),
    /// These partitions are being taken away: the group waits until the
    /// task [`release`]s them.
    Revoking(Vec<TopicPartition>),
    /// These partitions were given.
    Assigned(Vec<TopicPartition>),
}

/// The consumer context of one subscription.
pub(super) struct SubscriptionContext {
    /// Where to start.
    start: StartPosition,
    /// Partitions already positioned; later assignments resume from the
    /// group's committed offsets.
    positioned: Mutex<HashSet<TopicPartition>>,
    /// Where rebalances are reported (rebalances are rare: unbounded is fine).
    rebalances: mpsc::UnboundedSender<RebalanceEvent>,
    /// Where consumer lag goes, from librdkafka's statistics.
    metrics: Metrics,
    /// The group label of the lag series.
    group: String,
    /// The partitions whose lag it reported.
    reported: Mutex<HashSet<TopicPartition>>,
    /// Whether revoked partitions wait for the task to release them (a
    /// revoke grace is set).
    deferred: bool,
    /// Set once the consumer is closing: what is revoked then is released
    /// at once, as nobody is left to release it.
    closing: AtomicBool,
}

impl SubscriptionContext {
    /// A context starting at `start`, reporting rebalances to `rebalances`
    /// (revoked partitions to be released by the task when `deferred`) and
    /// consumer lag (labelled with `group`, or as ephemeral) to `metrics`.
    pub(super) fn new(
        start: StartPosition,
        rebalances: mpsc::UnboundedSender<RebalanceEvent>,
        metrics: Metrics,
        group: Option<String>,
        deferred: bool,
    ) -> Self {
        Self {
            start,
            positioned: Mutex::default(),
            rebalances,
            metrics,
            group: group.unwrap_or_else(|| EPHEMERAL.to_owned()),
            reported: Mutex::default(),
            deferred,
            closing: AtomicBool::new(false),
        }
    }

    /// From now on, revoked partitions are released at once: the consumer
    /// is about to close.
    pub(super) fn closing(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Sets start offsets on partitions seen for the first time, for
    /// timestamp and offset replays.
    fn position(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let mut positioned = self.positioned.lock().unwrap_or_else(|p| p.into_inner());
        let fresh: Vec<TopicPartition> = partitions(tpl)
            .into_iter()
            .filter(|tp| !positioned.contains(tp))
            .collect();
        if fresh.is_empty() {
            return;
        }
        match start_offsets(consumer, &self.start, &fresh) {
            Ok(offsets) => {
                for (tp, offset) in offsets {
                    if let Some(offset) = offset {
                        let _ = tpl.set_partition_offset(&tp.topic, tp.partition, offset);
                    }
                    positioned.insert(tp);
                }
            }
            Err(error) => tracing::error!(
                %error,
                "cannot find the start offsets; starting from the group's positions"
            ),
        }
    }
}

impl ClientContext for SubscriptionContext {
    fn stats(&self, statistics: Statistics) {
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        for (topic, stats) in &statistics.topics {
            for (partition, stats) in &stats.partitions {
                // -1 is librdkafka's internal partition; a lag of -1 is unknown.
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    self.metrics
                        .delivery()
                        .lag(&self.group, topic, *partition, stats.consumer_lag);
                    reported.insert(TopicPartition::new(topic.as_str(), *partition));
                }
            }
        }
    }
}

impl Drop for SubscriptionContext {
    fn drop(&mut self) {
        let reported = self.reported.get_mut().unwrap_or_else(|p| p.into_inner());
        for tp in reported.drain() {
            self.metrics
                .delivery()
                .forget_lag(&self.group, &tp.topic, tp.partition);
        }
    }
}

impl ConsumerContext for SubscriptionContext {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            // Nothing was settled since the last commit.
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                // What was settled since the last commit that counted comes
                // again to the partition's next owner.
                tracing::warn!(
                    %error,
                    group = %self.group,
                    partitions = offsets.count(),
                    "a commit of settled offsets failed"
                );
            }
        }
    }

    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.position(consumer, tpl);
                tracing::debug!(partitions = tpl.count(), cooperative, "partitions assigned");
                let taken = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(error) = taken {
                    tracing::error!(%error, "cannot take the assigned partitions");
                }
                let _ = self
                    .rebalances
                    .send(RebalanceEvent::Assigned(partitions(tpl)));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let revoked = partitions(tpl);
                let lost = consumer.assignment_lost();
                tracing::debug!(partitions = revoked.len(), lost, "partitions revoked");
                let deferred = self.deferred && !lost && !self.closing.load(Ordering::Acquire);
                if deferred
                    && self
                        .rebalances
                        .send(RebalanceEvent::Revoking(revoked.clone()))
                        .is_ok()
                {
                    return;
                }
                release(consumer, &revoked);
                let _ = self.rebalances.send(RebalanceEvent::Revoked(revoked));
            }
            _ => {
                tracing::warn!(?err, "rebalance error: releasing every partition");
                // What librdkafka asks for after an error: the assignment
                // cleared, to start again in step with the group.
                if let Err(error) = consumer.unassign() {
                    tracing::error!(%error, "cannot release the partitions");
                }
                let _ = self
                    .rebalances
                    .send(RebalanceEvent::Revoked(partitions(tpl)));
            }
        }
    }
}

/// Hands revoked `partitions` on to the group: with auto-commit on,
/// librdkafka first commits the offsets stored for them.
pub(super) fn release<K: Consumer<C>, C: ConsumerContext>(
    consumer: &K,
    partitions: &[TopicPartition],
) {
    let released = if matches!(
        consumer.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    ) {
        let mut tpl = TopicPartitionList::new();
        for tp in partitions {
            tpl.add_partition(&tp.topic, tp.partition);
        }
        consumer.incremental_unassign(&tpl)
    } else {
        consumer.unassign()
    };
    if let Err(error) = released {
        tracing::error!(%error, "cannot release the revoked partitions");
    }
}

/// The partitions of a list.
fn partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

/// A topic partition and the offset to start it from, if any.
pub(super) type StartOffset = (TopicPartition, Option<Offset>);

/// The explicit start offset of each partition; `None` leaves it to the
/// group's committed offset (or auto.offset.reset), and to the latest offset
/// for an ephemeral subscription. Blocking for timestamps.
pub(super) fn start_offsets<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    start: &StartPosition,
    partitions: &[TopicPartition],
) -> Result<Vec<StartOffset>, KafkaError> {
    match start {
        StartPosition::Latest | StartPosition::Earliest => {
            Ok(partitions.iter().map(|tp| (tp.clone(), None)).collect())
        }
        StartPosition::Offsets(offsets) => Ok(partitions
            .iter()
            .map(|tp| (tp.clone(), offsets.get(tp).map(|o| Offset::Offset(*o))))
            .collect()),
        StartPosition::Timestamp(millis) => {
            let mut query = TopicPartitionList::new();
            for tp in partitions {
                query.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*millis))?;
            }
            let found = consumer.offsets_for_times(query, METADATA_TIMEOUT)?;
            Ok(found
                .elements()
                .iter()
                .map(|e| {
                    let offset = match e.offset() {
                        Offset::Offset(o) => Offset::Offset(o),
                        // No record at or after the time: wait for new ones.
                        _ => Offset::End,
                    };
                    (TopicPartition::new(e.topic(), e.partition()), Some(offset))
                })
                .collect())
        }
    }
}
