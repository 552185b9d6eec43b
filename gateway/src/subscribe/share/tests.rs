//! Entering shares, and how a share's deliveries spread over its streams.

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::subscribe::delivery::{delivery_message, Record};
use crate::subscribe::ledger::Ledger;
use crate::subscribe::spec::{ManualAcks, StartPosition};
use crate::subscribe::stream::{self, Ending, Message};

const STALL: Duration = Duration::from_secs(5);

fn spec(share: &str, ordered_by_key: bool) -> SubscriptionSpec {
    let mut manual = ManualAcks::new(Duration::from_secs(10), 2);
    manual.ordered_by_key = ordered_by_key;
    SubscriptionSpec {
        topics: vec!["t".into()],
        group: Some("g".into()),
        start: StartPosition::Earliest,
        manual: Some(manual),
        share: Some(share.into()),
    }
}

fn outlet(window: usize) -> (Outlet, Ending) {
    let (deliveries, ending) = stream::channel("s", 8);
    (Outlet { deliveries, window }, ending)
}

fn enter(shares: &Shares, spec: &SubscriptionSpec, owner: &str) -> Result<Entered, Error> {
    shares.enter(spec, Some(owner.into()), outlet(2).0, (4, STALL))
}

fn record(offset: i64, key: &str) -> Record {
    Record {
        topic: "t".into(),
        partition: 0,
        offset,
        key: Some(key.as_bytes().to_vec()),
        value: Some(b"v".to_vec()),
        timestamp_ms: Some(1),
        headers: Vec::new(),
        unreadable: 0,
    }
}

/// Sends the record at `offset` through `dispatch`: the stream it went to.
fn send(dispatch: &mut Dispatch, ledger: &mut Ledger, offset: i64, key: &str) -> Option<usize> {
    let delivery = ledger.admit(record(offset, key), Instant::now())?;
    let message: Message = Arc::new(delivery_message(delivery));
    let target = dispatch.aim(&message, ledger)?;
    dispatch.sent(target, &message);
    Some(target)
}

/// A share of two streams with windows of 2: its dispatch, its registry
/// and the streams' receiving ends.
fn two_streams(ordered_by_key: bool) -> (Box<Dispatch>, Shares, Ending, Ending) {
    let shares = Shares::default();
    let (first, one) = outlet(2);
    let Ok(Entered::First { mut dispatch, .. }) =
        shares.enter(&spec("s", ordered_by_key), None, first, (4, STALL))
    else {
        panic!("the first stream opens the share")
    };
    let (second, two) = outlet(2);
    dispatch.join(second);
    (dispatch, shares, one, two)
}

#[test]
fn streams_join_their_principals_share_with_the_same_settings_only() {
    let shares = Shares::default();
    let Ok(Entered::First { dispatch, .. }) = enter(&shares, &spec("s", true), "alice") else {
        panic!("the first stream opens the share");
    };
    assert!(matches!(
        enter(&shares, &spec("s", true), "alice"),
        Ok(Entered::Joined(_))
    ));
    let other = enter(&shares, &spec("s", true), "mallory").err().unwrap();
    assert_eq!(other.code(), tonic::Code::PermissionDenied, "{other}");
    let differs = enter(&shares, &spec("s", false), "alice").err().unwrap();
    assert_eq!(differs.code(), tonic::Code::FailedPrecondition);
    assert!(differs.to_string().contains("ordered_by_key"), "{differs}");
    assert!(matches!(
        enter(&shares, &spec("other", false), "alice"),
        Ok(Entered::First { .. })
    ));
    drop(dispatch);
    assert_eq!(shares.len(), 0, "both shares closed with their tasks");
    assert!(matches!(
        enter(&shares, &spec("s", false), "mallory"),
        Ok(Entered::First { .. })
    ));
}

#[test]
fn a_share_closes_only_when_no_stream_joined_meanwhile() {
    let shares = Shares::default();
    let Ok(Entered::First { mut dispatch, .. }) = enter(&shares, &spec("s", false), "a") else {
        panic!()
    };
    let mut ledger = Ledger::new(spec("s", false).manual.unwrap());
    // The first stream leaves (its client is gone)...
    assert_eq!(dispatch.sweep(&mut ledger, Instant::now()).0, 0);
    assert_eq!(dispatch.len(), 0);
    // ... while another joins.
    assert!(matches!(
        enter(&shares, &spec("s", false), "a"),
        Ok(Entered::Joined(_))
    ));
    assert!(!dispatch.close_if_idle(), "the joined stream keeps it open");
    assert_eq!(dispatch.len(), 1);
    dispatch.sweep(&mut ledger, Instant::now());
    assert!(dispatch.close_if_idle());
    assert_eq!(shares.len(), 0);
}

#[test]
fn deliveries_go_to_the_stream_with_most_room_and_follow_their_key() {
    let (mut dispatch, _shares, _one, _two) = two_streams(false);
    let mut ledger = Ledger::new(ManualAcks::new(Duration::from_secs(10), 10));
    assert_eq!(
        send(&mut dispatch, &mut ledger, 0, "a"),
        Some(0),
        "a tie: the first"
    );
    assert_eq!(
        send(&mut dispatch, &mut ledger, 1, "b"),
        Some(1),
        "room 1 against 2"
    );
    assert_eq!(
        send(&mut dispatch, &mut ledger, 2, "b"),
        Some(1),
        "a tie, but b was on 1"
    );
    assert_eq!(
        send(&mut dispatch, &mut ledger, 3, "b"),
        Some(0),
        "1 is full"
    );
    assert_eq!(
        send(&mut dispatch, &mut ledger, 4, "c"),
        None,
        "every window is full"
    );
    assert_eq!(dispatch.held(&ledger), 4);
}

#[test]
fn a_stream_that_leaves_gives_back_what_it_held_first_in_line() {
    let (mut dispatch, _shares, one, _two) = two_streams(true);
    let mut settings = ManualAcks::new(Duration::from_secs(10), 10);
    settings.ordered_by_key = true;
    let mut ledger = Ledger::new(settings);
    assert_eq!(send(&mut dispatch, &mut ledger, 0, "a"), Some(0));
    assert_eq!(send(&mut dispatch, &mut ledger, 1, "b"), Some(1));
    assert_eq!(
        send(&mut dispatch, &mut ledger, 2, "a"),
        None,
        "held behind a"
    );
    drop(one);
    let now = Instant::now();
    assert_eq!(dispatch.sweep(&mut ledger, now).0, 0);
    assert_eq!(dispatch.len(), 1);
    let again = ledger.next_ready(now).expect("offset 0 is ready again");
    assert_eq!((again.offset, again.attempt), (0, 2));
    let message: Message = Arc::new(delivery_message(again));
    assert_eq!(
        dispatch.aim(&message, &ledger),
        Some(0),
        "to the stream left"
    );
}

#[test]
fn a_stream_that_reads_nothing_for_the_stall_timeout_is_ended_and_gives_back() {
    let shares = Shares::default();
    let (first, _one) = outlet(2);
    let Ok(Entered::First { mut dispatch, .. }) =
        shares.enter(&spec("s", false), None, first, (4, STALL))
    else {
        panic!()
    };
    let mut ledger = Ledger::new(ManualAcks::new(Duration::from_secs(10), 10));
    let delivery = ledger.admit(record(0, "a"), Instant::now()).unwrap();
    let message: Message = Arc::new(delivery_message(delivery));
    dispatch.sent(0, &message);
    dispatch
        .sender(0)
        .try_send(stream::Parcel::from(message))
        .unwrap();
    let start = Instant::now();
    let (stalled, next) = dispatch.sweep(&mut ledger, start);
    assert_eq!(stalled, 0);
    assert!(next.is_some_and(|at| at <= start + STALL), "{next:?}");
    assert_eq!(dispatch.sweep(&mut ledger, start + STALL).0, 1);
    assert_eq!(dispatch.len(), 0);
    assert_eq!(ledger.next_ready(start).map(|d| d.attempt), Some(2));
}
