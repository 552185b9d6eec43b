//! One record must not stop a stream, nor change data: records that a
//! plain Kafka producer wrote as JSON but that a Struct cannot carry
//! exactly (too deep, too large once encoded, numbers a double cannot hold)
//! are delivered as their text, unchanged, and a record too large for any
//! client's default limit is delivered without its payload, saying so. A
//! generated Python client at its default limits reads every one.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use testkit::*;

/// A new topic named after `prefix` that takes records of up to 8 MiB
/// (Kafka takes 1 MiB unless a topic says otherwise), and a plain producer
/// that writes them, with `settings` on top.
async fn large_records(
    broker: &Broker,
    prefix: &str,
    settings: &[(&str, &str)],
) -> (String, FutureProducer) {
    let topic = topic(prefix);
    broker
        .create_topic_with(&topic, 1, &[("max.message.bytes", &(8 << 20).to_string())])
        .await;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.brokers())
        .set("message.max.bytes", (8 << 20).to_string());
    for (key, value) in settings {
        config.set(*key, *value);
    }
    (topic, config.create().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_a_struct_cannot_carry_reach_a_default_client_as_their_text() {
    let (broker, _, gateway, _client) = fixture("poison", 1).await;
    let (topic, producer) = large_records(&broker, "poison-large", &[]).await;
    let deep = format!("{}1{}", "{\"a\":".repeat(40), "}".repeat(40));
    let numbers = format!("{{\"n\":[{}]}}", vec!["7"; 490_000].join(","));
    let big_id = r#"{"id":1234567890123456789}"#.to_owned();
    let plain = r#"{"x":0.5}"#.to_owned();
    let huge = vec![b'x'; 5 << 20];
    let records: [(&[u8], &str); 5] = [
        (deep.as_bytes(), "application/json"),
        (numbers.as_bytes(), "application/json"),
        (big_id.as_bytes(), "application/json"),
        (plain.as_bytes(), "application/json"),
        (&huge, "application/octet-stream"),
    ];
    for (value, content_type) in records {
        let headers = OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some(content_type),
        });
        producer
            .send(
                FutureRecord::to(&topic)
                    .key("k")
                    .payload(value)
                    .headers(headers),
                Duration::from_secs(30),
            )
            .await
            .expect("the broker stores the record");
    }

    run_ok(".", "bash", &["examples/python/generate.sh"]);
    let addr = gateway.addr().to_string();
    let printed = run_ok(
        ".",
        "python3",
        &[
            "gateway/tests/python/read_deliveries.py",
            "--gateway",
            &addr,
            "--topic",
            &topic,
            "--count",
            "5",
        ],
    );
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 5, "{printed}");
    let kind = |i: usize| lines[i].split(' ').nth(1).unwrap();
    let size = |i: usize| {
        lines[i]
            .split(' ')
            .nth(2)
            .unwrap()
            .parse::<usize>()
            .unwrap()
    };
    // Too deep for a Struct a client can decode: the text, whole.
    assert_eq!((kind(0), size(0)), ("text", deep.len()), "{}", lines[0]);
    // Five times larger as a Struct: the text, whole.
    assert_eq!((kind(1), size(1)), ("text", numbers.len()), "{}", lines[1]);
    // A number a double rounds: the text, every digit of it.
    assert_eq!(kind(2), "text", "{}", lines[2]);
    assert!(lines[2].contains("1234567890123456789"), "{}", lines[2]);
    // JSON a Struct carries exactly stays JSON.
    assert_eq!(kind(3), "json", "{}", lines[3]);
    // Over any client's default limit: no payload, and where to read it.
    assert_eq!(kind(4), "none", "{}", lines[4]);
    assert!(lines[4].contains(&format!("{topic}/0@4")), "{}", lines[4]);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_header_name_that_is_not_utf8_does_not_end_the_stream() {
    let (broker, topic, gateway, mut client) = fixture("raw-header", 1).await;
    // Only a raw-protocol producer can write such a name; the Kafka client
    // the gateway uses panics reading it.
    let offset = produce_raw(
        &broker.brokers(),
        &topic,
        0,
        b"hello",
        &[(b"\xff\xfe", b"v"), (b"tenant", b"acme")],
    );
    publish(&mut client, &topic, "after", serde_json::json!({"n": 2})).await;
    let (_, mut stream) = subscribe(&mut client, from_earliest(&topic)).await;
    let first = next_delivery(&mut stream).await;
    assert_eq!(first.offset, offset);
    let event = first.event.unwrap();
    assert_eq!(
        event.attributes["tenant"], "acme",
        "the readable header comes"
    );
    let note = &event.attributes["eventgateway-unreadable-headers"];
    assert!(
        note.contains("1 header(s)") && note.contains(&format!("{topic}/0@{offset}")),
        "{note}"
    );
    let second = next_delivery(&mut stream).await;
    assert_eq!(n(&second), 2, "the stream goes on");
    gateway.shutdown().await.unwrap();
}

/// A key that is not text comes as its bytes only, and one too large for
/// any delivery is left out, saying where to read the record: a MANUAL group
/// on a client with default limits (4 MiB) moves past both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_keys_that_are_not_text_do_not_stop_a_group() {
    let (broker, _, gateway, mut client) = fixture("poison-key", 1).await;
    // Compressed, the broker takes them whatever their size.
    let (topic, producer) = large_records(
        &broker,
        "poison-key",
        &[
            ("compression.type", "zstd"),
            ("message.max.bytes", "16777216"),
        ],
    )
    .await;
    let binary = vec![0xff; 1_100_000];
    let huge = vec![0xff; 5 << 20];
    for (key, value) in [(&binary, "a"), (&huge, "b"), (&b"k".to_vec(), "c")] {
        producer
            .send(
                FutureRecord::to(&topic).key(key).payload(value),
                Duration::from_secs(30),
            )
            .await
            .expect("the broker stores the record");
    }
    let request = eventgateway::v1::SubscribeRequest {
        topics: vec![topic.clone()],
        group: format!("group-{topic}"),
        start_from: eventgateway::v1::StartFrom::Earliest as i32,
        ack_mode: eventgateway::v1::AckMode::Manual as i32,
        ..Default::default()
    };
    let (id, mut stream) = subscribe(&mut client, request).await;
    let first = next_delivery(&mut stream).await;
    assert_eq!(first.key_bytes, binary, "the key's bytes, once");
    assert_eq!(first.key, "", "no lossy copy beside them");
    let second = next_delivery(&mut stream).await;
    assert_eq!((second.key.as_str(), second.key_bytes.len()), ("", 0));
    let note = &second.event.as_ref().unwrap().attributes["eventgateway-omitted"];
    assert!(note.contains(&format!("{topic}/0@1")), "{note}");
    let third = next_delivery(&mut stream).await;
    assert_eq!(third.key, "k", "the group goes on");
    ack(&mut client, &id, &[&first, &second, &third]).await;
    gateway.shutdown().await.unwrap();
}

/// A record of 100,000 headers is delivered with the first 1,000 and a note
/// of how many were left out and where to read them; the stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_100000_headers_is_delivered_with_the_first_1000() {
    let (broker, _, gateway, mut client) = fixture("poison-headers", 1).await;
    let (topic, producer) = large_records(&broker, "poison-headers", &[]).await;
    let names: Vec<String> = (0..100_000).map(|i| format!("h{i}")).collect();
    let headers = names.iter().fold(OwnedHeaders::new(), |headers, name| {
        headers.insert(Header {
            key: name,
            value: Some("v"),
        })
    });
    for (value, headers) in [("many", Some(headers)), ("after", None)] {
        let mut record = FutureRecord::to(&topic).key("k").payload(value);
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .expect("the broker stores the record");
    }
    let (_, mut stream) = subscribe(&mut client, from_earliest(&topic)).await;
    let many = next_delivery(&mut stream).await;
    let event = many.event.unwrap();
    assert_eq!(event.attributes["h999"], "v");
    assert!(!event.attributes.contains_key("h1000"));
    let note = &event.attributes["eventgateway-unreadable-headers"];
    assert!(
        note.contains("99000 header(s)") && note.contains(&format!("{topic}/0@0")),
        "{note}"
    );
    let after = next_delivery(&mut stream).await;
    assert_eq!(after.offset, 1, "the stream goes on");
    gateway.shutdown().await.unwrap();
}
