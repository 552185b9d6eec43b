//! A broker restarted under a MANUAL subscription, the gateway killed
//! under load, and a batch Kafka is slow to store.

use super::*;

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
