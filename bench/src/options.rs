//! The benchmark's command line: what to run, how big, against what.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Measures the gateway against direct Kafka clients on the same broker.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway-bench", version)]
pub(crate) struct Options {
    /// Kafka bootstrap servers to use; without it an Apache Kafka node
    /// (testkit's, resolved by scripts/kafka.sh) is started on free ports.
    #[arg(long)]
    pub(crate) brokers: Option<String>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Events per throughput scenario.
    #[arg(long, default_value_t = 200_000)]
    pub(crate) events: u64,
    /// Payload bytes per event in the throughput scenarios.
    #[arg(long, default_value_t = 256)]
    pub(crate) size: usize,
    /// Partitions of each topic the benchmark creates.
    #[arg(long, default_value_t = 3)]
    pub(crate) partitions: i32,
    /// Runs of the direct produce and streaming scenarios (alternating);
    /// the median of each is reported.
    #[arg(long, default_value_t = 3)]
    pub(crate) repeat: usize,
    /// Concurrent client tasks calling PublishEvent.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// gRPC connections the unary tasks share.
    #[arg(long, default_value_t = 4)]
    pub(crate) channels: usize,
    /// PublishEvents streams sharing the streaming scenario's events.
    #[arg(long, default_value_t = 4)]
    pub(crate) publish_streams: usize,
    /// Events per request in the batched streaming scenario.
    #[arg(long, default_value_t = 100)]
    pub(crate) batch: usize,
    /// Concurrent ephemeral Subscribe streams on one topic (fan-out).
    #[arg(long, default_value_t = 1000)]
    pub(crate) fanout_streams: usize,
    /// Events published while the fan-out streams are open; each stream must
    /// receive every one.
    #[arg(long, default_value_t = 1000)]
    pub(crate) fanout_events: u64,
    /// Offered rate of the latency scenario, events per second.
    #[arg(long, default_value_t = 1000)]
    pub(crate) latency_rate: u64,
    /// Events a second the viewer scenario publishes while the page shows
    /// them.
    #[arg(long, default_value_t = 100)]
    pub(crate) viewer_rate: u64,
    /// Events of the viewer scenario.
    #[arg(long, default_value_t = 1000)]
    pub(crate) viewer_events: u64,
    /// Events of the latency scenario (each side).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) latency_events: u64,
    /// Payload bytes per event in the latency scenario.
    #[arg(long, default_value_t = 1024)]
    pub(crate) latency_size: usize,
    /// linger.ms of both the direct producer and the gateway's producer
    /// (default: the gateway's default).
    #[arg(long, default_value = gateway::LINGER_MS)]
    pub(crate) linger_ms: u64,
    /// Longest the benchmark waits for an expected event before it counts
    /// the rest as missing, e.g. 30s.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub(crate) patience: Duration,
    /// Run only these scenarios (comma-separated): produce, closed, unary,
    /// floor (Health/Check from the unary scenario's callers: what any call
    /// costs before the gateway's own work),
    /// stream (one event and one batch a request), batched (only the
    /// batches), consume, subscribe, acks
    /// (one MANUAL reader acking every delivery on the stream, one with unary
    /// Acknowledge, and an AUTO one, alternating), fanout, latency, and
    /// secure (a second gateway with TLS, tokens and a policy: its stream
    /// and latency, beside those of the plain one), and compression (a JSON
    /// payload through two more gateways writing lz4 and zstd, and with gzip
    /// and zstd gRPC messages), and viewer (the live event viewer in
    /// headless Chromium: publish to display; needs web/'s packages and
    /// chromium), and join (a member joining a group to its first delivery,
    /// directly and through the gateway, under the classic and consumer
    /// group protocols; a third gateway serves the consumer protocol), and
    /// share (one partition read by one stream and by eight sharing one
    /// member, 1 ms and 20 ms a delivery), and forward (a unary Settle at
    /// the stream's replica and at another that forwards it; two more
    /// gateways with an internal listener each), and http (the unary
    /// callers POSTing CloudEvents over plain HTTP). The others report null.
    #[arg(long, value_delimiter = ',', value_parser = ["produce", "closed", "unary", "floor", "stream", "batched", "consume", "subscribe", "acks", "fanout", "latency", "secure", "compression", "viewer", "join", "share", "forward", "http"])]
    pub(crate) only: Vec<String>,
    /// Extra gateway flag (repeatable), e.g. `--gateway-arg=--subscription-buffer=256`.
    #[arg(long = "gateway-arg", allow_hyphen_values = true)]
    pub(crate) gateway_args: Vec<String>,
}
