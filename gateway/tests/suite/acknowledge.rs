//! ACK_MODE_MANUAL against a real broker: commits never pass an
//! unacknowledged event, unacknowledged events come back, the window caps
//! what is out, and a group's members together handle every event.

use std::collections::BTreeSet;
use std::time::Duration;

use eventgateway::v1::{
    subscribe_response::Kind, AckMode, Delivery, StartFrom, SubscribeRequest, SubscribeResponse,
};
use serde_json::json;
use testkit::*;
use tonic::Streaming;

fn manual(topic: &str, group: &str) -> SubscribeRequest {
    SubscribeRequest {
        topics: vec![topic.into()],
        group: group.into(),
        start_from: StartFrom::Earliest as i32,
        ack_mode: AckMode::Manual as i32,
        ..SubscribeRequest::default()
    }
}

/// The deliveries that arrive within `window`, without waiting longer.
async fn arrivals(stream: &mut Streaming<SubscribeResponse>, window: Duration) -> Vec<Delivery> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(message) = tokio::time::timeout_at(deadline, stream.message()).await {
        match message.expect("healthy stream").expect("open stream").kind {
            Some(Kind::Delivery(delivery)) => got.push(delivery),
            Some(Kind::Rebalance(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

#[tokio::test]
async fn a_crashed_subscriber_leaves_every_unacknowledged_event_to_the_next_member() {
    let (_broker, topic, gateway, mut client) = fixture("crash", 1).await;
    let group = format!("group-{topic}");
    for i in 0..20 {
        publish(&mut client, &topic, "", json!({"n": i})).await;
    }
    let (id, mut first) = subscribe(&mut client, manual(&topic, &group)).await;
    let mut received = Vec::new();
    for _ in 0..20 {
        received.push(next_delivery(&mut first).await);
    }
    // Acknowledge the prefix 0..10, and 15 out of order.
    let acked: Vec<&Delivery> = received[..10].iter().chain([&received[15]]).collect();
    ack(&mut client, &id, &acked).await;
    drop(first); // the subscriber crashes

    let (_, mut second) = subscribe(&mut client, manual(&topic, &group)).await;
    let mut again = BTreeSet::new();
    for _ in 10..20 {
        again.insert(n(&next_delivery(&mut second).await));
    }
    // 15 comes again: the commit point stops at the first unacknowledged event.
    assert_eq!(
        again,
        (10..20).collect(),
        "every unacknowledged event, none of the prefix"
    );
    let extra = arrivals(&mut second, Duration::from_millis(500)).await;
    assert!(
        extra.is_empty(),
        "acknowledged events came again: {extra:?}"
    );
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_event_never_acknowledged_comes_back_with_attempt_two() {
    let (_broker, topic, gateway, mut client) = fixture("redeliver", 1).await;
    publish(&mut client, &topic, "", json!({"n": 0})).await;
    let request = SubscribeRequest {
        ack_timeout: Some(prost_types::Duration {
            seconds: 0,
            nanos: 300_000_000,
        }),
        ..manual(&topic, "")
    };
    let (id, mut stream) = subscribe(&mut client, request).await;
    let first = next_delivery(&mut stream).await;
    assert_eq!(first.attempt, 1);
    let second = next_delivery(&mut stream).await;
    assert_eq!((second.offset, second.attempt), (first.offset, 2));
    assert_eq!(second.event, first.event);
    ack(&mut client, &id, &[&second]).await;
    let stats = gateway.subscription(&id).unwrap();
    let after_ack = stats.redelivered.get();
    let extra = arrivals(&mut stream, Duration::from_secs(1)).await;
    assert!(
        extra.is_empty(),
        "an acknowledged event came again: {extra:?}"
    );
    assert_eq!(stats.redelivered.get(), after_ack);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_window_caps_unacknowledged_deliveries() {
    let (_broker, topic, gateway, mut client) = fixture("window", 1).await;
    for i in 0..30 {
        publish(&mut client, &topic, "", json!({"n": i})).await;
    }
    let request = SubscribeRequest {
        max_unacked: 10,
        ..manual(&topic, "")
    };
    let (id, mut stream) = subscribe(&mut client, request).await;
    let stats = gateway.subscription(&id).unwrap();
    let mut out = Vec::new();
    for _ in 0..10 {
        out.push(next_delivery(&mut stream).await);
    }
    eventually("the consumer is paused on the full window", || async {
        stats.paused.get()
    })
    .await;
    let extra = arrivals(&mut stream, Duration::from_secs(1)).await;
    assert!(extra.is_empty(), "more than 10 out: {extra:?}");
    assert_eq!(stats.delivered.get(), 10);
    // The full window stalls this stream only: another one reads everything.
    let (_, mut other) = subscribe(
        &mut client,
        SubscribeRequest {
            max_unacked: 10,
            ..manual(&topic, "")
        },
    )
    .await;
    for i in 0..10 {
        assert_eq!(n(&next_delivery(&mut other).await), i);
    }
    let (_, mut auto) = subscribe(&mut client, from_earliest(&topic)).await;
    for i in 0..30 {
        assert_eq!(n(&next_delivery(&mut auto).await), i);
    }

    // Acknowledging 5 frees 5 places, and exactly 5 more come.
    let freed: Vec<&Delivery> = out[..5].iter().collect();
    ack(&mut client, &id, &freed).await;
    let next: Vec<i64> = arrivals(&mut stream, Duration::from_secs(2))
        .await
        .iter()
        .map(n)
        .collect();
    assert_eq!(next, (10..15).collect::<Vec<_>>());
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn when_one_member_leaves_the_group_still_handles_every_event() {
    let (_broker, topic, gateway, mut client) = fixture("members", 4).await;
    let group = format!("group-{topic}");
    let (id_a, mut a) = subscribe(&mut client, manual(&topic, &group)).await;
    let (id_b, mut b) = subscribe(&mut client, manual(&topic, &group)).await;
    // The group settles: each member holds partitions, as their rebalance
    // notices tell (nothing is published yet, so nothing else comes).
    let (mut held_a, mut held_b) = (BTreeSet::new(), BTreeSet::new());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while held_a.is_empty() || held_b.is_empty() {
        let (message, held) = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                m = a.message() => (m, &mut held_a),
                m = b.message() => (m, &mut held_b),
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the group never gave both members a partition"));
        match message.expect("healthy stream").expect("open stream").kind {
            Some(Kind::Rebalance(notice)) => {
                for p in notice.revoked {
                    held.remove(&p.partition);
                }
                held.extend(notice.assigned.iter().map(|p| p.partition));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut published = 0;
    let mut handled = BTreeSet::new();
    // Publish in rounds until both members handled events (keyless events
    // go to random partitions); both acknowledge what they get.
    let (mut a_got, mut b_got) = (0, 0);
    while a_got == 0 || b_got == 0 {
        assert!(published < 240, "one member got none of {published}");
        published = publish_numbered(&mut client, &topic, published, 8).await;
        while handled.len() < published as usize {
            tokio::select! {
                d = next_delivery(&mut a) => {
                    a_got += 1;
                    ack(&mut client, &id_a, &[&d]).await;
                    handled.insert(n(&d));
                }
                d = next_delivery(&mut b) => {
                    b_got += 1;
                    ack(&mut client, &id_b, &[&d]).await;
                    handled.insert(n(&d));
                }
            }
        }
    }
    // A now stops acknowledging: it receives, then leaves mid-stream.
    let mut unacked_by_a = 0;
    while unacked_by_a == 0 {
        published = publish_numbered(&mut client, &topic, published, 8).await;
        unacked_by_a += arrivals(&mut a, Duration::from_millis(500)).await.len();
    }
    drop(a);
    // B is told about the rebalance, takes over, and gets the rest, including
    // what A received but never acknowledged.
    let mut rebalanced = false;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while handled.len() < published as usize {
        let message = tokio::time::timeout_at(deadline, b.message())
            .await
            .unwrap_or_else(|_| panic!("missing after A left: {:?}", missing(&handled, published)))
            .unwrap()
            .unwrap();
        match message.kind {
            Some(Kind::Delivery(d)) => {
                ack(&mut client, &id_b, &[&d]).await;
                handled.insert(n(&d));
            }
            Some(Kind::Rebalance(_)) => rebalanced = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    // The loop above ends only once B handled every event, so also every
    // one A received and never acknowledged (it fails after PATIENCE,
    // naming what is missing).
    assert!(rebalanced, "B was told its partitions changed");
    gateway.shutdown().await.unwrap();
}

fn missing(handled: &BTreeSet<i64>, total: i64) -> Vec<i64> {
    (0..total).filter(|i| !handled.contains(i)).collect()
}
