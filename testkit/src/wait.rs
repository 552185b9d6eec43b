//! Waiting for a state a test can observe, with a bound, instead of sleeping.

use std::future::Future;
use std::time::Duration;

/// Longest a test waits for a condition before failing.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(50);

/// Polls `condition` until it holds; fails the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    assert!(within(PATIENCE, condition).await, "gave up waiting: {what}");
}

/// Polls `condition` until it holds or `patience` passed; whether it held
/// (for a caller that tells more than "gave up" when it did not).
pub async fn within<F, Fut>(patience: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + patience;
    while !condition().await {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
    true
}
