//! A slow subscriber: the gateway pauses its consumer instead of buffering
//! without bound, and loses nothing once the client catches up.

use std::time::Duration;

use serde_json::json;
use testkit::*;

/// Deliveries the gateway buffers per subscription in this test.
const BUFFER: usize = 4;

/// A client whose HTTP/2 window is small (64 KiB), as a slow or
/// constrained client's would be; the default window is 2 MiB.
async fn small_window_client(
    addr: std::net::SocketAddr,
) -> eventgateway::v1::event_gateway_client::EventGatewayClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .initial_stream_window_size(64 * 1024)
        .initial_connection_window_size(64 * 1024)
        .connect()
        .await
        .unwrap();
    eventgateway::v1::event_gateway_client::EventGatewayClient::new(channel)
}

#[tokio::test]
async fn a_slow_subscriber_pauses_its_consumer_and_loses_nothing() {
    let (_broker, topic, gateway, mut client) = fixture_with("slow", 1, |config| {
        config.subscriptions.subscription_buffer = BUFFER
    })
    .await;

    let padding = "x".repeat(2048);
    let first_batch = 300;
    for n in 0..first_batch {
        publish(&mut client, &topic, "", json!({"n": n, "pad": padding})).await;
    }
    let mut subscriber = small_window_client(gateway.addr()).await;
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

/// A stream that reads nothing holds at most its byte budget
/// (`--subscription-buffer-bytes`), whatever its delivery count allows:
/// with records of 200 kB and 1 MiB, 5 deliveries go into its channel, not
/// 64; once it reads, every event arrives.
#[tokio::test]
async fn a_stream_buffers_within_its_byte_budget() {
    let (_broker, topic, gateway, mut client) = fixture_with("bytes", 1, |config| {
        config.subscriptions.subscription_buffer = 64;
        config.subscriptions.subscription_buffer_bytes = 1 << 20;
    })
    .await;
    let padding = "x".repeat(200_000);
    for n in 0..40 {
        publish(&mut client, &topic, "", json!({"n": n, "pad": padding})).await;
    }
    let mut subscriber = small_window_client(gateway.addr()).await;
    let (id, mut stream) = subscribe(&mut subscriber, from_earliest(&topic)).await;
    let stats = gateway.subscription(&id).expect("the subscription is live");
    eventually("the consumer is paused", || async { stats.paused.get() }).await;
    // In the channel: the 1 MiB budget's worth (5); one more waiting for
    // room; one taken by gRPC into the 64 KiB window.
    let handed = stats.delivered.get();
    assert!(
        handed <= 7,
        "{handed} deliveries of 200 kB were handed to a stream whose budget is 1 MiB"
    );
    for n in 0..40 {
        let delivery = next_delivery(&mut stream).await;
        assert_eq!(body(&delivery)["n"], json!(n));
    }
    gateway.shutdown().await.unwrap();
}

/// A client that reads nothing for `--stall-timeout` while deliveries wait
/// for it has its stream ended with RESOURCE_EXHAUSTED (after what was
/// buffered), freeing its place and buffer; one that reads slowly, but
/// reads, keeps its stream.
#[tokio::test]
async fn a_stream_whose_client_reads_nothing_for_the_stall_timeout_is_ended() {
    let (_broker, topic, gateway, mut client) = fixture_with("stall", 1, |config| {
        config.subscriptions.stall_timeout = Duration::from_secs(1);
    })
    .await;
    // 200 kB: more than the 64 KiB window of a client that reads nothing.
    let padding = "x".repeat(20_000);
    for n in 0..10 {
        publish(&mut client, &topic, "", json!({"n": n, "pad": padding})).await;
    }
    // Slow but reading: one event every 300 ms, below the timeout.
    let (slow_id, mut slow) = subscribe(&mut client, from_earliest(&topic)).await;
    for n in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let delivery = next_delivery(&mut slow).await;
        assert_eq!(body(&delivery)["n"], json!(n));
    }
    assert!(
        gateway.subscription(&slow_id).is_some(),
        "a reading client's stream was ended"
    );

    let mut subscriber = small_window_client(gateway.addr()).await;
    let (id, mut stalled) = subscribe(&mut subscriber, from_earliest(&topic)).await;
    eventually("the stalled stream ends", || async {
        gateway.subscription(&id).is_none()
    })
    .await;
    let mut read = 0;
    let end = loop {
        match stalled.message().await {
            Ok(Some(_)) => read += 1,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert!(read <= 10, "{read} deliveries");
    assert_eq!(end.code(), tonic::Code::ResourceExhausted, "{end:?}");
    assert!(end.message().contains("--stall-timeout"), "{end:?}");
    gateway.shutdown().await.unwrap();
}

/// The resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib / 1024
}

/// Samples `pid`'s memory every 250 ms until it has not grown for a
/// second (at most 30 s), asserting each sample against `bound`; returns
/// the largest.
async fn settled_rss(pid: u32, bound: usize, when: &str) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (mut peak, mut still) = (0, 0);
    while still < 4 && tokio::time::Instant::now() < deadline {
        let rss = rss_mib(pid);
        assert!(
            rss <= bound,
            "{when}: the gateway holds {rss} MiB, over {bound} MiB"
        );
        if rss > peak {
            (peak, still) = (rss, 0);
        } else {
            still += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    peak
}

/// 256 streams (the `--max-consumers` default) that never read, on a topic
/// of 900 kB records: together they hold at most `--total-buffer-bytes`
/// (here 256 MiB), and the gateway's memory stays within that plus
/// 300 MiB. Each would otherwise hold its 64 deliveries (58 MB) and its
/// consumer's prefetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_reading_streams_stay_within_the_instance_budget() {
    const CONNECTIONS: usize = 8;
    const STREAMS_EACH: usize = 32;
    const BUDGET_MIB: usize = 256;
    let broker = Broker::start().await;
    let topic = topic("never-read");
    broker.create_topic(&topic, 1).await;
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    // Random bytes: no compression makes them smaller anywhere.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..80 {
        let value: Vec<u8> = (0..900_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        producer
            .send(
                rdkafka::producer::FutureRecord::<(), _>::to(&topic).payload(&value),
                Duration::from_secs(30),
            )
            .await
            .expect("Kafka stores a 900 kB record");
    }
    let (port, metrics_port) = (free_port(), free_port());
    let metrics_addr: std::net::SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let budget = (BUDGET_MIB << 20).to_string();
    let (gateway, _log) = gateway_process(
        env!("CARGO_BIN_EXE_gateway").as_ref(),
        port,
        &broker.brokers(),
        &[
            ("METRICS_ADDR", &metrics_addr.to_string()),
            ("TOTAL_BUFFER_BYTES", &budget),
            // As the container image sets it (see the README's Limits).
            ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072"),
        ],
        &[],
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_serving(addr).await;
    let base = rss_mib(gateway.id());
    let bound = base + BUDGET_MIB + 300;
    let mut streams = Vec::new();
    for connection in 0..CONNECTIONS {
        // Windows of 64 KiB per stream, and room for all of them on the
        // connection: each stream's `subscribed` gets through.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .initial_stream_window_size(64 * 1024)
            .initial_connection_window_size(4 << 20)
            .connect()
            .await
            .unwrap();
        let mut client = eventgateway::v1::event_gateway_client::EventGatewayClient::new(channel);
        for _ in 0..STREAMS_EACH {
            streams.push(subscribe(&mut client, from_earliest(&topic)).await.1);
        }
        let streams = streams.len();
        let peak = settled_rss(gateway.id(), bound, &format!("{streams} streams")).await;
        eprintln!("connection {connection}: {streams} streams, {peak} MiB (started at {base} MiB)");
    }
    // The budget is taken: no stream gets more, and the gateway's memory
    // stays.
    let held = metric_reaches(
        metrics_addr,
        "gateway_subscription_buffered_bytes",
        ((BUDGET_MIB - 1) << 20) as f64,
    )
    .await;

    assert!(held <= (BUDGET_MIB << 20) as f64, "{held} bytes buffered");
    let peak = settled_rss(gateway.id(), bound, "the budget taken").await;
    eprintln!(
        "{} never-reading streams: {peak} MiB, {base} MiB at the start",
        streams.len()
    );
    drop(streams);
    sigterm_and_wait(gateway).await;
}
