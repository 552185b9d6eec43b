//! Helpers of the notifier's end-to-end tests: the notifier binary, its
//! fixture, registrations and what its emails must show. The real parts
//! (broker, gateway, SMTP server) come from testkit.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::json;
use testkit::*;

/// The consumer group a test's notifier subscribes to `topic` as.
pub(crate) fn group(topic: &str) -> String {
    format!("notification-service-{topic}")
}

/// The notifier binary, set up for `topic`, `smtp_url` and its state in
/// `state`, subscribing through the gateway at `gateway`: quick retries,
/// metrics off, errors only in its log (`NOTIFIER_LOG` says otherwise), and
/// nothing else from the environment.
pub(crate) fn notifier_command(
    gateway: std::net::SocketAddr,
    topic: &str,
    smtp_url: &str,
    state: &std::path::Path,
) -> Command {
    let mut notifier = command(env!("CARGO_BIN_EXE_notifier"));
    notifier
        .env("GATEWAY_URL", format!("http://{gateway}"))
        .env("NOTIFIER_TOPIC", topic)
        .env("NOTIFIER_GROUP", group(topic))
        .env("SMTP_URL", smtp_url)
        .env("STATE_DIR", state)
        .env("MIN_BACKOFF", "50ms")
        .env("MAX_BACKOFF", "500ms")
        .env(
            "RUST_LOG",
            std::env::var("NOTIFIER_LOG").unwrap_or_else(|_| "error".into()),
        )
        .env("NOTIFIER_METRICS_ADDR", "0");
    notifier
}

/// A notifier process, killed when dropped.
pub(crate) struct Notifier {
    pub child: Child,
}

impl Notifier {
    pub(crate) fn start(
        gateway: std::net::SocketAddr,
        topic: &str,
        smtp_url: &str,
        state: &std::path::Path,
    ) -> Self {
        Self::start_with(gateway, topic, smtp_url, state, &[])
    }

    /// Starts the notifier with extra environment variables.
    pub(crate) fn start_with(
        gateway: std::net::SocketAddr,
        topic: &str,
        smtp_url: &str,
        state: &std::path::Path,
        extra: &[(&str, String)],
    ) -> Self {
        let child = notifier_command(gateway, topic, smtp_url, state)
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the notifier binary starts");
        Self { child }
    }

    /// Starts the notifier with its metrics on a free port; returns where.
    pub(crate) fn start_with_metrics(
        gateway: std::net::SocketAddr,
        topic: &str,
        smtp_url: &str,
        state: &std::path::Path,
    ) -> (Self, std::net::SocketAddr) {
        let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let extra = [("NOTIFIER_METRICS_ADDR", metrics.to_string())];
        (
            Self::start_with(gateway, topic, smtp_url, state, &extra),
            metrics,
        )
    }

    pub(crate) fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.kill_9();
    }
}

pub(crate) fn state_dir() -> PathBuf {
    std::env::temp_dir().join(format!("notifier-state-{}", uuid::Uuid::now_v7().simple()))
}

pub(crate) fn user(i: usize) -> serde_json::Value {
    json!({"user_id": i, "email": format!("user{i}@example.com"), "name": format!("User {i}")})
}

pub(crate) async fn register(
    client: &mut eventgateway::v1::event_gateway_client::EventGatewayClient<
        tonic::transport::Channel,
    >,
    topic: &str,
    range: std::ops::Range<usize>,
) {
    for i in range {
        publish(client, topic, &i.to_string(), user(i)).await;
    }
}

/// Fails if any user got more than one email.
pub(crate) fn assert_once_each(smtp: &SmtpServer, count: usize) {
    let per = smtp.per_recipient();
    for i in 0..count {
        assert_eq!(
            per.get(&format!("user{i}@example.com")),
            Some(&1),
            "user {i}: {per:?}"
        );
    }
}

/// The notifier's fixture: a topic of two partitions and its dead-letter
/// topic.
pub(crate) async fn setup(prefix: &str) -> Fixture {
    let (broker, topic, gateway, client) = fixture(prefix, 2).await;
    broker.create_topic(&format!("{topic}.dlq"), 1).await;
    (broker, topic, gateway, client)
}
