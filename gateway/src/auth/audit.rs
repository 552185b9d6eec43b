//! The audit log: one structured line on the `audit` target (so that it can
//! be routed or filtered on its own, e.g. `RUST_LOG=info,audit=warn`) for
//! failed authentications, denied calls, calls over a quota and opened
//! subscriptions, with the peer's address; and the counters that go with
//! them. The counters count every one; the lines a client can repeat at
//! will (failures, denials, throttling) are written at most once a second
//! per kind, each saying how many were left out since the last.

use std::net::SocketAddr;
use std::time::Instant;

use super::{AuthFailure, Caller};
use crate::metrics::Metrics;
use crate::text::{clip, clip_list, LINES};

/// The tracing target of audit lines.
pub(crate) const TARGET: &str = "audit";

/// A caller failed to authenticate.
pub(crate) fn authentication_failed(
    failure: AuthFailure,
    peer: Option<SocketAddr>,
    metrics: &Metrics,
) {
    metrics.edge().auth_failed(failure.reason());
    let Some(left_out) = LINES.admit(("authentication_failed", failure.reason()), Instant::now())
    else {
        return;
    };
    tracing::warn!(
        target: TARGET,
        event = "authentication_failed",
        reason = failure.reason(),
        peer = ?peer,
        left_out,
    );
}

/// The policy denied a call: `operation` on `target` (a topic, group or
/// subscription, as a message shows it).
pub(crate) fn denied(caller: &Caller, operation: &'static str, target: &str, metrics: &Metrics) {
    metrics.edge().denied(operation);
    let Some(left_out) = LINES.admit(("denied", operation), Instant::now()) else {
        return;
    };
    tracing::warn!(
        target: TARGET,
        event = "denied",
        principal = %principal(caller),
        operation,
        target = %target,
        peer = ?caller.peer,
        left_out,
    );
}

/// A call went over a quota.
pub(crate) fn throttled(caller: &Caller, limit: &'static str, grant: &str, metrics: &Metrics) {
    metrics.edge().throttled(limit, grant);
    let Some(left_out) = LINES.admit(("throttled", limit), Instant::now()) else {
        return;
    };
    tracing::debug!(
        target: TARGET,
        event = "throttled",
        principal = %principal(caller),
        limit,
        peer = ?caller.peer,
        left_out,
    );
}

/// A subscription opened.
pub(crate) fn subscription_opened(caller: &Caller, topics: &[String], group: Option<&str>) {
    tracing::info!(
        target: TARGET,
        event = "subscription_opened",
        principal = %principal(caller),
        operation = "subscribe",
        topics = %clip_list(topics),
        group = %group.map(|g| clip(g).to_string()).unwrap_or_default(),
        peer = ?caller.peer,
    );
}

/// The caller's principal for a log line: clipped and quoted, or `-`.
fn principal(caller: &Caller) -> String {
    caller
        .principal
        .as_deref()
        .map_or_else(|| "-".to_owned(), |p| clip(p).to_string())
}
