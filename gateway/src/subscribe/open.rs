//! A subscription recorded as open, from its first message to its end:
//! the registry entry, the gauge and the place among the open ones; how a
//! stream joins a share or a live tail.

use std::collections::HashMap;
use std::sync::Arc;

use super::fanout::Subscriber;
use super::registry::{Registry, SubscriptionHandle};
use super::share::Member;
use super::stats::SubscriptionStats;
use super::stream::{self, DeliveryStream};
use super::{Opened, Settler, SubscribeStream, SubscriptionSpec, Subscriptions};
use crate::error::Error;
use crate::limit::Permit;
use crate::metrics::Metrics;
use crate::text::{clip_list, id_prefix};

impl Subscriptions {
    /// A stream joined a share open here: its verbs go to the share's task,
    /// and it is forgotten when it ends.
    pub(super) fn joined(
        &self,
        id: String,
        ending: stream::Ending,
        member: Member,
        slot: Permit,
        owner: Option<Arc<str>>,
    ) -> Opened {
        let handle = SubscriptionHandle {
            stats: member.stats,
            verbs: Some(member.verbs.clone()),
            owner,
        };
        let open = self.opened(&id, handle, slot);
        tracing::info!(subscription = id_prefix(&id), "joined a share");
        let stream = DeliveryStream::new(ending, None)
            .signing(self.routing.clone())
            .waking(member.wake)
            .on_end(move || drop(open));
        Opened {
            stream: Box::pin(stream),
            settler: Some(Settler::new(member.verbs, id)),
        }
    }

    /// An ephemeral AUTO stream from the latest event: one more subscriber
    /// of the live tail of its topics.
    pub(super) async fn join_tail(
        &self,
        id: String,
        spec: SubscriptionSpec,
        partitions: HashMap<String, Vec<i32>>,
        slot: Permit,
        owner: Option<Arc<str>>,
    ) -> Result<SubscribeStream, Error> {
        let (deliveries, ending) = stream::channel(&id, self.limits.buffer);
        let stats = Arc::new(SubscriptionStats::default());
        let subscriber = Subscriber {
            deliveries,
            stats: stats.clone(),
        };
        self.fanout.join(&spec, partitions, subscriber).await?;
        let handle = SubscriptionHandle {
            stats,
            verbs: None,
            owner,
        };
        let open = self.opened(&id, handle, slot);
        tracing::info!(topics = %clip_list(&spec.topics), "live tail joined");
        Ok(Box::pin(
            DeliveryStream::new(ending, None).on_end(move || drop(open)),
        ))
    }

    /// Records subscription `id` as open, in `slot`, until the returned
    /// guard goes.
    pub(super) fn opened(&self, id: &str, handle: SubscriptionHandle, slot: Permit) -> Open {
        self.registry.insert(id, handle);
        self.metrics.delivery().subscriptions(1);
        tracing::info!(subscription = id_prefix(id), "subscription started");
        Open {
            id: id.to_owned(),
            registry: self.registry.clone(),
            metrics: self.metrics.clone(),
            _slot: slot,
        }
    }
}

/// A subscription recorded as open: forgotten (registry, gauge, log) when
/// this goes, whichever way its stream or task ends.
pub(super) struct Open {
    /// The subscription's id.
    id: String,
    /// Where it is recorded.
    registry: Registry,
    /// Where open subscriptions are counted.
    metrics: Metrics,
    /// Its place among the open subscriptions.
    _slot: Permit,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.registry.remove(&self.id);
        self.metrics.delivery().subscriptions(-1);
        tracing::info!(subscription = id_prefix(&self.id), "subscription ended");
    }
}
