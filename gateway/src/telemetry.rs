//! Logging: structured lines on stderr, filtered by `RUST_LOG` (shared with
//! the notifier).

pub use eventgateway::telemetry::init;
