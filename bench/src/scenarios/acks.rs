//! ACK_MODE_MANUAL reading: one consumer acking every delivery, over the
//! StreamingSubscribe stream or with unary Acknowledge calls beside a
//! Subscribe stream, to set against the same events read in AUTO.
//!
//! Both clients ack as client libraries do: the ack ids of the deliveries
//! received are sent [`ACK_BATCH`] at a time, while reading goes on.

use std::time::Duration;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::streaming_subscribe_request::Kind as Inbound;
use eventgateway::v1::streaming_subscribe_response::Kind;
use eventgateway::v1::{
    subscribe_response, AckMode, AcknowledgeRequest, SettleOutcome, SettleRequest, StartFrom,
    StreamingSubscribeRequest, SubscribeRequest,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::consume::{self, next_message};
use super::step;
use crate::clients::{subscribe_request, GatewayChannel, WARM_UP};
use crate::cpu::Processes;
use crate::options::Options;
use crate::tally::{median, on_cpu, Tally, Throughput};

/// Ack ids sent in one settle message or Acknowledge call.
const ACK_BATCH: usize = 50;
/// The window: large enough that acks in flight never fill it.
const WINDOW: u32 = 10_000;

fn manual(topic: &str) -> SubscribeRequest {
    SubscribeRequest {
        ack_mode: AckMode::Manual as i32,
        max_unacked: WINDOW,
        ..subscribe_request(topic, StartFrom::Earliest)
    }
}

/// One StreamingSubscribe stream reading `topic` from its earliest event,
/// acking every delivery on the stream.
pub(crate) async fn on_the_stream(
    channel: &GatewayChannel,
    topic: &str,
    events: u64,
    patience: Duration,
) -> Throughput {
    let mut client = EventGatewayClient::new(channel.clone());
    let mut tally = Tally::new(events);
    let started = Instant::now();
    let (requests, outbound) = mpsc::channel(64);
    let subscribe = StreamingSubscribeRequest {
        kind: Some(Inbound::Subscribe(manual(topic))),
    };
    // The channel is new and has room.
    let _ = requests.try_send(subscribe);
    let stream = client
        .streaming_subscribe(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await;
    let mut stream = match stream {
        Ok(stream) => stream.into_inner(),
        Err(status) => {
            tally.error(format!("StreamingSubscribe: {status}"));
            return Throughput::new(ON_THE_STREAM, events, started.elapsed(), tally);
        }
    };
    let mut pending = Vec::with_capacity(ACK_BATCH);
    while !tally.complete() {
        let Some(message) =
            next_message(&mut stream, &mut tally, patience, "StreamingSubscribe").await
        else {
            break;
        };
        match message.kind {
            Some(Kind::Delivery(delivery)) => {
                if delivery.key != WARM_UP {
                    tally.mark_key(&delivery.key);
                }
                pending.push(delivery.ack_id);
                if pending.len() >= ACK_BATCH {
                    let settle = StreamingSubscribeRequest {
                        kind: Some(Inbound::Settle(SettleRequest {
                            acks: std::mem::take(&mut pending),
                            ..SettleRequest::default()
                        })),
                    };
                    if requests.send(settle).await.is_err() {
                        tally.error("the stream stopped taking acks");
                        break;
                    }
                }
            }
            Some(Kind::Settled(answer)) => {
                let refused = answer
                    .results
                    .iter()
                    .filter(|r| r.outcome != SettleOutcome::Accepted as i32)
                    .count();
                if refused > 0 {
                    tally.error(format!("{refused} acks did not count"));
                }
            }
            _ => {}
        }
    }
    Throughput::new(ON_THE_STREAM, events, started.elapsed(), tally)
}

/// The name of [`on_the_stream`]'s scenario.
pub(crate) const ON_THE_STREAM: &str = "MANUAL, acks on the stream";
/// The name of [`unary`]'s scenario.
pub(crate) const UNARY: &str = "MANUAL, unary Acknowledge";

/// One Subscribe stream reading `topic` from its earliest event, acking
/// every delivery with unary Acknowledge calls beside it.
pub(crate) async fn unary(
    channel: &GatewayChannel,
    topic: &str,
    events: u64,
    patience: Duration,
) -> Throughput {
    let mut client = EventGatewayClient::new(channel.clone());
    let mut tally = Tally::new(events);
    let started = Instant::now();
    let mut stream = match client.subscribe(manual(topic)).await {
        Ok(stream) => stream.into_inner(),
        Err(status) => {
            tally.error(format!("Subscribe: {status}"));
            return Throughput::new(UNARY, events, started.elapsed(), tally);
        }
    };
    let (batches, to_ack) = mpsc::channel::<Vec<String>>(64);
    let mut to_ack = Some(to_ack);
    let (failures_tx, mut failures) = mpsc::unbounded_channel::<String>();
    let mut id = None;
    let mut acker = None;
    let mut pending = Vec::with_capacity(ACK_BATCH);
    while !tally.complete() {
        let Some(message) = next_message(&mut stream, &mut tally, patience, "Subscribe").await
        else {
            break;
        };
        match message.kind {
            Some(subscribe_response::Kind::Subscribed(subscribed)) => {
                id = Some(subscribed.subscription_id.clone());
                let (mut client, id, failures) = (
                    client.clone(),
                    subscribed.subscription_id,
                    failures_tx.clone(),
                );
                let Some(mut to_ack) = to_ack.take() else {
                    tally.error("a second subscribed message");
                    break;
                };
                acker = Some(tokio::spawn(async move {
                    while let Some(ack_ids) = to_ack.recv().await {
                        let request = AcknowledgeRequest {
                            subscription_id: id.clone(),
                            ack_ids,
                        };
                        if let Err(status) = client.acknowledge(request).await {
                            let _ = failures.send(format!("Acknowledge: {status}"));
                        }
                    }
                }));
            }
            Some(subscribe_response::Kind::Delivery(delivery)) => {
                if delivery.key != WARM_UP {
                    tally.mark_key(&delivery.key);
                }
                pending.push(delivery.ack_id);
                if pending.len() >= ACK_BATCH && id.is_some() {
                    let _ = batches.send(std::mem::take(&mut pending)).await;
                }
            }
            _ => {}
        }
    }
    let elapsed = started.elapsed();
    drop(batches);
    if let Some(acker) = acker {
        let _ = acker.await;
    }
    while let Ok(failure) = failures.try_recv() {
        tally.error(failure);
    }
    Throughput::new(UNARY, events, elapsed, tally)
}

/// The name of the AUTO reader the MANUAL ones are set against.
const AUTO_READER: &str = "AUTO, beside the MANUAL readers";

/// AUTO and the two MANUAL readers of `topic`, alternating `--repeat`
/// times each: the median of each (AUTO, acks on the stream, unary acks).
pub(crate) async fn rounds(
    channel: &GatewayChannel,
    topic: &str,
    o: &Options,
    processes: &Processes,
) -> (Throughput, Throughput, Throughput) {
    let (mut auto_runs, mut stream_acks, mut unary_acks) = (Vec::new(), Vec::new(), Vec::new());
    let patience = o.patience;
    for round in 1..=o.repeat.max(1) {
        step(&format!(
            "acks: AUTO, on the stream, unary ({round}/{})",
            o.repeat
        ));
        let auto = consume::subscribe(channel, topic, o.events, patience);
        auto_runs.push(on_cpu(processes, auto).await);
        let on_stream = on_the_stream(channel, topic, o.events, patience);
        stream_acks.push(on_cpu(processes, on_stream).await);
        let calls = unary(channel, topic, o.events, patience);
        unary_acks.push(on_cpu(processes, calls).await);
    }
    let auto_reader = median(auto_runs).map_or_else(
        || Throughput::skipped(AUTO_READER),
        |run| Throughput {
            name: AUTO_READER,
            ..run
        },
    );
    let on_stream = median(stream_acks).unwrap_or_else(|| Throughput::skipped(ON_THE_STREAM));
    let unary = median(unary_acks).unwrap_or_else(|| Throughput::skipped(UNARY));
    (auto_reader, on_stream, unary)
}

/// The three readers, not run.
pub(crate) fn skipped() -> (Throughput, Throughput, Throughput) {
    (
        Throughput::skipped(AUTO_READER),
        Throughput::skipped(ON_THE_STREAM),
        Throughput::skipped(UNARY),
    )
}
