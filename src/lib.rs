//! The event-gateway API, shared by the gateway and its clients: what both
//! sides of the wire need, and nothing only a server needs.
//!
//! - [`v1`]: the generated protobuf types, the tonic client and the server trait
//!   of `proto/eventgateway/v1/gateway.proto`.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, served by gRPC reflection.
//! - [`codec`]: the protobuf codec the generated client and server use.
//! - [`json`]: conversion between `google.protobuf.Struct` and JSON text.
//! - [`trace_context`]: W3C trace context in gRPC metadata and event
//!   attributes, and the span of a delivery's handling ([`delivery_span!`]).
//! - [`bounds`]: what the gateway accepts in one request (lengths, counts)
//!   and the rule for topic names, for clients to check before they send.
//! - [`record`]: the mapping between an [`v1::Event`] and a Kafka record
//!   (CloudEvents Kafka protocol binding, binary mode), with no Kafka client
//!   attached, so that both sides of the wire share one definition.
#![warn(missing_docs)]

pub mod bounds;
pub mod codec;
pub mod json;
pub mod record;
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

/// The `tracing` crate, for [`delivery_span!`] in the crates that use it.
#[doc(hidden)]
pub use tracing as __tracing;
