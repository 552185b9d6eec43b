//! The gateway's metrics, served in Prometheus text format on
//! `--metrics-addr`:
//!
//! - `gateway_publish_total{topic,status}` and
//!   `gateway_publish_duration_seconds{topic,status}`: PublishEvent calls by
//!   gRPC status (`ok`, `not_found`, ...), and how long they took; a topic
//!   not known to exist is counted as `(unknown)`;
//! - `gateway_deliveries_total{topic}`, `gateway_redeliveries_total{topic}`:
//!   first deliveries and redeliveries handed to streams;
//! - `gateway_acks_total`: acknowledgements received;
//! - `gateway_nacks_total{topic}`, `gateway_extensions_total{topic}`:
//!   deliveries given back by their client, and deadlines it pushed out;
//! - `gateway_dead_letters_total{topic,reason}`: events written to a
//!   dead-letter topic, by topic read and reason (`client`,
//!   `max_attempts`); `gateway_dead_letter_failures_total{topic}`:
//!   dead-letter writes that failed (the event stays unsettled);
//! - `gateway_active_subscriptions`: open Subscribe streams;
//! - `gateway_subscription_buffered_bytes`: bytes of deliveries buffered
//!   for clients (within `--total-buffer-bytes`);
//!   `gateway_stalled_subscriptions_total`: streams ended because their
//!   client read nothing for `--stall-timeout`;
//! - `gateway_forwarded_total{call,outcome}`: unary Acknowledge and Settle
//!   calls forwarded to the replica that holds their subscription (acks at
//!   any replica), by outcome: `answered`, `refused` (the owner's status),
//!   `gone` (answered STALE or NOT_FOUND here);
//! - `gateway_open_connections`, `gateway_refused_connections_total`: client
//!   connections open, and closed at once for `--max-connections`;
//! - `gateway_health_probe_failures_total`: Kafka health probes that failed;
//! - `gateway_producer_replacements_total`: producers replaced after they
//!   failed for good (a fatal error such as fencing);
//! - `gateway_topic_lookups_total`: metadata requests made to find whether a
//!   topic exists;
//! - `gateway_auth_failures_total{reason}`: callers that failed to
//!   authenticate, by reason (`no_client_certificate`, ...);
//! - `gateway_denied_total{operation}`: calls the policy denied, by
//!   operation (`publish`, `subscribe`, `acknowledge`);
//! - `gateway_throttled_total{limit,grant}`: calls over a quota, by limit
//!   and by the principal pattern of the policy grant the quota comes from
//!   (principals appear in labels only as the policy names them);
//! - `gateway_reload_failures_total{file}`: changed settings files (`tls`,
//!   ...) that did not load, so the previous settings stayed;
//! - `gateway_http_requests_total{status}`: requests to the plain HTTP
//!   routes (`/v1/`), by the HTTP status answered (200, 400, 401, 415...);
//! - `gateway_consumer_lag{group,topic,partition}`: records a subscription's
//!   consumer is behind the partition's end (from librdkafka statistics);
//!   the series of a consumer go when it closes;
//! - `gateway_share_streams{group,share}`: streams open on a shared
//!   subscription; the series of a share go when it closes, as do these:
//! - `gateway_share_out{group,share}`: deliveries its streams hold;
//! - `gateway_share_held_by_key{group,share}`: its events held back behind
//!   an earlier event of their key.
//!
//! No label takes a value a client makes up without bound: topics are ones
//! Kafka has, and groups and shares are those of open subscriptions (each
//! takes a place of `--max-subscriptions`), at most 249 bytes each.
//!
//! Each part of the gateway owns its families, with typed label sets:
//! [`publish`], [`delivery`] (subscriptions, acks, dead letters, lag),
//! [`edge`] (connections, authentication, the policy, reloads) and
//! [`kafka`] (health probes, producers, topic lookups). All register into
//! one registry.

pub(crate) mod delivery;
pub(crate) mod edge;
pub(crate) mod kafka;
pub(crate) mod publish;

use std::sync::{Arc, RwLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::{Metric, Registry};

pub(crate) use self::publish::UNKNOWN_TOPIC;

/// The gateway's metrics; cloning shares them.
#[derive(Clone)]
pub(crate) struct Metrics(Arc<Parts>);

struct Parts {
    registry: Arc<Registry>,
    publish: publish::PublishMetrics,
    delivery: delivery::DeliveryMetrics,
    edge: edge::EdgeMetrics,
    kafka: kafka::KafkaMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let publish = publish::PublishMetrics::new(&mut registry);
        let delivery = delivery::DeliveryMetrics::new(&mut registry);
        let edge = edge::EdgeMetrics::new(&mut registry);
        let kafka = kafka::KafkaMetrics::new(&mut registry);
        Metrics(Arc::new(Parts {
            registry: Arc::new(registry),
            publish,
            delivery,
            edge,
            kafka,
        }))
    }
}

impl Metrics {
    /// The registry to serve.
    pub(crate) fn registry(&self) -> Arc<Registry> {
        self.0.registry.clone()
    }

    /// Publishes.
    pub(crate) fn publish(&self) -> &publish::PublishMetrics {
        &self.0.publish
    }

    /// Subscriptions, deliveries, acks, dead letters and lag.
    pub(crate) fn delivery(&self) -> &delivery::DeliveryMetrics {
        &self.0.delivery
    }

    /// Connections, authentication, the policy and reloaded files.
    pub(crate) fn edge(&self) -> &edge::EdgeMetrics {
        &self.0.edge
    }

    /// The gateway's own Kafka clients.
    pub(crate) fn kafka(&self) -> &kafka::KafkaMetrics {
        &self.0.kafka
    }
}

/// `metric` registered in `registry` as `name` with `help`; a handle to it.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// A new counter registered as `name`.
fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    registered(registry, name, help, Counter::default())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::metrics::publish::{status_label, UNKNOWN_TOPIC};
    use std::time::Duration;
    use tonic::Code;

    /// Every `gateway_*` name in `text`.
    fn named(text: &str) -> BTreeSet<String> {
        text.match_indices("gateway_")
            .map(|(at, _)| {
                text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_metrics_reference_names_every_family_registered_and_no_other() {
        // A family is rendered once it has a series: one of each.
        let metrics = Metrics::default();
        metrics
            .publish()
            .published("t", Code::Ok, Duration::from_millis(1), 1);
        metrics.delivery().delivered("t", 1);
        metrics.delivery().redelivered("t");
        metrics.delivery().nacked("t");
        metrics.delivery().extended("t");
        metrics.delivery().dead_lettered("t", "client");
        metrics.delivery().dead_letter_failed("t");
        metrics.edge().auth_failed("no_client_certificate");
        metrics.edge().denied("publish");
        metrics.edge().throttled("publish_rate", "*");
        metrics.edge().reload_failed("tls");
        metrics.edge().http_answered(415);
        metrics.delivery().lag("g", "t", 0, 1);
        metrics.delivery().share("g", "s", [1, 2, 3]);
        metrics.delivery().forwarded("settle", "gone");
        let text = eventgateway_runtime::metrics::render(&metrics.registry());
        // Counters are exposed with `_total` on their samples.
        let registered: BTreeSet<String> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|line| match line.split_once(' ') {
                Some((name, "counter")) => Some(format!("{name}_total")),
                Some((name, _)) => Some(name.to_owned()),
                None => None,
            })
            .collect();
        assert!(registered.len() >= 20, "{registered:?}");
        let module_doc: String = include_str!("mod.rs")
            .lines()
            .take_while(|line| line.starts_with("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(named(&module_doc), registered, "metrics/mod.rs's //! list");
        let readme = include_str!("../../../README.md");
        let row = readme
            .lines()
            .find(|line| line.starts_with("| gateway | `--metrics-addr`"))
            .expect("README's metrics table has the gateway's row");
        assert_eq!(named(row), registered, "README's metrics table");
    }

    #[test]
    fn series_render_with_their_labels() {
        let metrics = Metrics::default();
        metrics
            .publish()
            .published("orders", Code::Ok, Duration::from_millis(3), 1);
        metrics
            .publish()
            .published("orders", Code::NotFound, Duration::from_millis(1), 1);
        metrics
            .publish()
            .published(UNKNOWN_TOPIC, Code::NotFound, Duration::from_millis(1), 1);
        metrics.delivery().lag("g", "orders", 2, 17);
        let text = eventgateway_runtime::metrics::render(&metrics.registry());
        assert!(
            text.contains(r#"gateway_publish_total{topic="orders",status="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"status="not_found""#), "{text}");
        assert!(
            text.contains(r#"gateway_consumer_lag{group="g",topic="orders",partition="2"} 17"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gateway_publish_total{topic="(unknown)",status="not_found"} 1"#),
            "{text}"
        );
        assert_eq!(status_label(Code::DeadlineExceeded), "deadline_exceeded");
        metrics.delivery().forget_lag("g", "orders", 2);
        let text = eventgateway_runtime::metrics::render(&metrics.registry());
        assert!(!text.contains("gateway_consumer_lag{"), "{text}");
    }
}
