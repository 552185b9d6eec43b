//! What the benchmark measured: the table it prints, the JSON it writes,
//! and whether every event of every scenario was accounted for.

use crate::options::Options;
use crate::scenarios::compression::Codec;
use crate::scenarios::forward::Forward;
use crate::scenarios::join::Join;
use crate::scenarios::share::Share;
use crate::tally::{Side, Throughput};

/// What the benchmark measured.
pub(crate) struct Report {
    pub(crate) options: Options,
    pub(crate) direct_produce: Throughput,
    pub(crate) direct_closed: Throughput,
    pub(crate) unary: Throughput,
    /// The unary callers POSTing CloudEvents over plain HTTP.
    pub(crate) http_publish: Throughput,
    /// The unary callers POSTing to the JSON API.
    pub(crate) http_json_publish: Throughput,
    /// The same callers calling Health/Check: the floor under a unary call.
    pub(crate) unary_floor: Throughput,
    pub(crate) stream: Throughput,
    /// PublishEvents with `--batch` events a request.
    pub(crate) batched_stream: Throughput,
    /// The direct client's CPU per event over the gateway's own CPU per
    /// event, unbatched and batched streams: how much of the client's
    /// efficiency the gateway keeps (1 is as cheap as an embedded librdkafka
    /// producer); the median of the rounds' ratios.
    pub(crate) gateway_efficiency: (f64, f64),
    pub(crate) direct_consume: Throughput,
    pub(crate) subscribe: Throughput,
    /// One Subscribe stream over gRPC-Web (HTTP/1.1), the same events.
    pub(crate) grpc_web_subscribe: Throughput,
    pub(crate) fanout: Throughput,
    pub(crate) direct_latency: Side,
    pub(crate) publish_latency: Side,
    /// Streaming publish through the gateway with TLS, tokens and a policy.
    pub(crate) secure_stream: Throughput,
    /// PublishEvent's latency through the secured gateway.
    pub(crate) secure_latency: Side,
    /// The live event viewer: from a publish call to the event's row on
    /// the page, in headless Chromium.
    pub(crate) page_latency: Side,
    /// One AUTO stream, alternating with the MANUAL ones below.
    pub(crate) auto_reader: Throughput,
    /// One MANUAL stream acking every delivery over StreamingSubscribe.
    pub(crate) acks_on_stream: Throughput,
    /// One MANUAL Subscribe stream acked with unary Acknowledge calls.
    pub(crate) acks_unary: Throughput,
    pub(crate) peak_rss_mib: f64,
    /// The gateway's resident memory before the fan-out's streams opened,
    /// and its high-water mark after.
    pub(crate) fanout_rss_mib: (f64, f64),
    /// The compression scenario's runs, one per codec.
    pub(crate) compression: Vec<Codec>,
    /// A member joining a group, to its first delivery, per protocol.
    pub(crate) join: Vec<Join>,
    /// A shared subscription, per handling time.
    pub(crate) share: Vec<Share>,
    /// A unary Settle at the stream's replica and forwarded from another.
    pub(crate) forward: Option<Forward>,
}

impl Report {
    pub(crate) fn ratio(gateway: &Throughput, direct: &Throughput) -> f64 {
        gateway.eps() / direct.eps()
    }

    /// Direct CPU time per event over the gateway path's: the highest
    /// `ratio` the gateway path can reach where all processes share cores
    /// that the scenario keeps busy.
    pub(crate) fn cpu_ratio(gateway: &Throughput, direct: &Throughput) -> f64 {
        direct.cpu_per_event_us()[3] / gateway.cpu_per_event_us()[3]
    }

    /// What 1,000 fan-out streams added to the gateway's memory, MiB.
    pub(crate) fn fanout_mib_per_1000_streams(&self) -> f64 {
        let (before, peak) = self.fanout_rss_mib;
        (peak - before) / self.options.fanout_streams as f64 * 1000.0
    }

    /// The secured gateway's CPU per streamed event over the plain one's,
    /// minus one: what TLS, tokens and the policy add.
    pub(crate) fn secure_cpu_overhead(&self) -> f64 {
        self.secure_stream.cpu_per_event_us()[1] / self.stream.cpu_per_event_us()[1] - 1.0
    }

    /// What TLS and a token add to PublishEvent's p50 latency: the secured
    /// gateway's p50 over the plain one's, in turns of 50 ms.
    pub(crate) fn secure_added_p50_ms(&self) -> f64 {
        self.secure_latency.0.p50 - self.publish_latency.0.p50
    }

    /// The measured scenarios, with their names in the JSON.
    pub(crate) fn throughputs(&self) -> [(&'static str, &Throughput); 16] {
        [
            ("direct_produce", &self.direct_produce),
            ("unary_publish", &self.unary),
            ("http_publish", &self.http_publish),
            ("http_json_publish", &self.http_json_publish),
            ("unary_floor", &self.unary_floor),
            ("direct_closed_loop", &self.direct_closed),
            ("stream_publish", &self.stream),
            ("batched_stream_publish", &self.batched_stream),
            ("direct_consume", &self.direct_consume),
            ("subscribe", &self.subscribe),
            ("grpc_web_subscribe", &self.grpc_web_subscribe),
            ("fanout", &self.fanout),
            ("secure_stream_publish", &self.secure_stream),
            ("auto_reader", &self.auto_reader),
            ("manual_acks_on_stream", &self.acks_on_stream),
            ("manual_acks_unary", &self.acks_unary),
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
            "batch": o.batch,
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
            "secure_stream_publish_eps": round(self.secure_stream.eps()),
            "secure_stream_cpu_overhead": round(self.secure_cpu_overhead()),
            "secure_publish_p50_ms": round(self.secure_latency.0.p50),
            "secure_publish_p99_ms": round(self.secure_latency.0.p99),
            "secure_added_p50_ms": round(self.secure_added_p50_ms()),
            "all_accounted": self.problems().is_empty(),
        });
        let mut value = value;
        // Past the json! macro's recursion limit, one field at a time.
        let more = [
            ("auto_reader_eps", self.auto_reader.eps()),
            ("manual_acks_on_stream_eps", self.acks_on_stream.eps()),
            ("manual_acks_unary_eps", self.acks_unary.eps()),
            (
                "manual_stream_vs_auto",
                Self::ratio(&self.acks_on_stream, &self.auto_reader),
            ),
            (
                "manual_unary_vs_auto",
                Self::ratio(&self.acks_unary, &self.auto_reader),
            ),
            ("batched_stream_publish_eps", self.batched_stream.eps()),
            ("gateway_efficiency_stream", self.gateway_efficiency.0),
            (
                "gateway_efficiency_batched_stream",
                self.gateway_efficiency.1,
            ),
            (
                "unary_gateway_cpu_us_per_call",
                self.unary.cpu_per_event_us()[1],
            ),
            (
                "unary_floor_gateway_cpu_us_per_call",
                self.unary_floor.cpu_per_event_us()[1],
            ),
            (
                "unary_gateway_cpu_us_above_floor",
                self.unary.cpu_per_event_us()[1] - self.unary_floor.cpu_per_event_us()[1],
            ),
            ("http_publish_eps", self.http_publish.eps()),
            (
                "http_vs_unary_gateway_cpu",
                self.http_publish.cpu_per_event_us()[1] / self.unary.cpu_per_event_us()[1],
            ),
            ("http_json_publish_eps", self.http_json_publish.eps()),
            (
                "http_json_vs_unary_gateway_cpu",
                self.http_json_publish.cpu_per_event_us()[1] / self.unary.cpu_per_event_us()[1],
            ),
            ("grpc_web_subscribe_eps", self.grpc_web_subscribe.eps()),
            (
                "grpc_web_subscribe_ratio",
                Self::ratio(&self.grpc_web_subscribe, &self.subscribe),
            ),
            ("viewer_p50_ms", self.page_latency.0.p50),
            ("viewer_p99_ms", self.page_latency.0.p99),
            ("fanout_peak_rss_mib", self.fanout_rss_mib.1),
            (
                "fanout_mib_per_1000_streams",
                self.fanout_mib_per_1000_streams(),
            ),
        ];
        for (field, figure) in more {
            value[field] = serde_json::json!(round(figure));
        }
        let codecs: serde_json::Map<String, serde_json::Value> = self
            .compression
            .iter()
            .map(|codec| {
                let figures = serde_json::json!({
                    "eps": round(codec.run.eps()),
                    "gateway_cpu_us_per_event": round(codec.run.cpu_per_event_us()[1]),
                    "loopback_bytes_per_event": round(codec.wire),
                });
                (codec.name.to_owned(), figures)
            })
            .collect();
        value["compression"] = serde_json::Value::Object(codecs);
        let joins: serde_json::Map<String, serde_json::Value> = self
            .join
            .iter()
            .map(|join| {
                let figures = serde_json::json!({
                    "direct": round(join.direct_ms),
                    "gateway": round(join.gateway_ms),
                });
                (join.protocol.to_owned(), figures)
            })
            .collect();
        value["join_first_delivery_ms"] = serde_json::Value::Object(joins);
        let shares: serde_json::Map<String, serde_json::Value> = self
            .share
            .iter()
            .map(|share| {
                let figures = serde_json::json!({
                    "one_stream_eps": round(share.one),
                    "eight_streams_eps": round(share.shared),
                    "ratio": round(share.shared / share.one),
                });
                (format!("{}ms", share.handling_ms), figures)
            })
            .collect();
        value["share_handling"] = serde_json::Value::Object(shares);
        if let Some(forward) = &self.forward {
            let way = |w: &crate::scenarios::forward::Way| {
                serde_json::json!({
                    "acks_per_second": round(w.acks_per_second),
                    "p50_us": round(w.p50_us),
                    "cpu_us_per_ack": round(w.cpu_us),
                })
            };
            value["forwarded_ack"] = serde_json::json!({
                "local": way(&forward.local),
                "forwarded": way(&forward.forwarded),
                "p50_ratio": round(forward.forwarded.p50_us / forward.local.p50_us),
                "cpu_ratio": round(forward.forwarded.cpu_us / forward.local.cpu_us),
            });
        }
        serde_json::to_string_pretty(&value).expect("JSON") + "\n"
    }

    pub(crate) fn problems(&self) -> Vec<String> {
        let latencies = [
            ("latency: direct", &self.direct_latency.1),
            ("latency: PublishEvent", &self.publish_latency.1),
            ("latency: PublishEvent (TLS)", &self.secure_latency.1),
            ("the viewer page", &self.page_latency.1),
        ];
        self.throughputs()
            .iter()
            .map(|(_, t)| *t)
            .chain(self.compression.iter().map(|codec| &codec.run))
            .filter_map(Throughput::problem)
            .chain(
                latencies
                    .iter()
                    .filter_map(|(name, tally)| tally.problem(name)),
            )
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
