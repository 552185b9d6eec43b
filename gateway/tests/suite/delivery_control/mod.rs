//! Delivery control against a real broker: the verbs on a StreamingSubscribe
//! stream and through Settle (ack, nack with a delay, extend, dead-letter
//! now), stale and unknown ack ids, the retry policy's growing waits, dead
//! letters read back by a plain Kafka consumer (also when the dead-letter
//! topic cannot be written), and order within a key with random nacks.
mod key_order;

mod dead_letters;

use std::collections::HashMap;
use std::time::Duration;

use eventgateway::v1::{
    AckMode, DeadLetterPolicy, Delivery, Event, PublishEventRequest, RetryPolicy, SettleOutcome,
    SettleRequest, StartFrom, StreamingSubscribeRequest, SubscribeRequest,
};
use rdkafka::message::{Headers, Message};
use serde_json::json;
use testkit::*;
use tokio::time::Instant;
use tonic::Code;

use SettleOutcome::{Accepted, Refused, Stale, Unknown};

fn manual(topic: &str, group: &str) -> SubscribeRequest {
    SubscribeRequest {
        topics: vec![topic.into()],
        group: group.into(),
        start_from: StartFrom::Earliest as i32,
        ack_mode: AckMode::Manual as i32,
        ..SubscribeRequest::default()
    }
}

fn millis(ms: u64) -> Option<prost_types::Duration> {
    Some(Duration::from_millis(ms).try_into().unwrap())
}

fn dead_letters(topic: &str, attempts: u32) -> Option<DeadLetterPolicy> {
    Some(DeadLetterPolicy {
        topic: topic.into(),
        max_delivery_attempts: attempts,
    })
}

#[tokio::test]
async fn each_verb_on_the_stream_is_answered_id_by_id() {
    let (broker, topic, gateway, mut client) = fixture("verbs", 1).await;
    broker.create_topic(&format!("{topic}.dlq"), 1).await;
    for i in 0..4 {
        publish(&mut client, &topic, "", json!({"n": i})).await;
    }
    let request = SubscribeRequest {
        ack_timeout: millis(400),
        dead_letter_policy: dead_letters("", 0),
        ..manual(&topic, "")
    };
    let mut stream = Streamer::open(&mut client, request).await;
    let mut out = Vec::new();
    for _ in 0..4 {
        out.push(stream.next_delivery().await);
    }
    let (a, b, c, d) = (&out[0], &out[1], &out[2], &out[3]);

    // ack: accepted, then stale; an id never handed out and a malformed
    // one: unknown.
    let never = format!("{topic}:0:99:1");
    let answer = stream
        .settle(SettleRequest {
            acks: vec![a.ack_id.clone(), a.ack_id.clone(), never, "garbage".into()],
            ..SettleRequest::default()
        })
        .await;
    assert_eq!(outcomes(&answer), [Accepted, Stale, Unknown, Unknown]);
    assert!(answer.request_id.starts_with('r'));
    assert_eq!(answer.results[0].ack_id, a.ack_id);

    // nack at once: attempt 2 comes, and attempt 1's id is stale.
    assert_eq!(outcomes(&stream.nack(b, None).await), [Accepted]);
    let b2 = stream.next_delivery().await;
    assert_eq!((b2.offset, b2.attempt), (b.offset, 2));
    assert_eq!(b2.ack_id, format!("{topic}:0:{}:2", b.offset));
    assert_eq!(outcomes(&stream.ack(&[b]).await), [Stale]);
    assert_eq!(outcomes(&stream.ack(&[&b2]).await), [Accepted]);

    // extend: c's deadline moves out; d, left alone, expires twice while c
    // stays out with its first attempt.
    assert_eq!(
        outcomes(&stream.extend(c, Duration::from_secs(120)).await),
        [Accepted]
    );
    let d2 = stream.next_delivery().await;
    let d3 = stream.next_delivery().await;
    assert_eq!(
        [(d2.offset, d2.attempt), (d3.offset, d3.attempt)],
        [(d.offset, 2), (d.offset, 3)],
        "only d expires"
    );
    assert_eq!(outcomes(&stream.ack(&[c, &d3]).await), [Accepted, Accepted]);

    // dead-letter now: into <topic>.dlq with its reason.
    publish(&mut client, &topic, "k", json!({"n": 4})).await;
    let e = stream.next_delivery().await;
    assert_eq!(
        outcomes(&stream.dead_letter(&e, "cannot parse").await),
        [Accepted]
    );
    let letter = read_plain_async(&broker.brokers(), &format!("{topic}.dlq"), 0, 0).await;
    let header = |name: &str| header_of(&letter, name);
    assert_eq!(
        header("eventgateway-dlq-reason").as_deref(),
        Some("cannot parse")
    );
    assert_eq!(header("eventgateway-dlq-attempts").as_deref(), Some("1"));
    assert_eq!(
        outcomes(&stream.ack(&[&e]).await),
        [Stale],
        "settled already"
    );
    metrics_show(
        gateway.metrics_addr().unwrap(),
        &[
            format!("gateway_nacks_total{{topic=\"{topic}\"}} 1"),
            format!("gateway_extensions_total{{topic=\"{topic}\"}} 1"),
            format!("gateway_dead_letters_total{{topic=\"{topic}\",reason=\"client\"}} 1"),
            format!("gateway_redeliveries_total{{topic=\"{topic}\"}} 3"),
        ],
    )
    .await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_unary_settle_reaches_a_subscribe_stream_and_refuses_what_does_not_apply() {
    let (_broker, topic, gateway, mut client) = fixture("settle", 1).await;
    for i in 0..2 {
        publish(&mut client, &topic, "", json!({"n": i})).await;
    }
    let (id, mut stream) = subscribe(&mut client, manual(&topic, "")).await;
    let first = next_delivery(&mut stream).await;
    let second = next_delivery(&mut stream).await;
    let answer = client
        .settle(SettleRequest {
            subscription_id: id.clone(),
            request_id: "mine".into(),
            nacks: vec![eventgateway::v1::Nack {
                ack_id: first.ack_id.clone(),
                delay: None,
            }],
            dead_letters: vec![eventgateway::v1::DeadLetter {
                ack_id: second.ack_id.clone(),
                reason: "no policy".into(),
            }],
            ..SettleRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.request_id, "mine");
    assert_eq!(outcomes(&answer), [Accepted, Refused]);
    assert!(answer.results[1].detail.contains("dead_letter_policy"));
    let again = next_delivery(&mut stream).await;
    assert_eq!((again.offset, again.attempt), (first.offset, 2));

    let missing = client
        .settle(SettleRequest {
            subscription_id: "00000000-0000-4000-8000-000000000000".into(),
            acks: vec![again.ack_id.clone()],
            ..SettleRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let too_long = client
        .settle(SettleRequest {
            subscription_id: id.clone(),
            nacks: vec![eventgateway::v1::Nack {
                ack_id: again.ack_id.clone(),
                delay: Some(prost_types::Duration {
                    seconds: 601,
                    nanos: 0,
                }),
            }],
            ..SettleRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), Code::InvalidArgument, "{too_long:?}");

    // ACK_MODE_AUTO over the stream: every verb refused, the stream goes on.
    let mut auto = Streamer::open(&mut client, from_earliest(&topic)).await;
    let delivered = auto.next_delivery().await;
    assert_eq!(outcomes(&auto.ack(&[&delivered]).await), [Refused]);
    assert_eq!(n(&auto.next_delivery().await), 1);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stream_that_breaks_the_rules_ends_with_invalid_argument() {
    let (_broker, topic, gateway, mut client) = fixture("rules", 1).await;
    publish(&mut client, &topic, "", json!({"n": 0})).await;

    // The first message must subscribe.
    let (requests, outbound) = tokio::sync::mpsc::channel(1);
    requests
        .send(StreamingSubscribeRequest {
            kind: Some(eventgateway::v1::streaming_subscribe_request::Kind::Settle(
                SettleRequest::default(),
            )),
        })
        .await
        .unwrap();
    let refused = client
        .streaming_subscribe(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("must be subscribe"),
        "{refused:?}"
    );

    // A second subscribe.
    let mut stream = Streamer::open(&mut client, manual(&topic, "")).await;
    stream.send_raw(subscribe_message(manual(&topic, ""))).await;
    let status = stream.status().await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("subscribed already"),
        "{status:?}"
    );

    // A settle message over a bound; its subscription ends, and the group's
    // next member gets the event.
    let mut stream = Streamer::open(&mut client, manual(&topic, "")).await;
    let delivered = stream.next_delivery().await;
    let mut reason = dead_letter(&delivered, &"x".repeat(2000));
    reason.acks.push(delivered.ack_id.clone());
    stream.send(reason).await;
    let status = stream.status().await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("1024"), "{status:?}");
    eventually("the subscription ended", || async {
        gateway.subscription(&stream.id).is_none()
    })
    .await;

    // Settle messages after the client ended its side are not needed for
    // the stream to go on.
    let mut open = Streamer::open(&mut client, manual(&topic, "")).await;
    open.close_side();
    let first = open.next_delivery().await;
    let settled = client
        .settle(SettleRequest {
            subscription_id: open.id.clone(),
            acks: vec![first.ack_id.clone()],
            ..SettleRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcomes(&settled), [Accepted]);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn at_shutdown_a_stream_takes_acks_for_what_is_out_and_sends_nothing_new() {
    let (broker, topic, gateway, mut client) = fixture("drain", 1).await;
    let group = format!("group-{topic}");
    for i in 0..3 {
        publish(&mut client, &topic, "", json!({"n": i})).await;
    }
    let request = SubscribeRequest {
        max_unacked: 2,
        ..manual(&topic, &group)
    };
    let mut stream = Streamer::open(&mut client, request).await;
    let first = stream.next_delivery().await;
    let second = stream.next_delivery().await;
    let stats = gateway.subscription(&stream.id).unwrap();
    let stopping = tokio::spawn(gateway.shutdown());
    // The window frees during the drain, yet the third event stays in Kafka.
    assert_eq!(outcomes(&stream.ack(&[&first]).await), [Accepted]);
    assert_eq!(outcomes(&stream.ack(&[&second]).await), [Accepted]);
    let end = stream.status().await;
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    assert_eq!(stats.delivered.get(), 2, "nothing new during the drain");
    stopping.await.unwrap().unwrap();
    let (brokers, topic_name) = (broker.brokers(), topic.clone());
    let committed =
        tokio::task::spawn_blocking(move || committed_offset(&brokers, &group, &topic_name, 0))
            .await
            .unwrap();
    assert_eq!(
        committed,
        Some(2),
        "what was acked during the drain is committed"
    );
}

#[tokio::test]
async fn the_retry_policy_spaces_redeliveries_out_between_its_bounds() {
    let (_broker, topic, gateway, mut client) = fixture("retry", 1).await;
    publish(&mut client, &topic, "", json!({"n": 0})).await;
    let (min, max) = (Duration::from_millis(200), Duration::from_millis(800));
    let request = SubscribeRequest {
        retry_policy: Some(RetryPolicy {
            minimum_backoff: Some(min.try_into().unwrap()),
            maximum_backoff: Some(max.try_into().unwrap()),
        }),
        ..manual(&topic, "")
    };
    let mut stream = Streamer::open(&mut client, request).await;
    let mut arrivals = Vec::new();
    let mut delivery = stream.next_delivery().await;
    for attempt in 1..=5 {
        assert_eq!(delivery.attempt, attempt);
        let nacked = Instant::now();
        assert_eq!(outcomes(&stream.nack(&delivery, None).await), [Accepted]);
        delivery = stream.next_delivery().await;
        arrivals.push(nacked.elapsed());
    }
    // Attempt n waits min * 2^(n-1), at most max, less up to a fifth.
    let nominal = [200, 400, 800, 800, 800];
    for (waited, nominal) in arrivals.iter().zip(nominal) {
        let floor = Duration::from_millis(nominal * 4 / 5).max(min);
        assert!(*waited >= floor, "waits {arrivals:?}: one under {floor:?}");
    }
    assert!(
        arrivals[2] > arrivals[0] && arrivals[1] > arrivals[0],
        "the waits grow: {arrivals:?}"
    );
    assert!(
        arrivals.iter().all(|w| *w < max + Duration::from_secs(10)),
        "no wait runs far over the maximum: {arrivals:?}"
    );
    gateway.shutdown().await.unwrap();
}

/// A header of a record read by a plain consumer, as text.
fn header_of(message: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    all_headers(message)
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v)
        .map(|v| String::from_utf8(v).expect("a text header"))
}

/// Every header of a record, in order.
fn all_headers(message: &rdkafka::message::OwnedMessage) -> Vec<(String, Option<Vec<u8>>)> {
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}
