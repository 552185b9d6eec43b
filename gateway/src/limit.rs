//! One cap on things held at once (calls in flight, streams, subscriptions,
//! consumers): a fixed number of permits, taken without queueing, and the
//! RESOURCE_EXHAUSTED that says which cap and its flag when none is left.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;

/// A place under a [`Limit`], given back when dropped.
pub(crate) type Permit = OwnedSemaphorePermit;

/// A number of permits, and what to say when none is left; clones share
/// them.
#[derive(Debug, Clone)]
pub(crate) struct Limit {
    permits: Arc<Semaphore>,
    size: usize,
    /// What the permits count and the flag that sets them, after the
    /// number: "subscriptions are open, its --max-subscriptions".
    what: &'static str,
}

impl Limit {
    /// `size` permits of `what`.
    pub(crate) fn new(size: usize, what: &'static str) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(size)),
            size,
            what,
        }
    }

    /// A permit, or RESOURCE_EXHAUSTED at once (no queueing).
    pub(crate) fn take(&self) -> Result<Permit, Error> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Saturated(format!("{} {}", self.size, self.what)))
    }

    /// How many permits are taken now.
    pub(crate) fn taken(&self) -> usize {
        self.size - self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn permits_run_out_with_a_status_naming_the_cap_and_come_back_when_dropped() {
        let limit = Limit::new(2, "widgets are open, its --max-widgets");
        let first = limit.take().unwrap();
        let _second = limit.clone().take().unwrap();
        assert_eq!(limit.taken(), 2);
        let refused = limit.take().unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert!(
            refused
                .to_string()
                .contains("2 widgets are open, its --max-widgets"),
            "{refused}"
        );
        drop(first);
        assert_eq!(limit.taken(), 1);
        assert!(limit.take().is_ok());
    }
}
