//! The deliveries of an ACK_MODE_MANUAL subscription that are not settled
//! yet, and what clients do with them: the subscription's state machine.
//!
//! A delivery is out (leased) until it is acked, nacked (again after a
//! delay), extended, expires (again after the ack timeout, or after the
//! retry policy's backoff), or is dead-lettered (written to the dead-letter
//! topic, then settled). Settled means acked or dead-lettered; the commit
//! point of a partition is the end of its contiguous run of settled
//! offsets, so it never passes an event that is not settled. An ack id
//! names one delivery attempt: a verb on any other is stale and changes
//! nothing. With order by key, one event per key is out at a time; the
//! next waits (held) until it is settled.
//!
//! The ledger is plain data: the subscription task feeds it records, verbs,
//! the clock and dead-letter outcomes, and takes from it what to send, what
//! to commit and what to dead-letter.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use eventgateway::v1::Delivery;
use prost::Message as _;
use tokio::time::Instant;

use super::delivery::{ack_id, again, AckRef, Record};
use super::spec::{Backoff, ManualAcks, Partition, MAX_ACK_TIMEOUT};
use crate::error::Error;
use crate::text::clip;

/// The most bytes of records a subscription keeps unsettled: past it, no
/// new record is read until some are settled (whatever `max_unacked`).
pub(super) const MAX_UNSETTLED_BYTES: usize = 64 * 1024 * 1024;
/// The longest a delay or an extension may ask for.
pub(crate) const MAX_DELAY: Duration = MAX_ACK_TIMEOUT;
/// The fewest timers kept before stale ones are dropped: one record's
/// live timer and one stale.
const MIN_TIMERS_BOUND: usize = 2;
/// How a dead-letter write that failed is tried again.
const DEAD_LETTER_RETRY: Backoff = Backoff {
    min: Duration::from_millis(500),
    max: Duration::from_secs(30),
};

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

/// A dead letter to write: the record, and what to say about it.
#[derive(Debug, Clone)]
pub(super) struct DeadLetterJob {
    /// The record as read.
    pub(super) record: Arc<Record>,
    /// The dead-letter topic.
    pub(super) topic: String,
    /// Why, for whoever reads the dead-letter topic.
    pub(super) reason: String,
    /// The reason's class, for metrics: `client` or `max_attempts`.
    pub(super) class: &'static str,
    /// How many times the event was delivered.
    pub(super) attempts: u32,
}

/// Where a record not yet settled stands.
#[derive(Debug, Clone)]
enum State {
    /// Waiting for the event before it of its key to be settled.
    Held,
    /// To be sent (again) as soon as the stream takes it.
    Ready,
    /// Out with the client until its timer.
    Out,
    /// Given back, to be ready at its timer.
    Waiting,
    /// Being written to the dead-letter topic (`writing`), or waiting for
    /// its timer to try again after `failures` failed writes.
    DeadLettering {
        /// The letter to write.
        job: Box<DeadLetterJob>,
        /// Whether a write is in flight.
        writing: bool,
        /// Writes that failed.
        failures: u32,
    },
    /// Acked or dead-lettered; kept until the commit point passes it.
    Settled,
    /// Given back to the group: its partition is being revoked, and the
    /// partition's next owner delivers it (the commit point stops before it).
    Returned,
}

/// One record read and not yet committed.
#[derive(Debug)]
struct Entry {
    /// The record, for every redelivery and a dead letter.
    record: Arc<Record>,
    /// Its first delivery, kept for the next attempts (decoding a record
    /// once is enough); dropped once settled.
    first: Option<Box<Delivery>>,
    /// What keeping it costs, in bytes: the record and its first delivery.
    weight: usize,
    /// Attempts made: the current (or last) attempt's number, 0 while held.
    attempt: u32,
    /// Where it stands.
    state: State,
    /// The timer that counts for it (others in the heap are stale).
    timer: u64,
}

/// What records are ordered by: a topic and a key.
type OrderKey = (String, Vec<u8>);

/// A record's place: its partition and offset.
type Place = (Partition, i64);

/// A timer: when, its sequence number, and whose it is.
type Timer = Reverse<(Instant, u64, Partition, i64)>;

/// The records of one MANUAL subscription that are not committed yet.
#[derive(Debug)]
pub(super) struct Ledger {
    /// The subscription's settings.
    settings: ManualAcks,
    /// Per partition, by offset.
    partitions: HashMap<Partition, BTreeMap<i64, Entry>>,
    /// The highest offset handed to this ledger per partition (kept after a
    /// revocation): an ack beyond it names nothing.
    highest: HashMap<Partition, i64>,
    /// Per partition, the offset after its commit point: a record below
    /// it that Kafka hands over again (it can, around a pause) is settled.
    floor: HashMap<Partition, i64>,
    /// Records not settled: the flow-control window in use.
    unsettled: usize,
    /// The bytes of the records not settled.
    unsettled_bytes: usize,
    /// Timers of out, waiting and dead-lettering records; stale ones are
    /// skipped, and dropped once they are as many as the live ones.
    timers: BinaryHeap<Timer>,
    /// How many timers the heap may hold before the stale ones are dropped.
    timers_bound: usize,
    /// The next timer's sequence number.
    sequence: u64,
    /// Records ready to be sent, in order.
    ready: VecDeque<Place>,
    /// With order by key: per (topic, key), its records not settled, the
    /// first one out (or ready, waiting, dead-lettering), the rest held.
    keys: HashMap<OrderKey, VecDeque<Place>>,
    /// Commit points that moved, to store.
    commits: Vec<Place>,
    /// Dead letters to write.
    jobs: Vec<(Partition, i64, DeadLetterJob)>,
    /// Jitter's random state (xorshift).
    random: u64,
    /// Partitions being revoked: what is out of them may still be settled,
    /// nothing of them is sent (again).
    leaving: HashSet<Partition>,
}

impl Ledger {
    /// An empty ledger for a subscription with `settings`.
    pub(super) fn new(settings: ManualAcks) -> Self {
        let seed = uuid::Uuid::new_v4().as_u64_pair().0 | 1;
        Self {
            settings,
            partitions: HashMap::new(),
            highest: HashMap::new(),
            floor: HashMap::new(),
            unsettled: 0,
            unsettled_bytes: 0,
            timers: BinaryHeap::new(),
            timers_bound: MIN_TIMERS_BOUND,
            sequence: 0,
            ready: VecDeque::new(),
            keys: HashMap::new(),
            commits: Vec::new(),
            jobs: Vec::new(),
            random: seed,
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
            .filter(|e| {
                matches!(
                    e.state,
                    State::Out | State::DeadLettering { writing: true, .. }
                )
            })
            .count()
    }

    /// Records of `partitions` out with the client or being written as dead
    /// letters: what a revocation waits for.
    pub(super) fn out_on(&self, partitions: &[Partition]) -> usize {
        partitions
            .iter()
            .filter_map(|partition| self.partitions.get(partition))
            .flat_map(BTreeMap::values)
            .filter(|e| {
                matches!(
                    e.state,
                    State::Out | State::DeadLettering { writing: true, .. }
                )
            })
            .count()
    }

    /// Starts handing `partitions` back to the group: what is out of them
    /// may still be settled (the commit point moves with it), everything
    /// else of them, and whatever is given back from now on, is left to
    /// their next owner.
    pub(super) fn leave(&mut self, partitions: &[Partition]) {
        for partition in partitions {
            self.leaving.insert(partition.clone());
            for entry in self
                .partitions
                .get_mut(partition)
                .into_iter()
                .flat_map(BTreeMap::values_mut)
            {
                if matches!(entry.state, State::Held | State::Ready | State::Waiting) {
                    entry.state = State::Returned;
                    entry.timer = 0;
                }
            }
        }
        let leaving = &self.leaving;
        self.ready.retain(|(p, _)| !leaving.contains(p));
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
        let partition = (record.topic.clone(), record.partition);
        let offset = record.offset;
        let seen = self.entry(&partition, offset).is_some()
            || self
                .floor
                .get(&partition)
                .is_some_and(|floor| offset < *floor);
        if seen {
            return None;
        }
        let highest = self.highest.entry(partition.clone()).or_insert(offset);
        *highest = (*highest).max(offset);
        let held = match self.key_of(&record) {
            Some(key) => {
                let queue = self.keys.entry(key).or_default();
                queue.push_back((partition.clone(), offset));
                queue.len() > 1
            }
            None => false,
        };
        let record = Arc::new(record);
        self.unsettled += 1;
        let weight = record.bytes();
        self.unsettled_bytes += weight;
        let entry = Entry {
            record: record.clone(),
            first: None,
            weight,
            attempt: 0,
            state: State::Held,
            timer: 0,
        };
        self.partitions
            .entry(partition.clone())
            .or_default()
            .insert(offset, entry);
        if held {
            return None;
        }
        Some(self.send(&partition, offset, now))
    }

    /// The next record ready to be sent again (or released by its key), as
    /// its next attempt.
    pub(super) fn next_ready(&mut self, now: Instant) -> Option<Delivery> {
        while let Some((partition, offset)) = self.ready.pop_front() {
            if self
                .entry(&partition, offset)
                .is_some_and(|e| matches!(e.state, State::Ready))
            {
                return Some(self.send(&partition, offset, now));
            }
        }
        None
    }

    /// Marks a record out as its next attempt, until one ack timeout from
    /// `now`.
    fn send(&mut self, partition: &Partition, offset: i64, now: Instant) -> Delivery {
        let due = later(now, self.settings.ack_timeout);
        let timer = self.timer(partition, offset, due);
        let entry = self
            .partitions
            .get_mut(partition)
            .and_then(|entries| entries.get_mut(&offset))
            .expect("a record being sent is in the ledger");
        entry.attempt = entry.attempt.saturating_add(1);
        entry.state = State::Out;
        entry.timer = timer;
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
        while let Some(Reverse((at, sequence, partition, offset))) = self.timers.peek() {
            if self
                .entry(partition, *offset)
                .is_some_and(|e| e.timer == *sequence)
            {
                return Some(*at);
            }
            self.timers.pop();
        }
        None
    }

    /// Acts on every timer due at `now`: a lease that expired is given back,
    /// a wait that ended makes its record ready, a failed dead letter is
    /// written again. Returns the leases that expired.
    pub(super) fn fire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some(Reverse((at, sequence, partition, offset))) = self.timers.peek().cloned() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(entry) = self.entry_mut(&partition, offset) else {
                continue;
            };
            if entry.timer != sequence {
                continue;
            }
            entry.timer = 0;
            let letter = match &mut entry.state {
                State::Out => None,
                State::Waiting => {
                    entry.state = State::Ready;
                    self.ready.push_back((partition, offset));
                    continue;
                }
                State::DeadLettering { job, writing, .. } => {
                    *writing = true;
                    Some((**job).clone())
                }
                State::Held | State::Ready | State::Settled | State::Returned => continue,
            };
            match letter {
                Some(job) => self.jobs.push((partition, offset, job)),
                None => {
                    expired += 1;
                    self.give_back(&partition, offset, None, now);
                }
            }
        }
        expired
    }

    /// Applies `verb` to the attempt `ack` names.
    pub(super) fn apply(&mut self, verb: Verb, ack: &AckRef, now: Instant) -> Outcome {
        if matches!(verb, Verb::DeadLetter(_)) && self.settings.dead_letter.is_none() {
            return Outcome::Refused("the subscription has no dead_letter_policy".into());
        }
        let AckRef {
            partition,
            offset,
            attempt,
        } = ack;
        if self
            .highest
            .get(partition)
            .is_none_or(|highest| offset > highest)
        {
            return Outcome::Unknown("never handed out on this subscription".into());
        }
        let Some(entry) = self.entry(partition, *offset) else {
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
            let target = policy.topic_for(&partition.0);
            if entry.record.was_dead_lettered_out_of(&target) {
                return Outcome::Refused(format!(
                    "the record was dead-lettered out of {} before: it is not dead-lettered back into it",
                    clip(&target)
                ));
            }
        }
        match verb {
            Verb::Ack => self.settle(partition, *offset),
            Verb::Nack(delay) => self.give_back(partition, *offset, Some(delay), now),
            Verb::Extend(by) => {
                let by = by.unwrap_or(self.settings.ack_timeout).min(MAX_DELAY);
                let timer = self.timer(partition, *offset, later(now, by));
                if let Some(entry) = self.entry_mut(partition, *offset) {
                    entry.timer = timer;
                }
            }
            Verb::DeadLetter(reason) => {
                self.dead_letter(partition, *offset, reason, "client");
            }
        }
        Outcome::Accepted
    }

    /// Gives back an out record: dead-lettered after its last attempt,
    /// else delivered again after `delay` (`Some(None)`: the retry policy's,
    /// or at once; `None`, a lease that expired: the retry policy's).
    fn give_back(
        &mut self,
        partition: &Partition,
        offset: i64,
        delay: Option<Option<Duration>>,
        now: Instant,
    ) {
        let Some(attempt) = self.entry(partition, offset).map(|e| e.attempt) else {
            return;
        };
        if self.leaving.contains(partition) {
            if let Some(entry) = self.entry_mut(partition, offset) {
                entry.state = State::Returned;
                entry.timer = 0;
            }
            return;
        }
        let limit = self
            .settings
            .dead_letter
            .as_ref()
            .map_or(0, |d| d.max_attempts);
        if limit > 0 && attempt >= limit {
            let reason = format!("delivered {attempt} times without an ack");
            self.dead_letter(partition, offset, reason, "max_attempts");
            return;
        }
        let jitter = self.jitter();
        let policy = self.settings.retry.map(|r| r.delay(attempt, jitter));
        let wait = delay.flatten().or(policy).unwrap_or_default();
        if wait.is_zero() {
            if let Some(entry) = self.entry_mut(partition, offset) {
                entry.state = State::Ready;
                entry.timer = 0;
            }
            self.ready.push_back((partition.clone(), offset));
        } else {
            let timer = self.timer(partition, offset, later(now, wait));
            if let Some(entry) = self.entry_mut(partition, offset) {
                entry.state = State::Waiting;
                entry.timer = timer;
            }
        }
    }

    /// Starts writing a record to its dead-letter topic.
    fn dead_letter(
        &mut self,
        partition: &Partition,
        offset: i64,
        reason: String,
        class: &'static str,
    ) {
        let Some(policy) = self.settings.dead_letter.clone() else {
            return;
        };
        let Some(entry) = self.entry_mut(partition, offset) else {
            return;
        };
        let job = DeadLetterJob {
            record: entry.record.clone(),
            topic: policy.topic_for(&partition.0),
            reason,
            class,
            attempts: entry.attempt,
        };
        entry.state = State::DeadLettering {
            job: Box::new(job.clone()),
            writing: true,
            failures: 0,
        };
        entry.timer = 0;
        self.jobs.push((partition.clone(), offset, job));
    }

    /// What became of a dead-letter write: stored (the record is settled),
    /// or failed (it is written again after a backoff, and stays unsettled
    /// meanwhile). Returns whether the record was this ledger's to settle.
    pub(super) fn dead_lettered(
        &mut self,
        partition: &Partition,
        offset: i64,
        stored: bool,
        now: Instant,
    ) -> bool {
        let failures = match self.entry_mut(partition, offset).map(|e| &mut e.state) {
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
            self.settle(partition, offset);
        } else {
            let wait = DEAD_LETTER_RETRY.delay(failures, self.jitter());
            let timer = self.timer(partition, offset, later(now, wait));
            if let Some(entry) = self.entry_mut(partition, offset) {
                entry.timer = timer;
            }
        }
        true
    }

    /// Settles a record: the commit point may move over it, and the next
    /// record of its key is released.
    fn settle(&mut self, partition: &Partition, offset: i64) {
        let Some(entries) = self.partitions.get_mut(partition) else {
            return;
        };
        let Some(entry) = entries.get_mut(&offset) else {
            return;
        };
        if matches!(entry.state, State::Settled) {
            return;
        }
        entry.state = State::Settled;
        entry.timer = 0;
        entry.first = None;
        let record = entry.record.clone();
        self.unsettled -= 1;
        self.unsettled_bytes -= entry.weight;
        let mut committable = None;
        while let Some(first) = entries.first_entry() {
            if !matches!(first.get().state, State::Settled) {
                break;
            }
            committable = Some(*first.key());
            first.remove();
        }
        if let Some(upto) = committable {
            self.floor.insert(partition.clone(), upto + 1);
            self.commits.push((partition.clone(), upto));
        }
        if let Some(key) = self.key_of(&record) {
            self.release(key, Some((partition, offset)));
        }
    }

    /// Takes `settled` (if given) off its key's queue, and makes the key's
    /// next record ready if it is held.
    fn release(&mut self, key: OrderKey, settled: Option<(&Partition, i64)>) {
        let Some(queue) = self.keys.get_mut(&key) else {
            return;
        };
        if let Some((partition, offset)) = settled {
            queue.retain(|(p, o)| !(p == partition && *o == offset));
        }
        let Some((partition, offset)) = queue.front().cloned() else {
            self.keys.remove(&key);
            return;
        };
        if let Some(entry) = self.entry_mut(&partition, offset) {
            if matches!(entry.state, State::Held) {
                entry.state = State::Ready;
                self.ready.push_back((partition, offset));
            }
        }
    }

    /// The commit points that moved since last asked: per partition, the
    /// offset up to which (and including) it may be committed.
    pub(super) fn take_commits(&mut self) -> Vec<Place> {
        std::mem::take(&mut self.commits)
    }

    /// The dead letters to write since last asked, with their record's
    /// partition and offset.
    pub(super) fn take_jobs(&mut self) -> Vec<(Partition, i64, DeadLetterJob)> {
        std::mem::take(&mut self.jobs)
    }

    /// Checks that every ack names a record this stream was handed (out,
    /// settled already, or superseded, which are harmless); the first that
    /// does not is the error. For Acknowledge, which applies all or none.
    pub(super) fn check(&self, acks: &[AckRef]) -> Result<(), Error> {
        let unknown = acks.iter().find(|ack| {
            self.highest
                .get(&ack.partition)
                .is_none_or(|highest| ack.offset > *highest)
        });
        match unknown {
            None => Ok(()),
            Some(ack) => Err(Error::InvalidArgument(format!(
                "ack id {} was never handed out on this subscription; nothing of this call was applied",
                clip(&ack_id(&ack.partition.0, ack.partition.1, ack.offset, ack.attempt))
            ))),
        }
    }

    /// Forgets the records of partitions this stream no longer owns: the
    /// group's next owner delivers them again from the committed offset.
    pub(super) fn forget(&mut self, partitions: &[Partition]) {
        let mut keys = Vec::new();
        for partition in partitions {
            self.leaving.remove(partition);
            self.floor.remove(partition);
            if let Some(entries) = self.partitions.remove(partition) {
                for entry in entries.values() {
                    if !matches!(entry.state, State::Settled) {
                        self.unsettled -= 1;
                        self.unsettled_bytes -= entry.weight;
                    }
                    keys.extend(self.key_of(&entry.record));
                }
            }
        }
        self.ready.retain(|(p, _)| !partitions.contains(p));
        for key in keys {
            if let Some(queue) = self.keys.get_mut(&key) {
                queue.retain(|(p, _)| !partitions.contains(p));
            }
            self.release(key, None);
        }
    }

    /// The key a record is ordered by, with order by key on.
    fn key_of(&self, record: &Record) -> Option<OrderKey> {
        if !self.settings.ordered_by_key {
            return None;
        }
        let key = record.key.as_ref().filter(|k| !k.is_empty())?;
        Some((record.topic.clone(), key.clone()))
    }

    fn entry(&self, partition: &Partition, offset: i64) -> Option<&Entry> {
        self.partitions.get(partition)?.get(&offset)
    }

    fn entry_mut(&mut self, partition: &Partition, offset: i64) -> Option<&mut Entry> {
        self.partitions.get_mut(partition)?.get_mut(&offset)
    }

    /// Timers in the heap, live and stale.
    pub(super) fn timers(&self) -> usize {
        self.timers.len()
    }

    /// A new timer at `at` for a record; its sequence number. A record's
    /// earlier timer goes stale; a client repeating a verb (extend, extend,
    /// ...) leaves at most as many stale timers as live ones.
    fn timer(&mut self, partition: &Partition, offset: i64, at: Instant) -> u64 {
        if self.timers.len() >= self.timers_bound {
            self.drop_stale_timers();
        }
        self.sequence += 1;
        self.timers
            .push(Reverse((at, self.sequence, partition.clone(), offset)));
        self.sequence
    }

    /// Keeps only the timers that count; the next clean-up comes when as
    /// many again were added (amortised: constant work per timer).
    fn drop_stale_timers(&mut self) {
        let partitions = &self.partitions;
        self.timers
            .retain(|Reverse((_, sequence, partition, offset))| {
                partitions
                    .get(partition)
                    .and_then(|entries| entries.get(offset))
                    .is_some_and(|entry| entry.timer == *sequence)
            });
        self.timers_bound = (2 * self.timers.len()).max(MIN_TIMERS_BOUND);
        self.timers.shrink_to(self.timers_bound);
    }

    /// A number from 0 to 1, for jitter.
    fn jitter(&mut self) -> f64 {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        (self.random >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `now + by`, never overflowing the clock.
fn later(now: Instant, by: Duration) -> Instant {
    now.checked_add(by).unwrap_or_else(|| now + MAX_ACK_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscribe::delivery::parse_ack_id;
    use crate::subscribe::spec::DeadLetters;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn record(partition: i32, offset: i64, key: &str) -> Record {
        Record {
            topic: "t".into(),
            partition,
            offset,
            key: (!key.is_empty()).then(|| key.as_bytes().to_vec()),
            value: Some(b"v".to_vec()),
            timestamp_ms: Some(1),
            headers: vec![("h".into(), Some(b"1".to_vec()))],
            unreadable: 0,
        }
    }

    fn manual() -> ManualAcks {
        ManualAcks::new(TIMEOUT, 100)
    }

    fn at(delivery: &Delivery) -> AckRef {
        parse_ack_id(&delivery.ack_id).unwrap()
    }

    fn p(partition: i32) -> Partition {
        ("t".to_owned(), partition)
    }

    #[test]
    fn the_commit_point_never_passes_an_unsettled_record() {
        let now = Instant::now();
        let mut ledger = Ledger::new(manual());
        let sent: Vec<Delivery> = (0..4)
            .map(|o| ledger.admit(record(0, o, ""), now).unwrap())
            .collect();
        assert_eq!(ledger.unsettled(), 4);
        for d in &sent[1..3] {
            assert_eq!(ledger.apply(Verb::Ack, &at(d), now), Outcome::Accepted);
        }
        assert!(ledger.take_commits().is_empty(), "offset 0 is still out");
        ledger.apply(Verb::Ack, &at(&sent[0]), now);
        assert_eq!(ledger.take_commits(), vec![(p(0), 2)]);
        assert!(matches!(
            ledger.apply(Verb::Ack, &at(&sent[0]), now),
            Outcome::Stale(_)
        ));
        assert_eq!(ledger.unsettled(), 1);
    }

    #[test]
    fn a_leaving_partition_settles_what_is_out_and_sends_nothing_again() {
        let start = Instant::now();
        let mut ledger = Ledger::new(manual());
        let sent: Vec<Delivery> = (0..3)
            .map(|o| ledger.admit(record(0, o, ""), start).unwrap())
            .collect();
        let other = ledger.admit(record(1, 0, ""), start).unwrap();
        // Offset 1 is given back before the revocation: ready to go again.
        ledger.apply(Verb::Nack(None), &at(&sent[1]), start);
        assert!(ledger.has_ready());
        ledger.leave(&[p(0)]);
        assert!(
            !ledger.has_ready(),
            "nothing of a leaving partition is sent"
        );
        assert_eq!(ledger.out_on(&[p(0)]), 2);
        // What is out may still be acked, and the commit point moves with it
        // up to what was given back.
        assert_eq!(
            ledger.apply(Verb::Ack, &at(&sent[0]), start),
            Outcome::Accepted
        );
        assert_eq!(ledger.take_commits(), vec![(p(0), 0)]);
        // Leases that expire now: the leaving partition's is left to its
        // next owner, the other partition's comes again as before.
        assert_eq!(ledger.fire(start + TIMEOUT), 2);
        assert_eq!(ledger.out_on(&[p(0)]), 0);
        assert!(ledger.take_commits().is_empty());
        let again = ledger.next_ready(start + TIMEOUT).expect("a redelivery");
        assert_eq!((again.partition, again.attempt), (1, 2));
        assert!(ledger.next_ready(start + TIMEOUT).is_none());
        assert!(matches!(
            ledger.apply(Verb::Ack, &at(&other), start),
            Outcome::Stale(_)
        ));
        ledger.forget(&[p(0)]);
        assert_eq!(ledger.unsettled(), 1);
    }

    #[test]
    fn an_expired_lease_comes_back_as_a_new_attempt_and_the_old_one_is_stale() {
        let start = Instant::now();
        let mut ledger = Ledger::new(manual());
        let first = ledger.admit(record(0, 0, ""), start).unwrap();
        assert_eq!((first.attempt, first.ack_id.as_str()), (1, "t:0:0:1"));
        assert_eq!(ledger.next_timer(), Some(start + TIMEOUT));
        assert_eq!(ledger.fire(start + TIMEOUT - Duration::from_millis(1)), 0);
        assert_eq!(ledger.fire(start + TIMEOUT), 1);
        let again = ledger.next_ready(start + TIMEOUT).unwrap();
        assert_eq!((again.attempt, again.ack_id.as_str()), (2, "t:0:0:2"));
        assert!(matches!(
            ledger.apply(Verb::Ack, &at(&first), start),
            Outcome::Stale(why) if why.contains("superseded by attempt 2")
        ));
        let future = AckRef {
            attempt: 3,
            ..at(&again)
        };
        assert!(matches!(
            ledger.apply(Verb::Ack, &future, start),
            Outcome::Unknown(_)
        ));
        let never = AckRef {
            offset: 1,
            ..at(&again)
        };
        assert!(matches!(
            ledger.apply(Verb::Ack, &never, start),
            Outcome::Unknown(_)
        ));
        assert_eq!(
            ledger.apply(Verb::Ack, &at(&again), start),
            Outcome::Accepted
        );
        assert_eq!(
            ledger.unsettled(),
            0,
            "a redelivery does not widen the window"
        );
    }

    #[test]
    fn a_nack_gives_back_at_once_or_after_its_delay() {
        let now = Instant::now();
        let mut ledger = Ledger::new(manual());
        let a = ledger.admit(record(0, 0, ""), now).unwrap();
        let b = ledger.admit(record(0, 1, ""), now).unwrap();
        assert_eq!(
            ledger.apply(Verb::Nack(None), &at(&a), now),
            Outcome::Accepted
        );
        assert!(matches!(
            ledger.apply(Verb::Ack, &at(&a), now),
            Outcome::Stale(_)
        ));
        assert_eq!(ledger.next_ready(now).unwrap().ack_id, "t:0:0:2");
        let delay = Duration::from_secs(3);
        ledger.apply(Verb::Nack(Some(delay)), &at(&b), now);
        assert!(ledger.next_ready(now).is_none());
        assert_eq!(ledger.next_timer(), Some(now + delay));
        ledger.fire(now + delay);
        assert_eq!(ledger.next_ready(now + delay).unwrap().ack_id, "t:0:1:2");
    }

    #[test]
    fn the_retry_policy_spaces_out_expired_and_nacked_deliveries() {
        let now = Instant::now();
        let mut settings = manual();
        settings.retry = Some(Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(4),
        });
        let mut ledger = Ledger::new(settings);
        let mut current = ledger.admit(record(0, 0, ""), now).unwrap();
        let mut waits = Vec::new();
        for _ in 0..4 {
            ledger.apply(Verb::Nack(None), &at(&current), now);
            let due = ledger.next_timer().unwrap();
            waits.push(due - now);
            ledger.fire(due);
            current = ledger.next_ready(due).unwrap();
        }
        assert!(waits[0] >= Duration::from_millis(1000) && waits[0] <= Duration::from_secs(1));
        assert!(waits[1] >= Duration::from_millis(1600) && waits[1] <= Duration::from_secs(2));
        assert!(waits[2] >= Duration::from_millis(3200) && waits[2] <= Duration::from_secs(4));
        assert!(waits[3] >= Duration::from_millis(3200) && waits[3] <= Duration::from_secs(4));
        // A lease that expires waits too.
        let expiry = ledger.next_timer().unwrap();
        ledger.fire(expiry);
        assert!(ledger.next_ready(expiry).is_none());
        assert!(ledger.next_timer().unwrap() >= expiry + Duration::from_millis(3200));
    }

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
        let (partition, offset, job) = &jobs[0];
        assert_eq!(
            (partition, *offset, job.topic.as_str()),
            (&p(0), 0, "t.dlq")
        );
        assert_eq!((job.class, job.attempts), ("max_attempts", 2));
        assert!(matches!(
            ledger.apply(Verb::Ack, &at(&second), now),
            Outcome::Stale(_)
        ));
        assert!(ledger.dead_lettered(&p(0), 0, false, now));
        assert!(
            ledger.take_commits().is_empty(),
            "a failed write settles nothing"
        );
        assert_eq!(ledger.unsettled(), 1);
        let retry = ledger.next_timer().unwrap();
        ledger.fire(retry);
        assert_eq!(ledger.take_jobs().len(), 1, "the write is tried again");
        assert!(ledger.dead_lettered(&p(0), 0, true, retry));
        assert_eq!(ledger.take_commits(), vec![(p(0), 0)]);
        assert_eq!(ledger.unsettled(), 0);
        assert!(!ledger.dead_lettered(&p(0), 0, true, retry), "once only");
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
                jobs[0].2.topic.as_str(),
                jobs[0].2.reason.as_str(),
                jobs[0].2.class
            ),
            ("graveyard", "bad", "client")
        );
        assert_eq!(*jobs[0].2.record, record(0, 0, ""));
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

    #[test]
    fn an_extension_moves_the_deadline_within_its_bound() {
        let now = Instant::now();
        let mut ledger = Ledger::new(manual());
        let d = ledger.admit(record(0, 0, ""), now).unwrap();
        let by = Duration::from_secs(60);
        assert_eq!(
            ledger.apply(Verb::Extend(Some(by)), &at(&d), now),
            Outcome::Accepted
        );
        assert_eq!(ledger.next_timer(), Some(now + by));
        assert_eq!(
            ledger.fire(now + TIMEOUT),
            0,
            "the old deadline no longer counts"
        );
        ledger.apply(Verb::Extend(Some(Duration::MAX)), &at(&d), now);
        assert_eq!(ledger.next_timer(), Some(now + MAX_DELAY));
        ledger.apply(Verb::Extend(None), &at(&d), now);
        assert_eq!(ledger.next_timer(), Some(now + TIMEOUT));
    }

    #[test]
    fn repeated_extensions_keep_at_most_two_timers_per_record_out() {
        let now = Instant::now();
        let mut ledger = Ledger::new(manual());
        let d = ledger.admit(record(0, 0, ""), now).unwrap();
        for i in 0..100_000u64 {
            let by = Duration::from_millis(1 + i % 1000);
            ledger.apply(Verb::Extend(Some(by)), &at(&d), now);
            assert!(ledger.timers() <= 2, "{} timers", ledger.timers());
        }
        // The last extension is the one that counts.
        assert_eq!(ledger.next_timer(), Some(now + Duration::from_millis(1000)));
        // With many out, extends of all of them keep two per record.
        let out: Vec<Delivery> = (1..=50)
            .map(|o| ledger.admit(record(0, o, ""), now).unwrap())
            .collect();
        for round in 0..100 {
            for d in &out {
                ledger.apply(Verb::Extend(Some(Duration::from_secs(round))), &at(d), now);
            }
            assert!(ledger.timers() <= 2 * 51, "{} timers", ledger.timers());
        }
        // Only the first record's lease (1 s) ran out before the last round's.
        assert_eq!(ledger.fire(now + Duration::from_secs(98)), 1);
        assert_eq!(ledger.fire(now + Duration::from_secs(99)), 50);
    }

    #[test]
    fn with_order_by_key_one_record_per_key_is_out_and_the_rest_wait_their_turn() {
        let now = Instant::now();
        let mut settings = manual();
        settings.ordered_by_key = true;
        let mut ledger = Ledger::new(settings);
        let a0 = ledger.admit(record(0, 0, "a"), now).unwrap();
        assert!(
            ledger.admit(record(0, 1, "a"), now).is_none(),
            "held behind a0"
        );
        let b2 = ledger.admit(record(0, 2, "b"), now).unwrap();
        let none3 = ledger.admit(record(0, 3, ""), now).unwrap();
        assert!(ledger.admit(record(0, 4, "a"), now).is_none());
        assert_eq!(
            ledger.unsettled(),
            5,
            "held records count against the window"
        );
        // A nacked first record stays the key's one out: nothing else of a.
        ledger.apply(Verb::Nack(None), &at(&a0), now);
        let a0 = ledger.next_ready(now).unwrap();
        assert_eq!((a0.offset, a0.attempt), (0, 2));
        assert!(ledger.next_ready(now).is_none());
        ledger.apply(Verb::Ack, &at(&b2), now);
        ledger.apply(Verb::Ack, &at(&none3), now);
        assert!(ledger.take_commits().is_empty());
        ledger.apply(Verb::Ack, &at(&a0), now);
        let a1 = ledger.next_ready(now).unwrap();
        assert_eq!((a1.offset, a1.attempt), (1, 1));
        assert!(ledger.next_ready(now).is_none());
        assert_eq!(ledger.take_commits(), vec![(p(0), 0)]);
        ledger.apply(Verb::Ack, &at(&a1), now);
        assert_eq!(ledger.take_commits(), vec![(p(0), 3)]);
        let a4 = ledger.next_ready(now).unwrap();
        assert_eq!(a4.offset, 4);
    }

    #[test]
    fn the_bytes_kept_unsettled_are_bounded_too() {
        let now = Instant::now();
        let mut ledger = Ledger::new(manual());
        let big = |offset| Record {
            value: Some(vec![0; MAX_UNSETTLED_BYTES / 2]),
            ..record(0, offset, "")
        };
        let first = ledger.admit(big(0), now).unwrap();
        assert!(!ledger.bytes_full());
        ledger.admit(big(1), now).unwrap();
        assert!(ledger.bytes_full(), "two halves fill it");
        ledger.apply(Verb::Ack, &at(&first), now);
        assert!(!ledger.bytes_full());
        ledger.forget(&[p(0)]);
        assert_eq!(ledger.unsettled_bytes, 0);
    }

    #[test]
    fn a_record_read_again_is_not_delivered_again() {
        let now = Instant::now();
        let mut ledger = Ledger::new(manual());
        let first = ledger.admit(record(0, 0, ""), now).unwrap();
        ledger.admit(record(0, 1, ""), now).unwrap();
        assert!(ledger.admit(record(0, 1, ""), now).is_none(), "still out");
        ledger.apply(Verb::Ack, &at(&first), now);
        assert!(ledger.admit(record(0, 0, ""), now).is_none(), "settled");
        assert_eq!(ledger.unsettled(), 1);
        ledger.forget(&[p(0)]);
        assert!(
            ledger.admit(record(0, 0, ""), now).is_some(),
            "a partition that comes back starts afresh"
        );
    }

    #[test]
    fn revoked_partitions_free_their_window_and_their_keys() {
        let now = Instant::now();
        let mut settings = manual();
        settings.ordered_by_key = true;
        let mut ledger = Ledger::new(settings);
        let gone = ledger.admit(record(0, 0, "k"), now).unwrap();
        assert!(ledger.admit(record(1, 0, "k"), now).is_none());
        ledger.forget(&[p(0)]);
        assert_eq!(ledger.unsettled(), 1);
        assert!(matches!(
            ledger.apply(Verb::Ack, &at(&gone), now),
            Outcome::Stale(_)
        ));
        assert_eq!(ledger.next_ready(now).unwrap().partition, 1, "released");
    }

    #[test]
    fn acknowledge_refuses_all_when_one_ack_names_nothing_handed_out() {
        let now = Instant::now();
        let mut ledger = Ledger::new(manual());
        let d = ledger.admit(record(0, 4, ""), now).unwrap();
        ledger.admit(record(0, 2, ""), now).unwrap();
        assert!(ledger.check(&[at(&d)]).is_ok());
        for never in [(0, 5), (1, 0)] {
            let ack = AckRef {
                partition: p(never.0),
                offset: never.1,
                attempt: 1,
            };
            let error = ledger.check(&[at(&d), ack]).unwrap_err();
            assert!(error.to_string().contains("never handed out"), "{error}");
        }
    }

    #[test]
    fn the_longest_ack_timeout_never_overflows_the_clock() {
        let now = Instant::now();
        let mut ledger = Ledger::new(ManualAcks::new(Duration::MAX, 1));
        ledger.admit(record(0, 0, ""), now);
        assert_eq!(ledger.next_timer(), Some(now + MAX_ACK_TIMEOUT));
    }
}
