//! Live fan-out: ephemeral ACK_MODE_AUTO streams from the latest event share
//! one consumer per topic set, each gets every event, a stalled one is ended
//! without stopping the others, and shutdown closes the shared consumers.

use std::collections::BTreeSet;

use eventgateway::v1::event::Data;
use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::{
    subscribe_response::Kind, Event, PublishEventRequest, StartFrom, SubscribeRequest,
    SubscribeResponse,
};
use testkit::*;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

fn latest(topic: &str) -> SubscribeRequest {
    SubscribeRequest {
        topics: vec![topic.to_owned()],
        start_from: StartFrom::Latest as i32,
        ..SubscribeRequest::default()
    }
}

/// The numbers of the next `count` deliveries of a stream.
async fn numbers(stream: &mut Streaming<SubscribeResponse>, count: usize) -> BTreeSet<i64> {
    let mut seen = BTreeSet::new();
    for _ in 0..count {
        seen.insert(n(&next_delivery(stream).await));
    }
    seen
}

/// Publishes events 0..count of 16 KiB each, numbered by the attribute `n`:
/// far more than a stalled stream's channel and HTTP/2 windows hold.
async fn publish_large(mut client: EventGatewayClient<Channel>, topic: String, count: usize) {
    for i in 0..count {
        let event = Event {
            data: Some(Data::Binary(vec![b'x'; 16 * 1024])),
            attributes: [("n".to_owned(), i.to_string())].into(),
            ..Event::default()
        };
        client
            .publish_event(PublishEventRequest {
                topic: topic.clone(),
                key: String::new(),
                event: Some(event),
            })
            .await
            .expect("publish succeeds");
    }
}

/// The numbers of what `reader` gets until it has `count` different ones.
async fn read_large(reader: &mut Streaming<SubscribeResponse>, count: usize) -> BTreeSet<usize> {
    let mut got = BTreeSet::new();
    while got.len() < count {
        let delivery = next_delivery(reader).await;
        let event = delivery.event.expect("an event");
        got.insert(event.attributes["n"].parse::<usize>().unwrap());
    }
    got
}

/// Reads a stalled stream's buffered deliveries to the status it ends with.
async fn end_status(mut stream: Streaming<SubscribeResponse>) -> Status {
    loop {
        match stream.message().await {
            Ok(Some(message)) => assert!(matches!(message.kind, Some(Kind::Delivery(_)))),
            Ok(None) => panic!("a stalled stream ended without a status"),
            Err(status) => return status,
        }
    }
}

#[tokio::test]
async fn latest_streams_of_a_topic_share_one_consumer_and_each_gets_every_event() {
    let (broker, topic, gateway, mut client) = fixture("fanout", 3).await;
    let other = testkit::topic("fanout-other");
    broker.create_topic(&other, 1).await;
    let before = publish_numbered(&mut client, &topic, 0, 5).await;

    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(subscribe(&mut client, latest(&topic)).await.1);
    }
    assert_eq!(
        gateway.live_tails(),
        1,
        "20 streams on one topic share one consumer"
    );
    let (_, mut elsewhere) = subscribe(&mut client, latest(&other)).await;
    assert_eq!(gateway.live_tails(), 2, "another topic gets its own");

    // Everything stored after `subscribed`, and nothing from before.
    let end = publish_numbered(&mut client, &topic, before, 30).await;
    let expected: BTreeSet<i64> = (before..end).collect();
    for stream in &mut streams {
        assert_eq!(numbers(stream, 30).await, expected);
    }
    publish_numbered(&mut client, &other, 0, 1).await;
    assert_eq!(n(&next_delivery(&mut elsewhere).await), 0);

    // A stream that joins a running tail gets what comes after it joined.
    let (_, mut late) = subscribe(&mut client, latest(&topic)).await;
    assert_eq!(gateway.live_tails(), 2);
    let after = publish_numbered(&mut client, &topic, end, 3).await;
    assert_eq!(numbers(&mut late, 3).await, (end..after).collect());

    // Once every stream of a topic is gone, its consumer closes.
    drop(streams);
    drop(late);
    eventually("the tail of the first topic closes", || async {
        gateway.live_tails() == 1
    })
    .await;

    // Shutdown ends the remaining stream with UNAVAILABLE and closes its tail.
    let stopping = tokio::spawn(gateway.shutdown());
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match elsewhere.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status.code()),
            }
        }
    })
    .await
    .expect("the stream ends");
    assert_eq!(ended, Some(Code::Unavailable));
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("shutdown completes")
        .unwrap()
        .expect("clean shutdown");
}

#[tokio::test]
async fn a_stream_that_stops_reading_is_ended_and_the_others_go_on() {
    let (_broker, topic, gateway, client) = fixture_with("fanout-slow", 1, |config| {
        config.subscriptions.subscription_buffer = 4
    })
    .await;
    // Each on its own connection: the stalled one must not hold the
    // other's connection back.
    let mut reader_client = testkit::client(gateway.addr()).await;
    let mut stalled_client = testkit::client(gateway.addr()).await;
    let (_, mut reader) = subscribe(&mut reader_client, latest(&topic)).await;
    let (_, stalled) = subscribe(&mut stalled_client, latest(&topic)).await;
    assert_eq!(gateway.live_tails(), 1);

    let count = 600;
    let publisher = tokio::spawn(publish_large(client, topic.clone(), count));
    let got = read_large(&mut reader, count).await;
    assert_eq!(
        got,
        (0..count).collect(),
        "the reading stream gets every event"
    );
    publisher.await.unwrap();

    // The stalled stream: what was buffered, then RESOURCE_EXHAUSTED.
    let status = tokio::time::timeout(PATIENCE, end_status(stalled))
        .await
        .expect("the stalled stream ends");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("START_FROM_OFFSETS"),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_that_stop_reading_hold_the_tail_back_no_longer_than_one_would() {
    let (_broker, topic, gateway, client) = fixture_with("fanout-stalls", 1, |config| {
        config.subscriptions.subscription_buffer = 4
    })
    .await;
    let mut reader_client = testkit::client(gateway.addr()).await;
    let (_, mut reader) = subscribe(&mut reader_client, latest(&topic)).await;
    // Thirty streams that read nothing, on a connection of their own.
    let mut stalled_client = testkit::client(gateway.addr()).await;
    let mut stalled = Vec::new();
    for _ in 0..30 {
        stalled.push(subscribe(&mut stalled_client, latest(&topic)).await.1);
    }
    assert_eq!(gateway.live_tails(), 1);

    let count = 200;
    let publisher = tokio::spawn(publish_large(client, topic.clone(), count));
    // Waited for one after another, thirty stalled streams held the tail
    // back for 150 s, far past the reader's patience for its next event;
    // waited for together, for 5 s.
    let got = read_large(&mut reader, count).await;
    assert_eq!(got, (0..count).collect(), "the reader gets every event");
    tokio::time::timeout(PATIENCE, publisher)
        .await
        .expect("every publish is answered")
        .unwrap();
    // Read together: they share one connection's window.
    let ends = stalled.into_iter().map(end_status);
    let statuses = tokio::time::timeout(PATIENCE, futures_util::future::join_all(ends))
        .await
        .expect("every stalled stream ends");
    for status in statuses {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    }
    gateway.shutdown().await.unwrap();
}

/// Streams that subscribe at once to topics with no tail yet join the one
/// tail being started (its consumer is opened outside the tails' lock): one
/// consumer per topic set, and each stream gets every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_join_a_tail_while_it_starts_get_every_event() {
    let (broker, topic, gateway, client) = fixture("fanout-start", 4).await;
    let other = testkit::topic("fanout-start-other");
    broker.create_topic(&other, 4).await;
    let opened = futures_util::future::join_all((0..16).map(|i| {
        let mut client = client.clone();
        let request = latest(if i % 2 == 0 { &topic } else { &other });
        async move { subscribe(&mut client, request).await.1 }
    }))
    .await;
    assert_eq!(gateway.live_tails(), 2, "one consumer per topic set");
    let mut client = client;
    publish_numbered(&mut client, &topic, 0, 10).await;
    publish_numbered(&mut client, &other, 0, 10).await;
    for mut stream in opened {
        assert_eq!(numbers(&mut stream, 10).await, (0..10).collect());
    }
    gateway.shutdown().await.unwrap();
}
