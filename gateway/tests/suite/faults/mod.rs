//! Faults, with counts: Kafka going down and coming back, fetches failing
//! and the producer fenced (librdkafka's mock cluster), a real broker
//! killed and restarted,
//! and the gateway killed with SIGKILL under a publish load. Each fault is a
//! test of its own that counts what was published, acknowledged, redelivered
//! and lost, prints the counts (they show in CI logs) and asserts them.

mod restarts;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventgateway::v1::publish_result::Result as BatchOutcome;
use eventgateway::v1::{
    event::Data, AckMode, Event, PublishEventRequest, PublishEventsRequest, PublishEventsResponse,
    StartFrom, SubscribeRequest, SubscribeResponse,
};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::json;
use testkit::*;
use tonic::{Code, Streaming};

/// What the system did in a fault scenario, as the test observed it (what
/// the test itself did, such as its publishes, is not counted here).
#[derive(Debug, Default, PartialEq, Eq)]
struct Summary {
    /// Deliveries of an event received before.
    redelivered: usize,
    /// Events answered OK that never arrived.
    lost: usize,
}

impl Summary {
    /// Prints the counts past the test harness's capture.
    fn print(&self, fault: &str) {
        let _ = writeln!(
            std::io::stderr(),
            "fault summary ({fault}): {} redelivered, {} lost",
            self.redelivered,
            self.lost
        );
    }
}

fn request(topic: &str, n: i64) -> PublishEventRequest {
    PublishEventRequest {
        topic: topic.into(),
        key: format!("k{n}"),
        event: Some(json_event(json!({"n": n}))),
    }
}

/// The numbers of the deliveries of `stream` until every one of `expected`
/// arrived, or until nothing came for [`PATIENCE`]; others on the way are
/// kept too.
async fn numbers_until(
    stream: &mut Streaming<SubscribeResponse>,
    expected: &BTreeSet<i64>,
) -> BTreeSet<i64> {
    let mut seen = BTreeSet::new();
    while !expected.is_subset(&seen) {
        let Some(delivery) = next_delivery_within(stream, PATIENCE).await else {
            break;
        };
        seen.insert(n(&delivery));
    }
    seen
}

/// The idempotent producer fails for good: the mock cluster answers the
/// only produce request in flight with OUT_OF_ORDER_SEQUENCE_NUMBER, which
/// leaves librdkafka out of step with the broker's sequence numbers, a
/// fatal error (as a broker that lost its producer state). Health turns
/// NOT_SERVING at once, a new producer replaces the failed one, health
/// comes back and publishing goes on without a restart of the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_failed_for_good_is_replaced() {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    use tonic_health::ServingStatus;
    let topic = topic("fenced");
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(&topic, 1, 1).unwrap();
    let gateway = gateway(config(Some(cluster.bootstrap_servers()))).await;
    let addr = gateway.addr();
    let mut client = client(addr).await;
    let mut summary = Summary::default();
    client.publish_event(request(&topic, 0)).await.unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut statuses = vec![watch.message().await.unwrap().unwrap().status];

    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    // The event caught in the failure may or may not be stored: its
    // publish is answered UNAVAILABLE, to be retried.
    let status = client.publish_event(request(&topic, 1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("same event id"), "{status:?}");
    while statuses.last() != Some(&(ServingStatus::Serving as i32)) || statuses.len() < 3 {
        let status = tokio::time::timeout(PATIENCE, watch.message())
            .await
            .expect("health changes in time")
            .unwrap()
            .unwrap()
            .status;
        statuses.push(status);
    }
    assert_eq!(
        statuses,
        [
            ServingStatus::Serving as i32,
            ServingStatus::NotServing as i32,
            ServingStatus::Serving as i32
        ]
    );
    drop(watch);
    let metrics = gateway.metrics_addr().expect("metrics are served");
    metric_reaches(metrics, "gateway_producer_replacements_total", 1.0).await;
    for i in 2..=4 {
        client.publish_event(request(&topic, i)).await.unwrap();
    }
    let (_, mut stream) = subscribe(&mut client, from_earliest(&topic)).await;
    let expected: BTreeSet<i64> = [0, 2, 3, 4].into();
    let seen = numbers_until(&mut stream, &expected).await;
    summary.lost = expected.difference(&seen).count();
    summary.print("producer fenced");
    assert_eq!(summary.lost, 0, "{summary:?}");
    gateway.shutdown().await.unwrap();
}

/// Kafka goes down: health follows, publishes answer UNAVAILABLE within
/// their deadline, an open subscription waits and then resumes without loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_and_back() {
    let topic = topic("down");
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(&topic, 1, 1).unwrap();
    let gateway = gateway(config(Some(cluster.bootstrap_servers()))).await;
    let addr = gateway.addr();
    let mut client = client(addr).await;
    let mut summary = Summary::default();
    let (_, mut stream) = subscribe(&mut client, from_earliest(&topic)).await;
    client.publish_event(request(&topic, 0)).await.unwrap();
    assert_eq!(n(&next_delivery(&mut stream).await), 0);

    cluster.broker_down(1).unwrap();
    let mut down = tonic::Request::new(request(&topic, -1));
    down.set_timeout(Duration::from_secs(10));
    // A publish that starts before health noticed is left to Kafka's answer
    // and its deadline; once health noticed, publishes are refused at once.
    let status = client.publish_event(down).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Unavailable),
        "a publish while Kafka is down: {status:?}"
    );
    eventually("health reports NOT_SERVING", || async {
        health(addr, "").await.ok() == Some(tonic_health::ServingStatus::NotServing as i32)
    })
    .await;
    let status = client.publish_event(request(&topic, -1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    cluster.broker_up(1).unwrap();
    wait_serving(addr).await;
    for i in 1..=5 {
        client.publish_event(request(&topic, i)).await.unwrap();
    }
    // The subscription resumes; the failed publishes may or may not have
    // been stored (the producer kept trying), the others all arrive.
    let expected: BTreeSet<i64> = (1..=5).collect();
    let seen = numbers_until(&mut stream, &expected).await;
    summary.lost = expected.difference(&seen).count();
    summary.print("Kafka down and back");
    assert_eq!(
        summary,
        Summary::default(),
        "seen after the outage: {seen:?}"
    );
    gateway.shutdown().await.unwrap();
}

/// Fetch requests fail for a while: the subscription retries and misses
/// nothing, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_errors() {
    let topic = topic("fetch-errors");
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(&topic, 1, 1).unwrap();
    let gateway = gateway(config(Some(cluster.bootstrap_servers()))).await;
    let mut client = client(gateway.addr()).await;
    let mut summary = Summary::default();
    for i in 0..20 {
        client.publish_event(request(&topic, i)).await.unwrap();
    }
    cluster.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 5],
    );
    let (_, mut stream) = subscribe(&mut client, from_earliest(&topic)).await;
    let expected: BTreeSet<i64> = (0..20).collect();
    let mut order = Vec::new();
    while order.len() < 20 {
        let Some(delivery) = next_delivery_within(&mut stream, PATIENCE).await else {
            break;
        };
        order.push(n(&delivery));
    }
    let seen: BTreeSet<i64> = order.iter().copied().collect();
    summary.lost = expected.difference(&seen).count();
    summary.redelivered = order.len() - seen.len();
    summary.print("fetch errors");
    assert_eq!(summary, Summary::default(), "deliveries: {order:?}");
    assert_eq!(order, (0..20).collect::<Vec<_>>(), "in order");
    gateway.shutdown().await.unwrap();
}
