//! Open-loop publish latency at a fixed rate: the direct producer and
//! PublishEvent through each gateway under test, in turns of 50 ms each,
//! so that every side sees the same machine over the run, not one the
//! quiet moment and another a busy one.

use std::time::Duration;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use rdkafka::producer::FutureProducer;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::clients::{direct_record, enqueue, publish_request, GatewayChannel};
use crate::tally::{Latency, Side, Tally};

/// A task's outcome: its event's index, and its latency or error.
type Timed = (u64, Result<Duration, String>);

/// Open loop: event i is due at start + i/rate whatever happened before;
/// its latency runs from when it was due to when Kafka confirmed it.
fn schedule(rate: u64) -> impl Fn(u64) -> Instant {
    let start = Instant::now() + Duration::from_millis(100);
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    move |i| start + period.mul_f64(i as f64)
}

/// The percentiles of `tasks`, each event counted by its index.
async fn collect(mut tasks: JoinSet<Timed>, events: u64) -> Side {
    let mut tally = Tally::new(events);
    let mut samples = Vec::with_capacity(events as usize);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((index, Ok(latency))) => {
                samples.push(latency);
                tally.mark(index);
            }
            Ok((index, Err(error))) => tally.error(format!("event {index}: {error}")),
            Err(error) => tally.error(format!("a task failed: {error}")),
        }
    }
    (Latency::of(samples), tally)
}

/// How long each side sends before the next side's turn.
const TURN: Duration = Duration::from_millis(50);

/// `events` events at `rate` per second from each side: the direct
/// producer's and PublishEvent's through each of `gateways`, in turns of
/// [`TURN`] each. Short turns spread a pause of the machine over every
/// side: with turns of a second, a single pause of a tenth of a second was
/// 1% of one side's events, its whole p99, and which side it hit decided
/// the added p99. Turns rather than events in turn keep the sides apart:
/// with the sides' events interleaved one by one, each path ran beside the
/// other's load, and PublishEvent's p50 rose by half a millisecond
/// whichever side went first.
pub(crate) async fn latencies(
    producer: &FutureProducer,
    gateways: &[&GatewayChannel],
    topic: &str,
    rate: u64,
    events: u64,
    size: usize,
) -> Result<(Side, Vec<Side>), String> {
    let mut direct = JoinSet::new();
    let mut through: Vec<JoinSet<Timed>> = gateways.iter().map(|_| JoinSet::new()).collect();
    let rate = rate.max(1);
    let turn = ((rate as f64 * TURN.as_secs_f64()) as u64).max(1);
    // Slots of 1/rate, taken turn by turn.
    let due = schedule(rate);
    let mut slot = 0;
    let mut first = 0;
    while first < events {
        let last = (first + turn).min(events);
        for index in first..last {
            let record = direct_record(index, size);
            let at = due(slot + index - first);
            tokio::time::sleep_until(at).await;
            let delivery = enqueue(producer, topic, &record).await?;
            direct.spawn(async move {
                let outcome = match delivery.await {
                    Ok(Ok(_)) => Ok(at.elapsed()),
                    _ => Err("direct produce failed".to_owned()),
                };
                (index, outcome)
            });
        }
        slot += turn;
        for (channel, gateway) in gateways.iter().zip(&mut through) {
            for index in first..last {
                let request = publish_request(topic, index, size);
                let mut client = EventGatewayClient::new((*channel).clone());
                let at = due(slot + index - first);
                tokio::time::sleep_until(at).await;
                gateway.spawn(async move {
                    let outcome = client
                        .publish_event(request)
                        .await
                        .map(|_| at.elapsed())
                        .map_err(|status| format!("PublishEvent: {status}"));
                    (index, outcome)
                });
            }
            slot += turn;
        }
        first = last;
    }
    let direct = collect(direct, events).await;
    let mut sides = Vec::with_capacity(through.len());
    for gateway in through {
        sides.push(collect(gateway, events).await);
    }
    Ok((direct, sides))
}
