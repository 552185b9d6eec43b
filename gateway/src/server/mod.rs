//! Assembling and running the gateway: the Kafka clients, publishing and
//! subscriptions, the gRPC server behind the edge's bounds, health,
//! reflection, and the shutdown sequence: this module composes the parts;
//! `security` loads what the listener asks of clients, `listener` builds
//! the gRPC server behind the edge's bounds, `running` is the running
//! gateway and its shutdown.

mod internal;
mod listener;
mod running;
mod security;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use eventgateway_runtime::shutdown::{self, Shutdown, Trigger};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::config::{Config, Settings};
use crate::grpc::{self, Gateway};
use crate::health::{self, Readiness};
use crate::kafka::embedded::EmbeddedKafka;
use crate::kafka::publisher::Publisher;
use crate::kafka::topics::{Creation, Topics};
use crate::kafka::writable::Writability;
use crate::kafka::Cluster;
use crate::metrics::Metrics;
use crate::publish::Publishing;
use crate::subscribe::{self, Subscriptions};

use self::listener::serve;
use self::security::{authentication, exposure_warnings, Reloading, Security};

/// A gateway serving on a bound listener.
pub struct RunningGateway {
    /// The address it listens on.
    addr: SocketAddr,
    /// Starts the shutdown of every task, and drains them.
    trigger: Trigger,
    /// Health statuses, set NOT_SERVING when shutdown begins.
    reporter: HealthReporter,
    /// The gRPC server task.
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    /// The subscriptions, for inspection.
    subscriptions: Subscriptions,
    /// The producer, flushed at shutdown.
    publisher: Publisher,
    /// The shutdown's time limit.
    grace: Duration,
    /// The embedded Kafka, when no brokers were configured.
    embedded: Option<EmbeddedKafka>,
    /// The metrics endpoint's task and address, when it is on.
    metrics: Option<(JoinHandle<()>, SocketAddr)>,
    /// The internal listener, when acks at any replica are on.
    internal: Option<internal::InternalListener>,
}

/// The Kafka cluster: the configured one, or the embedded cluster when
/// none is configured.
fn cluster(
    config: &Config,
    properties: &[(String, String)],
) -> anyhow::Result<(Cluster, Option<EmbeddedKafka>)> {
    let embedded = match &config.kafka.brokers {
        Some(_) => None,
        None => Some(EmbeddedKafka::start().context("cannot start the embedded Kafka")?),
    };
    let brokers = match (&config.kafka.brokers, &embedded) {
        (Some(brokers), _) => brokers.as_str(),
        (None, Some(embedded)) => embedded.bootstrap_servers(),
        (None, None) => unreachable!("the embedded Kafka starts when no brokers are set"),
    };
    if embedded.is_some() {
        tracing::warn!(
            bootstrap_servers = %brokers,
            "KAFKA_BROKERS is not set: using an EMBEDDED IN-MEMORY Kafka. \
             DEVELOPMENT ONLY: every event is lost when the gateway stops"
        );
    }
    let cluster = Cluster::new(brokers, properties);
    let (brokers, properties) = cluster.describe();
    tracing::info!(%brokers, ?properties, "connecting to Kafka");
    Ok((cluster, embedded))
}

/// What happens to a topic that does not exist.
fn creation(config: &Config, embedded: bool) -> Creation {
    if embedded {
        Creation::OnMetadata
    } else if config.kafka.create_topics {
        Creation::Admin {
            partitions: config.kafka.topic_partitions,
            replication: config.kafka.topic_replication,
        }
    } else {
        Creation::Refuse
    }
}

/// Replaces the producer each time it fails for good, until shutdown.
async fn replace_failed_producers(publisher: Publisher, metrics: Metrics, mut shutdown: Shutdown) {
    tokio::select! {
        () = publisher.producer().replace_failed(|| metrics.kafka().producer_replaced()) => {}
        () = shutdown.started() => {}
    }
}

/// Starts the gateway on `listener` with `config`.
pub async fn start(config: Config, listener: TcpListener) -> anyhow::Result<RunningGateway> {
    let settings = config
        .validate()
        .map_err(|message| anyhow::anyhow!("invalid configuration: {message}"))?;
    start_checked((config, settings), listener).await
}

/// Starts the gateway on `listener` with `config` and the settings its
/// check gave.
async fn start_checked(
    (config, settings): (Config, Settings),
    listener: TcpListener,
) -> anyhow::Result<RunningGateway> {
    let addr = listener.local_addr()?;
    let routed = internal::bind(&config, settings.route_keys).await?;
    let (cluster, embedded) = cluster(&config, &settings.kafka_properties)?;
    let publisher = Publisher::new(
        &cluster,
        config.kafka.delivery_timeout,
        embedded.is_some(),
        config.limits.max_payload_bytes,
        config.kafka.kafka_compression.as_str(),
    )
    .context("cannot create the Kafka producer")?;
    let metrics = Metrics::default();
    let admin = cluster
        .admin(embedded.is_some())
        .context("cannot create the Kafka admin client")?;
    let topics = Topics::new(
        admin.clone(),
        creation(&config, embedded.is_some()),
        metrics.clone(),
    );

    let (trigger, shutdown) = shutdown::channel();
    let (kafka_up, kafka_up_rx) = tokio::sync::watch::channel(false);
    let (reporter, health_service) = tonic_health::server::health_reporter();
    health::report(&reporter, ServingStatus::NotServing).await;
    let prober = health::Prober {
        client: admin.clone(),
        producer: publisher.producer().clone(),
        reporter: reporter.clone(),
        kafka_up,
        interval: config.kafka.health_interval,
        metrics: metrics.clone(),
    };
    shutdown.spawn(health::watch_kafka(prober, shutdown.clone()));
    shutdown.spawn(replace_failed_producers(
        publisher.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let readiness = Readiness::new(kafka_up_rx, shutdown.clone());

    let reloading = Reloading {
        config: &config,
        metrics: &metrics,
        shutdown: &shutdown,
    };
    let metrics_tls = reloading.metrics_tls()?;
    let metrics_endpoint = eventgateway_runtime::metrics::start(
        config.edge.metrics_addr,
        metrics.registry(),
        metrics_tls,
    )
    .await
    .context("cannot serve metrics on --metrics-addr")?;
    let publishing = Publishing::new(
        publisher.clone(),
        topics.clone(),
        Writability::new(admin),
        readiness.clone(),
    );
    let limits = subscribe::Limits {
        buffer: config.subscriptions.subscription_buffer,
        buffer_bytes: config.subscriptions.subscription_buffer_bytes,
        total_buffer_bytes: config.subscriptions.total_buffer_bytes,
        stall_timeout: config.subscriptions.stall_timeout,
        subscriptions: config.limits.max_subscriptions,
        consumers: config.limits.max_consumers,
        drain: config.shutdown.drain_timeout,
        commit_interval: config.subscriptions.commit_interval,
        group_protocol: config.kafka.group_protocol,
        revoke_grace: config.subscriptions.revoke_grace,
    };
    let subscriptions = Subscriptions::new(
        cluster,
        publisher.clone(),
        topics,
        readiness,
        metrics.clone(),
        shutdown.clone(),
        limits,
    )
    .routed(routed.as_ref().map(|(routing, _)| routing.clone()));
    let service = grpc::Settings {
        max_payload_bytes: config.limits.max_payload_bytes,
        request_timeout: config.limits.request_timeout,
        publish_idle_timeout: config.limits.publish_idle_timeout,
        ack_timeout: config.subscriptions.ack_timeout,
        max_unacked: config.subscriptions.max_unacked as usize,
        max_concurrent_requests: config.limits.max_concurrent_requests,
        max_publish_streams: config.limits.max_publish_streams,
    };
    let access = reloading.access(settings.policy);
    let gateway = Gateway::new(
        service,
        publishing,
        subscriptions.clone(),
        access.clone(),
        metrics.clone(),
        (
            shutdown.clone(),
            routed.as_ref().map(|(routing, _)| routing.clone()),
        ),
    );
    let internal = match routed {
        Some((routing, internal_listener)) => Some(internal::serve(
            &config,
            (internal_listener, internal::tls(&reloading)?),
            routing,
            gateway.clone(),
            (metrics.clone(), &shutdown),
        )?),
        None => None,
    };
    let security = Security {
        tls: reloading.tls()?,
        authentication: authentication(&config, &metrics, &shutdown).await?,
    };
    for warning in exposure_warnings(&config, addr) {
        tracing::warn!(%addr, "{warning}");
    }
    let server = serve(
        &config,
        listener,
        security,
        health_service,
        (gateway, access),
        metrics,
        shutdown,
    )?;
    tracing::info!(%addr, "gateway listening");
    Ok(RunningGateway {
        addr,
        trigger,
        reporter,
        server,
        subscriptions,
        publisher,
        grace: config.shutdown.shutdown_grace,
        embedded,
        metrics: metrics_endpoint,
        internal,
    })
}

/// Runs the gateway until `signal` resolves or the server fails, then shuts
/// it down.
pub(crate) async fn run(
    checked: (Config, Settings),
    listener: TcpListener,
    signal: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut gateway = start_checked(checked, listener).await?;
    tokio::select! {
        () = signal => gateway.shutdown().await,
        result = &mut gateway.server => {
            result.context("the gRPC server task failed")?.context("the gRPC server failed")?;
            anyhow::bail!("the gRPC server stopped on its own")
        }
    }
}
