//! Kafka short of replicas: too few in sync for a write, the quorum lost,
//! and a network cut healed.

use super::*;

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
