//! A slow subscriber: the gateway pauses its consumer instead of buffering
//! without bound, and loses nothing once the client catches up.

use std::time::Duration;

use serde_json::json;
use testkit::*;

/// Deliveries the gateway buffers per subscription in this test.
const BUFFER: usize = 4;

#[tokio::test]
async fn a_slow_subscriber_pauses_its_consumer_and_loses_nothing() {
    let (_broker, topic, gateway, mut client) =
        fixture_with("slow", 1, |config| config.subscription_buffer = BUFFER).await;

    let padding = "x".repeat(2048);
    let first_batch = 300;
    for n in 0..first_batch {
        publish(&mut client, &topic, "", json!({"n": n, "pad": padding})).await;
    }
    // The subscriber's HTTP/2 window is small (64 KiB), as a slow or
    // constrained client's would be; the default window is 2 MiB.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gateway.addr()))
        .unwrap()
        .initial_stream_window_size(64 * 1024)
        .initial_connection_window_size(64 * 1024)
        .connect()
        .await
        .unwrap();
    let mut subscriber = eventgateway::v1::event_gateway_client::EventGatewayClient::new(channel);
    let (id, mut stream) = subscribe(&mut subscriber, from_earliest(&topic)).await;
    // The client reads nothing: the gateway fills the channel and the HTTP/2
    // window, then pauses the consumer.
    let stats = gateway.subscription(&id).expect("the subscription is live");
    eventually("the consumer is paused", || async { stats.paused.get() }).await;
    let handed_at_pause = stats.delivered.get();
    assert!(
        handed_at_pause < first_batch,
        "the gateway pulled {handed_at_pause} of {first_batch} events for a client that reads nothing"
    );
    assert!(
        stats.held.get() <= 1,
        "records held outside the channel: {}",
        stats.held.get()
    );

    // More events while paused: none is pulled in.
    for n in first_batch..first_batch + 50 {
        publish(&mut client, &topic, "", json!({"n": n, "pad": padding})).await;
    }
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            stats.paused.get(),
            "the consumer resumed while the client reads nothing"
        );
        assert_eq!(
            stats.delivered.get(),
            handed_at_pause,
            "events were pulled while paused"
        );
    }

    // The client catches up: every event arrives, in order, once.
    for n in 0..first_batch + 50 {
        let delivery = next_delivery(&mut stream).await;
        assert_eq!(body(&delivery)["n"], json!(n));
    }
    assert!(stats.pauses.get() >= 1);
    gateway.shutdown().await.unwrap();
}
