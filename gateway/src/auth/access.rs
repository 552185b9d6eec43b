//! What the service asks before it acts for a caller: may it publish to
//! this topic (and is it within its rates), may it subscribe to these topics
//! with this group (and within its subscription cap), and is it within its
//! share of the gateway's global caps. Without a policy every caller may do
//! everything, as before, within its share. A subscription's stream is
//! watched: a policy reload that revokes its rights ends it with
//! PERMISSION_DENIED.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use eventgateway_runtime::reload::Reloaded;
use futures_util::Stream;
use tokio_stream::wrappers::WatchStream;
use tonic::Status;

use super::policy::{Operation, Policy, SubscribeDenied};
use super::quota::{Exceeded, Quotas, SubscriptionSlot};
use super::share::{most_of, Capped, Holder, ShareSlot, Shares};
use super::{audit, Caller};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::text::clip;

/// The policy, the quotas and the shares; cloning shares them.
#[derive(Clone)]
pub(crate) struct Access {
    policy: Option<Reloaded<Policy>>,
    quotas: Quotas,
    shares: Shares,
    caps: Caps,
    metrics: Metrics,
}

/// The global caps that are shared out, and the share each caller gets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    /// `--max-publish-streams`.
    pub(crate) publish_streams: usize,
    /// `--max-subscriptions`.
    pub(crate) subscriptions: usize,
    /// `--max-consumers`.
    pub(crate) consumers: usize,
    /// `--max-share-percent`: what one principal or connection may hold of
    /// each, unless its grant's quota says otherwise.
    pub(crate) share_percent: u32,
}

/// What a subscription's caller was granted: the subscription slot it
/// holds, and what its stream is re-checked against.
pub(crate) struct Admission {
    /// Held until the stream goes: the principal's subscription count.
    _slot: Option<SubscriptionSlot>,
    /// Held until the stream goes: the caller's shares of the caps.
    _shares: Vec<ShareSlot>,
    recheck: Option<Recheck>,
}

/// A subscription's rights, checked again at each policy change.
struct Recheck {
    caller: Caller,
    principal: Arc<str>,
    topics: Vec<String>,
    group: Option<String>,
    dead_letters: Vec<String>,
    policies: WatchStream<Arc<Policy>>,
    metrics: Metrics,
}

impl Access {
    /// Access under `policy` (none: everything is allowed), each caller
    /// within its share of `caps`.
    pub(crate) fn new(policy: Option<Reloaded<Policy>>, caps: Caps, metrics: Metrics) -> Self {
        Self {
            policy,
            quotas: Quotas::default(),
            shares: Shares::default(),
            caps,
            metrics,
        }
    }

    /// One unit of `capped` for `caller` (its principal, or else its
    /// connection), within its share; RESOURCE_EXHAUSTED beyond it.
    pub(crate) fn share(
        &self,
        caller: &Caller,
        capped: Capped,
    ) -> Result<Option<ShareSlot>, Error> {
        let holder = match (&caller.principal, caller.peer) {
            (Some(principal), _) => Holder::Principal(principal.clone()),
            (None, Some(peer)) => Holder::Connection(peer),
            (None, None) => return Ok(None),
        };
        let cap = match capped {
            Capped::PublishStreams => self.caps.publish_streams,
            Capped::Subscriptions => self.caps.subscriptions,
            Capped::Consumers => self.caps.consumers,
        };
        let (percent, grant) = match self.applies(caller) {
            Some((policy, principal)) => match policy.quota(principal) {
                Some((quota, grant)) => (
                    quota.max_share_percent.unwrap_or(self.caps.share_percent),
                    grant.to_owned(),
                ),
                None => (self.caps.share_percent, "-".to_owned()),
            },
            None => (self.caps.share_percent, "-".to_owned()),
        };
        let most = most_of(cap, percent);
        if let Some(slot) = self.shares.take(capped, holder.clone(), most) {
            return Ok(Some(slot));
        }
        audit::throttled(caller, capped.name(), &grant, &self.metrics);
        let who = match holder {
            Holder::Principal(principal) => format!("principal {}", clip(&principal)),
            Holder::Connection(_) => "this connection".to_owned(),
        };
        Err(Error::Saturated(format!(
            "{most} held by {who}, its share ({percent}% of {}, {cap}); retry once one of them has ended",
            capped.flag()
        )))
    }

    /// The webhook route the policy declares for `topic`, if it does.
    pub(crate) fn webhook(&self, topic: &str) -> Option<super::webhook::Webhook> {
        self.policy.as_ref()?.current().webhook(topic).cloned()
    }

    /// The policy and the caller's principal, when a policy applies.
    fn applies<'a>(&self, caller: &'a Caller) -> Option<(Arc<Policy>, &'a Arc<str>)> {
        Some((self.policy.as_ref()?.current(), caller.principal.as_ref()?))
    }

    fn over_quota(
        &self,
        caller: &Caller,
        principal: &str,
        grant: &str,
        exceeded: Exceeded,
    ) -> Error {
        audit::throttled(caller, exceeded.limit(), grant, &self.metrics);
        let retry_after = exceeded.retry_after();
        Error::OverQuota {
            principal: clip(principal).to_string(),
            limit: exceeded.describe(),
            retry: match retry_after {
                Some(after) => format!("retry in {} ms", after.as_millis().max(1)),
                None => "retry once one of its subscriptions has ended".to_owned(),
            },
            retry_after,
        }
    }

    /// Whether `caller` may publish an event of `bytes` to `topic` now.
    pub(crate) fn publish(&self, caller: &Caller, topic: &str, bytes: usize) -> Result<(), Error> {
        let Some((policy, principal)) = self.applies(caller) else {
            return Ok(());
        };
        self.may_publish(caller, &policy, principal, topic, "publish to topic")?;
        if let Some((quota, grant)) = policy.quota(principal) {
            self.quotas
                .publish(principal, &quota, bytes)
                .map_err(|exceeded| self.over_quota(caller, principal, grant, exceeded))?;
        }
        Ok(())
    }

    /// What `caller`'s subscription asks before each dead letter it writes
    /// (`None` when no policy applies): the policy of the moment must let
    /// it publish there, and the letter is charged to its publish quota, as
    /// a publish of its own would be.
    #[allow(clippy::type_complexity)]
    pub(crate) fn dead_letter_check(
        &self,
        caller: &Caller,
    ) -> Option<Arc<dyn Fn(&str, usize) -> Result<(), Error> + Send + Sync>> {
        self.applies(caller)?;
        let (access, caller) = (self.clone(), caller.clone());
        Some(Arc::new(move |topic: &str, bytes: usize| {
            let Some((policy, principal)) = access.applies(&caller) else {
                return Ok(());
            };
            access.may_publish(&caller, &policy, principal, topic, "dead-letter to topic")?;
            if let Some((quota, grant)) = policy.quota(principal) {
                access
                    .quotas
                    .publish(principal, &quota, bytes)
                    .map_err(|exceeded| access.over_quota(&caller, principal, grant, exceeded))?;
            }
            Ok(())
        }))
    }

    /// Audits a verb `caller` sent for a subscription another principal
    /// opened (`error` says so), answered as an unknown id is: the answer
    /// must not tell which ids are live.
    pub(crate) fn foreign_subscription(&self, caller: &Caller, call: &'static str, error: &Error) {
        if matches!(error, Error::NotOwner { .. }) {
            audit::denied(
                caller,
                call,
                "another principal's subscription",
                &self.metrics,
            );
        }
    }

    /// Refuses (and audits) a publish the policy does not grant.
    fn may_publish(
        &self,
        caller: &Caller,
        policy: &Policy,
        principal: &Arc<str>,
        topic: &str,
        operation: &str,
    ) -> Result<(), Error> {
        if policy.allows(principal, Operation::Publish, topic) {
            return Ok(());
        }
        let what = format!("{operation} {}", clip(topic));
        audit::denied(caller, "publish", &what, &self.metrics);
        Err(Error::Denied {
            principal: clip(principal).to_string(),
            what,
        })
    }

    /// Whether `caller` may subscribe to `topics` with `group` (and write
    /// dead letters to `dead_letters`): what it is granted, for its stream
    /// to hold.
    pub(crate) fn subscribe(
        &self,
        caller: &Caller,
        topics: &[String],
        group: Option<&str>,
        dead_letters: &[String],
        takes_a_consumer: bool,
    ) -> Result<Admission, Error> {
        let Some((policy, principal)) = self.applies(caller) else {
            return Ok(Admission {
                _slot: None,
                _shares: self.subscription_shares(caller, takes_a_consumer)?,
                recheck: None,
            });
        };
        if let Err(denied) = policy.allows_subscription(principal, topics, group) {
            let what = denial(&denied);
            audit::denied(caller, "subscribe", &what, &self.metrics);
            return Err(Error::Denied {
                principal: clip(principal).to_string(),
                what,
            });
        }
        for topic in dead_letters {
            self.may_publish(caller, &policy, principal, topic, "dead-letter to topic")?;
        }
        let slot = match policy.quota(principal) {
            Some((quota, grant)) => Some(
                self.quotas
                    .open_subscription(principal, &quota)
                    .map_err(|exceeded| self.over_quota(caller, principal, grant, exceeded))?,
            ),
            None => None,
        };
        let shares = self.subscription_shares(caller, takes_a_consumer)?;
        let policies = self
            .policy
            .as_ref()
            .map(|p| WatchStream::from_changes(p.changes()));
        Ok(Admission {
            _slot: slot,
            _shares: shares,
            recheck: policies.map(|policies| Recheck {
                caller: caller.clone(),
                principal: principal.clone(),
                topics: topics.to_vec(),
                group: group.map(str::to_owned),
                dead_letters: dead_letters.to_vec(),
                policies,
                metrics: self.metrics.clone(),
            }),
        })
    }
}

impl Access {
    /// A subscription's shares: one of the subscriptions, and one of the
    /// consumers when it takes one of its own.
    fn subscription_shares(
        &self,
        caller: &Caller,
        takes_a_consumer: bool,
    ) -> Result<Vec<ShareSlot>, Error> {
        let mut shares = Vec::with_capacity(2);
        shares.extend(self.share(caller, Capped::Subscriptions)?);
        if takes_a_consumer {
            shares.extend(self.share(caller, Capped::Consumers)?);
        }
        Ok(shares)
    }

    /// Whether `caller` may publish anywhere at all: a PublishEvents
    /// stream is refused before it takes a place when it may not.
    pub(crate) fn may_publish_somewhere(&self, caller: &Caller) -> Result<(), Error> {
        let Some((policy, principal)) = self.applies(caller) else {
            return Ok(());
        };
        if policy.grants_any(principal, Operation::Publish) {
            return Ok(());
        }
        let what = "open a PublishEvents stream (it may publish to no topic)".to_owned();
        audit::denied(caller, "publish", &what, &self.metrics);
        Err(Error::Denied {
            principal: clip(principal).to_string(),
            what,
        })
    }
}

/// The message of a refused subscription.
fn denial(denied: &SubscribeDenied) -> String {
    match denied {
        SubscribeDenied::Topic(topic) => format!("subscribe to topic {}", clip(topic)),
        SubscribeDenied::Group { topic, group } => format!(
            "subscribe to topic {} with consumer group {}",
            clip(topic),
            clip(group)
        ),
    }
}

impl Admission {
    /// `stream`, ended with PERMISSION_DENIED when a policy change revokes
    /// what it was admitted with.
    pub(crate) fn guard<S>(self, stream: S) -> Guarded<S> {
        Guarded {
            stream,
            admission: Some(self),
        }
    }
}

/// A subscription's stream under its admission: see [`Admission::guard`].
pub(crate) struct Guarded<S> {
    stream: S,
    /// `None` once the stream was ended by a revocation.
    admission: Option<Admission>,
}

impl<S, T> Stream for Guarded<S>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(admission) = &mut self.admission else {
            return Poll::Ready(None);
        };
        if let Some(recheck) = &mut admission.recheck {
            while let Poll::Ready(Some(policy)) = Pin::new(&mut recheck.policies).poll_next(cx) {
                let topics = &recheck.topics;
                let group = recheck.group.as_deref();
                let denied = match policy.allows_subscription(&recheck.principal, topics, group) {
                    Err(denied) => Some(("subscribe", denial(&denied))),
                    Ok(()) => recheck
                        .dead_letters
                        .iter()
                        .find(|t| !policy.allows(&recheck.principal, Operation::Publish, t))
                        .map(|t| ("publish", format!("dead-letter to topic {}", clip(t)))),
                };
                if let Some((operation, what)) = denied {
                    audit::denied(&recheck.caller, operation, &what, &recheck.metrics);
                    let error = Error::Denied {
                        principal: clip(&recheck.principal).to_string(),
                        what: format!("{what} any longer"),
                    };
                    // Dropping the admission frees the slot; the stream goes
                    // with this value, and its subscription with it.
                    self.admission = None;
                    return Poll::Ready(Some(Err(error.into())));
                }
            }
        }
        Pin::new(&mut self.stream).poll_next(cx)
    }
}
