//! Apache Kafka, the broker users run, as the test suites and the benchmark
//! start it: its jars resolved from Maven Central by `scripts/kafka.sh`
//! (the versions pinned in `testkit/kafka/pom.xml`), a KRaft node (combined
//! controller and broker) formatted with `--standalone` in a directory of
//! its own, started with `java` on free loopback ports with a bounded heap,
//! and ready once a topic was created and a produce acknowledged.
//!
//! No JVM outlives the test process that started it: each is started
//! under `setpriv --pdeathsig KILL` from a thread that lives as long as
//! the process, and its pid is recorded beside its data, so that the next
//! run removes what a killed run left behind.

mod cluster;
mod install;
mod launch;

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::ports::free_port;

pub use self::cluster::*;
use self::install::*;
pub use self::install::{classpath, java, nodes_root};

/// The Apache Kafka release the tests run (`testkit/kafka/pom.xml` pins the
/// same; a test checks that they agree).
pub const VERSION: &str = "4.3.2";

/// Longest a node may take from its start to ready.
pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// The heap a test broker gets: enough for the suite's topics, small
/// enough for several brokers on a 2-core, shared machine.
const HEAP: &str = "-Xmx512m";

/// The topic a node is checked with before it counts as ready.
const READY_TOPIC: &str = "testkit-ready";

/// How a node's client listener speaks.
#[derive(Debug, Clone, Default)]
pub enum Listener {
    /// Plain TCP.
    #[default]
    Plaintext,
    /// TLS with the certificate chain and PKCS#8 key in `keystore` (one PEM
    /// file; the certificate names `localhost`); with `client_ca`, a client
    /// must present a certificate of that CA (mutual TLS).
    Tls {
        /// The node's certificate chain and key, PEM.
        keystore: PathBuf,
        /// The CA of client certificates, PEM.
        client_ca: Option<PathBuf>,
    },
    /// SASL SCRAM-SHA-512 over TLS (`keystore` as for [`Listener::Tls`]);
    /// `users` (name, password) are created when the storage is formatted.
    SaslScramTls {
        /// The node's certificate chain and key, PEM.
        keystore: PathBuf,
        /// The SCRAM users.
        users: Vec<(String, String)>,
    },
}

/// What a node is started with.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// How clients reach it.
    pub listener: Listener,
    /// Server properties of the test's own, over [`TEST_SETTINGS`].
    pub properties: Vec<(String, String)>,
    /// A network namespace to run it in (and the address it listens on
    /// there), instead of this one's loopback.
    pub namespace: Option<Namespace>,
    /// How its JVM runs.
    pub jvm: Jvm,
}

/// How a node's JVM runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Jvm {
    /// As tests want it: a heap of at most 512 MiB and the serial
    /// collector, beside other brokers on two cores.
    #[default]
    Test,
    /// As Kafka's own start script runs it (a 1 GiB heap, G1 with short
    /// pauses): for measurements.
    Kafka,
}

impl Jvm {
    /// The JVM's options.
    fn options(self) -> &'static [&'static str] {
        match self {
            Jvm::Test => &[HEAP, "-XX:+UseSerialGC", "-XX:-UsePerfData"],
            Jvm::Kafka => &[
                "-Xmx1G",
                "-Xms1G",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35",
                "-XX:+ExplicitGCInvokesConcurrent",
            ],
        }
    }
}

/// A network namespace a node runs in, and its address there.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// The namespace's name (`ip netns`).
    pub name: String,
    /// The address the node listens on, reachable from this namespace.
    pub address: String,
}

/// The ports of one node, on 127.0.0.1 (or its namespace's address).
#[derive(Debug, Clone, Copy)]
struct Ports {
    /// The client listener, as [`Settings::listener`] says.
    external: u16,
    /// A plaintext listener for brokers and the tests' own helpers.
    internal: u16,
    /// The KRaft controller.
    controller: u16,
}

/// Where a node stands in its cluster's controller quorum.
#[derive(Debug, Clone)]
struct Place {
    /// Its `node.id`, from 1.
    id: usize,
    /// The nodes of its cluster: 1 for a node of its own.
    size: usize,
    /// With other nodes: the quorum's voters, `id@host:port,...`.
    voters: Option<String>,
    /// The cluster's id, the same on each of its nodes.
    cluster: String,
}

/// Free loopback ports for a node.
fn new_ports() -> Ports {
    Ports {
        external: free_port(),
        internal: free_port(),
        controller: free_port(),
    }
}

/// One Apache Kafka node (controller and broker) in a directory of its
/// own; the process is killed and the directory removed when it is dropped.
pub struct Node {
    /// Its directory: properties, data, log, pid.
    dir: PathBuf,
    ports: Ports,
    settings: Settings,
    place: Place,
    /// The JVM, while it runs.
    child: Option<Child>,
}

impl Node {
    /// Formats and starts a node of its own, and waits until it is ready
    /// (a topic created and a produce acknowledged, within
    /// [`READY_WITHIN`]).
    pub async fn start(settings: Settings) -> Result<Node, String> {
        let place = Place {
            id: 1,
            size: 1,
            voters: None,
            cluster: cluster_id(),
        };
        let mut node = Node::prepare(settings, place, new_ports())?;
        node.ready().await?;
        Ok(node)
    }

    /// A node in a directory of its own, formatted and started.
    fn prepare(settings: Settings, place: Place, ports: Ports) -> Result<Node, String> {
        let classpath = classpath()?;
        let mut node = Node {
            dir: node_dir()?,
            ports,
            settings,
            place,
            child: None,
        };
        std::fs::write(node.dir.join("server.properties"), node.properties())
            .map_err(|error| format!("cannot write the broker's properties: {error}"))?;
        node.format(&classpath)?;
        node.launch(&classpath)?;
        Ok(node)
    }

    /// Its `node.id`.
    pub fn id(&self) -> usize {
        self.place.id
    }

    /// Whether its JVM runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `host:port` clients bootstrap from (its client listener).
    pub fn bootstrap(&self) -> String {
        match self.settings.listener {
            Listener::Plaintext => format!("{}:{}", self.address(), self.ports.external),
            _ => format!("localhost:{}", self.ports.external),
        }
    }

    /// `127.0.0.1:port` of its plaintext listener, for the tests' helpers
    /// (topics, offsets) whatever the client listener asks for.
    pub fn internal(&self) -> String {
        format!("{}:{}", self.address(), self.ports.internal)
    }

    /// The address it listens on: loopback, or its namespace's address.
    fn address(&self) -> &str {
        self.settings
            .namespace
            .as_ref()
            .map_or("127.0.0.1", |namespace| &namespace.address)
    }

    /// The JVM's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where it logs.
    pub fn log(&self) -> PathBuf {
        self.dir.join("kafka.log")
    }

    /// Kills the JVM (SIGKILL: a crash, nothing flushed or handed over).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the JVM with SIGTERM (a controlled shutdown) and waits until it
    /// exited, at most [`READY_WITHIN`]; then kills it.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        crate::sigterm(&child);
        let until = Instant::now() + READY_WITHIN;
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the node again (after [`Node::kill`] or [`Node::stop`]) on the
    /// same ports with the data it had, and waits until it is ready.
    pub async fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.launch(&classpath()?)?;
        self.ready().await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_version_is_the_pom_s() {
        let pom = include_str!("../../kafka/pom.xml");
        assert!(
            pom.contains(&format!("<kafka.version>{VERSION}</kafka.version>")),
            "testkit/kafka/pom.xml pins another Kafka than testkit::kafka::VERSION ({VERSION})"
        );
    }

    #[test]
    fn without_java_the_error_says_what_to_install() {
        let empty = std::env::temp_dir().join(format!("no-java-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&empty).unwrap();
        let error =
            find_java(Some(empty.clone()), Some(empty.clone().into_os_string())).unwrap_err();
        assert!(error.contains("install a Java 17"), "{error}");
        std::fs::write(empty.join("java"), "").unwrap();
        assert_eq!(
            find_java(None, Some(empty.clone().into_os_string())),
            Ok(empty.join("java"))
        );
        std::fs::remove_dir_all(&empty).unwrap();
    }

    #[test]
    fn a_cluster_id_is_what_kafka_takes() {
        // One in 64 random ids would start with '-'.
        for _ in 0..1000 {
            let id = cluster_id();
            assert_eq!(id.len(), 22);
            assert!(!id.starts_with('-'), "{id}");
            assert!(id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        }
    }
}
