//! Shared subscriptions: the streams of one principal on this instance
//! that name the same group and share read through one Kafka group member,
//! whose deliveries the share's task spreads over them ([`Dispatch`]). The
//! first stream opens the member and fixes the settings; later streams
//! join it (or are refused: another principal's share, other settings); the
//! member leaves the group when the last stream ends.
//!
//! Every stream keeps a subscription id of its own (its verbs reach the
//! share's task through it) and its own window (`max_unacked`); the ledger
//! is the share's: one commit point per partition, one event per key out
//! with `ordered_by_key`, whichever stream has it.

mod dispatch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, Notify};

pub(super) use self::dispatch::{Dispatch, Outlet};
use super::registry::{VerbRequest, Verbs};
use super::spec::SubscriptionSpec;
use super::stats::SubscriptionStats;
use crate::error::Error;
use crate::text::clip;

/// A share's name within its group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ShareKey {
    group: String,
    share: String,
}

/// An open share.
#[derive(Debug)]
struct Entry {
    /// Tells this opening of the share from a later one of the same name.
    generation: u64,
    /// The principal whose share it is.
    owner: Option<Arc<str>>,
    /// The first stream's settings.
    spec: SubscriptionSpec,
    /// Where joining streams go.
    attach: mpsc::UnboundedSender<Outlet>,
    /// What a joining stream needs.
    member: Member,
}

/// What each stream of a share uses: the share's task's verbs, counters and
/// wake-up.
#[derive(Debug, Clone)]
pub(super) struct Member {
    /// Where the stream's verbs go.
    pub(super) verbs: Verbs,
    /// The share's counters.
    pub(super) stats: Arc<SubscriptionStats>,
    /// Woken by the stream's reads and its end.
    pub(super) wake: Arc<Notify>,
}

/// How a stream entered a share.
pub(super) enum Entered {
    /// It joined the share's open member.
    Joined(Member),
    /// It is the first: the caller opens the member and starts the share's
    /// task with these.
    First {
        member: Member,
        verbs: mpsc::Receiver<VerbRequest>,
        dispatch: Box<Dispatch>,
    },
}

/// The shares open on this instance; cloning shares them.
#[derive(Debug, Clone, Default)]
pub(super) struct Shares(Arc<Mutex<Registry>>);

#[derive(Debug, Default)]
struct Registry {
    open: HashMap<ShareKey, Entry>,
    generations: u64,
}

impl Shares {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enters the stream `outlet` of `owner`, subscribed as `spec` (which
    /// names a group and a share), into its share: joined to the share open
    /// here, or first of a new one. `verb_batches`: the new share's verb
    /// queue; `stall_timeout`: how long its streams may read nothing.
    pub(super) fn enter(
        &self,
        spec: &SubscriptionSpec,
        owner: Option<Arc<str>>,
        outlet: Outlet,
        (verb_batches, stall_timeout): (usize, std::time::Duration),
    ) -> Result<Entered, Error> {
        let key = ShareKey {
            group: spec.group.clone().unwrap_or_default(),
            share: spec.share.clone().unwrap_or_default(),
        };
        let mut registry = self.lock();
        if let Some(entry) = registry.open.get(&key) {
            if entry.owner != owner {
                return Err(Error::PermissionDenied(format!(
                    "share {} of group {} belongs to another principal",
                    clip(&key.share),
                    clip(&key.group)
                )));
            }
            if let Some(setting) = spec.differs_from(&entry.spec) {
                return Err(Error::ShareDiffers {
                    share: clip(&key.share).to_string(),
                    setting,
                });
            }
            let member = entry.member.clone();
            // The share's task removes its entry under this lock before it
            // stops taking streams: a send here always reaches it.
            if let Err(mpsc::error::SendError(outlet)) = entry.attach.send(outlet) {
                outlet.deliveries.end_with(Error::Interrupted);
                return Err(Error::Interrupted);
            }
            return Ok(Entered::Joined(member));
        }
        registry.generations += 1;
        let generation = registry.generations;
        let (attach, attached) = mpsc::unbounded_channel();
        let (verbs_tx, verbs) = mpsc::channel(verb_batches);
        let member = Member {
            verbs: verbs_tx,
            stats: Arc::new(SubscriptionStats::default()),
            wake: Arc::new(Notify::new()),
        };
        let leave = Leave {
            shares: self.clone(),
            key: key.clone(),
            generation,
        };
        let mut dispatch = Box::new(Dispatch::new(
            attached,
            member.wake.clone(),
            stall_timeout,
            leave,
        ));
        dispatch.join(outlet);
        registry.open.insert(
            key,
            Entry {
                generation,
                owner,
                spec: spec.clone(),
                attach,
                member: member.clone(),
            },
        );
        Ok(Entered::First {
            member,
            verbs,
            dispatch,
        })
    }

    /// How many shares are open.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().open.len()
    }
}

/// A share's way out of the registry: once it is gone from there, no stream
/// joins it any more (a stream naming it opens a new one).
#[derive(Debug)]
pub(super) struct Leave {
    shares: Shares,
    key: ShareKey,
    generation: u64,
}

impl Leave {
    /// Removes the share from the registry unless `joined` (asked under the
    /// registry's lock) says a stream joined in the meantime; whether it
    /// was removed.
    pub(super) fn close_unless(&self, joined: impl FnOnce() -> bool) -> bool {
        let mut registry = self.shares.lock();
        if joined() {
            return false;
        }
        if registry
            .open
            .get(&self.key)
            .is_some_and(|e| e.generation == self.generation)
        {
            registry.open.remove(&self.key);
        }
        true
    }
}

impl Drop for Leave {
    fn drop(&mut self) {
        self.close_unless(|| false);
    }
}

#[cfg(test)]
mod tests;
