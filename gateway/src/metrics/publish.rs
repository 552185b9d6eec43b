//! Publishes: calls by topic and gRPC status, and how long they took.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tonic::Code;

use super::{read, registered, write};

/// gRPC status codes (0 to 16).
const CODES: usize = 17;

/// The topic label of a publish to a topic not known to exist.
pub(crate) const UNKNOWN_TOPIC: &str = "(unknown)";

/// The labels of a publish series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PublishLabels {
    topic: String,
    status: String,
}

/// One topic's publish series, by status code.
type PublishSeries = Vec<Option<(Counter, Histogram)>>;

/// `gateway_publish_total` and `gateway_publish_duration_seconds`.
pub(crate) struct PublishMetrics {
    publishes: Family<PublishLabels, Counter>,
    seconds: Family<PublishLabels, Histogram, fn() -> Histogram>,
    /// The series the hot path updates, by topic: found with one lookup of
    /// the topic, without building their label sets each time.
    series: RwLock<HashMap<String, PublishSeries>>,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl PublishMetrics {
    /// The families, registered in `registry`.
    pub(super) fn new(registry: &mut Registry) -> Self {
        Self {
            publishes: registered(
                registry,
                "gateway_publish",
                "PublishEvent calls by topic and gRPC status",
                Family::default(),
            ),
            seconds: registered(
                registry,
                "gateway_publish_duration_seconds",
                "PublishEvent latency by topic and gRPC status",
                Family::new_with_constructor(latency_histogram),
            ),
            series: RwLock::default(),
        }
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
        if let Some(series) = read(&self.series)
            .get(topic)
            .and_then(|series| series[index].as_ref())
        {
            return record(series);
        }
        let labels = PublishLabels {
            topic: topic.to_owned(),
            status: status_label(code),
        };
        let series = (
            self.publishes.get_or_create(&labels).clone(),
            self.seconds.get_or_create(&labels).clone(),
        );
        record(&series);
        write(&self.series)
            .entry(topic.to_owned())
            .or_insert_with(|| vec![None; CODES])[index] = Some(series);
    }
}

/// The lowercase name Prometheus labels use for a gRPC code.
pub(super) fn status_label(code: Code) -> String {
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
