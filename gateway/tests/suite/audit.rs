//! The gateway binary at debug level, with TLS, bearer tokens, a policy and
//! a Kafka password configured: failed authentications, denials and opened
//! subscriptions each write an audit line (target `audit`) with the
//! principal and the peer, and no secret (the TLS key, a token, the Kafka
//! password) appears in any line.

use eventgateway::v1::PublishEventRequest;
use serde_json::json;
use testkit::*;

const KAFKA_PASSWORD: &str = "kafka-pass-7f3a9c";

fn publish_request(topic: &str) -> PublishEventRequest {
    PublishEventRequest {
        topic: topic.into(),
        event: Some(json_event(json!({"n": 1}))),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_name_principal_and_peer_and_no_secret_is_logged_at_debug_level() {
    let edge = SecureEdge::new("audit");
    let (cert, key) = &edge.server;
    let broker = Broker::start().await;
    let (mine, theirs) = (topic("audit-mine"), topic("audit-theirs"));
    broker.create_topic(&mine, 1).await;
    broker.create_topic(&theirs, 1).await;
    edge.write_policy(&format!(
        "[[grant]]\nprincipals = [\"svc-audit\"]\npublish = [\"{mine}\"]\nsubscribe = [\"{mine}\"]\n"
    ));
    let port = free_port();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (child, mut log) = gateway_process(
        env!("CARGO_BIN_EXE_gateway").as_ref(),
        port,
        &broker.brokers(),
        &[
            ("RUST_LOG", "debug"),
            ("TLS_CERT", &path(cert)),
            ("TLS_KEY", &path(key)),
            ("JWKS_FILE", &path(&edge.jwks_path)),
            ("JWT_ISSUER", ISSUER),
            ("JWT_AUDIENCE", AUDIENCE),
            ("POLICY_FILE", &path(&edge.policy_path())),
            (
                "KAFKA_PROPERTIES",
                &format!("sasl.username=gateway;sasl.password={KAFKA_PASSWORD}"),
            ),
        ],
        &[],
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let tls = edge.client(None);
    wait_serving_tls(addr, &tls).await;
    let mut client = tls.client(addr).await.unwrap();

    let valid = edge.token("svc-audit");
    let mut old = claims("svc-audit", ISSUER, AUDIENCE);
    old["exp"] = json!(now() - 3600);
    let expired = edge.signer.sign(&old);
    client
        .publish_event(with_token(publish_request(&mine), &valid))
        .await
        .expect("granted");
    client
        .publish_event(with_token(publish_request(&theirs), &valid))
        .await
        .expect_err("denied");
    client
        .publish_event(with_token(publish_request(&mine), &expired))
        .await
        .expect_err("expired");
    let (_id, _stream) = subscribe(&mut client, with_token(from_earliest(&mine), &valid)).await;

    let failed = log.wait_for("authentication_failed").await;
    assert!(
        failed.contains("audit")
            && failed.contains("token_expired")
            && failed.contains("127.0.0.1"),
        "{failed}"
    );
    let denied = log.wait_for("event=\"denied\"").await;
    assert!(
        denied.contains("svc-audit") && denied.contains("publish") && denied.contains(&theirs),
        "{denied}"
    );
    let opened = log.wait_for("subscription_opened").await;
    assert!(
        opened.contains("svc-audit") && opened.contains(&mine) && opened.contains("127.0.0.1"),
        "{opened}"
    );

    sigterm_and_wait(child).await;
    let lines = log.to_end().await;
    let key_text = std::fs::read_to_string(key).unwrap();
    let key_body: Vec<&str> = key_text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    for line in lines {
        for secret in [valid.as_str(), expired.as_str(), KAFKA_PASSWORD] {
            assert!(!line.contains(secret), "a secret is logged: {line}");
        }
        for part in &key_body {
            assert!(!line.contains(part), "the TLS key is logged: {line}");
        }
        // No part of a token either (its signature is the secret part).
        for token in [&valid, &expired] {
            let signature = token.rsplit('.').next().unwrap();
            assert!(
                !line.contains(signature),
                "a token signature is logged: {line}"
            );
        }
    }
}
