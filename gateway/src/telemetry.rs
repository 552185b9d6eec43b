//! Logs and trace export, set up as in the notifier.

pub use eventgateway::telemetry::{init, Telemetry};
