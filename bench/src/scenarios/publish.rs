//! Publishing: the direct producer unbounded and in a closed loop, unary
//! PublishEvent in the same closed loop, and PublishEvents streams, one
//! event or one batch per request.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::publish_events_response::Result as Outcome;
use eventgateway::v1::publish_result::Result as BatchOutcome;
use eventgateway::v1::PublishEventsRequest;
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::clients::{
    direct_record, enqueue, json_publish_request, publish_request, GatewayChannel,
};
use crate::tally::{Tally, Throughput};

/// The name of the unary floor scenario.
pub(crate) const FLOOR: &str = "unary floor (Health/Check)";

/// Direct producer: events enqueued and not yet confirmed, at most.
const DIRECT_WINDOW: usize = 50_000;

/// Counts the outcome of the direct producer's event `index`.
fn settle<E>(tally: &mut Tally, index: u64, outcome: Result<OwnedDeliveryResult, E>) {
    match outcome {
        Ok(Ok(_)) => tally.mark(index),
        Ok(Err((error, _))) => tally.error(format!("direct produce: {error}")),
        Err(_) => tally.error("direct produce: the producer went away"),
    }
}

/// The direct producer as fast as it goes: up to [`DIRECT_WINDOW`] events
/// unconfirmed.
pub(crate) async fn direct_produce(
    producer: &FutureProducer,
    topic: &str,
    events: u64,
    size: usize,
) -> Result<Throughput, String> {
    let mut tally = Tally::new(events);
    let mut pending: VecDeque<(u64, DeliveryFuture)> = VecDeque::new();
    let started = Instant::now();
    // Each record is built in the loop, as a client builds its event.
    for index in 0..events {
        if pending.len() >= DIRECT_WINDOW {
            let (i, delivery) = pending.pop_front().expect("not empty");
            settle(&mut tally, i, delivery.await);
        }
        let record = direct_record(index, size);
        pending.push_back((index, enqueue(producer, topic, &record).await?));
    }
    for (i, delivery) in pending {
        settle(&mut tally, i, delivery.await);
    }
    Ok(Throughput::new(
        "direct produce",
        events,
        started.elapsed(),
        tally,
    ))
}

/// `concurrency` tasks, each sending event after event and awaiting each
/// answer before the next, until `events` are sent; `sender(task)` makes a
/// task's send.
pub(super) async fn closed_loop<S, F>(
    name: &'static str,
    events: u64,
    concurrency: usize,
    mut sender: impl FnMut(usize) -> S,
) -> Throughput
where
    S: FnMut(u64) -> F + Send + 'static,
    F: Future<Output = Result<(), String>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for task in 0..concurrency.max(1) {
        let (mut send, next) = (sender(task), next.clone());
        tasks.spawn(async move {
            let mut tally = Tally::new(events);
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= events {
                    return tally;
                }
                match send(index).await {
                    Ok(()) => tally.mark(index),
                    Err(error) => tally.error(error),
                }
            }
        });
    }
    let tally = gather(tasks, events).await;
    Throughput::new(name, events, started.elapsed(), tally)
}

/// The closed loop of unary PublishEvent, with the direct producer instead
/// of the gateway.
pub(crate) async fn direct_closed_loop(
    producer: &FutureProducer,
    topic: &str,
    events: u64,
    size: usize,
    concurrency: usize,
) -> Throughput {
    closed_loop("direct closed loop (C tasks)", events, concurrency, |_| {
        let (producer, topic) = (producer.clone(), topic.to_owned());
        move |index| {
            let (producer, topic) = (producer.clone(), topic.clone());
            async move {
                let delivery = enqueue(&producer, &topic, &direct_record(index, size)).await?;
                match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    _ => Err("direct produce failed".to_owned()),
                }
            }
        }
    })
    .await
}

/// Unary PublishEvent from `concurrency` tasks over `channels`.
pub(crate) async fn unary(
    channels: &[GatewayChannel],
    topic: &str,
    events: u64,
    size: usize,
    concurrency: usize,
) -> Throughput {
    closed_loop("unary PublishEvent", events, concurrency, |task| {
        let client = EventGatewayClient::new(channels[task % channels.len()].clone());
        let topic = topic.to_owned();
        move |index| {
            let mut client = client.clone();
            let request = publish_request(&topic, index, size);
            async move {
                client
                    .publish_event(request)
                    .await
                    .map(drop)
                    .map_err(|status| format!("PublishEvent: {status}"))
            }
        }
    })
    .await
}

/// The floor under any unary call: the same callers on the same
/// connections calling grpc.health.v1.Health/Check, which does nothing but
/// answer. What PublishEvent costs above it is the gateway's own work.
pub(crate) async fn unary_floor(
    channels: &[GatewayChannel],
    calls: u64,
    concurrency: usize,
) -> Throughput {
    closed_loop(FLOOR, calls, concurrency, |task| {
        let client = HealthClient::new(channels[task % channels.len()].clone());
        move |_| {
            let mut client = client.clone();
            async move {
                client
                    .check(HealthCheckRequest::default())
                    .await
                    .map(drop)
                    .map_err(|status| format!("Health/Check: {status}"))
            }
        }
    })
    .await
}

/// The tallies of `tasks`, merged.
pub(super) async fn gather(mut tasks: JoinSet<Tally>, events: u64) -> Tally {
    let mut tally = Tally::new(events);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(part) => tally.merge(part),
            Err(error) => tally.error(format!("a client task failed: {error}")),
        }
    }
    tally
}

/// How a streaming scenario's requests look.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Events a request: one uses the `publish` field, more a `batch`.
    pub(crate) batch: usize,
    /// A compressible JSON payload instead of binary bytes.
    pub(crate) json: bool,
    /// gRPC message compression, both ways.
    pub(crate) encoding: Option<CompressionEncoding>,
}

impl Shape {
    /// One binary event a request, uncompressed.
    pub(crate) fn plain() -> Self {
        Self::batched(1)
    }

    /// `batch` binary events a request, uncompressed.
    pub(crate) fn batched(batch: usize) -> Self {
        Self {
            batch,
            json: false,
            encoding: None,
        }
    }
}

/// `streams` PublishEvents streams sharing `events` events, shaped by
/// `shape`.
pub(crate) async fn stream(
    channels: &[GatewayChannel],
    topic: &str,
    (events, size): (u64, usize),
    streams: usize,
    shape: Shape,
) -> Throughput {
    let batch = shape.batch;
    let streams = streams.max(1) as u64;
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for s in 0..streams {
        let client = EventGatewayClient::new(channels[s as usize % channels.len()].clone());
        let mine: Vec<u64> = (s..events).step_by(streams as usize).collect();
        let client = match shape.encoding {
            Some(encoding) => client.send_compressed(encoding).accept_compressed(encoding),
            None => client,
        };
        let shape = Shape {
            batch: batch.max(1),
            ..shape
        };
        tasks.spawn(one_stream(
            client,
            topic.to_owned(),
            mine,
            (events, size),
            shape,
        ));
    }
    let tally = gather(tasks, events).await;
    let name = if batch > 1 {
        "batched PublishEvents"
    } else {
        "streaming PublishEvents"
    };
    Throughput::new(name, events, started.elapsed(), tally)
}

/// One PublishEvents stream of the events `mine` (of `events`), `batch` per
/// request; each request's id is the index of its first event.
async fn one_stream(
    mut client: EventGatewayClient<GatewayChannel>,
    topic: String,
    mine: Vec<u64>,
    (events, size): (u64, usize),
    shape: Shape,
) -> Tally {
    let batch = shape.batch;
    let mut tally = Tally::new(events);
    let requests: Vec<Vec<u64>> = mine.chunks(batch).map(<[u64]>::to_vec).collect();
    let expected = requests.len();
    // Per request id, the indexes of its events.
    let indexes: std::collections::HashMap<String, Vec<u64>> = requests
        .iter()
        .map(|chunk| (chunk[0].to_string(), chunk.clone()))
        .collect();
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        for chunk in requests {
            let mut events = chunk.iter().map(|&index| {
                if shape.json {
                    json_publish_request(&topic, index, size)
                } else {
                    publish_request(&topic, index, size)
                }
            });
            let request = if batch == 1 {
                PublishEventsRequest {
                    request_id: chunk[0].to_string(),
                    publish: events.next(),
                    batch: Vec::new(),
                }
            } else {
                PublishEventsRequest {
                    request_id: chunk[0].to_string(),
                    publish: None,
                    batch: events.collect(),
                }
            };
            if tx.send(request).await.is_err() {
                return;
            }
        }
    });
    let mut answers = match client.publish_events(ReceiverStream::new(rx)).await {
        Ok(answers) => answers.into_inner(),
        Err(status) => {
            tally.error(format!("PublishEvents: {status}"));
            return tally;
        }
    };
    for _ in 0..expected {
        match answers.message().await {
            Ok(Some(answer)) => {
                let Some(sent) = indexes.get(&answer.request_id) else {
                    tally.error("PublishEvents answer to no request");
                    continue;
                };
                match answer.result {
                    Some(Outcome::Stored(_)) => tally.mark(sent[0]),
                    Some(Outcome::Error(error)) => {
                        tally.error(format!("PublishEvents answer: {}", error.message))
                    }
                    None if answer.batch.len() == sent.len() => {
                        for (index, result) in sent.iter().zip(answer.batch) {
                            match result.result {
                                Some(BatchOutcome::Stored(_)) => tally.mark(*index),
                                Some(BatchOutcome::Error(error)) => tally.error(format!(
                                    "PublishEvents batch answer: {}",
                                    error.message
                                )),
                                None => tally.error("PublishEvents batch answer without a result"),
                            }
                        }
                    }
                    None => tally.error("PublishEvents answer without a result"),
                }
            }
            Ok(None) => {
                tally.error("PublishEvents ended early");
                break;
            }
            Err(status) => {
                tally.error(format!("PublishEvents: {status}"));
                break;
            }
        }
    }
    tally
}
