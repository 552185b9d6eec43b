//! The gateway's errors, and the one place where they become gRPC statuses.
//!
//! Messages are written for the person calling the API: they say what was
//! wrong and what to do. Internal details (librdkafka's own error text) are
//! logged where the error happens, not sent to clients.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tonic::{Code, Status};

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong; the message says how.
    #[error("{0}")]
    InvalidArgument(String),
    /// The topic does not exist and the gateway does not create topics.
    #[error(
        "topic {0:?} does not exist: create it first, or start the gateway with --create-topics"
    )]
    TopicNotFound(String),
    /// No open subscription has this id on this gateway instance.
    #[error("subscription {0:?} is not open on this gateway: it ended (its unacknowledged events go to the group's next member) or lives on another instance; acknowledge over the channel that carries the stream")]
    SubscriptionNotFound(String),
    /// Kafka cannot be reached (or did not answer in time).
    #[error("Kafka is unavailable ({0}); retry with backoff")]
    KafkaUnavailable(String),
    /// The caller's deadline passed before Kafka answered.
    #[error("the deadline passed before Kafka confirmed the event; it may or may not have been stored: retry with the same event id so that consumers can drop a duplicate")]
    DeadlineExceeded,
    /// The gateway cannot take more work right now.
    #[error("the gateway is saturated ({0}); retry with backoff")]
    Saturated(String),
    /// Kafka refused the operation for lack of rights.
    #[error("Kafka denied access ({0})")]
    PermissionDenied(String),
    /// The gateway could not authenticate to Kafka.
    #[error("the gateway could not authenticate to Kafka ({0})")]
    Unauthenticated(String),
    /// The gateway is shutting down.
    #[error("the gateway is shutting down; reconnect to another instance")]
    ShuttingDown,
    /// Anything else Kafka reported.
    #[error("Kafka failed the request ({0})")]
    Kafka(String),
}

impl Error {
    /// Sorts a librdkafka error into the small set of outcomes a client can act on.
    pub fn from_kafka(error: &KafkaError, topic: &str) -> Self {
        use RDKafkaErrorCode as C;
        let Some(code) = error.rdkafka_error_code() else {
            return Error::Kafka(error.to_string());
        };
        let text = code.to_string();
        match code {
            C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition => {
                Error::TopicNotFound(topic.to_owned())
            }
            C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge => {
                Error::InvalidArgument(format!(
                    "the event is larger than Kafka accepts for topic {topic:?} ({text}); send a smaller payload"
                ))
            }
            C::InvalidTopic => Error::InvalidArgument(format!("Kafka refused topic name {topic:?}")),
            C::QueueFull => Error::Saturated(text),
            C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed => Error::PermissionDenied(text),
            C::Authentication | C::SaslAuthenticationFailed => Error::Unauthenticated(text),
            C::MessageTimedOut
            | C::RequestTimedOut
            | C::OperationTimedOut
            | C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::NetworkException
            | C::BrokerNotAvailable
            | C::CoordinatorNotAvailable
            | C::NotCoordinator => Error::KafkaUnavailable(text),
            _ => Error::Kafka(text),
        }
    }

    /// The gRPC status code of this error.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::TopicNotFound(_) | Error::SubscriptionNotFound(_) => Code::NotFound,
            Error::KafkaUnavailable(_) | Error::ShuttingDown => Code::Unavailable,
            Error::DeadlineExceeded => Code::DeadlineExceeded,
            Error::Saturated(_) => Code::ResourceExhausted,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::Kafka(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        Status::new(error.code(), error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_errors_map_to_the_documented_codes() {
        let cases = [
            (RDKafkaErrorCode::UnknownTopicOrPartition, Code::NotFound),
            (RDKafkaErrorCode::MessageSizeTooLarge, Code::InvalidArgument),
            (RDKafkaErrorCode::MessageTimedOut, Code::Unavailable),
            (RDKafkaErrorCode::AllBrokersDown, Code::Unavailable),
            (RDKafkaErrorCode::QueueFull, Code::ResourceExhausted),
            (
                RDKafkaErrorCode::TopicAuthorizationFailed,
                Code::PermissionDenied,
            ),
            (
                RDKafkaErrorCode::SaslAuthenticationFailed,
                Code::Unauthenticated,
            ),
            (RDKafkaErrorCode::InvalidMessage, Code::Internal),
        ];
        for (code, expected) in cases {
            let error = Error::from_kafka(&KafkaError::MessageProduction(code), "t");
            assert_eq!(Status::from(error).code(), expected, "{code:?}");
        }
    }

    #[test]
    fn messages_say_what_to_do() {
        let status = Status::from(Error::TopicNotFound("orders".into()));
        assert!(
            status.message().contains("--create-topics"),
            "{}",
            status.message()
        );
    }
}
