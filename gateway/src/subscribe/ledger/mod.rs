//! The deliveries of an ACK_MODE_MANUAL subscription that are not settled
//! yet, and what clients do with them: the subscription's state machine.
//!
//! A delivery is out (leased) until it is acked, nacked (again after a
//! delay), extended, expires (again after the ack timeout, or after the
//! retry policy's backoff), or is dead-lettered (written to the dead-letter
//! topic, then settled). Settled means acked or dead-lettered. An ack id
//! names one delivery attempt: a verb on any other is stale and changes
//! nothing.
//!
//! The ledger is the lease core (this module: each record's state, the
//! verbs, the window) over three parts of its own: [`timers`] (one
//! deadline per record), [`order`] (with order by key, one record per key
//! out, the next held until it is settled) and [`commits`] (the commit
//! point: the end of a partition's contiguous run of settled offsets).
//! It is plain data: the subscription task feeds it records, verbs, the
//! clock and dead-letter outcomes, and takes from it what to send, what to
//! commit and what to dead-letter.

mod commits;
mod dead_letters;
mod entry;
mod lease;
mod order;
mod timers;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use eventgateway::v1::Delivery;
use prost::Message as _;
use tokio::time::Instant;

use self::commits::Commits;
pub(super) use self::dead_letters::{DeadLetterClass, DeadLetterJob};
use self::entry::{Entry, State};
pub(crate) use self::lease::{Outcome, Verb};
use self::order::KeyOrder;
use self::timers::{Jitter, Timers};
use super::delivery::{again, AckRef, Record};
use super::spec::{ManualAcks, Position, TopicPartition, MAX_ACK_TIMEOUT};
use crate::error::Error;
use crate::text::clip;

/// The most bytes of records a subscription keeps unsettled: past it, no
/// new record is read until some are settled (whatever `max_unacked`).
pub(super) const MAX_UNSETTLED_BYTES: usize = 64 * 1024 * 1024;
/// The longest a delay or an extension may ask for.
pub(crate) const MAX_DELAY: Duration = MAX_ACK_TIMEOUT;

/// The records of one MANUAL subscription that are not committed yet.
#[derive(Debug)]
pub(super) struct Ledger {
    /// The subscription's settings.
    settings: ManualAcks,
    /// Per partition, by offset.
    partitions: HashMap<TopicPartition, BTreeMap<i64, Entry>>,
    /// What was read and where each partition's commit point stands.
    commits: Commits,
    /// Deadlines of out, waiting and dead-lettering records.
    timers: Timers,
    /// With order by key on: the records of each key not settled.
    order: Option<KeyOrder>,
    /// Records not settled: the flow-control window in use.
    unsettled: usize,
    /// The bytes of the records not settled.
    unsettled_bytes: usize,
    /// Records ready to be sent, in order.
    ready: VecDeque<Position>,
    /// Dead letters to write.
    jobs: Vec<DeadLetterJob>,
    /// Jitter for retry delays.
    jitter: Jitter,
    /// Partitions being revoked: what is out of them may still be settled,
    /// nothing of them is sent (again).
    leaving: HashSet<TopicPartition>,
}

impl Ledger {
    /// An empty ledger for a subscription with `settings`.
    pub(super) fn new(settings: ManualAcks) -> Self {
        Self {
            order: settings.ordered_by_key.then(KeyOrder::default),
            settings,
            partitions: HashMap::new(),
            commits: Commits::default(),
            timers: Timers::default(),
            unsettled: 0,
            unsettled_bytes: 0,
            ready: VecDeque::new(),
            jobs: Vec::new(),
            jitter: Jitter::new(),
            leaving: HashSet::new(),
        }
    }

    /// Records not settled (out, held, waiting, being dead-lettered): the
    /// flow-control window in use.
    pub(super) fn unsettled(&self) -> usize {
        self.unsettled
    }

    /// Records out with the client, or being dead-lettered: what a drain
    /// waits for.
    pub(super) fn out(&self) -> usize {
        self.partitions
            .values()
            .flat_map(BTreeMap::values)
            .filter(|e| e.state.is_out())
            .count()
    }

    /// Records of `partitions` out with the client or being written as dead
    /// letters: what a revocation waits for.
    pub(super) fn out_on(&self, partitions: &[TopicPartition]) -> usize {
        partitions
            .iter()
            .filter_map(|partition| self.partitions.get(partition))
            .flat_map(BTreeMap::values)
            .filter(|e| e.state.is_out())
            .count()
    }

    /// Starts handing `partitions` back to the group: what is out of them
    /// may still be settled (the commit point moves with it), everything
    /// else of them, and whatever is given back from now on, is left to
    /// their next owner.
    pub(super) fn leave(&mut self, partitions: &[TopicPartition]) {
        for partition in partitions {
            self.leaving.insert(partition.clone());
            let Some(entries) = self.partitions.get_mut(partition) else {
                continue;
            };
            for (offset, entry) in entries {
                if matches!(entry.state, State::Held | State::Ready | State::Waiting) {
                    entry.state = State::Returned;
                    self.timers.cancel(&partition.at(*offset));
                }
            }
        }
        let leaving = &self.leaving;
        self.ready.retain(|p| !leaving.contains(&p.partition));
    }

    /// Records held back behind an earlier event of their key.
    pub(super) fn held_back(&self) -> usize {
        self.order.as_ref().map_or(0, KeyOrder::held)
    }

    /// Whether the records not settled hold [`MAX_UNSETTLED_BYTES`] or
    /// more: no record is read until some are settled.
    pub(super) fn bytes_full(&self) -> bool {
        self.unsettled_bytes >= MAX_UNSETTLED_BYTES
    }

    /// Whether records are ready to be sent.
    pub(super) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Takes a record read from Kafka: its first delivery, to send now, or
    /// `None` when it is held back behind an earlier event of its key, or
    /// was read before (it is in the ledger or settled already).
    pub(super) fn admit(&mut self, record: Record, now: Instant) -> Option<Delivery> {
        let position =
            TopicPartition::new(record.topic.as_str(), record.partition).at(record.offset);
        if self.entry(&position).is_some() || self.commits.read(&position) {
            return None;
        }
        let held = match (&mut self.order, order_key(&record)) {
            (Some(order), Some(key)) => order.queue(&position, key),
            _ => false,
        };
        let weight = record.bytes();
        self.unsettled += 1;
        self.unsettled_bytes += weight;
        let entry = Entry {
            record: Arc::new(record),
            first: None,
            weight,
            attempt: 0,
            state: State::Held,
        };
        self.partitions
            .entry(position.partition.clone())
            .or_default()
            .insert(position.offset, entry);
        (!held).then(|| self.send(&position, now))
    }

    /// The next record ready to be sent again (or released by its key), as
    /// its next attempt.
    pub(super) fn next_ready(&mut self, now: Instant) -> Option<Delivery> {
        while let Some(position) = self.ready.pop_front() {
            if self
                .entry(&position)
                .is_some_and(|e| matches!(e.state, State::Ready))
            {
                return Some(self.send(&position, now));
            }
        }
        None
    }

    /// Marks a record out as its next attempt, until one ack timeout from
    /// `now`.
    fn send(&mut self, position: &Position, now: Instant) -> Delivery {
        self.timers
            .set(position, later(now, self.settings.ack_timeout));
        let entry = self
            .partitions
            .get_mut(&position.partition)
            .and_then(|entries| entries.get_mut(&position.offset))
            .expect("a record being sent is in the ledger");
        entry.attempt = entry.attempt.saturating_add(1);
        entry.state = State::Out;
        if let Some(first) = &entry.first {
            return again(first, entry.attempt);
        }
        let delivery = entry.record.delivery(entry.attempt);
        let kept = delivery.encoded_len();
        entry.weight += kept;
        self.unsettled_bytes += kept;
        entry.first = Some(Box::new(delivery.clone()));
        delivery
    }

    /// When the next timer is due.
    pub(super) fn next_timer(&mut self) -> Option<Instant> {
        self.timers.next()
    }

    /// Acts on every timer due at `now`: a lease that expired is given back,
    /// a wait that ended makes its record ready, a failed dead letter is
    /// written again. Returns the leases that expired.
    pub(super) fn fire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some(position) = self.timers.pop_due(now) {
            let Some(entry) = self.entry_mut(&position) else {
                continue;
            };
            match &mut entry.state {
                State::Out => {
                    expired += 1;
                    self.give_back(&position, None, now);
                }
                State::Waiting => {
                    entry.state = State::Ready;
                    self.ready.push_back(position);
                }
                State::DeadLettering { job, writing, .. } => {
                    *writing = true;
                    let job = (**job).clone();
                    self.jobs.push(job);
                }
                State::Held | State::Ready | State::Settled | State::Returned => {}
            }
        }
        expired
    }

    /// Settles a record: the commit point may move over it, and the next
    /// record of its key is released.
    fn settle(&mut self, position: &Position) {
        let Some(entries) = self.partitions.get_mut(&position.partition) else {
            return;
        };
        let Some(entry) = entries.get_mut(&position.offset) else {
            return;
        };
        if matches!(entry.state, State::Settled) {
            return;
        }
        entry.state = State::Settled;
        entry.first = None;
        let record = entry.record.clone();
        self.unsettled -= 1;
        self.unsettled_bytes -= entry.weight;
        self.timers.cancel(position);
        self.commits.advance(&position.partition, entries, |e| {
            matches!(e.state, State::Settled)
        });
        let next = match (&mut self.order, order_key(&record)) {
            (Some(order), Some(key)) => order.settle(position, key),
            _ => None,
        };
        if let Some(next) = next {
            self.release(next);
        }
    }

    /// Makes a record that was held behind its key ready.
    fn release(&mut self, position: Position) {
        if let Some(entry) = self.entry_mut(&position) {
            if matches!(entry.state, State::Held) {
                entry.state = State::Ready;
                self.ready.push_back(position);
            }
        }
    }

    /// The commit points that moved since last asked: per partition, the
    /// offset up to which (and including) it may be committed.
    pub(super) fn take_commits(&mut self) -> Vec<Position> {
        self.commits.take()
    }

    /// The dead letters to write since last asked.
    pub(super) fn take_jobs(&mut self) -> Vec<DeadLetterJob> {
        std::mem::take(&mut self.jobs)
    }

    /// Checks that every ack names a record this stream was handed (out,
    /// settled already, or superseded, which are harmless); the first that
    /// does not is the error. For Acknowledge, which applies all or none.
    pub(super) fn check(&self, acks: &[AckRef]) -> Result<(), Error> {
        match acks.iter().find(|ack| !self.commits.was_read(&ack.position)) {
            None => Ok(()),
            Some(ack) => Err(Error::InvalidArgument(format!(
                "ack id {} was never handed out on this subscription; nothing of this call was applied",
                clip(&ack.id())
            ))),
        }
    }

    /// Forgets the records of partitions this stream no longer owns: the
    /// group's next owner delivers them again from the committed offset.
    pub(super) fn forget(&mut self, partitions: &[TopicPartition]) {
        for partition in partitions {
            self.leaving.remove(partition);
            self.commits.forget(partition);
            let Some(entries) = self.partitions.remove(partition) else {
                continue;
            };
            for (offset, entry) in entries {
                if !matches!(entry.state, State::Settled) {
                    self.unsettled -= 1;
                    self.unsettled_bytes -= entry.weight;
                }
                self.timers.cancel(&partition.at(offset));
            }
        }
        self.ready.retain(|p| !partitions.contains(&p.partition));
        let next = self
            .order
            .as_mut()
            .map(|order| order.forget(partitions))
            .unwrap_or_default();
        for position in next {
            self.release(position);
        }
    }

    fn set_state(&mut self, position: &Position, state: State) {
        if let Some(entry) = self.entry_mut(position) {
            entry.state = state;
        }
    }

    fn entry(&self, position: &Position) -> Option<&Entry> {
        self.partitions
            .get(&position.partition)?
            .get(&position.offset)
    }

    fn entry_mut(&mut self, position: &Position) -> Option<&mut Entry> {
        self.partitions
            .get_mut(&position.partition)?
            .get_mut(&position.offset)
    }

    /// Timers in the heap, live and stale.
    pub(super) fn timers(&self) -> usize {
        self.timers.len()
    }
}

/// The key a record is ordered by (records without a key are not).
fn order_key(record: &Record) -> Option<&[u8]> {
    record.key.as_deref().filter(|k| !k.is_empty())
}

/// `now + by`, never overflowing the clock.
fn later(now: Instant, by: Duration) -> Instant {
    now.checked_add(by).unwrap_or_else(|| now + MAX_ACK_TIMEOUT)
}

#[cfg(test)]
mod tests;
