//! The Prometheus endpoint after a known workload: the counters match it,
//! and no label takes a value a client made up.

use eventgateway::v1::{AckMode, AcknowledgeRequest, SubscribeRequest};
use serde_json::json;
use testkit::*;

#[tokio::test]
async fn metrics_count_publishes_deliveries_acks_subscriptions_and_lag() {
    // librdkafka's statistics (the lag) every 200 ms instead of 5 s.
    let (_broker, topic, gateway, mut client) = fixture_with("metrics", 1, |config| {
        config
            .kafka
            .kafka_properties
            .push(gateway::KafkaProperty::new("statistics.interval.ms", "200"))
    })
    .await;
    let metrics = gateway.metrics_addr().expect("metrics are on");

    for i in 0..3 {
        publish(&mut client, &topic, "", json!({"n": i})).await;
    }
    let missing = format!("{topic}-missing");
    let status = client
        .publish_event(eventgateway::v1::PublishEventRequest {
            topic: missing.clone(),
            key: String::new(),
            event: Some(json_event(json!({}))),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    let group = format!("group-{topic}");
    let (id, mut stream) = subscribe(
        &mut client,
        SubscribeRequest {
            group: group.clone(),
            ack_mode: AckMode::Manual as i32,
            ..from_earliest(&topic)
        },
    )
    .await;
    let mut received = Vec::new();
    for _ in 0..3 {
        received.push(next_delivery(&mut stream).await);
    }
    client
        .acknowledge(AcknowledgeRequest {
            subscription_id: id,
            ack_ids: received[..2].iter().map(|d| d.ack_id.clone()).collect(),
        })
        .await
        .unwrap();

    let expected = [
        format!(r#"gateway_publish_total{{topic="{topic}",status="ok"}} 3"#),
        // A topic that does not exist names no series of its own.
        r#"gateway_publish_total{topic="(unknown)",status="not_found"} 1"#.to_owned(),
        format!(r#"gateway_publish_duration_seconds_count{{topic="{topic}",status="ok"}} 3"#),
        format!(r#"gateway_deliveries_total{{topic="{topic}"}} 3"#),
        "gateway_acks_total 2".to_owned(),
        "gateway_active_subscriptions 1".to_owned(),
        format!(r#"gateway_consumer_lag{{group="{group}",topic="{topic}",partition="0"}}"#),
    ];
    metrics_show(metrics, &expected).await;
    drop(stream);
    metrics_show(metrics, &["gateway_active_subscriptions 0".to_owned()]).await;
    // The ended subscription's consumer closed, and its lag series with it.
    let lag = format!(r#"gateway_consumer_lag{{group="{group}""#);
    eventually("the lag series of the closed consumer goes", || async {
        let text = eventgateway_runtime::metrics::scrape(metrics)
            .await
            .unwrap_or_default();
        !text.contains(&lag)
    })
    .await;
    let text = eventgateway_runtime::metrics::scrape(metrics)
        .await
        .unwrap();
    assert!(!text.contains(&missing), "{text}");
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn topics_that_do_not_exist_neither_grow_the_metrics_nor_ask_kafka_each_time() {
    let (_broker, topic, gateway, mut client) = fixture("missing", 1).await;
    let metrics = gateway.metrics_addr().expect("metrics are on");
    let missing = |name: String| eventgateway::v1::PublishEventRequest {
        topic: name,
        key: String::new(),
        event: Some(json_event(json!({}))),
    };
    publish(&mut client, &topic, "", json!({"n": 0})).await;
    let before = eventgateway_runtime::metrics::scrape(metrics)
        .await
        .unwrap();
    // Many names that do not exist: one series for all of them.
    for i in 0..300 {
        let status = client
            .publish_event(missing(format!("{topic}-missing-{i}")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
    }
    metrics_show(
        metrics,
        &[r#"gateway_publish_total{topic="(unknown)",status="not_found"} 300"#.to_owned()],
    )
    .await;
    let after = eventgateway_runtime::metrics::scrape(metrics)
        .await
        .unwrap();
    assert!(!after.contains("-missing-"), "{after}");
    assert!(
        after.len() < before.len() + 2048,
        "the metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
    // One name asked for again and again: Kafka is asked once (again at
    // most once more, should the few seconds it is remembered run out).
    let lookups = "gateway_topic_lookups_total";
    let asked = metric_value(metrics, lookups).await.unwrap();
    for _ in 0..50 {
        let status = client
            .publish_event(missing(format!("{topic}-gone")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
    }
    let asked_again = metric_value(metrics, lookups).await.unwrap();
    assert!(asked_again - asked <= 2.0, "{asked} then {asked_again}");
    gateway.shutdown().await.unwrap();
}
