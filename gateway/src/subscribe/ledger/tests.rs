//! The ledger as a whole: leases, windows, order by key, dead letters
//! and revocations together.

use super::*;
use crate::subscribe::delivery::parse_ack_id;
use crate::subscribe::spec::Backoff;

pub(super) const TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn record(partition: i32, offset: i64, key: &str) -> Record {
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

pub(super) fn manual() -> ManualAcks {
    ManualAcks::new(TIMEOUT, 100)
}

pub(super) fn at(delivery: &Delivery) -> AckRef {
    parse_ack_id(&delivery.ack_id).unwrap()
}

pub(super) fn p(partition: i32) -> TopicPartition {
    TopicPartition::new("t", partition)
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
    assert_eq!(ledger.take_commits(), vec![p(0).at(2)]);
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
    assert_eq!(ledger.take_commits(), vec![p(0).at(0)]);
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
        position: p(0).at(1),
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
    assert_eq!(ledger.take_commits(), vec![p(0).at(0)]);
    ledger.apply(Verb::Ack, &at(&a1), now);
    assert_eq!(ledger.take_commits(), vec![p(0).at(3)]);
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
            position: p(never.0).at(never.1),
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

#[test]
fn a_lease_handed_back_goes_out_first_again_without_counting_as_a_failure() {
    let now = Instant::now();
    let mut settings = manual();
    settings.ordered_by_key = true;
    settings.dead_letter = Some(crate::subscribe::DeadLetterPolicy {
        topic: None,
        max_attempts: 1,
    });
    let mut ledger = Ledger::new(settings);
    let first = ledger.admit(record(0, 0, "k"), now).unwrap();
    assert!(
        ledger.admit(record(0, 1, "k"), now).is_none(),
        "held behind k"
    );
    let other = ledger.admit(record(0, 2, "j"), now).unwrap();
    ledger.apply(Verb::Ack, &at(&other), now);
    ledger.hand_back(&at(&first).position, at(&first).attempt);
    assert!(ledger.take_jobs().is_empty(), "not a failed attempt");
    let again = ledger.next_ready(now).unwrap();
    assert_eq!((again.offset, again.attempt), (0, 2));
    assert!(
        ledger.next_ready(now).is_none(),
        "offset 1 still waits for k"
    );
    assert!(matches!(
        ledger.apply(Verb::Ack, &at(&first), now),
        Outcome::Stale(_)
    ));
    assert!(!ledger.is_out_at(&at(&first).position, 1));
    assert!(ledger.is_out_at(&at(&again).position, 2));
    ledger.hand_back(&at(&first).position, 1);
    assert!(
        ledger.next_ready(now).is_none(),
        "an old attempt hands nothing back"
    );
}
