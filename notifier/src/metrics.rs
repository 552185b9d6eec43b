//! The notifier's metrics, served in Prometheus text format on
//! `--metrics-addr`: `notifier_emails_sent_total`,
//! `notifier_emails_failed_total` (transient failures, each retried) and
//! `notifier_emails_dead_lettered_total`.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// The notifier's counters; cloning shares them.
#[derive(Clone)]
pub(crate) struct Metrics {
    registry: Arc<Registry>,
    /// Emails the SMTP server accepted (or the outbox stored).
    pub sent: Counter,
    /// Send attempts that failed transiently and will be retried.
    pub failed: Counter,
    /// Events published to the dead-letter topic.
    pub dead_lettered: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let (sent, failed, dead_lettered) =
            (Counter::default(), Counter::default(), Counter::default());
        registry.register(
            "notifier_emails_sent",
            "Welcome emails accepted by the SMTP server",
            sent.clone(),
        );
        registry.register(
            "notifier_emails_failed",
            "Send attempts that failed transiently (retried)",
            failed.clone(),
        );
        registry.register(
            "notifier_emails_dead_lettered",
            "Events sent to the dead-letter topic (unusable, or rejected for good)",
            dead_lettered.clone(),
        );
        Self {
            registry: Arc::new(registry),
            sent,
            failed,
            dead_lettered,
        }
    }
}

impl Metrics {
    /// The registry to serve.
    pub(crate) fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }
}
