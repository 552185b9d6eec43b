//! Assembling and running the gateway: Kafka clients, the gRPC server with
//! its tower layers (timeout, concurrency limit with load shedding), health,
//! reflection, and the shutdown sequence.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use eventgateway::v1::event_gateway_server::EventGatewayServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;

use crate::config::Config;
use crate::health;
use crate::kafka::embedded::EmbeddedKafka;
use crate::kafka::producer::Publisher;
use crate::kafka::subscription::fanout::FanOut;
use crate::kafka::subscription::ManualAcks;
use crate::kafka::subscription::SubscriptionStats;
use crate::kafka::topics::{Creation, Topics};
use crate::kafka::{blocking, is_secret};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::service::GatewayService;
use crate::shutdown::{self, Trigger};

/// Room in a request for the protobuf framing around the payload.
const REQUEST_OVERHEAD_BYTES: usize = 64 * 1024;

/// A gateway serving on a bound listener.
pub struct RunningGateway {
    /// The address it listens on.
    addr: SocketAddr,
    /// Starts the shutdown of every task.
    trigger: Trigger,
    /// Health statuses, set NOT_SERVING when shutdown begins.
    reporter: HealthReporter,
    /// The gRPC server task.
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    /// Live subscriptions, for inspection.
    subscriptions: Registry,
    /// Live tails, closed before the Kafka clients go.
    fanout: FanOut,
    /// The producer, flushed at shutdown.
    publisher: Publisher,
    /// The shutdown's time limit.
    grace: std::time::Duration,
    /// The embedded Kafka, when no brokers were configured.
    embedded: Option<EmbeddedKafka>,
    /// The metrics endpoint's task and address, when it is on.
    metrics: Option<(JoinHandle<()>, SocketAddr)>,
}

/// Starts the gateway on `listener` with `config`.
pub async fn start(config: Config, listener: TcpListener) -> anyhow::Result<RunningGateway> {
    let addr = listener.local_addr()?;
    let embedded = match &config.brokers {
        Some(_) => None,
        None => Some(EmbeddedKafka::start().context("cannot start the embedded Kafka")?),
    };
    let brokers: String = match (&config.brokers, &embedded) {
        (Some(brokers), _) => brokers.clone(),
        (None, Some(embedded)) => embedded.bootstrap_servers().to_owned(),
        (None, None) => unreachable!("embedded Kafka starts when no brokers are set"),
    };
    if embedded.is_some() {
        tracing::warn!(
            bootstrap_servers = %brokers,
            "KAFKA_BROKERS is not set: using an EMBEDDED IN-MEMORY Kafka. \
             DEVELOPMENT ONLY: every event is lost when the gateway stops"
        );
    }
    let shown: Vec<String> = config
        .kafka_properties
        .iter()
        .map(|(k, v)| {
            if is_secret(k) {
                format!("{k}=***")
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    tracing::info!(%brokers, properties = ?shown, "connecting to Kafka");

    let publisher = Publisher::new(
        &brokers,
        &config.kafka_properties,
        config.delivery_timeout,
        embedded.is_some(),
    )
    .context("cannot create the Kafka producer")?;
    let creation = if embedded.is_some() {
        Creation::OnMetadata
    } else if config.create_topics {
        Creation::admin(
            &brokers,
            &config.kafka_properties,
            config.topic_partitions,
            config.topic_replication,
        )
        .context("cannot create the Kafka admin client")?
    } else {
        Creation::Refuse
    };
    let topics = Topics::new(publisher.producer().clone(), creation);

    let (trigger, shutdown) = shutdown::channel();
    let (kafka_up, kafka_up_rx) = tokio::sync::watch::channel(false);
    let (reporter, health_service) = tonic_health::server::health_reporter();
    health::report(&reporter, ServingStatus::NotServing).await;
    tokio::spawn(health::watch_kafka(
        publisher.clone(),
        reporter.clone(),
        kafka_up,
        config.health_interval,
        shutdown.clone(),
    ));

    let subscriptions = Registry::default();
    let metrics = Metrics::default();
    let metrics_endpoint = eventgateway::metrics::start(config.metrics_addr, metrics.registry())
        .await
        .context("cannot serve metrics on --metrics-addr")?;
    let brokers: Arc<str> = brokers.into();
    let properties: Arc<[(String, String)]> = config.kafka_properties.clone().into();
    let fanout = FanOut::new(
        brokers.clone(),
        properties.clone(),
        metrics.clone(),
        shutdown.clone(),
    );
    let service = GatewayService {
        publisher: publisher.clone(),
        topics,
        brokers,
        properties,
        max_payload_bytes: config.max_payload_bytes,
        request_timeout: config.request_timeout,
        subscription_buffer: config.subscription_buffer,
        kafka_up: kafka_up_rx,
        subscriptions: subscriptions.clone(),
        metrics,
        manual_defaults: ManualAcks {
            ack_timeout: config.ack_timeout,
            max_unacked: config.max_unacked as usize,
        },
        shutdown: shutdown.clone(),
        fanout: fanout.clone(),
    };
    let max_message = (config.max_payload_bytes.saturating_mul(4))
        .max(4 * 1024 * 1024)
        .saturating_add(REQUEST_OVERHEAD_BYTES);
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(eventgateway::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(eventgateway::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let layers = ServiceBuilder::new()
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(
            config.max_concurrent_requests,
        ));
    let router = Server::builder()
        .timeout(config.request_timeout)
        .layer(layers)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(EventGatewayServer::new(service).max_decoding_message_size(max_message));
    // Answers leave at once: Nagle's algorithm would hold small responses
    // back for the client's delayed ACK.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut stop = shutdown.clone();
    let server = tokio::spawn(
        router.serve_with_incoming_shutdown(incoming, async move { stop.started().await }),
    );
    tracing::info!(%addr, "gateway listening");
    Ok(RunningGateway {
        addr,
        trigger,
        reporter,
        server,
        subscriptions,
        fanout,
        publisher,
        grace: config.shutdown_grace,
        embedded,
        metrics: metrics_endpoint,
    })
}

/// Runs the gateway until `signal` resolves or the server fails, then shuts
/// it down.
pub async fn run(
    config: Config,
    listener: TcpListener,
    signal: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut gateway = start(config, listener).await?;
    tokio::select! {
        () = signal => gateway.shutdown().await,
        result = &mut gateway.server => {
            result.context("the gRPC server task failed")?.context("the gRPC server failed")?;
            anyhow::bail!("the gRPC server stopped on its own")
        }
    }
}

impl RunningGateway {
    /// The address the gateway listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where metrics are served, when they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// The flow-control counters of a live subscription.
    pub fn subscription(&self, id: &str) -> Option<Arc<SubscriptionStats>> {
        self.subscriptions.stats(id)
    }

    /// How many live tails (consumers shared by ephemeral streams from the
    /// latest event) are open.
    pub fn live_tails(&self) -> usize {
        self.fanout.running()
    }

    /// Shuts down: NOT_SERVING, stop accepting, end streams with
    /// UNAVAILABLE, let in-flight calls finish, flush the producer.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        health::report(&self.reporter, ServingStatus::NotServing).await;
        self.trigger.fire();
        match tokio::time::timeout(self.grace, &mut self.server).await {
            Ok(result) => result
                .context("the gRPC server task failed")?
                .context("the gRPC server failed")?,
            Err(_) => {
                tracing::warn!(grace = ?self.grace, "calls still open after the grace period; closing them");
                self.server.abort();
            }
        }
        // Streams ended; their consumers now commit what was acknowledged and
        // leave their groups. Wait for that (within the grace period) before
        // the producer flush and, with the embedded Kafka, before it stops.
        let closing = async {
            while !self.subscriptions.is_empty() || self.fanout.running() > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(self.grace, closing).await.is_err() {
            tracing::warn!(grace = ?self.grace, "subscriptions still closing after the grace period");
        }
        let publisher = self.publisher.clone();
        let grace = self.grace;
        match blocking(move || publisher.flush(grace)).await {
            Ok(()) => tracing::info!("producer flushed"),
            Err(error) => tracing::error!(%error, "producer flush incomplete"),
        }
        if let Some((task, _)) = self.metrics.take() {
            task.abort();
        }
        // Every Kafka client goes before the embedded cluster they talk to:
        // a client destroyed after its cluster can block for good.
        let RunningGateway {
            publisher,
            embedded,
            ..
        } = self;
        let _ = tokio::task::spawn_blocking(move || drop(publisher)).await;
        drop(embedded);
        tracing::info!("gateway stopped");
        Ok(())
    }
}
