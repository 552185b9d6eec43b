//! The audit log: one structured line on the `audit` target (so that it can
//! be routed or filtered on its own, e.g. `RUST_LOG=info,audit=warn`) for
//! every failed authentication, denied call and opened subscription, with
//! the peer's address; and the counters that go with them.

use std::net::SocketAddr;

use super::AuthFailure;
use crate::metrics::Metrics;

/// The tracing target of audit lines.
pub(crate) const TARGET: &str = "audit";

/// A caller failed to authenticate.
pub(crate) fn authentication_failed(
    failure: AuthFailure,
    peer: Option<SocketAddr>,
    metrics: &Metrics,
) {
    metrics.auth_failed(failure.reason());
    tracing::warn!(
        target: TARGET,
        event = "authentication_failed",
        reason = failure.reason(),
        peer = ?peer,
    );
}
