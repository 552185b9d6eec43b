//! The caps on what one gateway holds, each met: subscriptions, Kafka
//! consumers and PublishEvents streams beyond their limit get
//! RESOURCE_EXHAUSTED naming it, and the place is free again once one ends;
//! streams count against their own caps, never the unary calls' limit. One
//! connection (or principal) holds at most its share of each cap, and a
//! PublishEvents stream that sends nothing ends, freeing its place.
//! (The tests of the global caps let one connection take all of each.)

use eventgateway::v1::{PublishEventsRequest, StartFrom, SubscribeRequest};
use serde_json::json;
use testkit::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

fn latest(topic: &str) -> SubscribeRequest {
    SubscribeRequest {
        topics: vec![topic.to_owned()],
        start_from: StartFrom::Latest as i32,
        ..SubscribeRequest::default()
    }
}

#[tokio::test]
async fn subscriptions_beyond_the_cap_are_refused_until_one_ends() {
    let (_broker, topic, gateway, mut client) = fixture_with("cap-subscriptions", 1, |config| {
        config.limits.max_subscriptions = 2;
        config.limits.max_share_percent = 100;
    })
    .await;
    let (_, first) = subscribe(&mut client, from_earliest(&topic)).await;
    let (_, _second) = subscribe(&mut client, latest(&topic)).await;
    let refused = client.subscribe(latest(&topic)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("--max-subscriptions"),
        "{refused:?}"
    );
    drop(first);
    eventually("a place is free again", || {
        let (mut client, topic) = (client.clone(), topic.clone());
        async move { client.subscribe(latest(&topic)).await.is_ok() }
    })
    .await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn subscriptions_that_need_a_consumer_beyond_the_cap_are_refused_and_tails_share() {
    let (_broker, topic, gateway, mut client) = fixture_with("cap-consumers", 1, |config| {
        config.limits.max_consumers = 1;
        config.limits.max_share_percent = 100;
    })
    .await;
    // The one consumer: a live tail, which more streams of the topic share.
    let (_, _tail) = subscribe(&mut client, latest(&topic)).await;
    let (_, mut sharing) = subscribe(&mut client, latest(&topic)).await;
    assert_eq!(gateway.live_tails(), 1);
    let group = SubscribeRequest {
        group: format!("group-{topic}"),
        ..from_earliest(&topic)
    };
    let refused = client.subscribe(group).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("--max-consumers"), "{refused:?}");
    // The refused one took nothing: the tail goes on.
    publish(&mut client, &topic, "k", json!({"n": 1})).await;
    assert_eq!(n(&next_delivery(&mut sharing).await), 1);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn publish_streams_beyond_the_cap_are_refused() {
    let (_broker, topic, gateway, mut client) = fixture_with("cap-publish", 1, |config| {
        config.limits.max_publish_streams = 1;
        config.limits.max_share_percent = 100;
    })
    .await;
    let (tx, rx) = mpsc::channel::<PublishEventsRequest>(1);
    let mut open = client
        .publish_events(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let (_tx2, rx2) = mpsc::channel::<PublishEventsRequest>(1);
    let refused = client
        .publish_events(ReceiverStream::new(rx2))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("--max-publish-streams"),
        "{refused:?}"
    );
    // The open one works, and once it ends its place is free.
    tx.send(PublishEventsRequest {
        request_id: "r1".into(),
        publish: Some(eventgateway::v1::PublishEventRequest {
            topic: topic.clone(),
            key: String::new(),
            event: Some(json_event(json!({"n": 1}))),
        }),
        batch: Vec::new(),
    })
    .await
    .unwrap();
    assert_eq!(open.message().await.unwrap().unwrap().request_id, "r1");
    drop(tx);
    assert!(open.message().await.unwrap().is_none());
    eventually("a place is free again", || {
        let mut client = client.clone();
        async move {
            let (_tx, rx) = mpsc::channel::<PublishEventsRequest>(1);
            client.publish_events(ReceiverStream::new(rx)).await.is_ok()
        }
    })
    .await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn streams_count_against_their_own_cap_not_the_unary_limit() {
    let (_broker, topic, gateway, mut client) = fixture_with("streams-not-calls", 1, |config| {
        config.limits.max_concurrent_requests = 2;
        config.limits.max_subscriptions = 8;
        config.limits.max_share_percent = 100;
    })
    .await;
    // More Subscribe streams than the unary limit, on one connection: all
    // are served.
    let mut streams = Vec::new();
    for _ in 0..8 {
        streams.push(subscribe(&mut client, latest(&topic)).await.1);
    }
    // One more than the stream cap is refused, naming it...
    let refused = client.subscribe(latest(&topic)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("--max-subscriptions"),
        "{refused:?}"
    );
    // ...while a unary call still succeeds, and every stream gets its event.
    publish(&mut client, &topic, "k", json!({"n": 1})).await;
    for stream in &mut streams {
        assert_eq!(n(&next_delivery(stream).await), 1);
    }
    gateway.shutdown().await.unwrap();
}

/// Opens a PublishEvents stream that sends nothing (yet): the stream of
/// answers, or the status that refused it; and its sending side.
async fn publish_stream(
    client: &mut eventgateway::v1::event_gateway_client::EventGatewayClient<
        tonic::transport::Channel,
    >,
) -> (
    Result<tonic::Streaming<eventgateway::v1::PublishEventsResponse>, tonic::Status>,
    mpsc::Sender<PublishEventsRequest>,
) {
    let (tx, rx) = mpsc::channel::<PublishEventsRequest>(1);
    let opened = client
        .publish_events(ReceiverStream::new(rx))
        .await
        .map(tonic::Response::into_inner);
    (opened, tx)
}

#[tokio::test]
async fn one_connection_holds_at_most_its_share_of_each_cap() {
    // A quarter of 4: one of each per connection.
    let (_broker, topic, gateway, mut client) = fixture_with("shares", 1, |config| {
        config.limits.max_publish_streams = 4;
        config.limits.max_consumers = 4;
    })
    .await;
    let mut other = testkit::client(gateway.addr()).await;
    let (first, _tx1) = publish_stream(&mut client).await;
    first.expect("its share");
    let (second, _tx2) = publish_stream(&mut client).await;
    let refused = second.expect_err("over its share");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("this connection")
            && refused
                .message()
                .contains("share (25% of --max-publish-streams, 4)"),
        "{refused:?}"
    );
    let (elsewhere, _tx3) = publish_stream(&mut other).await;
    elsewhere.expect("another connection has a share of its own");

    let group = |name: &str| SubscribeRequest {
        group: format!("{name}-{topic}"),
        ..from_earliest(&topic)
    };
    let (_, _member) = subscribe(&mut client, group("a")).await;
    let refused = client.subscribe(group("b")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("--max-consumers"), "{refused:?}");
    // Live tails take no consumer of their own: they are not counted.
    let (_, _tail) = subscribe(&mut client, latest(&topic)).await;
    let (_, _member) = subscribe(&mut other, group("c")).await;
    metric_reaches(
        gateway.metrics_addr().unwrap(),
        "gateway_throttled_total{limit=\"share_of_consumers\",grant=\"-\"}",
        1.0,
    )
    .await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_publish_stream_that_sends_nothing_ends_and_frees_its_place() {
    let (_broker, _topic, gateway, mut client) = fixture_with("publish-idle", 1, |config| {
        config.limits.max_publish_streams = 1;
        config.limits.max_share_percent = 100;
        config.limits.publish_idle_timeout = std::time::Duration::from_millis(500);
    })
    .await;
    let (opened, _tx) = publish_stream(&mut client).await;
    let status = opened
        .expect("a place")
        .message()
        .await
        .expect_err("ended for sending nothing");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("--publish-idle-timeout"),
        "{status:?}"
    );
    eventually("its place is free again", || {
        let mut client = client.clone();
        async move { publish_stream(&mut client).await.0.is_ok() }
    })
    .await;
    gateway.shutdown().await.unwrap();
}
