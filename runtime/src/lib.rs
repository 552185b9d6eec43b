//! What the gateway and the notifier run alike, kept out of the API crate so
//! that a Rust client of the API pulls in no server runtime.
//!
//! - [`telemetry`]: logs and OTLP trace export.
//! - [`metrics`]: the Prometheus endpoint.
//! - [`shutdown`]: the signal both binaries stop on, the handle their tasks
//!   watch, and the drain that waits for those tasks.
//! - [`config`]: a command's defaults, untouched by the environment.
//! - [`service`]: the frame a binary runs its service in.
#![warn(missing_docs)]

pub mod config;
pub mod metrics;
pub mod reload;
pub mod service;
pub mod shutdown;
pub mod telemetry;
