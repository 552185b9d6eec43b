//! Helpers of the notifier's end-to-end tests: a real SMTP server (Python
//! aiosmtpd), the notifier binary, registrations.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::json;

use crate::common::*;

/// A real SMTP server process that stores what it accepts as .eml files.
pub struct SmtpServer {
    port: u16,
    dir: PathBuf,
    rejected: Vec<String>,
    child: Option<Child>,
}

impl SmtpServer {
    pub fn start(rejected: &[&str]) -> Self {
        let mut server = Self::stopped(rejected);
        server.restart();
        server
    }

    /// A server that is not running yet: its port refuses connections.
    pub fn stopped(rejected: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("smtp-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            port: free_port(),
            dir,
            rejected: rejected.iter().map(|r| r.to_string()).collect(),
            child: None,
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_server.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir);
        for address in &self.rejected {
            command.args(["--reject", address]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the SMTP server (scripts/test.sh installs aiosmtpd)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP server did not start");
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect()
    }

    /// How many messages each envelope recipient got.
    pub fn per_recipient(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for message in self.messages() {
            let to = message
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("X-Envelope-To: "))
                .unwrap_or_default()
                .to_owned();
            *counts.entry(to).or_default() += 1;
        }
        counts
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A notifier process.
pub struct Notifier {
    pub child: Child,
}

impl Notifier {
    pub fn start(
        gateway: std::net::SocketAddr,
        topic: &str,
        smtp_url: &str,
        state: &std::path::Path,
    ) -> Self {
        Self::start_with(gateway, topic, smtp_url, state, &[])
    }

    /// Starts the notifier with extra environment variables.
    pub fn start_with(
        gateway: std::net::SocketAddr,
        topic: &str,
        smtp_url: &str,
        state: &std::path::Path,
        extra: &[(&str, String)],
    ) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_notifier"))
            .env("GATEWAY_URL", format!("http://{gateway}"))
            .env("NOTIFIER_TOPIC", topic)
            .env("NOTIFIER_GROUP", format!("notification-service-{topic}"))
            .env("SMTP_URL", smtp_url)
            .env("STATE_DIR", state)
            .env("MIN_BACKOFF", "50ms")
            .env("MAX_BACKOFF", "500ms")
            .env(
                "RUST_LOG",
                std::env::var("NOTIFIER_LOG").unwrap_or_else(|_| "error".into()),
            )
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("NOTIFIER_METRICS_ADDR", "0")
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the notifier binary starts");
        Self { child }
    }

    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.kill_9();
    }
}

pub fn state_dir() -> PathBuf {
    std::env::temp_dir().join(format!("notifier-state-{}", uuid::Uuid::now_v7().simple()))
}

pub fn user(i: usize) -> serde_json::Value {
    json!({"user_id": i, "email": format!("user{i}@example.com"), "name": format!("User {i}")})
}

pub async fn register(
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

pub async fn wait_for_recipients(smtp: &SmtpServer, count: usize) {
    eventually(&format!("{count} users got an email"), || async {
        smtp.per_recipient().len() >= count
    })
    .await;
}

/// Fails if any user got more than one email.
pub fn assert_once_each(smtp: &SmtpServer, count: usize) {
    let per = smtp.per_recipient();
    for i in 0..count {
        assert_eq!(
            per.get(&format!("user{i}@example.com")),
            Some(&1),
            "user {i}: {per:?}"
        );
    }
}

pub async fn setup(
    prefix: &str,
) -> (
    Broker,
    String,
    gateway::RunningGateway,
    eventgateway::v1::event_gateway_client::EventGatewayClient<tonic::transport::Channel>,
) {
    let (broker, topic, gateway, client) = fixture(prefix, 2).await;
    broker.create_topic(&format!("{topic}.dlq"), 1).await;
    (broker, topic, gateway, client)
}
