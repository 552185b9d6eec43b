//! Faults, with counts: a broker that goes down (librdkafka's mock cluster),
//! a real broker restarted on durable storage, and the gateway killed with
//! SIGKILL under a publish load. Every scenario counts what was published,
//! acknowledged, redelivered and lost; the suite prints the totals at the end
//! and fails on any loss.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use eventgateway::v1::{
    event::Data, AckMode, Event, PublishEventRequest, StartFrom, SubscribeRequest,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::ClientConfig;
use serde_json::json;
use tonic::Code;

/// What the fault scenarios counted.
#[derive(Debug, Default)]
struct Summary {
    published: usize,
    publish_errors: usize,
    acknowledged: usize,
    redelivered: usize,
    lost: usize,
}

fn request(topic: &str, n: i64) -> PublishEventRequest {
    PublishEventRequest {
        topic: topic.into(),
        key: format!("k{n}"),
        event: Some(json_event(json!({"n": n}))),
    }
}

// The scenarios share one summary and run in order, so the totals print once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_lose_nothing() {
    let summary = Arc::new(Mutex::new(Summary::default()));
    broker_down_and_back(&summary).await;
    fetch_errors_are_retried(&summary).await;
    durable_broker_restart(&summary).await;
    gateway_killed_under_load(&summary).await;
    let summary = summary.lock().unwrap();
    // Written past the test harness's capture, so that it shows in CI logs.
    let _ = writeln!(
        std::io::stderr(),
        "\nfault summary: {} events published ({} publish calls failed), {} acknowledged, {} redelivered, {} lost",
        summary.published, summary.publish_errors, summary.acknowledged, summary.redelivered, summary.lost
    );
    assert_eq!(summary.lost, 0, "events were lost: {summary:?}");
}

/// The broker goes down: health follows, publishes answer UNAVAILABLE within
/// their deadline, an open subscription waits and then resumes without loss.
async fn broker_down_and_back(summary: &Mutex<Summary>) {
    let topic = topic("down");
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(&topic, 1, 1).unwrap();
    let gateway = gateway(config(Some(cluster.bootstrap_servers()))).await;
    let addr = gateway.addr();
    let mut client = client(addr).await;
    let (_, mut stream) = subscribe(&mut client, from_earliest(&topic)).await;
    client.publish_event(request(&topic, 0)).await.unwrap();
    summary.lock().unwrap().published += 1;
    assert_eq!(n(&next_delivery(&mut stream).await), 0);

    cluster.broker_down(1).unwrap();
    let mut down = tonic::Request::new(request(&topic, -1));
    down.set_timeout(Duration::from_secs(10));
    let status = client.publish_event(down).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::Unavailable),
        "a publish while Kafka is down: {status:?}"
    );
    summary.lock().unwrap().publish_errors += 1;
    eventually("health reports NOT_SERVING", || async {
        health(addr, "").await.ok() == Some(tonic_health::ServingStatus::NotServing as i32)
    })
    .await;
    let status = client.publish_event(request(&topic, -1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    summary.lock().unwrap().publish_errors += 1;

    cluster.broker_up(1).unwrap();
    wait_serving(addr).await;
    for i in 1..=5 {
        client.publish_event(request(&topic, i)).await.unwrap();
    }
    summary.lock().unwrap().published += 5;
    // The subscription resumes; the failed publishes may or may not have
    // been stored (the producer kept trying), the others all arrive.
    let mut seen = BTreeSet::new();
    while !(1..=5).all(|i| seen.contains(&i)) {
        seen.insert(n(&next_delivery(&mut stream).await));
    }
    gateway.shutdown().await.unwrap();
}

/// Fetch requests fail for a while: the subscription retries and misses nothing.
async fn fetch_errors_are_retried(summary: &Mutex<Summary>) {
    let topic = topic("fetch-errors");
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(&topic, 1, 1).unwrap();
    let gateway = gateway(config(Some(cluster.bootstrap_servers()))).await;
    let mut client = client(gateway.addr()).await;
    for i in 0..20 {
        client.publish_event(request(&topic, i)).await.unwrap();
    }
    summary.lock().unwrap().published += 20;
    cluster.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 5],
    );
    let (_, mut stream) = subscribe(&mut client, from_earliest(&topic)).await;
    for i in 0..20 {
        assert_eq!(n(&next_delivery(&mut stream).await), i);
    }
    gateway.shutdown().await.unwrap();
}

/// A real broker with durable storage restarts under a MANUAL subscription:
/// stored events survive, the stream resumes, nothing acknowledged comes back
/// and nothing unacknowledged is lost.
async fn durable_broker_restart(summary: &Mutex<Summary>) {
    let mut broker = Broker::start_durable().await;
    let topic = topic("restart");
    broker.create_topic(&topic, 1).await;
    let gateway = gateway(config(Some(broker.brokers()))).await;
    let addr = gateway.addr();
    let mut client = client(addr).await;
    let group = format!("group-{topic}");
    let manual = SubscribeRequest {
        topics: vec![topic.clone()],
        group: group.clone(),
        start_from: StartFrom::Earliest as i32,
        ack_mode: AckMode::Manual as i32,
        ack_timeout: Some(prost_types::Duration {
            seconds: 2,
            nanos: 0,
        }),
        ..SubscribeRequest::default()
    };
    for i in 0..10 {
        client.publish_event(request(&topic, i)).await.unwrap();
    }
    let (id, mut stream) = subscribe(&mut client, manual.clone()).await;
    let mut acked = BTreeSet::new();
    for _ in 0..10 {
        let delivery = next_delivery(&mut stream).await;
        if n(&delivery) < 5 {
            ack(&mut client, &id, &[&delivery]).await;
            acked.insert(n(&delivery));
        }
    }

    broker.restart().await;
    wait_serving(addr).await;
    for i in 10..15 {
        client.publish_event(request(&topic, i)).await.unwrap();
    }
    // The same stream goes on: the new events, and 5..10 again after the ack
    // timeout. Acknowledge everything now.
    let stats = gateway.subscription(&id).unwrap();
    while acked.len() < 15 {
        let delivery = next_delivery(&mut stream).await;
        ack(&mut client, &id, &[&delivery]).await;
        acked.insert(n(&delivery));
    }
    let redelivered = stats.redelivered() as usize;
    drop(stream);

    // Nothing acknowledged comes back to the group's next member.
    client.publish_event(request(&topic, 15)).await.unwrap();
    let (_, mut next) = subscribe(&mut client, manual).await;
    assert_eq!(
        n(&next_delivery(&mut next).await),
        15,
        "an acknowledged event came back"
    );
    // Every stored event survived the restart.
    let (_, mut all) = subscribe(&mut client, from_earliest(&topic)).await;
    let mut survived = BTreeSet::new();
    for _ in 0..16 {
        survived.insert(n(&next_delivery(&mut all).await));
    }
    {
        let mut summary = summary.lock().unwrap();
        summary.published += 16;
        summary.acknowledged += acked.len();
        summary.redelivered += redelivered;
        summary.lost += (0..16).filter(|i| !survived.contains(i)).count();
    }
    gateway.shutdown().await.unwrap();
}

/// The gateway is killed with SIGKILL while publishers are busy: every
/// publish that returned OK is in the topic.
///
/// The broker keeps its data in SQLite: tansu's in-memory engine was seen to
/// drop the last record it had acknowledged in a partition when the
/// producer's connection died, which is the broker losing an acknowledged
/// write, not something a client (or this gateway) can prevent.
async fn gateway_killed_under_load(summary: &Mutex<Summary>) {
    let broker = Broker::start_durable().await;
    let topic = topic("sigkill");
    broker.create_topic(&topic, 3).await;
    let port = free_port();
    let (mut gateway, _log) = gateway_process(
        env!("CARGO_BIN_EXE_gateway").as_ref(),
        port,
        &broker.brokers(),
        &[("RUST_LOG", "warn")],
        &[],
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_serving(addr).await;

    let stored = Arc::new(Mutex::new(Vec::<String>::new()));
    let failed = Arc::new(Mutex::new(0usize));
    let mut publishers = Vec::new();
    for publisher in 0..4 {
        let (stored, failed, topic) = (stored.clone(), failed.clone(), topic.clone());
        let mut client = client(addr).await;
        publishers.push(tokio::spawn(async move {
            for i in 0..10_000 {
                let id = format!("p{publisher}-{i}");
                let event = Event {
                    id: id.clone(),
                    data: Some(Data::Text(id.clone())),
                    ..Event::default()
                };
                let mut call = tonic::Request::new(PublishEventRequest {
                    topic: topic.clone(),
                    key: id.clone(),
                    event: Some(event),
                });
                call.set_timeout(Duration::from_secs(5));
                match client.publish_event(call).await {
                    Ok(answer) => {
                        let answer = answer.into_inner();
                        stored
                            .lock()
                            .unwrap()
                            .push(format!("{id}@{}:{}", answer.partition, answer.offset));
                    }
                    Err(_) => {
                        *failed.lock().unwrap() += 1;
                        // The gateway is gone: stop after the first failures.
                        if *failed.lock().unwrap() > 20 {
                            return;
                        }
                    }
                }
            }
        }));
    }
    eventually("publishers are under way", || {
        let stored = stored.clone();
        async move { stored.lock().unwrap().len() >= 300 }
    })
    .await;
    gateway.kill().expect("SIGKILL");
    let _ = gateway.wait();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let acknowledged: Vec<String> = stored.lock().unwrap().clone();

    // Read the topic back with a plain consumer, up to its end.
    let brokers = broker.brokers();
    let topic_name = topic.clone();
    let in_topic = tokio::task::spawn_blocking(move || read_ids(&brokers, &topic_name))
        .await
        .unwrap();
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !in_topic.contains(id.split('@').next().unwrap_or_default()))
        .collect();
    let lost = missing.len();
    let mut summary = summary.lock().unwrap();
    summary.published += acknowledged.len();
    summary.publish_errors += *failed.lock().unwrap();
    summary.lost += lost;
    let _ = writeln!(
        std::io::stderr(),
        "gateway SIGKILL: {} publishes returned OK, {} returned an error, {} records in the topic, {lost} OK'd events missing {missing:?}",
        acknowledged.len(),
        *failed.lock().unwrap(),
        in_topic.len()
    );
}

/// Every `ce_id` in a topic, read with a plain consumer up to its end (the
/// high watermarks, asked again until they stop moving).
fn read_ids(brokers: &str, topic: &str) -> HashSet<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for partition in &partitions {
        tpl.add_partition_offset(topic, *partition, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let ends = || -> Vec<(i32, i64)> {
        partitions
            .iter()
            .map(|p| {
                (
                    *p,
                    consumer
                        .fetch_watermarks(topic, *p, Duration::from_secs(10))
                        .unwrap()
                        .1,
                )
            })
            .collect()
    };
    let mut ids = HashSet::new();
    let mut positions: std::collections::HashMap<i32, i64> = std::collections::HashMap::new();
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut target = ends();
    loop {
        while target
            .iter()
            .any(|(p, high)| positions.get(p).copied().unwrap_or(0) < *high)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "could not read the topic to its end"
            );
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                positions.insert(message.partition(), message.offset() + 1);
                let headers = message.headers();
                for header in headers.iter().flat_map(|h| h.iter()) {
                    if header.key == "ce_id" {
                        ids.insert(
                            String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
            }
        }
        let again = ends();
        if again == target {
            return ids;
        }
        target = again;
    }
}
