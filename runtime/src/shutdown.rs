//! Shutdown, shared by both binaries: the signal that starts it (SIGTERM or
//! Ctrl-C), the handle every long-lived task watches to end in time, and the
//! drain that waits for the tasks spawned through that handle.
//!
//! A task that must finish its work before the process goes (a consumer
//! committing and leaving its group, a stream answering what is in flight) is
//! spawned with [`Shutdown::spawn`]; [`Trigger::drain`] then waits for
//! exactly those tasks to end, within a grace period.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

/// Starts a shutdown that every [`Shutdown`] handle sees, and waits for the
/// tasks spawned through them.
#[derive(Debug)]
pub struct Trigger {
    /// Turns true when the shutdown begins.
    started: watch::Sender<bool>,
    /// The tasks spawned through the handles.
    tasks: TaskTracker,
}

/// A task's view of the shutdown: cheap to clone, ready once it began.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Turns true when the shutdown begins.
    started: watch::Receiver<bool>,
    /// Where [`Shutdown::spawn`] records its tasks.
    tasks: TaskTracker,
}

/// A new trigger and the handle tasks watch.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    let tasks = TaskTracker::new();
    (
        Trigger {
            started: tx,
            tasks: tasks.clone(),
        },
        Shutdown { started: rx, tasks },
    )
}

impl Trigger {
    /// Begins the shutdown.
    pub fn fire(&self) {
        self.started.send_replace(true);
    }

    /// Begins the shutdown (if it has not begun) and waits until every task
    /// spawned through a [`Shutdown`] handle has ended, at most `grace`.
    /// Returns how many were still running when the grace period ended.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.fire();
        self.tasks.close();
        match tokio::time::timeout(grace, self.tasks.wait()).await {
            Ok(()) => 0,
            Err(_) => self.tasks.len(),
        }
    }
}

impl Shutdown {
    /// Whether the shutdown began.
    pub fn is_started(&self) -> bool {
        *self.started.borrow()
    }

    /// Returns once the shutdown began (or its trigger is gone).
    pub async fn started(&mut self) {
        let _ = self.started.wait_for(|started| *started).await;
    }

    /// Spawns `task` on the runtime; [`Trigger::drain`] waits for it.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }
}

/// Waits for SIGTERM or Ctrl-C and logs which one came.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_handle_sees_the_shutdown() {
        let (trigger, shutdown) = channel();
        let mut a = shutdown.clone();
        assert!(!a.is_started());
        let waiter = tokio::spawn(async move { a.started().await });
        trigger.fire();
        waiter.await.unwrap();
        assert!(shutdown.is_started());
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_waits_for_the_spawned_tasks_and_no_longer_than_the_grace() {
        let (trigger, shutdown) = channel();
        // Ends a second after the shutdown began.
        let mut watching = shutdown.clone();
        let finished = shutdown.spawn(async move {
            watching.started().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        assert_eq!(trigger.drain(Duration::from_secs(5)).await, 0);
        assert!(
            finished.is_finished(),
            "the drain returned before the task ended"
        );

        // Never ends: the drain gives up after the grace period.
        let (trigger, shutdown) = channel();
        shutdown.spawn(std::future::pending::<()>());
        let started = tokio::time::Instant::now();
        assert_eq!(trigger.drain(Duration::from_secs(5)).await, 1);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
