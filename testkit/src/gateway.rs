//! The gateway under test: in this process on a free port (the usual
//! fixture), or as its binary in a process of its own; clients and health.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use gateway::{Config, RunningGateway};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::broker::{topic, Broker};
use crate::certs::Pem;
use crate::process::{clean, kept, spawn_kept, Lines};
use crate::wait::eventually;

/// The grpcurl binary: `GRPCURL` (set by scripts/test.sh) or PATH.
pub fn grpcurl() -> PathBuf {
    std::env::var_os("GRPCURL").map_or_else(|| PathBuf::from("grpcurl"), PathBuf::from)
}

/// The configuration tests start from, whatever the environment says:
/// quick health probes, a short grace, metrics on a free port.
pub fn config(brokers: Option<String>) -> Config {
    let mut config = Config::for_brokers(brokers);
    config.kafka.health_interval = Duration::from_millis(200);
    config.shutdown.shutdown_grace = Duration::from_secs(5);
    // StreamingSubscribe streams with deliveries out take acks this long at
    // shutdown.
    config.shutdown.drain_timeout = Duration::from_secs(1);
    // Metrics on a free port: tests run side by side.
    config.edge.metrics_addr =
        eventgateway_runtime::metrics::MetricsAddr(Some("127.0.0.1:0".parse().unwrap()));
    config
}

/// Starts the gateway on a free port.
async fn start(config: Config) -> RunningGateway {
    if std::env::var_os("RUST_LOG").is_some() {
        eventgateway_runtime::telemetry::init("gateway-test");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    gateway::start(config, listener)
        .await
        .expect("gateway starts")
}

/// Starts the gateway on a free port and waits until it reports SERVING.
pub async fn gateway(config: Config) -> RunningGateway {
    let gateway = start(config).await;
    wait_serving(gateway.addr()).await;
    gateway
}

/// Starts a gateway that speaks TLS on a free port and waits until it
/// reports SERVING to a client that connects as `tls` says.
pub async fn gateway_tls(config: Config, tls: &ClientTls) -> RunningGateway {
    let gateway = start(config).await;
    wait_serving_tls(gateway.addr(), tls).await;
    gateway
}

/// Waits until the gateway at `addr` reports SERVING to a client that
/// connects as `tls` says.
pub async fn wait_serving_tls(addr: SocketAddr, tls: &ClientTls) {
    eventually("the gateway reports SERVING over TLS", || async {
        let Ok(channel) = tls.channel(addr).await else {
            return false;
        };
        health_over(channel, "").await.ok() == Some(tonic_health::ServingStatus::Serving as i32)
    })
    .await;
}

/// How a test client reaches a gateway that speaks TLS: the CA that
/// signed the gateway's certificate (for `localhost`), and the client's
/// own certificate for mTLS.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The CA certificate, in PEM.
    pub ca: String,
    /// The client's certificate and key, for mTLS.
    pub identity: Option<Pem>,
}

impl ClientTls {
    /// A TLS channel to the gateway at `addr`.
    pub async fn channel(&self, addr: SocketAddr) -> Result<Channel, tonic::transport::Error> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .domain_name("localhost");
        if let Some(identity) = &self.identity {
            tls = tls.identity(Identity::from_pem(&identity.cert, &identity.key));
        }
        Channel::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)?
            .connect()
            .await
    }

    /// An EventGateway client over a TLS channel to `addr`.
    pub async fn client(
        &self,
        addr: SocketAddr,
    ) -> Result<EventGatewayClient<Channel>, tonic::transport::Error> {
        Ok(EventGatewayClient::new(self.channel(addr).await?))
    }
}

/// What most tests start with: a broker, a fresh topic, a gateway on that
/// broker and a client of it.
pub type Fixture = (Broker, String, RunningGateway, EventGatewayClient<Channel>);

/// A broker, a fresh topic named after `prefix` with `partitions`
/// partitions, a gateway on that broker with the test configuration, and a
/// client of it.
pub async fn fixture(prefix: &str, partitions: i32) -> Fixture {
    fixture_with(prefix, partitions, |_| {}).await
}

/// [`fixture`], with the gateway's configuration changed by `configure`
/// first.
pub async fn fixture_with(
    prefix: &str,
    partitions: i32,
    configure: impl FnOnce(&mut Config),
) -> Fixture {
    let broker = Broker::start().await;
    let topic = topic(prefix);
    broker.create_topic(&topic, partitions).await;
    let mut config = config(Some(broker.brokers()));
    configure(&mut config);
    let gateway = gateway(config).await;
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
    health_over(channel, service).await
}

/// Health status of `service` ("" for the server), asked over `channel`.
pub async fn health_over(channel: Channel, service: &str) -> Result<i32, tonic::Status> {
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

/// A gateway binary process on 127.0.0.1:`port` in front of `brokers`:
/// quick health probes, metrics off, no trace export, and whatever of the
/// environment the test runs in only where `env` says so; `env` and `args`
/// add to (and override) that. Its stderr is read line by line.
pub fn gateway_process(
    binary: &Path,
    port: u16,
    brokers: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Child, Lines) {
    // Killed with the test binary, even when the test fails.
    let mut command = kept(binary.to_path_buf());
    clean(&mut command);
    command
        .env("GATEWAY_ADDR", format!("127.0.0.1:{port}"))
        .env("KAFKA_BROKERS", brokers)
        .env("HEALTH_INTERVAL", "200ms")
        .env("METRICS_ADDR", "0")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = spawn_kept(command).expect("the gateway binary starts");
    let lines = Lines::of(child.stderr.take().expect("stderr is piped"));
    (child, lines)
}
