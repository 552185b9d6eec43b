//! The gateway through real grpcurl: reflection, health, and the README's
//! publish and subscribe commands exactly as written there.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// The README's shell commands that call grpcurl, one per line.
fn readme_grpcurl_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    readme
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("grpcurl "))
        .map(String::from)
        .collect()
}

/// The README command that calls `method`, pointed at the gateway at `addr`.
fn readme_command(method: &str, addr: SocketAddr) -> String {
    let command = readme_grpcurl_commands()
        .into_iter()
        .find(|c| c.ends_with(method))
        .unwrap_or_else(|| panic!("the README shows a grpcurl call of {method}"));
    command
        .replacen("grpcurl", &grpcurl().display().to_string(), 1)
        .replace("localhost:50051", &addr.to_string())
}

/// Runs grpcurl with `args` and returns its standard output.
fn run_grpcurl(args: &[&str]) -> String {
    let output = Command::new(grpcurl())
        .args(args)
        .output()
        .expect("grpcurl runs (scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "grpcurl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

// grpcurl runs as a blocking child process: the gateway needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_checks_publishes_and_subscribes_as_the_readme_shows() {
    let broker = Broker::start().await;
    broker.create_topic("user-registered", 3).await;
    let gateway = gateway(config(Some(broker.brokers()))).await;
    let addr = gateway.addr().to_string();

    let services = run_grpcurl(&["-plaintext", &addr, "list"]);
    for service in ["eventgateway.v1.EventGateway", "grpc.health.v1.Health"] {
        assert!(
            services.lines().any(|l| l == service),
            "{service} missing from {services}"
        );
    }
    let methods = run_grpcurl(&[
        "-plaintext",
        &addr,
        "describe",
        "eventgateway.v1.EventGateway",
    ]);
    for method in ["PublishEvent", "Subscribe", "Acknowledge"] {
        assert!(methods.contains(method), "{methods}");
    }
    let health = run_grpcurl(&["-plaintext", &addr, "grpc.health.v1.Health/Check"]);
    assert!(health.contains("\"SERVING\""), "{health}");

    // Subscribe as the README shows, in the background.
    let subscribe = readme_command("eventgateway.v1.EventGateway/Subscribe", gateway.addr());
    let mut subscriber = Command::new("sh")
        .args(["-c", &format!("exec {subscribe}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = subscriber.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut output = String::new();
    let read_until = |output: &mut String, needle: &str| {
        let deadline = std::time::Instant::now() + PATIENCE;
        while !output.contains(needle) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left.min(Duration::from_secs(1))) {
                Ok(line) => {
                    output.push_str(&line);
                    output.push('\n');
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    assert!(
                        !left.is_zero(),
                        "grpcurl never printed {needle:?}: {output}"
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("grpcurl ended: {output}"),
            }
        }
    };
    read_until(&mut output, "subscriptionId");

    // Publish as the README shows.
    let publish = readme_command("eventgateway.v1.EventGateway/PublishEvent", gateway.addr());
    let published = Command::new("sh").args(["-c", &publish]).output().unwrap();
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&published.stdout).unwrap();
    assert_eq!(answer["topic"], "user-registered");
    let event_id = answer["eventId"].as_str().expect("an event id").to_owned();

    // The subscription prints it, with the JSON body as it was sent.
    read_until(&mut output, &event_id);
    read_until(&mut output, "\"attempt\": 1");
    assert!(
        output.contains("\"email\": \"ada@example.com\""),
        "{output}"
    );
    assert!(output.contains("\"user_id\": 42"), "{output}");
    let _ = subscriber.kill();
    let _ = subscriber.wait();
    gateway.shutdown().await.unwrap();
}
