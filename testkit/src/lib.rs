//! The real parts the test suites (and the benchmark) run against, in one
//! place: Apache Kafka, the gateway on a free port with the
//! configuration a test needs, the usual fixture, bounded waits instead of
//! sleeps, signals and log lines of child processes, a real SMTP server,
//! and metric scraping. Every item is at the crate root: `use testkit::*;`.
//!
//! - [`kafka`]: Apache Kafka nodes: jars, storage, process, readiness.
//! - `java`: the reference Java client as a peer (`testkit/java/`).
//! - `broker`: the broker a test runs against (shared or its own), topic
//!   creation, plain consumers and group offsets.
//! - `ports`: free loopback ports.
//! - `netns`: a network namespace whose link a test cuts and heals.
//! - `certs`: a CA, server and client certificates made at test time.
//! - `edge`: a secured gateway's files (TLS, JWKS, policy) and settings.
//! - `gateway`: the gateway in process or as a binary, clients, health.
//! - `https`: an HTTPS server of one document (a JWKS).
//! - `events`: publishing and subscribing the way tests do.
//! - `tokens`: signing keys, their JWKS document, and bearer tokens.
//! - `wait`: polling with a bound.
//! - `process`: SIGTERM and the log lines of a child process.
//! - `smtp`: a real SMTP server (Python aiosmtpd).
//! - `metrics`: reading a Prometheus endpoint.

mod broker;
mod certs;
mod edge;
mod events;
mod gateway;
mod group;
mod https;
mod java;
pub mod kafka;
mod metrics;
mod netns;
mod plain;
mod ports;
mod process;
mod replica;
mod smtp;
mod streaming;
mod tokens;
mod wait;

pub use broker::*;
pub use certs::*;
pub use edge::*;
pub use events::*;
pub use gateway::*;
pub use group::*;
pub use https::*;
pub use java::*;
pub use metrics::*;
pub use netns::*;
pub use plain::*;
pub use ports::*;
pub use process::*;
pub use replica::*;
pub use smtp::*;
pub use streaming::*;
pub use tokens::*;
pub use wait::*;
