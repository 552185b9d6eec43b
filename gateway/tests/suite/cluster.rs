//! Faults of Kafka under load: on a three-node cluster (every topic on
//! three replicas, a write stored once two have it), a partition leader
//! killed, too few replicas in sync, the quorum lost; and the network
//! between the gateway and a broker in a namespace of the test's own, cut
//! and healed. Each test counts what was published, answered, stored and
//! lost, prints the counts and asserts them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventgateway::v1::publish_events_response::Result as StreamOutcome;
use eventgateway::v1::{PublishEventRequest, PublishEventsRequest};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;
use serde_json::json;
use testkit::*;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::Code;

/// The deadline of every publish under load.
const DEADLINE: Duration = Duration::from_secs(10);
/// What a deadline may be overrun by: the answer's way back.
const LATE: Duration = Duration::from_secs(1);

/// What became of one publish: where Kafka stored it, or the status it got,
/// and how long the call took.
#[derive(Debug, Clone)]
struct Answer {
    /// Where it was stored, or the code and message it was refused with.
    stored: Result<(i32, i64), (Code, String)>,
    took: Duration,
}

/// Every publish by event number, from every publisher, and when each
/// that was stored was answered.
#[derive(Default)]
struct Answers(Mutex<BTreeMap<i64, Answer>>, Mutex<Vec<Instant>>);

impl Answers {
    fn record(&self, n: i64, answer: Answer) {
        if answer.stored.is_ok() {
            self.1.lock().unwrap().push(Instant::now());
        }
        self.0.lock().unwrap().insert(n, answer);
    }

    /// When the first publish after `after` was answered OK.
    fn first_ok_after(&self, after: Instant) -> Option<Instant> {
        self.1
            .lock()
            .unwrap()
            .iter()
            .copied()
            .find(|at| *at > after)
    }

    fn all(&self) -> BTreeMap<i64, Answer> {
        self.0.lock().unwrap().clone()
    }
}

/// What a fault test counted.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    /// Publishes answered OK.
    ok: usize,
    /// Publishes answered UNAVAILABLE.
    unavailable: usize,
    /// Publishes answered DEADLINE_EXCEEDED.
    deadline: usize,
    /// Publishes answered anything else.
    other: usize,
    /// What those answers said.
    other_answers: Vec<String>,
    /// Publishes answered after their deadline (and the slack).
    late: usize,
    /// Publishes answered OK that the topic does not hold.
    lost: usize,
}

impl Counts {
    /// Counts `answers` against the event numbers the topic holds.
    fn of(answers: &BTreeMap<i64, Answer>, stored: &BTreeSet<i64>) -> Self {
        let mut counts = Counts::default();
        for (n, answer) in answers {
            match &answer.stored {
                Ok(_) => {
                    counts.ok += 1;
                    if !stored.contains(n) {
                        counts.lost += 1;
                    }
                }
                Err((Code::Unavailable, _)) => counts.unavailable += 1,
                Err((Code::DeadlineExceeded, _)) => counts.deadline += 1,
                Err((code, message)) => {
                    counts.other += 1;
                    counts.other_answers.push(format!("{code:?}: {message}"));
                }
            }
            if answer.took > DEADLINE + LATE {
                counts.late += 1;
            }
        }
        counts
    }

    /// Prints the counts past the test harness's capture.
    fn print(&self, fault: &str) {
        let _ = writeln!(
            std::io::stderr(),
            "cluster fault ({fault}): {} publishes OK, {} UNAVAILABLE, {} DEADLINE_EXCEEDED, {} other, {} past their deadline, {} OK but lost",
            self.ok, self.unavailable, self.deadline, self.other, self.late, self.lost
        );
    }
}

/// A three-node cluster, a topic on it and a gateway in front of it.
async fn cluster_with_topic(prefix: &str, partitions: i32) -> (kafka::Cluster, String) {
    let cluster = kafka::Cluster::start(3, kafka::Settings::default())
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let topic = topic(prefix);
    create_topics(&cluster.internal(), &[&topic], partitions)
        .await
        .unwrap();
    (cluster, topic)
}

/// The gateway's test configuration in front of `cluster`, a stream's
/// publish waiting no longer than a unary one's [`DEADLINE`].
fn cluster_config(cluster: &kafka::Cluster) -> gateway::Config {
    let mut config = config(Some(cluster.bootstrap()));
    config.limits.request_timeout = DEADLINE;
    config
}

/// Publishes numbered events to `topic` through the gateway at `addr`
/// until `stop`: `callers` tasks with unary calls, and one PublishEvents
/// stream, each call with [`DEADLINE`]; records every answer.
async fn publish_until(
    addr: std::net::SocketAddr,
    topic: String,
    callers: i64,
    answers: Arc<Answers>,
    stop: watch::Receiver<bool>,
) {
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let (topic, answers, stop) = (topic.clone(), answers.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = client(addr).await;
            let mut n = caller;
            while !*stop.borrow() {
                let mut request = tonic::Request::new(PublishEventRequest {
                    topic: topic.clone(),
                    key: format!("k{n}"),
                    event: Some(json_event(json!({"n": n}))),
                });
                request.set_timeout(DEADLINE);
                let began = Instant::now();
                let stored = client
                    .publish_event(request)
                    .await
                    .map(|r| {
                        let r = r.into_inner();
                        (r.partition, r.offset)
                    })
                    .map_err(|status| (status.code(), status.message().to_owned()));
                let refused = stored.is_err();
                answers.record(
                    n,
                    Answer {
                        stored,
                        took: began.elapsed(),
                    },
                );
                // Numbers of the stream (below) are negative.
                n += callers;
                if refused {
                    // As a client backs off before it tries again.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    tasks.push(tokio::spawn(stream_until(addr, topic, answers, stop)));
    for task in tasks {
        task.await.unwrap();
    }
}

/// Publishes events numbered -1, -2, ... over one PublishEvents stream,
/// one request in flight at a time, until `stop` (each request waits at
/// most the gateway's `--request-timeout`).
async fn stream_until(
    addr: std::net::SocketAddr,
    topic: String,
    answers: Arc<Answers>,
    stop: watch::Receiver<bool>,
) {
    let mut client = client(addr).await;
    let (requests, outbound) = tokio::sync::mpsc::channel(1);
    let mut n = -1;
    let mut began = Instant::now();
    let opened = client.publish_events(tokio_stream::wrappers::ReceiverStream::new(outbound));
    requests
        .send(stream_request(&topic, n))
        .await
        .expect("the stream takes a request");
    let mut stream = match opened.await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            let took = began.elapsed();
            answers.record(
                n,
                Answer {
                    stored: Err((status.code(), status.message().to_owned())),
                    took,
                },
            );
            return;
        }
    };
    loop {
        let (stored, ended) = match stream.message().await {
            Ok(Some(answer)) => match answer.result {
                Some(StreamOutcome::Stored(r)) => (Ok((r.partition, r.offset)), false),
                Some(StreamOutcome::Error(error)) => {
                    (Err((Code::from_i32(error.code), error.message)), false)
                }
                None => (
                    Err((Code::Unknown, "an answer with no result".into())),
                    false,
                ),
            },
            Ok(None) => (Err((Code::Unknown, "the stream ended".into())), true),
            Err(status) => (Err((status.code(), status.message().to_owned())), true),
        };
        let (took, refused) = (began.elapsed(), stored.is_err());
        answers.record(n, Answer { stored, took });
        if ended || *stop.borrow() {
            return;
        }
        if refused {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        n -= 1;
        began = Instant::now();
        if requests.send(stream_request(&topic, n)).await.is_err() {
            return;
        }
    }
}

fn stream_request(topic: &str, n: i64) -> PublishEventsRequest {
    PublishEventsRequest {
        request_id: n.to_string(),
        publish: Some(PublishEventRequest {
            topic: topic.to_owned(),
            key: format!("k{n}"),
            event: Some(json_event(json!({"n": n}))),
        }),
        batch: Vec::new(),
    }
}

/// The event numbers `topic` holds, read to its end by a plain consumer
/// from `bootstrap` (blocking).
fn stored_numbers(bootstrap: &str, topic: &str) -> BTreeSet<i64> {
    read_topic(bootstrap, topic)
        .iter()
        .map(|message| {
            let body: serde_json::Value =
                serde_json::from_slice(message.payload().unwrap_or_default()).unwrap();
            body["n"].as_i64().unwrap()
        })
        .collect()
}

/// The node that leads `topic`'s `partition` (blocking).
fn leader_of(bootstrap: &str, topic: &str, partition: i32) -> usize {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let metadata = client
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let leader = metadata.topics()[0].partitions()[partition as usize].leader();
    usize::try_from(leader).expect("a leader")
}

/// The leader of a partition is killed (kill -9) while unary and streaming
/// publishers are busy: every publish answered OK is in the topic, and the
/// others got UNAVAILABLE or DEADLINE_EXCEEDED within their deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_leader_killed_under_publish_load_loses_nothing_answered_ok() {
    let (mut cluster, topic) = cluster_with_topic("leader-kill", 3).await;
    let gateway = gateway(cluster_config(&cluster)).await;
    let answers = Arc::new(Answers::default());
    let (stop, stopped) = watch::channel(false);
    let load = tokio::spawn(publish_until(
        gateway.addr(),
        topic.clone(),
        8,
        answers.clone(),
        stopped,
    ));
    eventually("publishes flow", || async { answers.all().len() > 200 }).await;
    let leader = {
        let (bootstrap, topic) = (cluster.internal(), topic.clone());
        tokio::task::spawn_blocking(move || leader_of(&bootstrap, &topic, 0))
            .await
            .unwrap()
    };
    cluster.node(leader).kill();
    let killed_at = answers.all().len();
    // The election and the clients' retries, then a while of normal work.
    eventually("publishes flow again after the kill", || async {
        let answers = answers.all();
        answers.len() > killed_at + 500 && answers.values().rev().take(50).all(|a| a.stored.is_ok())
    })
    .await;
    stop.send_replace(true);
    load.await.unwrap();

    let answers = answers.all();
    let stored = {
        let (bootstrap, topic) = (cluster.internal(), topic.clone());
        tokio::task::spawn_blocking(move || stored_numbers(&bootstrap, &topic))
            .await
            .unwrap()
    };
    let counts = Counts::of(&answers, &stored);
    counts.print("a partition leader killed");
    assert_eq!(counts.lost, 0, "{counts:?}");
    assert_eq!(counts.late, 0, "{counts:?}");
    assert_eq!(counts.other, 0, "{counts:?}");
    assert!(counts.ok > killed_at, "{counts:?}");
    gateway.shutdown().await.unwrap();
}

/// One node down, and a topic that needs all three replicas in sync
/// (`min.insync.replicas=3`): its publishes are refused with a status that
/// names the cause, never OK, while another topic goes on; once the node is
/// back, its publishes are stored again, without a restart of the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_replicas_in_sync_refuse_a_publish_with_the_cause_and_others_go_on() {
    let (mut cluster, other) = cluster_with_topic("isr-other", 1).await;
    let strict = topic("isr-strict");
    create_topics_with(
        &cluster.internal(),
        &[&strict],
        1,
        &[("min.insync.replicas", "3")],
    )
    .await
    .unwrap();
    let gateway = gateway(cluster_config(&cluster)).await;
    let mut client = client(gateway.addr()).await;
    publish(&mut client, &strict, "k", json!({"n": 0})).await;
    cluster.node(3).stop().await;

    let mut counts = Counts::default();
    let attempt = |topic: &str, n: i64| {
        let mut request = tonic::Request::new(PublishEventRequest {
            topic: topic.to_owned(),
            key: format!("k{n}"),
            event: Some(json_event(json!({"n": n}))),
        });
        request.set_timeout(Duration::from_secs(5));
        request
    };
    for n in 1..=3 {
        let began = Instant::now();
        let status = client
            .publish_event(attempt(&strict, n))
            .await
            .expect_err("a write three replicas must take is refused with one node down");
        assert!(began.elapsed() <= Duration::from_secs(5) + LATE);
        assert!(
            matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded),
            "{status:?}"
        );
        assert!(
            status
                .message()
                .contains("fewer than its min.insync.replicas (3)"),
            "the status names the cause: {status:?}"
        );
        counts.deadline += usize::from(status.code() == Code::DeadlineExceeded);
        counts.unavailable += usize::from(status.code() == Code::Unavailable);
        // The other topic goes on meanwhile.
        publish(&mut client, &other, "k", json!({"n": n})).await;
        counts.ok += 1;
    }

    cluster.node(3).restart().await.unwrap();
    cluster.wait_replicated().await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    while client.publish_event(attempt(&strict, 4)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the strict topic takes writes again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    counts.ok += 1;
    counts.print("too few replicas in sync");
    gateway.shutdown().await.unwrap();
}

/// Two of the three nodes down: the controller quorum is lost and no write
/// can be stored. No publish is answered OK, each gets UNAVAILABLE or
/// DEADLINE_EXCEEDED within its deadline, and health stays SERVING while
/// a broker answers (what can be read still is); with the nodes back,
/// publishes are stored again without a restart of the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quorum_lost_refuses_every_publish_in_time_and_recovers_without_a_restart() {
    let (mut cluster, topic) = cluster_with_topic("quorum", 3).await;
    let gateway = gateway(cluster_config(&cluster)).await;
    let addr = gateway.addr();
    let mut client = client(addr).await;
    publish(&mut client, &topic, "k", json!({"n": 0})).await;
    cluster.node(2).kill();
    cluster.node(3).kill();

    let answers = Answers::default();
    for n in 1..=4 {
        let mut request = tonic::Request::new(PublishEventRequest {
            topic: topic.clone(),
            key: format!("k{n}"),
            event: Some(json_event(json!({"n": n}))),
        });
        request.set_timeout(Duration::from_secs(5));
        let began = Instant::now();
        let stored = client
            .publish_event(request)
            .await
            .map(|r| (r.get_ref().partition, r.get_ref().offset))
            .map_err(|status| (status.code(), status.message().to_owned()));
        answers.record(
            n,
            Answer {
                stored,
                took: began.elapsed(),
            },
        );
        assert_eq!(
            health(addr, "").await.ok(),
            Some(tonic_health::ServingStatus::Serving as i32),
            "health stays SERVING while a broker answers"
        );
    }
    let counts = Counts::of(&answers.all(), &BTreeSet::new());
    counts.print("the quorum lost");
    assert_eq!(
        (counts.ok, counts.other, counts.late),
        (0, 0, 0),
        "{counts:?}"
    );

    cluster.node(2).restart().await.unwrap();
    cluster.node(3).restart().await.unwrap();
    cluster.wait_replicated().await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut request = tonic::Request::new(PublishEventRequest {
            topic: topic.clone(),
            key: "k5".into(),
            event: Some(json_event(json!({"n": 5}))),
        });
        request.set_timeout(Duration::from_secs(5));
        if client.publish_event(request).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "publishes are stored again");
    }
    gateway.shutdown().await.unwrap();
}

/// The network between the gateway and its broker (in a namespace of the
/// test's own) cut for 15 s under publish load and a MANUAL stream that
/// acks what it gets: no publish answered OK is lost, no call outlives its
/// deadline, every stored event reaches the stream, and publishing is back
/// within 2 s of the link healing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_cut_and_its_healing_lose_nothing_and_publishing_comes_back_at_once() {
    const CUT: Duration = Duration::from_secs(15);
    let netns = Netns::create().unwrap_or_else(|error| panic!("{error}"));
    let node = kafka::Node::start(kafka::Settings {
        namespace: Some(netns.namespace()),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    let topic = topic("network-cut");
    create_topics(&node.internal(), &[&topic], 3).await.unwrap();
    let mut config = config(Some(node.bootstrap()));
    config.limits.request_timeout = DEADLINE;
    let gateway = gateway(config).await;

    // A MANUAL member that acks everything it gets.
    let mut subscriber = client(gateway.addr()).await;
    let mut stream = Streamer::open(
        &mut subscriber,
        eventgateway::v1::SubscribeRequest {
            topics: vec![topic.clone()],
            group: format!("group-{topic}"),
            start_from: eventgateway::v1::StartFrom::Earliest as i32,
            ack_mode: eventgateway::v1::AckMode::Manual as i32,
            ..Default::default()
        },
    )
    .await;
    let handled = Arc::new(Mutex::new(BTreeSet::new()));
    let acker = tokio::spawn({
        let handled = handled.clone();
        async move {
            loop {
                let Some(delivery) = stream.next_delivery_within(PATIENCE).await else {
                    continue;
                };
                let answer = stream.ack(&[&delivery]).await;
                if outcomes(&answer) == [eventgateway::v1::SettleOutcome::Accepted] {
                    handled.lock().unwrap().insert(n(&delivery));
                }
            }
        }
    });

    let answers = Arc::new(Answers::default());
    let (stop, stopped) = watch::channel(false);
    let load = tokio::spawn(publish_until(
        gateway.addr(),
        topic.clone(),
        4,
        answers.clone(),
        stopped,
    ));
    eventually("publishes flow", || async { answers.all().len() > 100 }).await;
    netns.cut();
    tokio::time::sleep(CUT).await;
    netns.heal();
    let healed = Instant::now();
    eventually("publishes are stored again", || async {
        answers.first_ok_after(healed).is_some()
    })
    .await;
    let back = answers.first_ok_after(healed).unwrap() - healed;
    eventually("a while of normal work", || async {
        answers
            .first_ok_after(healed + back + Duration::from_secs(2))
            .is_some()
    })
    .await;
    stop.send_replace(true);
    load.await.unwrap();

    let answers = answers.all();
    let stored = {
        let (bootstrap, topic) = (node.internal(), topic.clone());
        tokio::task::spawn_blocking(move || stored_numbers(&bootstrap, &topic))
            .await
            .unwrap()
    };
    eventually("the stream handled every stored event", || async {
        stored.is_subset(&handled.lock().unwrap())
    })
    .await;
    acker.abort();
    let counts = Counts::of(&answers, &stored);
    counts.print(&format!(
        "a 15 s network cut; publishing back {} ms after the link healed",
        back.as_millis()
    ));
    assert_eq!(counts.lost, 0, "{counts:?}");
    assert_eq!(counts.late, 0, "{counts:?}");
    assert_eq!(counts.other, 0, "{counts:?}");
    assert!(
        back <= Duration::from_secs(2),
        "publishing came back {back:?} after the link healed"
    );
    gateway.shutdown().await.unwrap();
}
