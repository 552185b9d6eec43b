//! Each caller's share of the gateway's global caps (PublishEvents
//! streams, subscriptions, Kafka consumers): one principal, or one
//! connection when calls carry no principal, holds at most a fraction of
//! each (a quarter by default, `--max-share-percent`; a policy grant's
//! `quota.max_share_percent` overrides it for its principals), so that no
//! single client can take what everyone shares.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// A global cap that is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Capped {
    /// `--max-publish-streams`.
    PublishStreams,
    /// `--max-subscriptions`.
    Subscriptions,
    /// `--max-consumers`.
    Consumers,
}

impl Capped {
    /// What is held, for messages and the `limit` label.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Capped::PublishStreams => "share_of_publish_streams",
            Capped::Subscriptions => "share_of_subscriptions",
            Capped::Consumers => "share_of_consumers",
        }
    }

    /// The flag that sets the cap.
    pub(crate) fn flag(self) -> &'static str {
        match self {
            Capped::PublishStreams => "--max-publish-streams",
            Capped::Subscriptions => "--max-subscriptions",
            Capped::Consumers => "--max-consumers",
        }
    }
}

/// Who holds a share: a principal, or a connection (its peer address).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Holder {
    /// An authenticated principal, across all its connections.
    Principal(Arc<str>),
    /// A connection whose calls carry no principal.
    Connection(SocketAddr),
}

/// How much of each cap each holder holds; cloning shares it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shares(Arc<Mutex<HashMap<(Capped, Holder), usize>>>);

/// One unit of a cap held, until this goes.
#[derive(Debug)]
pub(crate) struct ShareSlot {
    shares: Shares,
    key: (Capped, Holder),
}

impl Drop for ShareSlot {
    fn drop(&mut self) {
        let mut held = self.shares.lock();
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

impl Shares {
    fn lock(&self) -> MutexGuard<'_, HashMap<(Capped, Holder), usize>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One more unit of `capped` for `holder`, who may hold `most` (at
    /// least 1); `None` when it holds that many already.
    pub(crate) fn take(&self, capped: Capped, holder: Holder, most: usize) -> Option<ShareSlot> {
        let key = (capped, holder);
        let mut held = self.lock();
        let count = held.entry(key.clone()).or_default();
        if *count >= most {
            return None;
        }
        *count += 1;
        drop(held);
        Some(ShareSlot {
            shares: self.clone(),
            key,
        })
    }
}

/// The most of a cap of `cap` one holder may hold at `percent`: at least 1.
pub(crate) fn most_of(cap: usize, percent: u32) -> usize {
    (cap.saturating_mul(percent as usize) / 100).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_takes_its_share_and_no_more_and_gets_it_back() {
        let shares = Shares::default();
        let a = Holder::Principal("svc-a".into());
        let b = Holder::Connection("127.0.0.1:4000".parse().unwrap());
        let most = most_of(8, 25);
        assert_eq!(most, 2);
        let first = shares.take(Capped::Subscriptions, a.clone(), most).unwrap();
        let _second = shares.take(Capped::Subscriptions, a.clone(), most).unwrap();
        assert!(shares
            .take(Capped::Subscriptions, a.clone(), most)
            .is_none());
        // Others, and other caps, are apart.
        assert!(shares.take(Capped::Subscriptions, b, most).is_some());
        assert!(shares.take(Capped::Consumers, a.clone(), most).is_some());
        drop(first);
        assert!(shares.take(Capped::Subscriptions, a, most).is_some());
        assert_eq!(most_of(2, 25), 1, "at least one");
        assert_eq!(most_of(1_000, 100), 1_000);
    }
}
