//! The gRPC server: health, reflection and the EventGateway service behind
//! the edge's bounds and layers.

use std::io;
use std::pin::Pin;
use std::sync::Arc;

use eventgateway::v1::event_gateway_server::EventGatewayServer;
use eventgateway_runtime::shutdown::Shutdown;
use futures_util::Stream;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tonic::transport::Server;
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::auth::access::Access;
use crate::config::Config;
use crate::edge;
use crate::grpc::Gateway;
use crate::http::{Handler, ServeHttp};
use crate::metrics::Metrics;
use tower::Layer as _;

use super::security::Security;

/// Room in a request for the protobuf framing around the payload.
const REQUEST_OVERHEAD_BYTES: usize = 64 * 1024;

/// Serves health, reflection and the EventGateway service on `listener`
/// until the shutdown begins, behind the edge's bounds (and TLS when `tls`
/// is set); returns the server's task.
pub(super) fn serve(
    config: &Config,
    listener: TcpListener,
    security: Security,
    health_service: HealthServer<impl Health>,
    (gateway, access): (Gateway, Access),
    metrics: Metrics,
    mut shutdown: Shutdown,
) -> anyhow::Result<JoinHandle<Result<(), tonic::transport::Error>>> {
    let max_message = max_message(config);
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(eventgateway::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(eventgateway::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let authenticate = edge::Authenticate {
        authentication: Arc::new(security.authentication),
        metrics: metrics.clone(),
    };
    // Plain HTTP callers pass the same authentication and call tracking.
    let http_routes = edge::linger(max_message).layer(authenticate.clone().layer(
        edge::TrackCalls.layer(Handler::new(
            (gateway.clone(), access, metrics.clone()),
            (config.limits.max_payload_bytes, max_message),
            config.edge.request_arrival_timeout,
        )?),
    ));
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
        .layer(ServeHttp(http_routes))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(authenticate)
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
    let incoming = edge::incoming(listener, accepting(config), metrics.clone());
    let incoming: Pin<Box<dyn Stream<Item = io::Result<edge::Transport>> + Send>> =
        match security.tls {
            Some(tls) => Box::pin(edge::handshakes(
                incoming,
                tls,
                (config.edge.handshake_timeout, metrics),
                &shutdown,
            )),
            None => Box::pin(edge::plain(incoming)),
        };
    Ok(tokio::spawn(
        router.serve_with_incoming_shutdown(incoming, async move { shutdown.started().await }),
    ))
}

/// The largest request message taken: room for a batch of the largest
/// payloads.
pub(super) fn max_message(config: &Config) -> usize {
    (config.limits.max_payload_bytes.saturating_mul(4))
        .max(4 * 1024 * 1024)
        .saturating_add(REQUEST_OVERHEAD_BYTES)
}

/// How connections are accepted: the listener's bounds.
pub(super) fn accepting(config: &Config) -> edge::Accepting {
    edge::Accepting {
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
    }
}
