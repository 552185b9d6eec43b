//! Which topics exist: checked through Kafka metadata before the first
//! publish to a topic and on every subscribe, and created when the gateway is
//! told to create missing topics. A topic found missing is answered
//! NOT_FOUND for a few seconds without asking again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::{blocking, Admin, METADATA_TIMEOUT};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::text::clip;

/// Times a topic that was just created is looked up again until its
/// partitions have leaders.
const SETTLE_ATTEMPTS: u32 = 50;
/// Pause between those lookups.
const SETTLE_PAUSE: Duration = Duration::from_millis(100);

/// What happens to a topic that does not exist.
pub(crate) enum Creation {
    /// Nothing: calls get NOT_FOUND.
    Refuse,
    /// The broker creates it when metadata for it is requested (the
    /// embedded cluster).
    OnMetadata,
    /// The gateway creates it through the admin API.
    Admin {
        /// Partition count of new topics.
        partitions: i32,
        /// Replication factor of new topics; -1 for the broker default.
        replication: i32,
    },
}

/// How long a topic found missing is answered NOT_FOUND without asking
/// Kafka again.
const MISSING_FOR: Duration = Duration::from_secs(5);
/// Most topics remembered as missing at once.
const MAX_MISSING: usize = 10_000;

/// Topic existence checks, with a cache of topics known to exist and a
/// short one of topics found missing (so that publishes to names that do
/// not exist cost one metadata request each few seconds, not one each).
#[derive(Clone)]
pub(crate) struct Topics {
    /// Client whose metadata requests answer "does it exist", and that
    /// creates topics.
    admin: Admin,
    /// What to do about a missing topic.
    creation: Arc<Creation>,
    /// Topics seen to exist; a publish checks Kafka only the first time.
    known: Arc<Mutex<HashSet<String>>>,
    /// Topics found missing, and when.
    missing: Arc<Mutex<HashMap<String, Instant>>>,
    /// Where metadata look-ups are counted.
    metrics: Metrics,
}

impl Topics {
    /// Checks (and creates) topics through `admin`.
    pub(crate) fn new(admin: Admin, creation: Creation, metrics: Metrics) -> Self {
        Self {
            admin,
            creation: Arc::new(creation),
            known: Arc::default(),
            missing: Arc::default(),
            metrics,
        }
    }

    /// Makes sure `topic` exists (creating it if allowed); cached.
    pub(crate) async fn ensure(&self, topic: &str) -> Result<(), Error> {
        if self.is_known(topic) {
            return Ok(());
        }
        self.partitions(topic).await.map(drop)
    }

    /// Forgets that `topic` exists, after Kafka said it does not.
    pub(crate) fn forget(&self, topic: &str) {
        self.lock().remove(topic);
    }

    /// The partitions of `topic`, looked up now (creating it if allowed);
    /// a topic found missing within the last seconds is not looked up again.
    pub(crate) async fn partitions(&self, topic: &str) -> Result<Vec<i32>, Error> {
        let not_found = || Error::TopicNotFound(clip(topic).to_string());
        if self.recently_missing(topic) {
            return Err(not_found());
        }
        let partitions = match self.settled_lookup(topic).await? {
            Some(partitions) => partitions,
            None => match &*self.creation {
                Creation::Refuse | Creation::OnMetadata => {
                    self.remember_missing(topic);
                    return Err(not_found());
                }
                Creation::Admin {
                    partitions,
                    replication,
                } => {
                    create(&self.admin, topic, *partitions, *replication).await?;
                    self.settled_lookup(topic)
                        .await?
                        .ok_or_else(|| Error::TopicNotFound(clip(topic).to_string()))?
                }
            },
        };
        self.lock().insert(topic.to_owned());
        Ok(partitions)
    }

    /// Whether `topic` was seen to exist (and not seen missing since).
    pub(crate) fn is_known(&self, topic: &str) -> bool {
        self.lock().contains(topic)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_missing(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.missing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `topic` was found missing within [`MISSING_FOR`].
    fn recently_missing(&self, topic: &str) -> bool {
        self.lock_missing()
            .get(topic)
            .is_some_and(|since| since.elapsed() < MISSING_FOR)
    }

    /// Remembers that `topic` is missing, within [`MAX_MISSING`] names.
    fn remember_missing(&self, topic: &str) {
        let mut missing = self.lock_missing();
        if missing.len() >= MAX_MISSING {
            missing.retain(|_, since| since.elapsed() < MISSING_FOR);
            if missing.len() >= MAX_MISSING {
                missing.clear();
            }
        }
        missing.insert(topic.to_owned(), Instant::now());
    }

    /// Looks the topic up, again while its partitions are still being
    /// created. `None` when it does not exist.
    async fn settled_lookup(&self, topic: &str) -> Result<Option<Vec<i32>>, Error> {
        let mut attempt = 0;
        loop {
            self.metrics.kafka().topic_lookup();
            let admin = self.admin.clone();
            let name = topic.to_owned();
            match blocking(move || lookup(&admin, &name)).await? {
                Lookup::Settling if attempt < SETTLE_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(SETTLE_PAUSE).await;
                }
                Lookup::Settling => {
                    return Err(Error::KafkaUnavailable(format!(
                        "topic {} has partitions without a leader",
                        clip(topic)
                    )))
                }
                Lookup::Missing => return Ok(None),
                Lookup::Found(partitions) => return Ok(Some(partitions)),
            }
        }
    }
}

/// What one metadata request said about a topic.
enum Lookup {
    Missing,
    Settling,
    Found(Vec<i32>),
}

/// One metadata request for `topic`. Blocking.
fn lookup(admin: &Admin, topic: &str) -> Result<Lookup, Error> {
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|error| Error::from_kafka(&error, Some(topic)))?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(Lookup::Missing);
    };
    match found.error().map(RDKafkaErrorCode::from) {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            Ok(Lookup::Missing)
        }
        Some(RDKafkaErrorCode::LeaderNotAvailable) => Ok(Lookup::Settling),
        Some(code) => Err(Error::from_kafka(
            &KafkaError::MetadataFetch(code),
            Some(topic),
        )),
        None if found.partitions().is_empty() => Ok(Lookup::Settling),
        None if found.partitions().iter().any(|p| p.leader() < 0) => Ok(Lookup::Settling),
        None => Ok(Lookup::Found(
            found.partitions().iter().map(|p| p.id()).collect(),
        )),
    }
}

/// Creates `topic` through the admin API; one that appeared meanwhile is fine.
async fn create(
    admin: &Admin,
    topic: &str,
    partitions: i32,
    replication: i32,
) -> Result<(), Error> {
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(|error| Error::from_kafka(&error, Some(topic)))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                tracing::warn!(topic, %code, "could not create topic");
                return Err(Error::from_kafka(&KafkaError::AdminOp(code), Some(topic)));
            }
        }
    }
    tracing::info!(topic, partitions, replication, "created topic");
    Ok(())
}
