//! The scenarios of `gateway-bench` and their report.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventgateway::record::{event_to_record, OutgoingRecord};
use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::publish_events_response::Result as Outcome;
use eventgateway::v1::{
    event::Data, subscribe_response::Kind, AckMode, Event, PublishEventRequest,
    PublishEventsRequest, StartFrom, SubscribeRequest,
};
use gateway::kafka::producer::future_record;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use tokio::sync::{mpsc, Barrier};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::cpu::{CpuTime, Processes};
use crate::Options;

/// Direct producer: events enqueued and not yet confirmed, at most.
const DIRECT_WINDOW: usize = 50_000;
/// Fan-out streams per gRPC connection.
const STREAMS_PER_CONNECTION: usize = 100;

/// Which events of a scenario arrived (by index), and how many errors.
#[derive(Debug, Clone)]
struct Tally {
    seen: Vec<bool>,
    unique: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new(events: u64) -> Self {
        Self {
            seen: vec![false; events as usize],
            unique: 0,
            errors: 0,
            first_error: None,
        }
    }

    /// Marks event `index` (a record key) as arrived.
    fn mark(&mut self, index: &str) {
        match index
            .parse::<usize>()
            .ok()
            .and_then(|i| self.seen.get_mut(i))
        {
            Some(seen) if !*seen => {
                *seen = true;
                self.unique += 1;
            }
            Some(_) => {}
            None => self.error(format!("an event with an unknown key {index:?}")),
        }
    }

    fn error(&mut self, message: impl Into<String>) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| message.into());
    }

    fn complete(&self) -> bool {
        self.unique == self.seen.len() as u64
    }

    fn merge(&mut self, other: Tally) {
        for (i, seen) in other.seen.into_iter().enumerate() {
            if seen && !self.seen[i] {
                self.seen[i] = true;
                self.unique += 1;
            }
        }
        self.errors += other.errors;
        if let Some(error) = other.first_error {
            self.first_error.get_or_insert(error);
        }
    }
}

/// One throughput measurement.
#[derive(Debug, Clone)]
struct Throughput {
    name: &'static str,
    events: u64,
    elapsed: Duration,
    tally: Tally,
    /// CPU time the processes spent in the scenario.
    cpu: Option<CpuTime>,
}

impl Throughput {
    /// CPU microseconds per event: load generator, gateway, broker, all.
    fn cpu_per_event_us(&self) -> [f64; 4] {
        match self.cpu {
            Some(cpu) if self.events > 0 => cpu.per_event_us(self.events),
            _ => [f64::NAN; 4],
        }
    }

    fn eps(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    /// Why the scenario does not account for every event, if it does not.
    fn problem(&self) -> Option<String> {
        if self.tally.complete() && self.tally.errors == 0 {
            return None;
        }
        Some(format!(
            "{}: {} of {} events accounted for, {} errors{}",
            self.name,
            self.tally.unique,
            self.tally.seen.len(),
            self.tally.errors,
            self.tally
                .first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        ))
    }
}

/// What a scenario returns: its measurement, or why it could not run.
trait Measured {
    fn with_cpu(self, cpu: CpuTime) -> Self;
}

impl Measured for Throughput {
    fn with_cpu(mut self, cpu: CpuTime) -> Self {
        self.cpu = Some(cpu);
        self
    }
}

impl Measured for Result<Throughput, String> {
    fn with_cpu(self, cpu: CpuTime) -> Self {
        self.map(|t| t.with_cpu(cpu))
    }
}

/// Runs `scenario`, recording the CPU time the processes spent in it.
async fn on_cpu<T: Measured>(processes: &Processes, scenario: impl Future<Output = T>) -> T {
    let before = processes.now();
    let outcome = scenario.await;
    outcome.with_cpu(processes.now() - before)
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            p50: f64::NAN,
            p99: f64::NAN,
            max: f64::NAN,
        }
    }
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }

        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i].as_secs_f64() * 1000.0
        };
        Self {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// What the benchmark measured.
pub(crate) struct Report {
    options: Options,
    direct_produce: Throughput,
    direct_closed: Throughput,
    unary: Throughput,
    stream: Throughput,
    direct_consume: Throughput,
    subscribe: Throughput,
    fanout: Throughput,
    direct_latency: (Latency, Tally),
    publish_latency: (Latency, Tally),
    peak_rss_mib: f64,
}

/// Runs every scenario against the gateway listening on `port` (process
/// `processes.gateway`) in front of `brokers`.
pub(crate) async fn run(
    options: &Options,
    brokers: &str,
    port: u16,
    processes: Processes,
) -> Result<Report, String> {
    let o = options;
    let patience = o.patience;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let topic = |name: &str| format!("bench-{name}-{run_id}");
    let (direct_topic, closed_topic, unary_topic, stream_topic, fanout_topic, latency_topic) = (
        topic("direct"),
        topic("closed"),
        topic("unary"),
        topic("stream"),
        topic("fanout"),
        topic("latency"),
    );
    create_topics(
        brokers,
        &[
            &direct_topic,
            &closed_topic,
            &unary_topic,
            &stream_topic,
            &fanout_topic,
            &latency_topic,
        ],
        o.partitions,
    )
    .await?;
    let producer = direct_producer(brokers, o.linger_ms)?;
    let gateway = format!("http://127.0.0.1:{port}");
    wait_serving(&gateway).await?;
    let channels = connect(&gateway, o.channels.max(1)).await?;
    // Warm both paths up: connections, metadata, the gateway's topic cache.
    for t in [
        &direct_topic,
        &unary_topic,
        &stream_topic,
        &fanout_topic,
        &latency_topic,
    ] {
        warm_up(&channels[0], t).await?;
    }
    // The direct producer too: its first send fetches metadata and a
    // producer id.
    let warm = event_to_record("warm-up", event(16, uuid::Uuid::now_v7().to_string()));
    let first = enqueue(&producer, &direct_topic, &warm).await?;
    if !matches!(first.await, Ok(Ok(_))) {
        return Err("the direct producer cannot write to the broker".into());
    }

    let runs = |name: &str| o.only.is_empty() || o.only.iter().any(|n| n == name);
    // The short publish scenarios alternate, `--repeat` times each, and
    // report their median: one burst of interference on a shared machine
    // then moves neither side of the ratio much.
    let (mut direct_runs, mut stream_runs) = (Vec::new(), Vec::new());
    for round in 1..=o.repeat.max(1) {
        if runs("produce") {
            step(&format!("direct produce ({round}/{})", o.repeat));
            direct_runs.push(
                on_cpu(
                    &processes,
                    direct_produce(&producer, &direct_topic, o.events, o.size),
                )
                .await?,
            );
        }
        if runs("stream") {
            step(&format!("streaming PublishEvents ({round}/{})", o.repeat));
            stream_runs.push(
                on_cpu(
                    &processes,
                    stream(
                        &channels,
                        &stream_topic,
                        o.events,
                        o.size,
                        o.publish_streams,
                    ),
                )
                .await,
            );
        }
    }
    let direct_produce = median(direct_runs).unwrap_or_else(|| skipped("direct produce"));
    let stream = median(stream_runs).unwrap_or_else(|| skipped("streaming PublishEvents"));
    let direct_closed = if runs("closed") {
        step("direct closed loop");
        let closed = direct_closed_loop(&producer, &closed_topic, o.events, o.size, o.concurrency);
        on_cpu(&processes, closed).await
    } else {
        skipped("direct closed loop (C tasks)")
    };
    let unary = if runs("unary") {
        step("unary PublishEvent");
        let calls = unary(&channels, &unary_topic, o.events, o.size, o.concurrency);
        on_cpu(&processes, calls).await
    } else {
        skipped("unary PublishEvent")
    };
    // Both consumers read what the gateway stored (every event published
    // through it must be in Kafka), or else what the direct producer stored.
    let stored = if runs("unary") {
        Some(&unary_topic)
    } else if runs("produce") {
        Some(&direct_topic)
    } else {
        None
    };
    let (direct_consume, subscribe) = match stored {
        Some(topic) if runs("consume") || runs("subscribe") => {
            step("direct consume");
            let direct = on_cpu(
                &processes,
                direct_consume(brokers, topic, o.events, patience),
            )
            .await?;
            step("Subscribe");
            let gateway = on_cpu(
                &processes,
                subscribe(&channels[0], topic, o.events, patience),
            )
            .await;
            (direct, gateway)
        }
        Some(_) => (skipped("direct consume"), skipped("Subscribe (one stream)")),
        None if runs("consume") || runs("subscribe") => {
            return Err(
                "consume and subscribe read what produce or unary stored: run one of them too"
                    .into(),
            )
        }
        None => (skipped("direct consume"), skipped("Subscribe (one stream)")),
    };
    let fanout = if runs("fanout") {
        step("fan-out");
        let deliveries = fanout(
            &gateway,
            &producer,
            &fanout_topic,
            o.fanout_streams,
            o.fanout_events,
            o.size,
            patience,
        );
        on_cpu(&processes, deliveries).await?
    } else {
        skipped("fan-out (deliveries)")
    };
    let (direct_latency, publish_latency) = if runs("latency") {
        step("latency: direct producer and PublishEvent, alternating each second");
        let (direct, gateway) = latencies(
            &producer,
            &channels[0],
            &latency_topic,
            o.latency_rate,
            o.latency_events,
            o.latency_size,
        )
        .await?;
        (direct, gateway)
    } else {
        let none = (Latency::default(), Tally::new(0));
        (none.clone(), none)
    };
    Ok(Report {
        options: options.clone(),
        direct_produce,
        direct_closed,
        unary,
        stream,
        direct_consume,
        subscribe,
        fanout,
        direct_latency,
        publish_latency,
        peak_rss_mib: peak_rss_mib(processes.gateway),
    })
}

/// The run with the median rate; a run that lost events wins, so that it is
/// reported.
fn median(mut runs: Vec<Throughput>) -> Option<Throughput> {
    if let Some(bad) = runs.iter().position(|run| run.problem().is_some()) {
        return Some(runs.swap_remove(bad));
    }
    runs.sort_by(|a, b| a.eps().total_cmp(&b.eps()));
    let middle = runs.len() / 2;
    (!runs.is_empty()).then(|| runs.swap_remove(middle))
}

/// A scenario left out with `--only`: no figures (null in the JSON).
fn skipped(name: &'static str) -> Throughput {
    Throughput {
        name,
        events: 0,
        elapsed: Duration::ZERO,
        tally: Tally::new(0),
        cpu: None,
    }
}

fn step(name: &str) {
    eprintln!("== {name}");
}

/// The benchmark's event `index`: a binary payload of `size` bytes, keyed by
/// its index. `id` empty lets the gateway fill it.
fn event(size: usize, id: String) -> Event {
    Event {
        id,
        r#type: "bench.event".into(),
        source: "/gateway-bench".into(),
        data: Some(Data::Binary(vec![b'x'; size])),
        ..Event::default()
    }
}

/// The record a direct client writes: the same record the gateway writes
/// for the same event, so that both sides move the same bytes.
fn direct_record(index: u64, size: usize) -> OutgoingRecord {
    let key = index.to_string();
    event_to_record(&key, event(size, uuid::Uuid::now_v7().to_string()))
}

fn publish_request(topic: &str, index: u64, size: usize) -> PublishEventRequest {
    PublishEventRequest {
        topic: topic.to_owned(),
        key: index.to_string(),
        event: Some(event(size, String::new())),
    }
}

async fn create_topics(brokers: &str, topics: &[&String], partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|error| format!("cannot create an admin client: {error}"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .map_err(|error| format!("cannot create topics: {error}"))?;
    for result in results {
        result.map_err(|(topic, code)| format!("cannot create topic {topic}: {code}"))?;
    }
    Ok(())
}

/// The baseline producer: what a service embedding librdkafka would run,
/// with the gateway producer's guarantees (acks=all, idempotence).
fn direct_producer(brokers: &str, linger_ms: u64) -> Result<FutureProducer, String> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", linger_ms.to_string())
        .set("compression.type", "none")
        .create()
        .map_err(|error| format!("cannot create the direct producer: {error}"))
}

/// Enqueues one record, waiting for room in librdkafka's queue when full.
async fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    record: &OutgoingRecord,
) -> Result<DeliveryFuture, String> {
    let mut future_record = future_record(topic, record);
    loop {
        match producer.send_result(future_record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                future_record = back;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err((error, _)) => return Err(format!("direct produce failed: {error}")),
        }
    }
}

async fn direct_produce(
    producer: &FutureProducer,
    topic: &str,
    events: u64,
    size: usize,
) -> Result<Throughput, String> {
    let mut tally = Tally::new(events);
    let mut pending: VecDeque<(u64, DeliveryFuture)> = VecDeque::new();
    let settle =
        |tally: &mut Tally,
         index: u64,
         outcome: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, _>| {
            match outcome {
                Ok(Ok(_)) => tally.mark(&index.to_string()),
                Ok(Err((error, _))) => tally.error(format!("direct produce: {error}")),
                Err(_) => tally.error("direct produce: the producer went away"),
            }
        };
    let started = Instant::now();
    // Each record is built in the loop, as a client builds its event.
    for index in 0..events {
        if pending.len() >= DIRECT_WINDOW {
            let (i, delivery) = pending.pop_front().expect("not empty");
            settle(&mut tally, i, delivery.await);
        }
        let record = direct_record(index, size);
        pending.push_back((index, enqueue(producer, topic, &record).await?));
    }
    for (i, delivery) in pending {
        settle(&mut tally, i, delivery.await);
    }
    Ok(Throughput {
        name: "direct produce",
        events,
        elapsed: started.elapsed(),
        tally,
        cpu: None,
    })
}

/// `concurrency` tasks, each sending event after event and awaiting each
/// answer before the next, until `events` are sent; `sender(task)` makes a
/// task's send.
async fn closed_loop<S, F>(
    name: &'static str,
    events: u64,
    concurrency: usize,
    mut sender: impl FnMut(usize) -> S,
) -> Throughput
where
    S: FnMut(u64) -> F + Send + 'static,
    F: Future<Output = Result<(), String>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for task in 0..concurrency.max(1) {
        let (mut send, next) = (sender(task), next.clone());
        tasks.spawn(async move {
            let mut tally = Tally::new(events);
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= events {
                    return tally;
                }
                match send(index).await {
                    Ok(()) => tally.mark(&index.to_string()),
                    Err(error) => tally.error(error),
                }
            }
        });
    }
    let tally = gather(tasks, events).await;
    Throughput {
        name,
        events,
        elapsed: started.elapsed(),
        tally,
        cpu: None,
    }
}

/// The closed loop of unary PublishEvent, with the direct producer instead
/// of the gateway.
async fn direct_closed_loop(
    producer: &FutureProducer,
    topic: &str,
    events: u64,
    size: usize,
    concurrency: usize,
) -> Throughput {
    closed_loop("direct closed loop (C tasks)", events, concurrency, |_| {
        let (producer, topic) = (producer.clone(), topic.to_owned());
        move |index| {
            let (producer, topic) = (producer.clone(), topic.clone());
            async move {
                let delivery = enqueue(&producer, &topic, &direct_record(index, size)).await?;
                match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    _ => Err("direct produce failed".to_owned()),
                }
            }
        }
    })
    .await
}

async fn wait_serving(url: &str) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(channel) = Channel::from_shared(url.to_owned())
            .expect("a valid URL")
            .connect()
            .await
        {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            let status = health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .map(|r| r.into_inner().status);
            if status.ok() == Some(tonic_health::ServingStatus::Serving as i32) {
                return Ok(());
            }
        }
        if Instant::now() > until {
            return Err(format!(
                "the gateway at {url} did not report SERVING within 60s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `count` separate connections to the gateway.
async fn connect(url: &str, count: usize) -> Result<Vec<Channel>, String> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        let channel = Channel::from_shared(url.to_owned())
            .expect("a valid URL")
            .connect()
            .await
            .map_err(|error| format!("cannot connect to the gateway at {url}: {error}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

async fn warm_up(channel: &Channel, topic: &str) -> Result<(), String> {
    let mut client = EventGatewayClient::new(channel.clone());
    let request = PublishEventRequest {
        topic: topic.to_owned(),
        key: "warm-up".into(),
        event: Some(event(16, String::new())),
    };
    client
        .publish_event(request)
        .await
        .map(drop)
        .map_err(|status| format!("warm-up publish to {topic} failed: {status}"))
}

async fn unary(
    channels: &[Channel],
    topic: &str,
    events: u64,
    size: usize,
    concurrency: usize,
) -> Throughput {
    closed_loop("unary PublishEvent", events, concurrency, |task| {
        let client = EventGatewayClient::new(channels[task % channels.len()].clone());
        let topic = topic.to_owned();
        move |index| {
            let mut client = client.clone();
            let request = publish_request(&topic, index, size);
            async move {
                client
                    .publish_event(request)
                    .await
                    .map(drop)
                    .map_err(|status| format!("PublishEvent: {status}"))
            }
        }
    })
    .await
}

async fn gather(mut tasks: JoinSet<Tally>, events: u64) -> Tally {
    let mut tally = Tally::new(events);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(part) => tally.merge(part),
            Err(error) => tally.error(format!("a client task failed: {error}")),
        }
    }
    tally
}

async fn stream(
    channels: &[Channel],
    topic: &str,
    events: u64,
    size: usize,
    streams: usize,
) -> Throughput {
    let streams = streams.max(1) as u64;
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for s in 0..streams {
        let mut client = EventGatewayClient::new(channels[s as usize % channels.len()].clone());
        let topic = topic.to_owned();
        tasks.spawn(async move {
            let mut tally = Tally::new(events);
            let mine: Vec<u64> = (s..events).step_by(streams as usize).collect();
            let expected = mine.len() as u64;
            let (tx, rx) = mpsc::channel(1024);
            tokio::spawn(async move {
                for index in mine {
                    let request = PublishEventsRequest {
                        request_id: index.to_string(),
                        publish: Some(publish_request(&topic, index, size)),
                    };
                    if tx.send(request).await.is_err() {
                        return;
                    }
                }
            });
            let mut answers = match client.publish_events(ReceiverStream::new(rx)).await {
                Ok(answers) => answers.into_inner(),
                Err(status) => {
                    tally.error(format!("PublishEvents: {status}"));
                    return tally;
                }
            };
            let mut answered = 0;
            while answered < expected {
                match answers.message().await {
                    Ok(Some(answer)) => {
                        answered += 1;
                        match answer.result {
                            Some(Outcome::Stored(_)) => tally.mark(&answer.request_id),
                            Some(Outcome::Error(error)) => {
                                tally.error(format!("PublishEvents answer: {}", error.message))
                            }
                            None => tally.error("PublishEvents answer without a result"),
                        }
                    }
                    Ok(None) => {
                        tally.error("PublishEvents ended early");
                        break;
                    }
                    Err(status) => {
                        tally.error(format!("PublishEvents: {status}"));
                        break;
                    }
                }
            }
            tally
        });
    }
    let tally = gather(tasks, events).await;
    Throughput {
        name: "streaming PublishEvents",
        events,
        elapsed: started.elapsed(),
        tally,
        cpu: None,
    }
}

/// Reads every record of `topic` from the beginning with a plain consumer.
async fn direct_consume(
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
                Some(key) if key == "warm-up" => {}
                Some(key) => tally.mark(&key),
                None => tally.error("a record without a key"),
            },
            Ok(Err(error)) => tally.error(format!("direct consume: {error}")),
            Err(_) => {
                tally.error(format!("direct consume: nothing for {patience:?}"));
                break;
            }
        }
    }
    Ok(Throughput {
        name: "direct consume",
        events,
        elapsed: started.elapsed(),
        tally,
        cpu: None,
    })
}

fn subscribe_request(topic: &str, start: StartFrom) -> SubscribeRequest {
    SubscribeRequest {
        topics: vec![topic.to_owned()],
        start_from: start as i32,
        ack_mode: AckMode::Auto as i32,
        ..SubscribeRequest::default()
    }
}

/// Reads `events` deliveries of an open subscription into `tally`.
async fn receive(
    stream: &mut tonic::Streaming<eventgateway::v1::SubscribeResponse>,
    tally: &mut Tally,
    patience: Duration,
) {
    while !tally.complete() {
        match tokio::time::timeout(patience, stream.message()).await {
            Ok(Ok(Some(message))) => {
                if let Some(Kind::Delivery(delivery)) = message.kind {
                    if delivery.key != "warm-up" {
                        tally.mark(&delivery.key);
                    }
                }
            }
            Ok(Ok(None)) => {
                tally.error("the subscription ended early");
                return;
            }
            Ok(Err(status)) => {
                tally.error(format!("Subscribe: {status}"));
                return;
            }
            Err(_) => {
                tally.error(format!("Subscribe: nothing for {patience:?}"));
                return;
            }
        }
    }
}

async fn subscribe(channel: &Channel, topic: &str, events: u64, patience: Duration) -> Throughput {
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
    Throughput {
        name: "Subscribe (one stream)",
        events,
        elapsed: started.elapsed(),
        tally,
        cpu: None,
    }
}

/// Opens `streams` ephemeral subscriptions from the latest event, then
/// publishes `events` events directly to Kafka; each stream must receive
/// every one. Throughput counts deliveries: streams x events.
async fn fanout(
    url: &str,
    producer: &FutureProducer,
    topic: &str,
    streams: usize,
    events: u64,
    size: usize,
    patience: Duration,
) -> Result<Throughput, String> {
    let channels = connect(url, streams.div_ceil(STREAMS_PER_CONNECTION).max(1)).await?;
    let subscribed = Arc::new(Barrier::new(streams + 1));
    let mut tasks = JoinSet::new();
    for s in 0..streams {
        let mut client = EventGatewayClient::new(channels[s % channels.len()].clone());
        let (topic, subscribed) = (topic.to_owned(), subscribed.clone());
        tasks.spawn(async move {
            let mut tally = Tally::new(events);
            let opened = client
                .subscribe(subscribe_request(&topic, StartFrom::Latest))
                .await;
            let mut stream = match opened {
                Ok(stream) => stream.into_inner(),
                Err(status) => {
                    tally.error(format!("Subscribe: {status}"));
                    subscribed.wait().await;
                    return tally;
                }
            };
            match stream.message().await {
                Ok(Some(m)) if matches!(m.kind, Some(Kind::Subscribed(_))) => {}
                other => tally.error(format!("expected Subscribed first, got {other:?}")),
            }
            subscribed.wait().await;
            receive(&mut stream, &mut tally, patience).await;
            tally
        });
    }
    tokio::time::timeout(patience, subscribed.wait())
        .await
        .map_err(|_| format!("{streams} streams not subscribed within {patience:?}"))?;
    let started = Instant::now();
    let mut pending = Vec::with_capacity(events as usize);
    for index in 0..events {
        pending.push(enqueue(producer, topic, &direct_record(index, size)).await?);
    }
    for delivery in pending {
        if !matches!(delivery.await, Ok(Ok(_))) {
            return Err("fan-out: the direct producer could not store an event".into());
        }
    }
    // Every stream must have every event; one tally per stream.
    let mut tally = Tally::new(streams as u64);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(part) if part.complete() && part.errors == 0 => tally.unique += 1,
            Ok(part) => tally.error(format!(
                "a stream received {} of {events} events, {} errors{}",
                part.unique,
                part.errors,
                part.first_error
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            )),
            Err(error) => tally.error(format!("a stream task failed: {error}")),
        }
    }
    tally.seen.iter_mut().for_each(|s| *s = true);
    Ok(Throughput {
        name: "fan-out (deliveries)",
        events: streams as u64 * events,
        elapsed: started.elapsed(),
        tally,
        cpu: None,
    })
}

/// Open loop: event i is due at start + i/rate whatever happened before;
/// its latency runs from when it was due to when Kafka confirmed it.
fn schedule(rate: u64) -> impl Fn(u64) -> Instant {
    let start = Instant::now() + Duration::from_millis(100);
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    move |i| start + period.mul_f64(i as f64)
}

async fn collect_latencies(
    mut tasks: JoinSet<Result<Duration, String>>,
    events: u64,
) -> (Latency, Tally) {
    let mut tally = Tally::new(events);
    let mut samples = Vec::with_capacity(events as usize);
    let mut index = 0u64;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(latency)) => {
                samples.push(latency);
                tally.mark(&index.to_string());
                index += 1;
            }
            Ok(Err(error)) => tally.error(error),
            Err(error) => tally.error(format!("a task failed: {error}")),
        }
    }
    (Latency::of(samples), tally)
}

/// Open-loop latency of the direct producer and of PublishEvent, in
/// alternating blocks of one second each: both sides see the same machine
/// over the run, not one the quiet minute and the other a busy one.
async fn latencies(
    producer: &FutureProducer,
    channel: &Channel,
    topic: &str,
    rate: u64,
    events: u64,
    size: usize,
) -> Result<((Latency, Tally), (Latency, Tally)), String> {
    let mut direct = JoinSet::new();
    let mut gateway = JoinSet::new();
    let block = rate.max(1);
    let mut first = 0;
    while first < events {
        let last = (first + block).min(events);
        let due = schedule(rate);
        for index in first..last {
            let record = direct_record(index, size);
            let at = due(index - first);
            tokio::time::sleep_until(at).await;
            let delivery = enqueue(producer, topic, &record).await?;
            direct.spawn(async move {
                match delivery.await {
                    Ok(Ok(_)) => Ok(at.elapsed()),
                    _ => Err("direct produce failed".to_owned()),
                }
            });
        }
        let due = schedule(rate);
        for index in first..last {
            let request = publish_request(topic, index, size);
            let mut client = EventGatewayClient::new(channel.clone());
            let at = due(index - first);
            tokio::time::sleep_until(at).await;
            gateway.spawn(async move {
                client
                    .publish_event(request)
                    .await
                    .map(|_| at.elapsed())
                    .map_err(|status| format!("PublishEvent: {status}"))
            });
        }
        first = last;
    }
    Ok((
        collect_latencies(direct, events).await,
        collect_latencies(gateway, events).await,
    ))
}

/// The peak resident memory of process `pid` (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

impl Report {
    fn ratio(gateway: &Throughput, direct: &Throughput) -> f64 {
        gateway.eps() / direct.eps()
    }

    /// Direct CPU time per event over the gateway path's: the highest
    /// `ratio` the gateway path can reach where all processes share cores
    /// that the scenario keeps busy.
    fn cpu_ratio(gateway: &Throughput, direct: &Throughput) -> f64 {
        direct.cpu_per_event_us()[3] / gateway.cpu_per_event_us()[3]
    }

    /// The measured scenarios, with their names in the JSON.
    fn throughputs(&self) -> [(&'static str, &Throughput); 7] {
        [
            ("direct_produce", &self.direct_produce),
            ("unary_publish", &self.unary),
            ("direct_closed_loop", &self.direct_closed),
            ("stream_publish", &self.stream),
            ("direct_consume", &self.direct_consume),
            ("subscribe", &self.subscribe),
            ("fanout", &self.fanout),
        ]
    }

    /// The results as JSON.
    pub(crate) fn json(&self) -> String {
        let o = &self.options;
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        let cpu: serde_json::Map<String, serde_json::Value> = self
            .throughputs()
            .into_iter()
            .map(|(name, t)| {
                let [client, gateway, broker, total] = t.cpu_per_event_us();
                let value = serde_json::json!({
                    "load_generator": round(client),
                    "gateway": round(gateway),
                    "broker": round(broker),
                    "total": round(total),
                });
                (name.to_owned(), value)
            })
            .collect();
        let value = serde_json::json!({
            "events": o.events,
            "size_bytes": o.size,
            "partitions": o.partitions,
            "concurrency": o.concurrency,
            "channels": o.channels,
            "publish_streams": o.publish_streams,
            "repeat": o.repeat,
            "linger_ms": o.linger_ms,
            "direct_produce_eps": round(self.direct_produce.eps()),
            "unary_publish_eps": round(self.unary.eps()),
            "unary_ratio": round(Self::ratio(&self.unary, &self.direct_produce)),
            "direct_closed_loop_eps": round(self.direct_closed.eps()),
            "unary_closed_loop_ratio": round(Self::ratio(&self.unary, &self.direct_closed)),
            "stream_publish_eps": round(self.stream.eps()),
            "stream_ratio": round(Self::ratio(&self.stream, &self.direct_produce)),
            "direct_consume_eps": round(self.direct_consume.eps()),
            "subscribe_eps": round(self.subscribe.eps()),
            "subscribe_ratio": round(Self::ratio(&self.subscribe, &self.direct_consume)),
            "fanout_streams": o.fanout_streams,
            "fanout_events": o.fanout_events,
            "fanout_eps": round(self.fanout.eps()),
            "latency_rate": o.latency_rate,
            "latency_events": o.latency_events,
            "latency_size_bytes": o.latency_size,
            "direct_p50_ms": round(self.direct_latency.0.p50),
            "direct_p99_ms": round(self.direct_latency.0.p99),
            "publish_p50_ms": round(self.publish_latency.0.p50),
            "publish_p99_ms": round(self.publish_latency.0.p99),
            "added_p50_ms": round(self.publish_latency.0.p50 - self.direct_latency.0.p50),
            "added_p99_ms": round(self.publish_latency.0.p99 - self.direct_latency.0.p99),
            "gateway_peak_rss_mib": round(self.peak_rss_mib),
            "cpu_us_per_event": cpu,
            "stream_cpu_ratio": round(Self::cpu_ratio(&self.stream, &self.direct_produce)),
            "subscribe_cpu_ratio": round(Self::cpu_ratio(&self.subscribe, &self.direct_consume)),
            "all_accounted": self.problems().is_empty(),
        });
        serde_json::to_string_pretty(&value).expect("JSON") + "\n"
    }

    /// Prints the table.
    pub(crate) fn print(&self) {
        let o = &self.options;
        println!();
        println!(
            "{} events of {} B, {} partitions, linger.ms={}",
            o.events, o.size, o.partitions, o.linger_ms
        );
        println!(
            "{:<34} {:>12} {:>9} {:>8}",
            "scenario", "events/s", "seconds", "ratio"
        );
        let row = |t: &Throughput, ratio: Option<f64>| {
            println!(
                "{:<34} {:>12.0} {:>9.2} {:>8}",
                t.name,
                t.eps(),
                t.elapsed.as_secs_f64(),
                ratio.map(|r| format!("{r:.2}")).unwrap_or_default()
            );
        };
        row(&self.direct_produce, None);
        row(
            &self.unary,
            Some(Self::ratio(&self.unary, &self.direct_produce)),
        );
        row(
            &self.stream,
            Some(Self::ratio(&self.stream, &self.direct_produce)),
        );
        row(&self.direct_closed, None);
        row(
            &self.unary,
            Some(Self::ratio(&self.unary, &self.direct_closed)),
        );
        row(&self.direct_consume, None);
        row(
            &self.subscribe,
            Some(Self::ratio(&self.subscribe, &self.direct_consume)),
        );
        row(&self.fanout, None);
        println!(
            "fan-out: {} streams x {} events",
            o.fanout_streams, o.fanout_events
        );
        println!();
        println!(
            "{:<34} {:>9} {:>9} {:>9} {:>9}",
            "CPU per event, microseconds", "load gen", "gateway", "broker", "all"
        );
        for (_, t) in self.throughputs() {
            let [client, gateway, broker, total] = t.cpu_per_event_us();
            println!(
                "{:<34} {client:>9.2} {gateway:>9.2} {broker:>9.2} {total:>9.2}",
                t.name
            );
        }
        println!(
            "CPU-bound ceiling of the ratios (direct CPU per event / gateway's): streaming {:.2}, Subscribe {:.2}",
            Self::cpu_ratio(&self.stream, &self.direct_produce),
            Self::cpu_ratio(&self.subscribe, &self.direct_consume),
        );
        println!();
        println!(
            "latency at {} events/s of {} B (open loop, {} events each)",
            o.latency_rate, o.latency_size, o.latency_events
        );
        println!("{:<34} {:>9} {:>9} {:>9}", "", "p50 ms", "p99 ms", "max ms");
        for (name, l) in [
            ("direct FutureProducer", self.direct_latency.0),
            ("PublishEvent", self.publish_latency.0),
        ] {
            println!("{name:<34} {:>9.2} {:>9.2} {:>9.2}", l.p50, l.p99, l.max);
        }
        println!(
            "{:<34} {:>9.2} {:>9.2}",
            "added by the gateway",
            self.publish_latency.0.p50 - self.direct_latency.0.p50,
            self.publish_latency.0.p99 - self.direct_latency.0.p99
        );
        println!();
        println!("gateway peak RSS: {:.1} MiB", self.peak_rss_mib);
        for problem in self.problems() {
            println!("NOT ACCOUNTED FOR: {problem}");
        }
    }

    fn problems(&self) -> Vec<String> {
        let latency = |name: &'static str, (_, tally): &(Latency, Tally)| Throughput {
            name,
            events: 0,
            elapsed: Duration::ZERO,
            tally: tally.clone(),
            cpu: None,
        };
        [
            &self.direct_produce,
            &self.direct_closed,
            &self.unary,
            &self.stream,
            &self.direct_consume,
            &self.subscribe,
            &self.fanout,
            &latency("latency: direct", &self.direct_latency),
            &latency("latency: PublishEvent", &self.publish_latency),
        ]
        .iter()
        .filter_map(|t| t.problem())
        .collect()
    }

    /// Fails unless every event of every scenario was accounted for.
    pub(crate) fn check(&self) -> Result<(), String> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("events not accounted for: {}", problems.join("; ")))
        }
    }
}
