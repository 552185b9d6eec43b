//! Gateway replicas a test starts, kills and restarts: each keeps its
//! port across restarts and what each of its processes logged.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;

use crate::gateway::{gateway_process, wait_serving};
use crate::ports::free_port;
use crate::process::Lines;

/// A gateway process on a port of its own that stays the same across
/// restarts, with what each of its processes logged.
pub struct Replica {
    binary: PathBuf,
    port: u16,
    /// The running process, if any; a test kills or stops it.
    pub child: Option<Child>,
    /// What each of its processes wrote, the current one last.
    logs: Vec<Lines>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The warnings and errors every replica logged so far, to show beside
/// a failure.
pub fn warnings(replicas: &mut [Replica]) -> Vec<String> {
    replicas
        .iter_mut()
        .enumerate()
        .flat_map(|(i, replica)| {
            replica
                .logs
                .iter_mut()
                .flat_map(|log| log.so_far().to_vec())
                .filter(|line| line.contains("WARN") || line.contains("ERROR"))
                // --kafka-property reaches the producer too, which names
                // the consumer's properties it ignores.
                .filter(|line| !line.contains("CONFWARN"))
                .map(move |line| format!("replica {i}: {line}"))
        })
        .collect()
}

impl Replica {
    /// A replica of the gateway `binary`, not started, on a free port.
    pub fn new(binary: &Path) -> Self {
        Self {
            binary: binary.to_owned(),
            port: free_port(),
            child: None,
            logs: Vec::new(),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    /// Starts it on `brokers` with `flags`, logging warnings, and waits
    /// until it serves.
    pub async fn start(&mut self, brokers: &str, flags: &[&str]) {
        let (child, log) = gateway_process(
            &self.binary,
            self.port,
            brokers,
            &[("RUST_LOG", "warn")],
            flags,
        );
        self.child = Some(child);
        self.logs.push(log);
        wait_serving(self.addr()).await;
    }
}
