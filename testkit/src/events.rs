//! Publishing and subscribing the way the tests do: numbered JSON events,
//! subscriptions that start with `subscribed`, deliveries within a bound.

use std::time::Duration;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::{
    event::Data, subscribe_response::Kind, Delivery, Event, PublishEventRequest,
    PublishEventResponse, SubscribeRequest, SubscribeResponse,
};
use tonic::transport::Channel;
use tonic::Streaming;

use crate::wait::PATIENCE;

/// A JSON event with the given body.
pub fn json_event(body: serde_json::Value) -> Event {
    Event {
        r#type: "test.event".into(),
        source: "/tests".into(),
        data: eventgateway::json::json_to_struct(body.to_string().as_bytes()).map(Data::Json),
        ..Event::default()
    }
}

/// Publishes a JSON event and returns the gateway's answer; fails the test
/// unless it is stored.
pub async fn publish(
    client: &mut EventGatewayClient<Channel>,
    topic: &str,
    key: &str,
    body: serde_json::Value,
) -> PublishEventResponse {
    client
        .publish_event(PublishEventRequest {
            topic: topic.into(),
            key: key.into(),
            event: Some(json_event(body)),
        })
        .await
        .expect("publish succeeds")
        .into_inner()
}

/// Publishes events numbered `from..from + count` (body `{"n": i}`, key
/// `key-i`) and returns the next number.
pub async fn publish_numbered(
    client: &mut EventGatewayClient<Channel>,
    topic: &str,
    from: i64,
    count: i64,
) -> i64 {
    for i in from..from + count {
        publish(
            client,
            topic,
            &format!("key-{i}"),
            serde_json::json!({"n": i}),
        )
        .await;
    }
    from + count
}

/// Acknowledges deliveries of subscription `id`.
pub async fn ack(client: &mut EventGatewayClient<Channel>, id: &str, deliveries: &[&Delivery]) {
    client
        .acknowledge(eventgateway::v1::AcknowledgeRequest {
            subscription_id: id.into(),
            ack_ids: deliveries.iter().map(|d| d.ack_id.clone()).collect(),
        })
        .await
        .expect("acknowledge succeeds");
}

/// Opens a subscription and returns its id and stream.
pub async fn subscribe(
    client: &mut EventGatewayClient<Channel>,
    request: impl tonic::IntoRequest<SubscribeRequest>,
) -> (String, Streaming<SubscribeResponse>) {
    let mut stream = client
        .subscribe(request)
        .await
        .expect("subscribe succeeds")
        .into_inner();
    match stream
        .message()
        .await
        .expect("first message")
        .map(|m| m.kind)
    {
        Some(Some(Kind::Subscribed(subscribed))) => (subscribed.subscription_id, stream),
        other => panic!("expected Subscribed first, got {other:?}"),
    }
}

/// The next delivery of a stream, within [`PATIENCE`]; rebalance notices
/// on the way are skipped.
pub async fn next_delivery(stream: &mut Streaming<SubscribeResponse>) -> Delivery {
    next_delivery_within(stream, PATIENCE)
        .await
        .expect("a delivery arrives in time")
}

/// The next delivery of a stream, or `None` when none comes within `wait`;
/// rebalance notices on the way are skipped. Fails the test if the stream
/// fails or ends.
pub async fn next_delivery_within(
    stream: &mut Streaming<SubscribeResponse>,
    wait: Duration,
) -> Option<Delivery> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let message = tokio::time::timeout_at(deadline, stream.message())
            .await
            .ok()?
            .expect("the stream is healthy")
            .expect("the stream is open");
        match message.kind {
            Some(Kind::Delivery(delivery)) => return Some(delivery),
            Some(Kind::Rebalance(_)) => continue,
            other => panic!("expected a delivery, got {other:?}"),
        }
    }
}

/// An ephemeral subscription to `topic` from its earliest event.
pub fn from_earliest(topic: &str) -> SubscribeRequest {
    SubscribeRequest {
        topics: vec![topic.to_owned()],
        start_from: eventgateway::v1::StartFrom::Earliest as i32,
        ..SubscribeRequest::default()
    }
}

/// The `n` field of a delivery's JSON body (the tests number their events).
pub fn n(delivery: &Delivery) -> i64 {
    body(delivery)["n"].as_i64().expect("an event numbered n")
}

/// The JSON body of a delivery.
pub fn body(delivery: &Delivery) -> serde_json::Value {
    match delivery.event.as_ref().and_then(|e| e.data.as_ref()) {
        Some(Data::Json(object)) => {
            serde_json::from_slice(&eventgateway::json::struct_to_json(object)).unwrap()
        }
        other => panic!("expected a JSON payload, got {other:?}"),
    }
}
