//! Publish and subscribe through the gateway against a real broker process:
//! round trips, every start position, consumer groups, and interoperation
//! with plain Kafka clients.

mod interop;

use std::collections::HashSet;
use std::time::Duration;

use eventgateway::v1::{PartitionOffset, StartFrom, SubscribeRequest};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::json;
use testkit::*;

fn request(topic: &str, start_from: StartFrom) -> SubscribeRequest {
    SubscribeRequest {
        topics: vec![topic.into()],
        start_from: start_from as i32,
        ..SubscribeRequest::default()
    }
}

#[tokio::test]
async fn a_published_event_comes_back_with_its_metadata() {
    let (_broker, topic, gateway, mut client) = fixture("round-trip", 1).await;

    let stored = publish(
        &mut client,
        &topic,
        "user-7",
        json!({"user_id": 7, "email": "u7@example.com"}),
    )
    .await;
    assert_eq!(stored.topic, topic);
    assert_eq!(stored.offset, 0);
    assert!(!stored.event_id.is_empty(), "the gateway fills an id");
    assert!(stored.timestamp.is_some(), "the gateway fills a time");

    let (_, mut stream) = subscribe(&mut client, request(&topic, StartFrom::Earliest)).await;
    let delivery = next_delivery(&mut stream).await;
    assert_eq!(delivery.key, "user-7");
    assert_eq!(
        (delivery.partition, delivery.offset, delivery.attempt),
        (0, 0, 1)
    );
    assert_eq!(
        body(&delivery),
        json!({"user_id": 7, "email": "u7@example.com"})
    );
    let event = delivery.event.unwrap();
    assert_eq!(event.id, stored.event_id);
    assert_eq!(event.r#type, "test.event");
    assert_eq!(event.source, "/tests");
    assert_eq!(event.time, stored.timestamp);
    assert_eq!(event.content_type, "application/json");
    assert_eq!(delivery.ack_id, format!("{topic}:0:0:1"));
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn latest_sees_only_what_comes_after_and_earliest_sees_everything() {
    let (_broker, topic, gateway, mut client) = fixture("latest", 1).await;

    publish(&mut client, &topic, "", json!({"n": 0})).await;
    let (_, mut latest) = subscribe(&mut client, request(&topic, StartFrom::Latest)).await;
    let (_, mut unspecified) =
        subscribe(&mut client, request(&topic, StartFrom::Unspecified)).await;
    // A latest subscription starts at the end once its partitions are
    // assigned; publish until one arrives, then check nothing older came.
    let mut sent = 1;
    let first = loop {
        publish(&mut client, &topic, "", json!({"n": sent})).await;
        sent += 1;
        if let Ok(delivery) =
            tokio::time::timeout(Duration::from_millis(500), next_delivery(&mut latest)).await
        {
            break delivery;
        }
    };
    assert_ne!(
        body(&first),
        json!({"n": 0}),
        "latest must not replay older events"
    );
    assert!(first.offset >= 1);
    let from_unspecified = next_delivery(&mut unspecified).await;
    assert_ne!(
        body(&from_unspecified),
        json!({"n": 0}),
        "unspecified means latest"
    );

    let (_, mut earliest) = subscribe(&mut client, request(&topic, StartFrom::Earliest)).await;
    for n in 0..sent {
        assert_eq!(body(&next_delivery(&mut earliest).await), json!({"n": n}));
    }
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn timestamp_and_offsets_replay_from_the_asked_position() {
    let (_broker, topic, gateway, mut client) = fixture("replay", 1).await;

    let mut stored = Vec::new();
    for n in 0..6 {
        stored.push(publish(&mut client, &topic, "", json!({"n": n})).await);
    }
    // Events 3..6 carry their own, later time; replay from event 3's time.
    let from = stored[3].timestamp.unwrap();
    let by_time = SubscribeRequest {
        start_time: Some(from),
        ..request(&topic, StartFrom::Timestamp)
    };
    let (_, mut stream) = subscribe(&mut client, by_time).await;
    let first = next_delivery(&mut stream).await;
    assert!(
        first.offset <= 3,
        "nothing at or after the time is skipped: {}",
        first.offset
    );
    let mut last = first.offset;
    while last < 5 {
        last = next_delivery(&mut stream).await.offset;
    }

    let by_offset = SubscribeRequest {
        start_offsets: vec![PartitionOffset {
            topic: topic.clone(),
            partition: 0,
            offset: 4,
        }],
        ..request(&topic, StartFrom::Offsets)
    };
    let (_, mut stream) = subscribe(&mut client, by_offset).await;
    assert_eq!(body(&next_delivery(&mut stream).await), json!({"n": 4}));
    assert_eq!(body(&next_delivery(&mut stream).await), json!({"n": 5}));
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_timestamp_replay_skips_what_came_before() {
    let (_broker, topic, gateway, mut client) = fixture("replay-time", 1).await;

    let base = 1_700_000_000_000i64;
    for n in 0..4 {
        let mut event = json_event(json!({"n": n}));
        event.time = Some(eventgateway::record::millis_to_timestamp(base + n * 60_000));
        client
            .publish_event(eventgateway::v1::PublishEventRequest {
                topic: topic.clone(),
                key: String::new(),
                event: Some(event),
            })
            .await
            .unwrap();
    }
    let request = SubscribeRequest {
        start_time: Some(eventgateway::record::millis_to_timestamp(base + 2 * 60_000)),
        ..request(&topic, StartFrom::Timestamp)
    };
    let (_, mut stream) = subscribe(&mut client, request).await;
    assert_eq!(body(&next_delivery(&mut stream).await), json!({"n": 2}));
    assert_eq!(body(&next_delivery(&mut stream).await), json!({"n": 3}));
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn two_members_of_a_group_split_the_partitions_and_see_every_event_once() {
    let (_broker, topic, gateway, mut client) = fixture("group", 4).await;
    let group = format!("group-{topic}");
    let member = SubscribeRequest {
        group: group.clone(),
        ..request(&topic, StartFrom::Earliest)
    };
    let (_, mut a) = subscribe(&mut client, member.clone()).await;
    let (_, mut b) = subscribe(&mut client, member).await;

    // Publish in rounds until the group has settled with both members
    // holding partitions (one more round after that), then check that every
    // event came exactly once and that the members' partitions did not overlap.
    let mut seen: Vec<i64> = Vec::new();
    let mut published = 0;
    let mut settled_rounds = 0;
    let (mut partitions_a, mut partitions_b) = (HashSet::new(), HashSet::new());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        partitions_a.clear();
        partitions_b.clear();
        published = publish_numbered(&mut client, &topic, published, 12).await;
        while seen.len() < published as usize {
            tokio::select! {
                d = next_delivery(&mut a) => { partitions_a.insert(d.partition); seen.push(body(&d)["n"].as_i64().unwrap()); }
                d = next_delivery(&mut b) => { partitions_b.insert(d.partition); seen.push(body(&d)["n"].as_i64().unwrap()); }
            }
        }
        if !partitions_a.is_empty() && !partitions_b.is_empty() {
            settled_rounds += 1;
            if settled_rounds == 2 {
                break;
            }
        }
    }
    // Nothing more arrives: no event was delivered twice.
    let extra = tokio::time::timeout(Duration::from_secs(2), async {
        tokio::select! { d = next_delivery(&mut a) => d, d = next_delivery(&mut b) => d }
    })
    .await;
    assert!(extra.is_err(), "an event came twice: {extra:?}");
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..published).collect::<Vec<_>>(),
        "every event exactly once"
    );
    assert_eq!(settled_rounds, 2, "both members got partitions");
    assert!(
        partitions_a.is_disjoint(&partitions_b),
        "{partitions_a:?} vs {partitions_b:?}"
    );
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_group_resumes_after_what_it_was_handed() {
    let (_broker, topic, gateway, mut client) = fixture("resume", 1).await;
    let member = SubscribeRequest {
        group: format!("group-{topic}"),
        ..request(&topic, StartFrom::Earliest)
    };
    for n in 0..3 {
        publish(&mut client, &topic, "", json!({"n": n})).await;
    }
    let (_, mut first) = subscribe(&mut client, member.clone()).await;
    for n in 0..3 {
        assert_eq!(body(&next_delivery(&mut first).await), json!({"n": n}));
    }
    drop(first);
    for n in 3..5 {
        publish(&mut client, &topic, "", json!({"n": n})).await;
    }
    // The first member left and committed; the next one starts after it.
    let (_, mut second) = subscribe(&mut client, member).await;
    assert_eq!(body(&next_delivery(&mut second).await), json!({"n": 3}));
    gateway.shutdown().await.unwrap();
}
