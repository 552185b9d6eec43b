//! Counters of one subscription, for observing flow control and redelivery
//! (tests read them through `RunningGateway::subscription`, with the
//! `testing` feature).
#![cfg_attr(not(feature = "testing"), allow(unreachable_pub))]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Counters of one subscription.
#[derive(Debug, Default)]
pub struct SubscriptionStats {
    /// Whether the consumer is paused (client behind, or ack window full).
    pub paused: Flag,
    /// How many times it was paused.
    pub pauses: Count,
    /// First deliveries handed to the channel.
    pub delivered: Count,
    /// Redeliveries handed to the channel.
    pub redelivered: Count,
    /// Records read from Kafka and held by the task, not yet in the channel.
    pub held: Level,
    /// Bytes of the budget it holds (buffered deliveries, and room
    /// reserved for the next).
    pub buffered: Level,
    /// ACK_MODE_MANUAL: deliveries out and not acknowledged.
    pub unacked: Level,
    /// ACK_MODE_MANUAL: lease and retry timers held, live and stale.
    pub timers: Level,
    /// Partitions being revoked: waiting (within the revoke grace) for
    /// their deliveries out before they are handed on.
    pub revoking: Level,
}

/// A count that only grows.
#[derive(Debug, Default)]
pub struct Count(AtomicU64);

/// A quantity that goes up and down.
#[derive(Debug, Default)]
pub struct Level(AtomicUsize);

/// A yes or a no.
#[derive(Debug, Default)]
pub struct Flag(AtomicBool);

impl Count {
    /// The count now.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    pub(super) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::SeqCst);
    }
}

impl Level {
    /// The level now.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    pub(super) fn set(&self, level: usize) {
        self.0.store(level, Ordering::SeqCst);
    }
}

impl Flag {
    /// Whether it is set now.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub(super) fn set(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }
}
