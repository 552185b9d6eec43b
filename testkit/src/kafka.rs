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

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::ports::free_port;
use crate::process::{kept, spawn_kept};

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

    /// The server properties: the node's place, listeners and directories,
    /// [`TEST_SETTINGS`], then the listener's security, then the test's own.
    fn properties(&self) -> String {
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
    fn format(&self, classpath: &str) -> Result<(), String> {
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
    fn launch(&mut self, classpath: &str) -> Result<(), String> {
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
    async fn ready(&mut self) -> Result<(), String> {
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

/// What a cluster's nodes get on top of [`TEST_SETTINGS`]: every topic
/// and internal topic replicated to three nodes, a write stored once two
/// have it, and a node that stops answering fenced within seconds.
const CLUSTER_SETTINGS: &[(&str, &str)] = &[
    ("default.replication.factor", "3"),
    ("min.insync.replicas", "2"),
    ("offsets.topic.replication.factor", "3"),
    ("transaction.state.log.replication.factor", "3"),
    ("transaction.state.log.min.isr", "2"),
    ("share.coordinator.state.topic.replication.factor", "3"),
    ("share.coordinator.state.topic.min.isr", "2"),
    // 9 s and 2 s by default.
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "500"),
];

/// A cluster of Apache Kafka nodes (each a controller and a broker, the
/// controllers a static quorum), replicating as [`CLUSTER_SETTINGS`] says;
/// its nodes can be stopped, killed and restarted one by one. One cluster
/// runs at a time in a test process: three JVMs are all two cores carry
/// while a test measures how they fail.
pub struct Cluster {
    nodes: Vec<Node>,
    /// This process's turn to run a cluster, until it is dropped.
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Cluster {
    /// Starts `size` nodes, each with `settings` (its properties over the
    /// cluster's), and waits until the cluster takes a write on every node.
    pub async fn start(size: usize, settings: Settings) -> Result<Cluster, String> {
        static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let turn = TURN.lock().await;
        let ports: Vec<Ports> = (0..size).map(|_| new_ports()).collect();
        let voters = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}@127.0.0.1:{}", i + 1, p.controller))
            .collect::<Vec<_>>()
            .join(",");
        let cluster = cluster_id();
        let mut nodes = Vec::with_capacity(size);
        for (i, ports) in ports.into_iter().enumerate() {
            let mut settings = settings.clone();
            settings.properties = CLUSTER_SETTINGS
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .chain(settings.properties)
                .collect();
            let place = Place {
                id: i + 1,
                size,
                voters: Some(voters.clone()),
                cluster: cluster.clone(),
            };
            nodes.push(Node::prepare(settings, place, ports)?);
        }
        let mut cluster = Cluster { nodes, _turn: turn };
        cluster.nodes[0].ready().await?;
        cluster.wait_replicated().await?;
        Ok(cluster)
    }

    /// Every node's client listener, for bootstrapping.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(Node::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The plaintext listeners of the nodes that run, for helpers.
    pub fn internal(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(Node::internal)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `id` (from 1).
    pub fn node(&mut self, id: usize) -> &mut Node {
        &mut self.nodes[id - 1]
    }

    /// The nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Waits until no partition of any topic is under-replicated (every
    /// replica in sync), at most [`READY_WITHIN`] and again as long while
    /// the count still goes down.
    pub async fn wait_replicated(&self) -> Result<(), String> {
        let bootstrap = self.internal();
        let mut deadline = Instant::now() + READY_WITHIN;
        let mut fewest = usize::MAX;
        loop {
            let behind = {
                let bootstrap = bootstrap.clone();
                tokio::task::spawn_blocking(move || under_replicated(&bootstrap))
                    .await
                    .map_err(|error| error.to_string())?
            };
            if let Ok(count) = behind {
                if count < fewest {
                    fewest = count;
                    deadline = Instant::now() + READY_WITHIN;
                }
            }
            match behind {
                Ok(0) => return Ok(()),
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(count) => {
                    return Err(format!(
                        "{count} partitions still under-replicated after {READY_WITHIN:?}"
                    ))
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Stops each node in turn with SIGTERM (or kills it), restarts it, and
    /// waits until no partition is under-replicated before the next.
    pub async fn rolling_restart(&mut self, kill: bool) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            if kill {
                self.nodes[i].kill();
            } else {
                self.nodes[i].stop().await;
            }
            self.nodes[i].restart().await?;
            self.wait_replicated().await?;
        }
        Ok(())
    }
}

/// How many partitions of the cluster at `bootstrap` have a replica out of
/// sync, by the cluster's metadata (blocking).
fn under_replicated(bootstrap: &str) -> Result<usize, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|error| error.to_string())?;
    let metadata = client
        .fetch_metadata(None, Duration::from_secs(5))
        .map_err(|error| format!("the cluster's metadata: {error}"))?;
    Ok(metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .filter(|p| p.isr().len() < p.replicas().len())
        .count())
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Creates [`READY_TOPIC`] (if it is not there) with a replica on each of
/// `nodes` nodes, and produces one record to it with acks=all.
async fn produce_once(bootstrap: &str, nodes: usize) -> Result<(), String> {
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
fn tail(log: &Path) -> String {
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

/// The `java` to run: `$JAVA_HOME/bin/java`, or the one on PATH.
pub fn java() -> Result<PathBuf, String> {
    find_java(
        std::env::var_os("JAVA_HOME").map(PathBuf::from),
        std::env::var_os("PATH"),
    )
}

/// `java` under `java_home`, or in a folder of `path`; else what to install.
fn find_java(
    java_home: Option<PathBuf>,
    path: Option<std::ffi::OsString>,
) -> Result<PathBuf, String> {
    let from_home = java_home.map(|home| home.join("bin/java"));
    let on_path = path
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("java"));
    from_home
        .into_iter()
        .chain(on_path)
        .find(|java| java.is_file())
        .ok_or_else(|| {
            "Java is not installed, and Apache Kafka runs on it: install a Java 17 (or later) \
             runtime, e.g. Debian's openjdk-17-jre-headless, or set JAVA_HOME"
                .to_owned()
        })
}

/// The project's cache: `EVENT_GATEWAY_CACHE`, or `~/.cache/event-gateway`.
fn cache() -> PathBuf {
    std::env::var_os("EVENT_GATEWAY_CACHE").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".cache/event-gateway")
        },
        PathBuf::from,
    )
}

/// The classpath of Apache Kafka [`VERSION`], as `scripts/kafka.sh` wrote
/// it into the cache.
pub fn classpath() -> Result<String, String> {
    let file = cache().join(format!("kafka-{VERSION}.classpath"));
    let resolved_from =
        std::fs::read_to_string(cache().join(format!("kafka-{VERSION}.classpath.pom")));
    if resolved_from.is_ok_and(|pom| pom != include_str!("../kafka/pom.xml")) {
        return Err(format!(
            "{} was resolved from another testkit/kafka/pom.xml: run scripts/kafka.sh again",
            file.display()
        ));
    }
    let classpath = std::fs::read_to_string(&file).map_err(|_| {
        format!(
            "Apache Kafka {VERSION}'s jars are not resolved yet ({} is missing): run \
             scripts/kafka.sh once (it needs Java 17 and Maven), or scripts/test.sh, which \
             runs it",
            file.display()
        )
    })?;
    Ok(classpath.trim().to_owned())
}

/// A new Kafka cluster id: 16 random bytes, base64url without padding,
/// never starting with `-` (the storage tool would take it for an option,
/// which is why Kafka's own ids never do).
fn cluster_id() -> String {
    use base64::Engine as _;
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// Where the nodes of this machine's test runs live (`scripts/test.sh`
/// clears it when it starts).
pub fn nodes_root() -> PathBuf {
    std::env::temp_dir().join("event-gateway-kafka")
}

/// A new directory for one node of this process, `<pid>-<n>`; the first
/// call of a process removes what processes that are gone left behind.
fn node_dir() -> Result<PathBuf, String> {
    static NEXT: Mutex<u32> = Mutex::new(0);
    let mut next = NEXT.lock().unwrap_or_else(|p| p.into_inner());
    if *next == 0 {
        sweep(&nodes_root());
    }
    *next += 1;
    let dir = nodes_root().join(format!("{}-{}", std::process::id(), *next));
    std::fs::create_dir_all(&dir)
        .map_err(|error| format!("cannot make {}: {error}", dir.display()))?;
    Ok(dir)
}

/// Kills the JVMs of nodes whose test process is gone, and removes their
/// data (their logs stay, for the story of a failed run; scripts/test.sh
/// clears them when it starts).
fn sweep(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() || !entry.path().join("pid").exists() {
            continue;
        }
        if let Some(pid) = std::fs::read_to_string(entry.path().join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("kafka.Kafka") {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        let _ = std::fs::remove_dir_all(entry.path().join("data"));
        let _ = std::fs::remove_file(entry.path().join("pid"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_version_is_the_pom_s() {
        let pom = include_str!("../kafka/pom.xml");
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
