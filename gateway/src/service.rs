//! The `eventgateway.v1.EventGateway` gRPC service: where a published event
//! goes (validate, check the topic, produce) and where a subscription comes
//! from (validate, create its consumer, stream).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use eventgateway::record::event_to_record;
use eventgateway::trace_context;
use eventgateway::v1::event_gateway_server::EventGateway;
use eventgateway::v1::{
    subscribe_response::Kind, AcknowledgeRequest, AcknowledgeResponse, PublishEventRequest,
    PublishEventResponse, PublishEventsRequest, SubscribeRequest, SubscribeResponse, Subscribed,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::Stream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::error::Error;
use crate::kafka::producer::Publisher;
use crate::kafka::subscription::acks::parse_ack_id;
use crate::kafka::subscription::fanout::{FanOut, Subscriber};
use crate::kafka::subscription::stream::DeliveryStream;
use crate::kafka::subscription::{self, task, ManualAcks, SubscriptionStats};
use crate::kafka::{blocking, topics::Topics};
use crate::metrics::Metrics;
use crate::publish_stream::{self, PublishEventsStream};
use crate::registry::{Registry, SubscriptionHandle};
use crate::shutdown::Shutdown;
use crate::spans;
use crate::validate;

/// Part of a client's deadline kept back so that the gateway answers
/// DEADLINE_EXCEEDED itself, before the transport gives up on the call.
const DEADLINE_MARGIN: Duration = Duration::from_millis(20);
/// Acknowledge calls queued for one subscription task before the next waits.
const ACK_BATCHES: usize = 64;

/// The state every call shares.
#[derive(Clone)]
pub struct GatewayService {
    /// The shared producer.
    pub publisher: Publisher,
    /// Topic existence checks.
    pub topics: Topics,
    /// Kafka bootstrap servers, for subscription consumers.
    pub brokers: Arc<str>,
    /// Operator's librdkafka properties, for subscription consumers.
    pub properties: Arc<[(String, String)]>,
    /// Largest payload accepted.
    pub max_payload_bytes: usize,
    /// Upper bound on a unary call.
    pub request_timeout: Duration,
    /// Deliveries buffered per subscription.
    pub subscription_buffer: usize,
    /// Whether Kafka answered the last health probe.
    pub kafka_up: watch::Receiver<bool>,
    /// Live subscriptions.
    pub subscriptions: Registry,
    /// Counters and histograms served on /metrics.
    pub metrics: Metrics,
    /// What MANUAL subscriptions get unless they ask otherwise.
    pub manual_defaults: ManualAcks,
    /// Ends streams when the gateway shuts down.
    pub shutdown: Shutdown,
    /// Live tails shared by ephemeral streams from the latest event.
    pub fanout: FanOut,
}

/// The receiving end of a subscription's channel.
type SubscriptionReceiver = mpsc::Receiver<Result<SubscribeResponse, Status>>;

/// The stream type of Subscribe.
pub type SubscribeStream = Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EventGateway for GatewayService {
    async fn publish_event(
        &self,
        request: Request<PublishEventRequest>,
    ) -> Result<Response<PublishEventResponse>, Status> {
        let deadline = self.deadline(request.metadata());
        let span = spans::rpc_server("PublishEvent", request.metadata());
        let caller = trace_context::from_metadata(request.metadata());
        let outcome = self
            .publish_recorded(request.into_inner(), deadline, caller)
            .instrument(span)
            .await;
        Ok(Response::new(outcome?))
    }

    type PublishEventsStream = PublishEventsStream;

    async fn publish_events(
        &self,
        request: Request<Streaming<PublishEventsRequest>>,
    ) -> Result<Response<Self::PublishEventsStream>, Status> {
        Ok(Response::new(publish_stream::serve(self.clone(), request)))
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let request = request.into_inner();
        let stream = self.open_subscription(request).await.inspect_err(|error| {
            tracing::info!(%error, code = ?error.code(), "subscribe refused");
        })?;
        Ok(Response::new(stream))
    }

    async fn acknowledge(
        &self,
        request: Request<AcknowledgeRequest>,
    ) -> Result<Response<AcknowledgeResponse>, Status> {
        let request = request.into_inner();
        self.acknowledge_deliveries(request).await.inspect_err(
            |error| tracing::info!(%error, code = ?error.code(), "acknowledge refused"),
        )?;
        Ok(Response::new(AcknowledgeResponse {}))
    }
}

impl GatewayService {
    /// When the call must be answered: the client's deadline (less a margin)
    /// or the gateway's request timeout, whichever comes first.
    pub fn deadline(&self, metadata: &MetadataMap) -> Instant {
        let limit = grpc_timeout(metadata)
            .map(|timeout| timeout.saturating_sub(DEADLINE_MARGIN.min(timeout / 10)))
            .map_or(self.request_timeout, |t| t.min(self.request_timeout));
        Instant::now() + limit
    }

    fn check_ready(&self) -> Result<(), Error> {
        if self.shutdown.is_started() {
            return Err(Error::ShuttingDown);
        }
        if !*self.kafka_up.borrow() {
            return Err(Error::KafkaUnavailable(
                "the gateway cannot reach Kafka right now".into(),
            ));
        }
        Ok(())
    }

    /// Publishes one event, logging and counting the outcome.
    pub async fn publish_recorded(
        &self,
        request: PublishEventRequest,
        deadline: Instant,
        caller: opentelemetry::Context,
    ) -> Result<PublishEventResponse, Error> {
        let started = std::time::Instant::now();
        let topic_label = if validate::topic_name(&request.topic).is_ok() {
            request.topic.clone()
        } else {
            "(invalid)".to_owned()
        };
        tracing::debug!(topic = request.topic, "publish received");
        // Boxed: the publish state machine is large, and callers keep many
        // of these futures in flight (PublishEvents); they move a pointer.
        let outcome = Box::pin(self.publish(request, deadline, caller)).await;
        match &outcome {
            Ok(response) => tracing::debug!(
                partition = response.partition,
                offset = response.offset,
                "event stored"
            ),
            Err(error) => tracing::info!(%error, code = ?error.code(), "publish refused"),
        }
        let code = outcome
            .as_ref()
            .map_or_else(Error::code, |_| tonic::Code::Ok);
        self.metrics
            .published(&topic_label, code, started.elapsed());
        outcome
    }

    async fn publish(
        &self,
        mut request: PublishEventRequest,
        deadline: Instant,
        caller: opentelemetry::Context,
    ) -> Result<PublishEventResponse, Error> {
        validate::publish_request(&request, self.max_payload_bytes)?;
        self.check_ready()?;
        let mut event = request.event.take().unwrap_or_default();
        if event.id.is_empty() {
            let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
            event.id = uuid::Uuid::now_v7()
                .hyphenated()
                .encode_lower(&mut text)
                .to_owned();
        }
        let time = *event
            .time
            .get_or_insert_with(|| prost_types::Timestamp::from(SystemTime::now()));
        tokio::time::timeout_at(deadline, self.topics.ensure(&request.topic))
            .await
            .map_err(|_| Error::DeadlineExceeded)??;
        // The record carries the send's trace context to its consumers.
        let produce = spans::produce(&request.topic);
        let context = spans::downstream_context(&produce, &caller);
        if let Some(trace_id) = trace_context::trace_id(&context) {
            produce.record("trace_id", trace_id.as_str());
            trace_context::into_attributes(&context, &mut event.attributes);
        }
        let event_id = event.id.clone();
        let record = event_to_record(&request.key, event);
        let mut kafka_up = self.kafka_up.clone();
        let send = self
            .publisher
            .send(&request.topic, &record, Some(deadline))
            .instrument(produce.clone());
        let stored = tokio::select! {
            stored = send => stored,
            // Kafka stopped answering meanwhile: say so now rather than at
            // the deadline. The producer keeps trying; a retry with the same
            // event id lets consumers drop a duplicate.
            Ok(_) = kafka_up.wait_for(|up| !up) => Err(Error::KafkaUnavailable(
                "Kafka stopped answering before it confirmed the event; it may or may not have been stored".into(),
            )),
        }
        .inspect(|stored| {
            produce.record("messaging.destination.partition.id", stored.partition);
            produce.record("messaging.kafka.offset", stored.offset);
        })
        .inspect_err(|error| {
            if matches!(error, Error::TopicNotFound(_)) {
                self.topics.forget(&request.topic);
            }
        })?;
        Ok(PublishEventResponse {
            event_id,
            topic: request.topic,
            partition: stored.partition,
            offset: stored.offset,
            timestamp: Some(time),
        })
    }

    async fn acknowledge_deliveries(&self, request: AcknowledgeRequest) -> Result<(), Error> {
        if request.subscription_id.is_empty() {
            return Err(Error::InvalidArgument(
                "subscription_id is empty: pass the id from the stream's Subscribed message".into(),
            ));
        }
        let acks = request
            .ack_ids
            .iter()
            .map(|id| parse_ack_id(id))
            .collect::<Result<Vec<_>, _>>()?;
        let sender = self.subscriptions.acks(&request.subscription_id)?;
        if acks.is_empty() {
            return Ok(());
        }
        self.metrics.acked(acks.len());
        sender
            .send(acks)
            .await
            .map_err(|_| Error::SubscriptionNotFound(request.subscription_id))
    }

    async fn open_subscription(&self, request: SubscribeRequest) -> Result<SubscribeStream, Error> {
        let spec = validate::subscribe_request(&request, self.manual_defaults)?;
        self.check_ready()?;
        let mut partitions = HashMap::new();
        for topic in &spec.topics {
            partitions.insert(topic.clone(), self.topics.partitions(topic).await?);
        }
        if let subscription::StartPosition::Offsets(offsets) = &spec.start {
            for (topic, partition) in offsets.keys() {
                if !partitions[topic].contains(partition) {
                    return Err(Error::InvalidArgument(format!(
                        "start_offsets names partition {partition} of topic {topic:?}, which has partitions {:?}",
                        partitions[topic]
                    )));
                }
            }
        }
        if FanOut::shares(&spec) {
            return self.join_tail(spec, partitions).await;
        }
        let id = uuid::Uuid::now_v7().to_string();
        let (rebalances_tx, rebalances) = mpsc::unbounded_channel();
        let consumer = {
            let (brokers, properties, spec, id, metrics) = (
                self.brokers.clone(),
                self.properties.clone(),
                spec.clone(),
                id.clone(),
                self.metrics.clone(),
            );
            blocking(move || {
                subscription::open(
                    &brokers,
                    &properties,
                    &spec,
                    &partitions,
                    &id,
                    rebalances_tx,
                    metrics,
                )
            })
            .await?
        };
        let consumer = Arc::new(consumer);
        let (tx, rx) = self.subscription_channel(&id);
        let stats = Arc::new(SubscriptionStats::default());
        let (acks_tx, acks) = mpsc::channel(ACK_BATCHES);
        self.subscriptions.insert(
            &id,
            SubscriptionHandle {
                stats: stats.clone(),
                acks: spec.manual.map(|_| acks_tx),
            },
        );
        // AUTO with a group: offsets are stored as deliveries reach gRPC.
        let store_offsets =
            (spec.group.is_some() && spec.manual.is_none()).then(|| Arc::downgrade(&consumer));
        let span = tracing::info_span!(
            "EventGateway.Subscribe",
            subscription = %id,
            topics = ?spec.topics,
            group = spec.group.as_deref().unwrap_or(""),
            manual = spec.manual.is_some()
        );
        let subscriptions = self.subscriptions.clone();
        let shutdown = self.shutdown.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(
            async move {
                tracing::info!("subscription started");
                metrics.subscriptions(1);
                let inputs = task::Inputs {
                    acks,
                    rebalances,
                    metrics: metrics.clone(),
                };
                task::run(consumer, &spec, tx, stats, shutdown, inputs).await;
                subscriptions.remove(&id);
                metrics.subscriptions(-1);
                tracing::info!("subscription ended");
            }
            .instrument(span),
        );
        Ok(Box::pin(DeliveryStream::new(rx, store_offsets)))
    }
}

impl GatewayService {
    /// A new subscription's channel, with its `subscribed` message first.
    fn subscription_channel(&self, id: &str) -> (task::Deliveries, SubscriptionReceiver) {
        let (tx, rx) = mpsc::channel(self.subscription_buffer);
        let subscribed = SubscribeResponse {
            kind: Some(Kind::Subscribed(Subscribed {
                subscription_id: id.to_owned(),
            })),
        };
        // The channel is new and has room.
        let _ = tx.try_send(Ok(subscribed));
        (tx, rx)
    }

    /// An ephemeral AUTO stream from the latest event: one more subscriber
    /// of the live tail of its topics.
    async fn join_tail(
        &self,
        spec: subscription::SubscriptionSpec,
        partitions: HashMap<String, Vec<i32>>,
    ) -> Result<SubscribeStream, Error> {
        let id = uuid::Uuid::now_v7().to_string();
        let (tx, rx) = self.subscription_channel(&id);
        let stats = Arc::new(SubscriptionStats::default());
        self.fanout
            .join(
                &spec,
                partitions,
                Subscriber {
                    tx,
                    stats: stats.clone(),
                },
            )
            .await?;
        self.subscriptions
            .insert(&id, SubscriptionHandle { stats, acks: None });
        self.metrics.subscriptions(1);
        tracing::info!(subscription = %id, topics = ?spec.topics, "subscription started (live tail)");
        let (subscriptions, metrics) = (self.subscriptions.clone(), self.metrics.clone());
        Ok(Box::pin(DeliveryStream::new(rx, None).on_end(move || {
            subscriptions.remove(&id);
            metrics.subscriptions(-1);
            tracing::info!(subscription = %id, "subscription ended");
        })))
    }
}

/// The client's deadline from the `grpc-timeout` header, if it sent one.
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 {
        return None;
    }
    let (amount, unit) = value.split_at(value.len() - 1);
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_headers_parse_in_every_unit() {
        let mut metadata = MetadataMap::new();
        for (value, expected) in [
            ("2H", Duration::from_secs(7200)),
            ("3M", Duration::from_secs(180)),
            ("5S", Duration::from_secs(5)),
            ("250m", Duration::from_millis(250)),
            ("7u", Duration::from_micros(7)),
            ("9n", Duration::from_nanos(9)),
        ] {
            metadata.insert("grpc-timeout", value.parse().unwrap());
            assert_eq!(grpc_timeout(&metadata), Some(expected), "{value}");
        }
        metadata.insert("grpc-timeout", "10x".parse().unwrap());
        assert_eq!(grpc_timeout(&metadata), None);
    }
}
