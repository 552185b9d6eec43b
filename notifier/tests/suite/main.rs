//! The notifier's integration tests, one binary: a real broker, the
//! gateway, the notifier binary, a real SMTP server and a real OTLP
//! receiver (testkit and `support`), and docker-compose.yml checked
//! statically.

mod compose;
mod secure;
mod support;
mod traces;
mod welcome;
