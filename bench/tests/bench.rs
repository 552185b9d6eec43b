//! `gateway-bench` in a small configuration: every scenario runs against a
//! real broker and a real gateway process, and every event is accounted
//! for. Speed is never asserted here (BENCHMARKS.md has the figures).

use std::path::PathBuf;
use std::process::{Command, Output};

/// Fields BENCHMARKS.md and the README describe.
const FIELDS: &[&str] = &[
    "direct_produce_eps",
    "unary_publish_eps",
    "unary_ratio",
    "stream_publish_eps",
    "stream_ratio",
    "publish_p50_ms",
    "publish_p99_ms",
    "direct_p50_ms",
    "direct_p99_ms",
    "direct_consume_eps",
    "subscribe_eps",
    "subscribe_ratio",
    "fanout_streams",
    "fanout_eps",
    "gateway_peak_rss_mib",
    "secure_stream_publish_eps",
    "secure_publish_p50_ms",
    "auto_reader_eps",
    "manual_acks_on_stream_eps",
    "manual_acks_unary_eps",
    "manual_stream_vs_auto",
    "manual_unary_vs_auto",
    "batched_stream_publish_eps",
    "gateway_efficiency_stream",
    "gateway_efficiency_batched_stream",
    "unary_gateway_cpu_us_per_call",
    "fanout_peak_rss_mib",
    "grpc_web_subscribe_eps",
    "grpc_web_subscribe_ratio",
    "viewer_p50_ms",
    "viewer_p99_ms",
];

fn json_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "event-gateway-bench-{name}-{}.json",
        std::process::id()
    ))
}

fn bench(json: &PathBuf, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gateway-bench"))
        .args([
            "--events",
            "3000",
            "--concurrency",
            "16",
            "--fanout-streams",
            "40",
            "--fanout-events",
            "200",
            "--latency-rate",
            "500",
            "--latency-events",
            "500",
            "--viewer-events",
            "100",
            "--json",
        ])
        .arg(json)
        .args(extra)
        .output()
        .expect("gateway-bench runs")
}

fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn every_scenario_accounts_for_every_event() {
    let json = json_file("ok");
    let output = bench(&json, &[]);
    assert!(
        output.status.success(),
        "the benchmark failed\n{}",
        text(&output)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON is written"))
            .expect("valid JSON");
    let _ = std::fs::remove_file(&json);
    for field in FIELDS {
        let value = report[field].as_f64();
        assert!(
            value.is_some_and(|v| v.is_finite() && v > 0.0),
            "{field} is {:?} in {report:#}",
            report[field]
        );
    }
    // Differences between the secured gateway and the plain one: either
    // sign in a small run on a shared machine, never missing.
    for field in ["secure_stream_cpu_overhead", "secure_added_p50_ms"] {
        let value = report[field].as_f64();
        assert!(
            value.is_some_and(f64::is_finite),
            "{field} is {:?}",
            report[field]
        );
    }
    assert!(
        report["fanout_mib_per_1000_streams"]
            .as_f64()
            .is_some_and(f64::is_finite),
        "{report:#}"
    );
    // Each codec's run moved every event, with its CPU and bytes measured.
    for codec in [
        "Kafka none",
        "Kafka lz4",
        "Kafka zstd",
        "gRPC gzip",
        "gRPC zstd",
    ] {
        for figure in [
            "eps",
            "gateway_cpu_us_per_event",
            "loopback_bytes_per_event",
        ] {
            let value = report["compression"][codec][figure].as_f64();
            assert!(
                value.is_some_and(|v| v.is_finite() && v > 0.0),
                "compression.{codec}.{figure} is {value:?} in {report:#}"
            );
        }
    }
    assert_eq!(report["all_accounted"], true, "{report:#}");
    // CPU time per event of each process, read from /proc: never negative,
    // and the unary calls (tens of microseconds each on both sides) show.
    let cpu = &report["cpu_us_per_event"];
    for scenario in [
        "direct_produce",
        "unary_publish",
        "direct_closed_loop",
        "stream_publish",
        "direct_consume",
        "subscribe",
        "fanout",
        "manual_acks_on_stream",
        "manual_acks_unary",
    ] {
        for process in ["load_generator", "gateway", "broker", "total"] {
            let value = cpu[scenario][process].as_f64();
            assert!(
                value.is_some_and(|v| v.is_finite() && v >= 0.0),
                "cpu_us_per_event.{scenario}.{process} is {:?}",
                cpu[scenario][process]
            );
        }
    }
    for process in ["load_generator", "gateway"] {
        assert!(
            cpu["unary_publish"][process].as_f64() > Some(0.0),
            "{cpu:#}"
        );
    }
    for ratio in ["stream_cpu_ratio", "subscribe_cpu_ratio"] {
        assert!(
            report[ratio].as_f64().is_some_and(f64::is_finite),
            "{ratio} is {:?}",
            report[ratio]
        );
    }
    assert_eq!(report["events"], 3000);
    assert_eq!(report["fanout_streams"], 40);
    let stdout = String::from_utf8_lossy(&output.stdout);
    for row in [
        "direct produce",
        "unary PublishEvent",
        "streaming PublishEvents",
        "batched PublishEvents",
        "Subscribe",
        "MANUAL, acks on the stream",
        "MANUAL, unary Acknowledge",
        "fan-out",
        "added by the gateway",
        "CPU per event",
        "Kafka zstd",
        "gRPC gzip",
    ] {
        assert!(
            stdout.contains(row),
            "the table has no {row:?} row\n{stdout}"
        );
    }
}

#[test]
fn events_that_are_not_stored_fail_the_benchmark() {
    // The gateway refuses every benchmark event (256 B > 100 B): the run
    // must say which scenarios lost events and exit non-zero.
    let json = json_file("refused");
    let output = bench(
        &json,
        &["--patience", "3s", "--gateway-arg=--max-payload-bytes=100"],
    );
    let _ = std::fs::remove_file(&json);
    assert!(
        !output.status.success(),
        "the benchmark passed\n{}",
        text(&output)
    );
    let all = text(&output);
    assert!(
        all.contains("NOT ACCOUNTED FOR: unary PublishEvent: 0 of 3000"),
        "{all}"
    );
    assert!(
        all.contains("INVALID_ARGUMENT") || all.contains("payload"),
        "{all}"
    );
}
