//! Dead letters: written with every header after the last attempt,
//! refused at subscribe when their topic does not exist, and an event
//! kept unsettled (nothing committed past it) while its letter waits.

use super::*;

#[tokio::test]
async fn after_the_last_attempt_the_record_is_in_the_dead_letter_topic_with_every_header() {
    let (broker, topic, gateway, mut client) = fixture("dlq", 1).await;
    let dlq = format!("{topic}.dlq");
    broker.create_topic(&dlq, 1).await;
    let group = format!("group-{topic}");
    let event = Event {
        attributes: [("tenant".to_owned(), "acme".to_owned())].into(),
        binary_attributes: [("blob".to_owned(), vec![0xff, 0x00, 0xfe])].into(),
        ..json_event(json!({"n": 0}))
    };
    client
        .publish_event(PublishEventRequest {
            topic: topic.clone(),
            key: "user-7".into(),
            event: Some(event),
        })
        .await
        .unwrap();
    publish(&mut client, &topic, "", json!({"n": 1})).await;
    let original = read_plain_async(&broker.brokers(), &topic, 0, 0).await;

    let request = SubscribeRequest {
        dead_letter_policy: dead_letters("", 3),
        ..manual(&topic, &group)
    };
    let mut stream = Streamer::open(&mut client, request).await;
    let first = stream.next_delivery().await;
    let other = stream.next_delivery().await;
    assert_eq!(outcomes(&stream.ack(&[&other]).await), [Accepted]);
    let mut current = first;
    for attempt in 1..=3 {
        assert_eq!((current.offset, current.attempt), (0, attempt));
        assert_eq!(outcomes(&stream.nack(&current, None).await), [Accepted]);
        if attempt < 3 {
            current = stream.next_delivery().await;
        }
    }
    let letter = read_plain_async(&broker.brokers(), &dlq, 0, 0).await;
    assert_eq!(letter.key(), Some(&b"user-7"[..]));
    assert_eq!(letter.payload(), original.payload());
    assert_eq!(letter.timestamp(), original.timestamp());
    let original_headers = all_headers(&original);
    let letter_headers = all_headers(&letter);
    assert_eq!(
        &letter_headers[..original_headers.len()],
        &original_headers[..],
        "every original header, in order, byte for byte"
    );
    let header = |name: &str| header_of(&letter, name);
    assert_eq!(header("eventgateway-dlq-topic"), Some(topic.clone()));
    assert_eq!(header("eventgateway-dlq-partition").as_deref(), Some("0"));
    assert_eq!(header("eventgateway-dlq-offset").as_deref(), Some("0"));
    assert_eq!(header("eventgateway-dlq-attempts").as_deref(), Some("3"));
    assert_eq!(header("eventgateway-dlq-group"), Some(group.clone()));
    assert!(header("eventgateway-dlq-reason")
        .unwrap()
        .contains("3 times"));
    let time = header("eventgateway-dlq-time").unwrap();
    assert!(humantime::parse_rfc3339(&time).is_ok(), "{time}");
    metrics_show(
        gateway.metrics_addr().unwrap(),
        &[
            format!("gateway_dead_letters_total{{topic=\"{topic}\",reason=\"max_attempts\"}} 1"),
            format!("gateway_nacks_total{{topic=\"{topic}\"}} 3"),
        ],
    )
    .await;
    // Dead-lettered counts as settled: the group commits past it.
    drop(stream);
    wait_group_done(&broker.brokers(), &group, &topic).await;
    gateway.shutdown().await.unwrap();
}

/// A topic with three events, out on a MANUAL stream of a group with a
/// dead-letter policy (at request only) whose topic does not exist.
struct DeadLetterSetup {
    broker: Broker,
    topic: String,
    group: String,
    gateway: gateway::RunningGateway,
    client: eventgateway::v1::event_gateway_client::EventGatewayClient<tonic::transport::Channel>,
    stream: Streamer,
    out: Vec<Delivery>,
}

/// Sets `topic`'s `max.message.bytes`.
async fn set_max_message_bytes(brokers: &str, topic: &str, bytes: usize) {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let value = bytes.to_string();
    let change = AlterConfig::new(ResourceSpecifier::Topic(topic)).set("max.message.bytes", &value);
    for result in admin
        .alter_configs(&[change], &AdminOptions::new())
        .await
        .unwrap()
    {
        result.expect("the topic's configuration changes");
    }
}

/// Three deliveries out on a subscription whose dead-letter topic exists
/// but takes no record as large as a dead letter: every write fails.
async fn three_out_with_dead_letters(prefix: &str) -> DeadLetterSetup {
    let (broker, topic, gateway, mut client) = fixture(prefix, 1).await;
    broker
        .create_topic_with(&format!("{topic}.dlq"), 1, &[("max.message.bytes", "16")])
        .await;
    let group = format!("group-{topic}");
    for i in 0..3 {
        publish(&mut client, &topic, "", json!({"n": i})).await;
    }
    let request = SubscribeRequest {
        dead_letter_policy: dead_letters("", 0),
        ..manual(&topic, &group)
    };
    let mut stream = Streamer::open(&mut client, request).await;
    let mut out = Vec::new();
    for _ in 0..3 {
        out.push(stream.next_delivery().await);
    }
    DeadLetterSetup {
        broker,
        topic,
        group,
        gateway,
        client,
        stream,
        out,
    }
}

#[tokio::test]
async fn a_dead_letter_topic_that_does_not_exist_is_refused_at_subscribe() {
    let (_broker, topic, gateway, mut client) = fixture("dlq-missing", 1).await;
    for policy in [dead_letters("", 0), dead_letters("made-up-letters", 3)] {
        let request = SubscribeRequest {
            dead_letter_policy: policy,
            ..manual(&topic, "")
        };
        let status = client.subscribe(request).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert!(
            status.message().contains("dead_letter_policy"),
            "{status:?}"
        );
    }
    // Names a client made up leave no metric series behind.
    let text = metrics_text(gateway.metrics_addr().unwrap()).await;
    assert!(!text.contains("made-up-letters"), "{text}");
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_dead_letter_that_cannot_be_written_keeps_its_event_unsettled_until_it_can() {
    let DeadLetterSetup {
        broker,
        topic,
        group,
        gateway,
        mut stream,
        out,
        ..
    } = three_out_with_dead_letters("dlq-down").await;
    let dlq = format!("{topic}.dlq");
    let metrics = gateway.metrics_addr().unwrap();
    let failures = format!("gateway_dead_letter_failures_total{{topic=\"{dlq}\"}}");
    assert_eq!(
        outcomes(&stream.dead_letter(&out[0], "poison").await),
        [Accepted]
    );
    assert_eq!(
        outcomes(&stream.ack(&[&out[1], &out[2]]).await),
        [Accepted, Accepted]
    );
    metric_reaches(metrics, &failures, 2.0).await;
    let stats = gateway.subscription(&stream.id).unwrap();
    assert_eq!(stats.unacked.get(), 1, "the event stays unsettled");
    assert_eq!(
        outcomes(&stream.ack(&[&out[0]]).await),
        [Stale],
        "a dead letter in progress is not the client's to ack"
    );
    // Once the topic takes it, the retried write lands and the group
    // commits past the event.
    set_max_message_bytes(&broker.brokers(), &dlq, 1 << 20).await;
    let letter = read_plain_async(&broker.brokers(), &dlq, 0, 0).await;
    assert_eq!(
        header_of(&letter, "eventgateway-dlq-reason").as_deref(),
        Some("poison")
    );
    drop(stream);
    wait_group_done(&broker.brokers(), &group, &topic).await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn while_a_dead_letter_waits_nothing_is_committed_past_it() {
    let DeadLetterSetup {
        broker,
        topic,
        group,
        gateway,
        mut client,
        mut stream,
        out,
    } = three_out_with_dead_letters("dlq-commit").await;
    stream.dead_letter(&out[0], "poison").await;
    stream.ack(&[&out[1], &out[2]]).await;
    let failures = format!("gateway_dead_letter_failures_total{{topic=\"{topic}.dlq\"}}");
    metric_reaches(gateway.metrics_addr().unwrap(), &failures, 1.0).await;
    // The stream ends: the consumer commits what is settled and leaves.
    let id = stream.id.clone();
    drop(stream);
    eventually("the subscription ended", || async {
        gateway.subscription(&id).is_none()
    })
    .await;
    let (brokers, topic_name, group_name) = (broker.brokers(), topic.clone(), group.clone());
    let committed = tokio::task::spawn_blocking(move || {
        committed_offset(&brokers, &group_name, &topic_name, 0)
    })
    .await
    .unwrap();
    assert_eq!(
        committed, None,
        "nothing is committed past the waiting event"
    );
    // The group's next member gets it again, with the two after it.
    let (_, mut again) = subscribe(&mut client, manual(&topic, &group)).await;
    assert_eq!(n(&next_delivery(&mut again).await), 0);
    gateway.shutdown().await.unwrap();
}
