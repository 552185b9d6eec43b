//! The real parts the test suites (and the benchmark) run against, in one
//! place: a tansu broker process, the gateway on a free port with the
//! configuration a test needs, the usual fixture, bounded waits instead of
//! sleeps, signals and log lines of child processes, a real SMTP server,
//! and metric scraping. Every item is at the crate root: `use testkit::*;`.
//!
//! - [`tansu`]: the broker binary and its process.
//! - `broker`: a broker for one test, and topic creation.
//! - `certs`: a CA, server and client certificates made at test time.
//! - `edge`: a secured gateway's files (TLS, JWKS, policy) and settings.
//! - `gateway`: the gateway in process or as a binary, clients, health.
//! - `https`: an HTTPS server of one document (a JWKS).
//! - `events`: publishing and subscribing the way tests do.
//! - `tls_front`: a TLS listener in front of the broker.
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
mod https;
mod metrics;
mod process;
mod smtp;
mod streaming;
pub mod tansu;
mod tls_front;
mod tokens;
mod wait;

pub use broker::*;
pub use certs::*;
pub use edge::*;
pub use events::*;
pub use gateway::*;
pub use https::*;
pub use metrics::*;
pub use process::*;
pub use smtp::*;
pub use streaming::*;
pub use tansu::free_port;
pub use tls_front::*;
pub use tokens::*;
pub use wait::*;
