//! Bad input and failure statuses: each case asserts its gRPC code, and the
//! gateway keeps serving afterwards.

use std::time::Duration;

use eventgateway::v1::{
    event::Data, AckMode, AcknowledgeRequest, Event, PartitionOffset, PublishEventRequest,
    StartFrom, SubscribeRequest,
};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::json;
use testkit::*;
use tonic::Code;

fn publish_request(topic: &str, event: Option<Event>) -> PublishEventRequest {
    PublishEventRequest {
        topic: topic.into(),
        key: String::new(),
        event,
    }
}

fn text(payload: &str) -> Option<Event> {
    Some(Event {
        data: Some(Data::Text(payload.into())),
        ..Event::default()
    })
}

#[tokio::test]
async fn bad_requests_get_a_clear_status_and_the_gateway_keeps_serving() {
    let (_broker, topic, gateway, mut client) =
        fixture_with("errors", 2, |config| config.limits.max_payload_bytes = 1024).await;

    let mut with_reserved = text("x").unwrap();
    with_reserved
        .attributes
        .insert("ce_id".into(), "forged".into());
    // Kafka header names are often compared without case.
    let mut with_reserved_upper = text("x").unwrap();
    with_reserved_upper
        .attributes
        .insert("CE_ID".into(), "forged".into());
    let mut far_future = text("x").unwrap();
    far_future.time = Some(prost_types::Timestamp {
        seconds: 9_223_372_036_854_775_807,
        nanos: 0,
    });
    // JSON cannot carry NaN: the gateway would have written null.
    let not_a_number = Some(Event {
        data: Some(Data::Json(prost_types::Struct {
            fields: [(
                "x".to_owned(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::NumberValue(f64::NAN)),
                },
            )]
            .into(),
        })),
        ..Event::default()
    });
    let publishes = [
        (
            publish_request(&topic, not_a_number),
            Code::InvalidArgument,
            "not finite",
        ),
        (
            publish_request("", text("x")),
            Code::InvalidArgument,
            "topic is empty",
        ),
        (
            publish_request("no spaces", text("x")),
            Code::InvalidArgument,
            "letters, digits",
        ),
        (
            publish_request(&"t".repeat(250), text("x")),
            Code::InvalidArgument,
            "at most 249",
        ),
        (
            publish_request(&topic, None),
            Code::InvalidArgument,
            "event is missing",
        ),
        (
            publish_request(&topic, text(&"x".repeat(1025))),
            Code::InvalidArgument,
            "at most 1024",
        ),
        (
            publish_request(&topic, Some(with_reserved)),
            Code::InvalidArgument,
            "reserved",
        ),
        (
            publish_request(&topic, Some(with_reserved_upper)),
            Code::InvalidArgument,
            "reserved",
        ),
        (
            publish_request(&topic, Some(far_future)),
            Code::InvalidArgument,
            "years 1 to 9999",
        ),
        (
            publish_request("does-not-exist", text("x")),
            Code::NotFound,
            "--create-topics",
        ),
    ];
    for (request, code, message) in publishes {
        let status = client.publish_event(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), code, "{request:?}: {status:?}");
        assert!(
            status.message().contains(message),
            "{:?} lacks {message:?}",
            status.message()
        );
    }

    let sub = |topics: Vec<&str>| SubscribeRequest {
        topics: topics.into_iter().map(String::from).collect(),
        ..SubscribeRequest::default()
    };
    let subscribes = [
        (sub(vec![]), Code::InvalidArgument),
        (sub(vec!["bad/topic"]), Code::InvalidArgument),
        (sub(vec!["does-not-exist"]), Code::NotFound),
        (
            SubscribeRequest {
                start_from: StartFrom::Timestamp as i32,
                ..sub(vec![&topic])
            },
            Code::InvalidArgument,
        ),
        (
            SubscribeRequest {
                start_from: StartFrom::Offsets as i32,
                start_offsets: vec![PartitionOffset {
                    topic: topic.clone(),
                    partition: 7,
                    offset: 0,
                }],
                ..sub(vec![&topic])
            },
            Code::InvalidArgument,
        ),
        (
            SubscribeRequest {
                ack_mode: AckMode::Manual as i32,
                ack_timeout: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 1000,
                }),
                ..sub(vec![&topic])
            },
            Code::InvalidArgument,
        ),
        (
            SubscribeRequest {
                max_unacked: 10,
                ..sub(vec![&topic])
            },
            Code::InvalidArgument,
        ),
        // One stream must not hold an unbounded window, nor a deadline
        // that no clock can add.
        (
            SubscribeRequest {
                ack_mode: AckMode::Manual as i32,
                max_unacked: u32::MAX,
                ..sub(vec![&topic])
            },
            Code::InvalidArgument,
        ),
        (
            SubscribeRequest {
                ack_mode: AckMode::Manual as i32,
                ack_timeout: Some(prost_types::Duration {
                    seconds: i64::MAX,
                    nanos: 0,
                }),
                ..sub(vec![&topic])
            },
            Code::InvalidArgument,
        ),
    ];
    for (request, code) in subscribes {
        let status = client.subscribe(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), code, "{request:?}: {status:?}");
    }

    let (auto_id, _auto) = subscribe(&mut client, sub(vec![&topic])).await;
    let (manual_id, mut manual) = subscribe(
        &mut client,
        SubscribeRequest {
            ack_mode: AckMode::Manual as i32,
            ..from_earliest(&topic)
        },
    )
    .await;
    publish(&mut client, &topic, "k", json!({"n": 1})).await;
    let delivered = next_delivery(&mut manual).await;
    let ack = |id: &str, ack_ids: &[&str]| AcknowledgeRequest {
        subscription_id: id.into(),
        ack_ids: ack_ids.iter().map(|a| a.to_string()).collect(),
    };
    let good_ack = delivered.ack_id.clone();
    let never_handed_out = format!("{topic}:{}:{}:1", delivered.partition, delivered.offset + 1);
    let not_found = "is not open on this gateway, or takes no acknowledgements";
    let acks = [
        (
            ack("", &[&good_ack]),
            Code::InvalidArgument,
            "subscription_id is empty",
        ),
        (
            ack(&manual_id, &["not-an-ack-id"]),
            Code::InvalidArgument,
            "not one the gateway handed out",
        ),
        (
            ack(&manual_id, &[&good_ack, "t:x:1:1"]),
            Code::InvalidArgument,
            "not one the gateway handed out",
        ),
        (
            ack(&manual_id, &[&good_ack, &never_handed_out]),
            Code::InvalidArgument,
            "never handed out on this subscription",
        ),
        (
            ack("no-such-subscription", &[&good_ack]),
            Code::NotFound,
            not_found,
        ),
        // An ACK_MODE_AUTO subscription answers as an unknown one does.
        (ack(&auto_id, &[&good_ack]), Code::NotFound, not_found),
    ];
    for (request, code, message) in acks {
        let status = client.acknowledge(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), code, "{request:?}: {status:?}");
        assert!(
            status.message().contains(message),
            "{:?} lacks {message:?}",
            status.message()
        );
    }
    // The refused call applied nothing: the delivery is still out. Acking
    // it, then acking it again, is harmless.
    let stats = gateway.subscription(&manual_id).unwrap();
    assert_eq!(stats.unacked.get(), 1);
    client
        .acknowledge(ack(&manual_id, &[&good_ack, &good_ack]))
        .await
        .unwrap();
    client
        .acknowledge(ack(&manual_id, &[&good_ack]))
        .await
        .unwrap();
    eventually("the acknowledgement was applied", || async {
        stats.unacked.get() == 0
    })
    .await;

    // Nothing above disturbed the gateway (`publish` fails the test unless
    // the event is stored).
    publish(&mut client, &topic, "k", json!({"still": "serving"})).await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn missing_topics_are_created_when_the_gateway_is_told_to() {
    let broker = Broker::start().await;
    let mut config = config(Some(broker.brokers()));
    config.kafka.create_topics = true;
    config.kafka.topic_partitions = 2;
    config.kafka.topic_replication = 1;
    let gateway = gateway(config).await;
    let mut client = client(gateway.addr()).await;
    let topic = topic("created");
    let stored = publish(&mut client, &topic, "k", json!({"n": 1})).await;
    assert_eq!(stored.topic, topic);
    let (_, mut stream) = subscribe(&mut client, from_earliest(&topic)).await;
    assert_eq!(body(&next_delivery(&mut stream).await), json!({"n": 1}));
    gateway.shutdown().await.unwrap();
}

/// A Kafka that fails every produce request, through librdkafka's mock
/// cluster (fault injection).
fn failing_cluster(topic: &str) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(topic, 1, 1).expect("mock topic");
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 500],
    );
    cluster
}

#[tokio::test]
async fn a_publish_kafka_cannot_confirm_in_time_gets_deadline_exceeded() {
    let topic = topic("deadline");
    let cluster = failing_cluster(&topic);
    let gateway = gateway(config(Some(cluster.bootstrap_servers()))).await;
    let mut client = client(gateway.addr()).await;

    let mut request = tonic::Request::new(publish_request(&topic, text("slow")));
    request.set_timeout(Duration::from_millis(800));
    let status = client.publish_event(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("same event id"),
        "{}",
        status.message()
    );

    // Once Kafka recovers, publishes are stored again (`publish` fails the
    // test otherwise).
    cluster.clear_request_errors(RDKafkaApiKey::Produce);
    publish(&mut client, &topic, "", json!({"after": "recovery"})).await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_saturated_gateway_answers_resource_exhausted_and_health_stays_open() {
    let topic = topic("saturated");
    let cluster = failing_cluster(&topic);
    let mut config = config(Some(cluster.bootstrap_servers()));
    config.limits.max_concurrent_requests = 1;
    let gateway = gateway(config).await;
    let addr = gateway.addr();

    // One publish holds the only slot while Kafka keeps failing it.
    let mut slow_client = client(addr).await;
    let slow_topic = topic.clone();
    let slow = tokio::spawn(async move {
        let mut request = tonic::Request::new(publish_request(&slow_topic, text("slow")));
        request.set_timeout(Duration::from_secs(10));
        slow_client.publish_event(request).await
    });
    // Meanwhile other calls are shed at once instead of queueing...
    let mut other = client(addr).await;
    eventually("a publish is shed with RESOURCE_EXHAUSTED", || {
        let (mut other, topic) = (other.clone(), topic.clone());
        async move {
            let shed = other
                .publish_event(publish_request(&topic, text("x")))
                .await;
            matches!(shed, Err(status) if status.code() == Code::ResourceExhausted)
        }
    })
    .await;
    // ...and health checks, which count against no limit, still answer.
    assert_eq!(
        health(addr, "").await.unwrap(),
        tonic_health::ServingStatus::Serving as i32
    );

    cluster.clear_request_errors(RDKafkaApiKey::Produce);
    let outcome = slow.await.unwrap();
    assert!(
        outcome.is_ok(),
        "the held publish completes once Kafka recovers: {outcome:?}"
    );
    publish(&mut other, &topic, "", json!({"after": "saturation"})).await;
    gateway.shutdown().await.unwrap();
}
