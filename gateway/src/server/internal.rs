//! The internal listener, when acks at any replica are on: where the
//! other replicas forward a unary Acknowledge or Settle for a subscription
//! this replica holds. It serves the EventGateway service behind the
//! replicas' guard (their secret; mTLS when TLS is on), within the same
//! connection bounds as the listener, and stops only once the listener's
//! streams have ended, so that a draining replica still takes the acks of
//! what it handed out.

use std::net::SocketAddr;

use anyhow::Context as _;
use eventgateway::v1::event_gateway_server::EventGatewayServer;
use eventgateway_runtime::reload::Reloaded;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::ServerConfig;
use tonic::transport::Server;

use crate::config::Config;
use crate::edge;
use crate::grpc::Gateway;
use crate::metrics::Metrics;
use crate::route::{InternalOnly, MtlsFiles, RouteSettings, Routing};

use super::listener::{accepting, max_message};
use super::security::Reloading;

/// The internal listener, serving.
pub(super) struct InternalListener {
    /// Where it listens.
    pub(super) addr: SocketAddr,
    /// Its server's task.
    pub(super) task: JoinHandle<Result<(), tonic::transport::Error>>,
    /// Stops it.
    pub(super) stop: oneshot::Sender<()>,
}

/// Binds `--internal-addr` and makes this replica's routing (its route
/// names the bound address unless one is advertised), when acks at any
/// replica are on.
pub(super) async fn bind(
    config: &Config,
    keys: Option<Vec<Vec<u8>>>,
) -> anyhow::Result<Option<(Routing, TcpListener)>> {
    let (Some(addr), Some(keys)) = (config.route.internal_addr, keys) else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --internal-addr {addr}"))?;
    let bound = listener.local_addr()?;
    let advertised = match config.route.advertised_internal_addr.clone() {
        Some(advertised) => advertised,
        None => bound.to_string(),
    };
    let mtls = config
        .tls
        .files()
        .zip(config.route.internal_ca.clone())
        .map(|(files, ca)| MtlsFiles {
            cert: files.cert,
            key: files.key,
            ca,
        });
    let routing = Routing::new(RouteSettings {
        keys,
        advertised,
        forward_timeout: config.route.forward_timeout,
        mtls,
    })
    .map_err(|error| anyhow::anyhow!("acks at any replica: {error}"))?;
    tracing::info!(%bound, advertised = routing.me().address, "internal listener bound");
    Ok(Some((routing, listener)))
}

/// The internal listener's TLS: the listener's certificate, asking for a
/// client certificate of `--internal-ca`; none without TLS.
pub(super) fn tls(reloading: &Reloading<'_>) -> anyhow::Result<Option<Reloaded<ServerConfig>>> {
    let config = reloading.config;
    let (Some(mut files), Some(ca)) = (config.tls.files(), config.route.internal_ca.clone()) else {
        return Ok(None);
    };
    files.client_ca = Some(ca);
    reloading
        .watch(
            "internal TLS certificate, key and CA",
            "tls",
            files.paths(),
            edge::server_config,
        )
        .map(Some)
}

/// Serves `gateway` to the other replicas on `listener`, behind
/// `routing`'s guard (and `tls`), until it is stopped.
pub(super) fn serve(
    config: &Config,
    (listener, tls): (TcpListener, Option<Reloaded<ServerConfig>>),
    routing: Routing,
    gateway: Gateway,
    (metrics, shutdown): (Metrics, &eventgateway_runtime::shutdown::Shutdown),
) -> anyhow::Result<InternalListener> {
    let addr = listener.local_addr()?;
    let router = Server::builder()
        .timeout(config.limits.request_timeout)
        .max_concurrent_streams(config.edge.max_streams_per_connection)
        .http2_max_header_list_size(config.edge.max_header_bytes)
        .http2_keepalive_interval(Some(config.edge.keepalive_interval))
        .http2_keepalive_timeout(Some(config.edge.keepalive_timeout))
        .layer(InternalOnly(routing))
        .layer(edge::TrackCalls)
        .layer(edge::BadInput)
        .layer(edge::Arrival(config.edge.request_arrival_timeout))
        .add_service(
            EventGatewayServer::new(gateway).max_decoding_message_size(max_message(config)),
        );
    let incoming = edge::incoming(listener, accepting(config), metrics.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = match tls {
        Some(tls) => {
            let incoming = edge::handshakes(
                incoming,
                tls,
                (config.edge.handshake_timeout, metrics),
                shutdown,
            );
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
                let _ = stopped.await;
            }))
        }
        None => tokio::spawn(router.serve_with_incoming_shutdown(
            edge::plain(incoming),
            async move {
                let _ = stopped.await;
            },
        )),
    };
    tracing::info!(%addr, "internal listener serving the other replicas");
    Ok(InternalListener { addr, task, stop })
}
