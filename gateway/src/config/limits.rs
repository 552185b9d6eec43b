//! What the gateway holds at once and for how long: payloads, calls,
//! streams, subscriptions and consumers; a subscription's buffers, acks
//! and commits; and the shutdown's timing.

use std::time::Duration;

use clap::Args;

use crate::subscribe::{MAX_ACK_TIMEOUT, MAX_UNACKED, MIN_ACK_TIMEOUT};

/// The smallest byte buffer of a subscription.
const MIN_BUFFER_BYTES: usize = 64 * 1024;
/// The shortest stall timeout.
const MIN_STALL_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest revoke grace accepted: well within the classic protocol's
/// rebalance timeout (`max.poll.interval.ms`, 300 s by default), past which
/// the group would drop the member.
pub(crate) const MAX_REVOKE_GRACE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitFlags {
    /// Largest event payload accepted by PublishEvent, in bytes; larger ones
    /// get INVALID_ARGUMENT. The producer takes records up to this plus 64
    /// KiB (key and headers); the broker's message.max.bytes (1 MiB by
    /// default) must take them too.
    #[arg(long, env = "MAX_PAYLOAD_BYTES", default_value_t = 1_000_000)]
    pub max_payload_bytes: usize,

    /// Upper bound on any unary call, whatever deadline the client sent.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Most unary calls (PublishEvent, Acknowledge) handled at once across
    /// all connections, counted once a call's request has arrived; further
    /// calls get RESOURCE_EXHAUSTED at once instead of queueing. Streams
    /// have limits of their own; health checks have none.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: usize,

    /// Most Subscribe and StreamingSubscribe streams open at once; further
    /// ones get RESOURCE_EXHAUSTED. Streams never count against
    /// --max-concurrent-requests.
    #[arg(long, env = "MAX_SUBSCRIPTIONS", default_value_t = 50_000)]
    pub max_subscriptions: usize,

    /// Most Kafka consumers at once: one per subscription with a group,
    /// MANUAL acks or a replay, one per live tail. A subscription that would
    /// need another gets RESOURCE_EXHAUSTED (each consumer takes threads and
    /// connections of its own).
    #[arg(long, env = "MAX_CONSUMERS", default_value_t = 256)]
    pub max_consumers: usize,

    /// Most PublishEvents streams open at once; further ones get
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "MAX_PUBLISH_STREAMS", default_value_t = 1_000)]
    pub max_publish_streams: usize,

    /// The percent of each global cap (--max-publish-streams,
    /// --max-subscriptions, --max-consumers) one principal may hold, or one
    /// connection when calls carry no principal; a policy grant's
    /// `quota.max_share_percent` overrides it for its principals.
    #[arg(long, env = "MAX_SHARE_PERCENT", default_value_t = 25)]
    pub max_share_percent: u32,

    /// Longest a PublishEvents stream may send nothing: then it is ended
    /// (DEADLINE_EXCEEDED, saying so), and its place is free.
    #[arg(long, env = "PUBLISH_IDLE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "5m")]
    pub publish_idle_timeout: Duration,
}

impl LimitFlags {
    /// Checks what clap's types cannot.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.max_payload_bytes == 0 {
            return Err("--max-payload-bytes must be at least 1".into());
        }
        for (name, limit) in [
            ("--max-concurrent-requests", self.max_concurrent_requests),
            ("--max-subscriptions", self.max_subscriptions),
            ("--max-consumers", self.max_consumers),
            ("--max-publish-streams", self.max_publish_streams),
        ] {
            if limit == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if !(1..=100).contains(&self.max_share_percent) {
            return Err("--max-share-percent must be 1 to 100".into());
        }
        if self.publish_idle_timeout.is_zero() {
            return Err("--publish-idle-timeout must be above 0".into());
        }
        super::positive(&[("--request-timeout", self.request_timeout)])
    }
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Subscriptions")]
pub struct SubscriptionFlags {
    /// Deliveries a subscription buffers for a slow client before its Kafka
    /// consumer is paused.
    #[arg(long, env = "SUBSCRIPTION_BUFFER", default_value_t = 64)]
    pub subscription_buffer: usize,

    /// Bytes of deliveries a subscription buffers for a slow client before
    /// its Kafka consumer is paused (a delivery larger than this still goes,
    /// alone).
    #[arg(long, env = "SUBSCRIPTION_BUFFER_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub subscription_buffer_bytes: usize,

    /// Bytes of deliveries all subscriptions together buffer for their
    /// clients; a subscription that finds none free waits (its consumer
    /// paused). Also bounds what the Kafka consumers prefetch: each new one
    /// gets this divided by the consumers open, at most half of
    /// --subscription-buffer-bytes (1 to 16 MiB).
    #[arg(long, env = "TOTAL_BUFFER_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub total_buffer_bytes: usize,

    /// How long a subscription's client may read nothing while deliveries
    /// wait for it; then its stream ends with RESOURCE_EXHAUSTED, freeing
    /// its buffer (as Kafka's max.poll.interval.ms removes a consumer that
    /// stops polling).
    #[arg(long, env = "STALL_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub stall_timeout: Duration,

    /// ACK_MODE_MANUAL: how long a delivery may stay unacknowledged before it
    /// is delivered again, unless the subscription asks otherwise.
    #[arg(long, env = "ACK_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub ack_timeout: Duration,

    /// ACK_MODE_MANUAL: the most deliveries a subscription has out and
    /// unacknowledged, unless it asks otherwise (max_unacked).
    #[arg(long, env = "MAX_UNACKED", default_value_t = 100)]
    pub max_unacked: u32,

    /// How often a subscription with a consumer group commits its offsets
    /// (what was settled in ACK_MODE_MANUAL, what was handed over in AUTO):
    /// after a gateway crash, what was settled since the last commit is
    /// delivered again.
    #[arg(long, env = "COMMIT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub commit_interval: Duration,

    /// On a rebalance, how long a subscription losing partitions waits for
    /// the acks of its deliveries out on them (sending nothing new of them)
    /// before it hands them on with what was settled committed; the group's
    /// rebalance waits as long. 0 hands them on at once (the deliveries out
    /// come again to the next owner).
    #[arg(long, env = "REVOKE_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub revoke_grace: Duration,
}

impl SubscriptionFlags {
    /// Checks what clap's types cannot.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.subscription_buffer == 0 {
            return Err("--subscription-buffer must be at least 1".into());
        }
        if self.subscription_buffer_bytes < MIN_BUFFER_BYTES {
            return Err(format!(
                "--subscription-buffer-bytes must be at least {MIN_BUFFER_BYTES}"
            ));
        }
        if self.total_buffer_bytes < self.subscription_buffer_bytes {
            return Err("--total-buffer-bytes must be at least --subscription-buffer-bytes".into());
        }
        if self.stall_timeout < MIN_STALL_TIMEOUT {
            return Err(format!(
                "--stall-timeout must be at least {MIN_STALL_TIMEOUT:?}"
            ));
        }
        if !(1..=MAX_UNACKED).contains(&self.max_unacked) {
            return Err(format!("--max-unacked must be 1 to {MAX_UNACKED}"));
        }
        if !(MIN_ACK_TIMEOUT..=MAX_ACK_TIMEOUT).contains(&self.ack_timeout) {
            return Err(format!(
                "--ack-timeout must be {MIN_ACK_TIMEOUT:?} to {MAX_ACK_TIMEOUT:?}"
            ));
        }
        if self.revoke_grace > MAX_REVOKE_GRACE {
            return Err(format!(
                "--revoke-grace must be at most {MAX_REVOKE_GRACE:?}"
            ));
        }
        super::positive(&[("--commit-interval", self.commit_interval)])
    }
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Shutdown")]
pub struct ShutdownFlags {
    /// At shutdown, how long an ACK_MODE_MANUAL stream with deliveries out
    /// keeps taking their acks (on a StreamingSubscribe stream) before it
    /// ends, sending nothing new meanwhile: what is settled then is
    /// committed, so a client that keeps acking gets nothing twice after a
    /// rolling restart. 0 ends streams at once. Within --shutdown-grace.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Longest time shutdown waits for in-flight calls and for the producer
    /// to flush.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "15s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

impl ShutdownFlags {
    /// Checks what clap's types cannot.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.drain_timeout >= self.shutdown_grace {
            return Err("--drain-timeout must be shorter than --shutdown-grace".into());
        }
        Ok(())
    }
}
