//! The gateway's one Kafka producer behind a handle that replaces it when
//! librdkafka declares it failed for good: a fatal error (the idempotent
//! producer fenced, or out of step with a broker's sequence numbers) leaves
//! a producer that refuses every record from then on, and only a new one
//! gets a new producer id. Every publish and every metadata request goes
//! through the producer current at that moment.
//!
//! librdkafka reports a fatal error as any other error (with the code of
//! its cause); every error the producer reports wakes
//! [`Producer::replace_failed`], which asks the producer whether it failed
//! for good. If so the failure is reported once through
//! [`Producer::take_failure`] (health turns NOT_SERVING on it) and a new
//! producer is created from the same configuration.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer as _};
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::watch;

use super::redacted;

/// The first wait before a new producer replaces one that failed again at
/// once (doubling up to [`MOST_BETWEEN_REPLACEMENTS`]): a cause that
/// persists (the cluster refuses the gateway a producer id) is not retried
/// in a tight loop.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between two replacements.
const MOST_BETWEEN_REPLACEMENTS: Duration = Duration::from_secs(30);
/// A producer that lived this long before it failed is replaced at once.
const HEALTHY_FOR: Duration = Duration::from_secs(60);

/// A producer client, with the context that notices its fatal error.
pub(crate) type Client = FutureProducer<FatalWatch>;

/// The handle: see the module. Cloning shares it.
#[derive(Clone)]
pub(crate) struct Producer {
    shared: Arc<Shared>,
}

/// What every clone of a [`Producer`] shares.
struct Shared {
    /// The producer in use.
    current: RwLock<Client>,
    /// What every new producer is created from.
    config: ClientConfig,
    /// The fatal error not yet reported to health, and whether one
    /// happened since the last replacement.
    failure: Arc<Failure>,
}

/// Errors and failures, between the producer's context, its replacement
/// and health.
struct Failure {
    /// How many errors producers reported: wakes the replacement.
    errors: watch::Sender<u64>,
    /// The reason of a fatal error, until health takes it.
    reason: std::sync::Mutex<Option<String>>,
    /// How many producers failed for good so far: wakes health.
    count: watch::Sender<u64>,
}

/// The producer's context: logs what librdkafka reports, and wakes the
/// replacement to look for a fatal error.
pub(crate) struct FatalWatch {
    failure: Arc<Failure>,
}

impl ClientContext for FatalWatch {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::error!(%error, reason, "librdkafka reported an error");
        self.failure.errors.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Producer {
    /// A producer created from `config`.
    pub(crate) fn new(config: ClientConfig) -> Result<Self, KafkaError> {
        let failure = Arc::new(Failure {
            errors: watch::Sender::new(0),
            reason: std::sync::Mutex::default(),
            count: watch::Sender::new(0),
        });
        let client = create(&config, &failure)?;
        Ok(Self {
            shared: Arc::new(Shared {
                current: RwLock::new(client),
                config,
                failure,
            }),
        })
    }

    /// Runs `call` with the producer current now.
    pub(crate) fn with<T>(&self, call: impl FnOnce(&Client) -> T) -> T {
        call(
            &self
                .shared
                .current
                .read()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    /// The producer current now (cloning shares it), for calls that
    /// block.
    pub(crate) fn current(&self) -> Client {
        self.with(Client::clone)
    }

    /// The reason of a fatal error not yet reported, once.
    pub(crate) fn take_failure(&self) -> Option<String> {
        self.shared
            .failure
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Changes each time a producer fails for good.
    pub(crate) fn failures(&self) -> watch::Receiver<u64> {
        self.shared.failure.count.subscribe()
    }

    /// Replaces the producer each time it fails for good, until the future
    /// is dropped; `replaced` is told of each replacement. Records the
    /// failed producer still holds fail with its fatal error.
    pub(crate) async fn replace_failed(&self, replaced: impl Fn()) {
        let mut errors = self.shared.failure.errors.subscribe();
        let mut backoff = FIRST_BACKOFF;
        let mut since = tokio::time::Instant::now();
        while errors.changed().await.is_ok() {
            let Some((code, reason)) = self.current().client().fatal_error() else {
                continue;
            };
            tracing::error!(
                ?code,
                reason,
                "the Kafka producer failed for good; a new one replaces it"
            );
            *self
                .shared
                .failure
                .reason
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(reason);
            self.shared.failure.count.send_modify(|n| *n += 1);
            loop {
                if since.elapsed() >= HEALTHY_FOR {
                    backoff = FIRST_BACKOFF;
                } else {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MOST_BETWEEN_REPLACEMENTS);
                }
                match create(&self.shared.config, &self.shared.failure) {
                    Ok(client) => {
                        let old = std::mem::replace(
                            &mut *self
                                .shared
                                .current
                                .write()
                                .unwrap_or_else(|p| p.into_inner()),
                            client,
                        );
                        // Dropping a producer purges and waits: off the
                        // runtime.
                        tokio::task::spawn_blocking(move || drop(old));
                        since = tokio::time::Instant::now();
                        // What the old one reported meanwhile is this one.
                        errors.mark_unchanged();
                        tracing::warn!("a new Kafka producer replaced the one that failed");
                        replaced();
                        break;
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot create a new Kafka producer; trying again");
                    }
                }
            }
        }
    }
}

/// A producer client from `config`, noting a fatal error in `failure`.
fn create(config: &ClientConfig, failure: &Arc<Failure>) -> Result<Client, KafkaError> {
    config
        .create_with_context(FatalWatch {
            failure: failure.clone(),
        })
        .map_err(redacted)
}
