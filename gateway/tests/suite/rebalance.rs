//! Rebalances as Apache Kafka makes them, under both group protocols:
//! classic (with the cooperative-sticky assignor) and consumer (KIP-848).
//! A member keeps the partitions that stay with it; a partition being
//! revoked sends nothing new but waits (within `--revoke-grace`) for the
//! acks of its deliveries out, commits them, then moves on, so that nothing
//! acked comes again; and a group protocol the cluster, or the group,
//! refuses ends the subscription with FAILED_PRECONDITION saying what to do.

use std::time::Duration;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::{AckMode, SettleOutcome, StartFrom, SubscribeRequest};
use gateway::GroupProtocol;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use testkit::*;
use tonic::transport::Channel;
use tonic::Code;

/// Writes `{"n": i}` for each `i` of each range to its partition of
/// `topic`, with a plain producer.
async fn produce_to(brokers: &str, topic: &str, batches: &[(i32, std::ops::Range<i64>)]) {
    for (partition, numbers) in batches {
        produce_numbered(
            brokers,
            topic,
            Some(*partition),
            numbers.clone(),
            Duration::ZERO,
        )
        .await;
    }
}

/// A MANUAL group subscription of `topic` from the earliest event.
fn member_of(topic: &str) -> SubscribeRequest {
    SubscribeRequest {
        topics: vec![topic.to_owned()],
        group: format!("group-{topic}"),
        start_from: StartFrom::Earliest as i32,
        ack_mode: AckMode::Manual as i32,
        max_unacked: 100,
        ..SubscribeRequest::default()
    }
}

/// Member A of `topic`'s group takes `events` deliveries and acks none;
/// member B joins; once a partition of A is being revoked, A acks them all
/// and every ack counts. Returns A and B.
async fn acked_while_revoked(
    gateway: &gateway::RunningGateway,
    client: &mut EventGatewayClient<Channel>,
    topic: &str,
    events: usize,
) -> (Streamer, Streamer) {
    let mut a = Streamer::open(client, member_of(topic)).await;
    let mut out = Vec::new();
    for _ in 0..events {
        out.push(a.next_delivery().await);
    }
    let stats = gateway.subscription(&a.id).expect("A is open");
    let b = Streamer::open(client, member_of(topic)).await;
    eventually("a partition of A is being revoked", || async {
        stats.revoking.get() == 1
    })
    .await;
    // Its deliveries out may still be acked, and every ack counts.
    let answer = a.ack(&out.iter().collect::<Vec<_>>()).await;
    assert!(
        outcomes(&answer)
            .iter()
            .all(|o| *o == SettleOutcome::Accepted),
        "{answer:?}"
    );
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_member_hands_a_partition_on_once_its_acks_came() {
    a_member_hands_a_partition_on_once_its_acks_came(GroupProtocol::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_protocol_member_hands_a_partition_on_once_its_acks_came() {
    a_member_hands_a_partition_on_once_its_acks_came(GroupProtocol::Consumer).await;
}

/// A holds both partitions with every delivery out when B joins: one
/// partition is revoked from A (only one: the other stays), A acks all its
/// deliveries meanwhile and each ack counts, and B starts the moved
/// partition after them.
async fn a_member_hands_a_partition_on_once_its_acks_came(protocol: GroupProtocol) {
    let broker = Broker::start().await;
    let topic = topic("revoke");
    broker.create_topic(&topic, 2).await;
    produce_to(&broker.brokers(), &topic, &[(0, 0..10), (1, 10..20)]).await;
    let mut config = config(Some(broker.brokers()));
    config.kafka.group_protocol = protocol;
    // Longer than the test waits: only the acks end this revocation.
    config.subscriptions.revoke_grace = Duration::from_secs(100);
    let gateway = gateway(config).await;
    let mut client = client(gateway.addr()).await;

    let (mut a, mut b) = acked_while_revoked(&gateway, &mut client, &topic, 20).await;
    let stats = gateway.subscription(&a.id).expect("A is open");
    // Then the partition moves: one revoked, none taken back.
    let notice = loop {
        let notice = a.next_rebalance().await;
        if !notice.revoked.is_empty() {
            break notice;
        }
    };
    assert_eq!(
        (notice.revoked.len(), notice.assigned.len()),
        (1, 0),
        "{notice:?}"
    );
    let moved = notice.revoked[0].partition;
    // B starts it after what A acked: the first event B gets of it is new.
    produce_to(&broker.brokers(), &topic, &[(moved, 100..101)]).await;
    let first = b.next_delivery().await;
    assert_eq!((first.partition, n(&first)), (moved, 100), "{first:?}");
    // A kept the other partition all along.
    produce_to(&broker.brokers(), &topic, &[(1 - moved, 200..201)]).await;
    let next = a.next_delivery().await;
    assert_eq!((next.partition, n(&next)), (1 - moved, 200), "{next:?}");
    assert_eq!(stats.redelivered.get(), 0);
    drop((a, b));
    gateway.shutdown().await.unwrap();
}

/// A cluster whose brokers take only the classic protocol refuses the
/// consumer protocol: the subscription ends with FAILED_PRECONDITION,
/// saying what to change.
#[tokio::test]
async fn a_group_protocol_the_cluster_refuses_ends_the_subscription_with_what_to_do() {
    let broker = Broker::with(kafka::Settings {
        properties: vec![(
            "group.coordinator.rebalance.protocols".into(),
            "classic".into(),
        )],
        ..Default::default()
    })
    .await;
    let topic = topic("refused");
    broker.create_topic(&topic, 1).await;
    let mut config = config(Some(broker.brokers()));
    config.kafka.group_protocol = GroupProtocol::Consumer;
    let gateway = gateway(config).await;
    let mut client = client(gateway.addr()).await;
    let status = match Streamer::try_open(&mut client, member_of(&topic)).await {
        Ok(mut stream) => stream.status().await,
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("--group-protocol classic"),
        "{status:?}"
    );
    gateway.shutdown().await.unwrap();
}

/// A group whose members use an eager assignor (librdkafka's default,
/// range) takes no cooperative member: the gateway's subscription ends with
/// FAILED_PRECONDITION instead of waiting for partitions forever.
#[tokio::test]
async fn a_group_of_eager_members_refuses_the_gateway_with_what_to_do() {
    let (broker, topic, gateway, mut client) = fixture("eager", 1).await;
    let group = format!("group-{topic}");
    let (brokers, eager_group, eager_topic) = (broker.brokers(), group.clone(), topic.clone());
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let (joined, is_joined) = std::sync::mpsc::channel::<()>();
    let eager = std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &eager_group)
            .set("partition.assignment.strategy", "range")
            .create()
            .unwrap();
        consumer.subscribe(&[&eager_topic]).unwrap();
        let mut told = false;
        while stopped.try_recv().is_err() {
            let _ = consumer.poll(Duration::from_millis(100));
            if !told && consumer.assignment().is_ok_and(|a| a.count() == 1) {
                told = joined.send(()).is_ok();
            }
        }
    });
    tokio::task::spawn_blocking(move || is_joined.recv_timeout(PATIENCE))
        .await
        .unwrap()
        .expect("the eager member holds the partition");
    let status = match Streamer::try_open(&mut client, member_of(&topic)).await {
        Ok(mut stream) => stream.status().await,
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("eager"), "{status:?}");
    stop.send(()).unwrap();
    eager.join().unwrap();
    gateway.shutdown().await.unwrap();
}

/// An operator may keep an eager assignor (to join a group of eager
/// members): every partition is revoked at each rebalance, and a revoked
/// partition still waits for the acks of its deliveries out, which count
/// and are committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eager_member_also_waits_for_the_acks_of_what_is_out() {
    let (broker, topic, gateway, mut client) = fixture_with("eager-grace", 1, |config| {
        config.subscriptions.revoke_grace = Duration::from_secs(100);
        config
            .kafka
            .kafka_properties
            .push(gateway::KafkaProperty::new(
                "partition.assignment.strategy",
                "range",
            ));
    })
    .await;
    produce_to(&broker.brokers(), &topic, &[(0, 0..10)]).await;
    let (a, _b) = acked_while_revoked(&gateway, &mut client, &topic, 10).await;
    let (brokers, group) = (broker.brokers(), format!("group-{topic}"));
    eventually("the acks are committed before the partition moves", || {
        let (brokers, group, topic) = (brokers.clone(), group.clone(), topic.clone());
        async move {
            tokio::task::spawn_blocking(move || committed_offset(&brokers, &group, &topic, 0))
                .await
                .unwrap()
                == Some(10)
        }
    })
    .await;
    drop(a);
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_member_commits_what_it_settles_while_a_rebalance_waits() {
    commits_while_a_rebalance_waits(GroupProtocol::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_protocol_member_commits_what_it_settles_while_a_rebalance_waits() {
    commits_while_a_rebalance_waits(GroupProtocol::Consumer).await;
}

/// A rebalance can be under way for seconds (a member waits for the acks
/// of a partition it is losing); what a member settles meanwhile is
/// committed on schedule all the same, so that a crash then repeats no more
/// than the last commit interval. (librdkafka's own commit timer skips
/// every commit while its member is rebalancing.)
async fn commits_while_a_rebalance_waits(protocol: GroupProtocol) {
    let broker = Broker::start().await;
    let topic = topic("commit-rebalancing");
    broker.create_topic(&topic, 2).await;
    produce_to(&broker.brokers(), &topic, &[(0, 0..10), (1, 10..20)]).await;
    let mut config = config(Some(broker.brokers()));
    config.kafka.group_protocol = protocol;
    config.subscriptions.revoke_grace = Duration::from_secs(100);
    config.subscriptions.commit_interval = Duration::from_millis(200);
    let gateway = gateway(config).await;
    let mut client = client(gateway.addr()).await;
    let mut a = Streamer::open(&mut client, member_of(&topic)).await;
    let mut out = Vec::new();
    for _ in 0..20 {
        out.push(a.next_delivery().await);
    }
    let stats = gateway.subscription(&a.id).expect("A is open");
    let _b = Streamer::open(&mut client, member_of(&topic)).await;
    eventually("a partition of A is being revoked", || async {
        stats.revoking.get() == 1
    })
    .await;
    // All but the last delivery of each partition: the revocation waits on.
    let (last, acked): (Vec<_>, Vec<_>) = out.iter().partition(|d| d.offset == 9);
    let answer = a.ack(&acked).await;
    assert!(
        outcomes(&answer)
            .iter()
            .all(|o| *o == SettleOutcome::Accepted),
        "{answer:?}"
    );
    let (brokers, group) = (broker.brokers(), format!("group-{topic}"));
    eventually(
        "both partitions are committed up to the last delivery",
        || {
            let (brokers, group, topic) = (brokers.clone(), group.clone(), topic.clone());
            async move {
                tokio::task::spawn_blocking(move || {
                    (0..2).all(|p| committed_offset(&brokers, &group, &topic, p) == Some(9))
                })
                .await
                .unwrap()
            }
        },
    )
    .await;
    assert_eq!(stats.revoking.get(), 1, "the rebalance was still waiting");
    a.ack(&last).await;
    drop(a);
    gateway.shutdown().await.unwrap();
}
