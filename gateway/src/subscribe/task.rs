//! The task behind one Subscribe stream: reads the consumer, hands
//! deliveries to the bounded channel, and keeps the stream's promises.
//!
//! - Bounded memory: each message takes its bytes from the subscription's
//!   and the instance's budget before it goes into the channel, and waits
//!   for room; a client that stays behind for [`PAUSE_AFTER`] gets its
//!   consumer paused until it reads again (a shorter stall is absorbed by
//!   the channel without refetching). A client that reads nothing for the
//!   stall timeout while deliveries wait for it is ended, so that its
//!   buffer goes back to the others.
//! - ACK_MODE_MANUAL: at most `max_unacked` records unsettled (the consumer
//!   is paused while the window is full); the ledger applies the clients'
//!   verbs and its timers, says what to send again, which offsets to store
//!   for commit (contiguous runs of settled records only) and what to
//!   dead-letter; dead letters are written beside the loop, and their
//!   outcome comes back to it.
//! - Rebalances: a partition being revoked sends nothing new; for up to the
//!   revoke grace its deliveries out may still be acked (AUTO: what is in
//!   the channel may still reach gRPC), then what was settled is committed
//!   and the partition handed on; what was not settled, its next owner
//!   delivers from the committed offset, and the client is told.
//! - The end: the client leaving, a fatal Kafka error or shutdown (the client
//!   gets UNAVAILABLE) closes the consumer, which commits what was stored
//!   and leaves its group. At shutdown a MANUAL stream with deliveries out
//!   first drains: it sends nothing new and takes acks for what is out,
//!   until nothing is out or the drain timeout passes.

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
use tracing::Instrument;

use super::budget::{Held, StreamBudget};
use super::consumer::{self, Slot, SubscriptionConsumer};
use super::context::{self, RebalanceEvent};
use super::dead_letter::DeadLetters;
use super::delivery::{delivery_message, AckRef, Record};
use super::ledger::{Ledger, Outcome, Verb};
use super::registry::VerbRequest;
use super::spec::{Partition, StartPosition, SubscriptionSpec};
use super::stats::SubscriptionStats;
use super::stream::{self, Deliveries, Parcel};
use crate::error::Error;
use crate::kafka::GroupProtocol;
use crate::metrics::Metrics;
use crate::spans;

/// How long a client may stay behind before its consumer is paused.
const PAUSE_AFTER: Duration = Duration::from_millis(250);
/// The budget reserved for a subscription's first record: Kafka's
/// default largest record (`max.message.bytes`), so that streams that wait
/// for room do not each hold a record they read first.
const FIRST_RESERVATION: usize = 1024 * 1024;
/// How often a waiting subscription looks at its consumer's queue again, so
/// that a missed wake-up (seen after a pause) never stalls the stream.
const REPOLL: Duration = Duration::from_millis(100);

/// What feeds a subscription task besides its consumer.
pub(super) struct Inputs {
    /// Verbs from Acknowledge, Settle and StreamingSubscribe, each answered.
    pub(super) verbs: mpsc::Receiver<VerbRequest>,
    /// Rebalances reported by the consumer context.
    pub(super) rebalances: mpsc::UnboundedReceiver<RebalanceEvent>,
    /// Where deliveries and redeliveries are counted.
    pub(super) metrics: Metrics,
    /// Writes dead letters.
    pub(super) dead_letters: DeadLetters,
    /// How long to take acks for what is out once shutdown began.
    pub(super) drain: Duration,
    /// How long revoked partitions wait for what is out of them.
    pub(super) revoke_grace: Duration,
    /// The group protocol, for the error when the cluster refuses it.
    pub(super) group_protocol: GroupProtocol,
    /// With a group: how often what was stored is committed.
    pub(super) commit_interval: Option<Duration>,
    /// The bytes the stream may buffer.
    pub(super) budget: StreamBudget,
    /// How long the client may read nothing while deliveries wait for it.
    pub(super) stall_timeout: Duration,
}

/// Partitions being revoked: settled within the grace, then released.
struct Leaving {
    /// The partitions.
    partitions: Vec<Partition>,
    /// When they are released, whatever is still out.
    until: Instant,
}

/// A dead-letter write that ended: the record's partition and offset, and
/// whether Kafka stored it.
type Written = (Partition, i64, bool);

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
    let mut ledger = spec.manual.clone().map(Ledger::new);
    let window = spec.manual.as_ref().map_or(usize::MAX, |m| m.max_unacked);
    let mut gate = TimeGate::new(spec);
    // Rebalance notices: sent before anything new.
    let mut urgent: VecDeque<SubscribeResponse> = VecDeque::new();
    // Records read from Kafka, not yet in the channel.
    let mut fresh: VecDeque<Record> = VecDeque::new();
    // The next message, waiting for room in the channel and the budget,
    // with its size.
    let mut staged: Option<(stream::Message, usize)> = None;
    // Bytes of the budget held for the next message: reserved before a
    // record is read (as much as the last delivery took), then fitted to
    // the message staged.
    let mut reserved: Option<Held> = None;
    let mut expect = FIRST_RESERVATION;
    let mut behind_since: Option<Instant> = None;
    // The client's reads so far, and when it last read (or had nothing
    // waiting).
    let (mut taken, mut progress_at) = (deliveries.taken(), Instant::now());
    let (written_tx, mut written) = mpsc::unbounded_channel::<Written>();
    // Once shutdown began with deliveries out: until when acks are taken.
    let mut draining: Option<Instant> = None;
    let tx = &deliveries.tx;
    let mut leaving: Option<Leaving> = None;
    // Nothing is fetched before there is room for it: the first turn of
    // the loop resumes the consumer once the budget holds a record's room.
    set_paused(&consumer, &stats, true);
    let mut commits = inputs.commit_interval.map(|every| {
        let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    loop {
        if let Some(ledger) = ledger.as_mut() {
            settle_up(&consumer, ledger, spec, &inputs, &written_tx);
        }
        let now = Instant::now();
        if let Some(going) = &leaving {
            // MANUAL: nothing of them out. AUTO: every delivery sent reached
            // gRPC (which stored its offset).
            let out = match &ledger {
                Some(ledger) => ledger.out_on(&going.partitions),
                None => tx.max_capacity() - tx.capacity(),
            };
            if out == 0 || now >= going.until {
                if out > 0 {
                    tracing::info!(
                        out,
                        partitions = going.partitions.len(),
                        "revoke grace over: handing partitions on with deliveries out"
                    );
                }
                let revoked = leaving.take().map(|l| l.partitions).unwrap_or_default();
                context::release(&*consumer, &revoked);
                rebalanced(
                    RebalanceEvent::Revoked(revoked),
                    ledger.as_mut(),
                    &mut urgent,
                    &mut fresh,
                );
            }
        }
        if let Some(until) = draining {
            if now >= until || ledger.as_ref().is_none_or(|l| l.out() == 0) {
                deliveries.end_with(Error::ShuttingDown);
                break;
            }
        }
        let window_full = ledger
            .as_ref()
            .is_some_and(|l| l.unsettled() >= window || l.bytes_full());
        let ready = ledger.as_ref().is_some_and(Ledger::has_ready);
        if staged.is_none()
            && draining.is_none()
            && (!urgent.is_empty() || ready || (!fresh.is_empty() && !window_full))
        {
            staged = next_message(
                (&mut urgent, &mut fresh, ledger.as_mut()),
                spec,
                &stats,
                &inputs.metrics,
            );
        }
        if let Some((message, bytes)) = &staged {
            if matches!(message.kind, Some(Kind::Delivery(_))) {
                expect = *bytes;
            }
        }
        // A record is read only with room reserved for it: what a stream
        // holds stays within its budget, and streams waiting for room never
        // each hold one record more.
        let wants_record = fresh.is_empty() && staged.is_none() && !window_full;
        let needs = match &staged {
            Some((_, bytes)) => Some(*bytes),
            None => (wants_record && draining.is_none()).then_some(expect),
        };
        if let Some(bytes) = needs {
            inputs.budget.try_fit(&mut reserved, bytes);
        }
        let fitted = staged
            .as_ref()
            .is_some_and(|(_, bytes)| inputs.budget.fits(reserved.as_ref(), *bytes));
        let room = |instance_only| {
            needs.is_none_or(|bytes| {
                inputs
                    .budget
                    .has_room(reserved.as_ref(), bytes, instance_only)
            })
        };
        let blocked = (staged.is_some() && tx.capacity() == 0) || !room(false);
        // Out of bytes, what librdkafka prefetches would be held on top of
        // the budget: the consumer is paused at once (its prefetched records
        // are dropped, and fetched again on resume).
        let starved = !room(false);
        if blocked {
            behind_since.get_or_insert(now);
        } else {
            behind_since = None;
        }
        if deliveries.taken() != taken || deliveries.waiting() == 0 {
            (taken, progress_at) = (deliveries.taken(), now);
        }
        let stall_check = (deliveries.waiting() > 0).then(|| progress_at + inputs.stall_timeout);
        if stall_check.is_some_and(|at| now >= at) {
            tracing::warn!(
                after = ?inputs.stall_timeout,
                waiting = deliveries.waiting(),
                "the client read nothing while deliveries waited; ending its stream"
            );
            inputs.metrics.stalled();
            deliveries.end_with(Error::Stalled {
                after: inputs.stall_timeout,
            });
            break;
        }
        let client_behind = behind_since.is_some_and(|since| now >= since + PAUSE_AFTER);
        // A draining subscription takes nothing new, but its consumer is
        // still polled: a rebalance meanwhile is answered at once (its
        // partitions handed on with what was settled committed) instead of
        // holding the group (and librdkafka's commits) until it closes.
        let pause = draining.is_some() || window_full || client_behind || starved;
        if pause != stats.paused.get() {
            set_paused(&consumer, &stats, pause);
        }
        stats.held.set(urgent.len() + fresh.len());
        stats.buffered.set(inputs.budget.used());
        stats
            .revoking
            .set(leaving.as_ref().map_or(0, |going| going.partitions.len()));
        if let Some(ledger) = &ledger {
            stats.unacked.set(ledger.unsettled());
            stats.timers.set(ledger.timers());
        }
        // A paused consumer is still polled (rebalances, liveness); it
        // fetches nothing new.
        let reserved_for_record = inputs.budget.covers(reserved.as_ref(), expect);
        let can_read = (wants_record && reserved_for_record) || stats.paused.get();
        let budget_wait = match &staged {
            Some((_, bytes)) => (!fitted).then_some(*bytes),
            None => needs.filter(|_| !reserved_for_record),
        };
        let next_timer = ledger.as_mut().and_then(Ledger::next_timer);
        let pause_check = behind_since
            .filter(|_| !client_behind)
            .map(|since| since + PAUSE_AFTER);
        // When to look at a revocation again: at the grace's end, and (AUTO,
        // whose channel drains without telling) every REPOLL.
        let leave_check = leaving.as_ref().map(|going| match &ledger {
            Some(_) => going.until,
            None => going.until.min(now + REPOLL),
        });

        tokio::select! {
            biased;
            () = shutdown.started(), if draining.is_none() => {
                draining = Some(Instant::now() + inputs.drain);
                // Never sent: the partition's next owner reads them.
                fresh.clear();
                tracing::info!(out = ledger.as_ref().map_or(0, Ledger::out), "draining: taking acks for what is out");
            }
            () = tokio::time::sleep_until(draining.unwrap_or(now)), if draining.is_some() => {}
            () = tx.closed() => break,
            // Before any verb: once librdkafka revoked a partition (and
            // committed what was settled of it), an ack of it must be
            // answered stale, as the partition's next owner delivers it.
            Some(event) = inputs.rebalances.recv() => {
                let assigned = matches!(event, RebalanceEvent::Assigned(_));
                if let RebalanceEvent::Revoking(partitions) = event {
                    leave(partitions, &mut leaving, ledger.as_mut(), &mut fresh, inputs.revoke_grace);
                    continue;
                }
                rebalanced(event, ledger.as_mut(), &mut urgent, &mut fresh);
                if assigned && stats.paused.get() {
                    // Partitions assigned to a paused stream start paused
                    // too: a full window takes nothing new from them.
                    set_paused(&consumer, &stats, true);
                }
            }
            Some(request) = inputs.verbs.recv() => {
                answer(ledger.as_mut(), request, &inputs.metrics);
            }
            Some((partition, offset, stored)) = written.recv() => {
                if let Some(ledger) = ledger.as_mut() {
                    ledger.dead_lettered(&partition, offset, stored, Instant::now());
                }
            }
            () = tokio::time::sleep_until(next_timer.unwrap_or(now)), if next_timer.is_some() => {
                if let Some(ledger) = ledger.as_mut() {
                    ledger.fire(Instant::now());
                }
            }
            () = inputs.budget.fit(&mut reserved, budget_wait.unwrap_or(0)), if budget_wait.is_some() => {}
            permit = tx.reserve(), if fitted => {
                let Ok(permit) = permit else { break };
                if let (Some((message, _)), Some(held)) = (staged.take(), reserved.take()) {
                    permit.send(Parcel::charged(message, held));
                }
            }
            message = consumer.recv(), if can_read => match message {
                Ok(message) => {
                    let revoking = leaving.as_ref().is_some_and(|going| {
                        going.partitions.iter().any(|(t, p)| t == message.topic() && *p == message.partition())
                    });
                    if draining.is_none() && !revoking && gate.admits(&message) {
                        fresh.push_back(Record::read(&message));
                    }
                }
                Err(error) => {
                    if let Some(fatal) = consumer_ended(&consumer, &error, inputs.group_protocol) {
                        tracing::warn!(%error, "Kafka ended the subscription");
                        deliveries.end_with(fatal);
                        break;
                    }
                    tracing::warn!(%error, "Kafka consumer error; the subscription continues");
                }
            },
            () = tokio::time::sleep_until(pause_check.unwrap_or(now)), if pause_check.is_some() => {}
            () = tokio::time::sleep_until(stall_check.unwrap_or(now)), if stall_check.is_some() => {}
            () = tokio::time::sleep_until(leave_check.unwrap_or(now)), if leave_check.is_some() => {}
            _ = next_tick(&mut commits), if commits.is_some() => commit(&consumer),
            () = tokio::time::sleep(REPOLL), if can_read => {}
        }
    }
    // Verbs that arrived just before the end still count.
    inputs.verbs.close();
    while let Ok(request) = inputs.verbs.try_recv() {
        answer(ledger.as_mut(), request, &inputs.metrics);
    }
    if let Some(ledger) = ledger.as_mut() {
        store_commits(&consumer, ledger);
    }
    // Partitions being revoked are handed on now, with what was settled;
    // from here on the consumer releases what is revoked at once.
    while let Ok(event) = inputs.rebalances.try_recv() {
        if let RebalanceEvent::Revoking(partitions) = event {
            leaving
                .get_or_insert(Leaving {
                    partitions: Vec::new(),
                    until: Instant::now(),
                })
                .partitions
                .extend(partitions);
        }
    }
    if let Some(going) = leaving {
        context::release(&*consumer, &going.partitions);
    }
    consumer.context().closing();
    drop(deliveries);
    consumer::close(consumer, slot).await;
}

/// The next tick of `ticks`, if there are any.
async fn next_tick(ticks: &mut Option<tokio::time::Interval>) {
    if let Some(ticks) = ticks {
        ticks.tick().await;
    }
}

/// Commits what was stored (settled, or handed over in AUTO) and not
/// committed yet; the answer comes to the context's commit callback.
/// Unlike librdkafka's own timer, this goes on during a rebalance: the
/// member still owns its partitions in the generation it commits for.
fn commit(consumer: &SubscriptionConsumer) {
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

/// Starts handing `partitions` back to the group: nothing of them is sent
/// from now on, and they are released once nothing of them is out, at most
/// `grace` from now.
fn leave(
    partitions: Vec<Partition>,
    leaving: &mut Option<Leaving>,
    ledger: Option<&mut Ledger>,
    fresh: &mut VecDeque<Record>,
    grace: Duration,
) {
    let gone: HashSet<&Partition> = partitions.iter().collect();
    fresh.retain(|r| !gone.contains(&(r.topic.clone(), r.partition)));
    if let Some(ledger) = ledger {
        ledger.leave(&partitions);
    }
    tracing::debug!(
        partitions = partitions.len(),
        ?grace,
        "partitions being revoked"
    );
    let until = Instant::now() + grace;
    match leaving {
        Some(going) => {
            going.partitions.extend(partitions);
            going.until = going.until.min(until);
        }
        None => *leaving = Some(Leaving { partitions, until }),
    }
}

/// The error that ends a subscription for a consumer error, if any: a
/// fatal one, read from the consumer, with what to do when the cluster
/// refused the group protocol.
fn consumer_ended(
    consumer: &SubscriptionConsumer,
    error: &rdkafka::error::KafkaError,
    protocol: GroupProtocol,
) -> Option<Error> {
    let fatal = Error::fatal_to_consumer(error)?;
    let cause = consumer.client().fatal_error();
    Some(match cause {
        Some((code, reason)) => {
            Error::refused_group_protocol(code, &reason, protocol == GroupProtocol::Consumer)
                .unwrap_or(Error::ConsumerFailed(reason))
        }
        None => fatal,
    })
}

/// The next message to send, with its encoded size: a rebalance notice,
/// then a delivery due again, then a record read from Kafka (unless the
/// ledger holds it back behind an earlier event of its key).
fn next_message(
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
                        metrics.redelivered(&again.topic);
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
    metrics.delivered(&delivery.topic, 1);
    stats.delivered.add(1);
}

/// Stores the commit points that moved and starts the dead letters due.
fn settle_up(
    consumer: &SubscriptionConsumer,
    ledger: &mut Ledger,
    spec: &SubscriptionSpec,
    inputs: &Inputs,
    written: &mpsc::UnboundedSender<Written>,
) {
    store_commits(consumer, ledger);
    for (partition, offset, job) in ledger.take_jobs() {
        let (writer, written, group) = (
            inputs.dead_letters.clone(),
            written.clone(),
            spec.group.clone(),
        );
        tokio::spawn(
            async move {
                let stored = writer.write(&job, group.as_deref()).await.is_ok();
                // The subscription may have ended meanwhile: the record is
                // then delivered again to the group's next member.
                let _ = written.send((partition, offset, stored));
            }
            .in_current_span(),
        );
    }
}

/// Stores each partition's new commit point.
fn store_commits(consumer: &SubscriptionConsumer, ledger: &mut Ledger) {
    for ((topic, partition), upto) in ledger.take_commits() {
        if let Err(error) = consumer.store_offset(&topic, partition, upto) {
            // The partition was revoked meanwhile: its next owner delivers
            // the event again.
            tracing::debug!(%error, topic, partition, upto, "cannot store a settled offset");
        }
    }
}

/// Applies verbs and answers them: what each did, or, for Acknowledge
/// (all or none), why none was applied.
fn answer(ledger: Option<&mut Ledger>, request: VerbRequest, metrics: &Metrics) {
    let Some(ledger) = ledger else {
        // Only MANUAL subscriptions take verbs: the registry refuses the
        // others before they get here.
        let refused = request
            .verbs
            .iter()
            .map(|_| Outcome::Refused("the subscription is ACK_MODE_AUTO".into()))
            .collect();
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
            let (acked, nacked, extended) = (
                matches!(verb, Verb::Ack),
                matches!(verb, Verb::Nack(_)),
                matches!(verb, Verb::Extend(_)),
            );
            let outcome = ledger.apply(verb, &ack, now);
            if outcome == Outcome::Accepted {
                let topic = &ack.partition.0;
                if acked {
                    metrics.acked(1);
                } else if nacked {
                    metrics.nacked(topic);
                } else if extended {
                    metrics.extended(topic);
                }
            }
            outcome
        })
        .collect();
    let _ = request.reply.send(Ok(outcomes));
}

/// Drops what belongs to revoked partitions and queues the client's notice.
fn rebalanced(
    event: RebalanceEvent,
    ledger: Option<&mut Ledger>,
    urgent: &mut VecDeque<SubscribeResponse>,
    fresh: &mut VecDeque<Record>,
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
        // (Partitions being revoked come here once they are released.)
        RebalanceEvent::Revoked(revoked) | RebalanceEvent::Revoking(revoked) => {
            let gone: HashSet<&Partition> = revoked.iter().collect();
            let owned =
                |topic: &str, partition: i32| !gone.contains(&(topic.to_owned(), partition));
            if let Some(ledger) = ledger {
                ledger.forget(&revoked);
            }
            fresh.retain(|r| owned(&r.topic, r.partition));
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
