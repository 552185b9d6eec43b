//! Where a subscription's deliveries come from. A subscription is opened
//! with a validated [`SubscriptionSpec`]: it gets a Kafka consumer of its own
//! (`consumer`, `context`) driven by a task (`task`: flow control, acks and
//! redelivery, rebalances, shutdown), or, ephemeral from the latest event, a
//! place on a shared live tail (`fanout`), or a stream of a shared
//! subscription (`share`: one consumer, its task spreading deliveries over
//! the streams). Either way the client reads a bounded channel (`stream`),
//! and the open subscriptions are found by id for Acknowledge and Settle
//! (`registry`; `open` keeps them there while they are). A MANUAL subscription's task
//! keeps its deliveries in a `ledger` (acks, nacks, extensions, retries,
//! dead letters, order by key) and writes dead letters (`dead_letter`).

mod budget;
mod consumer;
mod context;
mod dead_letter;
mod delivery;
mod fanout;
mod ledger;
mod open;
mod registry;
mod settler;
mod share;
mod spec;
mod stats;
mod stream;
mod task;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use eventgateway::v1::SubscribeResponse;
use eventgateway_runtime::shutdown::Shutdown;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tracing::Instrument;

use self::budget::Budget;
use self::consumer::Consumers;
use self::fanout::FanOut;
use self::registry::{Registry, SubscriptionHandle};
use self::share::{Entered, Member, Outlet, Shares};
use self::stream::DeliveryStream;
use self::task::Outlets;
use crate::error::Error;
use crate::health::Readiness;
use crate::kafka::publisher::Publisher;
use crate::kafka::topics::Topics;
use crate::kafka::Cluster;
use crate::limit::Limit;
use crate::metrics::Metrics;
use crate::route::Routing;
use crate::text::{clip, clip_list, id_prefix};

pub(crate) use self::dead_letter::DeadLetterCheck;
use self::dead_letter::DeadLetters;
pub(crate) use self::delivery::{parse_ack_id, AckRef};
pub(crate) use self::ledger::{Outcome, Verb, MAX_DELAY};
pub(crate) use self::settler::Settler;
pub(crate) use self::spec::{
    Backoff, DeadLetters as DeadLetterPolicy, ManualAcks, StartPosition, SubscriptionSpec,
    TopicPartition, MAX_ACK_TIMEOUT, MAX_UNACKED, MIN_ACK_TIMEOUT,
};
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub))]
pub use self::stats::SubscriptionStats;

/// Verb requests queued for one subscription task before the next waits.
const VERB_BATCHES: usize = 64;

/// The stream a Subscribe call answers with.
pub(crate) type SubscribeStream =
    Pin<Box<dyn Stream<Item = Result<SubscribeResponse, tonic::Status>> + Send>>;

/// The subscriptions of this gateway; cloning shares them.
#[derive(Clone)]
pub(crate) struct Subscriptions {
    /// Opens the consumers.
    consumers: Consumers,
    /// Which topics exist, and their partitions.
    topics: Topics,
    /// Whether new subscriptions may open.
    readiness: Readiness,
    /// The open subscriptions by id.
    registry: Registry,
    /// The live tails shared by ephemeral streams from the latest event.
    fanout: FanOut,
    /// Counters served on /metrics.
    metrics: Metrics,
    /// Ends the streams; their tasks are drained at shutdown.
    shutdown: Shutdown,
    /// One permit per subscription that may be open.
    slots: Limit,
    /// The limits subscriptions keep.
    limits: Limits,
    /// Writes dead letters.
    dead_letters: DeadLetters,
    /// The bytes buffered for clients.
    budget: Budget,
    /// The shares open, by group and name.
    shares: Shares,
    /// Acks at any replica, when on: ids name this replica, signed.
    routing: Option<Routing>,
}

/// A subscription just opened.
pub(crate) struct Opened {
    /// What its client reads.
    pub(crate) stream: SubscribeStream,
    /// Where its verbs go; `None` for ACK_MODE_AUTO.
    pub(crate) settler: Option<Settler>,
}

/// How many subscriptions, consumers and buffered deliveries a gateway
/// allows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Deliveries buffered per subscription (`--subscription-buffer`).
    pub(crate) buffer: usize,
    /// Bytes buffered per subscription (`--subscription-buffer-bytes`).
    pub(crate) buffer_bytes: usize,
    /// Bytes buffered by all subscriptions (`--total-buffer-bytes`).
    pub(crate) total_buffer_bytes: usize,
    /// How long a client may read nothing while deliveries wait for it
    /// (`--stall-timeout`).
    pub(crate) stall_timeout: std::time::Duration,
    /// Subscriptions open at once (`--max-subscriptions`).
    pub(crate) subscriptions: usize,
    /// Kafka consumers open at once (`--max-consumers`).
    pub(crate) consumers: usize,
    /// How long a MANUAL stream takes acks at shutdown (`--drain-timeout`).
    pub(crate) drain: std::time::Duration,
    /// How often group subscriptions commit (`--commit-interval`).
    pub(crate) commit_interval: std::time::Duration,
    /// The group protocol of group subscriptions (`--group-protocol`).
    pub(crate) group_protocol: crate::kafka::GroupProtocol,
    /// How long a subscription losing partitions waits for the acks of its
    /// deliveries out on them (`--revoke-grace`).
    pub(crate) revoke_grace: std::time::Duration,
}

impl Subscriptions {
    /// No subscription open yet: subscriptions will consume from `cluster`
    /// the `topics` it has, while `readiness` allows and within `limits`,
    /// and write dead letters with `publisher`; they end at `shutdown`.
    pub(crate) fn new(
        cluster: Cluster,
        publisher: Publisher,
        topics: Topics,
        readiness: Readiness,
        metrics: Metrics,
        shutdown: Shutdown,
        limits: Limits,
    ) -> Self {
        let budget = Budget::new(
            limits.total_buffer_bytes,
            limits.buffer_bytes,
            metrics.delivery().buffered_bytes(),
        );
        let consumers = Consumers::new(
            cluster,
            metrics.clone(),
            limits.consumers,
            limits.group_protocol,
            !limits.revoke_grace.is_zero(),
        )
        .prefetching_within(budget.size(), limits.buffer_bytes);
        let fanout = FanOut::new(consumers.clone(), metrics.clone(), shutdown.clone());
        let dead_letters = DeadLetters::new(publisher, topics.clone(), metrics.clone());
        Self {
            dead_letters,
            consumers,
            topics,
            readiness,
            registry: Registry::default(),
            fanout,
            metrics,
            shutdown,
            slots: Limit::new(
                limits.subscriptions,
                "subscriptions are open, its --max-subscriptions",
            ),
            limits,
            budget,
            shares: Shares::default(),
            routing: None,
        }
    }

    /// Hands out ids that name this replica, signed by `routing`.
    pub(crate) fn routed(mut self, routing: Option<Routing>) -> Self {
        self.routing = routing;
        self
    }

    /// A new subscription's id: 122 random bits (it cannot be guessed),
    /// with this replica's signed route when acks at any replica are on.
    fn new_id(&self) -> String {
        let uuid = uuid::Uuid::new_v4().to_string();
        match &self.routing {
            Some(routing) => routing.subscription_id(&uuid),
            None => uuid,
        }
    }

    /// The counters of the open subscription `id`.
    #[cfg(feature = "testing")]
    pub(crate) fn stats(&self, id: &str) -> Option<Arc<SubscriptionStats>> {
        self.registry.stats(id)
    }

    /// How many live tails have not closed their consumer yet.
    #[cfg(feature = "testing")]
    pub(crate) fn live_tails(&self) -> usize {
        self.fanout.running()
    }

    /// Opens a subscription for `owner` (the principal that may act on it;
    /// anyone when `None`): its stream starts with `subscribed`, then
    /// carries its deliveries. `acks_on_stream`: its verbs ride its own
    /// stream (StreamingSubscribe), so at shutdown it drains (takes acks
    /// for what is out) before it ends. `dead_letter_check`: asked before
    /// each dead letter is written (rights and quota of the subscriber).
    pub(crate) async fn open(
        &self,
        spec: SubscriptionSpec,
        owner: Option<Arc<str>>,
        acks_on_stream: bool,
        dead_letter_check: Option<DeadLetterCheck>,
    ) -> Result<Opened, Error> {
        self.readiness.check()?;
        let slot = self.slots.take()?;
        let mut partitions = HashMap::new();
        for topic in &spec.topics {
            partitions.insert(topic.clone(), self.topics.partitions(topic).await?);
        }
        // Dead letters go to topics that exist (or that the gateway may
        // create): a name that does not is refused now, not at each write.
        for target in spec.dead_letter_topics() {
            self.topics
                .ensure(&target)
                .await
                .map_err(|error| match error {
                    Error::TopicNotFound(name) => {
                        Error::TopicNotFound(format!("{name} (the dead_letter_policy's topic)"))
                    }
                    other => other,
                })?;
        }
        if let StartPosition::Offsets(offsets) = &spec.start {
            for TopicPartition { topic, partition } in offsets.keys() {
                let topic: &str = topic;
                if !partitions[topic].contains(partition) {
                    return Err(Error::InvalidArgument(format!(
                        "start_offsets names partition {partition} of topic {}, which has {} partitions",
                        clip(topic),
                        partitions[topic].len()
                    )));
                }
            }
        }
        let id = self.new_id();
        if spec.shares_a_tail() {
            let stream = self.join_tail(id, spec, partitions, slot, owner).await?;
            return Ok(Opened {
                stream,
                settler: None,
            });
        }
        let (deliveries, ending) = stream::channel(&id, self.limits.buffer);
        let (member, verbs, outlets) = match spec.share.is_some() {
            false => {
                let (verbs_tx, verbs) = mpsc::channel(VERB_BATCHES);
                let member = Member {
                    verbs: verbs_tx,
                    stats: Arc::new(SubscriptionStats::default()),
                    wake: Arc::default(),
                };
                (member, verbs, Outlets::One(deliveries))
            }
            true => {
                let window = spec.manual.as_ref().map_or(0, |m| m.max_unacked);
                let outlet = Outlet { deliveries, window };
                let queues = (VERB_BATCHES, self.limits.stall_timeout);
                match self.shares.enter(&spec, owner.clone(), outlet, queues)? {
                    Entered::Joined(member) => {
                        return Ok(self.joined(id, ending, member, slot, owner));
                    }
                    Entered::First {
                        member,
                        verbs,
                        dispatch,
                    } => (member, verbs, Outlets::Shared(dispatch)),
                }
            }
        };
        let consumer_slot = self.consumers.slot()?;
        let (rebalances_tx, rebalances) = mpsc::unbounded_channel();
        let consumer = self
            .consumers
            .open(&spec, partitions, id.clone(), rebalances_tx)
            .await?;
        let consumer = Arc::new(consumer);
        let settler = spec
            .manual
            .as_ref()
            .map(|_| Settler::new(member.verbs.clone(), id.clone()));
        let handle = SubscriptionHandle {
            stats: member.stats.clone(),
            verbs: settler.as_ref().map(|s| s.verbs.clone()),
            owner,
        };
        let open = self.opened(&id, handle, slot);
        // AUTO with a group: offsets are stored as deliveries reach gRPC.
        let store_offsets =
            (spec.group.is_some() && spec.manual.is_none()).then(|| Arc::downgrade(&consumer));
        let mut stream = DeliveryStream::new(ending, store_offsets);
        if spec.manual.is_some() {
            stream = stream.signing(self.routing.clone());
        }
        // A share's stream is forgotten when it ends, the others with their
        // task.
        let open = match &outlets {
            Outlets::One(_) => Some(open),
            Outlets::Shared(_) => {
                stream = stream.waking(member.wake).on_end(move || drop(open));
                None
            }
        };
        let span = tracing::info_span!(
            "EventGateway.Subscribe",
            subscription = id_prefix(&id),
            topics = %clip_list(&spec.topics),
            group = spec.group.as_deref().unwrap_or(""),
            manual = spec.manual.is_some()
        );
        let (shutdown, metrics) = (self.shutdown.clone(), self.metrics.clone());
        let dead_letters = self.dead_letters.clone().checked_by(dead_letter_check);
        let (revoke_grace, group_protocol) =
            (self.limits.revoke_grace, self.consumers.group_protocol());
        let commit_interval = spec.group.as_ref().map(|_| self.limits.commit_interval);
        let (budget, stall_timeout) = (self.budget.stream(), self.limits.stall_timeout);
        let drain = if acks_on_stream {
            self.limits.drain
        } else {
            std::time::Duration::ZERO
        };
        let stats = member.stats;
        self.shutdown.spawn(
            async move {
                // Forgets the subscription however the task ends.
                let _open = open;
                let inputs = task::Inputs {
                    verbs,
                    rebalances,
                    metrics,
                    dead_letters,
                    drain,
                    revoke_grace,
                    group_protocol,
                    commit_interval,
                    budget,
                    stall_timeout,
                };
                let consumer = (consumer, consumer_slot);
                task::run(consumer, &spec, outlets, stats, shutdown, inputs).await;
            }
            .instrument(span),
        );
        Ok(Opened {
            stream: Box::pin(stream),
            settler,
        })
    }
}
