//! Faults, with counts: Kafka going down and coming back, fetches failing
//! and the producer fenced (librdkafka's mock cluster), a real broker
//! killed and restarted,
//! and the gateway killed with SIGKILL under a publish load. Each fault is a
//! test of its own that counts what was published, acknowledged, redelivered
//! and lost, prints the counts (they show in CI logs) and asserts them.

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

/// The broker restarts (killed, so nothing is handed over cleanly) under a
/// MANUAL subscription:
/// stored events survive, the stream resumes, nothing acknowledged comes back
/// and nothing unacknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_under_a_manual_subscription() {
    let mut broker = Broker::own().await;
    let topic = topic("restart");
    broker.create_topic(&topic, 1).await;
    let gateway = gateway(config(Some(broker.brokers()))).await;
    let addr = gateway.addr();
    let mut client = client(addr).await;
    let mut summary = Summary::default();
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
    let mut received = BTreeSet::new();
    let mut acked = BTreeSet::new();
    for _ in 0..10 {
        let delivery = next_delivery(&mut stream).await;
        received.insert(n(&delivery));
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
    while acked.len() < 15 {
        let delivery = next_delivery(&mut stream).await;
        ack(&mut client, &id, &[&delivery]).await;
        if !received.insert(n(&delivery)) {
            summary.redelivered += 1;
        }
        acked.insert(n(&delivery));
    }
    drop(stream);

    // Nothing acknowledged comes back to the group's next member.
    client.publish_event(request(&topic, 15)).await.unwrap();
    let (_, mut next) = subscribe(&mut client, manual).await;
    assert_eq!(
        n(&next_delivery(&mut next).await),
        15,
        "an acknowledged event came back"
    );
    // Every stored event survived the restart: a plain consumer reads the
    // topic to its end.
    let (brokers, name) = (broker.brokers(), topic.clone());
    let survived: BTreeSet<i64> = tokio::task::spawn_blocking(move || read_topic(&brokers, &name))
        .await
        .unwrap()
        .iter()
        .filter_map(|record| serde_json::from_slice::<serde_json::Value>(record.payload()?).ok())
        .filter_map(|body| body["n"].as_i64())
        .collect();
    summary.lost = (0..16).filter(|i| !survived.contains(i)).count();
    summary.print("broker restart");
    // 5..10 were received and not acknowledged before the restart: each
    // came again.
    assert!(summary.redelivered >= 5, "{summary:?}");
    assert_eq!(summary.lost, 0, "survived: {survived:?}");
    gateway.shutdown().await.unwrap();
}

/// The gateway is killed with SIGKILL while publishers are busy: every
/// publish that returned OK is in the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_under_load() {
    let broker = Broker::start().await;
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
                    Ok(_) => stored.lock().unwrap().push(id),
                    Err(_) => {
                        let mut failed = failed.lock().unwrap();
                        *failed += 1;
                        // The gateway is gone: stop after the first failures.
                        if *failed > 20 {
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
    let (brokers, name) = (broker.brokers(), topic.clone());
    let in_topic: BTreeSet<String> =
        tokio::task::spawn_blocking(move || read_topic(&brokers, &name))
            .await
            .unwrap()
            .iter()
            .filter_map(|record| header(record, "ce_id"))
            .collect();
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !in_topic.contains(*id))
        .collect();
    // What the gateway answered: OK (stored, it says) and errors.
    let (published, failed) = (acknowledged.len(), *failed.lock().unwrap());
    let summary = Summary {
        lost: missing.len(),
        ..Summary::default()
    };
    summary.print("gateway SIGKILL");
    assert!(published >= 300, "{published} answered OK");
    assert!(
        failed > 0,
        "the publishers finished before the kill: it tested nothing"
    );
    assert_eq!(
        summary.lost, 0,
        "OK'd events missing from the topic: {missing:?}"
    );
    assert!(in_topic.len() >= published, "{} records", in_topic.len());
}

/// The value of header `name` of a record, as text.
fn header(record: &OwnedMessage, name: &str) -> Option<String> {
    let headers = record.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
}

/// Kafka is slow to store a batch: each of its events is answered
/// DEADLINE_EXCEEDED when the request timeout passes, in the batch's
/// order, and the stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_kafka_is_slow_to_store_is_answered_event_by_event_at_its_deadline() {
    let topic = topic("slow-batch");
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(&topic, 1, 1).unwrap();
    let mut config = config(Some(cluster.bootstrap_servers()));
    config.limits.request_timeout = Duration::from_secs(1);
    let gateway = gateway(config).await;
    let mut client = client(gateway.addr()).await;
    let (requests, outbound) = tokio::sync::mpsc::channel(4);
    let mut answers = client
        .publish_events(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await
        .expect("the stream opens")
        .into_inner();
    let batch = |id: &str, numbers: std::ops::Range<i64>| {
        let requests = requests.clone();
        let message = PublishEventsRequest {
            request_id: id.into(),
            publish: None,
            batch: numbers.map(|n| request(&topic, n)).collect(),
        };
        async move { requests.send(message).await.unwrap() }
    };
    let codes = |answer: &PublishEventsResponse| -> Vec<Code> {
        answer
            .batch
            .iter()
            .map(|result| match &result.result {
                Some(BatchOutcome::Stored(_)) => Code::Ok,
                Some(BatchOutcome::Error(error)) => Code::from(error.code),
                None => panic!("an empty result: {answer:?}"),
            })
            .collect()
    };

    batch("stored", 0..3).await;
    let answer = answers.message().await.unwrap().expect("an answer");
    assert_eq!(codes(&answer), [Code::Ok; 3], "{answer:?}");

    cluster
        .broker_round_trip_time(1, Duration::from_secs(5))
        .unwrap();
    batch("slow", 3..6).await;
    let answer = answers.message().await.unwrap().expect("an answer");
    assert_eq!(answer.request_id, "slow");
    assert_eq!(codes(&answer), [Code::DeadlineExceeded; 3], "{answer:?}");

    cluster.broker_round_trip_time(1, Duration::ZERO).unwrap();
    batch("after", 6..9).await;
    let answer = answers.message().await.unwrap().expect("an answer");
    assert_eq!(answer.request_id, "after");
    assert_eq!(codes(&answer), [Code::Ok; 3], "{answer:?}");
    drop(requests);
    gateway.shutdown().await.unwrap();
}
