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

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::super::tests::{at, manual, p, record, TIMEOUT};
    use super::super::{Outcome, Verb};
    use super::*;
    use crate::subscribe::spec::DeadLetters;

    #[test]
    fn after_the_last_attempt_the_record_is_dead_lettered_and_settled_only_once_stored() {
        let now = Instant::now();
        let mut settings = manual();
        settings.dead_letter = Some(DeadLetters {
            topic: None,
            max_attempts: 2,
        });
        let mut ledger = Ledger::new(settings);
        let first = ledger.admit(record(0, 0, "k"), now).unwrap();
        ledger.apply(Verb::Nack(None), &at(&first), now);
        let second = ledger.next_ready(now).unwrap();
        ledger.fire(now + TIMEOUT);
        assert!(ledger.next_ready(now + TIMEOUT).is_none());
        let jobs = ledger.take_jobs();
        assert_eq!(jobs.len(), 1);
        let job = &jobs[0];
        assert_eq!((&job.position, job.topic.as_str()), (&p(0).at(0), "t.dlq"));
        assert_eq!((job.class, job.attempts), (DeadLetterClass::MaxAttempts, 2));
        assert!(matches!(
            ledger.apply(Verb::Ack, &at(&second), now),
            Outcome::Stale(_)
        ));
        assert!(ledger.dead_lettered(&p(0).at(0), false, now));
        assert!(
            ledger.take_commits().is_empty(),
            "a failed write settles nothing"
        );
        assert_eq!(ledger.unsettled(), 1);
        let retry = ledger.next_timer().unwrap();
        ledger.fire(retry);
        assert_eq!(ledger.take_jobs().len(), 1, "the write is tried again");
        assert!(ledger.dead_lettered(&p(0).at(0), true, retry));
        assert_eq!(ledger.take_commits(), vec![p(0).at(0)]);
        assert_eq!(ledger.unsettled(), 0);
        assert!(!ledger.dead_lettered(&p(0).at(0), true, retry), "once only");
    }

    #[test]
    fn dead_letter_now_needs_a_policy_and_names_its_reason() {
        let now = Instant::now();
        let mut ledger = Ledger::new(manual());
        let d = ledger.admit(record(0, 0, ""), now).unwrap();
        let refused = ledger.apply(Verb::DeadLetter("bad".into()), &at(&d), now);
        assert!(matches!(refused, Outcome::Refused(_)));
        let mut settings = manual();
        settings.dead_letter = Some(DeadLetters {
            topic: Some("graveyard".into()),
            max_attempts: 0,
        });
        let mut ledger = Ledger::new(settings);
        let d = ledger.admit(record(0, 0, ""), now).unwrap();
        let outcome = ledger.apply(Verb::DeadLetter("bad".into()), &at(&d), now);
        assert_eq!(outcome, Outcome::Accepted);
        let jobs = ledger.take_jobs();
        assert_eq!(
            (
                jobs[0].topic.as_str(),
                jobs[0].reason.as_str(),
                jobs[0].class
            ),
            ("graveyard", "bad", DeadLetterClass::Client)
        );
        assert_eq!(*jobs[0].record, record(0, 0, ""));
    }

    #[test]
    fn a_dead_letter_is_not_dead_lettered_back_into_a_topic_it_came_out_of() {
        let now = Instant::now();
        let mut settings = manual();
        settings.dead_letter = Some(DeadLetters {
            topic: Some("loop.a".into()),
            max_attempts: 0,
        });
        let mut ledger = Ledger::new(settings);
        // Read from loop.b, where it was dead-lettered out of loop.a.
        let mut letter = record(0, 0, "");
        letter.topic = "loop.b".into();
        letter
            .headers
            .push(("eventgateway-dlq-topic".into(), Some(b"loop.a".to_vec())));
        let d = ledger.admit(letter, now).unwrap();
        let refused = ledger.apply(Verb::DeadLetter("again".into()), &at(&d), now);
        assert!(
            matches!(&refused, Outcome::Refused(why) if why.contains("loop.a")),
            "{refused:?}"
        );
        assert!(ledger.take_jobs().is_empty());
        // It stays out: the client may still ack it.
        assert_eq!(ledger.apply(Verb::Ack, &at(&d), now), Outcome::Accepted);
        // A record that never came out of loop.a goes there.
        let mut other = record(0, 1, "");
        other.topic = "loop.b".into();
        let d = ledger.admit(other, now).unwrap();
        let outcome = ledger.apply(Verb::DeadLetter("bad".into()), &at(&d), now);
        assert_eq!(outcome, Outcome::Accepted);
    }
}
