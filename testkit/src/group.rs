//! A consumer group of StreamingSubscribe members spread over gateway
//! replicas, each acking every delivery on its stream, and the tally of
//! what happened: which event was accepted where and when, and which
//! stream held which partition when. A member counts an event handled when
//! the gateway answers its ack ACCEPTED; one answered STALE was superseded
//! and comes again. A failure tells each missing or doubled event's story.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::streaming_subscribe_request::Kind as Inbound;
use eventgateway::v1::streaming_subscribe_response::Kind;
use eventgateway::v1::{SettleOutcome, SettleRequest, StreamingSubscribeRequest, SubscribeRequest};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::events::n;
use crate::streaming::subscribe_message;
use crate::wait::within;

/// One ACCEPTED ack.
#[derive(Debug, Clone, Copy)]
pub struct Acceptance {
    /// The stream it came on (each stream is one member of the group).
    pub stream: usize,
    /// The replica (gateway) it was accepted on.
    pub replica: usize,
    /// When.
    pub when: Instant,
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

/// Who accepted which event when, and who held which partition when: the
/// story a failure tells.
pub struct GroupTally {
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
    /// The streams open now.
    open: Mutex<HashSet<usize>>,
    holdings: Mutex<Vec<Holding>>,
}

impl GroupTally {
    /// An empty tally; its clock starts now.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self {
            zero: Instant::now(),
            accepted: Mutex::default(),
            delivered: AtomicUsize::default(),
            deliveries: Mutex::default(),
            streams: AtomicUsize::default(),
            open: Mutex::default(),
            holdings: Mutex::default(),
        }
    }

    /// Milliseconds since the test began.
    pub fn ms(&self, at: Instant) -> u128 {
        at.saturating_duration_since(self.zero).as_millis()
    }

    /// How many events of `range` were accepted at least once.
    pub fn distinct(&self, range: std::ops::Range<i64>) -> usize {
        let accepted = self.accepted.lock().unwrap();
        range.filter(|n| accepted.contains_key(n)).count()
    }

    /// Events of `range` accepted more than once, with their acceptances.
    pub fn twice(&self, range: std::ops::Range<i64>) -> Vec<(i64, Vec<Acceptance>)> {
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
    pub fn story(&self, events: impl IntoIterator<Item = i64>) -> Vec<String> {
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
    pub async fn all_handled(
        &self,
        range: std::ops::Range<i64>,
        phase: &str,
        patience: Duration,
    ) -> Vec<(i64, Vec<Acceptance>)> {
        self.wait_for(range.clone(), phase, patience).await;
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

    /// Waits until every event of `range` was handled; fails the test,
    /// telling the missing events' story, after `patience`.
    pub async fn wait_for(&self, range: std::ops::Range<i64>, what: &str, patience: Duration) {
        let want = range.clone().count();
        let done = || std::future::ready(self.distinct(range.clone()) == want);
        if within(patience, done).await {
            return;
        }
        let missing: Vec<i64> = {
            let accepted = self.accepted.lock().unwrap();
            range.filter(|n| !accepted.contains_key(n)).collect()
        };
        panic!(
            "{what}: {} of {want} after {patience:?}; missing {missing:?}; \
             partitions held: {:?}\n{:#?}",
            want - missing.len(),
            self.held(),
            self.story(missing.iter().copied())
        );
    }

    /// Whether the group has held still for `long`: no stream was given or
    /// lost a partition since, and some stream holds one.
    pub fn quiet_for(&self, long: Duration) -> bool {
        let holdings = self.holdings.lock().unwrap();
        let last = holdings
            .iter()
            .flat_map(|h| [Some(h.from), h.to])
            .flatten()
            .max();
        last.is_some_and(|last| last.elapsed() >= long) && holdings.iter().any(|h| h.to.is_none())
    }

    /// Whether the group has settled: every stream open holds a partition,
    /// the streams hold all `partitions` of the topic, and no partition
    /// changed hands for `long`. (A stream that joined and holds nothing
    /// yet means a rebalance under way, which quiet alone does not show.)
    pub fn settled(&self, long: Duration, partitions: usize) -> bool {
        if !self.quiet_for(long) {
            return false;
        }
        let held = self.held();
        let open = self.open.lock().unwrap();
        let covered: HashSet<i32> = held.values().flatten().copied().collect();
        open.iter().all(|stream| held.contains_key(stream)) && covered.len() == partitions
    }

    /// The partitions each open stream holds.
    pub fn held(&self) -> HashMap<usize, Vec<i32>> {
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

/// One member of the group: subscribes on replica `first`, acks every
/// delivery on the stream, and when its stream ends subscribes again on
/// the next replica, until `stop`.
pub async fn member(
    addrs: Vec<SocketAddr>,
    first: usize,
    request: SubscribeRequest,
    tally: Arc<GroupTally>,
    mut stop: watch::Receiver<bool>,
) {
    let mut at = first;
    while !*stop.borrow() {
        let replica = at % addrs.len();
        let stream = tally.streams.fetch_add(1, Ordering::Relaxed);
        tally.open.lock().unwrap().insert(stream);
        let end = tokio::select! {
            () = serve(stream, addrs[replica], replica, request.clone(), &tally) => false,
            _ = stop.changed() => true,
        };
        tally.release(stream, None);
        tally.open.lock().unwrap().remove(&stream);
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
    tally: &GroupTally,
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
