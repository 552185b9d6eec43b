//! The subscriptions open on this gateway instance, by id: how Acknowledge
//! and Settle reach a stream's task, and each stream's counters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot};

use super::delivery::AckRef;
use super::ledger::{Outcome, Verb};
use super::stats::SubscriptionStats;
use crate::error::Error;
use crate::text::clip;

/// Verbs for one subscription's task: from one Acknowledge or Settle call,
/// or one `settle` message of a StreamingSubscribe stream.
#[derive(Debug)]
pub(super) struct VerbRequest {
    /// Each verb, with the attempt its ack id names (or why it names none).
    pub(super) verbs: Vec<(Verb, Result<AckRef, String>)>,
    /// Acknowledge: when one ack id names nothing handed out, apply none.
    pub(super) all_or_none: bool,
    /// What each verb did, in order, or why none was applied.
    pub(super) reply: oneshot::Sender<Result<Vec<Outcome>, Error>>,
}

/// Where a subscription's verbs go.
pub(super) type Verbs = mpsc::Sender<VerbRequest>;

/// One open subscription.
#[derive(Debug, Clone)]
pub(super) struct SubscriptionHandle {
    /// Its flow-control and redelivery counters (read by the tests).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(super) stats: Arc<SubscriptionStats>,
    /// Where its verbs go; `None` in ACK_MODE_AUTO.
    pub(super) verbs: Option<Verbs>,
    /// The principal that opened it, the only one that may act on it; anyone
    /// when `None` (no authentication).
    pub(super) owner: Option<Arc<str>>,
}

/// Open subscriptions by id; cloning shares them.
#[derive(Debug, Clone, Default)]
pub(super) struct Registry(Arc<Mutex<HashMap<String, SubscriptionHandle>>>);

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, SubscriptionHandle>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records an open subscription.
    pub(super) fn insert(&self, id: &str, handle: SubscriptionHandle) {
        self.lock().insert(id.to_owned(), handle);
    }

    /// Forgets a subscription that ended.
    pub(super) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The counters of an open subscription.
    #[cfg(feature = "testing")]
    pub(super) fn stats(&self, id: &str) -> Option<Arc<SubscriptionStats>> {
        self.lock().get(id).map(|handle| handle.stats.clone())
    }

    /// Where the verbs `principal` sends to subscription `id` go. An id
    /// that is not open here, the id of an ACK_MODE_AUTO subscription and
    /// the id of a subscription another principal opened get the same
    /// answer, so that a caller learns nothing from guessing ids (the last
    /// is [`Error::NotOwner`], for the audit log).
    pub(super) fn verbs(&self, id: &str, principal: Option<&str>) -> Result<Verbs, Error> {
        let registry = self.lock();
        let handle = registry.get(id);
        if let Some(owner) = handle.and_then(|handle| handle.owner.as_deref()) {
            if principal != Some(owner) {
                return Err(Error::NotOwner {
                    id: clip(id).to_string(),
                });
            }
        }
        handle
            .and_then(|handle| handle.verbs.clone())
            .ok_or_else(|| Error::SubscriptionNotFound(clip(id).to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn verbs_reach_manual_subscriptions_only() {
        let registry = Registry::default();
        let (tx, _rx) = mpsc::channel(1);
        registry.insert(
            "manual",
            SubscriptionHandle {
                stats: Arc::default(),
                verbs: Some(tx),
                owner: None,
            },
        );
        registry.insert(
            "auto",
            SubscriptionHandle {
                stats: Arc::default(),
                verbs: None,
                owner: None,
            },
        );
        assert!(registry.verbs("manual", None).is_ok());
        let auto = registry.verbs("auto", None).unwrap_err();
        let gone = registry.verbs("gone", None).unwrap_err();
        assert_eq!((auto.code(), gone.code()), (Code::NotFound, Code::NotFound));
        assert_eq!(
            auto.to_string().replace("auto", "gone"),
            gone.to_string(),
            "the same answer for both"
        );
        let (tx, _rx) = mpsc::channel(1);
        registry.insert(
            "theirs",
            SubscriptionHandle {
                stats: Arc::default(),
                verbs: Some(tx),
                owner: Some("svc-b".into()),
            },
        );
        assert!(registry.verbs("theirs", Some("svc-b")).is_ok());
        let foreign = registry.verbs("theirs", Some("svc-a")).unwrap_err();
        assert!(matches!(foreign, Error::NotOwner { .. }));
        assert_eq!(foreign.code(), Code::NotFound);
        assert_eq!(
            foreign.to_string().replace("theirs", "gone"),
            gone.to_string(),
            "another principal's id is answered as an unknown one"
        );
        registry.remove("manual");
        assert_eq!(
            registry.verbs("manual", None).unwrap_err().code(),
            Code::NotFound
        );
    }
}
