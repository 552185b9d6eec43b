//! The gateway through real grpcurl: reflection, health, and the README's
//! publish and subscribe commands exactly as written there.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use testkit::*;

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

/// The README's `index`th command that calls `method`, pointed at the
/// gateway at `addr`.
fn readme_command(method: &str, index: usize, addr: SocketAddr) -> String {
    let command = readme_grpcurl_commands()
        .into_iter()
        .filter(|c| c.ends_with(method))
        .nth(index)
        .unwrap_or_else(|| panic!("the README shows grpcurl call {index} of {method}"));
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
    // The README's topic and group, named afresh: the broker may be shared.
    let topic = topic("user-registered");
    broker.create_topic(&topic, 3).await;
    let group = format!("welcome-mails-{topic}");
    let fresh = |command: String| {
        command
            .replace("\"user-registered\"", &format!("\"{topic}\""))
            .replace("\"welcome-mails\"", &format!("\"{group}\""))
    };
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
    let mut subscriber = Subscriber::spawn(&fresh(readme_command(
        "eventgateway.v1.EventGateway/Subscribe",
        0,
        gateway.addr(),
    )));
    subscriber.read_until("subscriptionId").await;

    // Publish as the README shows.
    let publish = fresh(readme_command(
        "eventgateway.v1.EventGateway/PublishEvent",
        0,
        gateway.addr(),
    ));
    let published = Command::new("sh").args(["-c", &publish]).output().unwrap();
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&published.stdout).unwrap();
    assert_eq!(answer["topic"], topic.as_str());
    let event_id = answer["eventId"].as_str().expect("an event id").to_owned();

    // The subscription prints it, with the JSON body as it was sent.
    subscriber.read_until(&event_id).await;
    let output = subscriber.read_until("\"attempt\": 1").await;
    assert!(
        output.contains("\"email\": \"ada@example.com\""),
        "{output}"
    );
    assert!(output.contains("\"user_id\": 42"), "{output}");
    drop(subscriber);

    // A MANUAL subscription and an acknowledgement, as the README shows.
    let mut manual = Subscriber::spawn(&fresh(readme_command(
        "eventgateway.v1.EventGateway/Subscribe",
        1,
        gateway.addr(),
    )));
    let output = manual.read_until("\"attempt\": 1").await;
    let subscription_id = json_string_after(&output, "\"subscriptionId\": ");
    let ack_id = json_string_after(&output, "\"ackId\": ");
    let stats = gateway
        .subscription(&subscription_id)
        .expect("the MANUAL stream is open");
    eventually("the delivery is out, not acknowledged", || async {
        stats.delivered.get() == 1 && stats.unacked.get() == 1
    })
    .await;
    let acknowledge = fresh(readme_command(
        "eventgateway.v1.EventGateway/Acknowledge",
        0,
        gateway.addr(),
    ))
    .replace("SUBSCRIPTION_ID", &subscription_id)
    .replace("user-registered:2:0:1", &ack_id);
    let acked = Command::new("sh")
        .args(["-c", &acknowledge])
        .output()
        .unwrap();
    assert!(
        acked.status.success(),
        "{}",
        String::from_utf8_lossy(&acked.stderr)
    );
    // The one delivery is acknowledged: nothing is out any more.
    eventually("the acknowledgement was applied", || async {
        stats.unacked.get() == 0
    })
    .await;
    drop(manual);
    gateway.shutdown().await.unwrap();
}

/// Every grpcurl command of the cookbook runs as written, in order: the
/// plain ones must succeed, each Subscribe must print a delivery, and the
/// Acknowledge goes to the MANUAL stream opened just before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cookbook_command_works_as_written() {
    let broker = Broker::start().await;
    // The cookbook's topic and groups, named afresh: the broker may be shared.
    let orders = topic("orders");
    broker.create_topic(&orders, 1).await;
    let gateway = gateway(config(Some(broker.brokers()))).await;
    let cookbook =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grpcurl.md"))
            .unwrap();
    let commands: Vec<String> = cookbook
        .lines()
        .filter(|l| l.starts_with("grpcurl "))
        .map(|l| {
            l.replacen("grpcurl", &grpcurl().display().to_string(), 1)
                .replace("localhost:50051", &gateway.addr().to_string())
                .replace("\"orders\"", &format!("\"{orders}\""))
                .replace("\"billing\"", &format!("\"billing-{orders}\""))
                .replace("\"shipping\"", &format!("\"shipping-{orders}\""))
        })
        .collect();
    assert!(
        commands.len() >= 12,
        "the cookbook lost commands: {}",
        commands.len()
    );
    let mut manual: Option<(Subscriber, String, String)> = None;
    for command in &commands {
        if command.ends_with("/Subscribe") {
            let mut stream = Subscriber::spawn(command);
            let output = stream.read_until("\"attempt\"").await;
            if command.contains("ACK_MODE_MANUAL") {
                let id = json_string_after(&output, "\"subscriptionId\": ");
                let ack = json_string_after(&output, "\"ackId\": ");
                manual = Some((stream, id, ack));
            }
            continue;
        }
        let command = match (&manual, command.contains("SUBSCRIPTION_ID")) {
            (Some((_, id, ack)), true) => {
                // The three orders are out, none acknowledged yet.
                let stats = gateway.subscription(id).expect("the MANUAL stream is open");
                eventually("the MANUAL stream has the three orders out", || async {
                    stats.delivered.get() == 3 && stats.unacked.get() == 3
                })
                .await;
                command
                    .replace("SUBSCRIPTION_ID", id)
                    .replace("ACK_ID", ack)
            }
            (None, true) => panic!("the cookbook acknowledges before a MANUAL subscription"),
            _ => command.clone(),
        };
        let output = Command::new("sh").args(["-c", &command]).output().unwrap();
        assert!(
            output.status.success(),
            "{command}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        if command.ends_with("/Settle") {
            let answer = String::from_utf8_lossy(&output.stdout);
            assert!(answer.contains("SETTLE_OUTCOME_ACCEPTED"), "{answer}");
        }
    }
    let (_stream, id, _) = manual.expect("the cookbook has a MANUAL subscription");
    let stats = gateway
        .subscription(&id)
        .expect("the MANUAL stream is open");
    // One of the three is acknowledged now.
    eventually("the cookbook's acknowledgement was applied", || async {
        stats.unacked.get() == 2
    })
    .await;
    gateway.shutdown().await.unwrap();
}

/// A grpcurl command running in the background, its output read line by line.
struct Subscriber {
    child: std::process::Child,
    lines: Lines,
}

impl Subscriber {
    fn spawn(command: &str) -> Self {
        let mut child = Command::new("sh")
            .args(["-c", &format!("exec {command}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = Lines::of(child.stdout.take().unwrap());
        Self { child, lines }
    }

    /// Reads until the output has a line with `needle`; returns all output
    /// so far.
    async fn read_until(&mut self, needle: &str) -> String {
        self.lines.wait_for(needle).await;
        self.lines.so_far().join("\n")
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON string that follows `key` in grpcurl's output.
fn json_string_after(output: &str, key: &str) -> String {
    let rest = &output[output
        .find(key)
        .unwrap_or_else(|| panic!("{key} in {output}"))
        + key.len()..];
    let value: String = rest
        .trim_start_matches('"')
        .chars()
        .take_while(|c| *c != '"')
        .collect();
    value
}
