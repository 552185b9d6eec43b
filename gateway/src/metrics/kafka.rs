//! The gateway's own Kafka clients: health probes, producer replacements
//! and topic lookups.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::counter;

/// `gateway_health_probe_failures_total`, `gateway_producer_replacements_total`
/// and `gateway_topic_lookups_total`.
pub(crate) struct KafkaMetrics {
    health_probe_failures: Counter,
    producer_replacements: Counter,
    topic_lookups: Counter,
}

impl KafkaMetrics {
    /// The counters, registered in `registry`.
    pub(super) fn new(registry: &mut Registry) -> Self {
        Self {
            health_probe_failures: counter(
                registry,
                "gateway_health_probe_failures",
                "Kafka health probes that failed (health turns NOT_SERVING after 3 in a row)",
            ),
            producer_replacements: counter(
                registry,
                "gateway_producer_replacements",
                "Kafka producers replaced after they failed for good (a fatal error such as fencing)",
            ),
            topic_lookups: counter(
                registry,
                "gateway_topic_lookups",
                "Metadata requests made to find whether a topic exists",
            ),
        }
    }

    /// Counts a producer replaced after it failed for good.
    pub(crate) fn producer_replaced(&self) {
        self.producer_replacements.inc();
    }

    /// Counts a Kafka health probe that failed.
    pub(crate) fn health_probe_failed(&self) {
        self.health_probe_failures.inc();
    }

    /// Counts a metadata request made to find whether a topic exists.
    pub(crate) fn topic_lookup(&self) {
        self.topic_lookups.inc();
    }
}
