//! The notifier against a gateway that requires TLS, a client certificate
//! and a bearer token, under a policy: it connects with its CA file, client
//! certificate and key, and token file, and picks up a token renewed in the
//! file without a restart.

use crate::support::*;
use testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notifier_connects_with_tls_a_client_certificate_and_a_renewed_token() {
    let edge = SecureEdge::new("notifier-secure");
    let dir = edge.dir();
    let (cert, key) = edge
        .ca
        .client(CertName::Dns("notifier.example"))
        .write(dir, "notifier");

    let broker = Broker::start().await;
    let topic = topic("secure-welcome");
    broker.create_topic(&topic, 2).await;
    broker.create_topic(&format!("{topic}.dlq"), 1).await;
    edge.write_policy(&format!(
        r#"
[[grant]]
principals = ["notifier"]
subscribe = ["{topic}"]
groups = ["notification-service-*"]
publish = ["{topic}.dlq"]

[[grant]]
principals = ["registrations"]
publish = ["{topic}"]
"#
    ));
    let mut config = config(Some(broker.brokers()));
    edge.tls(&mut config, true);
    edge.tokens(&mut config);
    edge.policy(&mut config);
    let tls = edge.client(Some(edge.ca.client(CertName::Dns("registrations.example"))));
    let gateway = gateway_tls(config, &tls).await;

    // A token the policy does not know: the notifier cannot subscribe yet.
    let token_file = dir.join("token");
    std::fs::write(&token_file, edge.token("intruder")).unwrap();
    let smtp = SmtpServer::start(&[]);
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let url = format!("https://localhost:{}", gateway.addr().port());
    let _notifier = Notifier::start_with(
        gateway.addr(),
        &topic,
        &smtp.url(),
        &dir.join("state"),
        &[
            ("GATEWAY_URL", url),
            ("GATEWAY_CA", path(&edge.ca_path)),
            ("GATEWAY_CERT", path(&cert)),
            ("GATEWAY_KEY", path(&key)),
            ("GATEWAY_TOKEN_FILE", path(&token_file)),
            ("RELOAD_INTERVAL", "100ms".into()),
        ],
    );
    let mut publisher = tls.client(gateway.addr()).await.unwrap();
    let token = edge.token("registrations");
    for i in 0..3 {
        let request = eventgateway::v1::PublishEventRequest {
            topic: topic.clone(),
            key: i.to_string(),
            event: Some(json_event(user(i))),
        };
        publisher
            .publish_event(with_token(request, &token))
            .await
            .expect("registrations are published");
    }
    let metrics = gateway.metrics_addr().unwrap();
    metric_reaches(
        metrics,
        "gateway_denied_total{operation=\"subscribe\"}",
        1.0,
    )
    .await;
    assert!(
        smtp.messages().is_empty(),
        "no email before the notifier may subscribe"
    );

    // The token is renewed in place: the notifier's next attempt uses it.
    std::fs::write(&token_file, edge.token("notifier")).unwrap();
    smtp.wait_for_recipients(3).await;
    assert_once_each(&smtp, 3);
    // Consumers close while their broker still runs.
    gateway.shutdown().await.unwrap();
}
