//! The report as a table on standard error, beside its JSON.

use crate::tally::Throughput;

use crate::report::Report;

impl Report {
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
        row(
            &self.batched_stream,
            Some(Self::ratio(&self.batched_stream, &self.direct_produce)),
        );
        row(&self.direct_closed, None);
        row(
            &self.unary,
            Some(Self::ratio(&self.unary, &self.direct_closed)),
        );
        row(&self.unary_floor, None);
        row(
            &self.http_publish,
            Some(Self::ratio(&self.http_publish, &self.unary)),
        );
        row(
            &self.http_json_publish,
            Some(Self::ratio(&self.http_json_publish, &self.unary)),
        );
        row(&self.direct_consume, None);
        row(
            &self.subscribe,
            Some(Self::ratio(&self.subscribe, &self.direct_consume)),
        );
        row(
            &self.grpc_web_subscribe,
            Some(Self::ratio(&self.grpc_web_subscribe, &self.subscribe)),
        );
        row(&self.fanout, None);
        row(
            &self.secure_stream,
            Some(Self::ratio(&self.secure_stream, &self.direct_produce)),
        );
        row(&self.auto_reader, None);
        row(
            &self.acks_on_stream,
            Some(Self::ratio(&self.acks_on_stream, &self.auto_reader)),
        );
        row(
            &self.acks_unary,
            Some(Self::ratio(&self.acks_unary, &self.auto_reader)),
        );
        println!(
            "fan-out: {} streams x {} events; gateway memory {:.0} MiB before, {:.0} MiB peak: {:.1} MiB per 1,000 streams",
            o.fanout_streams,
            o.fanout_events,
            self.fanout_rss_mib.0,
            self.fanout_rss_mib.1,
            self.fanout_mib_per_1000_streams()
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
        println!(
            "gateway efficiency (direct client CPU per event / gateway's): streaming {:.2}, batches of {} {:.2}",
            self.gateway_efficiency.0,
            o.batch,
            self.gateway_efficiency.1,
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
        println!(
            "{:<34} {:>9.2} {:>9.2}",
            "PublishEvent, TLS and a token", self.secure_latency.0.p50, self.secure_latency.0.p99
        );
        println!(
            "TLS, tokens and a policy add {:+.1}% gateway CPU per streamed event and {:+.3} ms to the unary p50",
            self.secure_cpu_overhead() * 100.0,
            self.secure_added_p50_ms()
        );
        println!(
            "the viewer page in headless Chromium, publish to display at {} events/s ({} events): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            o.viewer_rate,
            o.viewer_events,
            self.page_latency.0.p50,
            self.page_latency.0.p99,
            self.page_latency.0.max
        );
        if !self.compression.is_empty() {
            println!();
            println!(
                "compression, JSON of about {} B {:>19} {:>9} {:>12}",
                crate::scenarios::compression::PAYLOAD_BYTES,
                "events/s",
                "gw CPU us",
                "loopback B",
            );
            for codec in &self.compression {
                println!(
                    "{:<34} {:>12.0} {:>9.2} {:>12.0}",
                    codec.name,
                    codec.run.eps(),
                    codec.run.cpu_per_event_us()[1],
                    codec.wire
                );
            }
        }
        if !self.join.is_empty() {
            println!();
            println!(
                "{:<34} {:>9} {:>9}",
                "joining a group to first delivery", "direct ms", "gateway ms"
            );
            for join in &self.join {
                println!(
                    "{:<34} {:>9.0} {:>9.0}",
                    join.protocol, join.direct_ms, join.gateway_ms
                );
            }
        }
        if !self.share.is_empty() {
            println!();
            println!(
                "{:<34} {:>9} {:>9} {:>6}",
                "shared subscription, 1 partition", "1 stream", "8 streams", "ratio"
            );
            for share in &self.share {
                println!(
                    "{:<34} {:>9.0} {:>9.0} {:>6.2}",
                    format!("{} ms a delivery (events/s)", share.handling_ms),
                    share.one,
                    share.shared,
                    share.shared / share.one
                );
            }
        }
        if let Some(forward) = &self.forward {
            println!();
            println!(
                "{:<34} {:>9} {:>9} {:>9}",
                "unary Settle, one ack a call", "acks/s", "p50 us", "CPU us"
            );
            for (name, way) in [
                ("at the stream's replica", forward.local),
                ("at another (forwarded)", forward.forwarded),
            ] {
                println!(
                    "{:<34} {:>9.0} {:>9.0} {:>9.1}",
                    name, way.acks_per_second, way.p50_us, way.cpu_us
                );
            }
            println!(
                "forwarded over local: call {:.2}, CPU of both replicas {:.2}",
                forward.forwarded.p50_us / forward.local.p50_us,
                forward.forwarded.cpu_us / forward.local.cpu_us
            );
        }
        println!();
        println!("gateway peak RSS: {:.1} MiB", self.peak_rss_mib);
        for problem in self.problems() {
            println!("NOT ACCOUNTED FOR: {problem}");
        }
    }
}
