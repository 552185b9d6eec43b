//! Reading: a plain consumer from the beginning of a topic, and one
//! Subscribe stream of the same events, over gRPC and over gRPC-Web.

use std::time::Duration;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::{subscribe_response::Kind, StartFrom, SubscribeResponse};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use tokio::time::Instant;
use tonic::Streaming;
use tonic_web::GrpcWebClientLayer;
use tower::Layer;

use crate::clients::{subscribe_request, GatewayChannel, WARM_UP};
use crate::tally::{Tally, Throughput};

/// Reads every record of `topic` from the beginning with a plain consumer.
pub(crate) async fn direct_consume(
    brokers: &str,
    topic: &str,
    events: u64,
    patience: Duration,
) -> Result<Throughput, String> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("bench-direct-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|error| format!("cannot create the direct consumer: {error}"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|error| format!("cannot read the metadata of {topic}: {error}"))?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .map_err(|error| error.to_string())?;
    }
    let mut tally = Tally::new(events);
    let started = Instant::now();
    consumer
        .assign(&assignment)
        .map_err(|error| error.to_string())?;
    while !tally.complete() {
        match tokio::time::timeout(patience, consumer.recv()).await {
            Ok(Ok(message)) => match message.key().map(String::from_utf8_lossy) {
                Some(key) if key == WARM_UP => {}
                Some(key) => tally.mark_key(&key),
                None => tally.error("a record without a key"),
            },
            Ok(Err(error)) => tally.error(format!("direct consume: {error}")),
            Err(_) => {
                tally.error(format!("direct consume: nothing for {patience:?}"));
                break;
            }
        }
    }
    Ok(Throughput::new(
        "direct consume",
        events,
        started.elapsed(),
        tally,
    ))
}

/// The next message of `stream` within `patience`, or `None` (with the
/// reason in `tally`) when the stream failed, ended or went quiet; `rpc`
/// names it.
pub(super) async fn next_message<T>(
    stream: &mut Streaming<T>,
    tally: &mut Tally,
    patience: Duration,
    rpc: &str,
) -> Option<T> {
    match tokio::time::timeout(patience, stream.message()).await {
        Ok(Ok(Some(message))) => Some(message),
        Ok(Ok(None)) => {
            tally.error("the subscription ended early");
            None
        }
        Ok(Err(status)) => {
            tally.error(format!("{rpc}: {status}"));
            None
        }
        Err(_) => {
            tally.error(format!("{rpc}: nothing for {patience:?}"));
            None
        }
    }
}

/// Reads the deliveries of an open subscription into `tally` until every
/// event arrived (warm-up events aside).
pub(super) async fn receive(
    stream: &mut Streaming<SubscribeResponse>,
    tally: &mut Tally,
    patience: Duration,
) {
    while !tally.complete() {
        let Some(message) = next_message(stream, tally, patience, "Subscribe").await else {
            return;
        };
        if let Some(Kind::Delivery(delivery)) = message.kind {
            if delivery.key != WARM_UP {
                tally.mark_key(&delivery.key);
            }
        }
    }
}

/// One Subscribe stream reading `topic` from its earliest event.
pub(crate) async fn subscribe(
    channel: &GatewayChannel,
    topic: &str,
    events: u64,
    patience: Duration,
) -> Throughput {
    let mut client = EventGatewayClient::new(channel.clone());
    let mut tally = Tally::new(events);
    let started = Instant::now();
    match client
        .subscribe(subscribe_request(topic, StartFrom::Earliest))
        .await
    {
        Ok(stream) => receive(&mut stream.into_inner(), &mut tally, patience).await,
        Err(status) => tally.error(format!("Subscribe: {status}")),
    }
    Throughput::new("Subscribe (one stream)", events, started.elapsed(), tally)
}

/// The name of the gRPC-Web Subscribe scenario.
pub(crate) const GRPC_WEB_SUBSCRIBE: &str = "Subscribe over gRPC-Web";

/// One Subscribe stream reading `topic` from its earliest event over
/// gRPC-Web and HTTP/1.1, as a browser reads it, from the gateway at `url`.
pub(crate) async fn subscribe_grpc_web(
    url: &str,
    topic: &str,
    events: u64,
    patience: Duration,
) -> Throughput {
    let mut tally = Tally::new(events);
    let http1 = Client::builder(TokioExecutor::new()).build_http();
    let origin = match url.parse() {
        Ok(origin) => origin,
        Err(error) => {
            tally.error(format!("the gateway's URL {url}: {error}"));
            return Throughput::new(GRPC_WEB_SUBSCRIBE, events, Duration::ZERO, tally);
        }
    };
    let mut client =
        EventGatewayClient::with_origin(GrpcWebClientLayer::new().layer(http1), origin);
    let started = Instant::now();
    match client
        .subscribe(subscribe_request(topic, StartFrom::Earliest))
        .await
    {
        Ok(stream) => receive(&mut stream.into_inner(), &mut tally, patience).await,
        Err(status) => tally.error(format!("Subscribe over gRPC-Web: {status}")),
    }
    Throughput::new(GRPC_WEB_SUBSCRIBE, events, started.elapsed(), tally)
}
