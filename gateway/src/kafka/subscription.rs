//! One Subscribe stream: a Kafka consumer of its own, a task that moves its
//! records into a bounded channel, and the stream the client reads.
//!
//! Memory stays bounded for a slow client: when the channel is full the
//! consumer's partitions are paused (Kafka stops fetching for them) and
//! resumed once the client has read. With a consumer group in AUTO mode the
//! offset of a delivery is stored when the stream hands it to gRPC, and
//! committed from there; the consumer leaves its group as soon as the client
//! goes away.

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use eventgateway::record::{record_to_event, IncomingRecord};
use eventgateway::v1::{subscribe_response::Kind, Delivery, SubscribeResponse};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::Status;

use super::{client_config, METADATA_TIMEOUT};
use crate::error::Error;
use crate::shutdown::Shutdown;

/// How long a stream ending at shutdown waits to tell its client why.
const SHUTDOWN_NOTICE: Duration = Duration::from_secs(2);
/// How long a client may stay behind before its consumer is paused; a
/// shorter stall is absorbed by the channel without refetching.
const PAUSE_AFTER: Duration = Duration::from_millis(250);
/// How often a waiting subscription looks at its consumer's queue again.
const REPOLL: Duration = Duration::from_millis(100);

/// Where a subscription starts reading.
#[derive(Debug, Clone, PartialEq)]
pub enum StartPosition {
    /// After the last event (or the group's committed offsets).
    Latest,
    /// At the first event still kept (or the group's committed offsets).
    Earliest,
    /// At the first record at or after this time, in ms since the epoch.
    Timestamp(i64),
    /// At these offsets; unlisted partitions as [`StartPosition::Latest`].
    Offsets(HashMap<(String, i32), i64>),
}

/// What a client asked to consume.
#[derive(Debug, Clone)]
pub struct SubscriptionSpec {
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Consumer group; `None` for an ephemeral subscription.
    pub group: Option<String>,
    /// Where to start.
    pub start: StartPosition,
}

/// Counters of one subscription, for observing flow control.
#[derive(Debug, Default)]
pub struct SubscriptionStats {
    /// Whether the consumer is paused because the client is behind.
    paused: AtomicBool,
    /// How many times it was paused.
    pauses: AtomicU64,
    /// Deliveries handed to the channel.
    delivered: AtomicU64,
    /// Records read from Kafka and held by the task, not yet in the channel.
    held: AtomicUsize,
}

impl SubscriptionStats {
    /// Whether the consumer is paused right now.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }
    /// How many times the consumer was paused.
    pub fn pauses(&self) -> u64 {
        self.pauses.load(Ordering::SeqCst)
    }
    /// Deliveries handed to the channel so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::SeqCst)
    }
    /// Records the task holds outside the channel.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

/// The consumer context: positions partitions on their first assignment
/// when the subscription replays from a timestamp or offsets.
pub struct SubscriptionContext {
    /// Where to start.
    start: StartPosition,
    /// Partitions already positioned; later assignments resume from the
    /// group's committed offsets.
    positioned: Mutex<HashSet<(String, i32)>>,
}

impl ClientContext for SubscriptionContext {}

impl ConsumerContext for SubscriptionContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.position(consumer, tpl);
                tracing::debug!(partitions = tpl.count(), "partitions assigned");
                if let Err(error) = consumer.assign(tpl) {
                    tracing::error!(%error, "cannot take the assigned partitions");
                }
            }
            _ => {
                if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    tracing::warn!(?err, "rebalance error");
                }
                tracing::debug!(partitions = tpl.count(), "partitions revoked");
                if let Err(error) = consumer.unassign() {
                    tracing::error!(%error, "cannot release the revoked partitions");
                }
            }
        }
    }
}

impl SubscriptionContext {
    /// Sets start offsets on partitions seen for the first time, for
    /// timestamp and offset replays.
    fn position(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let mut positioned = self.positioned.lock().unwrap_or_else(|p| p.into_inner());
        let fresh: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .filter(|tp| !positioned.contains(tp))
            .collect();
        if fresh.is_empty() {
            return;
        }
        match start_offsets(consumer, &self.start, &fresh) {
            Ok(offsets) => {
                for ((topic, partition), offset) in offsets {
                    if let Some(offset) = offset {
                        let _ = tpl.set_partition_offset(&topic, partition, offset);
                    }
                    positioned.insert((topic, partition));
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot find the start offsets; starting from the group's positions")
            }
        }
    }
}

/// A topic partition and the offset to start it from, if any.
type StartOffset = ((String, i32), Option<Offset>);

/// The explicit start offset of each partition; `None` leaves it to the
/// group's committed offset (or auto.offset.reset), and to the latest offset
/// for an ephemeral subscription. Blocking for timestamps.
fn start_offsets<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    start: &StartPosition,
    partitions: &[(String, i32)],
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
            for (topic, partition) in partitions {
                query.add_partition_offset(topic, *partition, Offset::Offset(*millis))?;
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
                    ((e.topic().to_owned(), e.partition()), Some(offset))
                })
                .collect())
        }
    }
}

/// A subscription's Kafka consumer.
pub type SubscriptionConsumer = StreamConsumer<SubscriptionContext>;

/// Creates the consumer of a subscription and points it at its partitions:
/// joins the group, or (ephemeral) assigns every partition of `partitions`.
/// Blocking.
pub fn open(
    brokers: &str,
    properties: &[(String, String)],
    spec: &SubscriptionSpec,
    partitions: &HashMap<String, Vec<i32>>,
    ephemeral_id: &str,
) -> Result<SubscriptionConsumer, Error> {
    let reset = match spec.start {
        StartPosition::Earliest => "earliest",
        _ => "latest",
    };
    let group = spec
        .group
        .clone()
        .unwrap_or_else(|| format!("event-gateway-ephemeral-{ephemeral_id}"));
    let config = client_config(
        brokers,
        &[
            // Bound what librdkafka prefetches for one stream.
            ("queued.max.messages.kbytes", "4096"),
            ("session.timeout.ms", "30000"),
        ],
        properties,
        &[
            ("group.id", group),
            ("enable.auto.commit", spec.group.is_some().to_string()),
            // Offsets are stored only once a delivery was handed over.
            ("enable.auto.offset.store", "false".into()),
            ("auto.offset.reset", reset.into()),
            ("enable.partition.eof", "false".into()),
        ],
    );
    let context = SubscriptionContext {
        start: spec.start.clone(),
        positioned: Mutex::default(),
    };
    let consumer: SubscriptionConsumer = config
        .create_with_context(context)
        .map_err(|error| Error::from_kafka(&error, ""))?;
    if spec.group.is_some() {
        let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|error| Error::from_kafka(&error, ""))?;
    } else {
        let all: Vec<(String, i32)> = partitions
            .iter()
            .flat_map(|(topic, ids)| ids.iter().map(move |id| (topic.clone(), *id)))
            .collect();
        let offsets = start_offsets(&consumer, &spec.start, &all)
            .map_err(|error| Error::from_kafka(&error, ""))?;
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in offsets {
            let offset = offset.unwrap_or(match spec.start {
                StartPosition::Earliest => Offset::Beginning,
                _ => Offset::End,
            });
            tpl.add_partition_offset(&topic, partition, offset)
                .map_err(|error| Error::from_kafka(&error, &topic))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|error| Error::from_kafka(&error, ""))?;
    }
    Ok(consumer)
}

/// The ack id of a delivery: `<topic>:<partition>:<offset>` (topic names
/// cannot contain ':').
pub fn ack_id(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}:{partition}:{offset}")
}

/// Turns a Kafka record into a delivery.
fn delivery(message: &BorrowedMessage<'_>) -> SubscribeResponse {
    let headers = message
        .headers()
        .map(|headers| headers.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default();
    let record = IncomingRecord {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        value: message.payload(),
        timestamp_ms: message.timestamp().to_millis(),
        headers,
    };
    SubscribeResponse {
        kind: Some(Kind::Delivery(Delivery {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message
                .key()
                .map(|key| String::from_utf8_lossy(key).into_owned())
                .unwrap_or_default(),
            event: Some(record_to_event(&record)),
            ack_id: ack_id(message.topic(), message.partition(), message.offset()),
            attempt: 1,
        })),
    }
}

/// The channel of one subscription.
type Deliveries = mpsc::Sender<Result<SubscribeResponse, Status>>;

/// Moves records from the consumer into `tx` until the client leaves, Kafka
/// fails the subscription, or the gateway shuts down; then closes the
/// consumer (committing stored offsets and leaving the group).
pub async fn run(
    consumer: Arc<SubscriptionConsumer>,
    spec: &SubscriptionSpec,
    tx: Deliveries,
    stats: Arc<SubscriptionStats>,
    mut shutdown: Shutdown,
) {
    let mut held: VecDeque<SubscribeResponse> = VecDeque::new();
    let mut time_gate = TimeGate::new(spec);
    loop {
        let permit = tokio::select! {
            biased;
            () = shutdown.started() => {
                notify_shutdown(&tx).await;
                break;
            }
            permit = room(&consumer, &tx, &stats, &mut held, &mut time_gate) => match permit {
                Some(permit) => permit,
                None => break,
            },
        };
        if let Some(next) = held.pop_front() {
            permit.send(Ok(next));
            stats.delivered.fetch_add(1, Ordering::SeqCst);
            stats.held.store(held.len(), Ordering::SeqCst);
            continue;
        }
        let message = tokio::select! {
            biased;
            () = shutdown.started() => {
                drop(permit);
                notify_shutdown(&tx).await;
                break;
            }
            () = tx.closed() => break,
            message = consumer.recv() => message,
            // Look at the consumer's queue again now and then, so that a
            // missed wake-up (seen after a pause) never stalls the stream.
            () = tokio::time::sleep(REPOLL) => continue,
        };
        match message {
            Ok(message) => {
                if time_gate.admits(&message) {
                    permit.send(Ok(delivery(&message)));
                    stats.delivered.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(error) => {
                if let Some(status) = fatal(&error) {
                    permit.send(Err(status));
                    break;
                }
                tracing::warn!(%error, "Kafka consumer error; the subscription continues");
            }
        }
    }
    // Closing blocks on the group coordinator: do it off the runtime.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
}

/// Tells the client the stream ends because the gateway shuts down.
async fn notify_shutdown(tx: &Deliveries) {
    let notice = Status::unavailable("the gateway is shutting down; reconnect to resume");
    let _ = tokio::time::timeout(SHUTDOWN_NOTICE, tx.send(Err(notice))).await;
}

/// Waits for room in the channel. A client that stays behind for
/// [`PAUSE_AFTER`] gets its consumer paused until it catches up; the paused
/// consumer is still served (rebalances, liveness) and what it yields is
/// held. `None` once the client has gone.
async fn room<'a>(
    consumer: &SubscriptionConsumer,
    tx: &'a Deliveries,
    stats: &SubscriptionStats,
    held: &mut VecDeque<SubscribeResponse>,
    time_gate: &mut TimeGate,
) -> Option<mpsc::Permit<'a, Result<SubscribeResponse, Status>>> {
    match tx.try_reserve() {
        Ok(permit) => return Some(permit),
        Err(mpsc::error::TrySendError::Closed(())) => return None,
        Err(mpsc::error::TrySendError::Full(())) => {}
    }
    if let Ok(permit) = tokio::time::timeout(PAUSE_AFTER, tx.reserve()).await {
        return permit.ok();
    }
    set_paused(consumer, stats, true);
    let permit = loop {
        tokio::select! {
            biased;
            permit = tx.reserve() => break permit.ok(),
            message = consumer.recv() => {
                if let Ok(message) = message {
                    if time_gate.admits(&message) {
                        held.push_back(delivery(&message));
                        stats.held.store(held.len(), Ordering::SeqCst);
                    }
                }
            }
        }
    };
    set_paused(consumer, stats, false);
    permit
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
    open: HashSet<(String, i32)>,
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

/// The status that ends a stream for a consumer error, if it is fatal.
fn fatal(error: &KafkaError) -> Option<Status> {
    use rdkafka::error::RDKafkaErrorCode as C;
    match error.rdkafka_error_code() {
        Some(C::UnknownTopicOrPartition | C::UnknownTopic) => Some(Status::not_found(format!(
            "a subscribed topic no longer exists ({error})"
        ))),
        Some(C::TopicAuthorizationFailed | C::GroupAuthorizationFailed) => Some(
            Status::permission_denied(format!("Kafka denied access ({error})")),
        ),
        Some(C::Fatal) => Some(Status::unavailable(format!(
            "the Kafka consumer failed ({error}); resubscribe"
        ))),
        _ => None,
    }
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
            stats.paused.store(pause, Ordering::SeqCst);
            if pause {
                stats.pauses.fetch_add(1, Ordering::SeqCst);
            }
        }
        Err(error) => tracing::warn!(%error, pause, "cannot pause or resume the consumer"),
    }
}

/// The stream a client reads: the channel's deliveries, each of whose offset
/// is stored for commit (AUTO with a group) as it is handed to gRPC.
pub struct DeliveryStream {
    /// Deliveries from the subscription task.
    inner: ReceiverStream<Result<SubscribeResponse, Status>>,
    /// The consumer to store offsets in; `None` when nothing is committed.
    /// Weak: the task owns the consumer and closes it.
    consumer: Option<Weak<SubscriptionConsumer>>,
}

impl DeliveryStream {
    /// Streams `rx`, storing offsets in `consumer` when given.
    pub fn new(
        rx: mpsc::Receiver<Result<SubscribeResponse, Status>>,
        consumer: Option<Weak<SubscriptionConsumer>>,
    ) -> Self {
        Self {
            inner: ReceiverStream::new(rx),
            consumer,
        }
    }
}

impl Stream for DeliveryStream {
    type Item = Result<SubscribeResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(Pin::new(&mut self.inner).poll_next(cx));
        if let (
            Some(Ok(SubscribeResponse {
                kind: Some(Kind::Delivery(delivery)),
            })),
            Some(consumer),
        ) = (&item, &self.consumer)
        {
            if let Some(consumer) = consumer.upgrade() {
                if let Err(error) =
                    consumer.store_offset(&delivery.topic, delivery.partition, delivery.offset)
                {
                    tracing::warn!(%error, topic = delivery.topic, "cannot store an offset");
                }
            }
        }
        Poll::Ready(item)
    }
}
