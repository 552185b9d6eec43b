//! Three gateway processes on one broker serve one consumer group whose
//! members ack over StreamingSubscribe, spread across the three. One
//! replica is killed with SIGKILL mid-run, then all three are restarted one
//! by one with SIGTERM while events keep coming. A member counts an event
//! handled when the gateway answers its ack ACCEPTED (the ack counted);
//! one whose ack is answered STALE was superseded and comes again.
//!
//! No event may be lost. After the kill, an event may be handled twice
//! only when the killed replica had acked it within its last commit
//! interval; across the rolling restart, none. Kafka hands a partition on
//! only once its owner released it, and a gateway releases a partition
//! only after its deliveries out were settled (or the revoke grace passed),
//! with what was settled committed. A member holds a partition from the
//! Rebalance notice that assigns it to the one that revokes it (or the end
//! of its stream): a failure tells that story.
//!
//! The test runs under both group protocols: classic (cooperative-sticky)
//! and consumer (KIP-848).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::{AckMode, SettleOutcome, StartFrom, SubscribeRequest};
use gateway::GroupProtocol;
use testkit::*;
use tokio::sync::watch;
use tokio::time::Instant;

const REPLICAS: usize = 3;
const MEMBERS: usize = 6;
/// The topic's partitions: one for each member once the group settled.
const PARTITIONS: usize = 6;
const WINDOW: u32 = 20;
/// The replicas' --commit-interval.
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// What a commit's round trip and a notice's way to the client may add.
const SLACK: Duration = Duration::from_secs(1);
/// How long the group holds still (no partition changes owner) before a
/// replica is killed.
const STABLE: Duration = Duration::from_secs(2);
/// How long the group may take to hand a killed replica's partitions on.
const REGROUP: Duration = Duration::from_secs(60);

/// The flags every replica runs with under `protocol`.
fn replica_flags(protocol: GroupProtocol) -> Vec<&'static str> {
    let mut args = vec![
        "--commit-interval",
        "500ms",
        "--drain-timeout",
        "5s",
        "--revoke-grace",
        "5s",
        "--group-protocol",
        protocol.as_str(),
    ];
    if protocol == GroupProtocol::Classic {
        args.extend([
            // A killed replica's partitions move once its consumers'
            // sessions time out: 6 s here, 30 s by default. (The
            // consumer protocol's session is the broker's: 10 s on the
            // suite's broker, 45 s by default.)
            "--kafka-property",
            "session.timeout.ms=6000",
            "--kafka-property",
            "heartbeat.interval.ms=1000",
            // How long a classic rebalance waits for members to rejoin.
            "--kafka-property",
            "max.poll.interval.ms=10000",
        ]);
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_serve_one_classic_group_through_a_kill_and_a_rolling_restart() {
    let broker = Broker::start().await;
    three_replicas_through_faults(GroupProtocol::Classic, &broker.brokers(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_serve_one_consumer_group_through_a_kill_and_a_rolling_restart() {
    let broker = Broker::start().await;
    three_replicas_through_faults(GroupProtocol::Consumer, &broker.brokers(), None).await;
}

/// On a three-node cluster, the same, and then the brokers restarted one
/// by one (each back in sync before the next).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_serve_one_classic_group_on_a_cluster_through_a_kill_and_rolling_restarts() {
    let mut cluster = kafka::Cluster::start(3, kafka::Settings::default())
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let brokers = cluster.bootstrap();
    three_replicas_through_faults(GroupProtocol::Classic, &brokers, Some(&mut cluster)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_serve_one_consumer_group_on_a_cluster_through_a_kill_and_rolling_restarts()
{
    let mut cluster = kafka::Cluster::start(3, kafka::Settings::default())
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let brokers = cluster.bootstrap();
    three_replicas_through_faults(GroupProtocol::Consumer, &brokers, Some(&mut cluster)).await;
}

/// Three gateway replicas on the Kafka at `brokers` serve one group of
/// `protocol`: one replica killed, then all restarted one by one, then
/// (given a `cluster`) its brokers restarted one by one.
async fn three_replicas_through_faults(
    protocol: GroupProtocol,
    brokers: &str,
    cluster: Option<&mut kafka::Cluster>,
) {
    let topic = topic("replicas");
    create_topics(brokers, &[&topic], PARTITIONS as i32)
        .await
        .unwrap();
    let group = format!("group-{topic}");
    const FIRST: i64 = 600;
    const SECOND: i64 = 600;
    const THIRD: i64 = 600;
    // The first events come while the group forms and until after the
    // kill.
    let first = tokio::spawn({
        let (brokers, topic) = (brokers.to_owned(), topic.clone());
        async move {
            produce_numbered(&brokers, &topic, None, 0..FIRST, Duration::from_millis(10)).await
        }
    });

    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_gateway"));
    let flags = replica_flags(protocol);
    let mut replicas: Vec<Replica> = (0..REPLICAS).map(|_| Replica::new(binary)).collect();
    for replica in &mut replicas {
        replica.start(brokers, &flags).await;
    }
    let addrs: Vec<SocketAddr> = replicas.iter().map(Replica::addr).collect();
    let request = SubscribeRequest {
        topics: vec![topic.clone()],
        group: group.clone(),
        start_from: StartFrom::Earliest as i32,
        ack_mode: AckMode::Manual as i32,
        max_unacked: WINDOW,
        ..SubscribeRequest::default()
    };
    let tally = Arc::new(GroupTally::new());
    let (stop, stopped) = watch::channel(false);
    let members: Vec<_> = (0..MEMBERS)
        .map(|i| {
            tokio::spawn(member(
                addrs.clone(),
                i % REPLICAS,
                request.clone(),
                tally.clone(),
                stopped.clone(),
            ))
        })
        .collect();

    // SIGKILL replica 0 mid-run, once the group is stable: while a group
    // rebalances its members' commits are refused (the generation they
    // commit for is on its way out), so what a member acks then waits for
    // the rebalance's end to be committed.
    eventually("the group holds still with events flowing", || async {
        tally.settled(STABLE, PARTITIONS) && tally.distinct(0..FIRST) >= FIRST as usize / 4
    })
    .await;
    let killed_at = Instant::now();
    let mut child = replicas[0].child.take().unwrap();
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    first.await.unwrap();
    let twice = tally.all_handled(0..FIRST, "kill", REGROUP).await;
    // Only what the killed replica settled and had not committed yet (its
    // last commit interval) comes again.
    let unexplained: Vec<_> = twice
        .iter()
        .filter(|(_, acceptances)| {
            let first = acceptances[0];
            // (An answer the replica sent just before it died can be read
            // a moment after the kill.)
            let uncommitted = first.replica == 0
                && first.when <= killed_at + SLACK
                && killed_at.saturating_duration_since(first.when) <= COMMIT_INTERVAL + SLACK;
            !uncommitted
        })
        .collect();
    assert!(
        unexplained.is_empty(),
        "handled twice, the kill at {} ms: {:#?}\nreplicas' warnings: {:#?}",
        tally.ms(killed_at),
        tally.story(unexplained.iter().map(|(n, _)| *n)),
        warnings(&mut replicas)
    );

    // Rolling restart with SIGTERM while the second events come.
    replicas[0].start(brokers, &flags).await;
    let producer = tokio::spawn({
        let brokers = brokers.to_owned();
        let topic = topic.clone();
        let pause = Duration::from_millis(15);
        async move { produce_numbered(&brokers, &topic, None, FIRST..FIRST + SECOND, pause).await }
    });
    let mut restarts = Vec::new();
    for (i, replica) in replicas.iter_mut().enumerate() {
        // As an operator restarts one replica after another: once the last
        // one is back and its group settled (every member holds a partition
        // again: a member that rejoined and holds none yet is a rebalance
        // under way, which a quiet spell alone does not show). Rebalances that overlap move
        // partitions while commits of a generation on its way out are
        // refused, and what was acked then comes again.
        let before = tally.distinct(FIRST..FIRST + SECOND);
        eventually("the group holds still with events flowing", || async {
            tally.settled(STABLE, PARTITIONS) && tally.distinct(FIRST..FIRST + SECOND) > before
        })
        .await;
        restarts.push(tally.ms(Instant::now()));
        let status = sigterm_and_wait(replica.child.take().unwrap()).await;
        assert!(status.success(), "replica {i} exited with {status}");
        replica.start(brokers, &flags).await;
    }
    producer.await.unwrap();
    let twice = tally
        .all_handled(FIRST..FIRST + SECOND, "rolling restart", REGROUP)
        .await;
    // A replica stopped with SIGTERM commits what was acked before its
    // partitions move, and a member losing a partition to a rebalance
    // commits what was acked of it before it releases it: nothing comes
    // again.
    assert!(
        twice.is_empty(),
        "handled twice across a rolling restart (restarts at {restarts:?} ms): {:#?}\n\
         replicas' warnings: {:#?}",
        tally.story(twice.iter().map(|(n, _)| *n)),
        warnings(&mut replicas)
    );

    if let Some(cluster) = cluster {
        // The brokers restarted one by one (SIGTERM) while the third
        // events come: leaders and the group's coordinator move, and
        // nothing is lost or handled twice.
        let range = FIRST + SECOND..FIRST + SECOND + THIRD;
        let producer = tokio::spawn({
            let (brokers, topic, range) = (brokers.to_owned(), topic.clone(), range.clone());
            async move {
                produce_numbered(&brokers, &topic, None, range, Duration::from_millis(15)).await
            }
        });
        let began = tally.ms(Instant::now());
        cluster
            .rolling_restart(false)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let ended = tally.ms(Instant::now());
        producer.await.unwrap();
        let twice = tally.all_handled(range, "brokers restarted", REGROUP).await;
        assert!(
            twice.is_empty(),
            "handled twice while the brokers restarted ({began}..{ended} ms): {:#?}\n\
             replicas' warnings: {:#?}",
            tally.story(twice.iter().map(|(n, _)| *n)),
            warnings(&mut replicas)
        );
    }

    let _ = writeln!(
        std::io::stderr(),
        "replicas' warnings: {:#?}",
        warnings(&mut replicas)
    );
    stop.send_replace(true);
    for member in members {
        member.await.unwrap();
    }
    for replica in &mut replicas {
        if let Some(child) = replica.child.take() {
            sigterm_and_wait(child).await;
        }
    }
}

/// A replica shutting down keeps answering its group while it waits for
/// the acks of what is out: when a new member takes one of its two
/// partitions, it hands that one on once the revoke grace passed (its
/// deliveries out were never acked), with what was acked committed, long
/// before its drain ends. (Were it deaf to the group until it closed, the
/// new member would wait for the whole drain.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_classic_replica_hands_a_partition_on_with_its_acks_committed() {
    a_draining_replica_hands_a_partition_on(GroupProtocol::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_consumer_protocol_replica_hands_a_partition_on_with_its_acks_committed() {
    a_draining_replica_hands_a_partition_on(GroupProtocol::Consumer).await;
}

async fn a_draining_replica_hands_a_partition_on(protocol: GroupProtocol) {
    const DRAIN: Duration = Duration::from_secs(60);
    let broker = Broker::start().await;
    let topic = topic("draining");
    broker.create_topic(&topic, 2).await;
    for partition in 0..2 {
        produce_numbered(
            &broker.brokers(),
            &topic,
            Some(partition),
            partition as i64 * 10..partition as i64 * 10 + 10,
            Duration::ZERO,
        )
        .await;
    }
    let start = |port: u16| {
        let drain = format!("{}s", DRAIN.as_secs());
        let grace = format!("{}s", DRAIN.as_secs() + 10);
        let mut args = vec![
            // Only a revoke or the close commits here.
            "--commit-interval",
            "10m",
            "--drain-timeout",
            &drain,
            "--shutdown-grace",
            &grace,
            "--revoke-grace",
            "2s",
            "--group-protocol",
            protocol.as_str(),
        ];
        if protocol == GroupProtocol::Classic {
            args.extend(["--kafka-property", "heartbeat.interval.ms=500"]);
        }
        gateway_process(
            env!("CARGO_BIN_EXE_gateway").as_ref(),
            port,
            &broker.brokers(),
            &[("RUST_LOG", "info")],
            &args,
        )
    };
    let request = SubscribeRequest {
        topics: vec![topic.clone()],
        group: format!("group-{topic}"),
        start_from: StartFrom::Earliest as i32,
        ack_mode: AckMode::Manual as i32,
        max_unacked: 20,
        ..SubscribeRequest::default()
    };

    let first_port = free_port();
    let (first, mut first_log) = start(first_port);
    let first_addr: SocketAddr = format!("127.0.0.1:{first_port}").parse().unwrap();
    wait_serving(first_addr).await;
    let mut client = EventGatewayClient::connect(format!("http://{first_addr}"))
        .await
        .unwrap();
    let mut holder = Streamer::open(&mut client, request.clone()).await;
    let mut out = Vec::new();
    for _ in 0..20 {
        out.push(holder.next_delivery().await);
    }
    // The first five of each partition are acked, the rest stay out.
    let acked: Vec<&_> = out.iter().filter(|d| d.offset < 5).collect();
    let answer = holder.ack(&acked).await;
    assert!(
        outcomes(&answer)
            .iter()
            .all(|o| *o == SettleOutcome::Accepted),
        "{answer:?}"
    );

    // The first replica begins to shut down with ten deliveries out.
    sigterm(&first);
    first_log.wait_for("draining").await;
    let second_port = free_port();
    let (second, _second_log) = start(second_port);
    let second_addr: SocketAddr = format!("127.0.0.1:{second_port}").parse().unwrap();
    wait_serving(second_addr).await;
    let mut client = EventGatewayClient::connect(format!("http://{second_addr}"))
        .await
        .unwrap();
    let mut taker = Streamer::open(&mut client, request).await;
    let Some(next) = taker.next_delivery_within(DRAIN / 2).await else {
        panic!(
            "no partition was handed on before the drain ended; the first replica's log: {:#?}",
            first_log.so_far()
        );
    };
    assert_eq!(next.offset, 5, "the acked events were committed: {next:?}");
    drop((holder, taker, client));
    for child in [first, second] {
        sigterm_and_wait(child).await;
    }
}
