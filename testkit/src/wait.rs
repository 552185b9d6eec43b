//! Waiting for a state a test can observe, with a bound, instead of sleeping.

use std::future::Future;
use std::time::Duration;

/// Longest a test waits for a condition before failing.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(50);

/// Polls `condition` until it holds; fails the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}
