//! Three gateway processes on one broker serve one consumer group whose
//! members ack over StreamingSubscribe, spread across the three. One
//! replica is killed with SIGKILL mid-run, then all three are restarted one
//! by one with SIGTERM while events keep coming. A member counts an event
//! handled when the gateway answers its ack ACCEPTED (the ack counted);
//! one whose ack is answered STALE was superseded and comes again.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::streaming_subscribe_request::Kind as Inbound;
use eventgateway::v1::streaming_subscribe_response::Kind;
use eventgateway::v1::{
    AckMode, SettleOutcome, SettleRequest, StartFrom, StreamingSubscribeRequest, SubscribeRequest,
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use testkit::*;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

const REPLICAS: usize = 3;
const MEMBERS: usize = 6;
const WINDOW: u32 = 20;
/// The replicas' --commit-interval.
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);

/// Who accepted which event when.
#[derive(Default)]
struct Tally {
    /// Per event number: (replica, when) of each ACCEPTED ack.
    accepted: Mutex<HashMap<i64, Vec<(usize, Instant)>>>,
    /// Deliveries received, redeliveries included.
    delivered: Mutex<usize>,
}

impl Tally {
    fn distinct(&self, range: std::ops::Range<i64>) -> usize {
        let accepted = self.accepted.lock().unwrap();
        range.filter(|n| accepted.contains_key(n)).count()
    }

    /// Events of `range` accepted more than once, with their acceptances.
    fn twice(&self, range: std::ops::Range<i64>) -> Vec<(i64, Vec<(usize, Instant)>)> {
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

    async fn wait_for(&self, range: std::ops::Range<i64>, what: &str) {
        let want = range.clone().count();
        eventually(what, || async { self.distinct(range.clone()) == want }).await;
    }
}

struct Replica {
    port: u16,
    child: Option<Child>,
    _log: Option<Lines>,
}

impl Replica {
    fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    async fn start(&mut self, brokers: &str) {
        let (child, log) = gateway_process(
            env!("CARGO_BIN_EXE_gateway").as_ref(),
            self.port,
            brokers,
            &[("RUST_LOG", "warn")],
            &[
                "--commit-interval",
                "500ms",
                "--drain-timeout",
                "5s",
                // A killed replica's partitions move once its consumers'
                // sessions time out: 6 s here, 30 s by default.
                "--kafka-property",
                "session.timeout.ms=6000",
                "--kafka-property",
                "heartbeat.interval.ms=1000",
            ],
        );
        self.child = Some(child);
        self._log = Some(log);
        wait_serving(self.addr()).await;
    }
}

/// One member of the group: subscribes on replica `first`, acks every
/// delivery on the stream, and when its stream ends subscribes again on the
/// next replica, until `stop`.
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
        tokio::select! {
            () = serve(addrs[replica], replica, request.clone(), &tally) => {}
            _ = stop.changed() => return,
        }
        at += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One stream, until it ends or cannot open.
async fn serve(addr: SocketAddr, replica: usize, request: SubscribeRequest, tally: &Tally) {
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
    let mut out: HashMap<String, i64> = HashMap::new();
    while let Ok(Some(message)) = stream.message().await {
        match message.kind {
            Some(Kind::Delivery(delivery)) => {
                *tally.delivered.lock().unwrap() += 1;
                out.insert(delivery.ack_id.clone(), n(&delivery));
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
                        tally
                            .accepted
                            .lock()
                            .unwrap()
                            .entry(n)
                            .or_default()
                            .push((replica, Instant::now()));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Writes events `range` to `topic` with a plain Kafka producer, one record
/// at a time (tansu answers a fetch from inside a batch with the next
/// batch), `pause` apart.
async fn produce(brokers: &str, topic: &str, range: std::ops::Range<i64>, pause: Duration) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .create()
        .unwrap();
    for n in range {
        let value = format!("{{\"n\":{n}}}");
        let key = format!("k{n}");
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("stored");
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_serve_one_group_through_a_kill_and_a_rolling_restart() {
    let broker = Broker::start().await;
    let topic = topic("replicas");
    broker.create_topic(&topic, 6).await;
    let group = format!("group-{topic}");
    const FIRST: i64 = 600;
    const SECOND: i64 = 600;
    produce(&broker.brokers(), &topic, 0..FIRST, Duration::ZERO).await;

    let mut replicas: Vec<Replica> = (0..REPLICAS)
        .map(|_| Replica {
            port: free_port(),
            child: None,
            _log: None,
        })
        .collect();
    for replica in &mut replicas {
        replica.start(&broker.brokers()).await;
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
    let tally = Arc::new(Tally::default());
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

    // SIGKILL replica 0 mid-run.
    eventually("a third of the first events handled", || async {
        tally.distinct(0..FIRST) >= FIRST as usize / 3
    })
    .await;
    let killed_at = Instant::now();
    let mut child = replicas[0].child.take().unwrap();
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    tally
        .wait_for(0..FIRST, "every first event handled after the kill")
        .await;
    let twice = tally.twice(0..FIRST);
    let _ = writeln!(
        std::io::stderr(),
        "replicas, kill: {FIRST} events, {} deliveries, {} handled twice",
        tally.delivered.lock().unwrap(),
        twice.len()
    );
    // Only what the killed replica settled and had not committed yet (its
    // last commit interval, and the commit's round trip) comes again.
    let uncommitted = COMMIT_INTERVAL + Duration::from_secs(2);
    for (n, acceptances) in &twice {
        let (replica, when) = acceptances[0];
        assert!(
            replica == 0 && killed_at.saturating_duration_since(when) <= uncommitted,
            "event {n} handled twice: first on replica {replica}, {:?} before the kill",
            killed_at.saturating_duration_since(when)
        );
    }

    // Rolling restart with SIGTERM while the second events come.
    replicas[0].start(&broker.brokers()).await;
    let producer = tokio::spawn({
        let brokers = broker.brokers();
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
    for (i, replica) in replicas.iter_mut().enumerate() {
        let before = tally.distinct(FIRST..FIRST + SECOND);
        eventually("events flow before the next restart", || async {
            tally.distinct(FIRST..FIRST + SECOND) > before
        })
        .await;
        let status = sigterm_and_wait(replica.child.take().unwrap()).await;
        assert!(status.success(), "replica {i} exited with {status}");
        replica.start(&broker.brokers()).await;
    }
    producer.await.unwrap();
    tally
        .wait_for(FIRST..FIRST + SECOND, "every second event handled")
        .await;
    let twice = tally.twice(FIRST..FIRST + SECOND);
    let _ = writeln!(
        std::io::stderr(),
        "replicas, rolling restart: {SECOND} events, {} deliveries in all, {} handled twice",
        tally.delivered.lock().unwrap(),
        twice.len()
    );
    assert!(
        twice.is_empty(),
        "events handled twice across a rolling restart: {twice:?}"
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
