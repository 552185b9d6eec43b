//! The scenarios, run in order against one gateway process and one broker,
//! each beside its direct-Kafka baseline.
//!
//! - `publish`: direct produce, closed loops, unary and streaming publish,
//!   one event or a batch per request.
//! - `consume`: a plain consumer and one Subscribe stream.
//! - `acks`: one MANUAL stream acking every delivery, on the stream or with
//!   unary Acknowledge calls.
//! - `fanout`: many streams on one topic.
//! - `latency`: open-loop publish latency.
//! - `compression`: a JSON payload through each Kafka codec and each gRPC
//!   message encoding.
//! - `viewer`: the live event viewer in a real browser, publish to display.
//! - `join`: a member joining a group, to its first delivery, under each
//!   group protocol.
//! - `share`: one partition read by one stream and by eight sharing one
//!   member, each delivery taking a fixed time to handle.
//! - `http`: the unary callers POSTing CloudEvents, then PublishEvent's
//!   JSON, over plain HTTP.
//! - `forward`: a unary Settle at the stream's replica and at another one,
//!   which forwards it (acks at any replica).
//!
//! With a second, secured gateway (TLS, bearer tokens, a policy), its
//! streaming publish alternates with the plain gateway's, and its latency
//! takes turns with the plain one's and the direct producer's.

mod acks;
pub(crate) mod compression;
mod consume;
mod fanout;
pub(crate) mod forward;
pub(crate) mod http;
pub(crate) mod join;
mod latency;
mod publish;
pub(crate) mod share;
mod viewer;

use crate::clients::{direct_producer, enqueue, warm_up, warm_up_record, Target};
use crate::cpu::{peak_rss_mib, rss_mib, Processes};
use crate::options::Options;
use crate::report::Report;
use crate::tally::{median, on_cpu, paired_efficiency, Latency, Tally, Throughput};

/// The name of the secured gateway's streaming scenario.
const SECURE_STREAM: &str = "streaming, TLS + token + policy";

/// The gateways under test, with the processes whose CPU time counts.
pub(crate) struct Targets {
    /// The gateway as it runs by default.
    pub(crate) plain: (Target, Processes),
    /// The gateway with TLS, bearer tokens and a policy, when it runs.
    pub(crate) secure: Option<(Target, Processes)>,
    /// Gateways writing to Kafka with a codec (`--kafka-compression`), when
    /// the compression scenario runs.
    pub(crate) compressed: Vec<(&'static str, Target, Processes)>,
    /// A gateway serving the live event viewer (`--viewer`), when the
    /// viewer scenario runs.
    pub(crate) viewer: Option<Target>,
    /// A gateway whose groups use the consumer protocol, when the join
    /// scenario runs.
    pub(crate) consumer_protocol: Option<Target>,
    /// Two replicas that take acks for each other (`--internal-addr`), when
    /// the forward scenario runs.
    pub(crate) routed: Option<forward::Pair>,
}

/// Runs every scenario `options` asks for against the gateways in front of
/// `brokers`.
pub(crate) async fn run(
    options: &Options,
    brokers: &str,
    targets: Targets,
) -> Result<Report, String> {
    let (gateway, processes) = targets.plain;
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
    let compression_topic = topic("compression");
    testkit::create_topics(
        brokers,
        &[
            &direct_topic,
            &closed_topic,
            &unary_topic,
            &stream_topic,
            &fanout_topic,
            &latency_topic,
            &compression_topic,
        ],
        o.partitions,
    )
    .await?;
    let producer = direct_producer(brokers, o.linger_ms)?;
    gateway.wait_serving().await?;
    let channels = gateway.connect(o.channels.max(1)).await?;
    let secure = match &targets.secure {
        Some((target, processes)) => {
            target.wait_serving().await?;
            let channels = target.connect(o.channels.max(1)).await?;
            for t in [&stream_topic, &latency_topic] {
                warm_up(&channels[0], t).await?;
            }
            Some((channels, *processes))
        }
        None => None,
    };
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
    let first = enqueue(&producer, &direct_topic, &warm_up_record()).await?;
    if !matches!(first.await, Ok(Ok(_))) {
        return Err("the direct producer cannot write to the broker".into());
    }

    let runs = |name: &str| o.only.is_empty() || o.only.iter().any(|n| n == name);
    // The short publish scenarios alternate, `--repeat` times each, and
    // report their median: one burst of interference on a shared machine
    // then moves neither side of the ratio much.
    let (mut direct_runs, mut stream_runs, mut batched_runs, mut secure_runs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=o.repeat.max(1) {
        if runs("produce") {
            step(&format!("direct produce ({round}/{})", o.repeat));
            let produce = publish::direct_produce(&producer, &direct_topic, o.events, o.size);
            direct_runs.push(on_cpu(&processes, produce).await?);
        }
        if runs("stream") {
            step(&format!("streaming PublishEvents ({round}/{})", o.repeat));
            let streams = publish::stream(
                &channels,
                &stream_topic,
                (o.events, o.size),
                o.publish_streams,
                publish::Shape::plain(),
            );
            stream_runs.push(on_cpu(&processes, streams).await);
        }
        if runs("stream") || runs("batched") {
            step(&format!(
                "batched PublishEvents, {} a request ({round}/{})",
                o.batch, o.repeat
            ));
            let batches = publish::stream(
                &channels,
                &stream_topic,
                (o.events, o.size),
                o.publish_streams,
                publish::Shape::batched(o.batch),
            );
            batched_runs.push(on_cpu(&processes, batches).await);
        }
        if let (Some((channels, processes)), true) = (&secure, runs("stream")) {
            step(&format!(
                "streaming PublishEvents, TLS and tokens ({round}/{})",
                o.repeat
            ));
            let streams = publish::stream(
                channels,
                &stream_topic,
                (o.events, o.size),
                o.publish_streams,
                publish::Shape::plain(),
            );
            secure_runs.push(on_cpu(processes, streams).await);
        }
    }
    let secure_stream = median(secure_runs).map_or_else(
        || Throughput::skipped(SECURE_STREAM),
        |run| Throughput {
            name: SECURE_STREAM,
            ..run
        },
    );
    let gateway_efficiency = (
        paired_efficiency(&direct_runs, &stream_runs),
        paired_efficiency(&direct_runs, &batched_runs),
    );
    let direct_produce =
        median(direct_runs).unwrap_or_else(|| Throughput::skipped("direct produce"));
    let stream =
        median(stream_runs).unwrap_or_else(|| Throughput::skipped("streaming PublishEvents"));
    let batched_stream =
        median(batched_runs).unwrap_or_else(|| Throughput::skipped("batched PublishEvents"));
    let direct_closed = if runs("closed") {
        step("direct closed loop");
        let closed =
            publish::direct_closed_loop(&producer, &closed_topic, o.events, o.size, o.concurrency);
        on_cpu(&processes, closed).await
    } else {
        Throughput::skipped("direct closed loop (C tasks)")
    };
    let unary = if runs("unary") {
        step("unary PublishEvent");
        let calls = publish::unary(&channels, &unary_topic, o.events, o.size, o.concurrency);
        on_cpu(&processes, calls).await
    } else {
        Throughput::skipped("unary PublishEvent")
    };
    let (http_publish, http_json_publish) = match runs("http") {
        true => http::both(&gateway, (brokers, &topic("http")), &processes, o).await?,
        false => http::skipped(),
    };
    let unary_floor = if runs("floor") {
        step(publish::FLOOR);
        let calls = publish::unary_floor(&channels, o.events, o.concurrency);
        on_cpu(&processes, calls).await
    } else {
        Throughput::skipped(publish::FLOOR)
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
    let (direct_consume, subscribe, grpc_web_subscribe) = match stored {
        Some(topic) if runs("consume") || runs("subscribe") => {
            step("direct consume");
            let direct = consume::direct_consume(brokers, topic, o.events, patience);
            let direct = on_cpu(&processes, direct).await?;
            step("Subscribe");
            let stream = consume::subscribe(&channels[0], topic, o.events, patience);
            let stream = on_cpu(&processes, stream).await;
            step(consume::GRPC_WEB_SUBSCRIBE);
            let web = consume::subscribe_grpc_web(&gateway.url, topic, o.events, patience);
            (direct, stream, on_cpu(&processes, web).await)
        }
        Some(_) => (
            Throughput::skipped("direct consume"),
            Throughput::skipped("Subscribe (one stream)"),
            Throughput::skipped(consume::GRPC_WEB_SUBSCRIBE),
        ),
        None if runs("consume") || runs("subscribe") => {
            return Err(
                "consume and subscribe read what produce or unary stored: run one of them too"
                    .into(),
            )
        }
        None => (
            Throughput::skipped("direct consume"),
            Throughput::skipped("Subscribe (one stream)"),
            Throughput::skipped(consume::GRPC_WEB_SUBSCRIBE),
        ),
    };
    let (auto_reader, acks_on_stream, acks_unary) = match (stored, runs("acks")) {
        (Some(topic), true) => acks::rounds(&channels[0], topic, o, &processes).await,
        _ => acks::skipped(),
    };
    // The fan-out's memory: what the gateway held before its streams opened,
    // and its high-water mark after (the run's highest, where fan-out is the
    // scenario that holds the most).
    let mut fanout_rss = (f64::NAN, f64::NAN);
    let fanout = if runs("fanout") {
        step("fan-out");
        fanout_rss.0 = rss_mib(processes.gateway);
        let deliveries = fanout::fanout(
            &gateway,
            &producer,
            &fanout_topic,
            o.fanout_streams,
            o.fanout_events,
            o.size,
            patience,
        );
        let deliveries = on_cpu(&processes, deliveries).await?;
        fanout_rss.1 = peak_rss_mib(processes.gateway);
        deliveries
    } else {
        Throughput::skipped("fan-out (deliveries)")
    };
    // Direct, plain and secured take turns of 50 ms, so that all three see
    // the same machine.
    let mut gateways = vec![&channels[0]];
    gateways.extend(secure.as_ref().map(|(channels, _)| &channels[0]));
    let none = || (Latency::default(), Tally::new(0));
    let (direct_latency, mut sides) = if runs("latency") {
        step("latency: direct producer, PublishEvent, and with TLS and a token, in turns of 50 ms");
        latency::latencies(
            &producer,
            &gateways,
            &latency_topic,
            o.latency_rate,
            o.latency_events,
            o.latency_size,
        )
        .await?
    } else {
        (none(), Vec::new())
    };
    let compression = if runs("compression") {
        step("compression: Kafka none, lz4, zstd; gRPC gzip, zstd");
        let plain = (&gateway, &processes);
        compression::codecs(plain, &targets.compressed, &compression_topic, o).await?
    } else {
        Vec::new()
    };
    let secure_latency = if sides.len() > 1 { sides.pop() } else { None }.unwrap_or_else(none);
    let publish_latency = sides.pop().unwrap_or_else(none);
    let page_latency = match &targets.viewer {
        Some(target) if runs("viewer") => {
            step(&format!(
                "the viewer page: publish to display at {} events/s",
                o.viewer_rate
            ));
            target.wait_serving().await?;
            let viewer_topic = topic("viewer");
            testkit::create_topics(brokers, &[&viewer_topic], o.partitions).await?;
            viewer::page_latency(
                &target.url,
                &viewer_topic,
                o.viewer_events,
                o.viewer_rate,
                patience,
            )
            .await?
        }
        _ => none(),
    };
    let join = match &targets.consumer_protocol {
        Some(consumer) if runs("join") => {
            let gateways = [("classic", &gateway), ("consumer", consumer)];
            join::run(brokers, (&producer, &topic("join")), &gateways, o).await?
        }
        _ => Vec::new(),
    };
    let share = match runs("share") {
        true => share::run(brokers, (&producer, &topic("share")), &channels[0], o).await?,
        false => Vec::new(),
    };
    let forward = match &targets.routed {
        Some(pair) if runs("forward") => {
            Some(forward::run(brokers, (&producer, &topic("forward")), pair, o).await?)
        }
        _ => None,
    };
    Ok(Report {
        http_publish,
        http_json_publish,
        join,
        share,
        forward,
        options: options.clone(),
        direct_produce,
        direct_closed,
        unary,
        unary_floor,
        stream,
        batched_stream,
        gateway_efficiency,
        direct_consume,
        subscribe,
        grpc_web_subscribe,
        fanout,
        direct_latency,
        publish_latency,
        secure_stream,
        secure_latency,
        page_latency,
        auto_reader,
        acks_on_stream,
        acks_unary,
        peak_rss_mib: peak_rss_mib(processes.gateway),
        fanout_rss_mib: fanout_rss,
        compression,
    })
}

/// Says which scenario runs now.
pub(crate) fn step(name: &str) {
    eprintln!("== {name}");
}
