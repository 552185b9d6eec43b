//! Shutdown: the signal that starts it (SIGTERM or Ctrl-C, shared with the
//! notifier) and the handle every long-lived task watches to end in time.

use tokio::sync::watch;

pub use eventgateway::shutdown::signal;

/// Starts a shutdown that every [`Shutdown`] handle sees.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// A task's view of the shutdown: cheap to clone, ready once it began.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new trigger and the handle tasks watch.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Begins the shutdown.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Whether the shutdown began.
    pub fn is_started(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the shutdown began (or its trigger is gone).
    pub async fn started(&mut self) {
        let _ = self.0.wait_for(|started| *started).await;
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
}
