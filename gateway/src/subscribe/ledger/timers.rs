//! The ledger's timers: one deadline per record at most, in a heap with
//! lazy invalidation (a record's earlier timer goes stale when it gets a
//! new one or none), and jitter for retry delays.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use tokio::time::Instant;

use crate::subscribe::spec::Position;

/// The fewest timers kept before stale ones are dropped: one record's
/// live timer and one stale.
const MIN_BOUND: usize = 2;

/// A deadline: when, its sequence number, and whose it is.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    sequence: u64,
    position: Position,
}

/// The deadlines of the records out, waiting and being dead-lettered.
#[derive(Debug, Default)]
pub(super) struct Timers {
    /// Every timer set, earliest first; stale ones are skipped, and
    /// dropped once they are as many as the live ones.
    heap: BinaryHeap<Reverse<Timer>>,
    /// Per record, the sequence number of the timer that counts.
    live: HashMap<Position, u64>,
    /// How many timers the heap may hold before the stale ones are dropped.
    bound: usize,
    /// The last sequence number given out.
    sequence: u64,
}

impl Timers {
    /// Sets the deadline of `position` to `at`, replacing any earlier one.
    /// A client repeating a verb (extend, extend, ...) leaves at most as
    /// many stale timers as live ones.
    pub(super) fn set(&mut self, position: &Position, at: Instant) {
        if self.heap.len() >= self.bound.max(MIN_BOUND) {
            self.drop_stale();
        }
        self.sequence += 1;
        self.live.insert(position.clone(), self.sequence);
        self.heap.push(Reverse(Timer {
            at,
            sequence: self.sequence,
            position: position.clone(),
        }));
    }

    /// Takes away the deadline of `position`, if it has one.
    pub(super) fn cancel(&mut self, position: &Position) {
        self.live.remove(position);
    }

    /// When the next deadline is due.
    pub(super) fn next(&mut self) -> Option<Instant> {
        while let Some(Reverse(timer)) = self.heap.peek() {
            if self.is_live(timer) {
                return Some(timer.at);
            }
            self.heap.pop();
        }
        None
    }

    /// The next record whose deadline is due at `now`; its deadline is
    /// gone.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Position> {
        while let Some(Reverse(timer)) = self.heap.peek() {
            if timer.at > now {
                return None;
            }
            let Reverse(timer) = self.heap.pop()?;
            if self.is_live(&timer) {
                self.live.remove(&timer.position);
                return Some(timer.position);
            }
        }
        None
    }

    /// Timers in the heap, live and stale.
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    fn is_live(&self, timer: &Timer) -> bool {
        self.live.get(&timer.position) == Some(&timer.sequence)
    }

    /// Keeps only the timers that count; the next clean-up comes when as
    /// many again were added (amortised: constant work per timer).
    fn drop_stale(&mut self) {
        let live = &self.live;
        self.heap
            .retain(|Reverse(timer)| live.get(&timer.position) == Some(&timer.sequence));
        self.bound = (2 * self.heap.len()).max(MIN_BOUND);
        self.heap.shrink_to(self.bound);
    }
}

/// Numbers from 0 to 1 for jitter (xorshift), seeded afresh per ledger.
#[derive(Debug)]
pub(super) struct Jitter(u64);

impl Jitter {
    /// A generator with a random seed.
    pub(super) fn new() -> Self {
        Self(uuid::Uuid::new_v4().as_u64_pair().0 | 1)
    }

    /// The next number, from 0 to 1.
    pub(super) fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::subscribe::spec::TopicPartition;

    fn at(offset: i64) -> Position {
        TopicPartition::new("t", 0).at(offset)
    }

    #[test]
    fn a_new_deadline_replaces_the_old_and_a_cancelled_one_never_fires() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.set(&at(0), now + Duration::from_secs(1));
        timers.set(&at(1), now + Duration::from_secs(2));
        timers.set(&at(0), now + Duration::from_secs(3));
        assert_eq!(timers.next(), Some(now + Duration::from_secs(2)));
        timers.cancel(&at(1));
        assert_eq!(timers.next(), Some(now + Duration::from_secs(3)));
        assert_eq!(timers.pop_due(now + Duration::from_secs(2)), None);
        assert_eq!(timers.pop_due(now + Duration::from_secs(3)), Some(at(0)));
        assert_eq!(timers.pop_due(now + Duration::from_secs(9)), None);
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn timers_due_together_fire_in_the_order_they_were_set() {
        let now = Instant::now();
        let mut timers = Timers::default();
        for offset in [5, 3, 9] {
            timers.set(&at(offset), now);
        }
        let fired: Vec<i64> = std::iter::from_fn(|| timers.pop_due(now))
            .map(|p| p.offset)
            .collect();
        assert_eq!(fired, [5, 3, 9]);
    }

    #[test]
    fn stale_timers_never_outnumber_the_live_ones() {
        let now = Instant::now();
        let mut timers = Timers::default();
        for i in 0..10_000u64 {
            timers.set(&at(0), now + Duration::from_millis(i));
            assert!(timers.len() <= 2, "{} timers", timers.len());
        }
        for offset in 1..=50 {
            timers.set(&at(offset), now);
        }
        for _ in 0..100 {
            for offset in 0..=50 {
                timers.set(&at(offset), now);
            }
            assert!(timers.len() <= 2 * 51, "{} timers", timers.len());
        }
    }

    #[test]
    fn jitter_stays_between_zero_and_one() {
        let mut jitter = Jitter::new();
        let draws: Vec<f64> = (0..1000).map(|_| jitter.next()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        assert!(draws.iter().any(|d| *d < 0.5) && draws.iter().any(|d| *d >= 0.5));
    }
}
