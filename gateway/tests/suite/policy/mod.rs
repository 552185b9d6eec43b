//! The policy file: principals (from bearer tokens signed at test time)
//! publish and subscribe only where it grants them, subscriptions belong to
//! their principal, a reload that revokes a right ends the open streams
//! that relied on it, quotas hold one principal back and no other, and an
//! invalid file stops the gateway at start with where it is wrong.

mod limits;

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
