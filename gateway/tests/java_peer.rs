//! The reference Java client as the gateway's peer on the same topics: a
//! key goes to the same partition whether a Java service or the gateway
//! writes it (both murmur2), so that per-key order holds across them.

use eventgateway::v1::PublishEventRequest;
use serde_json::json;
use testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_and_a_java_producer_place_every_key_on_the_same_partition() {
    let (broker, topic, gateway, mut client) = fixture("java-keys", 6).await;
    let keys: Vec<String> = (0..100).map(|i| format!("user-{i}")).collect();
    let (brokers, java_topic, java_keys) = (broker.brokers(), topic.clone(), keys.clone());
    let printed = tokio::task::spawn_blocking(move || {
        let mut args = vec![brokers.as_str(), java_topic.as_str()];
        args.extend(java_keys.iter().map(String::as_str));
        run_java("ProduceKeys", &args)
    })
    .await
    .unwrap()
    .unwrap_or_else(|error| panic!("{error}"));
    let java: Vec<(String, i32)> = printed
        .lines()
        .map(|line| {
            let (key, partition) = line.split_once('\t').expect("key<TAB>partition");
            (key.to_owned(), partition.parse().expect("a partition"))
        })
        .collect();
    assert_eq!(java.len(), keys.len(), "{printed}");

    let mut differ = Vec::new();
    let mut used = std::collections::HashSet::new();
    for (key, java_partition) in &java {
        let stored = client
            .publish_event(PublishEventRequest {
                topic: topic.clone(),
                key: key.clone(),
                event: Some(json_event(json!({"from": "gateway"}))),
            })
            .await
            .expect("stored")
            .into_inner();
        used.insert(stored.partition);
        if stored.partition != *java_partition {
            differ.push((key.clone(), *java_partition, stored.partition));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of 100 keys land elsewhere (key, Java, gateway): {differ:?}",
        differ.len()
    );
    assert_eq!(used.len(), 6, "100 keys spread over every partition");
    gateway.shutdown().await.unwrap();
}
