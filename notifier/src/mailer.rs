//! Where welcome emails go: an SMTP server, or (development) .eml files in an
//! outbox directory. Failures are sorted into transient (retry later) and
//! permanent (the dead-letter topic).

use std::path::Path;
use std::time::Duration;

use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How long one SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// Why an email was not sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// Worth retrying: the server is unreachable or answered 4xx.
    #[error("transient mail failure: {0}")]
    Transient(String),
    /// Retrying will not help: the server answered 5xx for this message.
    #[error("permanent mail failure: {0}")]
    Permanent(String),
}

/// Sends emails.
pub(crate) enum Mailer {
    /// Over SMTP.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// Into .eml files.
    Outbox(AsyncFileTransport<Tokio1Executor>),
}

impl Mailer {
    /// SMTP when `smtp_url` is set, the outbox directory otherwise.
    pub(crate) fn new(smtp_url: Option<&str>, outbox: &Path) -> anyhow::Result<Self> {
        Ok(match smtp_url {
            Some(url) => Mailer::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build(),
            ),
            None => {
                std::fs::create_dir_all(outbox)?;
                Mailer::Outbox(AsyncFileTransport::<Tokio1Executor>::new(outbox))
            }
        })
    }

    /// Hands `message` to the server (or writes it); Ok once accepted.
    pub(crate) async fn send(&self, message: Message) -> Result<(), SendError> {
        match self {
            Mailer::Smtp(smtp) => smtp.send(message).await.map(drop).map_err(|error| {
                if error.is_permanent() {
                    SendError::Permanent(error.to_string())
                } else {
                    SendError::Transient(error.to_string())
                }
            }),
            Mailer::Outbox(outbox) => outbox
                .send(message)
                .await
                .map(drop)
                .map_err(|error| SendError::Transient(error.to_string())),
        }
    }
}
