//! What a client asked to consume, once validated: topics, group, start
//! position and acknowledgement settings.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A partition of a topic. The name is shared: keys, timers and commit
/// points copy a pointer, not the name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TopicPartition {
    /// The topic.
    pub(crate) topic: Arc<str>,
    /// The partition's number.
    pub(crate) partition: i32,
}

impl TopicPartition {
    /// Partition `partition` of `topic`.
    pub(crate) fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }

    /// The record at `offset` of this partition.
    pub(crate) fn at(&self, offset: i64) -> Position {
        Position {
            partition: self.clone(),
            offset,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.topic, self.partition)
    }
}

/// A record's position: its partition and offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Position {
    /// Its partition.
    pub(crate) partition: TopicPartition,
    /// Its offset in the partition.
    pub(crate) offset: i64,
}

/// The shortest ack timeout accepted, from a flag or a subscription.
pub(crate) const MIN_ACK_TIMEOUT: Duration = Duration::from_millis(100);
/// The longest ack timeout accepted, from a flag or a subscription (as
/// Google Pub/Sub's ack deadline).
pub(crate) const MAX_ACK_TIMEOUT: Duration = Duration::from_secs(600);
/// The largest ACK_MODE_MANUAL window accepted, from a flag or a
/// subscription: each delivery out is kept in memory until acknowledged.
pub(crate) const MAX_UNACKED: u32 = 10_000;

/// Where a subscription starts reading.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StartPosition {
    /// After the last event (or the group's committed offsets).
    Latest,
    /// At the first event still kept (or the group's committed offsets).
    Earliest,
    /// At the first record at or after this time, in ms since the epoch.
    Timestamp(i64),
    /// At these offsets; unlisted partitions as [`StartPosition::Latest`].
    Offsets(HashMap<TopicPartition, i64>),
}

/// The settings of an ACK_MODE_MANUAL subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManualAcks {
    /// How long a delivery may stay unacknowledged before it is sent again.
    pub(crate) ack_timeout: Duration,
    /// The most deliveries out and unsettled (held back for their key
    /// included).
    pub(crate) max_unacked: usize,
    /// How long a nacked or expired delivery waits; `None`: not at all.
    pub(crate) retry: Option<Backoff>,
    /// Where events that cannot be handled go; `None`: nowhere.
    pub(crate) dead_letter: Option<DeadLetters>,
    /// Whether events of one key are out one at a time.
    pub(crate) ordered_by_key: bool,
}

impl ManualAcks {
    /// Today's defaults: no retry policy, no dead letters, no key order.
    pub(crate) fn new(ack_timeout: Duration, max_unacked: usize) -> Self {
        Self {
            ack_timeout,
            max_unacked,
            retry: None,
            dead_letter: None,
            ordered_by_key: false,
        }
    }
}

/// A retry policy: exponential backoff between two bounds, with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// The wait after a first failed attempt.
    pub(crate) min: Duration,
    /// The longest wait.
    pub(crate) max: Duration,
}

impl Backoff {
    /// The wait after failed attempt `attempt` (from 1): `min * 2^(attempt-1)`
    /// within the bounds, less up to a fifth of it as `jitter` (0 to 1)
    /// says, never under `min`.
    pub(crate) fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        let nominal = self
            .min
            .checked_mul(1 << doublings.min(31))
            .unwrap_or(self.max)
            .min(self.max);
        nominal
            .mul_f64(1.0 - jitter.clamp(0.0, 1.0) / 5.0)
            .max(self.min)
    }
}

/// A dead-letter policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetters {
    /// The dead-letter topic; `None`: `<topic>.dlq` for each topic.
    pub(crate) topic: Option<String>,
    /// Attempts after which an event is dead-lettered; 0: only on request.
    pub(crate) max_attempts: u32,
}

impl DeadLetters {
    /// The dead-letter topic of events read from `topic`.
    pub(crate) fn topic_for(&self, topic: &str) -> String {
        self.topic
            .clone()
            .unwrap_or_else(|| format!("{topic}{DEAD_LETTER_SUFFIX}"))
    }
}

/// The header names a dead letter gains.
pub(crate) mod headers {
    /// Why the event was dead-lettered.
    pub(crate) const REASON: &str = "eventgateway-dlq-reason";
    /// The topic it was read from.
    pub(crate) const TOPIC: &str = "eventgateway-dlq-topic";
    /// Its partition there.
    pub(crate) const PARTITION: &str = "eventgateway-dlq-partition";
    /// Its offset there.
    pub(crate) const OFFSET: &str = "eventgateway-dlq-offset";
    /// How many times it was delivered.
    pub(crate) const ATTEMPTS: &str = "eventgateway-dlq-attempts";
    /// The consumer group (empty for an ephemeral subscription).
    pub(crate) const GROUP: &str = "eventgateway-dlq-group";
    /// When it was dead-lettered (RFC 3339, UTC).
    pub(crate) const TIME: &str = "eventgateway-dlq-time";
    /// How many of its headers could not be read, when any.
    pub(crate) const UNREADABLE: &str = "eventgateway-dlq-unreadable-headers";
}

/// What names the default dead-letter topic after its topic.
pub(crate) const DEAD_LETTER_SUFFIX: &str = ".dlq";

/// What a client asked to consume.
#[derive(Debug, Clone)]
pub(crate) struct SubscriptionSpec {
    /// Topics to consume, each once.
    pub(crate) topics: Vec<String>,
    /// Consumer group; `None` for an ephemeral subscription.
    pub(crate) group: Option<String>,
    /// Where to start.
    pub(crate) start: StartPosition,
    /// `Some` for ACK_MODE_MANUAL, `None` for ACK_MODE_AUTO.
    pub(crate) manual: Option<ManualAcks>,
    /// The share this stream reads through, with the other streams of its
    /// principal that name it (MANUAL with a group only).
    pub(crate) share: Option<String>,
}

impl SubscriptionSpec {
    /// Whether the subscription is served by a shared live tail: ephemeral,
    /// ACK_MODE_AUTO, from the latest event.
    pub(crate) fn shares_a_tail(&self) -> bool {
        self.group.is_none() && self.manual.is_none() && self.start == StartPosition::Latest
    }

    /// What this stream asks for that a share opened with `first` does not
    /// give: the first setting that differs (the window, `max_unacked`, is
    /// each stream's own).
    pub(crate) fn differs_from(&self, first: &Self) -> Option<&'static str> {
        let (mine, theirs) = match (&self.manual, &first.manual) {
            (Some(mine), Some(theirs)) => (mine, theirs),
            _ => return Some("ack_mode"),
        };
        [
            (self.topics != first.topics, "topics"),
            (self.start != first.start, "the start position"),
            (mine.ack_timeout != theirs.ack_timeout, "ack_timeout"),
            (mine.retry != theirs.retry, "retry_policy"),
            (mine.dead_letter != theirs.dead_letter, "dead_letter_policy"),
            (
                mine.ordered_by_key != theirs.ordered_by_key,
                "ordered_by_key",
            ),
        ]
        .into_iter()
        .find_map(|(differs, name)| differs.then_some(name))
    }

    /// The dead-letter topics this subscription may write, each once.
    pub(crate) fn dead_letter_topics(&self) -> Vec<String> {
        let Some(policy) = self.manual.as_ref().and_then(|m| m.dead_letter.as_ref()) else {
            return Vec::new();
        };
        let mut topics: Vec<String> = self.topics.iter().map(|t| policy.topic_for(t)).collect();
        topics.sort();
        topics.dedup();
        topics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_its_bounds_and_jitter_only_shortens_it() {
        let backoff = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(backoff.delay(1, 0.0), Duration::from_millis(100));
        assert_eq!(
            backoff.delay(1, 1.0),
            Duration::from_millis(100),
            "never under min"
        );
        assert_eq!(backoff.delay(2, 0.0), Duration::from_millis(200));
        assert_eq!(backoff.delay(3, 1.0), Duration::from_millis(320));
        assert_eq!(backoff.delay(5, 0.0), Duration::from_secs(1));
        assert_eq!(backoff.delay(u32::MAX, 0.5), Duration::from_millis(900));
        let none = Backoff {
            min: Duration::ZERO,
            max: Duration::ZERO,
        };
        assert_eq!(none.delay(7, 0.3), Duration::ZERO);
    }
}
