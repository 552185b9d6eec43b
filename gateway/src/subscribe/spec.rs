//! What a client asked to consume, once validated: topics, group, start
//! position and acknowledgement settings.

use std::collections::HashMap;
use std::time::Duration;

/// A topic partition.
pub(crate) type Partition = (String, i32);

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
    Offsets(HashMap<Partition, i64>),
}

/// The settings of an ACK_MODE_MANUAL subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ManualAcks {
    /// How long a delivery may stay unacknowledged before it is sent again.
    pub(crate) ack_timeout: Duration,
    /// The most deliveries out and unacknowledged.
    pub(crate) max_unacked: usize,
}

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
}

impl SubscriptionSpec {
    /// Whether the subscription is served by a shared live tail: ephemeral,
    /// ACK_MODE_AUTO, from the latest event.
    pub(crate) fn shares_a_tail(&self) -> bool {
        self.group.is_none() && self.manual.is_none() && self.start == StartPosition::Latest
    }
}
