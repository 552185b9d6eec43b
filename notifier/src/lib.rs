//! notifier: sends each newly registered user a welcome email.
//!
//! It is a client of the event gateway like any service in any language: it
//! subscribes to `user-registered` as the consumer group
//! `notification-service` with MANUAL acknowledgements, and never talks to
//! Kafka directly.
//!
//! - `config` - flags and environment variables.
//! - `worker` - the subscribe / email / remember / acknowledge loop.
//! - `error` - what ends a session with the gateway.
//! - `gateway` - the connection: TLS, client certificate, bearer token.
//! - `registration` - the event schema it understands.
//! - `templates` - the welcome email, from replaceable templates.
//! - `mailer` - SMTP, or .eml files in an outbox directory.
//! - `metrics` - emails sent, failed and dead-lettered, for Prometheus.
//! - `store` - the ids of events already emailed (survives kill -9).
//! - `backoff` - retry waits.

mod backoff;
mod config;
mod error;
mod gateway;
mod mailer;
mod metrics;
mod registration;
mod store;
mod templates;
mod worker;

use std::future::Future;

pub use config::Config;
pub use error::Error;

/// Runs the notifier until `signal` resolves; the email in progress is
/// finished and acknowledged before it returns.
pub async fn run(config: Config, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (trigger, shutdown) = eventgateway_runtime::shutdown::channel();
    let metrics = metrics::Metrics::default();
    let endpoint =
        eventgateway_runtime::metrics::start(config.metrics_addr, metrics.registry(), None).await?;
    let notifier = worker::Notifier::new(config, shutdown, metrics)?;
    let mut work = tokio::spawn(notifier.run());
    tokio::select! {
        result = &mut work => return Ok(result?),
        () = signal => trigger.fire(),
    };
    work.await?;
    if let Some((task, _)) = endpoint {
        task.abort();
    }
    tracing::info!("notifier stopped");
    Ok(())
}
