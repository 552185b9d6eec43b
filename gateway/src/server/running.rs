//! The running gateway: where it listens, what tests may inspect, and the
//! shutdown sequence.

use std::net::SocketAddr;
#[cfg(feature = "testing")]
use std::sync::Arc;

use anyhow::Context as _;
use tonic_health::ServingStatus;

use crate::health;
use crate::kafka::blocking;
#[cfg(feature = "testing")]
use crate::subscribe::SubscriptionStats;

use super::RunningGateway;

impl RunningGateway {
    /// The address the gateway listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the internal listener listens, when acks at any replica are
    /// on.
    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.internal.as_ref().map(|internal| internal.addr)
    }

    /// Where metrics are served, when they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// The flow-control counters of a live subscription.
    #[cfg(feature = "testing")]
    pub fn subscription(&self, id: &str) -> Option<Arc<SubscriptionStats>> {
        self.subscriptions.stats(id)
    }

    /// How many live tails (consumers shared by ephemeral streams from the
    /// latest event) are open.
    #[cfg(feature = "testing")]
    pub fn live_tails(&self) -> usize {
        self.subscriptions.live_tails()
    }

    /// Shuts down: NOT_SERVING, stop accepting, end streams with
    /// UNAVAILABLE, let in-flight calls finish, wait for the subscriptions
    /// to commit and leave their groups, flush the producer.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        health::report(&self.reporter, ServingStatus::NotServing).await;
        self.trigger.fire();
        match tokio::time::timeout(self.grace, &mut self.server).await {
            Ok(result) => result
                .context("the gRPC server task failed")?
                .context("the gRPC server failed")?,
            Err(_) => {
                tracing::warn!(grace = ?self.grace, "calls still open after the grace period; closing them");
                self.server.abort();
            }
        }
        // The streams ended (a draining one took its acks, forwarded ones
        // too): the other replicas' calls stop here now.
        if let Some(internal) = self.internal.take() {
            let _ = internal.stop.send(());
            let mut task = internal.task;
            if tokio::time::timeout(self.grace, &mut task).await.is_err() {
                task.abort();
            }
        }
        // Streams ended; their consumers now commit what was acknowledged and
        // leave their groups. Wait for that (within the grace period) before
        // the producer flush and, with the embedded Kafka, before it stops.
        let left = self.trigger.drain(self.grace).await;
        if left > 0 {
            tracing::warn!(grace = ?self.grace, tasks = left, "tasks still ending after the grace period");
        }
        let publisher = self.publisher.clone();
        let grace = self.grace;
        match blocking(move || publisher.flush(grace)).await {
            Ok(()) => tracing::info!("producer flushed"),
            Err(error) => tracing::error!(%error, "producer flush incomplete"),
        }
        if let Some((task, _)) = self.metrics.take() {
            task.abort();
        }
        // Every Kafka client goes before the embedded cluster they talk to:
        // a client destroyed after its cluster can block for good.
        let RunningGateway {
            publisher,
            subscriptions,
            embedded,
            ..
        } = self;
        let _ = tokio::task::spawn_blocking(move || drop((subscriptions, publisher))).await;
        drop(embedded);
        tracing::info!("gateway stopped");
        Ok(())
    }
}
