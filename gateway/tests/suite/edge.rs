//! The edge holds against clients that hold on: requests that never
//! finish arriving, connections that never start a call or stay idle, more
//! connections than allowed, and a subscriber that freezes. Each case is
//! driven by a real client (a raw HTTP/2 client, raw TCP, grpcurl) against
//! a real gateway, and asserts what the others can still do.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use eventgateway::v1::{StartFrom, SubscribeRequest};
use serde_json::json;
use testkit::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// PublishEvent calls whose headers were sent and whose body never comes.
type Stalled = Vec<(h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>)>;

/// A raw HTTP/2 connection to `addr`, driven in the background.
async fn h2_connection(addr: std::net::SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    h2
}

/// A gRPC request for `method` over raw HTTP/2.
fn grpc_request(addr: std::net::SocketAddr, method: &str) -> http::Request<()> {
    http::Request::post(format!("http://{addr}/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// The grpc-status of a response whose headers carry it (trailers only).
fn grpc_status(response: &http::Response<h2::RecvStream>) -> Option<&[u8]> {
    response
        .headers()
        .get("grpc-status")
        .map(|value| value.as_bytes())
}

/// Opens `count` PublishEvent calls on `h2`, sending their headers and
/// never their body.
async fn calls_that_never_arrive(
    h2: &mut h2::client::SendRequest<bytes::Bytes>,
    count: usize,
    addr: std::net::SocketAddr,
) -> Stalled {
    let mut calls = Vec::with_capacity(count);
    for _ in 0..count {
        *h2 = h2.clone().ready().await.unwrap();
        let request = grpc_request(addr, "eventgateway.v1.EventGateway/PublishEvent");
        // The stream stays open: its body never comes.
        calls.push(h2.send_request(request, false).unwrap());
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_whose_request_never_arrives_hold_nothing_the_others_need() {
    let (_broker, topic, gateway, mut client) = fixture_with("slow-loris", 1, |config| {
        config.edge.request_arrival_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = gateway.addr();
    // More than --max-concurrent-requests (1024), on two connections.
    let mut stalled = calls_that_never_arrive(&mut h2_connection(addr).await, 550, addr).await;
    stalled.extend(calls_that_never_arrive(&mut h2_connection(addr).await, 550, addr).await);

    // Health and publishing answer meanwhile: a call counts against the
    // limit only once its request has arrived.
    assert_eq!(
        health(addr, "").await.unwrap(),
        tonic_health::ServingStatus::Serving as i32
    );
    publish(&mut client, &topic, "k", json!({"n": 1})).await;

    // Each stalled call ends with DEADLINE_EXCEEDED once its bound passed.
    for (response, _body) in stalled {
        let response = tokio::time::timeout(PATIENCE, response)
            .await
            .expect("a stalled call is answered")
            .unwrap();
        assert_eq!(
            grpc_status(&response),
            Some(&b"4"[..]),
            "{:?}",
            response.headers()
        );
    }
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_carries_no_more_calls_at_once_than_its_cap() {
    let (_broker, _topic, gateway, _client) = fixture_with("stream-cap", 1, |config| {
        config.edge.max_streams_per_connection = 5;
    })
    .await;
    let addr = gateway.addr();
    let mut h2 = h2_connection(addr).await;
    // One whole call first: its answer comes after the server's settings.
    let (health, mut body) = h2
        .send_request(grpc_request(addr, "grpc.health.v1.Health/Check"), false)
        .unwrap();
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    assert_eq!(health.await.unwrap().status(), http::StatusCode::OK);
    // The server told the client its cap.
    assert_eq!(h2.current_max_send_streams(), 5);

    let mut stalled = calls_that_never_arrive(&mut h2, 5, addr).await;
    // A sixth call, whole, waits for a slot: the client holds it back.
    let sixth = tokio::spawn(async move {
        let mut h2 = h2.ready().await.unwrap();
        let (response, _) = h2
            .send_request(grpc_request(addr, "grpc.health.v1.Health/Check"), true)
            .unwrap();
        response.await
    });
    // One stalled call given up frees its slot, and the sixth is answered.
    drop(stalled.pop());
    let sixth = tokio::time::timeout(PATIENCE, sixth)
        .await
        .expect("the sixth call is answered")
        .unwrap()
        .unwrap();
    assert_eq!(sixth.status(), http::StatusCode::OK);
    assert_eq!(stalled.len(), 4);
    gateway.shutdown().await.unwrap();
}

/// Waits until the server closes `tcp`: a read returns end of file or an
/// error.
async fn closed_by_the_server(tcp: &mut TcpStream) {
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, tcp.read(&mut buffer))
            .await
            .expect("the server closes the connection")
        {
            Ok(0) | Err(_) => return,
            // Whatever the server says first (its HTTP/2 settings).
            Ok(_) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_call_are_closed_and_those_with_a_stream_are_not() {
    let (_broker, topic, gateway, mut client) = fixture_with("idle", 1, |config| {
        config.edge.handshake_timeout = Duration::from_millis(500);
        config.edge.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let metrics = gateway.metrics_addr().unwrap();
    // A subscription opened now keeps its connection busy.
    let mut subscriber = testkit::client(gateway.addr()).await;
    let (_, mut stream) = subscribe(&mut subscriber, latest(&topic)).await;
    // A connection that never starts a call is closed.
    let mut silent = TcpStream::connect(gateway.addr()).await.unwrap();
    closed_by_the_server(&mut silent).await;
    // So is one whose calls are over, once it stays idle: of three
    // connections (the fixture's client, the subscriber's, this one), the
    // two without a call in progress go.
    health(gateway.addr(), "").await.unwrap();
    metrics_show(metrics, &["gateway_open_connections 1".to_owned()]).await;
    // The subscription's connection stayed: the stream goes on.
    publish(&mut client, &topic, "k", json!({"n": 7})).await;
    assert_eq!(n(&next_delivery(&mut stream).await), 7);
    gateway.shutdown().await.unwrap();
}

fn latest(topic: &str) -> SubscribeRequest {
    SubscribeRequest {
        topics: vec![topic.to_owned()],
        start_from: StartFrom::Latest as i32,
        ..SubscribeRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let broker = Broker::start().await;
    let mut config = config(Some(broker.brokers()));
    config.edge.max_connections = 3;
    // Held connections start no call: they must outlast the test.
    config.edge.handshake_timeout = Duration::from_secs(600);
    let gateway = gateway(config).await;
    let metrics = gateway.metrics_addr().unwrap();
    // The start-up health checks' connection is closed by its client;
    // once it is gone, these three fill the cap.
    metrics_show(metrics, &["gateway_open_connections 0".to_owned()]).await;
    let mut held = Vec::new();
    while held.len() < 3 {
        held.push(TcpStream::connect(gateway.addr()).await.unwrap());
    }
    metrics_show(metrics, &["gateway_open_connections 3".to_owned()]).await;
    let mut refused = TcpStream::connect(gateway.addr()).await.unwrap();
    closed_by_the_server(&mut refused).await;
    metric_reaches(metrics, "gateway_refused_connections_total", 1.0).await;
    // One goes, and a new client gets in.
    drop(held.pop());
    wait_serving(gateway.addr()).await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_subscriber_loses_its_partitions_to_the_rest_of_its_group() {
    let (_broker, topic, gateway, mut client) = fixture_with("frozen", 2, |config| {
        config.edge.keepalive_interval = Duration::from_secs(1);
        config.edge.keepalive_timeout = Duration::from_secs(1);
    })
    .await;
    let group = format!("group-{topic}");
    let request = json!({
        "topics": [topic],
        "group": group,
        "start_from": "START_FROM_EARLIEST",
    });
    // Member A: grpcurl, in a process of its own.
    let mut frozen = Command::new(grpcurl())
        .args(["-plaintext", "-d", &request.to_string()])
        .arg(gateway.addr().to_string())
        .arg("eventgateway.v1.EventGateway/Subscribe")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("grpcurl runs");
    let mut frozen_output = Lines::of(frozen.stdout.take().unwrap());
    frozen_output.wait_for("subscriptionId").await;
    // Member B: this test.
    let member = SubscribeRequest {
        topics: vec![topic.clone()],
        group: group.clone(),
        start_from: StartFrom::Earliest as i32,
        ..SubscribeRequest::default()
    };
    let (_, mut alive) = subscribe(&mut client, member).await;
    // Publish until both members hold a partition: B got events, and A got
    // one after B's first.
    let deliveries_of_a = |lines: &mut Lines| {
        let lines = lines.so_far();
        lines.iter().filter(|l| l.contains("\"delivery\"")).count()
    };
    let mut next = 0;
    let mut a_when_b_began = None;
    // Bounded by time, not by events: while B gets its events at once the
    // loop is quick, and a Kafka rebalance may take longer than a count.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group never gave both members a partition ({next} events)"
        );
        publish(&mut client, &topic, &format!("k{next}"), json!({"n": next})).await;
        next += 1;
        if next_delivery_within(&mut alive, Duration::from_millis(200))
            .await
            .is_some()
        {
            a_when_b_began.get_or_insert(deliveries_of_a(&mut frozen_output));
        }
        if a_when_b_began.is_some_and(|before| deliveries_of_a(&mut frozen_output) > before) {
            break;
        }
    }
    // A freezes, its socket still open: the gateway's pings go unanswered,
    // its connection closes, and B takes over A's partition.
    sigstop(&frozen);
    let mut b_partitions = HashSet::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while b_partitions.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the frozen member kept its partition"
        );
        publish(&mut client, &topic, &format!("k{next}"), json!({"n": next})).await;
        next += 1;
        if let Some(delivery) = next_delivery_within(&mut alive, Duration::from_millis(300)).await {
            b_partitions.insert(delivery.partition);
        }
    }
    let _ = frozen.kill();
    let _ = frozen.wait();
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_files_limit_is_raised_to_the_hard_limit() {
    let broker = Broker::start().await;
    let hard = std::fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .expect("this process's open-files limit");
    if hard.parse::<u64>().is_ok_and(|hard| hard <= 1024) {
        panic!("the hard open-files limit here is {hard}: nothing to raise");
    }
    // Started with the common soft limit of 1,024.
    let gateway_binary = env!("CARGO_BIN_EXE_gateway");
    let port = free_port();
    let (gateway, _log) = gateway_process(
        "prlimit".as_ref(),
        port,
        &broker.brokers(),
        &[],
        &[&format!("--nofile=1024:{hard}"), "--", gateway_binary],
    );
    wait_serving(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", gateway.id())).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(open_files[3], hard, "{limits}");
    sigterm_and_wait(gateway).await;
}
