//! Acknowledgement bookkeeping of an ACK_MODE_MANUAL subscription: which
//! deliveries are out, which came back acknowledged, how far each partition
//! may be committed, and which deliveries are due again.
//!
//! The committed offset of a partition only moves over a contiguous run of
//! acknowledged deliveries, so it never passes one that is still out.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use eventgateway::v1::Delivery;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::spec::Partition;
use crate::config::MAX_ACK_TIMEOUT;
use crate::error::Error;
use crate::text::clip;

/// Acknowledged deliveries of a MANUAL subscription: partition and offset.
pub(crate) type Acks = Vec<(Partition, i64)>;

/// One Acknowledge call as its subscription's task gets it.
#[derive(Debug)]
pub(super) struct AckRequest {
    /// The deliveries acknowledged.
    pub(super) acks: Acks,
    /// How many were applied, or why none was.
    pub(super) reply: oneshot::Sender<Result<usize, Error>>,
}

/// The ack id of a delivery: `<topic>:<partition>:<offset>` (topic names
/// cannot contain ':').
pub(super) fn ack_id(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}:{partition}:{offset}")
}

/// Reads an ack id back into its partition and offset.
pub(crate) fn parse_ack_id(ack_id: &str) -> Result<(Partition, i64), Error> {
    let malformed = || {
        Error::InvalidArgument(format!(
            "ack id {} is not one the gateway handed out (expected <topic>:<partition>:<offset>)",
            clip(ack_id)
        ))
    };
    let mut parts = ack_id.rsplitn(3, ':');
    let offset = parts
        .next()
        .and_then(|o| o.parse::<i64>().ok())
        .ok_or_else(malformed)?;
    let partition = parts
        .next()
        .and_then(|p| p.parse::<i32>().ok())
        .ok_or_else(malformed)?;
    let topic = parts
        .next()
        .filter(|t| !t.is_empty())
        .ok_or_else(malformed)?;
    if offset < 0 || partition < 0 {
        return Err(malformed());
    }
    Ok(((topic.to_owned(), partition), offset))
}

/// One delivery that is out and not yet committed.
#[derive(Debug)]
struct Outstanding {
    /// The delivery as sent, for a redelivery.
    delivery: Delivery,
    /// When it is due again if not acknowledged.
    due: Instant,
    /// Whether the client acknowledged it.
    acked: bool,
}

/// The deliveries of one MANUAL subscription that are not yet committed.
#[derive(Debug)]
pub(super) struct AckTracker {
    /// Per partition, by offset: deliveries out or acknowledged but not yet
    /// committable because an earlier one is still out.
    partitions: HashMap<Partition, BTreeMap<i64, Outstanding>>,
    /// Deliveries out and not acknowledged.
    unacked: usize,
    /// How long a delivery may stay unacknowledged before it is sent again.
    ack_timeout: Duration,
    /// The highest offset delivered on this stream, per partition (kept
    /// after a revocation): an ack beyond it names no delivery.
    highest: HashMap<Partition, i64>,
}

impl AckTracker {
    /// A tracker that redelivers after `ack_timeout`.
    pub(super) fn new(ack_timeout: Duration) -> Self {
        Self {
            partitions: HashMap::new(),
            unacked: 0,
            ack_timeout,
            highest: HashMap::new(),
        }
    }

    /// Deliveries sent and not acknowledged: the flow-control window in use.
    pub(super) fn unacked(&self) -> usize {
        self.unacked
    }

    /// When a delivery sent at `now` is due again.
    fn due(&self, now: Instant) -> Instant {
        // The ack timeout is bounded (MAX_ACK_TIMEOUT); never overflow.
        now.checked_add(self.ack_timeout)
            .unwrap_or_else(|| now + MAX_ACK_TIMEOUT)
    }

    /// Records a first delivery.
    pub(super) fn sent(&mut self, delivery: &Delivery, now: Instant) {
        let partition = (delivery.topic.clone(), delivery.partition);
        let highest = self
            .highest
            .entry(partition.clone())
            .or_insert(delivery.offset);
        *highest = (*highest).max(delivery.offset);
        let due = self.due(now);
        let entries = self.partitions.entry(partition).or_default();
        let previous = entries.insert(
            delivery.offset,
            Outstanding {
                delivery: delivery.clone(),
                due,
                acked: false,
            },
        );
        if previous.is_none_or(|p| p.acked) {
            self.unacked += 1;
        }
    }

    /// Checks that every ack names a delivery this stream handed out (out,
    /// or settled already, which is harmless); the first that does not is
    /// the error.
    pub(super) fn check(&self, acks: &Acks) -> Result<(), Error> {
        let unknown = acks.iter().find(|((topic, partition), offset)| {
            self.highest
                .get(&(topic.clone(), *partition))
                .is_none_or(|highest| offset > highest)
        });
        match unknown {
            None => Ok(()),
            Some(((topic, partition), offset)) => Err(Error::InvalidArgument(format!(
                "ack id {} was never handed out on this subscription; nothing of this call was applied",
                clip(&ack_id(topic, *partition, *offset))
            ))),
        }
    }

    /// Marks a delivery acknowledged. Returns the offset up to which (and
    /// including) its partition may now be committed, if that moved. An
    /// unknown or repeated ack changes nothing.
    pub(super) fn ack(&mut self, partition: &Partition, offset: i64) -> Option<i64> {
        let entries = self.partitions.get_mut(partition)?;
        let entry = entries.get_mut(&offset)?;
        if entry.acked {
            return None;
        }
        entry.acked = true;
        self.unacked -= 1;
        let mut committable = None;
        while let Some(first) = entries.first_entry() {
            if !first.get().acked {
                break;
            }
            committable = Some(*first.key());
            first.remove();
        }
        committable
    }

    /// When the next unacknowledged delivery is due again.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.partitions
            .values()
            .flat_map(BTreeMap::values)
            .filter(|o| !o.acked)
            .map(|o| o.due)
            .min()
    }

    /// The deliveries due again at `now`, with their attempt raised; each
    /// is due again one ack timeout later.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<Delivery> {
        let mut due = Vec::new();
        let again = self.due(now);
        for entries in self.partitions.values_mut() {
            for outstanding in entries.values_mut() {
                if !outstanding.acked && outstanding.due <= now {
                    outstanding.delivery.attempt = outstanding.delivery.attempt.saturating_add(1);
                    outstanding.due = again;
                    due.push(outstanding.delivery.clone());
                }
            }
        }
        due.sort_by(|a, b| {
            (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset))
        });
        due
    }

    /// Forgets the deliveries of partitions this stream no longer owns: the
    /// group's next owner delivers them again from the committed offset.
    pub(super) fn forget(&mut self, partitions: &[Partition]) {
        for partition in partitions {
            if let Some(entries) = self.partitions.remove(partition) {
                self.unacked -= entries.values().filter(|o| !o.acked).count();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(partition: i32, offset: i64) -> Delivery {
        Delivery {
            topic: "t".into(),
            partition,
            offset,
            attempt: 1,
            ..Delivery::default()
        }
    }

    #[test]
    fn ack_ids_round_trip_and_malformed_ones_are_refused() {
        let id = ack_id("orders.v1", 3, 42);
        assert_eq!(parse_ack_id(&id).unwrap(), (("orders.v1".into(), 3), 42));
        for bad in [
            "", "t:1", "t:x:1", "t:1:x", ":1:2", "t:-1:2", "t:1:-2", "nonsense",
        ] {
            assert!(parse_ack_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_commit_point_never_passes_an_unacknowledged_delivery() {
        let now = Instant::now();
        let mut tracker = AckTracker::new(Duration::from_secs(30));
        for offset in 0..4 {
            tracker.sent(&delivery(0, offset), now);
        }
        let p = ("t".to_owned(), 0);
        assert_eq!(tracker.unacked(), 4);
        assert_eq!(tracker.ack(&p, 1), None, "offset 0 is still out");
        assert_eq!(tracker.ack(&p, 2), None);
        assert_eq!(tracker.ack(&p, 0), Some(2), "0, 1 and 2 are now contiguous");
        assert_eq!(tracker.ack(&p, 0), None, "acking twice is harmless");
        assert_eq!(
            tracker.ack(&p, 9),
            None,
            "an unknown offset changes nothing"
        );
        assert_eq!(tracker.unacked(), 1);
        assert_eq!(tracker.ack(&p, 3), Some(3));
        assert_eq!(tracker.unacked(), 0);
    }

    #[test]
    fn unacknowledged_deliveries_come_due_with_a_higher_attempt() {
        let start = Instant::now();
        let timeout = Duration::from_secs(10);
        let mut tracker = AckTracker::new(timeout);
        tracker.sent(&delivery(0, 0), start);
        tracker.sent(&delivery(1, 5), start);
        tracker.ack(&("t".into(), 1), 5);
        assert_eq!(tracker.next_due(), Some(start + timeout));
        assert!(tracker.take_due(start + Duration::from_secs(9)).is_empty());
        let due = tracker.take_due(start + timeout);
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].offset, due[0].attempt), (0, 2));
        assert_eq!(tracker.next_due(), Some(start + timeout + timeout));
        assert_eq!(
            tracker.unacked(),
            1,
            "a redelivery does not widen the window"
        );
    }

    #[test]
    fn acks_must_name_a_delivery_this_stream_handed_out() {
        let now = Instant::now();
        let mut tracker = AckTracker::new(Duration::from_secs(30));
        tracker.sent(&delivery(0, 4), now);
        tracker.sent(&delivery(0, 2), now);
        let p0 = ("t".to_owned(), 0);
        assert!(tracker
            .check(&vec![(p0.clone(), 4), (p0.clone(), 1)])
            .is_ok());
        tracker.ack(&p0, 4);
        assert!(
            tracker.check(&vec![(p0.clone(), 4)]).is_ok(),
            "a second ack is harmless"
        );
        for never in [
            (p0.clone(), 5),
            (("t".to_owned(), 1), 0),
            (("u".to_owned(), 0), 2),
        ] {
            let error = tracker.check(&vec![(p0.clone(), 2), never]).unwrap_err();
            assert!(error.to_string().contains("never handed out"), "{error}");
        }
        tracker.forget(std::slice::from_ref(&p0));
        assert!(
            tracker.check(&vec![(p0, 2)]).is_ok(),
            "an ack after a revocation is harmless"
        );
    }

    #[test]
    fn the_longest_ack_timeout_never_overflows_the_clock() {
        let now = Instant::now();
        let mut tracker = AckTracker::new(Duration::MAX);
        tracker.sent(&delivery(0, 0), now);
        assert_eq!(tracker.next_due(), Some(now + MAX_ACK_TIMEOUT));
    }

    #[test]
    fn revoked_partitions_free_their_window() {
        let now = Instant::now();
        let mut tracker = AckTracker::new(Duration::from_secs(1));
        tracker.sent(&delivery(0, 0), now);
        tracker.sent(&delivery(1, 0), now);
        tracker.forget(&[("t".into(), 0)]);
        assert_eq!(tracker.unacked(), 1);
        assert_eq!(tracker.ack(&("t".into(), 0), 0), None);
    }
}
