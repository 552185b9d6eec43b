//! Delivery control against a real broker: the verbs on a StreamingSubscribe
//! stream and through Settle (ack, nack with a delay, extend, dead-letter
//! now), stale and unknown ack ids, the retry policy's growing waits, dead
//! letters read back by a plain Kafka consumer (also when the dead-letter
//! topic cannot be written), and order within a key with random nacks.

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

#[tokio::test]
async fn order_within_a_key_holds_through_random_nacks_while_other_keys_flow() {
    let (broker, topic, gateway, mut client) = fixture("ordered", 2).await;
    const KEYS: usize = 20;
    const EVENTS: usize = 2000;
    let mut published: HashMap<String, Vec<i64>> = HashMap::new();
    // Written in batches by a lingering plain producer, so that a stream
    // whose window fills fetches again from inside a batch.
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let mut sends = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let key = format!("key-{}", i % KEYS);
        let value = json!({"n": i}).to_string();
        let record = rdkafka::producer::FutureRecord::to(&topic)
            .key(&key)
            .payload(&value);
        sends.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        published.entry(key).or_default().push(i as i64);
    }
    for send in sends {
        send.await.unwrap().expect("stored");
    }
    let request = SubscribeRequest {
        ordered_by_key: true,
        max_unacked: 50,
        ..manual(&topic, "")
    };
    let mut stream = Streamer::open(&mut client, request).await;
    // A deterministic generator: about one delivery in seven is nacked.
    let mut random = 0x2545_f491_4f6c_dd1d_u64;
    let mut nack_next = || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random % 7 == 0
    };
    let mut handled: HashMap<String, Vec<i64>> = HashMap::new();
    let mut out: HashMap<String, Delivery> = HashMap::new();
    let mut first_of_k0_nacks = 0;
    let mut others_while_k0_held = 0;
    let mut done = 0;
    let mut pending: Vec<(Delivery, bool)> = Vec::new();
    while done < EVENTS {
        // Work on up to 8 deliveries at once; settle them when 8 are in
        // hand or no more come for a moment (with order by key, the next
        // events of these keys wait on them).
        let wait = if pending.is_empty() {
            PATIENCE
        } else {
            Duration::from_millis(50)
        };
        let next = stream.next_delivery_within(wait).await;
        assert!(
            next.is_some() || !pending.is_empty(),
            "no delivery for {PATIENCE:?} with {done} of {EVENTS} handled"
        );
        if let Some(delivery) = next {
            let key = delivery.key.clone();
            assert!(
                out.insert(key.clone(), delivery.clone()).is_none(),
                "two events of {key} out at once: {delivery:?}"
            );
            // key-0's first event is nacked twice before it is handled.
            let nack = if n(&delivery) == 0 && first_of_k0_nacks < 2 {
                first_of_k0_nacks += 1;
                true
            } else {
                nack_next()
            };
            if key != "key-0" && first_of_k0_nacks > 0 && !handled.contains_key("key-0") {
                others_while_k0_held += 1;
            }
            pending.push((delivery, nack));
            if pending.len() < 8 {
                continue;
            }
        }
        let mut request = SettleRequest::default();
        for (delivery, nack) in pending.drain(..) {
            out.remove(&delivery.key);
            if nack {
                request.nacks.push(eventgateway::v1::Nack {
                    ack_id: delivery.ack_id.clone(),
                    delay: None,
                });
            } else {
                handled
                    .entry(delivery.key.clone())
                    .or_default()
                    .push(n(&delivery));
                request.acks.push(delivery.ack_id.clone());
                done += 1;
            }
        }
        let answer = stream.settle(request).await;
        assert!(
            outcomes(&answer).iter().all(|o| *o == Accepted),
            "{answer:?}"
        );
    }
    assert_eq!(handled, published, "every key handled in publish order");
    assert!(
        others_while_k0_held > 0,
        "other keys flowed while key-0's first event was being retried"
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
