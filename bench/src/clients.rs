//! The load generator's clients and events: the direct librdkafka producer
//! (the baseline), connections to the gateway, and the events both sides
//! send, built the same way so that both move the same bytes.

use std::time::Duration;

use eventgateway::record::{event_to_record, OutgoingRecord};
use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::{
    event::Data, AckMode, Event, PublishEventRequest, StartFrom, SubscribeRequest,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use rdkafka::ClientConfig;
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, ClientTlsConfig};

/// How long the gateway may take to report SERVING.
const STARTUP: Duration = Duration::from_secs(60);

/// The benchmark's event: a binary payload of `size` bytes. `id` empty
/// lets the gateway fill it.
pub(crate) fn event(size: usize, id: String) -> Event {
    Event {
        id,
        r#type: "bench.event".into(),
        source: "/gateway-bench".into(),
        data: Some(Data::Binary(vec![b'x'; size])),
        ..Event::default()
    }
}

/// The record a direct client writes for event `index` (keyed by its index):
/// the same record the gateway writes for the same event.
pub(crate) fn direct_record(index: u64, size: usize) -> OutgoingRecord {
    let key = index.to_string();
    event_to_record(&key, event(size, uuid::Uuid::now_v7().to_string()))
}

/// A small record keyed `warm-up`, which no tally counts.
pub(crate) fn warm_up_record() -> OutgoingRecord {
    event_to_record(WARM_UP, event(16, uuid::Uuid::now_v7().to_string()))
}

/// The PublishEvent request of event `index` (keyed by its index) with a
/// JSON payload of about `size` bytes, compressible as business events are:
/// repeated field names, ids that differ in a few digits, a few words.
pub(crate) fn json_publish_request(topic: &str, index: u64, size: usize) -> PublishEventRequest {
    let mut items = Vec::new();
    let mut body = serde_json::json!({});
    while body.to_string().len() < size {
        let n = items.len() as u64;
        items.push(serde_json::json!({
            "sku": format!("sku-{:06}", (index * 7 + n) % 1_000_000),
            "name": "Organic green tea, 20 bags",
            "quantity": n % 5 + 1,
            "unit_price": "4.95",
            "currency": "EUR",
        }));
        body = serde_json::json!({
            "order_id": format!("order-{index:010}"),
            "customer": {
                "id": format!("user-{:08}", index % 100_000),
                "email": format!("user-{:08}@example.com", index % 100_000),
                "country": "DE",
            },
            "status": "placed",
            "items": items,
        });
    }
    let data = eventgateway::json::json_to_struct(body.to_string().as_bytes())
        .map(Data::Json)
        .expect("a JSON object");
    PublishEventRequest {
        topic: topic.to_owned(),
        key: index.to_string(),
        event: Some(Event {
            data: Some(data),
            ..event(0, String::new())
        }),
    }
}

/// The PublishEvent request of event `index` (keyed by its index).
pub(crate) fn publish_request(topic: &str, index: u64, size: usize) -> PublishEventRequest {
    PublishEventRequest {
        topic: topic.to_owned(),
        key: index.to_string(),
        event: Some(event(size, String::new())),
    }
}

/// Writes `events` records of `size` bytes to `topic` with the direct
/// producer, each stored before the next.
pub(crate) async fn fill(
    producer: &FutureProducer,
    topic: &str,
    events: u64,
    size: usize,
) -> Result<(), String> {
    for index in 0..events {
        let stored = enqueue(producer, topic, &direct_record(index, size)).await?;
        if !matches!(stored.await, Ok(Ok(_))) {
            return Err("the direct producer cannot write to the broker".into());
        }
    }
    Ok(())
}

/// An ephemeral ACK_MODE_AUTO subscription to `topic` from `start`.
pub(crate) fn subscribe_request(topic: &str, start: StartFrom) -> SubscribeRequest {
    SubscribeRequest {
        topics: vec![topic.to_owned()],
        start_from: start as i32,
        ack_mode: AckMode::Auto as i32,
        ..SubscribeRequest::default()
    }
}

/// The baseline producer: what a service embedding librdkafka would run,
/// with the gateway producer's guarantees (acks=all, idempotence).
pub(crate) fn direct_producer(brokers: &str, linger_ms: u64) -> Result<FutureProducer, String> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", linger_ms.to_string())
        .set("compression.type", "none")
        .create()
        .map_err(|error| format!("cannot create the direct producer: {error}"))
}

/// Enqueues one record, waiting for room in librdkafka's queue when full.
pub(crate) async fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    record: &OutgoingRecord,
) -> Result<DeliveryFuture, String> {
    let mut future_record = gateway::future_record(topic, record);
    loop {
        match producer.send_result(future_record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                future_record = back;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err((error, _)) => return Err(format!("direct produce failed: {error}")),
        }
    }
}

/// A connection to a gateway, with the call credentials it needs.
pub(crate) type GatewayChannel = InterceptedService<Channel, Credentials>;

/// Adds `authorization: Bearer <token>` to every call, when there is one.
#[derive(Clone)]
pub(crate) struct Credentials(Option<MetadataValue<Ascii>>);

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Where a gateway listens and how to reach it: plaintext, or TLS with a
/// bearer token.
#[derive(Clone)]
pub(crate) struct Target {
    /// `http://` or `https://` URL.
    pub(crate) url: String,
    tls: Option<ClientTlsConfig>,
    credentials: Credentials,
}

impl Target {
    /// A plaintext gateway on 127.0.0.1:`port`.
    pub(crate) fn plain(port: u16) -> Self {
        Self {
            url: format!("http://127.0.0.1:{port}"),
            tls: None,
            credentials: Credentials(None),
        }
    }

    /// A gateway on localhost:`port` speaking TLS with a certificate of the
    /// CA `ca_pem`, taking `token`.
    pub(crate) fn tls(port: u16, ca_pem: &str, token: &str) -> Result<Self, String> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
            .domain_name("localhost");
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| "the token is not a header value".to_owned())?;
        Ok(Self {
            url: format!("https://127.0.0.1:{port}"),
            tls: Some(tls),
            credentials: Credentials(Some(value)),
        })
    }

    /// A new connection.
    async fn channel(&self) -> Result<Channel, String> {
        let mut endpoint = Channel::from_shared(self.url.clone()).expect("a valid URL");
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|error| format!("TLS settings: {error}"))?;
        }
        endpoint
            .connect()
            .await
            .map_err(|error| format!("cannot connect to the gateway at {}: {error}", self.url))
    }

    /// Waits until the gateway reports SERVING.
    pub(crate) async fn wait_serving(&self) -> Result<(), String> {
        let until = Instant::now() + STARTUP;
        loop {
            if let Ok(channel) = self.channel().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                let status = health
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                    .map(|r| r.into_inner().status);
                if status.ok() == Some(tonic_health::ServingStatus::Serving as i32) {
                    return Ok(());
                }
            }
            if Instant::now() > until {
                return Err(format!(
                    "the gateway at {} did not report SERVING within {STARTUP:?}",
                    self.url
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `count` separate connections to the gateway.
    pub(crate) async fn connect(&self, count: usize) -> Result<Vec<GatewayChannel>, String> {
        let mut channels = Vec::with_capacity(count);
        for _ in 0..count {
            let channel = self.channel().await?;
            channels.push(InterceptedService::new(channel, self.credentials.clone()));
        }
        Ok(channels)
    }
}

/// Publishes one small event (key `warm-up`) to `topic` through the gateway:
/// connections, metadata and the gateway's topic cache are then warm.
pub(crate) async fn warm_up(channel: &GatewayChannel, topic: &str) -> Result<(), String> {
    let mut client = EventGatewayClient::new(channel.clone());
    let request = PublishEventRequest {
        topic: topic.to_owned(),
        key: WARM_UP.into(),
        event: Some(event(16, String::new())),
    };
    client
        .publish_event(request)
        .await
        .map(drop)
        .map_err(|status| format!("warm-up publish to {topic} failed: {status}"))
}

/// The key of warm-up events, which no tally counts.
pub(crate) const WARM_UP: &str = "warm-up";
