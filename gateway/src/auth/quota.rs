//! Quotas per principal: publish rates as token buckets (a burst of
//! `burst_seconds` of the rate may be spent at once, then the rate holds),
//! and a cap on open subscriptions. One principal over its quota slows no
//! one else: each principal has buckets of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::policy::Quota;

/// Principals whose usage is kept before idle, full entries are dropped.
const SWEEP_ABOVE: usize = 10_000;

/// Which limit a call went over, and when it can be tried again.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Exceeded {
    /// Publish events per second.
    Events { rate: f64, retry_after: Duration },
    /// Publish bytes per second.
    Bytes { rate: f64, retry_after: Duration },
    /// Open subscriptions.
    Subscriptions { limit: u32 },
}

impl Exceeded {
    /// The limit's name, as a metric label.
    pub(crate) fn limit(&self) -> &'static str {
        match self {
            Exceeded::Events { .. } => "publish_events_per_second",
            Exceeded::Bytes { .. } => "publish_bytes_per_second",
            Exceeded::Subscriptions { .. } => "subscriptions",
        }
    }

    /// When to retry, when waiting helps (a rate); a subscription cap
    /// frees only when one of the principal's subscriptions ends.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Exceeded::Events { retry_after, .. } | Exceeded::Bytes { retry_after, .. } => {
                Some(*retry_after)
            }
            Exceeded::Subscriptions { .. } => None,
        }
    }

    /// What the limit is, for a message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Exceeded::Events { rate, .. } => format!("{rate} published events per second"),
            Exceeded::Bytes { rate, .. } => format!("{rate} published bytes per second"),
            Exceeded::Subscriptions { limit } => format!("{limit} open subscriptions"),
        }
    }
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Self {
        Self {
            tokens: capacity,
            at: now,
        }
    }

    /// Refills for the time since the last call; returns how long until
    /// `cost` (at most the capacity) is there, zero when it is.
    fn wait_for(&mut self, cost: f64, rate: f64, capacity: f64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        self.at = now;
        let needed = cost.min(capacity);
        if self.tokens >= needed {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((needed - self.tokens) / rate)
        }
    }
}

/// One principal's usage.
#[derive(Debug, Default)]
struct Usage {
    events: Option<Bucket>,
    bytes: Option<Bucket>,
    subscriptions: u32,
}

/// Usage by principal; cloning shares it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Quotas(Arc<Mutex<HashMap<Arc<str>, Usage>>>);

/// An open subscription counted against its principal's cap, until this
/// goes.
#[derive(Debug)]
pub(crate) struct SubscriptionSlot {
    quotas: Quotas,
    principal: Arc<str>,
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        if let Some(usage) = self.quotas.lock().get_mut(&self.principal) {
            usage.subscriptions = usage.subscriptions.saturating_sub(1);
        }
    }
}

impl Quotas {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Usage>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn usage<'a>(map: &'a mut HashMap<Arc<str>, Usage>, principal: &Arc<str>) -> &'a mut Usage {
        if map.len() > SWEEP_ABOVE && !map.contains_key(principal) {
            // Principals with nothing open go; their buckets start full
            // again if they come back.
            map.retain(|_, usage| usage.subscriptions > 0);
        }
        map.entry(principal.clone()).or_default()
    }

    /// Spends one event of `bytes` from `principal`'s publish buckets, or
    /// says which is empty and for how long.
    pub(crate) fn publish(
        &self,
        principal: &Arc<str>,
        quota: &Quota,
        bytes: usize,
    ) -> Result<(), Exceeded> {
        let now = Instant::now();
        let mut map = self.lock();
        let usage = Self::usage(&mut map, principal);
        let mut waits = Vec::with_capacity(2);
        if let Some(rate) = quota.events_per_second {
            let capacity = (rate * quota.burst_seconds).max(1.0);
            let bucket = usage.events.get_or_insert(Bucket::full(capacity, now));
            let wait = bucket.wait_for(1.0, rate, capacity, now);
            waits.push((
                wait,
                Exceeded::Events {
                    rate,
                    retry_after: wait,
                },
            ));
        }
        if let Some(rate) = quota.bytes_per_second {
            let capacity = (rate * quota.burst_seconds).max(1.0);
            let bucket = usage.bytes.get_or_insert(Bucket::full(capacity, now));
            let wait = bucket.wait_for(bytes as f64, rate, capacity, now);
            waits.push((
                wait,
                Exceeded::Bytes {
                    rate,
                    retry_after: wait,
                },
            ));
        }
        if let Some((_, exceeded)) = waits
            .into_iter()
            .filter(|(wait, _)| !wait.is_zero())
            .max_by_key(|(wait, _)| *wait)
        {
            return Err(exceeded);
        }
        // Both have room: spend from both (a large event may leave a debt
        // that the rate pays back before the next).
        if let Some(bucket) = &mut usage.events {
            bucket.tokens -= 1.0;
        }
        if let Some(bucket) = &mut usage.bytes {
            bucket.tokens -= bytes as f64;
        }
        Ok(())
    }

    /// Counts one more open subscription of `principal`, unless its cap is
    /// reached.
    pub(crate) fn open_subscription(
        &self,
        principal: &Arc<str>,
        quota: &Quota,
    ) -> Result<SubscriptionSlot, Exceeded> {
        let mut map = self.lock();
        let usage = Self::usage(&mut map, principal);
        if let Some(limit) = quota.subscriptions {
            if usage.subscriptions >= limit {
                return Err(Exceeded::Subscriptions { limit });
            }
        }
        usage.subscriptions += 1;
        Ok(SubscriptionSlot {
            quotas: self.clone(),
            principal: principal.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(events: Option<f64>, bytes: Option<f64>) -> Quota {
        Quota {
            events_per_second: events,
            bytes_per_second: bytes,
            burst_seconds: 1.0,
            subscriptions: Some(1),
            max_share_percent: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_allowed_then_the_rate_holds_per_principal() {
        let quotas = Quotas::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let q = quota(Some(10.0), None);
        for _ in 0..10 {
            quotas.publish(&a, &q, 100).unwrap();
        }
        let over = quotas.publish(&a, &q, 100).unwrap_err();
        assert_eq!(over.limit(), "publish_events_per_second");
        let retry = over.retry_after().unwrap();
        assert!(
            retry > Duration::ZERO && retry <= Duration::from_millis(100),
            "{retry:?}"
        );
        quotas
            .publish(&b, &q, 100)
            .expect("another principal is unaffected");
        tokio::time::advance(retry).await;
        quotas
            .publish(&a, &q, 100)
            .expect("the rate refilled one event");
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_are_limited_and_an_event_larger_than_the_burst_still_passes_alone() {
        let quotas = Quotas::default();
        let a: Arc<str> = "a".into();
        let q = quota(None, Some(1000.0));
        quotas
            .publish(&a, &q, 5000)
            .expect("a full bucket takes one large event");
        let over = quotas.publish(&a, &q, 10).unwrap_err();
        assert_eq!(over.limit(), "publish_bytes_per_second");
        assert!(over.retry_after().unwrap() >= Duration::from_secs(4));
    }

    #[test]
    fn subscriptions_are_capped_until_one_ends() {
        let quotas = Quotas::default();
        let a: Arc<str> = "a".into();
        let q = quota(None, None);
        let slot = quotas.open_subscription(&a, &q).unwrap();
        assert_eq!(
            quotas.open_subscription(&a, &q).unwrap_err(),
            Exceeded::Subscriptions { limit: 1 }
        );
        drop(slot);
        quotas.open_subscription(&a, &q).unwrap();
    }
}
