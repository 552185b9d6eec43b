//! Rebalances in a subscription's loop: partitions being revoked send
//! nothing new and are handed on once nothing of them is out (or the grace
//! ends); revoked and assigned partitions are told to the client. And the
//! time gate of an ephemeral timestamp replay.

use std::collections::HashSet;

use eventgateway::v1::{subscribe_response::Kind, Rebalance, SubscribeResponse};
use rdkafka::message::{BorrowedMessage, Message};
use tokio::time::Instant;

use super::{Task, REPOLL};
use crate::subscribe::context::{self, RebalanceEvent};
use crate::subscribe::spec::{StartPosition, SubscriptionSpec, TopicPartition};

/// Partitions being revoked: settled within the grace, then released.
pub(super) struct Leaving {
    /// The partitions.
    partitions: Vec<TopicPartition>,
    /// When they are released, whatever is still out.
    until: Instant,
}

impl Leaving {
    pub(super) fn new(partitions: Vec<TopicPartition>, until: Instant) -> Self {
        Self { partitions, until }
    }

    /// Adds partitions, released by `until` at the latest.
    pub(super) fn extend(&mut self, partitions: Vec<TopicPartition>, until: Instant) {
        self.partitions.extend(partitions);
        self.until = self.until.min(until);
    }

    /// Whether `message` is of a partition being revoked.
    pub(super) fn has(&self, message: &BorrowedMessage<'_>) -> bool {
        self.partitions
            .iter()
            .any(|tp| &*tp.topic == message.topic() && tp.partition == message.partition())
    }

    pub(super) fn len(&self) -> usize {
        self.partitions.len()
    }

    pub(super) fn partitions(&self) -> &[TopicPartition] {
        &self.partitions
    }
}

impl Task<'_> {
    /// A rebalance the consumer context reported.
    pub(super) fn on_rebalance(&mut self, event: RebalanceEvent) {
        let assigned = matches!(event, RebalanceEvent::Assigned(_));
        if let RebalanceEvent::Revoking(partitions) = event {
            self.leave(partitions);
            return;
        }
        self.rebalanced(event);
        if assigned && self.stats.paused.get() {
            // Partitions assigned to a paused stream start paused too: a
            // full window takes nothing new from them.
            self.set_paused(true);
        }
    }

    /// Starts handing `partitions` back to the group: nothing of them is
    /// sent from now on, and they are released once nothing of them is
    /// out, at most the revoke grace from now.
    fn leave(&mut self, partitions: Vec<TopicPartition>) {
        let gone: HashSet<&TopicPartition> = partitions.iter().collect();
        self.fresh.retain(|r| {
            !gone
                .iter()
                .any(|tp| *tp.topic == r.topic && tp.partition == r.partition)
        });
        if let Some(ledger) = self.ledger.as_mut() {
            ledger.leave(&partitions);
        }
        let grace = self.inputs.revoke_grace;
        tracing::debug!(
            partitions = partitions.len(),
            ?grace,
            "partitions being revoked"
        );
        let until = Instant::now() + grace;
        match &mut self.leaving {
            Some(going) => going.extend(partitions, until),
            None => self.leaving = Some(Leaving::new(partitions, until)),
        }
    }

    /// Releases the partitions being revoked once nothing of them is out
    /// (MANUAL: no delivery unsettled; AUTO: every delivery sent reached
    /// gRPC, which stored its offset) or the grace is over.
    pub(super) fn check_leaving(&mut self, now: Instant) {
        let Some(going) = &self.leaving else { return };
        let out = match &self.ledger {
            Some(ledger) => ledger.out_on(&going.partitions),
            None => self.outlets.waiting(),
        };
        if out > 0 && now < going.until {
            return;
        }
        if out > 0 {
            let partitions = going.len();
            tracing::info!(
                out,
                partitions,
                "revoke grace over: handing partitions on with deliveries out"
            );
        }
        let revoked = self
            .leaving
            .take()
            .map(|l| l.partitions)
            .unwrap_or_default();
        context::release(&*self.consumer, &revoked);
        self.rebalanced(RebalanceEvent::Revoked(revoked));
    }

    /// When to look at a revocation again: at the grace's end, and (AUTO,
    /// whose channel drains without telling) every [`REPOLL`].
    pub(super) fn leave_check(&self, now: Instant) -> Option<Instant> {
        self.leaving.as_ref().map(|going| match &self.ledger {
            Some(_) => going.until,
            None => going.until.min(now + REPOLL),
        })
    }

    /// Drops what belongs to revoked partitions and queues the client's
    /// notice.
    fn rebalanced(&mut self, event: RebalanceEvent) {
        let notice = match event {
            // (Partitions being revoked come here once they are released.)
            RebalanceEvent::Revoked(revoked) | RebalanceEvent::Revoking(revoked) => {
                if let Some(ledger) = self.ledger.as_mut() {
                    ledger.forget(&revoked);
                }
                self.fresh.retain(|r| {
                    !revoked
                        .iter()
                        .any(|tp| *tp.topic == r.topic && tp.partition == r.partition)
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
        self.urgent.push_back(SubscribeResponse {
            kind: Some(Kind::Rebalance(notice)),
        });
    }
}

/// Partitions as the client sees them.
fn wire(partitions: &[TopicPartition]) -> Vec<eventgateway::v1::TopicPartition> {
    partitions
        .iter()
        .map(|tp| eventgateway::v1::TopicPartition {
            topic: tp.topic.to_string(),
            partition: tp.partition,
        })
        .collect()
}

/// For an ephemeral timestamp replay: per partition, drops records until the
/// first one at or after the start time. Kafka already positions there, so
/// this only acts where a broker's timestamp lookup answers an earlier
/// offset. Never used with a group, where a partition can come back at a
/// committed offset and a dropped record would be committed past.
pub(super) struct TimeGate {
    /// The start time in ms, while a replay from a timestamp is on.
    from: Option<i64>,
    /// Partitions that reached the start time.
    open: HashSet<TopicPartition>,
}

impl TimeGate {
    pub(super) fn new(spec: &SubscriptionSpec) -> Self {
        let from = match spec.start {
            StartPosition::Timestamp(millis) if spec.group.is_none() => Some(millis),
            _ => None,
        };
        Self {
            from,
            open: HashSet::new(),
        }
    }

    pub(super) fn admits(&mut self, message: &BorrowedMessage<'_>) -> bool {
        let Some(from) = self.from else { return true };
        let key = TopicPartition::new(message.topic(), message.partition());
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
