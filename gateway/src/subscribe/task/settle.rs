//! What a subscription's loop sends and settles: the next message (a
//! notice, a redelivery, a record read), the clients' verbs answered, the
//! commit points stored and committed, dead letters started.

use std::collections::VecDeque;
use std::sync::Arc;

use eventgateway::v1::{Delivery, SubscribeResponse};
use eventgateway_runtime::shutdown::Shutdown;
use rdkafka::consumer::Consumer;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use super::Inputs;
use crate::metrics::Metrics;
use crate::spans;
use crate::subscribe::consumer::SubscriptionConsumer;
use crate::subscribe::delivery::{delivery_message, AckRef, Record};
use crate::subscribe::ledger::{Ledger, Outcome, Verb};
use crate::subscribe::registry::VerbRequest;
use crate::subscribe::spec::{Position, SubscriptionSpec};
use crate::subscribe::stats::SubscriptionStats;
use crate::subscribe::stream;

/// A dead-letter write that ended: the record's position, and whether
/// Kafka stored it.
pub(super) type Written = (Position, bool);

/// Commits what was stored (settled, or handed over in AUTO) and not
/// committed yet; the answer comes to the context's commit callback.
/// Unlike librdkafka's own timer, this goes on during a rebalance: the
/// member still owns its partitions in the generation it commits for.
pub(super) fn commit(consumer: &SubscriptionConsumer) {
    match consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Async) {
        // Nothing new was stored.
        Ok(())
        | Err(rdkafka::error::KafkaError::ConsumerCommit(
            rdkafka::types::RDKafkaErrorCode::NoOffset,
        )) => {}
        Err(error) => {
            tracing::debug!(%error, "cannot commit what was settled now; the next tick tries again")
        }
    }
}

/// The next message to send, with its encoded size: a rebalance notice,
/// then a delivery due again, then a record read from Kafka (unless the
/// ledger holds it back behind an earlier event of its key).
pub(super) fn next_message(
    (urgent, fresh, mut ledger): (
        &mut VecDeque<SubscribeResponse>,
        &mut VecDeque<Record>,
        Option<&mut Ledger>,
    ),
    spec: &SubscriptionSpec,
    stats: &SubscriptionStats,
    metrics: &Metrics,
) -> Option<(stream::Message, usize)> {
    let now = Instant::now();
    let message = match urgent.pop_front() {
        Some(notice) => notice,
        None => {
            let again = ledger.as_deref_mut().and_then(|l| l.next_ready(now));
            let mut delivery = match again {
                Some(again) => {
                    if again.attempt > 1 {
                        tracing::debug!(
                            topic = again.topic,
                            partition = again.partition,
                            offset = again.offset,
                            attempt = again.attempt,
                            "redelivering"
                        );
                        stats.redelivered.add(1);
                        metrics.delivery().redelivered(&again.topic);
                    } else {
                        first_sent(stats, metrics, &again);
                    }
                    again
                }
                None => {
                    let record = fresh.pop_front()?;
                    let first = match ledger {
                        Some(ledger) => ledger.admit(record, now)?,
                        None => record.delivery(1),
                    };
                    first_sent(stats, metrics, &first);
                    first
                }
            };
            spans::deliver(&mut delivery, spec.group.as_deref());
            delivery_message(delivery)
        }
    };
    let bytes = prost::Message::encoded_len(&message);
    Some((Arc::new(message), bytes))
}

/// Counts a first delivery.
fn first_sent(stats: &SubscriptionStats, metrics: &Metrics, delivery: &Delivery) {
    metrics.delivery().delivered(&delivery.topic, 1);
    stats.delivered.add(1);
}

/// Stores the commit points that moved and starts the dead letters due,
/// each a task under `shutdown`'s tracker (a drain waits for them).
pub(super) fn settle_up(
    consumer: &SubscriptionConsumer,
    ledger: &mut Ledger,
    spec: &SubscriptionSpec,
    (inputs, shutdown): (&Inputs, &Shutdown),
    written: &mpsc::UnboundedSender<Written>,
) {
    store_commits(consumer, ledger);
    for job in ledger.take_jobs() {
        let (writer, written, group) = (
            inputs.dead_letters.clone(),
            written.clone(),
            spec.group.clone(),
        );
        shutdown.spawn(
            async move {
                let stored = writer.write(&job, group.as_deref()).await.is_ok();
                // The subscription may have ended meanwhile: the record is
                // then delivered again to the group's next member.
                let _ = written.send((job.position, stored));
            }
            .in_current_span(),
        );
    }
}

/// Stores each partition's new commit point.
pub(super) fn store_commits(consumer: &SubscriptionConsumer, ledger: &mut Ledger) {
    for Position { partition, offset } in ledger.take_commits() {
        if let Err(error) = consumer.store_offset(&partition.topic, partition.partition, offset) {
            // The partition was revoked meanwhile: its next owner delivers
            // the event again.
            tracing::debug!(%error, %partition, upto = offset, "cannot store a settled offset");
        }
    }
}

/// Applies verbs and answers them: what each did, or, for Acknowledge
/// (all or none), why none was applied.
pub(super) fn answer(ledger: Option<&mut Ledger>, request: VerbRequest, metrics: &Metrics) {
    let Some(ledger) = ledger else {
        // Only MANUAL subscriptions take verbs: the registry refuses the
        // others before they get here.
        let refused = request.verbs.iter().map(|_| Outcome::auto_mode()).collect();
        let _ = request.reply.send(Ok(refused));
        return;
    };
    if request.all_or_none {
        let named: Vec<AckRef> = request
            .verbs
            .iter()
            .filter_map(|(_, ack)| ack.as_ref().ok().cloned())
            .collect();
        if let Err(error) = ledger.check(&named) {
            let _ = request.reply.send(Err(error));
            return;
        }
    }
    let now = Instant::now();
    let outcomes = request
        .verbs
        .into_iter()
        .map(|(verb, ack)| {
            let ack = match ack {
                Ok(ack) => ack,
                Err(why) => return Outcome::Unknown(why),
            };
            let counted = match &verb {
                Verb::Ack => Some(Counted::Ack),
                Verb::Nack(_) => Some(Counted::Nack),
                Verb::Extend(_) => Some(Counted::Extend),
                Verb::DeadLetter(_) => None,
            };
            let outcome = ledger.apply(verb, &ack, now);
            if outcome == Outcome::Accepted {
                let topic = &ack.position.partition.topic;
                match counted {
                    Some(Counted::Ack) => metrics.delivery().acked(1),
                    Some(Counted::Nack) => metrics.delivery().nacked(topic),
                    Some(Counted::Extend) => metrics.delivery().extended(topic),
                    None => {}
                }
            }
            outcome
        })
        .collect();
    let _ = request.reply.send(Ok(outcomes));
}

/// The verbs counted when accepted (dead letters are counted once stored).
enum Counted {
    Ack,
    Nack,
    Extend,
}
