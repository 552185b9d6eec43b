//! What a subscription's task shows outside its loop: its counters, its
//! consumer paused or not, and what it settles and hands on at its end.

use rdkafka::consumer::Consumer;
use tokio::time::Instant;

use super::rebalance::Leaving;
use super::{settle, Task};
use crate::subscribe::context::{self, RebalanceEvent};

impl Task<'_> {
    /// Publishes the turn's state to the subscription's stats.
    pub(super) fn report(&self) {
        let stats = &self.stats;
        stats.held.set(self.urgent.len() + self.fresh.len());
        stats.buffered.set(self.inputs.budget.used());
        stats
            .revoking
            .set(self.leaving.as_ref().map_or(0, Leaving::len));
        if let Some(ledger) = &self.ledger {
            stats.unacked.set(ledger.unsettled());
            stats.timers.set(ledger.timers());
        }
    }

    pub(super) fn set_paused(&self, pause: bool) {
        let result = self.consumer.assignment().and_then(|assignment| {
            if pause {
                self.consumer.pause(&assignment)
            } else {
                self.consumer.resume(&assignment)
            }
        });
        match result {
            Ok(()) => {
                self.stats.paused.set(pause);
                if pause {
                    self.stats.pauses.add(1);
                }
            }
            Err(error) => tracing::warn!(%error, pause, "cannot pause or resume the consumer"),
        }
    }

    /// After the loop: verbs that arrived just before the end still count,
    /// what was settled is stored, and partitions being revoked are handed
    /// on now; from here on the consumer releases what is revoked at once.
    pub(super) fn finish(&mut self) {
        self.inputs.verbs.close();
        while let Ok(request) = self.inputs.verbs.try_recv() {
            settle::answer(self.ledger.as_mut(), request, &self.inputs.metrics);
        }
        if let Some(ledger) = self.ledger.as_mut() {
            settle::store_commits(&self.consumer, ledger);
        }
        while let Ok(event) = self.inputs.rebalances.try_recv() {
            if let RebalanceEvent::Revoking(partitions) = event {
                self.leaving
                    .get_or_insert_with(|| Leaving::new(Vec::new(), Instant::now()))
                    .extend(partitions, Instant::now());
            }
        }
        if let Some(going) = self.leaving.take() {
            context::release(&*self.consumer, going.partitions());
        }
        self.consumer.context().closing();
    }
}
