//! The notifier's errors: what ends a session with the gateway (the
//! notifier then reconnects with backoff) or stops the notifier.

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gateway could not be reached at `--gateway-url`.
    #[error("cannot reach the gateway: {0}")]
    Connect(#[from] tonic::transport::Error),
    /// The gateway refused or failed a call, or ended the stream with an
    /// error.
    #[error("the gateway answered {:?}: {}", .0.code(), .0.message())]
    Gateway(Box<tonic::Status>),
    /// The subscription's stream did not start with `subscribed`.
    #[error("the gateway did not confirm the subscription (it sent {0})")]
    NotSubscribed(String),
    /// A certificate, key or token file could not be read or used.
    #[error("{0}")]
    Settings(String),
    /// A task handling a delivery failed (a fault in the notifier).
    #[error("a delivery's task failed: {0}")]
    Task(String),
    /// The sent-store could not be read or written.
    #[error("the sent-store under --state-dir failed: {0}")]
    Store(Box<redb::Error>),
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Error::Gateway(Box::new(status))
    }
}
