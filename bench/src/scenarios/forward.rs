//! Acks at any replica: two replicas with an internal listener each, one
//! MANUAL Subscribe stream on the first, and each delivery acked by a
//! unary Settle of its one ack id, one call at a time (as a browser, or a
//! client behind a round-robin balancer, acks), sent to the stream's
//! replica (local) or to the other one (forwarded in one hop). Per way:
//! acks a second, the median call, and the CPU time per ack of both
//! replicas; the forwarded way over the local one. The two ways take
//! turns, `--repeat` rounds, and each figure is the median.

use std::time::Duration;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::subscribe_response::Kind;
use eventgateway::v1::{AckMode, SettleOutcome, SettleRequest, StartFrom};
use rdkafka::producer::FutureProducer;
use tokio::time::Instant;

use super::step;
use crate::clients::{fill, subscribe_request, GatewayChannel, Target};
use crate::cpu::cpu_seconds;
use crate::options::Options;

/// Events each run acks.
pub(crate) const EVENTS: usize = 1_000;

/// One way of acking, measured.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Way {
    /// Acks a second.
    pub(crate) acks_per_second: f64,
    /// The median Settle call, in microseconds.
    pub(crate) p50_us: f64,
    /// CPU time of both replicas per ack, in microseconds.
    pub(crate) cpu_us: f64,
}

/// The local and the forwarded way.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Forward {
    pub(crate) local: Way,
    pub(crate) forwarded: Way,
}

/// The two replicas: where each listens, and its process id.
pub(crate) type Pair = [(Target, u32); 2];

/// Writes [`EVENTS`] events of `--size` bytes to a new one-partition
/// topic `topic`, then measures both ways `--repeat` times each.
pub(crate) async fn run(
    brokers: &str,
    (producer, topic): (&FutureProducer, &str),
    pair: &Pair,
    options: &Options,
) -> Result<Forward, String> {
    step("acks at any replica: a unary Settle at the stream's replica, and at another");
    testkit::create_topics(brokers, &[topic], 1).await?;
    fill(producer, topic, EVENTS as u64, options.size).await?;
    let mut channels = Vec::new();
    for (target, _) in pair {
        target.wait_serving().await?;
        channels.push(target.connect(1).await?.remove(0));
    }
    let (pids, patience) = ([pair[0].1, pair[1].1], options.patience);
    let (mut local, mut forwarded) = (Vec::new(), Vec::new());
    for _ in 0..options.repeat.max(1) {
        local.push(acks(&channels[0], &channels[0], topic, pids, patience).await?);
        forwarded.push(acks(&channels[0], &channels[1], topic, pids, patience).await?);
    }
    Ok(Forward {
        local: medians(&local),
        forwarded: medians(&forwarded),
    })
}

/// The middle of `values` (the mean of the two middle ones).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn medians(runs: &[Way]) -> Way {
    let of = |f: fn(&Way) -> f64| median(runs.iter().map(f).collect());
    Way {
        acks_per_second: of(|w| w.acks_per_second),
        p50_us: of(|w| w.p50_us),
        cpu_us: of(|w| w.cpu_us),
    }
}

/// One stream on `stream` (a new group, from the earliest event), each
/// delivery acked with a Settle call at `settle`, until [`EVENTS`] were.
async fn acks(
    stream: &GatewayChannel,
    settle: &GatewayChannel,
    topic: &str,
    pids: [u32; 2],
    patience: Duration,
) -> Result<Way, String> {
    let mut request = subscribe_request(topic, StartFrom::Earliest);
    request.ack_mode = AckMode::Manual as i32;
    request.max_unacked = 100;
    request.group = format!("bench-forward-{}", uuid::Uuid::now_v7().simple());
    let mut reader = EventGatewayClient::new(stream.clone());
    let mut acker = EventGatewayClient::new(settle.clone());
    let mut deliveries = reader
        .subscribe(request)
        .await
        .map_err(|status| format!("Subscribe: {status}"))?
        .into_inner();
    let mut id = String::new();
    let mut calls = Vec::with_capacity(EVENTS);
    let cpu = || cpu_seconds(pids[0]) + cpu_seconds(pids[1]);
    let (mut started, mut cpu_before) = (None, 0.0);
    let deadline = Instant::now() + patience;
    while calls.len() < EVENTS {
        let message = tokio::time::timeout_at(deadline, deliveries.message())
            .await
            .map_err(|_| format!("{EVENTS} acks not done within {patience:?}"))?
            .map_err(|status| format!("the stream failed: {status}"))?
            .ok_or("the stream ended")?;
        let delivery = match message.kind {
            Some(Kind::Subscribed(subscribed)) => {
                id = subscribed.subscription_id;
                continue;
            }
            Some(Kind::Delivery(delivery)) => delivery,
            _ => continue,
        };
        if started.is_none() {
            started = Some(Instant::now());
            cpu_before = cpu();
        }
        let call = Instant::now();
        let answer = acker
            .settle(SettleRequest {
                subscription_id: id.clone(),
                acks: vec![delivery.ack_id],
                ..SettleRequest::default()
            })
            .await
            .map_err(|status| format!("Settle: {status}"))?
            .into_inner();
        calls.push(call.elapsed().as_secs_f64() * 1e6);
        if answer.results.first().map(|r| r.outcome) != Some(SettleOutcome::Accepted as i32) {
            return Err(format!("an ack was not accepted: {answer:?}"));
        }
    }
    let elapsed = started.map_or(Duration::ZERO, |s| s.elapsed());
    let spent = cpu() - cpu_before;
    Ok(Way {
        acks_per_second: EVENTS as f64 / elapsed.as_secs_f64(),
        p50_us: median(calls),
        cpu_us: spent * 1e6 / EVENTS as f64,
    })
}
