//! Faults of Kafka under load: on a three-node cluster (every topic on
//! three replicas, a write stored once two have it), a partition leader
//! killed, too few replicas in sync, the quorum lost; and the network
//! between the gateway and a broker in a namespace of the test's own, cut
//! and healed. Each test counts what was published, answered, stored and
//! lost, prints the counts and asserts them.

mod quorum;

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
