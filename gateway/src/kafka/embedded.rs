//! The embedded, in-memory Kafka used when no brokers are configured:
//! librdkafka's mock cluster, reachable over TCP on loopback. For
//! development only: nothing survives a restart.

use std::sync::mpsc;
use std::thread;

use rdkafka::mocking::MockCluster;

/// Brokers in the embedded cluster.
const BROKERS: i32 = 1;

/// A running embedded cluster; dropping it stops the cluster.
#[derive(Debug)]
pub(crate) struct EmbeddedKafka {
    /// Its bootstrap servers, `host:port`.
    bootstrap_servers: String,
    /// Dropping this tells the cluster's thread to stop.
    _stop: mpsc::Sender<()>,
}

impl EmbeddedKafka {
    /// Starts the cluster on a thread of its own (the mock cluster handle
    /// cannot move between threads).
    pub(crate) fn start() -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        thread::Builder::new().name("embedded-kafka".into()).spawn(
            move || match MockCluster::new(BROKERS) {
                Ok(cluster) => {
                    let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                    // Returns when the EmbeddedKafka is dropped.
                    let _ = stop_rx.recv();
                    drop(cluster);
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                }
            },
        )?;
        let bootstrap_servers = ready_rx.recv()??;
        Ok(Self {
            bootstrap_servers,
            _stop: stop_tx,
        })
    }

    /// The bootstrap servers to connect to.
    pub(crate) fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }
}
