//! Plain Kafka clients on the same topics, keys and headers that are not
//! text, the embedded Kafka, and a member whose client goes away.

use super::*;

#[tokio::test]
async fn plain_kafka_clients_interoperate_both_ways() {
    let (broker, topic, gateway, mut client) = fixture("interop", 1).await;

    // A plain producer's records reach Subscribe, as json, text and binary.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    let values: [&[u8]; 3] = [br#"{"plain":true}"#, b"hello", &[0xff, 0x00, 0x01]];
    for value in values {
        producer
            .send(
                FutureRecord::to(&topic)
                    .key("plain-key")
                    .payload(value)
                    .headers(OwnedHeaders::new().insert(Header {
                        key: "trace",
                        value: Some("t1"),
                    })),
                Duration::from_secs(10),
            )
            .await
            .expect("plain produce");
    }
    let (_, mut stream) = subscribe(&mut client, request(&topic, StartFrom::Earliest)).await;
    let json_delivery = next_delivery(&mut stream).await;
    assert_eq!(body(&json_delivery), json!({"plain": true}));
    let event = json_delivery.event.clone().unwrap();
    assert_eq!(event.id, format!("{topic}-0-0"));
    assert!(event.time.is_some());
    assert_eq!(
        event.attributes.get("trace").map(String::as_str),
        Some("t1")
    );
    assert_eq!(json_delivery.key, "plain-key");
    use eventgateway::v1::event::Data;
    let text = next_delivery(&mut stream).await.event.unwrap().data;
    assert_eq!(text, Some(Data::Text("hello".into())));
    let binary = next_delivery(&mut stream).await.event.unwrap().data;
    assert_eq!(binary, Some(Data::Binary(vec![0xff, 0x00, 0x01])));

    // A plain consumer reads a published event: JSON value, key, ce_ headers.
    let stored = publish(
        &mut client,
        &topic,
        "user-9",
        json!({"user_id": 9, "email": "u9@example.com"}),
    )
    .await;
    let message = read_plain(&broker.brokers(), &topic, 0, stored.offset);
    let value: serde_json::Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
    assert_eq!(value, json!({"user_id": 9, "email": "u9@example.com"}));
    assert_eq!(message.key(), Some(&b"user-9"[..]));
    let headers: std::collections::HashMap<String, String> = message
        .headers()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h.key.to_owned(),
                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    assert_eq!(headers["ce_id"], stored.event_id);
    assert_eq!(headers["ce_type"], "test.event");
    assert_eq!(headers["ce_source"], "/tests");
    assert_eq!(headers["ce_specversion"], "1.0");
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.contains_key("ce_time"));
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn keys_and_headers_that_are_not_text_arrive_byte_for_byte_both_ways() {
    let (broker, topic, gateway, mut client) = fixture("bytes", 1).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    let key: &[u8] = &[0xff, b'k', 0x00, 0xc3];
    let digest: &[u8] = &[0xde, 0xad, 0xbe, 0xef];
    producer
        .send(
            FutureRecord::to(&topic).key(key).payload("x").headers(
                OwnedHeaders::new()
                    .insert(Header {
                        key: "digest",
                        value: Some(digest),
                    })
                    .insert(Header {
                        key: "tenant",
                        value: Some("acme"),
                    }),
            ),
            Duration::from_secs(10),
        )
        .await
        .expect("plain produce");
    let (_, mut stream) = subscribe(&mut client, request(&topic, StartFrom::Earliest)).await;
    let delivery = next_delivery(&mut stream).await;
    assert_eq!(delivery.key_bytes, key, "the key's exact bytes");
    assert_eq!(delivery.key, "", "no lossy copy beside the bytes");
    let event = delivery.event.unwrap();
    assert_eq!(event.binary_attributes["digest"], digest);
    assert_eq!(event.attributes["tenant"], "acme");
    assert!(!event.attributes.contains_key("digest"));

    // What a client publishes as binary attributes, a plain consumer reads
    // byte for byte.
    let stored = client
        .publish_event(eventgateway::v1::PublishEventRequest {
            topic: topic.clone(),
            key: "k".into(),
            event: Some(eventgateway::v1::Event {
                binary_attributes: [("digest".to_owned(), digest.to_vec())].into(),
                ..json_event(json!({"n": 1}))
            }),
        })
        .await
        .expect("binary attributes are published")
        .into_inner();
    let message = read_plain(&broker.brokers(), &topic, 0, stored.offset);
    let header = message
        .headers()
        .unwrap()
        .iter()
        .find(|h| h.key == "digest")
        .expect("the header is there");
    assert_eq!(header.value, Some(digest));
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_embedded_kafka_works_without_any_broker_configured() {
    let gateway = gateway(config(None)).await;
    let mut client = client(gateway.addr()).await;
    let topic = topic("embedded");
    let stored = publish(&mut client, &topic, "k", json!({"hello": "world"})).await;
    let (_, mut stream) = subscribe(&mut client, request(&topic, StartFrom::Earliest)).await;
    let delivery = next_delivery(&mut stream).await;
    assert_eq!(delivery.event.unwrap().id, stored.event_id);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_member_whose_client_goes_away_leaves_the_group_at_once() {
    // A member that vanished without leaving would hold its partitions for
    // this long, far past the test's patience.
    let (_broker, topic, gateway, mut client) = fixture_with("leave", 2, |config| {
        config
            .kafka
            .kafka_properties
            .push(gateway::KafkaProperty::new("session.timeout.ms", "120000"))
    })
    .await;
    let member = SubscribeRequest {
        group: format!("group-{topic}"),
        ..request(&topic, StartFrom::Earliest)
    };
    let (_, mut a) = subscribe(&mut client, member.clone()).await;
    let (_, mut b) = subscribe(&mut client, member).await;
    // Wait until both members hold a partition.
    let mut n = 0;
    let (mut got_a, mut got_b) = (false, false);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !(got_a && got_b) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group never gave both members a partition"
        );
        publish(&mut client, &topic, &format!("k{n}"), json!({"n": n})).await;
        n += 1;
        tokio::select! {
            _ = next_delivery(&mut a) => got_a = true,
            _ = next_delivery(&mut b) => got_b = true,
        }
    }
    drop(a);
    // B alone now receives events of both partitions.
    let mut partitions = HashSet::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while partitions.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the remaining member never got the other partition: the first did not leave"
        );
        publish(&mut client, &topic, &format!("k{n}"), json!({"n": n})).await;
        n += 1;
        if let Ok(delivery) =
            tokio::time::timeout(Duration::from_millis(300), next_delivery(&mut b)).await
        {
            partitions.insert(delivery.partition);
        }
    }
    gateway.shutdown().await.unwrap();
}
