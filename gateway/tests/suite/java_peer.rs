//! The reference Java client as the gateway's peer on the same topics: a
//! key goes to the same partition whether a Java service or the gateway
//! writes it (both murmur2), so that per-key order holds across them; and
//! CloudEvents written by the CloudEvents Java SDK's Kafka binding arrive
//! with their attributes, as the gateway's records reach that SDK as
//! CloudEvents.

use eventgateway::v1::{event::Data, Event, PublishEventRequest, StartFrom, SubscribeRequest};
use serde_json::json;
use testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_and_a_java_producer_place_every_key_on_the_same_partition() {
    let (broker, topic, gateway, mut client) = fixture("java-keys", 6).await;
    let keys: Vec<String> = (0..100).map(|i| format!("user-{i}")).collect();
    let (brokers, java_topic, java_keys) = (broker.brokers(), topic.clone(), keys.clone());
    let printed = tokio::task::spawn_blocking(move || {
        let mut args = vec![brokers.as_str(), java_topic.as_str()];
        args.extend(java_keys.iter().map(String::as_str));
        run_java("ProduceKeys", &args)
    })
    .await
    .unwrap()
    .unwrap_or_else(|error| panic!("{error}"));
    let java: Vec<(String, i32)> = printed
        .lines()
        .map(|line| {
            let (key, partition) = line.split_once('\t').expect("key<TAB>partition");
            (key.to_owned(), partition.parse().expect("a partition"))
        })
        .collect();
    assert_eq!(java.len(), keys.len(), "{printed}");

    let mut differ = Vec::new();
    let mut used = std::collections::HashSet::new();
    for (key, java_partition) in &java {
        let stored = client
            .publish_event(PublishEventRequest {
                topic: topic.clone(),
                key: key.clone(),
                event: Some(json_event(json!({"from": "gateway"}))),
            })
            .await
            .expect("stored")
            .into_inner();
        used.insert(stored.partition);
        if stored.partition != *java_partition {
            differ.push((key.clone(), *java_partition, stored.partition));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of 100 keys land elsewhere (key, Java, gateway): {differ:?}",
        differ.len()
    );
    assert_eq!(used.len(), 6, "100 keys spread over every partition");
    gateway.shutdown().await.unwrap();
}

/// Runs the CloudEvents peer (`testkit/java/CloudEventsPeer.java`) with
/// `args` off the async runtime; what it printed.
async fn cloud_events_peer(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_java("CloudEventsPeer", &args)
    })
    .await
    .unwrap()
    .unwrap_or_else(|error| panic!("{error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_events_of_the_java_sdk_arrive_whole_and_the_gateway_s_records_read_as_cloud_events()
{
    let (broker, topic, gateway, mut client) = fixture("cloudevents", 3).await;

    // Java writes; the gateway delivers.
    let keys = ["user-1", "user-2", "user-3"];
    let mut args = vec!["produce".to_owned(), broker.brokers(), topic.clone()];
    args.extend(keys.iter().map(|k| (*k).to_owned()));
    let printed = cloud_events_peer(args).await;
    let written: Vec<Vec<&str>> = printed.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(written.len(), 3, "{printed}");
    let request = SubscribeRequest {
        topics: vec![topic.clone()],
        start_from: StartFrom::Earliest as i32,
        ..SubscribeRequest::default()
    };
    let (_, mut stream) = subscribe(&mut client, request).await;
    for _ in 0..3 {
        let delivery = next_delivery(&mut stream).await;
        let key = delivery.key.clone();
        let line = written
            .iter()
            .find(|w| w[0] == key)
            .unwrap_or_else(|| panic!("a delivery of key {key}: {printed}"));
        assert_eq!(delivery.partition.to_string(), line[1], "{delivery:?}");
        let event = delivery.event.expect("an event");
        assert_eq!(event.id, format!("java-{key}"));
        assert_eq!(event.r#type, "peer.produced");
        assert_eq!(event.source, "/java-peer");
        assert_eq!(event.content_type, "application/json");
        assert_eq!(event.attributes["ce_subject"], format!("subject-{key}"));
        assert_eq!(event.attributes["ce_origin"], "java");
        let time = event.time.expect("a time");
        let java_time: prost_types::Timestamp = line[2].parse().expect("Java's time");
        assert_eq!(
            (time.seconds, time.nanos),
            (java_time.seconds, java_time.nanos)
        );
        match event.data {
            Some(Data::Json(body)) => assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&eventgateway::json::struct_to_json(
                    &body
                ))
                .unwrap(),
                json!({"key": key})
            ),
            other => panic!("JSON data, not {other:?}"),
        }
    }

    // The gateway writes; Java reads CloudEvents.
    let out = testkit::topic("cloudevents-out");
    broker.create_topic(&out, 2).await;
    let mut sent = Vec::new();
    for i in 0..3 {
        let stored = client
            .publish_event(PublishEventRequest {
                topic: out.clone(),
                key: format!("k{i}"),
                event: Some(Event {
                    id: format!("gateway-{i}"),
                    r#type: "gateway.published".into(),
                    source: "/gateway-test".into(),
                    ..json_event(json!({"n": i}))
                }),
            })
            .await
            .expect("stored")
            .into_inner();
        sent.push(stored);
    }
    let printed = cloud_events_peer(vec![
        "consume".into(),
        broker.brokers(),
        out.clone(),
        "3".into(),
    ])
    .await;
    for (i, stored) in sent.iter().enumerate() {
        let line: Vec<&str> = printed
            .lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|l| l[0] == stored.event_id)
            .unwrap_or_else(|| panic!("Java read {}: {printed}", stored.event_id));
        assert_eq!(line[1], "gateway.published");
        assert_eq!(line[2], "/gateway-test");
        let time = stored.timestamp.expect("a time");
        let java_time: prost_types::Timestamp = line[3].parse().expect("an RFC 3339 time");
        assert_eq!(time.seconds, java_time.seconds, "{line:?}");
        assert_eq!(line[4], "application/json");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(line[5]).unwrap(),
            json!({"n": i})
        );
    }
    gateway.shutdown().await.unwrap();
}
