//! Assembling and running the gateway: the Kafka clients, publishing and
//! subscriptions, the gRPC server behind the edge's bounds, health,
//! reflection, and the shutdown sequence.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use eventgateway::v1::event_gateway_server::EventGatewayServer;
use eventgateway_runtime::reload::{self, Reloaded};
use eventgateway_runtime::shutdown::{self, Shutdown, Trigger};
use futures_util::Stream;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::ServerConfig;
use tonic::codec::CompressionEncoding;
use tonic::transport::Server;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::auth::access::{Access, Caps};
use crate::auth::jwks::Jwks;
use crate::auth::jwt::Expected;
use crate::auth::policy;
use crate::auth::{Authentication, Tokens};
use crate::config::{Config, Settings};
use crate::edge;
use crate::grpc::Gateway;
use crate::health::{self, Readiness};
use crate::kafka::embedded::EmbeddedKafka;
use crate::kafka::publisher::Publisher;
use crate::kafka::topics::{Creation, Topics};
use crate::kafka::writable::Writability;
use crate::kafka::{blocking, Cluster};
use crate::metrics::Metrics;
use crate::publish::Publishing;
#[cfg(feature = "testing")]
use crate::subscribe::SubscriptionStats;
use crate::subscribe::{self, Subscriptions};

/// Room in a request for the protobuf framing around the payload.
const REQUEST_OVERHEAD_BYTES: usize = 64 * 1024;

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

/// What settings files are loaded and watched with: the interval, where a
/// change that does not load is counted, and the shutdown that ends it.
struct Reloading<'a> {
    config: &'a Config,
    metrics: &'a Metrics,
    shutdown: &'a Shutdown,
}

impl Reloading<'_> {
    /// `paths` (the `what` of messages) loaded with `load`, and loaded again
    /// when they change; a change that does not load is counted under
    /// `file`.
    fn watch<T: Send + Sync + 'static>(
        &self,
        what: &'static str,
        file: &'static str,
        paths: Vec<std::path::PathBuf>,
        load: fn(&[Vec<u8>]) -> Result<T, String>,
    ) -> anyhow::Result<Reloaded<T>> {
        let watch = self.watch_of(what, paths);
        let metrics = self.metrics.clone();
        reload::watch(watch, load, move || metrics.reload_failed(file))
            .map_err(|error| anyhow::anyhow!("cannot load the {what}: {error}"))
    }

    /// How `paths` (the `what` of messages) are watched.
    fn watch_of(&self, what: &'static str, paths: Vec<std::path::PathBuf>) -> reload::Watch<'_> {
        reload::Watch {
            what,
            paths,
            interval: self.config.policy.reload_interval,
            shutdown: self.shutdown,
        }
    }

    /// The listener's TLS settings, when TLS is on.
    fn tls(&self) -> anyhow::Result<Option<Reloaded<ServerConfig>>> {
        let Some(files) = self.config.tls.files() else {
            return Ok(None);
        };
        let what = "TLS certificate and key";
        self.watch(what, "tls", files.paths(), edge::server_config)
            .map(Some)
    }

    /// The metrics endpoint's TLS settings, when --metrics-tls is on: the
    /// listener's certificate and key.
    fn metrics_tls(&self) -> anyhow::Result<Option<Reloaded<ServerConfig>>> {
        let (true, Some(files)) = (self.config.tls.metrics_tls, self.config.tls.files()) else {
            return Ok(None);
        };
        let what = "metrics TLS certificate and key";
        let paths = vec![files.cert, files.key];
        self.watch(what, "tls", paths, edge::metrics_server_config)
            .map(Some)
    }

    /// What callers may do: the policy file's grants, or everything when
    /// there is none.
    /// `loaded`: the policy file as the start-up check loaded it.
    fn access(&self, loaded: Option<reload::Loaded<policy::Policy>>) -> Access {
        let policy = match (&self.config.policy.policy_file, loaded) {
            (Some(path), Some(loaded)) => {
                let watch = self.watch_of("policy", vec![path.clone()]);
                let metrics = self.metrics.clone();
                let failed = move || metrics.reload_failed("policy");
                Some(reload::watch_loaded(watch, loaded, policy::load, failed))
            }
            _ => None,
        };
        let caps = Caps {
            publish_streams: self.config.limits.max_publish_streams,
            subscriptions: self.config.limits.max_subscriptions,
            consumers: self.config.limits.max_consumers,
            share_percent: self.config.limits.max_share_percent,
        };
        Access::new(policy, caps, self.metrics.clone())
    }
}

/// What the listener asks of clients: TLS, and how calls are
/// authenticated.
struct Security {
    tls: Option<Reloaded<ServerConfig>>,
    authentication: Authentication,
}

/// How callers are authenticated, with the token keys loaded.
async fn authentication(
    config: &Config,
    metrics: &Metrics,
    shutdown: &Shutdown,
) -> anyhow::Result<Authentication> {
    let tokens = match config.tokens.source() {
        Some(source) => {
            let jwks = Jwks::start(source, config.policy.reload_interval, shutdown, metrics)
                .await
                .map_err(|error| anyhow::anyhow!("cannot load the token keys: {error}"))?;
            let expected = Expected {
                issuer: config.tokens.jwt_issuer.clone().unwrap_or_default(),
                audience: config.tokens.jwt_audience.clone().unwrap_or_default(),
                leeway: config.tokens.jwt_leeway,
            };
            Some(Tokens {
                jwks,
                expected,
                verified: Arc::default(),
            })
        }
        None => None,
    };
    Ok(Authentication {
        certificates: config.tls.tls_client_ca.is_some(),
        tokens,
        protect_reflection: config.policy.protect_reflection,
    })
}

/// What is wrong with listening on `addr` as `config` says: open to
/// other hosts without TLS, or without client authentication.
fn exposure_warnings(config: &Config, addr: SocketAddr) -> Vec<&'static str> {
    let mut warnings = Vec::new();
    if addr.ip().is_loopback() {
        return warnings;
    }
    if config.tls.files().is_none() {
        warnings.push(
            "listening on a non-loopback address without TLS: calls, events and any \
             credentials cross the network in clear text (see --tls-cert and --tls-key)",
        );
    }
    if !config.authenticates() {
        warnings.push(
            "listening on a non-loopback address without client authentication: anyone who \
             can reach this port can publish to and read every topic (see --tls-client-ca \
             and --jwks-file)",
        );
    }
    if config
        .edge
        .grpc_web_origins
        .iter()
        .any(|origin| origin == "*")
    {
        warnings.push(
            "--grpc-web-origins * lets a page of any web site call this gateway from its \
             visitors' browsers: name the origins of your own pages instead",
        );
    }
    warnings
}

/// Serves health, reflection and the EventGateway service on `listener`
/// until the shutdown begins, behind the edge's bounds (and TLS when `tls`
/// is set); returns the server's task.
fn serve(
    config: &Config,
    listener: TcpListener,
    security: Security,
    health_service: HealthServer<impl Health>,
    gateway: Gateway,
    metrics: Metrics,
    mut shutdown: Shutdown,
) -> anyhow::Result<JoinHandle<Result<(), tonic::transport::Error>>> {
    let max_message = (config.limits.max_payload_bytes.saturating_mul(4))
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
    let router = Server::builder()
        // gRPC-Web from browsers comes over HTTP/1.1 too.
        .accept_http1(true)
        .timeout(config.limits.request_timeout)
        .max_concurrent_streams(config.edge.max_streams_per_connection)
        .http2_max_header_list_size(config.edge.max_header_bytes)
        .http2_keepalive_interval(Some(config.edge.keepalive_interval))
        .http2_keepalive_timeout(Some(config.edge.keepalive_timeout))
        .layer(tower::util::option_layer(
            config.edge.viewer.then_some(edge::ServeViewer),
        ))
        .layer(tower::util::option_layer(edge::cors(
            &config.edge.grpc_web_origins,
        )))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(edge::Authenticate {
            authentication: Arc::new(security.authentication),
            metrics: metrics.clone(),
        })
        .layer(edge::TrackCalls)
        .layer(edge::BadInput)
        .layer(edge::Arrival(config.edge.request_arrival_timeout))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            EventGatewayServer::new(gateway)
                .max_decoding_message_size(max_message)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd),
        );
    let accepting = edge::Accepting {
        max_connections: config.edge.max_connections,
        per_address: edge::PerAddress::new(
            edge::AddressLimits {
                connections: config.edge.max_connections_per_ip,
                rate: config.edge.max_connection_rate_per_ip,
            },
            edge::overrides(&config.edge.connection_overrides.0),
        ),
        idle: edge::IdleLimits {
            handshake: config.edge.handshake_timeout,
            idle: config.edge.idle_timeout,
        },
        keepalive: config.edge.keepalive_interval,
    };
    let incoming = edge::incoming(listener, accepting, metrics.clone());
    let incoming: Pin<Box<dyn Stream<Item = io::Result<edge::Transport>> + Send>> =
        match security.tls {
            Some(tls) => Box::pin(edge::handshakes(
                incoming,
                tls,
                config.edge.handshake_timeout,
                metrics,
            )),
            None => Box::pin(edge::plain(incoming)),
        };
    Ok(tokio::spawn(
        router.serve_with_incoming_shutdown(incoming, async move { shutdown.started().await }),
    ))
}

/// Replaces the producer each time it fails for good, until shutdown.
async fn replace_failed_producers(publisher: Publisher, metrics: Metrics, mut shutdown: Shutdown) {
    tokio::select! {
        () = publisher.producer().replace_failed(|| metrics.producer_replaced()) => {}
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
    );
    let gateway = Gateway::new(
        &config,
        publishing,
        subscriptions.clone(),
        reloading.access(settings.policy),
        metrics.clone(),
        shutdown.clone(),
    );
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
        gateway,
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
    #[cfg(feature = "testing")]
    pub fn subscription(&self, id: &str) -> Option<Arc<SubscriptionStats>> {
        self.subscriptions.stats(id)
    }

    /// How many live tails (consumers shared by ephemeral streams from the
    /// latest event) are open.
    #[cfg(feature = "testing")]
    pub fn live_tails(&self) -> usize {
        self.subscriptions.live_tails()
    }

    /// Shuts down: NOT_SERVING, stop accepting, end streams with
    /// UNAVAILABLE, let in-flight calls finish, wait for the subscriptions
    /// to commit and leave their groups, flush the producer.
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
        let left = self.trigger.drain(self.grace).await;
        if left > 0 {
            tracing::warn!(grace = ?self.grace, tasks = left, "tasks still ending after the grace period");
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
            subscriptions,
            embedded,
            ..
        } = self;
        let _ = tokio::task::spawn_blocking(move || drop((subscriptions, publisher))).await;
        drop(embedded);
        tracing::info!("gateway stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_address_without_tls_or_authentication_is_warned_about() {
        let open: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:50051".parse().unwrap();
        let mut config = Config::for_brokers(None);
        assert_eq!(exposure_warnings(&config, open).len(), 2);
        assert!(exposure_warnings(&config, loopback).is_empty());
        config.tls.tls_cert = Some("server.crt".into());
        config.tls.tls_key = Some("server.key".into());
        assert_eq!(
            exposure_warnings(&config, open),
            [
                "listening on a non-loopback address without client authentication: anyone who \
              can reach this port can publish to and read every topic (see --tls-client-ca \
              and --jwks-file)"
            ]
        );
        config.tls.tls_client_ca = Some("ca.crt".into());
        assert!(exposure_warnings(&config, open).is_empty());
        config.tls.tls_client_ca = None;
        config.tokens.jwks_file = Some("jwks.json".into());
        assert!(exposure_warnings(&config, open).is_empty());
        config.edge.grpc_web_origins = vec!["https://app.example".into()];
        assert!(exposure_warnings(&config, open).is_empty());
        config.edge.grpc_web_origins.push("*".into());
        assert_eq!(
            exposure_warnings(&config, open),
            [
                "--grpc-web-origins * lets a page of any web site call this gateway from its \
              visitors' browsers: name the origins of your own pages instead"
            ]
        );
    }
}
