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
//! - `gateway_consumer_lag{group,topic,partition}`: records a subscription's
//!   consumer is behind the partition's end (from librdkafka statistics);
//!   the series of a consumer go when it closes.
//!
//! No label takes a value a client makes up without bound: topics are ones
//! Kafka has, and groups are those of open subscriptions.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tonic::Code;

/// Label pairs of one series.
type Labels = Vec<(&'static str, String)>;

/// gRPC status codes (0 to 16).
const CODES: usize = 17;

/// The topic label of a publish to a topic not known to exist.
pub(crate) const UNKNOWN_TOPIC: &str = "(unknown)";

/// One topic's publish series, by status code.
type PublishSeries = Vec<Option<(Counter, Histogram)>>;

/// The gateway's metrics; cloning shares them.
#[derive(Clone)]
pub(crate) struct Metrics(Arc<Inner>);

struct Inner {
    registry: Arc<Registry>,
    publishes: Family<Labels, Counter>,
    publish_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    deliveries: Family<Labels, Counter>,
    redeliveries: Family<Labels, Counter>,
    acks: Counter,
    active_subscriptions: Gauge,
    buffered_bytes: Gauge,
    stalled: Counter,
    open_connections: Gauge,
    refused_connections: Counter,
    health_probe_failures: Counter,
    producer_replacements: Counter,
    topic_lookups: Counter,
    consumer_lag: Family<Labels, Gauge>,
    auth_failures: Family<Labels, Counter>,
    denials: Family<Labels, Counter>,
    throttled: Family<Labels, Counter>,
    reload_failures: Family<Labels, Counter>,
    nacks: Family<Labels, Counter>,
    extensions: Family<Labels, Counter>,
    dead_letters: Family<Labels, Counter>,
    dead_letter_failures: Family<Labels, Counter>,
    /// The series the hot paths update, by topic: found with one lookup of
    /// the topic, without building their label sets each time.
    publish_series: RwLock<HashMap<String, PublishSeries>>,
    delivery_series: RwLock<HashMap<String, Counter>>,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let publishes = Family::<Labels, Counter>::default();
        let publish_seconds =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let deliveries = Family::<Labels, Counter>::default();
        let redeliveries = Family::<Labels, Counter>::default();
        let acks = Counter::default();
        let active_subscriptions = Gauge::default();
        let buffered_bytes = Gauge::default();
        let stalled = Counter::default();
        let open_connections = Gauge::default();
        let refused_connections = Counter::default();
        let health_probe_failures = Counter::default();
        let producer_replacements = Counter::default();
        let topic_lookups = Counter::default();
        let consumer_lag = Family::<Labels, Gauge>::default();
        let auth_failures = Family::<Labels, Counter>::default();
        let denials = Family::<Labels, Counter>::default();
        let throttled = Family::<Labels, Counter>::default();
        let reload_failures = Family::<Labels, Counter>::default();
        let nacks = Family::<Labels, Counter>::default();
        let extensions = Family::<Labels, Counter>::default();
        let dead_letters = Family::<Labels, Counter>::default();
        let dead_letter_failures = Family::<Labels, Counter>::default();
        registry.register(
            "gateway_nacks",
            "Deliveries given back by their client, by topic",
            nacks.clone(),
        );
        registry.register(
            "gateway_extensions",
            "Delivery deadlines pushed out by their client, by topic",
            extensions.clone(),
        );
        registry.register(
            "gateway_dead_letters",
            "Events written to a dead-letter topic, by topic read and reason (client, max_attempts)",
            dead_letters.clone(),
        );
        registry.register(
            "gateway_dead_letter_failures",
            "Dead-letter writes that failed (the event stays unsettled and is written again), by dead-letter topic",
            dead_letter_failures.clone(),
        );
        registry.register(
            "gateway_publish",
            "PublishEvent calls by topic and gRPC status",
            publishes.clone(),
        );
        registry.register(
            "gateway_publish_duration_seconds",
            "PublishEvent latency by topic and gRPC status",
            publish_seconds.clone(),
        );
        registry.register(
            "gateway_deliveries",
            "First deliveries handed to streams",
            deliveries.clone(),
        );
        registry.register(
            "gateway_redeliveries",
            "Redeliveries after a nack or the ack timeout",
            redeliveries.clone(),
        );
        registry.register("gateway_acks", "Acknowledgements received", acks.clone());
        registry.register(
            "gateway_active_subscriptions",
            "Open Subscribe streams",
            active_subscriptions.clone(),
        );
        registry.register(
            "gateway_subscription_buffered_bytes",
            "Bytes of deliveries buffered for clients, within --total-buffer-bytes",
            buffered_bytes.clone(),
        );
        registry.register(
            "gateway_stalled_subscriptions",
            "Streams ended because their client read nothing for --stall-timeout",
            stalled.clone(),
        );
        registry.register(
            "gateway_open_connections",
            "Client connections open",
            open_connections.clone(),
        );
        registry.register(
            "gateway_refused_connections",
            "Client connections closed at once: --max-connections were open",
            refused_connections.clone(),
        );
        registry.register(
            "gateway_health_probe_failures",
            "Kafka health probes that failed (health turns NOT_SERVING after 3 in a row)",
            health_probe_failures.clone(),
        );
        registry.register(
            "gateway_producer_replacements",
            "Kafka producers replaced after they failed for good (a fatal error such as fencing)",
            producer_replacements.clone(),
        );
        registry.register(
            "gateway_topic_lookups",
            "Metadata requests made to find whether a topic exists",
            topic_lookups.clone(),
        );
        registry.register(
            "gateway_consumer_lag",
            "Records a subscription's consumer is behind the end of a partition",
            consumer_lag.clone(),
        );
        registry.register(
            "gateway_auth_failures",
            "Callers that failed to authenticate, by reason",
            auth_failures.clone(),
        );
        registry.register(
            "gateway_denied",
            "Calls the policy denied, by operation",
            denials.clone(),
        );
        registry.register(
            "gateway_throttled",
            "Calls over a quota, by limit and policy grant",
            throttled.clone(),
        );
        registry.register(
            "gateway_reload_failures",
            "Changed settings files that did not load (the previous settings stay)",
            reload_failures.clone(),
        );
        Metrics(Arc::new(Inner {
            registry: Arc::new(registry),
            publishes,
            publish_seconds,
            deliveries,
            redeliveries,
            acks,
            active_subscriptions,
            buffered_bytes,
            stalled,
            open_connections,
            refused_connections,
            health_probe_failures,
            producer_replacements,
            topic_lookups,
            consumer_lag,
            auth_failures,
            denials,
            throttled,
            reload_failures,
            nacks,
            extensions,
            dead_letters,
            dead_letter_failures,
            publish_series: RwLock::default(),
            delivery_series: RwLock::default(),
        }))
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The labels of a lag series.
fn lag_labels(group: &str, topic: &str, partition: i32) -> Labels {
    vec![
        ("group", group.to_owned()),
        ("topic", topic.to_owned()),
        ("partition", partition.to_string()),
    ]
}

/// The lowercase name Prometheus labels use for a gRPC code.
fn status_label(code: Code) -> String {
    let name = format!("{code:?}");
    let mut label = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            label.push('_');
        }
        label.push(c.to_ascii_lowercase());
    }
    label
}

impl Metrics {
    /// The registry to serve.
    pub(crate) fn registry(&self) -> Arc<Registry> {
        self.0.registry.clone()
    }

    /// Counts `events` publishes to `topic` (or to [`UNKNOWN_TOPIC`], one
    /// not known to exist) that ended with `code` after `took`.
    pub(crate) fn published(&self, topic: &str, code: Code, took: Duration, events: u64) {
        let index = (code as usize).min(CODES - 1);
        let record = |(count, seconds): &(Counter, Histogram)| {
            count.inc_by(events);
            for _ in 0..events {
                seconds.observe(took.as_secs_f64());
            }
        };
        if let Some(series) = read(&self.0.publish_series)
            .get(topic)
            .and_then(|series| series[index].as_ref())
        {
            return record(series);
        }
        let labels = vec![("topic", topic.to_owned()), ("status", status_label(code))];
        let series = (
            self.0.publishes.get_or_create(&labels).clone(),
            self.0.publish_seconds.get_or_create(&labels).clone(),
        );
        record(&series);
        write(&self.0.publish_series)
            .entry(topic.to_owned())
            .or_insert_with(|| vec![None; CODES])[index] = Some(series);
    }

    /// Counts `count` first deliveries of one record of `topic`.
    pub(crate) fn delivered(&self, topic: &str, count: u64) {
        if let Some(counter) = read(&self.0.delivery_series).get(topic) {
            counter.inc_by(count);
            return;
        }
        let counter = self
            .0
            .deliveries
            .get_or_create(&vec![("topic", topic.to_owned())])
            .clone();
        counter.inc_by(count);
        write(&self.0.delivery_series).insert(topic.to_owned(), counter);
    }

    /// Counts a redelivery.
    pub(crate) fn redelivered(&self, topic: &str) {
        self.0
            .redeliveries
            .get_or_create(&vec![("topic", topic.to_owned())])
            .inc();
    }

    /// Counts a delivery of `topic` given back.
    pub(crate) fn nacked(&self, topic: &str) {
        self.0
            .nacks
            .get_or_create(&vec![("topic", topic.to_owned())])
            .inc();
    }

    /// Counts a delivery of `topic` whose deadline moved out.
    pub(crate) fn extended(&self, topic: &str) {
        self.0
            .extensions
            .get_or_create(&vec![("topic", topic.to_owned())])
            .inc();
    }

    /// Counts an event of `topic` stored in its dead-letter topic, for a
    /// reason of class `reason`.
    pub(crate) fn dead_lettered(&self, topic: &str, reason: &'static str) {
        self.0
            .dead_letters
            .get_or_create(&vec![
                ("topic", topic.to_owned()),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }

    /// Counts a write to dead-letter topic `topic` that failed.
    pub(crate) fn dead_letter_failed(&self, topic: &str) {
        self.0
            .dead_letter_failures
            .get_or_create(&vec![("topic", topic.to_owned())])
            .inc();
    }

    /// Counts acknowledged deliveries.
    pub(crate) fn acked(&self, count: usize) {
        self.0.acks.inc_by(count as u64);
    }

    /// A stream opened (`+1`) or closed (`-1`).
    pub(crate) fn subscriptions(&self, change: i64) {
        self.0.active_subscriptions.inc_by(change);
    }

    /// The gauge of bytes buffered for clients, for the budget to keep.
    pub(crate) fn buffered_bytes(&self) -> Gauge {
        self.0.buffered_bytes.clone()
    }

    /// A stream ended because its client read nothing for too long.
    pub(crate) fn stalled(&self) {
        self.0.stalled.inc();
    }

    /// A client connection opened (`+1`) or closed (`-1`).
    pub(crate) fn connections(&self, change: i64) {
        self.0.open_connections.inc_by(change);
    }

    /// Counts a connection closed at once for `--max-connections`.
    pub(crate) fn connection_refused(&self) {
        self.0.refused_connections.inc();
    }

    /// Counts a caller that failed to authenticate.
    pub(crate) fn auth_failed(&self, reason: &'static str) {
        self.0
            .auth_failures
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// Counts a call the policy denied.
    pub(crate) fn denied(&self, operation: &'static str) {
        self.0
            .denials
            .get_or_create(&vec![("operation", operation.to_owned())])
            .inc();
    }

    /// Counts a call over a quota of the grant named by `grant`.
    pub(crate) fn throttled(&self, limit: &'static str, grant: &str) {
        let labels = vec![("limit", limit.to_owned()), ("grant", grant.to_owned())];
        self.0.throttled.get_or_create(&labels).inc();
    }

    /// Counts a changed settings file that did not load.
    pub(crate) fn reload_failed(&self, file: &'static str) {
        self.0
            .reload_failures
            .get_or_create(&vec![("file", file.to_owned())])
            .inc();
    }

    /// Counts a Kafka health probe that failed.
    pub(crate) fn producer_replaced(&self) {
        self.0.producer_replacements.inc();
    }

    pub(crate) fn health_probe_failed(&self) {
        self.0.health_probe_failures.inc();
    }

    /// Counts a metadata request made to find whether a topic exists.
    pub(crate) fn topic_lookup(&self) {
        self.0.topic_lookups.inc();
    }

    /// Sets the lag of a group's consumer on one partition.
    pub(crate) fn lag(&self, group: &str, topic: &str, partition: i32, lag: i64) {
        let labels = lag_labels(group, topic, partition);
        self.0.consumer_lag.get_or_create(&labels).set(lag);
    }

    /// Removes the lag series of a group's consumer on one partition.
    pub(crate) fn forget_lag(&self, group: &str, topic: &str, partition: i32) {
        self.0
            .consumer_lag
            .remove(&lag_labels(group, topic, partition));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

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
        metrics.published("t", Code::Ok, Duration::from_millis(1), 1);
        metrics.delivered("t", 1);
        metrics.redelivered("t");
        metrics.nacked("t");
        metrics.extended("t");
        metrics.dead_lettered("t", "client");
        metrics.dead_letter_failed("t");
        metrics.auth_failed("no_client_certificate");
        metrics.denied("publish");
        metrics.throttled("publish_rate", "*");
        metrics.reload_failed("tls");
        metrics.lag("g", "t", 0, 1);
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
        let module_doc: String = include_str!("metrics.rs")
            .lines()
            .take_while(|line| line.starts_with("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(named(&module_doc), registered, "this module's //! list");
        let readme = include_str!("../../README.md");
        let row = readme
            .lines()
            .find(|line| line.starts_with("| gateway | `--metrics-addr`"))
            .expect("README's metrics table has the gateway's row");
        assert_eq!(named(row), registered, "README's metrics table");
    }

    #[test]
    fn series_render_with_their_labels() {
        let metrics = Metrics::default();
        metrics.published("orders", Code::Ok, Duration::from_millis(3), 1);
        metrics.published("orders", Code::NotFound, Duration::from_millis(1), 1);
        metrics.published(UNKNOWN_TOPIC, Code::NotFound, Duration::from_millis(1), 1);
        metrics.lag("g", "orders", 2, 17);
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
        metrics.forget_lag("g", "orders", 2);
        let text = eventgateway_runtime::metrics::render(&metrics.registry());
        assert!(!text.contains("gateway_consumer_lag{"), "{text}");
    }
}
