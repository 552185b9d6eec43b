//! The policy file: principals (from bearer tokens signed at test time)
//! publish and subscribe only where it grants them, subscriptions belong to
//! their principal, a reload that revokes a right ends the open streams
//! that relied on it, quotas hold one principal back and no other, and an
//! invalid file stops the gateway at start with where it is wrong.

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::{
    publish_events_response::Result as Outcome, AckMode, AcknowledgeRequest, DeadLetter,
    DeadLetterPolicy, PublishEventRequest, PublishEventsRequest, SettleRequest, SubscribeRequest,
};
use serde_json::json;
use testkit::*;
use tonic::transport::Channel;
use tonic::Code;

/// Starts a gateway on `broker` that takes tokens of `edge` under its
/// policy (written first), and a client of it.
async fn policed(
    edge: &SecureEdge,
    broker: &Broker,
) -> (gateway::RunningGateway, EventGatewayClient<Channel>) {
    let mut config = config(Some(broker.brokers()));
    edge.tokens(&mut config);
    edge.policy(&mut config);
    let gateway = gateway(config).await;
    let client = client(gateway.addr()).await;
    (gateway, client)
}

/// A broker with two fresh topics named after `prefix`, and a gateway on it
/// under the policy of [`two_teams`].
async fn two_teams_gateway(
    edge: &SecureEdge,
    prefix: &str,
) -> (
    Broker,
    String,
    String,
    gateway::RunningGateway,
    EventGatewayClient<Channel>,
) {
    let broker = Broker::start().await;
    let (a, b) = (topic(&format!("{prefix}-a")), topic(&format!("{prefix}-b")));
    broker.create_topic(&a, 1).await;
    broker.create_topic(&b, 1).await;
    edge.write_policy(&two_teams(&a, &b));
    let (gateway, client) = policed(edge, &broker).await;
    (broker, a, b, gateway, client)
}

fn publish_request(topic: &str) -> PublishEventRequest {
    PublishEventRequest {
        topic: topic.into(),
        event: Some(json_event(json!({"n": 1}))),
        ..Default::default()
    }
}

fn manual(topic: &str, group: &str) -> SubscribeRequest {
    SubscribeRequest {
        group: group.into(),
        ack_mode: AckMode::Manual as i32,
        ..from_earliest(topic)
    }
}

/// Grants `svc-a` topic `a` (groups `a-*` only) and `svc-b` topic `b`.
fn two_teams(a: &str, b: &str) -> String {
    format!(
        r#"
[[grant]]
principals = ["svc-a"]
publish = ["{a}"]
subscribe = ["{a}"]
groups = ["a-*"]

[[grant]]
principals = ["svc-b"]
publish = ["{b}"]
subscribe = ["{b}"]
"#
    )
}

async fn denied<T: std::fmt::Debug>(call: Result<T, tonic::Status>, says: &[&str]) {
    let status = call.expect_err("denied");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    for part in says {
        assert!(
            status.message().contains(part),
            "{status:?} should name {part}"
        );
    }
}

#[tokio::test]
async fn principals_publish_subscribe_and_acknowledge_only_where_granted() {
    let edge = SecureEdge::new("policy-grants");
    let (_broker, a, b, gateway, mut client) = two_teams_gateway(&edge, "team").await;
    let (ta, tb) = (edge.token("svc-a"), edge.token("svc-b"));

    client
        .publish_event(with_token(publish_request(&a), &ta))
        .await
        .expect("A publishes to its topic");
    denied(
        client
            .publish_event(with_token(publish_request(&b), &ta))
            .await,
        &["\"svc-a\"", "publish", &b],
    )
    .await;
    let stranger = edge.token("svc-c");
    denied(
        client
            .publish_event(with_token(publish_request(&a), &stranger))
            .await,
        &["\"svc-c\"", "publish"],
    )
    .await;

    // The streaming publish answers a denied event with its own error.
    let requests = futures_util::stream::iter([PublishEventsRequest {
        request_id: "1".into(),
        publish: Some(publish_request(&b)),
        batch: Vec::new(),
    }]);
    let mut answers = client
        .publish_events(with_token(requests, &ta))
        .await
        .unwrap()
        .into_inner();
    match answers.message().await.unwrap().unwrap().result {
        Some(Outcome::Error(error)) => assert_eq!(error.code, Code::PermissionDenied as i32),
        other => panic!("expected a denial, got {other:?}"),
    }

    denied(
        client.subscribe(with_token(from_earliest(&b), &ta)).await,
        &["\"svc-a\"", "subscribe", &b],
    )
    .await;
    denied(
        client
            .subscribe(with_token(manual(&a, "b-group"), &ta))
            .await,
        &["\"svc-a\"", "group", "b-group"],
    )
    .await;
    let mut stream = client
        .subscribe(with_token(manual(&a, "a-group"), &ta))
        .await
        .expect("A subscribes to its topic with its group")
        .into_inner();
    stream.message().await.unwrap();

    // B's subscription is B's: A cannot acknowledge it, even knowing its id.
    let (b_id, mut b_stream) = {
        let mut stream = client
            .subscribe(with_token(manual(&b, "b-group"), &tb))
            .await
            .unwrap()
            .into_inner();
        let first = stream.message().await.unwrap().unwrap();
        let Some(eventgateway::v1::subscribe_response::Kind::Subscribed(s)) = first.kind else {
            panic!("subscribed first")
        };
        (s.subscription_id, stream)
    };
    client
        .publish_event(with_token(publish_request(&b), &tb))
        .await
        .unwrap();
    let delivery = next_delivery(&mut b_stream).await;
    let ack = AcknowledgeRequest {
        subscription_id: b_id.clone(),
        ack_ids: vec![delivery.ack_id.clone()],
    };
    // Another principal's live id is answered as an id that is not open:
    // the answer does not tell which ids are live.
    let foreign = client
        .acknowledge(with_token(ack.clone(), &ta))
        .await
        .expect_err("not A's subscription");
    let unknown_id = uuid::Uuid::new_v4().to_string();
    let unknown = client
        .acknowledge(with_token(
            AcknowledgeRequest {
                subscription_id: unknown_id.clone(),
                ..ack.clone()
            },
            &ta,
        ))
        .await
        .expect_err("no such subscription");
    assert_eq!(
        (foreign.code(), unknown.code()),
        (Code::NotFound, Code::NotFound)
    );
    assert_eq!(
        foreign.message().replace(&b_id, "ID"),
        unknown.message().replace(&unknown_id, "ID"),
        "the same words"
    );
    client
        .acknowledge(with_token(ack, &tb))
        .await
        .expect("B acknowledges its own subscription");
    assert_eq!(
        uuid::Uuid::parse_str(&b_id).unwrap().get_version_num(),
        4,
        "subscription ids are random (UUIDv4, 122 random bits)"
    );

    let metrics = gateway.metrics_addr().unwrap();
    metric_reaches(metrics, "gateway_denied_total{operation=\"publish\"}", 3.0).await;
    metric_reaches(
        metrics,
        "gateway_denied_total{operation=\"acknowledge\"}",
        1.0,
    )
    .await;
    metric_reaches(
        metrics,
        "gateway_denied_total{operation=\"subscribe\"}",
        2.0,
    )
    .await;
    // Consumers close while their broker still runs.
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_reload_that_revokes_subscribe_ends_the_open_stream_and_a_bad_file_keeps_the_policy() {
    let edge = SecureEdge::new("policy-revoke");
    let (_broker, a, b, gateway, mut client) = two_teams_gateway(&edge, "revoke").await;
    let metrics = gateway.metrics_addr().unwrap();
    let (ta, tb) = (edge.token("svc-a"), edge.token("svc-b"));
    let mut a_stream = client
        .subscribe(with_token(from_earliest(&a), &ta))
        .await
        .unwrap()
        .into_inner();
    let mut b_stream = client
        .subscribe(with_token(from_earliest(&b), &tb))
        .await
        .unwrap()
        .into_inner();
    a_stream.message().await.unwrap();
    b_stream.message().await.unwrap();

    // A file that does not parse changes nothing.
    edge.write_policy("[[grant]]\nprincipals = \"svc-a\"\n");
    metric_reaches(
        metrics,
        "gateway_reload_failures_total{file=\"policy\"}",
        1.0,
    )
    .await;
    client
        .publish_event(with_token(publish_request(&a), &ta))
        .await
        .expect("the previous policy holds");
    assert_eq!(
        next_delivery(&mut a_stream).await.topic,
        a,
        "A's stream goes on"
    );

    // A loses subscribe on its topic (and keeps publish).
    let revoked =
        two_teams(&a, &b).replacen(&format!("subscribe = [\"{a}\"]"), "subscribe = []", 1);
    edge.write_policy(&revoked);
    let status = loop {
        match a_stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("\"svc-a\""), "{status:?}");
    client
        .publish_event(with_token(publish_request(&b), &tb))
        .await
        .unwrap();
    assert_eq!(
        next_delivery(&mut b_stream).await.topic,
        b,
        "B's stream is untouched"
    );
    denied(
        client.subscribe(with_token(from_earliest(&a), &ta)).await,
        &["\"svc-a\"", "subscribe"],
    )
    .await;
    // Consumers close while their broker still runs.
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_principal_over_its_quota_is_throttled_while_others_go_on() {
    let edge = SecureEdge::new("policy-quota");
    let broker = Broker::start().await;
    let shared = topic("quota");
    broker.create_topic(&shared, 1).await;
    edge.write_policy(&format!(
        r#"
[[grant]]
principals = ["svc-slow"]
publish = ["{shared}"]
subscribe = ["{shared}"]
quota = {{ publish_events_per_second = 0.01, subscriptions = 1 }}

[[grant]]
principals = ["svc-*"]
publish = ["{shared}"]
"#
    ));
    let (gateway, mut client) = policed(&edge, &broker).await;
    let (slow, fast) = (edge.token("svc-slow"), edge.token("svc-fast"));

    client
        .publish_event(with_token(publish_request(&shared), &slow))
        .await
        .expect("the burst allows one event");
    let status = client
        .publish_event(with_token(publish_request(&shared), &slow))
        .await
        .expect_err("over the rate");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains("0.01 published events per second")
            && status.message().contains("retry in"),
        "{status:?}"
    );
    for _ in 0..5 {
        client
            .publish_event(with_token(publish_request(&shared), &fast))
            .await
            .expect("another principal is not held back");
    }

    let mut first = client
        .subscribe(with_token(from_earliest(&shared), &slow))
        .await
        .unwrap()
        .into_inner();
    first.message().await.unwrap();
    let status = client
        .subscribe(with_token(from_earliest(&shared), &slow))
        .await
        .expect_err("over the subscription cap");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    drop(first);
    eventually("the cap frees when a subscription ends", || {
        let mut client = client.clone();
        let request = with_token(from_earliest(&shared), &slow);
        async move { client.subscribe(request).await.is_ok() }
    })
    .await;
    metric_reaches(
        gateway.metrics_addr().unwrap(),
        "gateway_throttled_total{limit=\"publish_events_per_second\",grant=\"svc-slow\"}",
        1.0,
    )
    .await;
    // Consumers close while their broker still runs.
    gateway.shutdown().await.unwrap();
}

/// Starts the gateway binary with `policy` and waits for it to exit.
async fn exit_with_policy(
    edge: &SecureEdge,
    policy: &str,
    brokers: &str,
) -> (Option<i32>, Vec<String>) {
    edge.write_policy(policy);
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (jwks, policy_file) = (path(&edge.jwks_path), path(&edge.policy_path()));
    let (mut child, mut log) = gateway_process(
        env!("CARGO_BIN_EXE_gateway").as_ref(),
        free_port(),
        brokers,
        &[
            ("JWKS_FILE", &jwks),
            ("JWT_ISSUER", ISSUER),
            ("JWT_AUDIENCE", AUDIENCE),
            ("POLICY_FILE", &policy_file),
        ],
        &[],
    );
    let lines = log.to_end().await.to_vec();
    let status = child.wait().unwrap();
    (status.code(), lines)
}

#[tokio::test]
async fn an_invalid_policy_at_start_stops_the_gateway_with_exit_code_2_and_where() {
    let edge = SecureEdge::new("policy-invalid");
    let broker = Broker::start().await;
    let (code, lines) = exit_with_policy(
        &edge,
        "[[grant]]\nprincipals = [\"a\"]\npublish = [\"orders\"]\nsubscribe = \"orders\"\n",
        &broker.brokers(),
    )
    .await;
    assert_eq!(code, Some(2), "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("line 4, column 13")),
        "{lines:#?}"
    );
}

/// The records in partition 0 of `topic`.
async fn stored(brokers: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        let (low, high) = consumer
            .fetch_watermarks(&topic, 0, std::time::Duration::from_secs(10))
            .unwrap();
        high - low
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn dead_letters_are_charged_to_their_subscriber_and_stop_when_its_right_goes() {
    let edge = SecureEdge::new("policy-dlq");
    let broker = Broker::start().await;
    let (a, b) = (topic("dlq-source"), topic("dlq-target"));
    broker.create_topic(&a, 1).await;
    broker.create_topic(&b, 1).await;
    let policy = |may_publish_b: bool| {
        let publish = if may_publish_b {
            format!("\"{b}\"")
        } else {
            String::new()
        };
        format!(
            r#"
[[grant]]
principals = ["svc-feed"]
publish = ["{a}"]

[[grant]]
principals = ["svc-sink"]
publish = [{publish}]
subscribe = ["{a}"]
quota = {{ publish_events_per_second = 0.01 }}
"#
        )
    };
    edge.write_policy(&policy(true));
    let (gateway, mut client) = policed(&edge, &broker).await;
    let (feed, sink) = (edge.token("svc-feed"), edge.token("svc-sink"));
    for _ in 0..3 {
        client
            .publish_event(with_token(publish_request(&a), &feed))
            .await
            .unwrap();
    }
    let request = SubscribeRequest {
        dead_letter_policy: Some(DeadLetterPolicy {
            topic: b.clone(),
            max_delivery_attempts: 0,
        }),
        ..manual(&a, "")
    };
    let (id, mut stream) = subscribe(&mut client, with_token(request, &sink)).await;
    let mut out = Vec::new();
    for _ in 0..3 {
        out.push(next_delivery(&mut stream).await);
    }
    let letters = SettleRequest {
        subscription_id: id.clone(),
        dead_letters: out
            .iter()
            .map(|d| DeadLetter {
                ack_id: d.ack_id.clone(),
                reason: "poison".into(),
            })
            .collect(),
        ..SettleRequest::default()
    };
    client.settle(with_token(letters, &sink)).await.unwrap();
    // Its quota's burst lets one through; the other two wait, unsettled.
    metric_reaches(
        gateway.metrics_addr().unwrap(),
        "gateway_throttled_total{limit=\"publish_events_per_second\",grant=\"svc-sink\"}",
        2.0,
    )
    .await;
    assert_eq!(stored(&broker.brokers(), &b).await, 1);
    let stats = gateway.subscription(&id).unwrap();
    assert_eq!(stats.unacked.get(), 2, "the waiting letters stay unsettled");
    // A reload that takes its publish right on the dead-letter topic ends
    // the stream.
    edge.write_policy(&policy(false));
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("dead-letter"), "{status:?}");
    assert_eq!(stored(&broker.brokers(), &b).await, 1, "and nothing more");
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_principal_that_may_publish_nowhere_takes_no_publish_stream() {
    let edge = SecureEdge::new("policy-streams");
    let broker = Broker::start().await;
    let shared = topic("streams");
    broker.create_topic(&shared, 1).await;
    edge.write_policy(&format!(
        r#"
[[grant]]
principals = ["svc-reader"]
subscribe = ["{shared}"]

[[grant]]
principals = ["svc-writer"]
publish = ["{shared}"]
"#
    ));
    let mut config = config(Some(broker.brokers()));
    edge.tokens(&mut config);
    edge.policy(&mut config);
    // One stream in all, and any principal may hold it.
    config.limits.max_publish_streams = 1;
    config.limits.max_share_percent = 100;
    let gateway = gateway(config).await;
    let mut client = client(gateway.addr()).await;
    let (reader, writer) = (edge.token("svc-reader"), edge.token("svc-writer"));
    let open = |token: &str| {
        let (tx, rx) = tokio::sync::mpsc::channel::<PublishEventsRequest>(1);
        (
            with_token(tokio_stream::wrappers::ReceiverStream::new(rx), token),
            tx,
        )
    };
    for _ in 0..3 {
        let (request, _tx) = open(&reader);
        denied(
            client.publish_events(request).await,
            &["\"svc-reader\"", "PublishEvents"],
        )
        .await;
    }
    let (request, _tx) = open(&writer);
    client
        .publish_events(request)
        .await
        .expect("the one place is still free");
    gateway.shutdown().await.unwrap();
}
