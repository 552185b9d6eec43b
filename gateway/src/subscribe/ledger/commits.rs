//! The commit point of each partition: the end of its contiguous run of
//! settled offsets, so that a commit never passes an event not settled;
//! and what was handed to the ledger, so that an ack beyond it names
//! nothing.

use std::collections::{BTreeMap, HashMap};

use crate::subscribe::spec::{Position, TopicPartition};

/// Per partition: the highest offset read, the commit point, and the
/// commit points that moved since last taken.
#[derive(Debug, Default)]
pub(super) struct Commits {
    /// The highest offset read per partition (kept after a revocation).
    highest: HashMap<TopicPartition, i64>,
    /// Per partition, the offset after its commit point: a record below
    /// it that Kafka hands over again (it can, around a pause) is settled.
    floor: HashMap<TopicPartition, i64>,
    /// Commit points that moved, to store.
    moved: Vec<Position>,
}

impl Commits {
    /// Notes that the record at `position` was read; whether it is below
    /// the commit point (settled before).
    pub(super) fn read(&mut self, position: &Position) -> bool {
        let highest = self
            .highest
            .entry(position.partition.clone())
            .or_insert(position.offset);
        *highest = (*highest).max(position.offset);
        self.floor
            .get(&position.partition)
            .is_some_and(|floor| position.offset < *floor)
    }

    /// Whether the record at `position` was ever read.
    pub(super) fn was_read(&self, position: &Position) -> bool {
        self.highest
            .get(&position.partition)
            .is_some_and(|highest| position.offset <= *highest)
    }

    /// Moves the commit point of `partition` over its leading settled
    /// records, taking them out of `records`.
    pub(super) fn advance<E>(
        &mut self,
        partition: &TopicPartition,
        records: &mut BTreeMap<i64, E>,
        settled: impl Fn(&E) -> bool,
    ) {
        let mut upto = None;
        while let Some(first) = records.first_entry() {
            if !settled(first.get()) {
                break;
            }
            upto = Some(*first.key());
            first.remove();
        }
        if let Some(upto) = upto {
            self.floor.insert(partition.clone(), upto + 1);
            self.moved.push(partition.at(upto));
        }
    }

    /// The commit points that moved since last asked: per partition, the
    /// offset up to which (and including) it may be committed.
    pub(super) fn take(&mut self) -> Vec<Position> {
        std::mem::take(&mut self.moved)
    }

    /// Forgets the commit point of a partition this stream no longer owns:
    /// if it comes back, its records are read afresh.
    pub(super) fn forget(&mut self, partition: &TopicPartition) {
        self.floor.remove(partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_point_moves_over_the_leading_settled_records_only() {
        let tp = TopicPartition::new("t", 0);
        let mut commits = Commits::default();
        let mut records: BTreeMap<i64, bool> = (0..4).map(|o| (o, false)).collect();
        for offset in 0..4 {
            assert!(!commits.read(&tp.at(offset)));
        }
        records.insert(1, true);
        records.insert(2, true);
        commits.advance(&tp, &mut records, |settled| *settled);
        assert!(commits.take().is_empty(), "offset 0 is not settled");
        records.insert(0, true);
        commits.advance(&tp, &mut records, |settled| *settled);
        assert_eq!(commits.take(), vec![tp.at(2)]);
        assert_eq!(records.keys().copied().collect::<Vec<_>>(), [3]);
        assert!(commits.read(&tp.at(1)), "below the commit point");
        assert!(!commits.read(&tp.at(3)));
        commits.forget(&tp);
        assert!(!commits.read(&tp.at(1)), "afresh after a revocation");
    }

    #[test]
    fn only_what_was_read_was_handed_out() {
        let tp = TopicPartition::new("t", 0);
        let mut commits = Commits::default();
        assert!(!commits.was_read(&tp.at(0)));
        commits.read(&tp.at(4));
        commits.read(&tp.at(2));
        assert!(commits.was_read(&tp.at(0)) && commits.was_read(&tp.at(4)));
        assert!(!commits.was_read(&tp.at(5)));
        assert!(!commits.was_read(&TopicPartition::new("t", 1).at(0)));
    }
}
