//! Fan-out: many ephemeral streams from the latest event on one topic, each
//! of which must receive every event published while they are open.

use std::sync::Arc;
use std::time::Duration;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::{subscribe_response::Kind, StartFrom};
use rdkafka::producer::FutureProducer;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::consume::receive;
use crate::clients::{direct_record, enqueue, subscribe_request, Target};
use crate::tally::{Tally, Throughput};

/// Fan-out streams per gRPC connection.
const STREAMS_PER_CONNECTION: usize = 100;

/// Opens `streams` ephemeral subscriptions from the latest event, then
/// publishes `events` events directly to Kafka; each stream must receive
/// every one. Throughput counts deliveries: streams x events, each by the
/// index `stream * events + event`.
pub(crate) async fn fanout(
    gateway: &Target,
    producer: &FutureProducer,
    topic: &str,
    streams: usize,
    events: u64,
    size: usize,
    patience: Duration,
) -> Result<Throughput, String> {
    let channels = gateway
        .connect(streams.div_ceil(STREAMS_PER_CONNECTION).max(1))
        .await?;
    let subscribed = Arc::new(Barrier::new(streams + 1));
    let mut tasks = JoinSet::new();
    for s in 0..streams {
        let mut client = EventGatewayClient::new(channels[s % channels.len()].clone());
        let (topic, subscribed) = (topic.to_owned(), subscribed.clone());
        tasks.spawn(async move {
            let mut tally = Tally::new(events);
            let opened = client
                .subscribe(subscribe_request(&topic, StartFrom::Latest))
                .await;
            let mut stream = match opened {
                Ok(stream) => stream.into_inner(),
                Err(status) => {
                    tally.error(format!("Subscribe: {status}"));
                    subscribed.wait().await;
                    return (s, tally);
                }
            };
            match stream.message().await {
                Ok(Some(m)) if matches!(m.kind, Some(Kind::Subscribed(_))) => {}
                other => tally.error(format!("expected Subscribed first, got {other:?}")),
            }
            subscribed.wait().await;
            receive(&mut stream, &mut tally, patience).await;
            (s, tally)
        });
    }
    tokio::time::timeout(patience, subscribed.wait())
        .await
        .map_err(|_| format!("{streams} streams not subscribed within {patience:?}"))?;
    let started = Instant::now();
    let mut pending = Vec::with_capacity(events as usize);
    for index in 0..events {
        pending.push(enqueue(producer, topic, &direct_record(index, size)).await?);
    }
    for delivery in pending {
        if !matches!(delivery.await, Ok(Ok(_))) {
            return Err("fan-out: the direct producer could not store an event".into());
        }
    }
    let deliveries = streams as u64 * events;
    let mut tally = Tally::new(deliveries);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((stream, part)) => tally.merge_at(stream as u64 * events, part),
            Err(error) => tally.error(format!("a stream task failed: {error}")),
        }
    }
    Ok(Throughput::new(
        "fan-out (deliveries)",
        deliveries,
        started.elapsed(),
        tally,
    ))
}
