//! event-gateway: a gRPC gateway in front of Apache Kafka.
//!
//! Where a published event goes, top to bottom: `grpc` (the EventGateway
//! service: deadlines, request validation) hands it to `publish` (ids,
//! times, the topic check, the one producer), which uses `kafka` (client
//! configuration and plumbing, topic checks, the embedded cluster).
//!
//! Where a subscription's deliveries come from: `grpc` opens it through
//! `subscribe` (consumer set-up and start positions, the delivery task,
//! acks and redelivery, shared live tails, the open-subscription registry),
//! which uses `kafka` too.
//!
//! Before them, `edge` bounds what a client's connections and calls may
//! hold (connections, idleness, how long a request takes to arrive), speaks
//! TLS, and authenticates each call; `auth` says who a caller is and what it
//! may do (principals, tokens, the policy, quotas, the audit log).
//!
//! Plain HTTP callers reach the same service through `http`: CloudEvents
//! POSTed to `/v1/topics/{topic}/events` become PublishEvent calls.
//!
//! Between replicas, `route` signs subscription and ack ids with the
//! replica that holds them, and forwards a unary Acknowledge or Settle
//! there over the internal listener.
//!
//! Beside them: `server` assembles and runs everything and shuts it down in
//! order; `cli` is the command; `config`, `error` (the one error -> status
//! mapping), `health`, `limit` (caps on what is held at once), `metrics`,
//! `spans` and `text` (client strings as messages and logs may show them)
//! serve every layer.

#[cfg(test)]
mod architecture;
mod auth;
mod cli;
mod config;
mod edge;
mod error;
/// What the fuzz targets (`fuzz/`) drive; not an API.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod grpc;
mod health;
mod http;
mod kafka;
mod limit;
mod metrics;
mod publish;
mod route;
mod server;
mod spans;
mod subscribe;
mod text;

pub use cli::main;
pub use config::{
    Compression, Config, ConnectionOverrides, EdgeFlags, GroupProtocol, KafkaFlags, KafkaProperty,
    LimitFlags, PolicyFlags, RouteFlags, Settings, ShutdownFlags, SubscriptionFlags, TlsFlags,
    TokenFlags,
};
/// The librdkafka record the gateway writes for an event, and its producer's
/// default linger: `gateway-bench` writes the same records the same way.
#[cfg(feature = "testing")]
pub use kafka::publisher::{future_record, LINGER_MS};
pub use server::{start, RunningGateway};
/// A subscription's flow-control counters, as the tests read them.
#[cfg(feature = "testing")]
pub use subscribe::SubscriptionStats;
