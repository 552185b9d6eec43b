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

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::streaming_subscribe_request::Kind as Inbound;
use eventgateway::v1::streaming_subscribe_response::Kind;
use eventgateway::v1::{
    AckMode, SettleOutcome, SettleRequest, StartFrom, StreamingSubscribeRequest, SubscribeRequest,
};
use gateway::GroupProtocol;
use testkit::*;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

const REPLICAS: usize = 3;
const MEMBERS: usize = 6;
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

/// One ACCEPTED ack.
#[derive(Debug, Clone, Copy)]
struct Acceptance {
    /// The stream it came on (each stream is one member of the group).
    stream: usize,
    replica: usize,
    when: Instant,
}

/// One delivery of an event: the stream, the partition, when.
type Delivered = (usize, i32, Instant);

/// A partition held by a stream, from its assignment to its revocation.
struct Holding {
    stream: usize,
    partition: i32,
    from: Instant,
    to: Option<Instant>,
}

/// Who accepted which event when, and who held which partition when.
struct Tally {
    /// When the test began: a failure's story counts from here.
    zero: Instant,
    /// Per event number, each ACCEPTED ack.
    accepted: Mutex<HashMap<i64, Vec<Acceptance>>>,
    /// Deliveries received, redeliveries included.
    delivered: AtomicUsize,
    /// Per event number, each stream it was delivered on and when, to
    /// tell the story of an event handled twice.
    deliveries: Mutex<HashMap<i64, Vec<Delivered>>>,
    /// Streams opened so far.
    streams: AtomicUsize,
    holdings: Mutex<Vec<Holding>>,
}

impl Tally {
    fn new() -> Self {
        Self {
            zero: Instant::now(),
            accepted: Mutex::default(),
            delivered: AtomicUsize::default(),
            deliveries: Mutex::default(),
            streams: AtomicUsize::default(),
            holdings: Mutex::default(),
        }
    }

    /// Milliseconds since the test began.
    fn ms(&self, at: Instant) -> u128 {
        at.saturating_duration_since(self.zero).as_millis()
    }

    fn distinct(&self, range: std::ops::Range<i64>) -> usize {
        let accepted = self.accepted.lock().unwrap();
        range.filter(|n| accepted.contains_key(n)).count()
    }

    /// Events of `range` accepted more than once, with their acceptances.
    fn twice(&self, range: std::ops::Range<i64>) -> Vec<(i64, Vec<Acceptance>)> {
        let accepted = self.accepted.lock().unwrap();
        range
            .filter_map(|n| {
                accepted
                    .get(&n)
                    .filter(|a| a.len() > 1)
                    .map(|a| (n, a.clone()))
            })
            .collect()
    }

    /// What happened to `events`: where each was delivered and accepted,
    /// and who held its partition when (every partition's holders when it
    /// was never delivered).
    fn story(&self, events: impl IntoIterator<Item = i64>) -> Vec<String> {
        let accepted = self.accepted.lock().unwrap();
        let deliveries = self.deliveries.lock().unwrap();
        let holdings = self.holdings.lock().unwrap();
        events
            .into_iter()
            .map(|n| {
                let delivered = deliveries.get(&n).map_or(&[][..], Vec::as_slice);
                let accepted = accepted.get(&n).map_or(&[][..], Vec::as_slice);
                let partition = delivered.first().map(|(_, partition, _)| *partition);
                let delivered: Vec<String> = delivered
                    .iter()
                    .map(|(stream, _, at)| format!("stream {stream} at {} ms", self.ms(*at)))
                    .collect();
                let accepted: Vec<String> = accepted
                    .iter()
                    .map(|a| format!("stream {} at {} ms", a.stream, self.ms(a.when)))
                    .collect();
                let held: Vec<String> = holdings
                    .iter()
                    .filter(|h| partition.is_none_or(|p| h.partition == p))
                    .map(|h| {
                        let to =
                            h.to.map_or("open".to_owned(), |to| format!("{} ms", self.ms(to)));
                        format!(
                            "partition {} stream {} {}..{to}",
                            h.partition,
                            h.stream,
                            self.ms(h.from)
                        )
                    })
                    .collect();
                format!("event {n}: delivered {delivered:?}; accepted {accepted:?}; held {held:?}")
            })
            .collect()
    }

    /// Waits until every event of `range` was handled (the `phase` of the
    /// test), tells how many were handled twice, and returns those.
    async fn all_handled(
        &self,
        range: std::ops::Range<i64>,
        phase: &str,
    ) -> Vec<(i64, Vec<Acceptance>)> {
        self.wait_for(range.clone(), phase).await;
        let twice = self.twice(range.clone());
        let _ = writeln!(
            std::io::stderr(),
            "replicas, {phase}: {} events, {} deliveries in all, {} handled twice",
            range.count(),
            self.delivered.load(Ordering::Relaxed),
            twice.len()
        );
        twice
    }

    /// Waits until every event of `range` was handled; fails the test after
    /// [`REGROUP`].
    async fn wait_for(&self, range: std::ops::Range<i64>, what: &str) {
        let want = range.clone().count();
        let deadline = Instant::now() + REGROUP;
        while self.distinct(range.clone()) < want {
            if Instant::now() >= deadline {
                let missing: Vec<i64> = {
                    let accepted = self.accepted.lock().unwrap();
                    range.filter(|n| !accepted.contains_key(n)).collect()
                };
                panic!(
                    "{what}: {} of {want} after {REGROUP:?}; missing {missing:?}; \
                     partitions held: {:?}\n{:#?}",
                    want - missing.len(),
                    self.held(),
                    self.story(missing.iter().copied())
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the group has held still for `long`: no stream was given or
    /// lost a partition since, and some stream holds one.
    fn quiet_for(&self, long: Duration) -> bool {
        let holdings = self.holdings.lock().unwrap();
        let last = holdings
            .iter()
            .flat_map(|h| [Some(h.from), h.to])
            .flatten()
            .max();
        last.is_some_and(|last| last.elapsed() >= long) && holdings.iter().any(|h| h.to.is_none())
    }

    /// The partitions each open stream holds.
    fn held(&self) -> HashMap<usize, Vec<i32>> {
        let mut held: HashMap<usize, Vec<i32>> = HashMap::new();
        for h in self
            .holdings
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.to.is_none())
        {
            held.entry(h.stream).or_default().push(h.partition);
        }
        held
    }

    /// Ends what `stream` holds of `partitions` (all when `None`).
    fn release(&self, stream: usize, partitions: Option<&[i32]>) {
        let now = Instant::now();
        for h in self.holdings.lock().unwrap().iter_mut() {
            if h.stream == stream
                && h.to.is_none()
                && partitions.is_none_or(|p| p.contains(&h.partition))
            {
                h.to = Some(now);
            }
        }
    }
}

struct Replica {
    port: u16,
    child: Option<Child>,
    /// What each of its processes wrote, the current one last.
    logs: Vec<Lines>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The warnings and errors every replica logged so far, to show beside
/// a failure.
fn warnings(replicas: &mut [Replica]) -> Vec<String> {
    replicas
        .iter_mut()
        .enumerate()
        .flat_map(|(i, replica)| {
            replica
                .logs
                .iter_mut()
                .flat_map(|log| log.so_far().to_vec())
                .filter(|line| line.contains("WARN") || line.contains("ERROR"))
                // --kafka-property reaches the producer too, which names
                // the consumer's properties it ignores.
                .filter(|line| !line.contains("CONFWARN"))
                .map(move |line| format!("replica {i}: {line}"))
        })
        .collect()
}

impl Replica {
    fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    async fn start(&mut self, brokers: &str, protocol: GroupProtocol) {
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
        let (child, log) = gateway_process(
            env!("CARGO_BIN_EXE_gateway").as_ref(),
            self.port,
            brokers,
            &[("RUST_LOG", "warn")],
            &args,
        );
        self.child = Some(child);
        self.logs.push(log);
        wait_serving(self.addr()).await;
    }
}

/// One member of the group: subscribes on replica `first`, acks every
/// delivery on the stream, and when its stream ends subscribes again on
/// the next replica, until `stop`.
async fn member(
    addrs: Vec<SocketAddr>,
    first: usize,
    request: SubscribeRequest,
    tally: Arc<Tally>,
    mut stop: watch::Receiver<bool>,
) {
    let mut at = first;
    while !*stop.borrow() {
        let replica = at % addrs.len();
        let stream = tally.streams.fetch_add(1, Ordering::Relaxed);
        let end = tokio::select! {
            () = serve(stream, addrs[replica], replica, request.clone(), &tally) => false,
            _ = stop.changed() => true,
        };
        tally.release(stream, None);
        if end {
            return;
        }
        at += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One stream, until it ends or cannot open.
async fn serve(
    stream_id: usize,
    addr: SocketAddr,
    replica: usize,
    request: SubscribeRequest,
    tally: &Tally,
) {
    let Ok(mut client) = EventGatewayClient::connect(format!("http://{addr}")).await else {
        return;
    };
    let (requests, outbound) = mpsc::channel(1024);
    let _ = requests.send(subscribe_message(request)).await;
    let Ok(response) = client
        .streaming_subscribe(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await
    else {
        return;
    };
    let mut stream = response.into_inner();
    // Per ack id out: the event number.
    let mut out: HashMap<String, i64> = HashMap::new();
    while let Ok(Some(message)) = stream.message().await {
        match message.kind {
            Some(Kind::Delivery(delivery)) => {
                tally.delivered.fetch_add(1, Ordering::Relaxed);
                let number = n(&delivery);
                tally
                    .deliveries
                    .lock()
                    .unwrap()
                    .entry(number)
                    .or_default()
                    .push((stream_id, delivery.partition, Instant::now()));
                out.insert(delivery.ack_id.clone(), number);
                let ack = SettleRequest {
                    acks: vec![delivery.ack_id],
                    ..SettleRequest::default()
                };
                let _ = requests
                    .send(StreamingSubscribeRequest {
                        kind: Some(Inbound::Settle(ack)),
                    })
                    .await;
            }
            Some(Kind::Settled(answer)) => {
                for result in answer.results {
                    let Some(n) = out.remove(&result.ack_id) else {
                        continue;
                    };
                    if result.outcome == SettleOutcome::Accepted as i32 {
                        let acceptance = Acceptance {
                            stream: stream_id,
                            replica,
                            when: Instant::now(),
                        };
                        let mut accepted = tally.accepted.lock().unwrap();
                        accepted.entry(n).or_default().push(acceptance);
                    }
                }
            }
            Some(Kind::Rebalance(rebalance)) => {
                let revoked: Vec<i32> = rebalance.revoked.iter().map(|tp| tp.partition).collect();
                tally.release(stream_id, Some(&revoked));
                let now = Instant::now();
                let mut holdings = tally.holdings.lock().unwrap();
                holdings.extend(rebalance.assigned.iter().map(|tp| Holding {
                    stream: stream_id,
                    partition: tp.partition,
                    from: now,
                    to: None,
                }));
            }
            _ => {}
        }
    }
}

/// Writes events `range` to `topic` with a plain Kafka producer, `pause`
/// apart.
async fn produce(brokers: &str, topic: &str, range: std::ops::Range<i64>, pause: Duration) {
    produce_numbered(brokers, topic, None, range, pause).await;
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
    create_topics(brokers, &[&topic], 6).await.unwrap();
    let group = format!("group-{topic}");
    const FIRST: i64 = 600;
    const SECOND: i64 = 600;
    const THIRD: i64 = 600;
    // The first events come while the group forms and until after the
    // kill.
    let first = tokio::spawn({
        let (brokers, topic) = (brokers.to_owned(), topic.clone());
        async move { produce(&brokers, &topic, 0..FIRST, Duration::from_millis(10)).await }
    });

    let mut replicas: Vec<Replica> = (0..REPLICAS)
        .map(|_| Replica {
            port: free_port(),
            child: None,
            logs: Vec::new(),
        })
        .collect();
    for replica in &mut replicas {
        replica.start(brokers, protocol).await;
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
    let tally = Arc::new(Tally::new());
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
        tally.quiet_for(STABLE) && tally.distinct(0..FIRST) >= FIRST as usize / 4
    })
    .await;
    let killed_at = Instant::now();
    let mut child = replicas[0].child.take().unwrap();
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    first.await.unwrap();
    let twice = tally.all_handled(0..FIRST, "kill").await;
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
    replicas[0].start(brokers, protocol).await;
    let producer = tokio::spawn({
        let brokers = brokers.to_owned();
        let topic = topic.clone();
        async move {
            produce(
                &brokers,
                &topic,
                FIRST..FIRST + SECOND,
                Duration::from_millis(15),
            )
            .await;
        }
    });
    let mut restarts = Vec::new();
    for (i, replica) in replicas.iter_mut().enumerate() {
        // As an operator restarts one replica after another: once the last
        // one is back and its group settled. Rebalances that overlap move
        // partitions while commits of a generation on its way out are
        // refused, and what was acked then comes again.
        let before = tally.distinct(FIRST..FIRST + SECOND);
        eventually("the group holds still with events flowing", || async {
            tally.quiet_for(STABLE) && tally.distinct(FIRST..FIRST + SECOND) > before
        })
        .await;
        restarts.push(tally.ms(Instant::now()));
        let status = sigterm_and_wait(replica.child.take().unwrap()).await;
        assert!(status.success(), "replica {i} exited with {status}");
        replica.start(brokers, protocol).await;
    }
    producer.await.unwrap();
    let twice = tally
        .all_handled(FIRST..FIRST + SECOND, "rolling restart")
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
            async move { produce(&brokers, &topic, range, Duration::from_millis(15)).await }
        });
        let began = tally.ms(Instant::now());
        cluster
            .rolling_restart(false)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let ended = tally.ms(Instant::now());
        producer.await.unwrap();
        let twice = tally.all_handled(range, "brokers restarted").await;
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
