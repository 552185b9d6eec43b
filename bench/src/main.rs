//! `gateway-bench`: what the gateway costs over talking to Kafka directly.
//!
//! On one broker (an Apache Kafka node it starts, or `--brokers`), it runs a
//! direct librdkafka producer and consumer as the baseline, then the same
//! work through a gateway process of its own: unary PublishEvent from many
//! tasks, PublishEvents streams, one Subscribe stream, a fan-out of many
//! ephemeral streams on one topic, and open-loop publish latency at a fixed
//! rate; and, against a second gateway with TLS, bearer tokens and a policy
//! on, the streaming publish and the latency again; a Subscribe stream over
//! gRPC-Web; and, against a gateway serving the live event viewer, the
//! page's publish-to-display time in headless Chromium. It prints a table,
//! writes the figures as JSON, and fails when an
//! event is not accounted for (an error, a missing or a repeated event).
//!
//! - `options`: the command line.
//! - `clients`: the direct producer, connections, the events both sides send.
//! - `scenarios`: what is measured, in order.
//! - `tally`: which events arrived (by index), rates, percentiles.
//! - `report`: the table, the JSON, the verdict.
//! - `cpu`: CPU time per process, from `/proc`.
//! - `secure`: the second gateway's TLS, token and policy files.
//!
//! `gateway-bench serve-gateway [FLAGS]` runs the gateway itself (the
//! `gateway` command): the benchmark starts its gateway that way, so that
//! the gateway's memory is measured apart from the load generator's.
#![allow(clippy::print_stdout)]

mod clients;
mod cpu;
mod options;
mod print;
mod report;
mod scenarios;
mod secure;
mod tally;

use std::process::{Child, ExitCode, Stdio};
use std::time::Duration;

use clap::Parser;
use options::Options;
use testkit::{free_port, kafka};

/// The gateway process it runs allocates as the `gateway` binary does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "serve-gateway")
    {
        let program = args.next();
        args.next();
        return gateway::main(program.into_iter().chain(args));
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
        testkit::sigterm(&self.0);
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
        Some(brokers) => (None::<kafka::Node>, brokers.clone()),
        None => {
            // The JVM as Kafka's own script runs it, not as tests do.
            let node = kafka::Node::start(kafka::Settings {
                jvm: kafka::Jvm::Kafka,
                ..kafka::Settings::default()
            })
            .await?;
            let brokers = node.bootstrap();
            (Some(node), brokers)
        }
    };
    let port = free_port();
    let gateway = Process(spawn_gateway(&options, &brokers, port, &[])?);
    let processes = cpu::Processes {
        gateway: gateway.0.id(),
        broker: broker.as_ref().and_then(kafka::Node::pid),
    };
    let runs_secure = options.only.is_empty() || options.only.iter().any(|n| n == "secure");
    let secure = if runs_secure {
        let port = free_port();
        let files = secure::Secure::new(port)?;
        let process = Process(spawn_gateway(&options, &brokers, port, &files.args)?);
        let processes = cpu::Processes {
            gateway: process.0.id(),
            broker: processes.broker,
        };
        Some((files, process, processes))
    } else {
        None
    };
    let runs_compression =
        options.only.is_empty() || options.only.iter().any(|n| n == "compression");
    let mut compressed = Vec::new();
    if runs_compression {
        for (name, codec) in [("Kafka lz4", "lz4"), ("Kafka zstd", "zstd")] {
            let port = free_port();
            let flag = format!("--kafka-compression={codec}");
            let process = Process(spawn_gateway(&options, &brokers, port, &[flag])?);
            let processes = cpu::Processes {
                gateway: process.0.id(),
                broker: processes.broker,
            };
            compressed.push((name, port, process, processes));
        }
    }
    let viewer = extra_gateway(&options, &brokers, "viewer", "--viewer")?;
    let consumer_protocol = extra_gateway(&options, &brokers, "join", "--group-protocol=consumer")?;
    let routed = routed_pair(&options, &brokers)?;
    let targets = scenarios::Targets {
        plain: (clients::Target::plain(port), processes),
        secure: secure
            .as_ref()
            .map(|(files, _, processes)| (files.target.clone(), *processes)),
        compressed: compressed
            .iter()
            .map(|(name, port, _, processes)| (*name, clients::Target::plain(*port), *processes))
            .collect(),
        viewer: viewer
            .as_ref()
            .map(|(port, _)| clients::Target::plain(*port)),
        consumer_protocol: consumer_protocol
            .as_ref()
            .map(|(port, _)| clients::Target::plain(*port)),
        routed: routed
            .as_ref()
            .map(|pair| [0, 1].map(|i| (clients::Target::plain(pair[i].0), pair[i].1 .0.id()))),
    };
    let report = scenarios::run(&options, &brokers, targets).await?;
    gateway.stop(Duration::from_secs(60));
    if let Some((_, process, _)) = secure {
        process.stop(Duration::from_secs(60));
    }
    for (_, _, process, _) in compressed {
        process.stop(Duration::from_secs(60));
    }
    let routed = routed.into_iter().flatten();
    for (_, process) in viewer.into_iter().chain(consumer_protocol).chain(routed) {
        process.stop(Duration::from_secs(60));
    }
    report.print();
    if let Some(path) = &options.json {
        std::fs::write(path, report.json())
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    report.check()
}

/// A gateway process started with `flag`, on a port of its own, when
/// `scenario` runs.
fn extra_gateway(
    options: &Options,
    brokers: &str,
    scenario: &str,
    flag: &str,
) -> Result<Option<(u16, Process)>, String> {
    if !(options.only.is_empty() || options.only.iter().any(|n| n == scenario)) {
        return Ok(None);
    }
    let port = free_port();
    let process = Process(spawn_gateway(options, brokers, port, &[flag.to_owned()])?);
    Ok(Some((port, process)))
}

/// Two gateway processes that take acks for each other (an internal
/// listener each, one key), when the forward scenario runs.
fn routed_pair(options: &Options, brokers: &str) -> Result<Option<[(u16, Process); 2]>, String> {
    if !(options.only.is_empty() || options.only.iter().any(|n| n == "forward")) {
        return Ok(None);
    }
    let keys = std::env::temp_dir().join(format!("event-gateway-bench-{}.keys", free_port()));
    std::fs::write(&keys, format!("{}\n", uuid::Uuid::new_v4().simple()))
        .map_err(|error| format!("cannot write {}: {error}", keys.display()))?;
    let start = || {
        let (port, internal) = (free_port(), free_port());
        let flags = [
            format!("--internal-addr=127.0.0.1:{internal}"),
            format!("--route-key-file={}", keys.display()),
        ];
        Ok::<_, String>((
            port,
            Process(spawn_gateway(options, brokers, port, &flags)?),
        ))
    };
    Ok(Some([start()?, start()?]))
}

/// Starts the gateway process on 127.0.0.1:`port` in front of `brokers`,
/// with `extra` flags.
fn spawn_gateway(
    options: &Options,
    brokers: &str,
    port: u16,
    extra: &[String],
) -> Result<Child, String> {
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
        .args(extra)
        .env("NO_COLOR", "1")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("KAFKA_PROPERTIES")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|error| format!("cannot start the gateway: {error}"))
}
