//! Why a topic cannot take writes right now, for the status of a publish
//! Kafka did not confirm in time: a partition without a leader, or with
//! fewer replicas in sync than the topic's `min.insync.replicas` (Kafka
//! refuses acks=all writes to it, and librdkafka retries them until the
//! event's delivery timeout, so its own answer names no cause). Kafka is
//! asked at most once a second per topic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, ResourceSpecifier};
use rdkafka::metadata::Metadata;

use super::{blocking, Admin};
use crate::text::clip;

/// How long an answer about a topic is used before Kafka is asked again.
const FRESH_FOR: Duration = Duration::from_secs(1);
/// Most topics whose answer is kept.
const MAX_KEPT: usize = 10_000;
/// Most causes named in one answer.
const MAX_CAUSES: usize = 3;

/// Asks Kafka why topics cannot take writes; cloning shares it.
#[derive(Clone)]
pub(crate) struct Writability {
    /// Asks for metadata (leaders, replicas in sync) and a topic's
    /// `min.insync.replicas`.
    admin: Admin,
    /// The last answer per topic, and when it was given.
    kept: Arc<Mutex<HashMap<String, Kept>>>,
}

/// When an answer was given, and what it said.
type Kept = (Instant, Option<String>);

impl Writability {
    /// Asks through `admin`.
    pub(crate) fn new(admin: Admin) -> Self {
        Self {
            admin,
            kept: Arc::default(),
        }
    }

    /// Why `topic` cannot take writes now, if Kafka says so within
    /// `within` (or said so within the last second).
    pub(crate) async fn why_not(&self, topic: &str, within: Duration) -> Option<String> {
        if let Some(kept) = self.kept(topic) {
            return kept;
        }
        let answer = tokio::time::timeout(within, self.ask(topic, within))
            .await
            .ok()?;
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= MAX_KEPT {
            kept.retain(|_, (when, _)| when.elapsed() < FRESH_FOR);
            if kept.len() >= MAX_KEPT {
                kept.clear();
            }
        }
        kept.insert(topic.to_owned(), (Instant::now(), answer.clone()));
        answer
    }

    /// The answer about `topic` given within the last second, if any.
    fn kept(&self, topic: &str) -> Option<Option<String>> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.get(topic)
            .filter(|(when, _)| when.elapsed() < FRESH_FOR)
            .map(|(_, answer)| answer.clone())
    }

    /// Asks Kafka for `topic`'s partitions and its `min.insync.replicas`.
    async fn ask(&self, topic: &str, within: Duration) -> Option<String> {
        let (admin, name) = (self.admin.clone(), topic.to_owned());
        let metadata = blocking(move || {
            admin
                .inner()
                .fetch_metadata(Some(&name), within)
                .map_err(|error| crate::error::Error::from_kafka(&error, Some(&name)))
        });
        let options = AdminOptions::new().request_timeout(Some(within));
        let specifier = ResourceSpecifier::Topic(topic);
        let configs = self.admin.describe_configs([&specifier], &options);
        let (metadata, configs) = tokio::join!(metadata, configs);
        let min_insync = configs
            .ok()
            .and_then(|mut resources| resources.pop())
            .and_then(Result::ok)
            .and_then(|resource| {
                resource
                    .get("min.insync.replicas")
                    .and_then(|entry| entry.value.as_deref()?.parse().ok())
            });
        causes(&metadata.ok()?, topic, min_insync)
    }
}

/// What keeps `topic` (as `metadata` describes it) from taking writes,
/// given its `min.insync.replicas` when known.
fn causes(metadata: &Metadata, topic: &str, min_insync: Option<usize>) -> Option<String> {
    let found = metadata.topics().iter().find(|t| t.name() == topic)?;
    let causes: Vec<String> = found
        .partitions()
        .iter()
        .filter_map(|partition| {
            let (in_sync, replicas) = (partition.isr().len(), partition.replicas().len());
            if partition.leader() < 0 {
                Some(format!(
                    "partition {} of topic {} has no leader (its replicas are down, or an election is under way)",
                    partition.id(),
                    clip(topic)
                ))
            } else {
                let needed = min_insync.filter(|needed| in_sync < *needed)?;
                Some(format!(
                    "partition {} of topic {} has {in_sync} of {replicas} replicas in sync, fewer than its min.insync.replicas ({needed}): Kafka refuses acks=all writes to it until enough replicas are back",
                    partition.id(),
                    clip(topic)
                ))
            }
        })
        .take(MAX_CAUSES)
        .collect();
    (!causes.is_empty()).then(|| causes.join("; "))
}
