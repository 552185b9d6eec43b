//! A real Kafka-protocol broker (tansu) for one test, and topic creation
//! through the admin API.

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::tansu;
use crate::wait::{eventually, PATIENCE};

/// How long one metadata or offsets request of a helper may take.
const REQUEST: Duration = Duration::from_secs(10);

/// A broker process on a free port, killed when dropped.
pub struct Broker {
    port: u16,
    storage: String,
    /// How it listens.
    listening: tansu::Listening,
    child: Option<Child>,
    /// The SQLite file of a durable broker, removed when it is dropped.
    file: Option<PathBuf>,
}

impl Broker {
    /// Starts a broker with in-memory storage on a free port.
    pub async fn start() -> Self {
        Self::start_with_storage("memory://tansu/".into()).await
    }

    /// Starts a broker whose data survives a restart (SQLite in a temp file).
    pub async fn start_durable() -> Self {
        let file = std::env::temp_dir().join(format!(
            "event-gateway-{}.db",
            uuid::Uuid::now_v7().simple()
        ));
        let mut broker = Self::start_with_storage(format!("sqlite:///{}", file.display())).await;
        broker.file = Some(file);
        broker
    }

    /// Starts a broker (in memory) that tells clients to connect to
    /// `advertised` (`host:port`: a proxy in front of it) instead of to
    /// itself.
    pub async fn start_advertising(advertised: &str) -> Self {
        let mut broker = Broker {
            port: tansu::free_port(),
            storage: "memory://tansu/".into(),
            listening: tansu::Listening {
                advertised: Some(advertised.to_owned()),
                authentication: false,
            },
            child: None,
            file: None,
        };
        broker.restart().await;
        broker
    }

    /// Restarts the broker listening as `listening` says (a durable broker
    /// keeps its topics and users).
    pub async fn restart_listening(&mut self, listening: tansu::Listening) {
        self.listening = listening;
        self.restart().await;
    }

    /// Creates a SCRAM-SHA-512 user (before authentication is required).
    pub fn create_user(&self, name: &str, password: &str) {
        tansu::create_user(self.port, name, password).expect("the user is created");
    }

    /// The port it listens on itself.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts a broker with the given storage engine URL.
    pub async fn start_with_storage(storage: String) -> Self {
        let mut broker = Broker {
            port: tansu::free_port(),
            storage,
            listening: tansu::Listening::default(),
            child: None,
            file: None,
        };
        broker.restart().await;
        broker
    }

    /// `host:port` to bootstrap from.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker (again) on the same port and waits until it accepts
    /// connections.
    pub async fn restart(&mut self) {
        self.kill();
        let child = tansu::spawn(self.port, &self.storage, &self.listening).expect("tansu starts");
        self.child = Some(child);
        let port = self.port;
        eventually("the broker accepts connections", || async {
            tansu::accepts(port)
        })
        .await;
    }

    /// Creates a topic with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        create_topics(&self.brokers(), &[topic], partitions)
            .await
            .expect("topic created");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if let Some(file) = &self.file {
            for suffix in ["", "-shm", "-wal"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }
}

/// Creates `topics` with `partitions` partitions each (replication 1) on
/// the cluster at `brokers`, through the admin API.
pub async fn create_topics(brokers: &str, topics: &[&str], partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|error| format!("cannot create an admin client: {error}"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| NewTopic::new(topic, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .map_err(|error| format!("cannot create topics: {error}"))?;
    for result in results {
        result.map_err(|(topic, code)| format!("cannot create topic {topic}: {code}"))?;
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

/// The record at `offset` of `topic`'s `partition`, read by a plain Kafka
/// consumer (blocking). Fails the test after [`PATIENCE`].
pub fn read_plain(
    brokers: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> rdkafka::message::OwnedMessage {
    read_plain_range(brokers, topic, partition, offset, 1)
        .pop()
        .expect("one record")
}

/// The `count` records from `from` on of `topic`'s `partition`, read by a
/// plain Kafka consumer (blocking). Fails the test after [`PATIENCE`].
/// (tansu answers a fetch from inside a record batch with the next batch:
/// read records written together from the first of them.)
pub fn read_plain_range(
    brokers: &str,
    topic: &str,
    partition: i32,
    from: i64,
    count: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::message::Message;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("plain-{topic}"))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut records = Vec::with_capacity(count);
    while records.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "the plain consumer got {} of {count} records",
            records.len()
        );
        if let Some(result) = consumer.poll(Duration::from_millis(200)) {
            let message = result.expect("plain consume").detach();
            if message.offset() == from + records.len() as i64 {
                records.push(message);
            }
        }
    }
    records
}

/// [`read_plain`] off the async runtime, so that a gateway on the same
/// runtime goes on meanwhile.
pub async fn read_plain_async(
    brokers: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> rdkafka::message::OwnedMessage {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_plain(&brokers, &topic, partition, offset))
        .await
        .expect("the plain consumer ran")
}

/// Writes one record with `value` and `headers` (names as raw bytes, which
/// no Kafka client library writes but the protocol carries) to
/// `topic`'s `partition` over the raw Kafka protocol (`raw_produce.py`);
/// returns its offset.
pub fn produce_raw(
    brokers: &str,
    topic: &str,
    partition: i32,
    value: &[u8],
    headers: &[(&[u8], &[u8])],
) -> i64 {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/raw_produce.py");
    let output = std::process::Command::new("python3")
        .args([script, brokers, topic, &partition.to_string(), &hex(value)])
        .args(
            headers
                .iter()
                .map(|(name, value)| format!("{}={}", hex(name), hex(value))),
        )
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "raw produce failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("an offset")
}
