//! What a subscription's task shows outside its loop (its counters, its
//! consumer paused or not, what it settles and hands on at its end), and
//! how it takes shutdown and what its consumer reads.

use std::ops::ControlFlow;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use tokio::time::Instant;

use super::rebalance::Leaving;
use super::{consumer, settle, Task};
use crate::subscribe::context::{self, RebalanceEvent};
use crate::subscribe::delivery::Record;
use crate::subscribe::ledger::Ledger;

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

impl Task<'_> {
    /// Shutdown began: nothing new is sent, acks are taken for what is out
    /// until the drain timeout.
    pub(super) fn on_shutdown(&mut self) {
        self.draining = Some(Instant::now() + self.inputs.drain);
        // Never sent: the partition's next owner reads them.
        self.fresh.clear();
        let out = self.ledger.as_ref().map_or(0, Ledger::out);
        tracing::info!(out, "draining: taking acks for what is out");
    }

    /// A record (or an error) from the consumer.
    pub(super) fn on_message(
        &mut self,
        message: KafkaResult<BorrowedMessage<'_>>,
    ) -> ControlFlow<()> {
        match message {
            Ok(message) => {
                let revoking = self
                    .leaving
                    .as_ref()
                    .is_some_and(|going| going.has(&message));
                if self.draining.is_none() && !revoking && self.gate.admits(&message) {
                    self.fresh.push_back(Record::read(&message));
                }
            }
            Err(error) => {
                let protocol = self.inputs.group_protocol;
                if let Some(fatal) = consumer::ended(&self.consumer, &error, protocol) {
                    tracing::warn!(%error, "Kafka ended the subscription");
                    self.outlets.end_with(fatal);
                    return ControlFlow::Break(());
                }
                tracing::warn!(%error, "Kafka consumer error; the subscription continues");
            }
        }
        ControlFlow::Continue(())
    }
}
