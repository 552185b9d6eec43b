//! event-gateway: a gRPC gateway in front of Apache Kafka.
//!
//! - [`cli`] - the `gateway` command.
//! - [`config`] - flags and environment variables.
//! - [`server`] - assembles the Kafka clients and the gRPC server, runs it,
//!   and shuts it down in order.
//! - [`service`] - the `EventGateway` RPCs: where a published event goes and
//!   where a subscription comes from.
//! - [`publish_stream`] - PublishEvents: streaming publish with answers by request id.
//! - [`validate`] - checks on requests, before anything reaches Kafka.
//! - [`kafka`] - the producer, topic checks, subscription consumers and the
//!   embedded development cluster.
//! - [`metrics`] - Prometheus metrics of publishes, deliveries, acks, lag.
//! - [`registry`] - the subscriptions open on this instance, for Acknowledge.
//! - [`health`] - gRPC health that follows Kafka.
//! - [`error`] - the errors and their gRPC status codes.
//! - [`shutdown`] - signals and the shutdown handle tasks watch.
//! - [`spans`] - traces: RPC, produce and delivery spans, W3C propagation.
//! - [`telemetry`] - logs and trace export (shared with the notifier).

pub mod cli;
pub mod config;
pub mod error;
pub mod health;
pub mod kafka;
pub mod metrics;
pub mod publish_stream;
pub mod registry;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod spans;
pub mod telemetry;
pub mod validate;

pub use config::Config;

/// Every binary linking the gateway allocates with mimalloc: the hot paths
/// allocate small buffers on many threads (tokio workers, librdkafka
/// callbacks), where glibc's allocator spent about a third of the CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
pub use server::{run, start, RunningGateway};
