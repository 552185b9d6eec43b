//! Apache Kafka for a test: the node the tests of one binary share (they
//! keep apart by topics and groups of their own and never assume a fresh
//! broker), or a node of the test's own where it stops, kills or restarts
//! it or needs a listener of its own; and topic creation through the admin
//! API.
//!
//! With [`EXTERNAL_BROKERS`] set, the shared broker is that cluster
//! instead (every test binary, and every run, shares it); tests that need
//! a node of their own still start one.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::kafka::{Node, Settings};
use crate::wait::PATIENCE;

/// How long one metadata or offsets request of a helper may take.
const REQUEST: Duration = Duration::from_secs(10);

/// The environment variable naming an existing cluster's bootstrap
/// servers (plaintext) to run the tests against instead of a node per
/// test binary.
pub const EXTERNAL_BROKERS: &str = "EVENT_GATEWAY_TEST_BROKERS";

/// A broker a test runs against: see the module.
pub struct Broker {
    node: Place,
}

/// Whose node it is.
enum Place {
    /// The node of the whole test binary.
    Shared(&'static Node),
    /// The test's own.
    Own(Box<Node>),
    /// A cluster the tests were pointed at ([`EXTERNAL_BROKERS`]).
    External(String),
}

impl Broker {
    /// The node the tests of this binary share, started by the first test
    /// that asks for it. It lives until the binary exits; a test that
    /// breaks its broker takes one of its own ([`Broker::own`]).
    pub async fn start() -> Self {
        if let Some(brokers) = std::env::var(EXTERNAL_BROKERS)
            .ok()
            .filter(|b| !b.trim().is_empty())
        {
            return Broker {
                node: Place::External(brokers),
            };
        }
        static SHARED: tokio::sync::OnceCell<Node> = tokio::sync::OnceCell::const_new();
        let node = SHARED
            .get_or_try_init(|| Node::start(Settings::default()))
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Broker {
            node: Place::Shared(node),
        }
    }

    /// A plaintext node of the test's own, which it may stop, kill and
    /// restart (its data survives a restart).
    pub async fn own() -> Self {
        Self::with(Settings::default()).await
    }

    /// A node of the test's own, started with `settings` (a listener that
    /// needs TLS or SASL, broker properties).
    pub async fn with(settings: Settings) -> Self {
        let node = Node::start(settings)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Broker {
            node: Place::Own(Box::new(node)),
        }
    }

    fn node(&self) -> Option<&Node> {
        match &self.node {
            Place::Shared(node) => Some(node),
            Place::Own(node) => Some(node),
            Place::External(_) => None,
        }
    }

    fn own_node(&mut self) -> &mut Node {
        match &mut self.node {
            Place::Own(node) => node,
            _ => panic!(
                "the shared broker is never stopped: take one of the test's own with Broker::own()"
            ),
        }
    }

    /// `host:port` to bootstrap from: the client listener.
    pub fn brokers(&self) -> String {
        match &self.node {
            Place::External(brokers) => brokers.clone(),
            _ => self.node().map(Node::bootstrap).unwrap_or_default(),
        }
    }

    /// `127.0.0.1:port` of the node's plaintext listener, whatever its
    /// client listener asks for: for helpers (topics, offsets).
    pub fn internal(&self) -> String {
        match &self.node {
            Place::External(brokers) => brokers.clone(),
            _ => self.node().map(Node::internal).unwrap_or_default(),
        }
    }

    /// The broker's process id, while it runs (`None` for an external
    /// cluster).
    pub fn pid(&self) -> Option<u32> {
        self.node().and_then(Node::pid)
    }

    /// Kills the broker (SIGKILL). Only a broker of the test's own.
    pub fn kill(&mut self) {
        self.own_node().kill();
    }

    /// Starts the broker again with its data, and waits until it is ready.
    /// Only a broker of the test's own.
    pub async fn restart(&mut self) {
        self.own_node()
            .restart()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
    }

    /// Creates a topic with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        create_topics(&self.internal(), &[topic], partitions)
            .await
            .expect("topic created");
    }

    /// Creates a topic with `partitions` partitions and the topic
    /// configuration `config` (e.g. `max.message.bytes`).
    pub async fn create_topic_with(&self, topic: &str, partitions: i32, config: &[(&str, &str)]) {
        create_topics_with(&self.internal(), &[topic], partitions, config)
            .await
            .expect("topic created");
    }

    /// Creates a topic with `partitions` partitions unless it exists: for
    /// a test that runs the docs' commands, which name their topic, against
    /// a cluster that may have it from an earlier run.
    pub async fn ensure_topic(&self, topic: &str, partitions: i32) {
        match create_topics(&self.internal(), &[topic], partitions).await {
            Ok(()) => {}
            Err(error) if error.contains("TopicAlreadyExists") => {}
            Err(error) => panic!("{error}"),
        }
    }
}

/// Creates `topics` with `partitions` partitions each (the cluster's
/// default replication) on the cluster at `brokers`, through the admin API.
pub async fn create_topics(brokers: &str, topics: &[&str], partitions: i32) -> Result<(), String> {
    create_topics_with(brokers, topics, partitions, &[]).await
}

/// [`create_topics`], each topic with the configuration `config`.
pub async fn create_topics_with(
    brokers: &str,
    topics: &[&str],
    partitions: i32,
    config: &[(&str, &str)],
) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|error| format!("cannot create an admin client: {error}"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| {
            config.iter().fold(
                NewTopic::new(topic, partitions, TopicReplication::Fixed(-1)),
                |new, (key, value)| new.set(key, value),
            )
        })
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .map_err(|error| format!("cannot create topics: {error}"))?;
    for result in results {
        result
            .map_err(|(topic, code)| format!("cannot create topic {topic}: {code:?} ({code})"))?;
    }
    Ok(())
}

/// The offset consumer group `group` committed on `topic`'s `partition`
/// (the next offset it reads), or `None` when it committed none; read
/// without joining the group (blocking).
pub fn committed_offset(brokers: &str, group: &str, topic: &str, partition: i32) -> Option<i64> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer of the group's offsets");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = reader
        .committed_offsets(tpl, REQUEST)
        .expect("the group's offsets")
        .find_partition(topic, partition)
        .map(|e| e.offset());
    match committed {
        Some(Offset::Offset(offset)) => Some(offset),
        _ => None,
    }
}

/// The member ids of consumer group `group` as the broker lists them
/// (DescribeGroups; blocking).
pub fn group_members(brokers: &str, group: &str) -> Vec<String> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a client of the broker");
    let groups = reader
        .fetch_group_list(Some(group), REQUEST)
        .expect("the group's description");
    groups
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.members().iter().map(|m| m.id().to_owned()))
        .collect()
}

/// The records in partition 0 of `topic` now (its high watermark less
/// its low one).
pub async fn records_in(brokers: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        let (low, high) = consumer
            .fetch_watermarks(&topic, 0, std::time::Duration::from_secs(10))
            .unwrap();
        high - low
    })
    .await
    .unwrap()
}

/// A unique topic name for one test.
pub fn topic(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// Waits until consumer group `group` has committed, on every partition of
/// `topic`, the end of the partition: everything stored so far was handled
/// (and, with MANUAL acks, acknowledged). Fails the test after [`PATIENCE`].
pub async fn wait_group_done(brokers: &str, group: &str, topic: &str) {
    let (brokers, group, topic) = (brokers.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        // Reads the group's offsets without joining it.
        let reader: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("a consumer of the group's offsets");
        let metadata = reader
            .fetch_metadata(Some(&topic), REQUEST)
            .expect("the topic's metadata");
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let mut behind = Vec::new();
            for &partition in &partitions {
                let (_, end) = reader
                    .fetch_watermarks(&topic, partition, REQUEST)
                    .expect("the partition's end");
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&topic, partition);
                let committed = reader
                    .committed_offsets(tpl, REQUEST)
                    .expect("the group's offsets")
                    .find_partition(&topic, partition)
                    .map(|e| e.offset());
                let committed = match committed {
                    Some(Offset::Offset(offset)) => offset,
                    _ => 0,
                };
                if committed < end {
                    behind.push((partition, committed, end));
                }
            }
            if behind.is_empty() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "group {group} is still behind on {topic} (partition, committed, end): {behind:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .expect("the wait runs");
}
