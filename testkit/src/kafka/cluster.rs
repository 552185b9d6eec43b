//! Three nodes as one cluster: a static quorum, replicated topics, and
//! stops, kills and rolling restarts.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;

use super::*;

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
