//! Acks at any replica at the edges: with TLS, replicas forward over
//! mutual TLS (and a client without a replica's certificate does not get
//! through the internal listener's handshake), and a browser acks over
//! gRPC-Web, from the page of one replica, a delivery another replica's
//! stream carries.

use eventgateway::v1::{
    AckMode, AcknowledgeRequest, SettleOutcome, SettleRequest, StartFrom, SubscribeRequest,
};
use gateway::Config;
use serde_json::json;
use testkit::*;
use tonic::Code;

use super::{route_key_file, settle_one};
use crate::viewer::Browser;

/// `config` with acks at any replica on: the internal listener on a free
/// loopback port, signed with `keys`.
fn routed(mut config: Config, keys: &std::path::Path) -> Config {
    config.route.internal_addr = Some("127.0.0.1:0".parse().unwrap());
    config.route.route_key_file = Some(keys.to_owned());
    config
}

fn manual(topic: &str) -> SubscribeRequest {
    SubscribeRequest {
        topics: vec![topic.to_owned()],
        group: format!("{topic}.g"),
        start_from: StartFrom::Earliest as i32,
        ack_mode: AckMode::Manual as i32,
        ..SubscribeRequest::default()
    }
}

#[tokio::test]
async fn with_tls_replicas_forward_over_mutual_tls_and_a_client_without_a_replica_certificate_is_refused(
) {
    let edge = SecureEdge::new("any-replica-tls");
    let broker = Broker::start().await;
    let topic = topic("any-replica-tls");
    broker.create_topic(&topic, 1).await;
    let keys = route_key_file("any-replica-tls");
    let (cert, key) = edge.ca.replica("replica").write(edge.dir(), "replica");
    let replica = || {
        let mut config = routed(config(Some(broker.brokers())), &keys);
        config.tls.tls_cert = Some(cert.clone());
        config.tls.tls_key = Some(key.clone());
        config.route.internal_ca = Some(edge.ca_path.clone());
        config
    };
    let tls = edge.client(None);
    let (a, b) = (
        gateway_tls(replica(), &tls).await,
        gateway_tls(replica(), &tls).await,
    );
    let (mut on_a, mut on_b) = (
        tls.client(a.addr()).await.unwrap(),
        tls.client(b.addr()).await.unwrap(),
    );
    publish(&mut on_a, &topic, "k", json!({"n": 1})).await;
    publish(&mut on_a, &topic, "k", json!({"n": 2})).await;
    let (id, mut stream) = subscribe(&mut on_a, manual(&topic)).await;
    let delivery = next_delivery(&mut stream).await;
    let second = next_delivery(&mut stream).await;
    let settled = settle_one(&mut on_b, &id, &delivery.ack_id).await.unwrap();
    assert_eq!(
        settled.outcome,
        SettleOutcome::Accepted as i32,
        "{settled:?}"
    );
    // Acknowledge goes the same way.
    on_b.acknowledge(AcknowledgeRequest {
        subscription_id: id.clone(),
        ack_ids: vec![second.ack_id.clone()],
    })
    .await
    .unwrap();
    assert_eq!(a.subscription(&id).unwrap().unacked.get(), 0);
    for call in ["settle", "acknowledge"] {
        let series = format!("gateway_forwarded_total{{call=\"{call}\",outcome=\"answered\"}}");
        metric_reaches(b.metrics_addr().unwrap(), &series, 1.0).await;
    }

    // The internal listener: no client certificate, no call; a client
    // certificate of the same CA but no replica's secret: UNAUTHENTICATED.
    let internal = a.internal_addr().unwrap();
    let refused = match tls.client(internal).await {
        Ok(mut client) => settle_one(&mut client, &id, &delivery.ack_id)
            .await
            .expect_err("a call without a client certificate"),
        Err(error) => tonic::Status::unavailable(error.to_string()),
    };
    assert_ne!(refused.code(), Code::Ok);
    assert_ne!(
        refused.code(),
        Code::Unauthenticated,
        "stopped at the handshake: {refused:?}"
    );
    let certified = edge.client(Some(edge.ca.client(CertName::CommonName("svc-a"))));
    let mut client = certified.client(internal).await.unwrap();
    let refused = settle_one(&mut client, &id, &delivery.ack_id)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    drop(stream);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_acks_over_grpc_web_through_a_replica_other_than_the_stream_s() {
    let broker = Broker::start().await;
    let topic = topic("any-replica-web");
    broker.create_topic(&topic, 1).await;
    let keys = route_key_file("any-replica-web");
    let a = gateway(routed(config(Some(broker.brokers())), &keys)).await;
    let mut config_b = routed(config(Some(broker.brokers())), &keys);
    config_b.edge.viewer = true;
    let b = gateway(config_b).await;
    let mut on_a = client(a.addr()).await;
    publish(&mut on_a, &topic, "k", json!({"n": 1})).await;
    let (id, mut stream) = subscribe(&mut on_a, manual(&topic)).await;
    let delivery = next_delivery(&mut stream).await;

    let mut browser = Browser::start();
    let settled = browser
        .run(
            &format!("settle http://{}/ {id} {}", b.addr(), delivery.ack_id),
            "\"settle\"",
        )
        .await;
    assert_eq!(settled["settle"]["outcome"], "ACCEPTED", "{settled}");
    assert_eq!(a.subscription(&id).unwrap().unacked.get(), 0);
    drop(browser);
    drop(stream);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_an_internal_listener_ids_are_as_they_were() {
    let (_broker, topic, gateway, mut client) = fixture("any-replica-off", 1).await;
    publish(&mut client, &topic, "k", json!({"n": 1})).await;
    let (id, mut stream) = subscribe(&mut client, manual(&topic)).await;
    let delivery = next_delivery(&mut stream).await;
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(
        delivery.ack_id,
        format!("{topic}:{}:{}:1", delivery.partition, delivery.offset)
    );
    assert!(gateway.internal_addr().is_none());
    drop(stream);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_streaming_subscription_takes_its_signed_ack_ids_on_its_stream_and_at_another_replica() {
    let broker = Broker::start().await;
    let topic = topic("any-replica-stream");
    broker.create_topic(&topic, 1).await;
    let keys = route_key_file("any-replica-stream");
    let a = gateway(routed(config(Some(broker.brokers())), &keys)).await;
    let b = gateway(routed(config(Some(broker.brokers())), &keys)).await;
    let (mut on_a, mut on_b) = (client(a.addr()).await, client(b.addr()).await);
    publish(&mut on_a, &topic, "k", json!({"n": 1})).await;
    publish(&mut on_a, &topic, "k", json!({"n": 2})).await;
    let mut streamer = Streamer::open(&mut on_a, manual(&topic)).await;
    let (first, second) = (
        streamer.next_delivery().await,
        streamer.next_delivery().await,
    );
    let on_stream = streamer
        .settle(SettleRequest {
            acks: vec![first.ack_id.clone()],
            ..SettleRequest::default()
        })
        .await;
    assert_eq!(outcomes(&on_stream), [SettleOutcome::Accepted]);
    let elsewhere = settle_one(&mut on_b, &streamer.id, &second.ack_id)
        .await
        .unwrap();
    assert_eq!(
        elsewhere.outcome,
        SettleOutcome::Accepted as i32,
        "{elsewhere:?}"
    );
    assert_eq!(a.subscription(&streamer.id).unwrap().unacked.get(), 0);
    // An altered ack id on the stream is refused as any bad settle request
    // there is: the stream ends with INVALID_ARGUMENT.
    let mut altered = first.ack_id.clone();
    altered.pop();
    altered.push(if first.ack_id.ends_with('A') {
        'B'
    } else {
        'A'
    });
    streamer
        .send(SettleRequest {
            acks: vec![altered],
            ..SettleRequest::default()
        })
        .await;
    let refused = streamer.status().await;
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("signature"), "{refused:?}");
    drop(streamer);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
