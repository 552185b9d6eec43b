//! Test harness: a real Kafka-protocol broker (tansu) on a free port, the
//! gateway on port 0 in this process, clients, and helpers to poll with a
//! bound instead of sleeping.
#![allow(dead_code, unreachable_pub)]

#[path = "../../src/bin/gateway-bench/tansu.rs"]
mod tansu;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::{
    event::Data, subscribe_response::Kind, Delivery, Event, PublishEventRequest,
    PublishEventResponse, SubscribeRequest, SubscribeResponse,
};
use gateway::{Config, RunningGateway};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use tonic::transport::Channel;
use tonic::Streaming;

/// Longest a test waits for a condition before failing.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The grpcurl binary: `GRPCURL` (set by scripts/test.sh) or PATH.
pub fn grpcurl() -> PathBuf {
    std::env::var_os("GRPCURL").map_or_else(|| PathBuf::from("grpcurl"), PathBuf::from)
}

/// A gateway binary process on 127.0.0.1:`port` in front of `brokers`:
/// quick health probes, metrics off, stderr piped into the returned channel
/// line by line. `env` and `args` add to (and override) that.
pub fn gateway_process(
    binary: &std::path::Path,
    port: u16,
    brokers: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(binary)
        .env("GATEWAY_ADDR", format!("127.0.0.1:{port}"))
        .env("KAFKA_BROKERS", brokers)
        .env("HEALTH_INTERVAL", "200ms")
        .env("METRICS_ADDR", "0")
        .env("NO_COLOR", "1")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .envs(env.iter().copied())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gateway binary starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

pub use tansu::free_port;

/// A real Kafka-protocol broker process.
pub struct Broker {
    port: u16,
    storage: String,
    child: Option<Child>,
    /// The SQLite file of a durable broker, removed when it is dropped.
    file: Option<PathBuf>,
}

impl Broker {
    /// Starts a broker with in-memory storage on a free port.
    pub async fn start() -> Self {
        Self::start_with_storage("memory://tansu/".into()).await
    }

    /// Starts a broker whose data survives a restart (SQLite in a temp file).
    pub async fn start_durable() -> Self {
        let file = std::env::temp_dir().join(format!(
            "event-gateway-{}.db",
            uuid::Uuid::now_v7().simple()
        ));
        let mut broker = Self::start_with_storage(format!("sqlite:///{}", file.display())).await;
        broker.file = Some(file);
        broker
    }

    /// Starts a broker with the given storage engine URL.
    pub async fn start_with_storage(storage: String) -> Self {
        let mut broker = Broker {
            port: free_port(),
            storage,
            child: None,
            file: None,
        };
        broker.restart().await;
        broker
    }

    /// `host:port` to bootstrap from.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker (again) on the same port and waits until it accepts
    /// connections.
    pub async fn restart(&mut self) {
        self.kill();
        let child = tansu::spawn(self.port, &self.storage).expect("tansu starts");
        self.child = Some(child);
        let port = self.port;
        eventually("the broker accepts connections", || async {
            tansu::accepts(port)
        })
        .await;
    }

    /// Creates a topic with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .create()
            .expect("admin client");
        let results = admin
            .create_topics(
                [&NewTopic::new(
                    topic,
                    partitions,
                    TopicReplication::Fixed(1),
                )],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("create_topics answers");
        for result in results {
            result.expect("topic created");
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if let Some(file) = &self.file {
            for suffix in ["", "-shm", "-wal"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }
}

/// A unique topic name for one test.
pub fn topic(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// The configuration tests start from: quick health probes.
pub fn config(brokers: Option<String>) -> Config {
    let mut config = Config::for_brokers(brokers);
    config.health_interval = Duration::from_millis(200);
    config.shutdown_grace = Duration::from_secs(5);
    // Metrics on a free port: tests run side by side.
    config.metrics_addr = eventgateway::metrics::MetricsAddr(Some("127.0.0.1:0".parse().unwrap()));
    config
}

/// Starts the gateway on a free port and waits until it reports SERVING.
pub async fn gateway(config: Config) -> RunningGateway {
    if std::env::var_os("RUST_LOG").is_some() {
        gateway::telemetry::init("gateway-test");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = gateway::start(config, listener)
        .await
        .expect("gateway starts");
    wait_serving(gateway.addr()).await;
    gateway
}

/// The usual start of a test: a broker, a fresh topic with `partitions`
/// partitions, a gateway on that broker and a client of it.
pub async fn fixture(
    prefix: &str,
    partitions: i32,
) -> (Broker, String, RunningGateway, EventGatewayClient<Channel>) {
    let broker = Broker::start().await;
    let topic = topic(prefix);
    broker.create_topic(&topic, partitions).await;
    let gateway = gateway(config(Some(broker.brokers()))).await;
    let client = client(gateway.addr()).await;
    (broker, topic, gateway, client)
}

/// A client of the gateway at `addr`.
pub async fn client(addr: SocketAddr) -> EventGatewayClient<Channel> {
    EventGatewayClient::connect(format!("http://{addr}"))
        .await
        .expect("connects to the gateway")
}

/// Health status of `service` ("" for the server).
pub async fn health(addr: SocketAddr, service: &str) -> Result<i32, tonic::Status> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    client
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
}

/// Waits until the gateway's health says SERVING.
pub async fn wait_serving(addr: SocketAddr) {
    eventually("the gateway reports SERVING", || async {
        health(addr, "").await.ok() == Some(tonic_health::ServingStatus::Serving as i32)
    })
    .await;
}

/// Polls `condition` until it holds; fails the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Scrapes the metrics at `addr` until they contain every line of
/// `expected`; fails the test, showing what is missing, after [`PATIENCE`].
pub async fn metrics_show(addr: SocketAddr, expected: &[String]) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = eventgateway::metrics::scrape(addr)
            .await
            .unwrap_or_default();
        let missing: Vec<&String> = expected
            .iter()
            .filter(|l| !text.contains(l.as_str()))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics lack {missing:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A JSON event with the given body.
pub fn json_event(body: serde_json::Value) -> Event {
    Event {
        r#type: "test.event".into(),
        source: "/tests".into(),
        data: eventgateway::json::json_to_struct(body.to_string().as_bytes()).map(Data::Json),
        ..Event::default()
    }
}

/// Publishes a JSON event and returns the gateway's answer.
pub async fn publish(
    client: &mut EventGatewayClient<Channel>,
    topic: &str,
    key: &str,
    body: serde_json::Value,
) -> PublishEventResponse {
    client
        .publish_event(PublishEventRequest {
            topic: topic.into(),
            key: key.into(),
            event: Some(json_event(body)),
        })
        .await
        .expect("publish succeeds")
        .into_inner()
}

/// Publishes events numbered `from..from + count` (body `{"n": i}`, key
/// `key-i`) and returns the next number.
pub async fn publish_numbered(
    client: &mut EventGatewayClient<Channel>,
    topic: &str,
    from: i64,
    count: i64,
) -> i64 {
    for i in from..from + count {
        publish(
            client,
            topic,
            &format!("key-{i}"),
            serde_json::json!({"n": i}),
        )
        .await;
    }
    from + count
}

/// Acknowledges deliveries of subscription `id`.
pub async fn ack(client: &mut EventGatewayClient<Channel>, id: &str, deliveries: &[&Delivery]) {
    client
        .acknowledge(eventgateway::v1::AcknowledgeRequest {
            subscription_id: id.into(),
            ack_ids: deliveries.iter().map(|d| d.ack_id.clone()).collect(),
        })
        .await
        .expect("acknowledge succeeds");
}

/// Opens a subscription and returns its id and stream.
pub async fn subscribe(
    client: &mut EventGatewayClient<Channel>,
    request: SubscribeRequest,
) -> (String, Streaming<SubscribeResponse>) {
    let mut stream = client
        .subscribe(request)
        .await
        .expect("subscribe succeeds")
        .into_inner();
    match stream
        .message()
        .await
        .expect("first message")
        .map(|m| m.kind)
    {
        Some(Some(Kind::Subscribed(subscribed))) => (subscribed.subscription_id, stream),
        other => panic!("expected Subscribed first, got {other:?}"),
    }
}

/// The next delivery of a stream, within [`PATIENCE`]; rebalance notices
/// on the way are skipped.
pub async fn next_delivery(stream: &mut Streaming<SubscribeResponse>) -> Delivery {
    loop {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("a delivery arrives in time")
            .expect("the stream is healthy")
            .expect("the stream is open");
        match message.kind {
            Some(Kind::Delivery(delivery)) => return delivery,
            Some(Kind::Rebalance(_)) => continue,
            other => panic!("expected a delivery, got {other:?}"),
        }
    }
}

/// An ephemeral subscription to `topic` from its earliest event.
pub fn from_earliest(topic: &str) -> SubscribeRequest {
    SubscribeRequest {
        topics: vec![topic.to_owned()],
        start_from: eventgateway::v1::StartFrom::Earliest as i32,
        ..SubscribeRequest::default()
    }
}

/// The `n` field of a delivery's JSON body (the tests number their events).
pub fn n(delivery: &Delivery) -> i64 {
    body(delivery)["n"].as_i64().expect("an event numbered n")
}

/// The JSON body of a delivery.
pub fn body(delivery: &Delivery) -> serde_json::Value {
    match delivery.event.as_ref().and_then(|e| e.data.as_ref()) {
        Some(Data::Json(object)) => {
            serde_json::from_slice(&eventgateway::json::struct_to_json(object)).unwrap()
        }
        other => panic!("expected a JSON payload, got {other:?}"),
    }
}
