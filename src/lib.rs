//! The event-gateway API, shared by the gateway and its clients.
//!
//! - [`v1`]: the generated protobuf types, the tonic client and the server trait
//!   of `proto/eventgateway/v1/gateway.proto`.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, served by gRPC reflection.
//! - [`json`]: conversion between `google.protobuf.Struct` and JSON text.
//! - [`metrics`]: the Prometheus endpoint both binaries serve.
//! - [`shutdown`]: the SIGTERM / Ctrl-C signal both binaries stop on.
//! - [`telemetry`]: logs and OTLP trace export, set up alike in both binaries.
//! - [`trace_context`]: W3C trace context in gRPC metadata and event attributes.
//! - [`record`]: the mapping between an [`v1::Event`] and a Kafka record
//!   (CloudEvents Kafka protocol binding, binary mode), with no Kafka client
//!   attached, so that both sides of the wire share one definition.
#![warn(missing_docs)]

pub mod json;
pub mod metrics;
pub mod record;
pub mod shutdown;
pub mod telemetry;
pub mod trace_context;

/// Generated code for the `eventgateway.v1` protobuf package.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    tonic::include_proto!("eventgateway.v1");
}

/// The encoded `FileDescriptorSet` of the API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("eventgateway_descriptor");

/// Fully qualified name of the gRPC service, as health checks and reflection
/// name it.
pub const SERVICE_NAME: &str = "eventgateway.v1.EventGateway";
