//! The gateway's Kafka clients over TLS: librdkafka is built with OpenSSL,
//! and reaches an Apache Kafka broker whose only client listener speaks
//! TLS with a certificate made at test time (mutual TLS: the gateway
//! presents a client certificate, and a gateway without one is refused),
//! publishing, creating a topic and consuming through it; and SASL_SSL
//! with SCRAM against a broker that requires it.

use std::time::Duration;

use eventgateway::v1::PublishEventRequest;
use gateway::KafkaProperty;
use serde_json::json;
use testkit::*;

#[tokio::test]
async fn the_gateway_talks_to_kafka_over_mutual_tls() {
    let dir = std::env::temp_dir().join(format!("gateway-kafka-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new("Kafka CA");
    let ca_path = ca.write(&dir, "ca");
    let (cert, key) = ca
        .client(CertName::CommonName("gateway"))
        .write(&dir, "gateway");
    let broker = Broker::with(kafka::Settings {
        listener: kafka::Listener::Tls {
            keystore: keystore(&ca, &dir),
            client_ca: Some(ca_path.clone()),
        },
        ..Default::default()
    })
    .await;

    let tls = |client: Option<(&std::path::Path, &std::path::Path)>| {
        let mut config = config(Some(broker.brokers()));
        config.kafka.create_topics = true;
        config.kafka.topic_partitions = 1;
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        config.kafka.kafka_properties = vec![
            KafkaProperty::new("security.protocol", "SSL"),
            KafkaProperty::new("ssl.ca.location", path(&ca_path)),
        ];
        if let Some((cert, key)) = client {
            config.kafka.kafka_properties.extend([
                KafkaProperty::new("ssl.certificate.location", path(cert)),
                KafkaProperty::new("ssl.key.location", path(key)),
            ]);
        }
        config
    };
    let gateway = gateway(tls(Some((&cert, &key)))).await;
    let mut client = client(gateway.addr()).await;
    let topic = topic("kafka-tls");
    let stored = client
        .publish_event(PublishEventRequest {
            topic: topic.clone(),
            event: Some(json_event(json!({"over": "tls"}))),
            ..Default::default()
        })
        .await
        .expect("stored through the TLS listener")
        .into_inner();
    let (_id, mut stream) = subscribe(&mut client, from_earliest(&topic)).await;
    let delivery = next_delivery(&mut stream).await;
    assert_eq!(
        (delivery.partition, delivery.offset),
        (stored.partition, stored.offset)
    );
    // Consumers close while their broker still runs.
    gateway.shutdown().await.unwrap();

    // Without a client certificate the broker refuses the gateway, which
    // never reports SERVING.
    refused(tls(None)).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A PEM file holding a `localhost` certificate of `ca` and its key, as
/// Kafka's PEM keystore takes it.
fn keystore(ca: &Ca, dir: &std::path::Path) -> std::path::PathBuf {
    let server = ca.server("kafka");
    let path = dir.join("kafka-keystore.pem");
    std::fs::write(&path, format!("{}{}", server.key, server.cert)).unwrap();
    path
}

/// Starts a gateway with `config`, which Kafka refuses: it counts failed
/// health probes and never reports SERVING.
async fn refused(config: gateway::Config) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = gateway::start(config, listener).await.unwrap();
    let metrics = refused.metrics_addr().unwrap();
    metric_reaches(metrics, "gateway_health_probe_failures_total", 1.0).await;
    assert_ne!(
        health(refused.addr(), "").await.ok(),
        Some(tonic_health::ServingStatus::Serving as i32)
    );
    refused.shutdown().await.unwrap();
}

#[tokio::test]
async fn sasl_ssl_with_scram_or_oauthbearer_is_accepted_at_start() {
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] {
        let mut config = config(Some("127.0.0.1:1".into()));
        config.kafka.kafka_properties = vec![
            KafkaProperty::new("security.protocol", "SASL_SSL"),
            KafkaProperty::new("sasl.mechanism", mechanism),
        ];
        if mechanism.starts_with("SCRAM") {
            config.kafka.kafka_properties.extend([
                KafkaProperty::new("sasl.username", "gateway"),
                KafkaProperty::new("sasl.password", "secret"),
            ]);
        } else {
            config.kafka.kafka_properties.extend([
                KafkaProperty::new("enable.sasl.oauthbearer.unsecure.jwt", "true"),
                KafkaProperty::new("sasl.oauthbearer.config", "principal=gateway"),
            ]);
        }
        config.shutdown.shutdown_grace = Duration::from_secs(1);
        config.shutdown.drain_timeout = Duration::from_millis(500);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = gateway::start(config, listener)
            .await
            .unwrap_or_else(|error| {
                panic!("librdkafka takes SASL_SSL with {mechanism}: {error:#}")
            });
        gateway.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn sasl_ssl_with_scram_logs_in_to_a_broker_that_requires_it() {
    let dir = std::env::temp_dir().join(format!("gateway-kafka-scram-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new("Kafka CA");
    let ca_path = ca.write(&dir, "ca");
    let broker = Broker::with(kafka::Settings {
        listener: kafka::Listener::SaslScramTls {
            keystore: keystore(&ca, &dir),
            users: vec![("gateway".into(), "scram-s3cret".into())],
        },
        ..Default::default()
    })
    .await;
    let scram = |password: &str| {
        let mut config = config(Some(broker.brokers()));
        config.kafka.create_topics = true;
        config.kafka.topic_partitions = 1;
        config.kafka.kafka_properties = vec![
            KafkaProperty::new("security.protocol", "SASL_SSL"),
            KafkaProperty::new("sasl.mechanism", "SCRAM-SHA-512"),
            KafkaProperty::new("sasl.username", "gateway"),
            KafkaProperty::new("sasl.password", password),
            KafkaProperty::new("ssl.ca.location", ca_path.to_str().unwrap()),
        ];
        config
    };

    let gateway = gateway(scram("scram-s3cret")).await;
    let mut client = client(gateway.addr()).await;
    let topic = topic("kafka-scram");
    let stored = publish(&mut client, &topic, "k", json!({"over": "sasl_ssl"})).await;
    let (_id, mut stream) = subscribe(&mut client, from_earliest(&topic)).await;
    assert_eq!(next_delivery(&mut stream).await.offset, stored.offset);
    gateway.shutdown().await.unwrap();

    // A wrong password: Kafka refuses the gateway, which never reports
    // SERVING and counts its failed probes.
    refused(scram("wrong")).await;
    std::fs::remove_dir_all(&dir).unwrap();
}
