//! A member joining a group: the time from the subscribe call to its first
//! delivery, through the gateway (a Subscribe stream with a group of its
//! own) and with a direct librdkafka consumer, under each group protocol.
//! The median of `--repeat` joins, each with a new group.

use std::time::Duration;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::{subscribe_response::Kind, StartFrom};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use tokio::time::Instant;

use rdkafka::producer::FutureProducer;

use super::step;
use crate::clients::{fill, subscribe_request, Target};
use crate::options::Options;

/// What joining a group took under one protocol, in milliseconds.
#[derive(Debug, Clone)]
pub(crate) struct Join {
    /// `classic` or `consumer`.
    pub(crate) protocol: &'static str,
    /// A direct librdkafka consumer: subscribe to first message.
    pub(crate) direct_ms: f64,
    /// The gateway: Subscribe call to first delivery.
    pub(crate) gateway_ms: f64,
}

/// Joins a new group on `topic` (which holds events) `rounds` times with
/// each protocol, directly and through the gateway serving it (`gateways`:
/// protocol and gateway); the medians.
/// Writes 10 events to a new topic `topic`, then measures
/// [`join_times`] through each of `gateways`, `--repeat` rounds.
pub(crate) async fn run(
    brokers: &str,
    (producer, topic): (&FutureProducer, &str),
    gateways: &[(&'static str, &Target)],
    o: &Options,
) -> Result<Vec<Join>, String> {
    step("a member joining a group: classic and consumer protocols");
    testkit::create_topics(brokers, &[topic], o.partitions).await?;
    fill(producer, topic, 10, o.size).await?;
    join_times(brokers, gateways, topic, o.repeat, o.patience).await
}

async fn join_times(
    brokers: &str,
    gateways: &[(&'static str, &Target)],
    topic: &str,
    rounds: usize,
    patience: Duration,
) -> Result<Vec<Join>, String> {
    let mut joins = Vec::new();
    for (protocol, gateway) in gateways {
        gateway.wait_serving().await?;
        let channel = gateway.connect(1).await?.remove(0);
        let (mut direct, mut through) = (Vec::new(), Vec::new());
        for _ in 0..rounds.max(1) {
            let (brokers, joined, protocol) = (brokers.to_owned(), topic.to_owned(), *protocol);
            let took = tokio::task::spawn_blocking(move || {
                direct_join(&brokers, &joined, protocol, patience)
            })
            .await
            .map_err(|error| error.to_string())??;
            direct.push(took);
            through.push(gateway_join(channel.clone(), topic.to_owned(), patience).await?);
        }
        joins.push(Join {
            protocol,
            direct_ms: median_ms(direct),
            gateway_ms: median_ms(through),
        });
    }
    Ok(joins)
}

/// A direct consumer joins a new group with `protocol` and reads its
/// first message (blocking).
fn direct_join(
    brokers: &str,
    topic: &str,
    protocol: &str,
    patience: Duration,
) -> Result<Duration, String> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("bench-join-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("group.protocol", protocol)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    if protocol == "classic" {
        config.set("partition.assignment.strategy", "cooperative-sticky");
    }
    let consumer: BaseConsumer = config
        .create()
        .map_err(|error| format!("a direct consumer: {error}"))?;
    let began = Instant::now();
    consumer
        .subscribe(&[topic])
        .map_err(|error| format!("subscribe: {error}"))?;
    while began.elapsed() < patience {
        match consumer.poll(Duration::from_millis(10)) {
            Some(Ok(_)) => return Ok(began.elapsed()),
            Some(Err(error)) => return Err(format!("a direct consumer: {error}")),
            None => {}
        }
    }
    Err(format!(
        "a direct consumer of {protocol} got nothing within {patience:?}"
    ))
}

/// A Subscribe stream with a new group reads its first delivery.
async fn gateway_join(
    channel: crate::clients::GatewayChannel,
    topic: String,
    patience: Duration,
) -> Result<Duration, String> {
    let mut client = EventGatewayClient::new(channel);
    let mut request = subscribe_request(&topic, StartFrom::Earliest);
    request.group = format!("bench-join-{}", uuid::Uuid::now_v7().simple());
    let began = Instant::now();
    let mut stream = client
        .subscribe(request)
        .await
        .map_err(|status| format!("Subscribe: {status}"))?
        .into_inner();
    let first = tokio::time::timeout(patience, async {
        loop {
            match stream.message().await {
                Ok(Some(message)) if matches!(message.kind, Some(Kind::Delivery(_))) => {
                    return Ok(began.elapsed())
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err("the stream ended".to_owned()),
                Err(status) => return Err(format!("the stream failed: {status}")),
            }
        }
    })
    .await
    .map_err(|_| format!("no delivery within {patience:?}"))?;
    first
}

/// The median of `runs`, in milliseconds.
fn median_ms(mut runs: Vec<Duration>) -> f64 {
    runs.sort();
    runs.get(runs.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}
