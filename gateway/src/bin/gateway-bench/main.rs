//! `gateway-bench`: what the gateway costs over talking to Kafka directly.
//!
//! On one broker (a tansu process it starts, or `--brokers`), it runs a
//! direct librdkafka producer and consumer as the baseline, then the same
//! work through a gateway process of its own: unary PublishEvent from many
//! tasks, PublishEvents streams, one Subscribe stream, a fan-out of many
//! ephemeral streams on one topic, and open-loop publish latency at a fixed
//! rate. It prints a table, writes the figures as JSON, and fails when an
//! event is not accounted for (an error, a missing or a lost delivery).
//!
//! `gateway-bench serve-gateway [FLAGS]` runs the gateway itself (the
//! `gateway` command): the benchmark starts its gateway that way, so that
//! the gateway's memory is measured apart from the load generator's.
#![allow(clippy::print_stdout)]

mod cpu;
mod load;
mod tansu;

use std::path::PathBuf;
use std::process::{Child, ExitCode, Stdio};
use std::time::Duration;

use clap::Parser;

/// Measures the gateway against direct Kafka clients on the same broker.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway-bench", version)]
pub struct Options {
    /// Kafka bootstrap servers to use; without it a tansu broker (in-memory
    /// storage) is started on a free port.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Events per throughput scenario.
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// Payload bytes per event in the throughput scenarios.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Partitions of each topic the benchmark creates.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Runs of the direct produce and streaming scenarios (alternating);
    /// the median of each is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Concurrent client tasks calling PublishEvent.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// gRPC connections the unary tasks share.
    #[arg(long, default_value_t = 4)]
    pub channels: usize,
    /// PublishEvents streams sharing the streaming scenario's events.
    #[arg(long, default_value_t = 4)]
    pub publish_streams: usize,
    /// Concurrent ephemeral Subscribe streams on one topic (fan-out).
    #[arg(long, default_value_t = 1000)]
    pub fanout_streams: usize,
    /// Events published while the fan-out streams are open; each stream must
    /// receive every one.
    #[arg(long, default_value_t = 1000)]
    pub fanout_events: u64,
    /// Offered rate of the latency scenario, events per second.
    #[arg(long, default_value_t = 1000)]
    pub latency_rate: u64,
    /// Events of the latency scenario (each side).
    #[arg(long, default_value_t = 10_000)]
    pub latency_events: u64,
    /// Payload bytes per event in the latency scenario.
    #[arg(long, default_value_t = 1024)]
    pub latency_size: usize,
    /// linger.ms of both the direct producer and the gateway's producer
    /// (default: the gateway's default).
    #[arg(long, default_value = gateway::kafka::producer::LINGER_MS)]
    pub linger_ms: u64,
    /// Longest the benchmark waits for an expected event before it counts
    /// the rest as missing, e.g. 30s.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub patience: Duration,
    /// Run only these scenarios (comma-separated): produce, closed, unary,
    /// stream, consume, subscribe, fanout, latency. The others report null.
    #[arg(long, value_delimiter = ',', value_parser = ["produce", "closed", "unary", "stream", "consume", "subscribe", "fanout", "latency"])]
    pub only: Vec<String>,
    /// Extra gateway flag (repeatable), e.g. `--gateway-arg=--subscription-buffer=256`.
    #[arg(long = "gateway-arg", allow_hyphen_values = true)]
    pub gateway_args: Vec<String>,
}

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "serve-gateway")
    {
        let program = args.next();
        args.next();
        return gateway::cli::main(program.into_iter().chain(args));
    }
    let options = Options::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts");
    let outcome = runtime.block_on(bench(options));
    runtime.shutdown_timeout(Duration::from_secs(5));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gateway-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A child process killed when dropped.
struct Process(Child);

impl Process {
    /// Asks the process to stop (SIGTERM) and waits for it, at most
    /// `patience`; then kills it. The gateway shuts down cleanly, and a
    /// profiler wrapping it writes its output.
    fn stop(mut self, patience: Duration) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let until = std::time::Instant::now() + patience;
        while std::time::Instant::now() < until {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn bench(options: Options) -> Result<(), String> {
    let (broker, brokers) = match &options.brokers {
        Some(brokers) => (None::<Process>, brokers.clone()),
        None => {
            let port = tansu::free_port();
            let broker = Process(tansu::spawn(port, "memory://tansu/")?);
            tansu::wait_accepting(port, Duration::from_secs(30))?;
            eprintln!(
                "tansu {} on 127.0.0.1:{port} (log: {})",
                tansu::VERSION,
                tansu::log_file(port).0.display()
            );
            (Some(broker), format!("127.0.0.1:{port}"))
        }
    };
    let port = tansu::free_port();
    let gateway = Process(spawn_gateway(&options, &brokers, port)?);
    let processes = cpu::Processes {
        gateway: gateway.0.id(),
        broker: broker.as_ref().map(|b| b.0.id()),
    };
    let report = load::run(&options, &brokers, port, processes).await?;
    gateway.stop(Duration::from_secs(60));
    report.print();
    if let Some(path) = &options.json {
        std::fs::write(path, report.json())
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    report.check()
}

/// Starts the gateway process on 127.0.0.1:`port` in front of `brokers`.
fn spawn_gateway(options: &Options, brokers: &str, port: u16) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|error| format!("cannot find myself: {error}"))?;
    let log = std::env::temp_dir().join(format!("event-gateway-bench-gateway-{port}.log"));
    let stderr = std::fs::File::create(&log)
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    eprintln!("gateway on 127.0.0.1:{port} (log: {})", log.display());
    // GATEWAY_BENCH_WRAPPER runs the gateway under a profiler, e.g.
    // "valgrind --tool=callgrind" (instruction counts are stable where
    // timings are not).
    let wrapper = std::env::var("GATEWAY_BENCH_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut command = match words.next() {
        Some(program) => {
            let mut command = std::process::Command::new(program);
            command.args(words).arg(exe);
            command
        }
        None => std::process::Command::new(exe),
    };
    // The gateway's own log level unless GATEWAY_BENCH_LOG says otherwise:
    // it is measured as it runs by default.
    match std::env::var("GATEWAY_BENCH_LOG") {
        Ok(level) => command.env("RUST_LOG", level),
        Err(_) => command.env_remove("RUST_LOG"),
    };
    command
        .arg("serve-gateway")
        .args(["--brokers", brokers])
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg("--metrics-addr=0")
        .arg(format!("--kafka-property=linger.ms={}", options.linger_ms))
        .args(&options.gateway_args)
        .env("NO_COLOR", "1")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("KAFKA_PROPERTIES")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|error| format!("cannot start the gateway: {error}"))
}
