//! Bearer tokens (JWT) signed at test time, verified against a JWKS served
//! from a file and from a local HTTPS server: which tokens pass, which get
//! UNAUTHENTICATED and why (never echoing the token), what stays open, and
//! how the keys follow changes to their source.

use std::process::Command;

use eventgateway::v1::PublishEventRequest;
use serde_json::json;
use testkit::*;
use tonic::Code;

fn publish_request(topic: &str) -> PublishEventRequest {
    PublishEventRequest {
        topic: topic.into(),
        event: Some(json_event(json!({"with": "token"}))),
        ..Default::default()
    }
}

/// A fixture whose gateway takes tokens signed by `signers`.
async fn with_signers(edge: &SecureEdge, prefix: &str, signers: &[&Signer]) -> Fixture {
    std::fs::write(&edge.jwks_path, jwks(signers)).unwrap();
    fixture_with(prefix, 1, |config| edge.tokens(config)).await
}

// grpcurl runs as a blocking child process: the gateway needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_each_accepted_kind_pass_and_every_bad_one_is_unauthenticated() {
    let es = Signer::es256("es-key");
    let ed = Signer::eddsa("ed-key");
    let rs = Signer::rs256("rs-key");
    let edge = SecureEdge::new("jwt-kinds");
    let (_broker, topic, gateway, mut client) = with_signers(&edge, "jwt", &[&es, &ed, &rs]).await;
    let metrics = gateway.metrics_addr().unwrap();

    for signer in [&es, &ed, &rs] {
        let token = signer.sign(&claims("orders-service", ISSUER, AUDIENCE));
        client
            .publish_event(with_token(publish_request(&topic), &token))
            .await
            .expect("a valid token passes");
    }

    let valid = claims("orders-service", ISSUER, AUDIENCE);
    let mut expired = valid.clone();
    expired["exp"] = json!(now() - 3600);
    let mut early = valid.clone();
    early["nbf"] = json!(now() + 3600);
    let mut no_subject = valid.clone();
    no_subject.as_object_mut().unwrap().remove("sub");
    let stranger = Signer::es256("unknown-key");
    let cases = [
        ("expired", es.sign(&expired), "token_expired", "expired"),
        (
            "not yet valid",
            es.sign(&early),
            "token_not_yet_valid",
            "not valid yet",
        ),
        (
            "wrong audience",
            es.sign(&claims("a", ISSUER, "another")),
            "token_wrong_audience",
            "audience",
        ),
        (
            "wrong issuer",
            rs.sign(&claims("a", "https://evil.test", AUDIENCE)),
            "token_wrong_issuer",
            "issuer",
        ),
        (
            "no subject",
            ed.sign(&no_subject),
            "token_missing_claim",
            "claim",
        ),
        (
            "alg none",
            unsigned_token(&valid),
            "token_malformed",
            "not a JWT",
        ),
        (
            "unknown key id",
            stranger.sign(&valid),
            "token_unknown_key",
            "unknown kid",
        ),
        (
            "HMAC with the public key",
            es.hmac_forgery(&valid),
            "token_algorithm",
            "algorithm",
        ),
        (
            "garbage",
            "not-a-token".to_owned(),
            "token_malformed",
            "not a JWT",
        ),
    ];
    for (what, token, reason, says) in cases {
        let status = client
            .publish_event(with_token(publish_request(&topic), &token))
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        assert!(status.message().contains(says), "{what}: {status:?}");
        assert!(
            !status.message().contains(&token),
            "{what}: the token is echoed"
        );
        let series = format!("gateway_auth_failures_total{{reason=\"{reason}\"}}");
        metric_reaches(metrics, &series, 1.0).await;
    }

    let missing = client
        .publish_event(publish_request(&topic))
        .await
        .expect_err("no token");
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(
        missing.message().contains("authorization: Bearer"),
        "{missing:?}"
    );

    // Health checks and reflection stay open.
    assert_eq!(
        health(gateway.addr(), "").await.unwrap(),
        tonic_health::ServingStatus::Serving as i32
    );
    let listed = Command::new(grpcurl())
        .args(["-plaintext", &gateway.addr().to_string(), "list"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "reflection stays open by default");
}

// grpcurl runs as a blocking child process: the gateway needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_reflection_needs_a_token() {
    let es = Signer::es256("es-key");
    let edge = SecureEdge::new("jwt-reflection");
    std::fs::write(&edge.jwks_path, jwks(&[&es])).unwrap();
    let (_broker, _topic, gateway, _client) = fixture_with("jwt-reflection", 1, |config| {
        edge.tokens(config);
        config.policy.protect_reflection = true;
    })
    .await;
    let target = gateway.addr().to_string();
    let without = Command::new(grpcurl())
        .args(["-plaintext", &target, "list"])
        .output()
        .unwrap();
    assert!(!without.status.success(), "reflection without a token");
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("Unauthenticated"),
        "{}",
        String::from_utf8_lossy(&without.stderr)
    );
    let header = format!(
        "authorization: Bearer {}",
        es.sign(&claims("operator", ISSUER, AUDIENCE))
    );
    let with = Command::new(grpcurl())
        .args(["-plaintext", "-H", &header, &target, "list"])
        .output()
        .unwrap();
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
}

#[tokio::test]
async fn a_jwks_file_is_read_again_when_it_changes() {
    let old = Signer::es256("old-key");
    let new = Signer::eddsa("new-key");
    let edge = SecureEdge::new("jwt-file");
    let (_broker, topic, _gateway, mut client) = with_signers(&edge, "jwt-file", &[&old]).await;
    // Verified once, and remembered as verified.
    let retired = old.sign(&claims("svc", ISSUER, AUDIENCE));
    client
        .publish_event(with_token(publish_request(&topic), &retired))
        .await
        .expect("a key of the file");
    let token = new.sign(&claims("svc", ISSUER, AUDIENCE));
    let status = client
        .publish_event(with_token(publish_request(&topic), &token))
        .await
        .expect_err("a key not in the file yet");
    assert_eq!(status.code(), Code::Unauthenticated);

    std::fs::write(&edge.jwks_path, jwks(&[&new])).unwrap();
    eventually("the new key verifies tokens", || {
        let mut client = client.clone();
        let request = with_token(publish_request(&topic), &token);
        async move { client.publish_event(request).await.is_ok() }
    })
    .await;
    let status = client
        .publish_event(with_token(publish_request(&topic), &retired))
        .await
        .expect_err("a token verified before, by a key gone from the file");
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_token_verified_before_still_expires() {
    let edge = SecureEdge::new("jwt-expiry");
    let (_broker, topic, _gateway, mut client) = fixture_with("jwt-expiry", 1, |config| {
        edge.tokens(config);
        config.tokens.jwt_leeway = std::time::Duration::ZERO;
    })
    .await;
    let mut soon = claims("svc", ISSUER, AUDIENCE);
    soon["exp"] = json!(now() + 2);
    let token = edge.signer.sign(&soon);
    client
        .publish_event(with_token(publish_request(&topic), &token))
        .await
        .expect("valid for two more seconds");
    // The same token, remembered as verified, is refused once its time
    // has passed.
    eventually("the token expires", || {
        let mut client = client.clone();
        let request = with_token(publish_request(&topic), &token);
        async move {
            client
                .publish_event(request)
                .await
                .is_err_and(|status| status.message().contains("expired"))
        }
    })
    .await;
}

#[tokio::test]
async fn jwks_from_https_is_fetched_for_new_keys_and_an_unreachable_server_keeps_the_cache() {
    let ca = Ca::new("JWKS CA");
    let first = Signer::es256("first");
    let second = Signer::rs256("second");
    let server = DocumentServer::start(&ca, jwks(&[&first])).await;
    let edge = SecureEdge::new("jwt-https");
    let ca_path = ca.write(edge.dir(), "jwks-ca");
    let (_broker, topic, _gateway, mut client) = fixture_with("jwt-https", 1, |config| {
        config.tokens.jwks_url = Some(server.url().parse().unwrap());
        config.tokens.jwks_ca = Some(ca_path.clone());
        config.tokens.jwt_issuer = Some(ISSUER.into());
        config.tokens.jwt_audience = Some(AUDIENCE.into());
    })
    .await;
    let token = first.sign(&claims("svc", ISSUER, AUDIENCE));
    client
        .publish_event(with_token(publish_request(&topic), &token))
        .await
        .expect("a key of the fetched document");

    // A token with a key id the cache lacks makes the gateway fetch again.
    server.set(jwks(&[&first, &second]));
    let fetched = server.fetches();
    let rotated = second.sign(&claims("svc", ISSUER, AUDIENCE));
    client
        .publish_event(with_token(publish_request(&topic), &rotated))
        .await
        .expect("a key published after start is fetched on first use");
    assert!(server.fetches() > fetched);

    // The key server goes away: cached keys still verify.
    server.stop();
    let unknown = Signer::es256("third").sign(&claims("svc", ISSUER, AUDIENCE));
    let status = client
        .publish_event(with_token(publish_request(&topic), &unknown))
        .await
        .expect_err("a key no one can fetch");
    assert_eq!(status.code(), Code::Unauthenticated);
    for token in [&token, &rotated] {
        client
            .publish_event(with_token(publish_request(&topic), token))
            .await
            .expect("cached keys verify while the key server is down");
    }
}

/// A token over its 16 KiB limit, sent within the header bound (64 KiB),
/// is answered UNAUTHENTICATED saying so, and the other calls on the same
/// connection go on: an open stream still gets its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_token_is_unauthenticated_and_its_connection_goes_on() {
    let es = Signer::es256("es-key");
    let edge = SecureEdge::new("jwt-large");
    let (_broker, topic, gateway, mut client) = with_signers(&edge, "jwt-large", &[&es]).await;
    let token = es.sign(&claims("orders-service", ISSUER, AUDIENCE));
    let (_, mut stream) = subscribe(&mut client, with_token(from_earliest(&topic), &token)).await;
    for size in [20 * 1024, 60 * 1024] {
        let large = format!("{token}{}", "A".repeat(size));
        let status = client
            .publish_event(with_token(publish_request(&topic), &large))
            .await
            .expect_err("over the limit");
        assert_eq!(status.code(), Code::Unauthenticated, "{size}: {status:?}");
        assert!(
            status.message().contains("over its limit"),
            "{size}: {status:?}"
        );
    }
    metric_reaches(
        gateway.metrics_addr().unwrap(),
        "gateway_auth_failures_total{reason=\"token_too_large\"}",
        2.0,
    )
    .await;
    client
        .publish_event(with_token(publish_request(&topic), &token))
        .await
        .expect("the connection serves calls still");
    let delivery = next_delivery(&mut stream).await;
    assert_eq!(delivery.topic, topic, "the open stream goes on");
    gateway.shutdown().await.unwrap();
}
