//! Dead letters: a record the client gave up on, or that ran out of
//! attempts, is written to the dead-letter topic and settled once stored;
//! a write that failed is tried again after a backoff.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{later, Ledger, State};
use crate::subscribe::delivery::Record;
use crate::subscribe::spec::{Backoff, Position};

/// How a dead-letter write that failed is tried again.
const DEAD_LETTER_RETRY: Backoff = Backoff {
    min: Duration::from_millis(500),
    max: Duration::from_secs(30),
};

/// Why a record is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadLetterClass {
    /// The client asked (a DEAD_LETTER verb).
    Client,
    /// It was delivered the policy's `max_attempts` times without an ack.
    MaxAttempts,
}

impl DeadLetterClass {
    /// Its name in metrics and logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::MaxAttempts => "max_attempts",
        }
    }
}

/// A dead letter to write: the record, and what to say about it.
#[derive(Debug, Clone)]
pub(in crate::subscribe) struct DeadLetterJob {
    /// The record as read.
    pub(in crate::subscribe) record: Arc<Record>,
    /// Where the record was read.
    pub(in crate::subscribe) position: Position,
    /// The dead-letter topic.
    pub(in crate::subscribe) topic: String,
    /// Why, for whoever reads the dead-letter topic.
    pub(in crate::subscribe) reason: String,
    /// The reason's class.
    pub(in crate::subscribe) class: DeadLetterClass,
    /// How many times the event was delivered.
    pub(in crate::subscribe) attempts: u32,
}

impl Ledger {
    /// Starts writing a record to its dead-letter topic.
    pub(super) fn dead_letter(
        &mut self,
        position: &Position,
        reason: String,
        class: DeadLetterClass,
    ) {
        let Some(policy) = &self.settings.dead_letter else {
            return;
        };
        let topic = policy.topic_for(&position.partition.topic);
        let Some(entry) = self.entry_mut(position) else {
            return;
        };
        let job = DeadLetterJob {
            record: entry.record.clone(),
            position: position.clone(),
            topic,
            reason,
            class,
            attempts: entry.attempt,
        };
        entry.state = State::DeadLettering {
            job: Box::new(job.clone()),
            writing: true,
            failures: 0,
        };
        self.timers.cancel(position);
        self.jobs.push(job);
    }

    /// What became of a dead-letter write: stored (the record is settled),
    /// or failed (it is written again after a backoff, and stays unsettled
    /// meanwhile). Returns whether the record was this ledger's to settle.
    pub(in crate::subscribe) fn dead_lettered(
        &mut self,
        position: &Position,
        stored: bool,
        now: Instant,
    ) -> bool {
        let failures = match self.entry_mut(position).map(|e| &mut e.state) {
            Some(State::DeadLettering {
                writing: writing @ true,
                failures,
                ..
            }) => {
                *writing = false;
                *failures += 1;
                *failures
            }
            _ => return false,
        };
        if stored {
            self.settle(position);
        } else {
            let wait = DEAD_LETTER_RETRY.delay(failures, self.jitter.next());
            self.timers.set(position, later(now, wait));
        }
        true
    }
}
