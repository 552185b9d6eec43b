//! The task behind one Subscribe stream: reads the consumer, hands
//! deliveries to the bounded channel, and keeps the stream's promises.
//!
//! - Bounded memory: each message takes its bytes from the subscription's
//!   and the instance's budget before it goes into the channel, and waits
//!   for room; a client that stays behind for [`flow::PAUSE_AFTER`] gets
//!   its consumer paused until it reads again (a shorter stall is absorbed
//!   by the channel without refetching). A client that reads nothing for
//!   the stall timeout while deliveries wait for it is ended, so that its
//!   buffer goes back to the others. Each turn's decision is [`flow::flow`].
//! - ACK_MODE_MANUAL: at most `max_unacked` records unsettled (nothing is
//!   read while the window is full, and the consumer is paused once it
//!   stays full for [`flow::PAUSE_AFTER`]); the ledger applies the clients'
//!   verbs and its timers, says what to send again, which offsets to store
//!   for commit (contiguous runs of settled records only) and what to
//!   dead-letter ([`settle`]); dead letters are written beside the loop,
//!   and their outcome comes back to it.
//! - Rebalances ([`rebalance`]): a partition being revoked sends nothing
//!   new; for up to the revoke grace its deliveries out may still be acked
//!   (AUTO: what is in the channel may still reach gRPC), then what was
//!   settled is committed and the partition handed on; what was not
//!   settled, its next owner delivers from the committed offset, and the
//!   client is told.
//! - The end: the client leaving, a fatal Kafka error or shutdown (the client
//!   gets UNAVAILABLE) closes the consumer, which commits what was stored
//!   and leaves its group. At shutdown a MANUAL stream with deliveries out
//!   first drains: it sends nothing new and takes acks for what is out,
//!   until nothing is out or the drain timeout passes.

mod flow;
mod outlets;
mod rebalance;
mod settle;
mod share;
mod state;

use std::collections::VecDeque;
use std::ops::ControlFlow::Continue;
use std::sync::Arc;
use std::time::Duration;

use eventgateway::v1::{subscribe_response::Kind, SubscribeResponse};
use eventgateway_runtime::shutdown::Shutdown;
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::flow::{flow, needs, Facts};
pub(super) use self::outlets::Outlets;
use self::rebalance::{Leaving, TimeGate};
use self::settle::Written;
use super::budget::{Held, StreamBudget};
use super::consumer::{self, Slot, SubscriptionConsumer};
use super::context::RebalanceEvent;
use super::dead_letter::DeadLetters;
use super::delivery::Record;
use super::ledger::Ledger;
use super::registry::VerbRequest;
use super::spec::SubscriptionSpec;
use super::stats::SubscriptionStats;
use super::stream::{self, Parcel};
use crate::error::Error;
use crate::kafka::GroupProtocol;
use crate::metrics::Metrics;

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

/// Runs one subscription until the client leaves, Kafka fails it, or the
/// gateway shuts down; then closes its consumer off the runtime.
pub(super) async fn run(
    (consumer, slot): (Arc<SubscriptionConsumer>, Slot),
    spec: &SubscriptionSpec,
    outlets: Outlets,
    stats: Arc<SubscriptionStats>,
    shutdown: Shutdown,
    inputs: Inputs,
) {
    let mut task = Task::new(consumer.clone(), spec, outlets, stats, inputs);
    task.run(shutdown).await;
    task.finish();
    task.forget_share();
    drop(task);
    consumer::close(consumer, slot).await;
}

/// One subscription's state between turns of its loop.
struct Task<'a> {
    consumer: Arc<SubscriptionConsumer>,
    spec: &'a SubscriptionSpec,
    outlets: Outlets,
    /// A share's stream the staged message goes to this turn.
    target: Option<usize>,
    /// When a share's gauges were last set.
    share_reported: Instant,
    stats: Arc<SubscriptionStats>,
    inputs: Inputs,
    /// ACK_MODE_MANUAL: the records not settled.
    ledger: Option<Ledger>,
    /// The most records unsettled.
    window: usize,
    gate: TimeGate,
    /// Rebalance notices: sent before anything new.
    urgent: VecDeque<SubscribeResponse>,
    /// Records read from Kafka, not yet in the channel.
    fresh: VecDeque<Record>,
    /// The next message, waiting for room in the channel and the budget,
    /// with its size.
    staged: Option<(stream::Message, usize)>,
    /// Bytes of the budget held for the next message: reserved before a
    /// record is read (as much as the last delivery took), then fitted to
    /// the message staged.
    reserved: Option<Held>,
    /// The bytes the next record is expected to take.
    expect: usize,
    /// Since when the client has been behind.
    behind_since: Option<Instant>,
    /// The client's reads so far, and when it last read (or had nothing
    /// waiting).
    taken: u64,
    progress_at: Instant,
    /// Dead-letter writes that ended.
    written: (
        mpsc::UnboundedSender<Written>,
        mpsc::UnboundedReceiver<Written>,
    ),
    /// Once shutdown began with deliveries out: until when acks are taken.
    draining: Option<Instant>,
    /// Partitions being revoked.
    leaving: Option<Leaving>,
    /// With a group: when what was stored is committed.
    commits: Option<tokio::time::Interval>,
}

impl<'a> Task<'a> {
    fn new(
        consumer: Arc<SubscriptionConsumer>,
        spec: &'a SubscriptionSpec,
        outlets: Outlets,
        stats: Arc<SubscriptionStats>,
        inputs: Inputs,
    ) -> Self {
        let commits = inputs.commit_interval.map(|every| {
            let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        Self {
            ledger: spec.manual.clone().map(Ledger::new),
            window: spec.manual.as_ref().map_or(usize::MAX, |m| m.max_unacked),
            gate: TimeGate::new(spec),
            urgent: VecDeque::new(),
            fresh: VecDeque::new(),
            staged: None,
            reserved: None,
            expect: FIRST_RESERVATION,
            behind_since: None,
            taken: outlets.taken(),
            target: None,
            share_reported: Instant::now() - Duration::from_secs(60),
            progress_at: Instant::now(),
            written: mpsc::unbounded_channel(),
            draining: None,
            leaving: None,
            commits,
            consumer,
            spec,
            outlets,
            stats,
            inputs,
        }
    }

    /// The loop: a turn (what to stage, what the flow decides), then
    /// whichever input comes first.
    async fn run(&mut self, mut shutdown: Shutdown) {
        // Nothing is fetched before there is room for it: the first turn
        // resumes the consumer once the budget holds a record's room.
        self.set_paused(true);
        let consumer = self.consumer.clone();
        loop {
            let now = Instant::now();
            if let Some(ledger) = self.ledger.as_mut() {
                let with = (&self.inputs, &shutdown);
                settle::settle_up(&consumer, ledger, self.spec, with, &self.written.0);
            }
            self.check_leaving(now);
            if self.draining.is_some_and(|until| {
                now >= until || self.ledger.as_ref().is_none_or(|l| l.out() == 0)
            }) {
                self.outlets.end_with(Error::ShuttingDown);
                return;
            }
            let Continue(share_check) = self.share_turn(now) else {
                return;
            };
            let window_full = self
                .ledger
                .as_ref()
                .is_some_and(|l| l.unsettled() >= self.window || l.bytes_full());
            self.stage(window_full);
            self.aim();
            // A sender of its own: a permit the select answers with must not
            // borrow the task its arms change.
            let tx = self.outlets.sender(self.target);
            let facts = self.facts(now, window_full, tx.as_ref());
            let flow = flow(&facts);
            self.behind_since = flow.behind_since;
            if flow.stalled {
                let after = self.inputs.stall_timeout;
                tracing::warn!(
                    ?after,
                    waiting = self.outlets.waiting(),
                    "the client read nothing while deliveries waited; ending its stream"
                );
                self.inputs.metrics.delivery().stalled();
                self.outlets.end_with(Error::Stalled { after });
                return;
            }
            if flow.pause != self.stats.paused.get() {
                self.set_paused(flow.pause);
            }
            self.report();
            let can_read = flow.read_record || self.stats.paused.get();
            let next_timer = self.ledger.as_mut().and_then(Ledger::next_timer);
            let leave_check = self.leave_check(now);
            let watch = self.outlets.watch();
            tokio::select! {
                biased;
                () = shutdown.started(), if self.draining.is_none() => self.on_shutdown(),
                () = tokio::time::sleep_until(self.draining.unwrap_or(now)), if self.draining.is_some() => {}
                closed = watch.wait() => if closed { return },
                // Before any verb: once librdkafka revoked a partition (and
                // committed what was settled of it), an ack of it must be
                // answered stale, as the partition's next owner delivers it.
                Some(event) = self.inputs.rebalances.recv() => self.on_rebalance(event),
                Some(request) = self.inputs.verbs.recv() => {
                    settle::answer(self.ledger.as_mut(), request, &self.inputs.metrics);
                }
                Some((position, stored)) = self.written.1.recv() => {
                    if let Some(ledger) = self.ledger.as_mut() {
                        ledger.dead_lettered(&position, stored, Instant::now());
                    }
                }
                () = tokio::time::sleep_until(next_timer.unwrap_or(now)), if next_timer.is_some() => {
                    if let Some(ledger) = self.ledger.as_mut() {
                        ledger.fire(Instant::now());
                    }
                }
                () = self.inputs.budget.fit(&mut self.reserved, flow.budget_wait.unwrap_or(0)), if flow.budget_wait.is_some() => {}
                permit = outlets::reserve(tx.as_ref()), if flow.send && tx.is_some() => {
                    let Ok(permit) = permit else { continue };
                    if let (Some((message, _)), Some(held)) = (self.staged.take(), self.reserved.take()) {
                        self.outlets.sent(self.target, &message);
                        permit.send(Parcel::charged(message, held));
                    }
                }
                Some(outlet) = self.outlets.joining() => {
                    if let Outlets::Shared(dispatch) = &mut self.outlets {
                        dispatch.join(outlet);
                    }
                }
                () = tokio::time::sleep_until(share_check.unwrap_or(now)), if share_check.is_some() => {}
                message = consumer.recv(), if can_read => {
                    if self.on_message(message).is_break() {
                        return;
                    }
                }
                () = tokio::time::sleep_until(flow.pause_check.unwrap_or(now)), if flow.pause_check.is_some() => {}
                () = tokio::time::sleep_until(flow.stall_check.unwrap_or(now)), if flow.stall_check.is_some() => {}
                () = tokio::time::sleep_until(leave_check.unwrap_or(now)), if leave_check.is_some() => {}
                _ = next_tick(&mut self.commits), if self.commits.is_some() => settle::commit(&consumer),
                () = tokio::time::sleep(REPOLL), if can_read => {}
            }
        }
    }

    /// Stages the next message when none is: a rebalance notice, a
    /// delivery due again, or a record read (unless the window is full).
    fn stage(&mut self, window_full: bool) {
        let ready = self.ledger.as_ref().is_some_and(Ledger::has_ready);
        if self.staged.is_none()
            && self.draining.is_none()
            && (!self.urgent.is_empty() || ready || (!self.fresh.is_empty() && !window_full))
        {
            self.staged = settle::next_message(
                (&mut self.urgent, &mut self.fresh, self.ledger.as_mut()),
                self.spec,
                &self.stats,
                &self.inputs.metrics,
            );
        }
        if let Some((message, bytes)) = &self.staged {
            if matches!(message.kind, Some(Kind::Delivery(_))) {
                self.expect = *bytes;
            }
        }
    }

    /// What this turn sees, after fitting the bytes held to what it needs
    /// when that needs no wait.
    fn facts(
        &mut self,
        now: Instant,
        window_full: bool,
        tx: Option<&mpsc::Sender<Parcel>>,
    ) -> Facts {
        let staged = self.staged.as_ref().map(|(_, bytes)| *bytes);
        let wants_record = self.fresh.is_empty() && staged.is_none() && !window_full;
        let draining = self.draining.is_some();
        let needs = needs(staged, wants_record, draining, self.expect);
        let budget = &self.inputs.budget;
        if let Some(bytes) = needs {
            budget.try_fit(&mut self.reserved, bytes);
        }
        let reserved = self.reserved.as_ref();
        if self.outlets.taken() != self.taken || self.outlets.waiting() == 0 {
            (self.taken, self.progress_at) = (self.outlets.taken(), now);
        }
        Facts {
            now,
            staged,
            needs,
            wants_record,
            draining,
            window_full,
            channel_full: self.outlets.channel_full(tx),
            room: needs.is_none_or(|bytes| budget.has_room(reserved, bytes)),
            fitted: staged.is_some_and(|bytes| budget.fits(reserved, bytes)),
            covers_record: budget.covers(reserved, self.expect),
            behind_since: self.behind_since,
            progress_at: self.progress_at,
            waiting: self.outlets.waiting() > 0,
            stall_timeout: self.inputs.stall_timeout,
        }
    }
}

/// The next tick of `ticks`, if there are any.
async fn next_tick(ticks: &mut Option<tokio::time::Interval>) {
    if let Some(ticks) = ticks {
        ticks.tick().await;
    }
}
