//! Order by key: per topic and key, the records not settled yet, first
//! come first; only the first of each key may be out, the rest are held.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::subscribe::spec::{Position, TopicPartition};

/// What records are ordered by: a topic and a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OrderKey {
    topic: Arc<str>,
    key: Vec<u8>,
}

/// The queues of keys with records not settled (only with order by key on).
#[derive(Debug, Default)]
pub(super) struct KeyOrder {
    keys: HashMap<OrderKey, VecDeque<Position>>,
}

impl KeyOrder {
    /// Queues the record at `position` behind the earlier ones of its key;
    /// whether it must wait for them (is held).
    pub(super) fn queue(&mut self, position: &Position, key: &[u8]) -> bool {
        let queue = self.keys.entry(order_key(position, key)).or_default();
        queue.push_back(position.clone());
        queue.len() > 1
    }

    /// Takes the settled record at `position` off its key's queue; the
    /// key's next record, which may go now.
    pub(super) fn settle(&mut self, position: &Position, key: &[u8]) -> Option<Position> {
        let key = order_key(position, key);
        let queue = self.keys.get_mut(&key)?;
        queue.retain(|p| p != position);
        let next = queue.front().cloned();
        if next.is_none() {
            self.keys.remove(&key);
        }
        next
    }

    /// Records held behind an earlier one of their key.
    pub(super) fn held(&self) -> usize {
        self.keys.values().map(|queue| queue.len() - 1).sum()
    }

    /// Drops the records of `partitions` from every key; the first record
    /// of each key left, which may go now.
    pub(super) fn forget(&mut self, partitions: &[TopicPartition]) -> Vec<Position> {
        self.keys.retain(|_, queue| {
            queue.retain(|p| !partitions.contains(&p.partition));
            !queue.is_empty()
        });
        self.keys
            .values()
            .filter_map(|q| q.front().cloned())
            .collect()
    }
}

fn order_key(position: &Position, key: &[u8]) -> OrderKey {
    OrderKey {
        topic: position.partition.topic.clone(),
        key: key.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, offset: i64) -> Position {
        TopicPartition::new("t", partition).at(offset)
    }

    #[test]
    fn one_record_per_key_goes_and_the_next_follows_when_it_is_settled() {
        let mut order = KeyOrder::default();
        assert!(!order.queue(&at(0, 0), b"a"));
        assert!(order.queue(&at(0, 1), b"a"), "behind offset 0");
        assert!(!order.queue(&at(0, 2), b"b"), "another key");
        assert!(order.queue(&at(1, 0), b"a"), "a key spans partitions");
        assert_eq!(order.settle(&at(0, 0), b"a"), Some(at(0, 1)));
        assert_eq!(order.settle(&at(0, 2), b"b"), None);
        assert_eq!(order.settle(&at(0, 1), b"a"), Some(at(1, 0)));
        assert_eq!(order.settle(&at(1, 0), b"a"), None);
        assert!(order.keys.is_empty(), "settled keys are forgotten");
    }

    #[test]
    fn the_same_key_on_another_topic_is_another_queue() {
        let mut order = KeyOrder::default();
        assert!(!order.queue(&at(0, 0), b"k"));
        assert!(!order.queue(&TopicPartition::new("u", 0).at(0), b"k"));
    }

    #[test]
    fn forgetting_a_partition_lets_the_next_record_of_its_keys_go() {
        let mut order = KeyOrder::default();
        order.queue(&at(0, 0), b"k");
        order.queue(&at(1, 0), b"k");
        order.queue(&at(0, 1), b"only-0");
        let next = order.forget(&[TopicPartition::new("t", 0)]);
        assert_eq!(next, vec![at(1, 0)]);
        assert_eq!(order.keys.len(), 1);
    }
}
