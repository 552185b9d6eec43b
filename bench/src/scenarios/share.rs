//! A shared subscription: one partition read by one stream and by eight
//! streams sharing one group member (StreamingSubscribe, `max_unacked` 2
//! each), every stream spending a fixed handling time on each delivery
//! before acking it on the stream. The events acked per second, and the
//! eight streams' rate over the one stream's, per handling time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::streaming_subscribe_request::Kind as Inbound;
use eventgateway::v1::streaming_subscribe_response::Kind;
use eventgateway::v1::{
    AckMode, SettleOutcome, SettleRequest, StartFrom, StreamingSubscribeRequest,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use rdkafka::producer::FutureProducer;

use super::step;
use crate::clients::{fill, subscribe_request, GatewayChannel};
use crate::options::Options;

/// The handling times measured.
pub(crate) const HANDLING_MS: [u64; 2] = [1, 20];
/// The streams of the shared runs.
pub(crate) const STREAMS: usize = 8;
/// Events each stream of a run acks, about: the topic holds this many per
/// stream of the larger run.
pub(crate) const EVENTS_PER_STREAM: usize = 60;

/// One handling time's figures.
#[derive(Debug, Clone)]
pub(crate) struct Share {
    /// What each delivery takes its stream, in ms.
    pub(crate) handling_ms: u64,
    /// Events acked per second by one stream.
    pub(crate) one: f64,
    /// Events acked per second by [`STREAMS`] streams sharing the member.
    pub(crate) shared: f64,
}

/// Writes [`STREAMS`] * [`EVENTS_PER_STREAM`] events of `--size` bytes to a
/// new one-partition `topic`, then measures [`shares`].
pub(crate) async fn run(
    brokers: &str,
    (producer, topic): (&FutureProducer, &str),
    channel: &GatewayChannel,
    options: &Options,
) -> Result<Vec<Share>, String> {
    step("a shared subscription: one stream and eight on one partition");
    testkit::create_topics(brokers, &[topic], 1).await?;
    fill(
        producer,
        topic,
        (STREAMS * EVENTS_PER_STREAM) as u64,
        options.size,
    )
    .await?;
    shares(channel, topic, options.patience).await
}

/// Each handling time of [`HANDLING_MS`], read with one stream and with
/// [`STREAMS`] sharing one member, each run a group of its own reading
/// `topic` (one partition, with [`STREAMS`] * [`EVENTS_PER_STREAM`]
/// events) from its earliest event.
async fn shares(
    channel: &GatewayChannel,
    topic: &str,
    patience: Duration,
) -> Result<Vec<Share>, String> {
    let mut figures = Vec::new();
    for handling_ms in HANDLING_MS {
        let handling = Duration::from_millis(handling_ms);
        let one = acked_per_second(channel, topic, 1, handling, patience).await?;
        let shared = acked_per_second(channel, topic, STREAMS, handling, patience).await?;
        figures.push(Share {
            handling_ms,
            one,
            shared,
        });
    }
    Ok(figures)
}

/// `streams` streams of one new share, each acking what it gets after
/// `handling`, until `streams` * [`EVENTS_PER_STREAM`] were acked: the
/// events acked per second from the first delivery on.
async fn acked_per_second(
    channel: &GatewayChannel,
    topic: &str,
    streams: usize,
    handling: Duration,
    patience: Duration,
) -> Result<f64, String> {
    let mut request = subscribe_request(topic, StartFrom::Earliest);
    request.ack_mode = AckMode::Manual as i32;
    request.max_unacked = 2;
    request.group = format!("bench-share-{}", uuid::Uuid::now_v7().simple());
    request.share = "workers".into();
    let target = streams * EVENTS_PER_STREAM;
    let acked = Arc::new(AtomicUsize::new(0));
    let first = Arc::new(Mutex::new(None::<Instant>));
    let mut workers = Vec::new();
    for _ in 0..streams {
        let mut client = EventGatewayClient::new(channel.clone());
        let (requests, outbound) = mpsc::channel(8);
        let subscribe = StreamingSubscribeRequest {
            kind: Some(Inbound::Subscribe(request.clone())),
        };
        // The channel is new and has room.
        let _ = requests.try_send(subscribe);
        let mut stream = client
            .streaming_subscribe(tokio_stream::wrappers::ReceiverStream::new(outbound))
            .await
            .map_err(|status| format!("StreamingSubscribe: {status}"))?
            .into_inner();
        let (acked, first) = (acked.clone(), first.clone());
        workers.push(tokio::spawn(async move {
            let deadline = Instant::now() + patience;
            while acked.load(Ordering::SeqCst) < target {
                let wait = Duration::from_millis(50);
                let message = match tokio::time::timeout(wait, stream.message()).await {
                    Err(_) if Instant::now() < deadline => continue,
                    Err(_) => return Err(format!("{target} events not acked within {patience:?}")),
                    Ok(Err(status)) => return Err(format!("the stream failed: {status}")),
                    Ok(Ok(None)) => return Err("the stream ended".to_owned()),
                    Ok(Ok(Some(message))) => message,
                };
                match message.kind {
                    Some(Kind::Delivery(delivery)) => {
                        first.lock().unwrap().get_or_insert_with(Instant::now);
                        tokio::time::sleep(handling).await;
                        let settle = StreamingSubscribeRequest {
                            kind: Some(Inbound::Settle(SettleRequest {
                                acks: vec![delivery.ack_id],
                                ..SettleRequest::default()
                            })),
                        };
                        if requests.send(settle).await.is_err() {
                            return Err("the stream stopped taking acks".to_owned());
                        }
                    }
                    Some(Kind::Settled(answer)) => {
                        let accepted = answer
                            .results
                            .iter()
                            .filter(|r| r.outcome == SettleOutcome::Accepted as i32)
                            .count();
                        if accepted != answer.results.len() {
                            return Err("an ack did not count".to_owned());
                        }
                        if acked.fetch_add(accepted, Ordering::SeqCst) + accepted >= target {
                            return Ok(Some(Instant::now()));
                        }
                    }
                    _ => {}
                }
            }
            Ok(None)
        }));
    }
    // The first worker whose ack reached the target says when.
    let mut done: Option<Instant> = None;
    for worker in workers {
        if let Some(at) = worker.await.map_err(|error| error.to_string())?? {
            done = Some(done.map_or(at, |earlier| earlier.min(at)));
        }
    }
    let first = first.lock().unwrap().ok_or("no delivery came")?;
    let took = done.ok_or("the target was not reached")? - first;
    Ok(target as f64 / took.as_secs_f64())
}
