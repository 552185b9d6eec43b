//! The policy's quotas, an invalid policy at start, dead letters charged
//! to their subscriber, and principals that may publish nowhere.

use super::*;

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
    // The letters are written beside the subscription's task, each on its
    // own: the two refused ones can be counted before the first is
    // stored and settled.
    let stats = gateway.subscription(&id).unwrap();
    eventually("the first letter stored and settled", || async {
        records_in(&broker.brokers(), &b).await == 1 && stats.unacked.get() == 2
    })
    .await;
    // The other two wait, unsettled, and are not written meanwhile.
    metric_reaches(
        gateway.metrics_addr().unwrap(),
        "gateway_throttled_total{limit=\"publish_events_per_second\",grant=\"svc-sink\"}",
        4.0,
    )
    .await;
    assert_eq!(records_in(&broker.brokers(), &b).await, 1);
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
    assert_eq!(
        records_in(&broker.brokers(), &b).await,
        1,
        "and nothing more"
    );
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
