//! Starting a node: its properties, formatting its storage, the JVM, and
//! waiting until it takes a produce.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::process::{kept, spawn_kept};

use super::*;

/// The broker settings every test node gets (the README lists the
/// production defaults they differ from). Settings given to a node win.
const TEST_SETTINGS: &[(&str, &str)] = &[
    // A group's first rebalance starts at once instead of after 3 s.
    ("group.initial.rebalance.delay.ms", "0"),
    // One node: the internal topics have one replica.
    ("offsets.topic.replication.factor", "1"),
    ("transaction.state.log.replication.factor", "1"),
    ("transaction.state.log.min.isr", "1"),
    ("share.coordinator.state.topic.replication.factor", "1"),
    ("share.coordinator.state.topic.min.isr", "1"),
    // Fewer partitions of the offsets topic: created in a moment on first
    // use (50 by default).
    ("offsets.topic.num.partitions", "5"),
    // As most managed clusters: a topic exists once it was created.
    ("auto.create.topics.enable", "false"),
    // The new group protocol (KIP-848): short sessions and heartbeats, so
    // that assignments move in about a second rather than five.
    ("group.consumer.min.session.timeout.ms", "2000"),
    ("group.consumer.session.timeout.ms", "10000"),
    ("group.consumer.min.heartbeat.interval.ms", "250"),
    ("group.consumer.heartbeat.interval.ms", "1000"),
    // The classic protocol: sessions as short as the tests ask.
    ("group.min.session.timeout.ms", "2000"),
    // Two cores: fewer threads than a production broker.
    ("num.network.threads", "2"),
    ("num.io.threads", "4"),
    ("background.threads", "4"),
];

impl Node {
    /// The server properties: the node's place, listeners and directories,
    /// [`TEST_SETTINGS`], then the listener's security, then the test's own.
    pub(super) fn properties(&self) -> String {
        let Ports {
            external,
            internal,
            controller,
        } = self.ports;
        let address = self.address();
        let (protocol, host) = match self.settings.listener {
            Listener::Plaintext => ("PLAINTEXT", address),
            Listener::Tls { .. } => ("SSL", "localhost"),
            Listener::SaslScramTls { .. } => ("SASL_SSL", "localhost"),
        };
        let quorum = match &self.place.voters {
            Some(voters) => format!("controller.quorum.voters={voters}"),
            None => format!("controller.quorum.bootstrap.servers={address}:{controller}"),
        };
        let mut lines = vec![
            "process.roles=broker,controller".to_owned(),
            format!("node.id={}", self.place.id),
            quorum,
            format!(
                "listeners=EXTERNAL://{address}:{external},INTERNAL://{address}:{internal},CONTROLLER://{address}:{controller}"
            ),
            format!(
                "advertised.listeners=EXTERNAL://{host}:{external},INTERNAL://{address}:{internal}"
            ),
            format!(
                "listener.security.protocol.map=EXTERNAL:{protocol},INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            "inter.broker.listener.name=INTERNAL".to_owned(),
            "controller.listener.names=CONTROLLER".to_owned(),
            format!("log.dirs={}", self.dir.join("data").display()),
        ];
        lines.extend(TEST_SETTINGS.iter().map(|(k, v)| format!("{k}={v}")));
        let keystore = |keystore: &Path| {
            [
                "listener.name.external.ssl.keystore.type=PEM".to_owned(),
                format!(
                    "listener.name.external.ssl.keystore.location={}",
                    keystore.display()
                ),
            ]
        };
        match &self.settings.listener {
            Listener::Plaintext => {}
            Listener::Tls {
                keystore: store,
                client_ca,
            } => {
                lines.extend(keystore(store));
                if let Some(ca) = client_ca {
                    lines.extend([
                        "listener.name.external.ssl.truststore.type=PEM".to_owned(),
                        format!(
                            "listener.name.external.ssl.truststore.location={}",
                            ca.display()
                        ),
                        "listener.name.external.ssl.client.auth=required".to_owned(),
                    ]);
                }
            }
            Listener::SaslScramTls {
                keystore: store, ..
            } => {
                lines.extend(keystore(store));
                lines.extend([
                    "sasl.enabled.mechanisms=SCRAM-SHA-512".to_owned(),
                    "listener.name.external.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;".to_owned(),
                ]);
            }
        }
        lines.extend(
            self.settings
                .properties
                .iter()
                .map(|(k, v)| format!("{k}={v}")),
        );
        lines.join("\n") + "\n"
    }

    /// Formats the node's storage: a new cluster of this one node as its
    /// own controller quorum (`--standalone`), or a node of a cluster whose
    /// voters its properties name, with its SCRAM users.
    pub(super) fn format(&self, classpath: &str) -> Result<(), String> {
        let mut command = Command::new(java()?);
        command
            .args(["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", HEAP, "-cp"])
            .arg(classpath)
            .args(["kafka.tools.StorageTool", "format"])
            .args(self.place.voters.is_none().then_some("--standalone"))
            .args(["--cluster-id", &self.place.cluster])
            .arg("--config")
            .arg(self.dir.join("server.properties"));
        if let Listener::SaslScramTls { users, .. } = &self.settings.listener {
            for (name, password) in users {
                command.args([
                    "--add-scram",
                    &format!("SCRAM-SHA-512=[name={name},password={password}]"),
                ]);
            }
        }
        let output = command
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("cannot run Kafka's storage tool: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "Kafka's storage tool failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Starts the JVM, its output appended to [`Node::log`].
    pub(super) fn launch(&mut self, classpath: &str) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .map_err(|error| format!("cannot open the broker's log: {error}"))?;
        let err = log
            .try_clone()
            .map_err(|error| format!("cannot open the broker's log: {error}"))?;
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/kafka/log4j2.properties");
        let mut command = match &self.settings.namespace {
            Some(namespace) => {
                let mut command = kept(PathBuf::from("ip"));
                command
                    .args(["netns", "exec", &namespace.name])
                    .arg(java()?);
                command
            }
            None => kept(java()?),
        };
        command
            .args(self.settings.jvm.options())
            .arg(format!("-Dlog4j2.configurationFile={config}"))
            .arg("-cp")
            .arg(classpath)
            .arg("kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .env_remove("KAFKA_OPTS")
            .env_remove("JAVA_TOOL_OPTIONS")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let child = spawn_kept(command)
            .map_err(|error| format!("cannot start Apache Kafka with java: {error}"))?;
        std::fs::write(self.dir.join("pid"), child.id().to_string())
            .map_err(|error| format!("cannot record the broker's pid: {error}"))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the node created a topic and acknowledged a produce to
    /// it (acks=all), at most [`READY_WITHIN`]; logs how long that took.
    pub(super) async fn ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let deadline = started + READY_WITHIN;
        let bootstrap = self.internal();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "Apache Kafka exited ({status}) before it was ready:\n{}",
                        tail(&self.log())
                    ));
                }
            }
            match produce_once(&bootstrap, self.place.size).await {
                Ok(()) => break,
                Err(error) if Instant::now() >= deadline => {
                    return Err(format!(
                        "Apache Kafka was not ready within {READY_WITHIN:?} ({error}):\n{}",
                        tail(&self.log())
                    ))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        eprintln!(
            "Apache Kafka {VERSION} ready on {} in {:.1} s (log: {})",
            self.bootstrap(),
            started.elapsed().as_secs_f64(),
            self.log().display()
        );
        Ok(())
    }
}

/// Creates [`READY_TOPIC`] (if it is not there) with a replica on each of
/// `nodes` nodes, and produces one record to it with acks=all.
pub(super) async fn produce_once(bootstrap: &str, nodes: usize) -> Result<(), String> {
    let quick = |config: &mut ClientConfig| {
        config
            .set("bootstrap.servers", bootstrap)
            .set("socket.connection.setup.timeout.ms", "1000")
            .set("reconnect.backoff.max.ms", "100");
    };
    let mut admin_config = ClientConfig::new();
    quick(&mut admin_config);
    let admin: AdminClient<DefaultClientContext> = admin_config
        .create()
        .map_err(|error| format!("an admin client: {error}"))?;
    let replicas = i32::try_from(nodes).unwrap_or(1);
    let topic = NewTopic::new(READY_TOPIC, 1, TopicReplication::Fixed(replicas));
    let options = AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(3)))
        .operation_timeout(Some(Duration::from_secs(3)));
    let created = admin
        .create_topics([&topic], &options)
        .await
        .map_err(|error| format!("creating a topic: {error}"))?;
    for result in created {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(format!("creating a topic: {code}")),
        }
    }
    let mut producer_config = ClientConfig::new();
    quick(&mut producer_config);
    let producer: FutureProducer = producer_config
        .set("acks", "all")
        .set("message.timeout.ms", "3000")
        .create()
        .map_err(|error| format!("a producer: {error}"))?;
    producer
        .send(
            FutureRecord::<(), _>::to(READY_TOPIC).payload("ready"),
            Duration::from_secs(3),
        )
        .await
        .map(|_| ())
        .map_err(|(error, _)| format!("producing: {error}"))
}

/// The last lines of a log, for an error message.
pub(super) fn tail(log: &Path) -> String {
    let Ok(file) = std::fs::File::open(log) else {
        return format!("(no log at {})", log.display());
    };
    let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    let from = lines.len().saturating_sub(30);
    format!(
        "{} (last lines):\n{}",
        log.display(),
        lines[from..].join("\n")
    )
}
