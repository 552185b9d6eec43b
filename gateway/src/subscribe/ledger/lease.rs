//! The verbs a client applies to a delivery out: ack, nack, extend and
//! dead-letter, each checked against the attempt its ack id names.

use std::time::Duration;

use tokio::time::Instant;

use super::{later, DeadLetterClass, Ledger, State, MAX_DELAY};
use crate::subscribe::delivery::AckRef;
use crate::subscribe::spec::Position;
use crate::text::clip;

/// What a client asks for a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verb {
    /// Handled: settle it.
    Ack,
    /// Give it back, to be delivered again after the delay (`None`: the
    /// retry policy's, or at once).
    Nack(Option<Duration>),
    /// Still working: its deadline moves to this far from now (`None`: one
    /// ack timeout).
    Extend(Option<Duration>),
    /// Write it to the dead-letter topic now, for this reason.
    DeadLetter(String),
}

/// What a verb did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Applied.
    Accepted,
    /// The ack id names no delivery of this stream.
    Unknown(String),
    /// The attempt is no longer out.
    Stale(String),
    /// The verb does not apply to this subscription.
    Refused(String),
}

impl Outcome {
    /// The answer to every verb on an ACK_MODE_AUTO subscription.
    pub(crate) fn auto_mode() -> Self {
        Self::Refused("the subscription is ACK_MODE_AUTO: nothing to settle".into())
    }
}

impl Ledger {
    /// Applies `verb` to the attempt `ack` names.
    pub(in crate::subscribe) fn apply(
        &mut self,
        verb: Verb,
        ack: &AckRef,
        now: Instant,
    ) -> Outcome {
        if matches!(verb, Verb::DeadLetter(_)) && self.settings.dead_letter.is_none() {
            return Outcome::Refused("the subscription has no dead_letter_policy".into());
        }
        let AckRef { position, attempt } = ack;
        if !self.commits.was_read(position) {
            return Outcome::Unknown("never handed out on this subscription".into());
        }
        let Some(entry) = self.entry(position) else {
            return Outcome::Stale("already settled, or of a partition this stream lost".into());
        };
        if *attempt > entry.attempt {
            return Outcome::Unknown(format!(
                "attempt {attempt} was never handed out (the latest is {})",
                entry.attempt
            ));
        }
        if *attempt < entry.attempt {
            return Outcome::Stale(format!("superseded by attempt {}", entry.attempt));
        }
        if !matches!(entry.state, State::Out) {
            return Outcome::Stale("no longer out: settled or given back".into());
        }
        if let (Verb::DeadLetter(_), Some(policy)) = (&verb, &self.settings.dead_letter) {
            // Dead letters of dead letters must not go round in circles.
            let target = policy.topic_for(&position.partition.topic);
            if entry.record.was_dead_lettered_out_of(&target) {
                return Outcome::Refused(format!(
                    "the record was dead-lettered out of {} before: it is not dead-lettered back into it",
                    clip(&target)
                ));
            }
        }
        match verb {
            Verb::Ack => self.settle(position),
            Verb::Nack(delay) => self.give_back(position, Some(delay), now),
            Verb::Extend(by) => {
                let by = by.unwrap_or(self.settings.ack_timeout).min(MAX_DELAY);
                self.timers.set(position, later(now, by));
            }
            Verb::DeadLetter(reason) => {
                self.dead_letter(position, reason, DeadLetterClass::Client);
            }
        }
        Outcome::Accepted
    }

    /// Whether attempt `attempt` of the record at `position` is out with a
    /// client: what a share's stream still holds.
    pub(in crate::subscribe) fn is_out_at(&self, position: &Position, attempt: u32) -> bool {
        self.entry(position)
            .is_some_and(|e| e.attempt == attempt && matches!(e.state, State::Out))
    }

    /// Takes back attempt `attempt` of an out record whose stream ended
    /// without settling it: it is ready at once, first in line, and the
    /// attempt counts toward no retry delay or dead letter (the client did
    /// not fail it). Nothing when that attempt is no longer out.
    pub(in crate::subscribe) fn hand_back(&mut self, position: &Position, attempt: u32) {
        if !self.is_out_at(position, attempt) {
            return;
        }
        self.timers.cancel(position);
        if self.leaving.contains(&position.partition) {
            self.set_state(position, State::Returned);
        } else {
            self.set_state(position, State::Ready);
            self.ready.push_front(position.clone());
        }
    }

    /// Gives back an out record: dead-lettered after its last attempt,
    /// else delivered again after `delay` (`Some(None)`: the retry policy's,
    /// or at once; `None`, a lease that expired: the retry policy's).
    pub(super) fn give_back(
        &mut self,
        position: &Position,
        delay: Option<Option<Duration>>,
        now: Instant,
    ) {
        let Some(attempt) = self.entry(position).map(|e| e.attempt) else {
            return;
        };
        if self.leaving.contains(&position.partition) {
            self.set_state(position, State::Returned);
            self.timers.cancel(position);
            return;
        }
        let limit = self
            .settings
            .dead_letter
            .as_ref()
            .map_or(0, |d| d.max_attempts);
        if limit > 0 && attempt >= limit {
            let reason = format!("delivered {attempt} times without an ack");
            self.dead_letter(position, reason, DeadLetterClass::MaxAttempts);
            return;
        }
        let jitter = self.jitter.next();
        let policy = self.settings.retry.map(|r| r.delay(attempt, jitter));
        let wait = delay.flatten().or(policy).unwrap_or_default();
        if wait.is_zero() {
            self.set_state(position, State::Ready);
            self.timers.cancel(position);
            self.ready.push_back(position.clone());
        } else {
            self.set_state(position, State::Waiting);
            self.timers.set(position, later(now, wait));
        }
    }
}
