//! The task behind one Subscribe stream: reads the consumer, hands
//! deliveries to the bounded channel, and keeps the stream's promises.
//!
//! - Bounded memory: a client that stays behind for [`PAUSE_AFTER`] gets its
//!   consumer paused until it reads again; a shorter stall is absorbed by the
//!   channel without refetching.
//! - ACK_MODE_MANUAL: at most `max_unacked` deliveries out (the consumer is
//!   paused while the window is full), acknowledged offsets stored for commit
//!   over contiguous runs only, unacknowledged deliveries sent again after
//!   the ack timeout.
//! - Rebalances: deliveries of revoked partitions are dropped (their next
//!   owner delivers them from the committed offset) and the client is told.
//! - The end: the client leaving, a fatal Kafka error or shutdown (the client
//!   gets UNAVAILABLE) closes the consumer, which commits what was stored
//!   and leaves its group.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use eventgateway::v1::{
    subscribe_response::Kind, Delivery, Rebalance, SubscribeResponse, TopicPartition,
};
use eventgateway_runtime::shutdown::Shutdown;
use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Message};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::acks::{AckRequest, AckTracker, Acks};
use super::consumer::{self, Slot, SubscriptionConsumer};
use super::context::RebalanceEvent;
use super::delivery::{delivery, delivery_message};
use super::spec::{Partition, StartPosition, SubscriptionSpec};
use super::stats::SubscriptionStats;
use super::stream::Deliveries;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::spans;

/// How long a client may stay behind before its consumer is paused.
const PAUSE_AFTER: Duration = Duration::from_millis(250);
/// How often a waiting subscription looks at its consumer's queue again, so
/// that a missed wake-up (seen after a pause) never stalls the stream.
const REPOLL: Duration = Duration::from_millis(100);

/// What feeds a subscription task besides its consumer.
pub(super) struct Inputs {
    /// Acknowledgements from the Acknowledge RPC, each answered.
    pub(super) acks: mpsc::Receiver<AckRequest>,
    /// Rebalances reported by the consumer context.
    pub(super) rebalances: mpsc::UnboundedReceiver<RebalanceEvent>,
    /// Where deliveries and redeliveries are counted.
    pub(super) metrics: Metrics,
}

/// Runs one subscription until the client leaves, Kafka fails it, or the
/// gateway shuts down; then closes its consumer off the runtime.
pub(super) async fn run(
    (consumer, slot): (Arc<SubscriptionConsumer>, Slot),
    spec: &SubscriptionSpec,
    deliveries: Deliveries,
    stats: Arc<SubscriptionStats>,
    mut shutdown: Shutdown,
    mut inputs: Inputs,
) {
    let mut tracker = spec.manual.map(|m| AckTracker::new(m.ack_timeout));
    let window = spec.manual.map_or(usize::MAX, |m| m.max_unacked);
    let mut gate = TimeGate::new(spec);
    // Redeliveries and rebalance notices: sent before anything new.
    let mut urgent: VecDeque<SubscribeResponse> = VecDeque::new();
    // First deliveries read from Kafka, not yet in the channel.
    let mut fresh: VecDeque<Delivery> = VecDeque::new();
    let mut behind_since: Option<Instant> = None;
    let tx = &deliveries.tx;
    loop {
        let now = Instant::now();
        let window_full = tracker.as_ref().is_some_and(|t| t.unacked() >= window);
        if tx.capacity() == 0 {
            behind_since.get_or_insert(now);
        } else {
            behind_since = None;
        }
        let client_behind = behind_since.is_some_and(|since| now >= since + PAUSE_AFTER);
        if (window_full || client_behind) != stats.paused.get() {
            set_paused(&consumer, &stats, window_full || client_behind);
        }
        stats.held.set(urgent.len() + fresh.len());
        if let Some(tracker) = &tracker {
            stats.unacked.set(tracker.unacked());
        }
        let can_send = !urgent.is_empty() || (!fresh.is_empty() && !window_full);
        // A paused consumer is still polled (rebalances, liveness); it
        // fetches nothing new.
        let can_read = (fresh.is_empty() && !window_full) || stats.paused.get();
        let next_due = tracker.as_ref().and_then(AckTracker::next_due);
        let pause_check = behind_since
            .filter(|_| !client_behind)
            .map(|since| since + PAUSE_AFTER);

        tokio::select! {
            biased;
            () = shutdown.started() => {
                deliveries.end_with(Error::ShuttingDown);
                break;
            }
            () = tx.closed() => break,
            Some(request) = inputs.acks.recv() => {
                answer(&consumer, tracker.as_mut(), request, &inputs.metrics);
            }
            Some(event) = inputs.rebalances.recv() => {
                rebalanced(event, tracker.as_mut(), &mut urgent, &mut fresh);
            }
            () = tokio::time::sleep_until(next_due.unwrap_or(now)), if next_due.is_some() => {
                if let Some(tracker) = tracker.as_mut() {
                    for again in tracker.take_due(Instant::now()) {
                        tracing::debug!(topic = again.topic, partition = again.partition, offset = again.offset, attempt = again.attempt, "redelivering");
                        stats.redelivered.add(1);
                        inputs.metrics.redelivered(&again.topic);
                        urgent.push_back(delivery_message(again));
                    }
                }
            }
            permit = tx.reserve(), if can_send => {
                let Ok(permit) = permit else { break };
                if let Some(mut message) = urgent.pop_front() {
                    if let Some(Kind::Delivery(again)) = message.kind.as_mut() {
                        spans::deliver(again, spec.group.as_deref());
                    }
                    permit.send(message);
                } else if let Some(mut first) = fresh.pop_front() {
                    spans::deliver(&mut first, spec.group.as_deref());
                    if let Some(tracker) = tracker.as_mut() {
                        tracker.sent(&first, Instant::now());
                    }
                    inputs.metrics.delivered(&first.topic, 1);
                    permit.send(delivery_message(first));
                    stats.delivered.add(1);
                }
            }
            message = consumer.recv(), if can_read => match message {
                Ok(message) => {
                    if gate.admits(&message) {
                        fresh.push_back(delivery(&message));
                    }
                }
                Err(error) => {
                    if let Some(fatal) = Error::fatal_to_consumer(&error) {
                        tracing::warn!(%error, "Kafka ended the subscription");
                        deliveries.end_with(fatal);
                        break;
                    }
                    tracing::warn!(%error, "Kafka consumer error; the subscription continues");
                }
            },
            () = tokio::time::sleep_until(pause_check.unwrap_or(now)), if pause_check.is_some() => {}
            () = tokio::time::sleep(REPOLL), if can_read => {}
        }
    }
    // Acknowledgements that arrived just before the end still count.
    inputs.acks.close();
    while let Ok(request) = inputs.acks.try_recv() {
        answer(&consumer, tracker.as_mut(), request, &inputs.metrics);
    }
    drop(deliveries);
    consumer::close(consumer, slot).await;
}

/// Applies an Acknowledge call's acks and answers it: how many it applied,
/// or why none was (an ack id never handed out on this stream).
fn answer(
    consumer: &SubscriptionConsumer,
    tracker: Option<&mut AckTracker>,
    request: AckRequest,
    metrics: &Metrics,
) {
    let Some(tracker) = tracker else {
        // Only MANUAL subscriptions take acknowledgements: the registry
        // refuses the others before they get here.
        let _ = request.reply.send(Ok(0));
        return;
    };
    let outcome = tracker.check(&request.acks).map(|()| {
        let count = request.acks.len();
        acknowledge(consumer, tracker, request.acks);
        metrics.acked(count);
        count
    });
    let _ = request.reply.send(outcome);
}

/// Applies acknowledgements, storing each partition's new commit point.
fn acknowledge(consumer: &SubscriptionConsumer, tracker: &mut AckTracker, acks: Acks) {
    for ((topic, partition), offset) in acks {
        if let Some(upto) = tracker.ack(&(topic.clone(), partition), offset) {
            if let Err(error) = consumer.store_offset(&topic, partition, upto) {
                // The partition was revoked meanwhile: its next owner
                // delivers the event again.
                tracing::debug!(%error, topic, partition, upto, "cannot store an acknowledged offset");
            }
        }
    }
}

/// Drops what belongs to revoked partitions and queues the client's notice.
fn rebalanced(
    event: RebalanceEvent,
    tracker: Option<&mut AckTracker>,
    urgent: &mut VecDeque<SubscribeResponse>,
    fresh: &mut VecDeque<Delivery>,
) {
    let wire = |partitions: &[Partition]| -> Vec<TopicPartition> {
        partitions
            .iter()
            .map(|(topic, partition)| TopicPartition {
                topic: topic.clone(),
                partition: *partition,
            })
            .collect()
    };
    let notice = match event {
        RebalanceEvent::Revoked(revoked) => {
            let gone: HashSet<&Partition> = revoked.iter().collect();
            let owned =
                |topic: &str, partition: i32| !gone.contains(&(topic.to_owned(), partition));
            if let Some(tracker) = tracker {
                tracker.forget(&revoked);
            }
            fresh.retain(|d| owned(&d.topic, d.partition));
            urgent.retain(|m| match &m.kind {
                Some(Kind::Delivery(d)) => owned(&d.topic, d.partition),
                _ => true,
            });
            Rebalance {
                revoked: wire(&revoked),
                assigned: Vec::new(),
            }
        }
        RebalanceEvent::Assigned(assigned) => Rebalance {
            revoked: Vec::new(),
            assigned: wire(&assigned),
        },
    };
    urgent.push_back(SubscribeResponse {
        kind: Some(Kind::Rebalance(notice)),
    });
}

fn set_paused(consumer: &SubscriptionConsumer, stats: &SubscriptionStats, pause: bool) {
    let result = consumer.assignment().and_then(|assignment| {
        if pause {
            consumer.pause(&assignment)
        } else {
            consumer.resume(&assignment)
        }
    });
    match result {
        Ok(()) => {
            stats.paused.set(pause);
            if pause {
                stats.pauses.add(1);
            }
        }
        Err(error) => tracing::warn!(%error, pause, "cannot pause or resume the consumer"),
    }
}

/// For an ephemeral timestamp replay: per partition, drops records until the
/// first one at or after the start time. Kafka already positions there, so
/// this only acts where a broker's timestamp lookup answers an earlier
/// offset. Never used with a group, where a partition can come back at a
/// committed offset and a dropped record would be committed past.
struct TimeGate {
    /// The start time in ms, while a replay from a timestamp is on.
    from: Option<i64>,
    /// Partitions that reached the start time.
    open: HashSet<Partition>,
}

impl TimeGate {
    fn new(spec: &SubscriptionSpec) -> Self {
        let from = match spec.start {
            StartPosition::Timestamp(millis) if spec.group.is_none() => Some(millis),
            _ => None,
        };
        Self {
            from,
            open: HashSet::new(),
        }
    }

    fn admits(&mut self, message: &BorrowedMessage<'_>) -> bool {
        let Some(from) = self.from else { return true };
        let key = (message.topic().to_owned(), message.partition());
        if self.open.contains(&key) {
            return true;
        }
        match message.timestamp().to_millis() {
            Some(millis) if millis < from => false,
            _ => {
                self.open.insert(key);
                true
            }
        }
    }
}
