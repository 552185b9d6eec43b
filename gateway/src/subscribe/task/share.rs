//! A share's turn: streams that left or stalled give back what they held,
//! rebalance notices go to every stream, the window follows the streams,
//! and the share closes with its last stream.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::outlets::Outlets;
use super::Task;
use crate::subscribe::spec::SubscriptionSpec;

/// How often a share's gauges are brought up to date.
const REPORT_EVERY: Duration = Duration::from_secs(1);

impl Task<'_> {
    /// The share's part of a turn; when to look for stalls again, or the
    /// end of the task once the last stream went.
    pub(super) fn share_turn(&mut self, now: Instant) -> ControlFlow<(), Option<Instant>> {
        let (Outlets::Shared(dispatch), Some(ledger)) = (&mut self.outlets, self.ledger.as_mut())
        else {
            return ControlFlow::Continue(None);
        };
        let (stalled, next) = dispatch.sweep(ledger, now);
        for _ in 0..stalled {
            self.inputs.metrics.delivery().stalled();
        }
        while let Some(notice) = self.urgent.pop_front() {
            dispatch.broadcast(&Arc::new(notice));
        }
        if dispatch.len() == 0 && self.draining.is_none() && dispatch.close_if_idle() {
            tracing::info!("the share's last stream ended");
            return ControlFlow::Break(());
        }
        self.window = dispatch.window();
        if self.share_reported + REPORT_EVERY <= now {
            self.share_reported = now;
            let (group, share) = labels(self.spec);
            let gauges = [dispatch.len(), dispatch.held(ledger), ledger.held_back()];
            let gauges = gauges.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
            self.inputs.metrics.delivery().share(group, share, gauges);
        }
        ControlFlow::Continue(next)
    }

    /// Aims the staged message at the share's stream with room for it.
    pub(super) fn aim(&mut self) {
        self.target = match (&mut self.outlets, &self.staged, self.ledger.as_ref()) {
            (Outlets::Shared(dispatch), Some((message, _)), Some(ledger)) => {
                dispatch.aim(message, ledger)
            }
            _ => None,
        };
    }

    /// The share's gauges go with it.
    pub(super) fn forget_share(&self) {
        if self.spec.share.is_some() {
            let (group, share) = labels(self.spec);
            self.inputs.metrics.delivery().forget_share(group, share);
        }
    }
}

/// A share's labels: its group and name (each at most 249 bytes, without
/// control characters, as validated).
fn labels(spec: &SubscriptionSpec) -> (&str, &str) {
    (
        spec.group.as_deref().unwrap_or(""),
        spec.share.as_deref().unwrap_or(""),
    )
}
