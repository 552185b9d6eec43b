//! What a hostile or careless client sends must not stall the gateway nor
//! grow what it writes: huge counts are refused before the work that grows
//! with them, and huge strings never reach a status message or a log line
//! whole.

use std::time::Duration;

use eventgateway::v1::{
    event::Data, AckMode, AcknowledgeRequest, Event, Extend, PartitionOffset, PublishEventRequest,
    SettleRequest, StartFrom, SubscribeRequest,
};
use serde_json::json;
use testkit::*;
use tonic::Code;

/// A client string far beyond any bound: 3 MiB.
fn huge(fill: char) -> String {
    std::iter::repeat_n(fill, 3 << 20).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribes_naming_100000_topics_are_refused_at_once_while_publishes_go_on() {
    let (_broker, topic, gateway, mut client) = fixture("many-topics", 1).await;
    let many = SubscribeRequest {
        topics: (0..100_000).map(|i| format!("topic-{i:06}")).collect(),
        ..SubscribeRequest::default()
    };
    let mut refusals = Vec::new();
    for _ in 0..3 {
        let mut subscriber = client.clone();
        let mut request = tonic::Request::new(many.clone());
        // The bound is the point: checked one by one against a list, such a
        // request held a runtime worker for over a minute.
        request.set_timeout(Duration::from_secs(10));
        refusals.push(tokio::spawn(
            async move { subscriber.subscribe(request).await },
        ));
    }
    // Meanwhile the gateway serves others (`publish` fails unless stored).
    publish(&mut client, &topic, "k", json!({"n": 1})).await;
    wait_serving(gateway.addr()).await;
    for refusal in refusals {
        let status = refusal.await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("at most 100"), "{status:?}");
    }
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_client_strings_make_neither_large_statuses_nor_large_log_lines() {
    let broker = Broker::start().await;
    let topic = topic("huge");
    broker.create_topic(&topic, 1).await;
    let port = free_port();
    let (gateway, mut log) = gateway_process(
        env!("CARGO_BIN_EXE_gateway").as_ref(),
        port,
        &broker.brokers(),
        &[("RUST_LOG", "debug")],
        &[],
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_serving(addr).await;
    let mut client = client(addr).await;

    let event = |attributes: Vec<(String, String)>| Event {
        data: Some(Data::Text("x".into())),
        attributes: attributes.into_iter().collect(),
        ..Event::default()
    };
    let publishes = [
        PublishEventRequest {
            topic: huge('t'),
            key: String::new(),
            event: Some(event(vec![])),
        },
        PublishEventRequest {
            topic: format!("{}/", huge('t')),
            key: String::new(),
            event: Some(event(vec![])),
        },
        PublishEventRequest {
            topic: topic.clone(),
            key: String::new(),
            event: Some(event(vec![(format!("ce_{}", huge('a')), "x".into())])),
        },
    ];
    let mut statuses = Vec::new();
    for request in publishes {
        statuses.push(client.publish_event(request).await.unwrap_err());
    }
    let subscribes = [
        SubscribeRequest {
            topics: vec![format!("{}/", huge('s'))],
            ..SubscribeRequest::default()
        },
        SubscribeRequest {
            topics: vec![topic.clone()],
            group: format!("{}\n", huge('g')),
            ..SubscribeRequest::default()
        },
        SubscribeRequest {
            topics: vec![topic.clone()],
            start_from: StartFrom::Offsets as i32,
            start_offsets: vec![PartitionOffset {
                topic: huge('o'),
                partition: 0,
                offset: 0,
            }],
            ..SubscribeRequest::default()
        },
    ];
    for request in subscribes {
        statuses.push(client.subscribe(request).await.unwrap_err());
    }
    let (id, _stream) = subscribe(
        &mut client,
        SubscribeRequest {
            ack_mode: AckMode::Manual as i32,
            ..from_earliest(&topic)
        },
    )
    .await;
    for (subscription_id, ack_id) in [
        (huge('i'), format!("{topic}:0:0")),
        (id.clone(), huge('k')),
        (id.clone(), format!("{}:0:0", "k".repeat(200))),
    ] {
        let request = AcknowledgeRequest {
            subscription_id,
            ack_ids: vec![ack_id],
        };
        statuses.push(client.acknowledge(request).await.unwrap_err());
    }
    for status in &statuses {
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.code());
        assert!(
            status.message().len() < 1024,
            "a status message of {} bytes",
            status.message().len()
        );
    }

    // A well-formed id of no open subscription, over and over: NOT_FOUND
    // each time, a log line at most each second, never with the whole id.
    let unknown = uuid::Uuid::new_v4().to_string();
    let began = std::time::Instant::now();
    for _ in 0..300 {
        let request = AcknowledgeRequest {
            subscription_id: unknown.clone(),
            ack_ids: vec![format!("{topic}:0:0:1")],
        };
        let status = client.acknowledge(request).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }
    let took = began.elapsed();

    let exited = sigterm_and_wait(gateway).await;
    assert!(exited.success(), "{exited:?}");
    let lines = log.to_end().await;
    let not_found = lines
        .iter()
        .filter(|l| l.contains("acknowledge refused") && l.contains(&unknown[..8]))
        .count();
    assert!(
        (1..=took.as_secs() as usize + 1).contains(&not_found),
        "{not_found} lines for 300 refusals in {took:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains(&unknown)),
        "a whole subscription id was logged"
    );
    assert!(
        lines.iter().any(|l| l.contains("publish refused")),
        "the refusals are logged"
    );
    // A subscription id lets its holder acknowledge: logs name a prefix.
    assert!(
        lines.iter().any(|l| l.contains(&id[..8])),
        "the subscription is logged by its prefix"
    );
    assert!(
        !lines.iter().any(|l| l.contains(&id)),
        "a whole subscription id was logged"
    );
    let longest = lines.iter().map(String::len).max().unwrap_or_default();
    assert!(longest < 4096, "a log line of {longest} bytes");
    let total: usize = lines.iter().map(String::len).sum();
    assert!(total < (1 << 20), "{total} bytes of logs");
}

/// Sends `message` (already framed as gRPC wants it, or not) as the whole
/// request of `method` over a raw HTTP/2 connection; returns the call's
/// grpc-status and grpc-message, from the headers or the trailers.
async fn raw_call(addr: std::net::SocketAddr, method: &str, message: Vec<u8>) -> (String, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut h2 = h2.ready().await.unwrap();
    let request = http::Request::post(format!(
        "http://{addr}/eventgateway.v1.EventGateway/{method}"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .unwrap();
    let (response, mut body) = h2.send_request(request, false).unwrap();
    body.send_data(message.into(), true).unwrap();
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .expect("an answer")
        .unwrap();
    let header = |map: &http::HeaderMap, name: &str| {
        map.get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    if let Some(status) = header(response.headers(), "grpc-status") {
        let message = header(response.headers(), "grpc-message").unwrap_or_default();
        return (status, message);
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    (
        header(&trailers, "grpc-status").unwrap_or_default(),
        header(&trailers, "grpc-message").unwrap_or_default(),
    )
}

/// A gRPC frame: uncompressed, `length` announced, `payload` following.
fn frame(length: u32, payload: &[u8]) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(payload);
    framed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_cannot_be_decoded_are_bad_input_not_a_fault_of_the_gateway() {
    let (_broker, topic, gateway, mut client) = fixture("undecodable", 1).await;
    let addr = gateway.addr();
    // Not protobuf: a field with wire type 7.
    let garbage = [0x0f, 0xff, 0xff, 0xff];
    for method in ["PublishEvent", "Subscribe", "Acknowledge", "PublishEvents"] {
        let (status, message) = raw_call(addr, method, frame(4, &garbage)).await;
        assert_eq!(status, "3", "{method}: {message}");
    }
    // A frame announcing more than the gateway takes.
    let (status, message) = raw_call(addr, "PublishEvent", frame(u32::MAX, b"")).await;
    assert_eq!(status, "3", "{message}");
    // No message at all, and a message cut short.
    for (what, body) in [("none", Vec::new()), ("cut short", frame(10, b"\x0a\x01"))] {
        for method in ["PublishEvent", "Subscribe", "Acknowledge"] {
            let (status, message) = raw_call(addr, method, body.clone()).await;
            assert_eq!(status, "3", "{method}, {what}: {message}");
        }
    }
    // Nothing of that disturbed the gateway.
    publish(&mut client, &topic, "k", json!({"n": 1})).await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_payload_the_gateway_accepts_by_default_is_stored() {
    let (_broker, topic, gateway, mut client) = fixture("largest", 1).await;
    let largest = gateway::Config::for_brokers(None).limits.max_payload_bytes;
    let event = |size: usize| Event {
        data: Some(Data::Binary(vec![b'x'; size])),
        ..Event::default()
    };
    let request = |size| PublishEventRequest {
        topic: topic.clone(),
        key: "a-key".into(),
        event: Some(event(size)),
    };
    client
        .publish_event(request(largest))
        .await
        .expect("stored");
    let status = client
        .publish_event(request(largest + 1))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let (_, mut stream) = subscribe(&mut client, from_earliest(&topic)).await;
    let delivered = next_delivery(&mut stream).await;
    assert_eq!(
        delivered.event.unwrap().data,
        Some(Data::Binary(vec![b'x'; largest]))
    );
    gateway.shutdown().await.unwrap();
}

/// A stream that extends one delivery over and over (10,000 extends of the
/// same ack id per message) keeps at most two timers for it: each extend
/// overwrites its one deadline, and the last one counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extend_storm_keeps_one_deadline_per_delivery() {
    let (_broker, topic, gateway, mut client) = fixture("extend-storm", 1).await;
    publish(&mut client, &topic, "", json!({"n": 0})).await;
    let request = SubscribeRequest {
        topics: vec![topic.clone()],
        start_from: StartFrom::Earliest as i32,
        ack_mode: AckMode::Manual as i32,
        ..SubscribeRequest::default()
    };
    let mut stream = Streamer::open(&mut client, request).await;
    let delivery = stream.next_delivery().await;
    let stats = gateway
        .subscription(&stream.id)
        .expect("the stream is open");
    let extend = |seconds: i64| Extend {
        ack_id: delivery.ack_id.clone(),
        extension: Some(prost_types::Duration { seconds, nanos: 0 }),
    };
    for round in 0..50 {
        let answer = stream
            .settle(SettleRequest {
                extends: (0..10_000)
                    .map(|i| extend(60 + (i + round) % 500))
                    .collect(),
                ..SettleRequest::default()
            })
            .await;
        assert_eq!(answer.results.len(), 10_000);
        assert!(stats.timers.get() <= 2, "{} timers", stats.timers.get());
    }
    // The last extend counts: a short one makes the delivery come again.
    stream.extend(&delivery, Duration::from_millis(100)).await;
    let again = stream.next_delivery().await;
    assert_eq!((again.offset, again.attempt), (delivery.offset, 2));
    assert!(stats.timers.get() <= 2, "{} timers", stats.timers.get());
    gateway.shutdown().await.unwrap();
}
