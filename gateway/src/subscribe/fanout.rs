//! Live fan-out: ephemeral ACK_MODE_AUTO subscriptions from the latest event
//! on the same topics share one consumer (a "tail") instead of one each.
//!
//! The tail starts at the end of every partition when its first subscriber
//! joins; a later subscriber joins the broadcast where the tail is, so it
//! gets every event stored after its `subscribed` message (and possibly a
//! few stored just before, when the tail is catching up). Each delivery is
//! decoded once and handed to every subscriber's bounded channel.
//!
//! A subscriber whose channel stays full holds the tail back (backpressure,
//! nothing dropped) for at most [`SLOW_SUBSCRIBER`]; then its stream ends
//! with RESOURCE_EXHAUSTED, so that one stalled client cannot stop the
//! others. Stalled subscribers are waited for together, never one after
//! another: however many stall, the tail is held back at most that long.
//! The tail closes its consumer once nobody subscribes to it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventgateway::v1::{subscribe_response::Kind, SubscribeResponse};
use eventgateway_runtime::shutdown::Shutdown;
use futures_util::future::join_all;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::consumer::{self, Consumers, Slot, SubscriptionConsumer};
use super::delivery::{delivery, delivery_message};
use super::spec::SubscriptionSpec;
use super::stats::SubscriptionStats;
use super::stream::{Deliveries, Parcel};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::spans;
use crate::text::clip_list;

/// How long a subscriber may keep its channel full before its stream ends.
const SLOW_SUBSCRIBER: Duration = Duration::from_secs(5);
/// How often an idle tail looks for subscribers that left.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// One stream joining a tail.
pub(super) struct Subscriber {
    /// Its channel.
    pub(super) deliveries: Deliveries,
    /// Its counters.
    pub(super) stats: Arc<SubscriptionStats>,
}

/// A running tail: its number, and where its new subscribers go.
type TailEntry = (u64, mpsc::UnboundedSender<Subscriber>);

/// The live tails of this gateway, by topic set; cloning shares them.
#[derive(Clone)]
pub(super) struct FanOut(Arc<Inner>);

struct Inner {
    /// How to reach a tail's task, by its sorted topic list; with the
    /// tail's number, so that an ending tail removes only itself.
    tails: Mutex<HashMap<Vec<String>, TailEntry>>,
    /// Numbers tails.
    next: AtomicU64,
    /// Tails whose consumer is not closed yet.
    running: AtomicUsize,
    /// Opens a tail's consumer.
    consumers: Consumers,
    /// Where deliveries are counted.
    metrics: Metrics,
    /// Ends the tails; their tasks are drained at shutdown.
    shutdown: Shutdown,
}

impl FanOut {
    /// No tails yet; their consumers come from `consumers`.
    pub(super) fn new(consumers: Consumers, metrics: Metrics, shutdown: Shutdown) -> Self {
        Self(Arc::new(Inner {
            tails: Mutex::default(),
            next: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            consumers,
            metrics,
            shutdown,
        }))
    }

    /// How many tails have not closed their consumer yet.
    #[cfg(feature = "testing")]
    pub(super) fn running(&self) -> usize {
        self.0.running.load(Ordering::SeqCst)
    }

    /// Adds `subscriber` to the tail of `spec`'s topics, starting one (at the
    /// end of every partition in `partitions`) if there is none.
    pub(super) async fn join(
        &self,
        spec: &SubscriptionSpec,
        partitions: HashMap<String, Vec<i32>>,
        subscriber: Subscriber,
    ) -> Result<(), Error> {
        let mut key = spec.topics.clone();
        key.sort();
        key.dedup();
        let mut tails = self.0.tails.lock().await;
        let subscriber = match tails.get(&key) {
            Some((_, joins)) => match joins.send(subscriber) {
                Ok(()) => return Ok(()),
                // That tail just ended: start another.
                Err(mpsc::error::SendError(subscriber)) => subscriber,
            },
            None => subscriber,
        };
        let number = self.0.next.fetch_add(1, Ordering::SeqCst);
        let slot = self.0.consumers.slot()?;
        let (joins_tx, mut joins) = mpsc::unbounded_channel();
        // The receiver is alive: the task is not started yet.
        let _ = joins_tx.send(subscriber);
        tails.insert(key.clone(), (number, joins_tx));
        // Opening the consumer (an offset look-up per partition) takes a
        // while: others join this tail, or start their own, meanwhile.
        drop(tails);
        // No group and no rebalances: the tail assigns every partition.
        let (rebalances, _) = mpsc::unbounded_channel();
        let opened = self
            .0
            .consumers
            .open(spec, partitions, format!("tail-{number}"), rebalances)
            .await;
        let consumer = match opened {
            Ok(consumer) => consumer,
            Err(error) => {
                let mut tails = self.0.tails.lock().await;
                if tails.get(&key).is_some_and(|(n, _)| *n == number) {
                    tails.remove(&key);
                }
                drop(tails);
                // The caller's own subscriber is first: the error is its
                // answer. Those who joined meanwhile end with it.
                joins.close();
                let _own = joins.try_recv();
                while let Ok(subscriber) = joins.try_recv() {
                    subscriber.deliveries.end_with(error.clone());
                }
                return Err(error);
            }
        };
        self.0.running.fetch_add(1, Ordering::SeqCst);
        tracing::info!(topics = %clip_list(&key), "live tail started");
        let shutdown = self.0.shutdown.clone();
        shutdown.spawn(run(self.0.clone(), key, number, (consumer, slot), joins));
        Ok(())
    }
}

/// A subscriber as the tail sees it.
struct Member {
    deliveries: Deliveries,
    stats: Arc<SubscriptionStats>,
    /// Since when its channel is full, while it is.
    full_since: Option<Instant>,
    /// Left, or ended by the tail.
    gone: bool,
}

impl Member {
    fn new(subscriber: Subscriber) -> Self {
        Self {
            deliveries: subscriber.deliveries,
            stats: subscriber.stats,
            full_since: None,
            gone: false,
        }
    }
}

/// Runs one tail until nobody subscribes, Kafka fails it, or shutdown.
async fn run(
    inner: Arc<Inner>,
    key: Vec<String>,
    number: u64,
    (consumer, slot): (SubscriptionConsumer, Slot),
    mut joins: mpsc::UnboundedReceiver<Subscriber>,
) {
    let mut members: Vec<Member> = Vec::new();
    let mut shutdown = inner.shutdown.clone();
    let mut idle = tokio::time::interval(IDLE_CHECK);
    let ending = loop {
        tokio::select! {
            biased;
            () = shutdown.started() => break Some(Error::ShuttingDown),
            Some(subscriber) = joins.recv() => members.push(Member::new(subscriber)),
            message = consumer.recv() => match message {
                Ok(message) => {
                    let mut first = delivery(&message);
                    drop(message);
                    spans::deliver(&mut first, None);
                    let topic = first.topic.clone();
                    let handed = broadcast(&mut members, delivery_message(first)).await;
                    inner.metrics.delivery().delivered(&topic, handed);
                }
                Err(error) => {
                    if let Some(fatal) = Error::fatal_to_consumer(&error) {
                        tracing::warn!(%error, "Kafka ended the live tail");
                        break Some(fatal);
                    }
                    tracing::warn!(%error, "Kafka consumer error; the live tail continues");
                }
            },
            _ = idle.tick() => {
                members.retain(|m| !m.gone && !m.deliveries.tx.is_closed());
                if members.is_empty() {
                    let mut tails = inner.tails.lock().await;
                    // Joins happen under this lock: none can slip in now.
                    while let Ok(subscriber) = joins.try_recv() {
                        members.push(Member::new(subscriber));
                    }
                    if members.is_empty() {
                        if tails.get(&key).is_some_and(|(n, _)| *n == number) {
                            tails.remove(&key);
                        }
                        break None;
                    }
                }
            }
        }
    };
    // Nobody joins an ending tail: those who just did end with it.
    {
        let mut tails = inner.tails.lock().await;
        if tails.get(&key).is_some_and(|(n, _)| *n == number) {
            tails.remove(&key);
        }
        joins.close();
        while let Ok(subscriber) = joins.try_recv() {
            members.push(Member::new(subscriber));
        }
    }
    if let Some(error) = ending {
        for member in members.drain(..) {
            member.deliveries.end_with(error.clone());
        }
    }
    tracing::info!(topics = %clip_list(&key), "live tail ended");
    consumer::close(consumer, slot).await;
    inner.running.fetch_sub(1, Ordering::SeqCst);
}

/// Hands `message` to every member; returns to how many. Members whose
/// channel is full are waited for all at once, each until it has been full
/// for [`SLOW_SUBSCRIBER`]: however many stall, the tail waits at most that
/// long. A member still full then is ended with RESOURCE_EXHAUSTED.
async fn broadcast(members: &mut Vec<Member>, message: SubscribeResponse) -> u64 {
    let message = Arc::new(message);
    let mut handed = 0;
    let mut full = Vec::new();
    for (index, member) in members.iter_mut().enumerate() {
        match member.deliveries.tx.try_send(Parcel::from(message.clone())) {
            Ok(()) => {
                member.full_since = None;
                member.stats.delivered.add(1);
                handed += 1;
            }
            Err(TrySendError::Closed(_)) => member.gone = true,
            Err(TrySendError::Full(_)) => {
                let since = *member.full_since.get_or_insert_with(Instant::now);
                full.push((index, since + SLOW_SUBSCRIBER));
            }
        }
    }
    let waits = full.into_iter().map(|(index, deadline)| {
        let (tx, message) = (members[index].deliveries.tx.clone(), message.clone());
        async move {
            (
                index,
                tokio::time::timeout_at(deadline, tx.send(Parcel::from(message))).await,
            )
        }
    });
    for (index, sent) in join_all(waits).await {
        let member = &mut members[index];
        match sent {
            Ok(Ok(())) => {
                member.stats.delivered.add(1);
                handed += 1;
                if member.deliveries.tx.capacity() > 0 {
                    member.full_since = None;
                }
            }
            Ok(Err(_)) => member.gone = true,
            Err(_) => {
                member.gone = true;
                let at = match &message.kind {
                    Some(Kind::Delivery(d)) => format!("{}/{}@{}", d.topic, d.partition, d.offset),
                    _ => String::new(),
                };
                tracing::warn!(
                    at,
                    "a subscriber stayed behind the live tail; ending its stream"
                );
                member.deliveries.end_with(Error::SlowSubscriber {
                    after: SLOW_SUBSCRIBER,
                    at,
                });
            }
        }
    }
    if members.iter().any(|m| m.gone) {
        members.retain(|m| !m.gone);
    }
    handed
}
