//! The gateway's errors, and the one place where they become gRPC statuses:
//! every status a client sees, from a call or at the end of a stream, is an
//! [`Error`] turned into a [`Status`] here, so one cause reads the same
//! everywhere.
//!
//! Messages are written for the person calling the API: they say what was
//! wrong and what to do. Internal details (librdkafka's own error text) are
//! logged where the error happens, not sent to clients.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tonic::{Code, Status};

use crate::text::clip;

/// What to do when the cluster does not take the consumer protocol.
const REMEDY_CONSUMER_PROTOCOL: &str = "the consumer protocol (KIP-848) needs Kafka 4.0 or later with \"consumer\" in the brokers' group.coordinator.rebalance.protocols; or run the gateway with --group-protocol classic";

/// What to do when a group's members cannot agree on a protocol.
const REMEDY_MIXED_GROUP: &str = "the group's other members use a protocol or assignor this gateway cannot join (librdkafka does not mix eager and cooperative members in one group): stop them, or use another group";

/// What went wrong with a call or a stream.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Error {
    /// The request itself is wrong; the message says how.
    #[error("{0}")]
    InvalidArgument(String),
    /// The topic (its name clipped, quoted) does not exist and the gateway
    /// does not create topics.
    #[error(
        "topic {0} does not exist: create it first, or start the gateway with --create-topics"
    )]
    TopicNotFound(String),
    /// A topic an open subscription reads was deleted.
    #[error("a subscribed topic no longer exists ({0}); resubscribe once it exists again")]
    TopicGone(String),
    /// No open ACK_MODE_MANUAL subscription has this id (clipped, quoted)
    /// on this gateway instance.
    #[error("subscription {0} is not open on this gateway, or takes no acknowledgements: it ended (its unacknowledged events go to the group's next member), lives on another instance, or is in ACK_MODE_AUTO; acknowledge MANUAL deliveries over the channel that carries their stream")]
    SubscriptionNotFound(String),
    /// The replica that held a subscription is gone (why, in words): the
    /// subscription ended with it.
    #[error("the replica that held this subscription is gone ({0}): the subscription ended, and its unacknowledged events come again through the group's next member")]
    OwnerGone(String),
    /// Kafka cannot be reached (or did not answer in time).
    #[error("Kafka is unavailable ({0}); retry with backoff")]
    KafkaUnavailable(String),
    /// A subscription's consumer failed for good.
    #[error("the Kafka consumer failed ({0}); resubscribe")]
    ConsumerFailed(String),
    /// The cluster, or the group, does not take the gateway's group
    /// protocol.
    #[error("the Kafka cluster refused this subscription's consumer group protocol ({reason}); {remedy}")]
    GroupProtocolRefused {
        /// What Kafka said.
        reason: String,
        /// What the operator can do.
        remedy: &'static str,
    },
    /// A stream asked to join a share whose first stream fixed other
    /// settings.
    #[error("share {share} of this group is open with another {setting}: a share's first stream fixes its settings; ask for the same, or use another share name")]
    ShareDiffers {
        /// The share (clipped, quoted).
        share: String,
        /// The first setting that differs.
        setting: &'static str,
    },
    /// Kafka cannot store events in a topic now; the message says why.
    #[error("Kafka cannot store the event now: {0}; it may or may not have been stored: retry with the same event id once Kafka can")]
    Unwritable(String),
    /// The caller's deadline passed before Kafka answered.
    #[error("the deadline passed before Kafka confirmed the event; it may or may not have been stored: retry with the same event id so that consumers can drop a duplicate")]
    DeadlineExceeded,
    /// The gateway cannot take more work right now.
    #[error("the gateway is saturated ({0}); retry with backoff")]
    Saturated(String),
    /// A stream sharing a live tail read nothing for too long.
    #[error(
        "this stream read nothing for {after:?} while sharing a live tail with other streams, \
         and was ended at {at}; resubscribe with START_FROM_OFFSETS at the offset after the \
         last delivery received on each partition to continue without a gap"
    )]
    SlowSubscriber {
        /// How long it read nothing.
        after: Duration,
        /// The delivery it was ended at, `topic/partition@offset`.
        at: String,
    },
    /// A stream's client read nothing for too long while deliveries waited.
    #[error(
        "this stream read nothing for {after:?} while deliveries waited for it (the gateway's \
         --stall-timeout), and was ended to free its buffer; resubscribe: a group resumes from \
         its committed offsets (what was not acknowledged comes again), a replay with \
         START_FROM_OFFSETS at the offset after the last delivery received on each partition"
    )]
    Stalled {
        /// How long it read nothing.
        after: Duration,
    },
    /// The policy does not grant the principal this operation.
    #[error("principal {principal} may not {what}: the policy does not grant it")]
    Denied {
        /// The principal, clipped and quoted.
        principal: String,
        /// The operation and its target ("publish to topic \"orders\"").
        what: String,
    },
    /// A verb on a subscription another principal opened: answered as an
    /// unknown id is (NOT_FOUND, the same words), so that an answer never
    /// tells which ids are live; audited as denied.
    #[error("subscription {id} is not open on this gateway, or takes no acknowledgements: it ended (its unacknowledged events go to the group's next member), lives on another instance, or is in ACK_MODE_AUTO; acknowledge MANUAL deliveries over the channel that carries their stream")]
    NotOwner {
        /// The subscription id, clipped and quoted.
        id: String,
    },
    /// The principal went over a quota of the policy.
    #[error("principal {principal} is over its quota of {limit}; {retry}")]
    OverQuota {
        /// The principal, clipped and quoted.
        principal: String,
        /// The limit ("100 published events per second").
        limit: String,
        /// What to do ("retry in 12ms").
        retry: String,
        /// When to retry, when waiting helps.
        retry_after: Option<Duration>,
    },
    /// Kafka refused the operation for lack of rights.
    #[error("Kafka denied access ({0})")]
    PermissionDenied(String),
    /// The gateway could not authenticate to Kafka.
    #[error("the gateway could not authenticate to Kafka ({0})")]
    Unauthenticated(String),
    /// The gateway is shutting down.
    #[error("the gateway is shutting down; reconnect (to another instance) to resume")]
    ShuttingDown,
    /// The caller presented no credentials, or ones the gateway does not
    /// accept; the text says which.
    #[error("{0}")]
    CallerUnauthenticated(&'static str),
    /// The client ended a StreamingSubscribe stream before subscribing.
    #[error("the client ended the stream before subscribing")]
    EndedBeforeSubscribing,
    /// Anything else Kafka reported.
    #[error("Kafka failed the request ({0})")]
    Kafka(String),
    /// A call's request did not arrive whole within the bound.
    #[error("the request did not arrive whole within {0:?} of its headers; send it at once")]
    RequestTooSlow(Duration),
    /// A PublishEvents stream sent nothing for this long.
    #[error("the PublishEvents stream sent nothing for {0:?}, its --publish-idle-timeout: open another when there is something to publish")]
    PublishStreamIdle(Duration),
    /// A subscription stopped without a reason: a fault in the gateway.
    #[error(
        "the subscription stopped unexpectedly (a fault in the gateway, logged there); resubscribe"
    )]
    Interrupted,
}

impl Error {
    /// Sorts a librdkafka error into the small set of outcomes a client can
    /// act on. `topic` is the topic the call was about, when it was about one.
    pub(crate) fn from_kafka(error: &KafkaError, topic: Option<&str>) -> Self {
        use RDKafkaErrorCode as C;
        let Some(code) = error.rdkafka_error_code() else {
            return Error::Kafka(error.to_string());
        };
        let text = code.to_string();
        let of_topic = topic
            .map(|t| format!(" for topic {t:?}"))
            .unwrap_or_default();
        match code {
            C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition => match topic {
                Some(topic) => Error::TopicNotFound(clip(topic).to_string()),
                None => Error::TopicGone(text),
            },
            C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge => {
                Error::InvalidArgument(format!(
                    "the event is larger than Kafka accepts{of_topic} ({text}); send a smaller payload"
                ))
            }
            // The record's timestamp is the event's time: a broker refuses
            // one farther from its clock than its
            // log.message.timestamp.{before,after}.max.ms (Kafka 4's
            // default: one hour ahead).
            C::InvalidTimestamp => Error::InvalidArgument(format!(
                "Kafka refused the event's time as the record's timestamp{of_topic} ({text}): the broker takes times within its log.message.timestamp.before.max.ms and after.max.ms of its clock; send a time nearer now, or none"
            )),
            C::InvalidTopic => {
                Error::InvalidArgument(format!("Kafka refused the topic name{of_topic} ({text})"))
            }
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
            // The producer failed for good (a new one replaces it): the
            // event may or may not have been stored.
            C::Fatal
            | C::Fenced
            | C::ProducerFenced
            | C::InvalidProducerEpoch
            | C::OutOfOrderSequenceNumber
            | C::UnknownProducerId => {
                Error::KafkaUnavailable(format!(
                    "{text}: the gateway's producer failed and is being replaced; retry with the same event id"
                ))
            }
            _ => Error::Kafka(text),
        }
    }

    /// The error that ends a subscription for a consumer error, if it is
    /// fatal; the others are passing (librdkafka retries) and only logged.
    /// The status names the error code, never librdkafka's own text (the
    /// caller logs that).
    pub(crate) fn fatal_to_consumer(error: &KafkaError) -> Option<Self> {
        use RDKafkaErrorCode as C;
        let code = error.rdkafka_error_code()?;
        let text = code.to_string();
        match code {
            C::UnknownTopicOrPartition | C::UnknownTopic => Some(Error::TopicGone(text)),
            C::TopicAuthorizationFailed | C::GroupAuthorizationFailed => {
                Some(Error::PermissionDenied(text))
            }
            C::InconsistentGroupProtocol => Some(Error::GroupProtocolRefused {
                reason: text,
                remedy: REMEDY_MIXED_GROUP,
            }),
            C::Fatal => Some(Error::ConsumerFailed(text)),
            _ if matches!(error, KafkaError::MessageConsumptionFatal(_)) => {
                Some(Error::ConsumerFailed(text))
            }
            _ => None,
        }
    }

    /// The error for a consumer that failed for good with `code`: the
    /// cluster refusing the group protocol (the consumer protocol of
    /// KIP-848 when `consumer_protocol`) says what to do; any other code
    /// ends the consumer. The status names the code, never librdkafka's
    /// text.
    pub(crate) fn consumer_fatal(code: RDKafkaErrorCode, consumer_protocol: bool) -> Self {
        use RDKafkaErrorCode as C;
        let unsupported = matches!(
            code,
            C::UnsupportedVersion | C::UnsupportedFeature | C::UnsupportedAssignor
        );
        let reason = code.to_string();
        match consumer_protocol {
            true if unsupported => Error::GroupProtocolRefused {
                reason,
                remedy: REMEDY_CONSUMER_PROTOCOL,
            },
            _ if code == C::InconsistentGroupProtocol => Error::GroupProtocolRefused {
                reason,
                remedy: REMEDY_MIXED_GROUP,
            },
            _ => Error::ConsumerFailed(reason),
        }
    }

    /// The error a status of the gRPC library stands for when it means that
    /// the client sent something it cannot decode (a message that is not
    /// valid protobuf, none, one cut short, or one larger than the gateway
    /// accepts): bad input, INVALID_ARGUMENT, not a fault of the gateway
    /// (INTERNAL).
    pub(crate) fn undecodable(status: &Status) -> Option<Self> {
        let message = status.message();
        let undecodable = match status.code() {
            Code::Internal => {
                message.starts_with("failed to decode Protobuf message")
                    || message.starts_with("protocol error:")
                    // A unary request with no message, or one cut short.
                    || message == "Missing request message."
                    || message == "Unexpected EOF decoding stream."
                    // A compressed message that is corrupt.
                    || message.starts_with("Error decompressing")
            }
            Code::OutOfRange => message.contains("message length too large"),
            // A compressed message larger than the limit once decompressed.
            Code::ResourceExhausted => message.starts_with("Error decompressing"),
            _ => false,
        };
        undecodable.then(|| {
            Error::InvalidArgument(format!("the request cannot be decoded: {}", clip(message)))
        })
    }

    /// The gRPC status code of this error.
    pub(crate) fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::TopicNotFound(_)
            | Error::TopicGone(_)
            | Error::SubscriptionNotFound(_)
            | Error::OwnerGone(_)
            | Error::NotOwner { .. } => Code::NotFound,
            Error::KafkaUnavailable(_)
            | Error::Unwritable(_)
            | Error::ConsumerFailed(_)
            | Error::ShuttingDown => Code::Unavailable,
            Error::DeadlineExceeded | Error::RequestTooSlow(_) | Error::PublishStreamIdle(_) => {
                Code::DeadlineExceeded
            }
            Error::Saturated(_)
            | Error::SlowSubscriber { .. }
            | Error::Stalled { .. }
            | Error::OverQuota { .. } => Code::ResourceExhausted,
            Error::PermissionDenied(_) | Error::Denied { .. } => Code::PermissionDenied,
            Error::GroupProtocolRefused { .. } | Error::ShareDiffers { .. } => {
                Code::FailedPrecondition
            }
            Error::Unauthenticated(_) | Error::CallerUnauthenticated(_) => Code::Unauthenticated,
            Error::EndedBeforeSubscribing => Code::Cancelled,
            Error::Kafka(_) | Error::Interrupted => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            // Clients that read google.rpc.RetryInfo get when to retry.
            Error::OverQuota {
                retry_after: Some(retry_after),
                ..
            } => {
                use tonic_types::{ErrorDetails, StatusExt as _};
                Status::with_error_details(
                    error.code(),
                    error.to_string(),
                    ErrorDetails::with_retry_info(Some(retry_after)),
                )
            }
            error => Status::new(error.code(), error.to_string()),
        }
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
            (RDKafkaErrorCode::InvalidTimestamp, Code::InvalidArgument),
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
            let error = KafkaError::MessageProduction(code);
            for topic in [Some("t"), None] {
                let status = Status::from(Error::from_kafka(&error, topic));
                assert_eq!(status.code(), expected, "{code:?} {topic:?}");
            }
        }
    }

    #[test]
    fn a_topic_is_named_only_when_the_call_was_about_one() {
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        let named = Error::from_kafka(&too_large, Some("orders")).to_string();
        assert!(named.contains("for topic \"orders\""), "{named}");
        let unnamed = Error::from_kafka(&too_large, None).to_string();
        assert!(!unnamed.contains("topic \""), "{unnamed}");
    }

    #[test]
    fn only_lasting_consumer_errors_end_a_subscription() {
        let fatal = |code| Error::fatal_to_consumer(&KafkaError::MessageConsumption(code));
        assert_eq!(
            fatal(RDKafkaErrorCode::UnknownTopicOrPartition).map(|e| e.code()),
            Some(Code::NotFound)
        );
        assert_eq!(
            fatal(RDKafkaErrorCode::GroupAuthorizationFailed).map(|e| e.code()),
            Some(Code::PermissionDenied)
        );
        assert_eq!(
            fatal(RDKafkaErrorCode::Fatal).map(|e| e.code()),
            Some(Code::Unavailable)
        );
        assert!(fatal(RDKafkaErrorCode::BrokerTransportFailure).is_none());
    }

    #[test]
    fn requests_that_cannot_be_decoded_are_bad_input() {
        for status in [
            Status::internal("failed to decode Protobuf message: invalid wire type value: 7"),
            Status::out_of_range(
                "Error, decoded message length too large: found 9 bytes, the limit is: 4 bytes",
            ),
            Status::internal("Missing request message."),
            Status::internal("Unexpected EOF decoding stream."),
            Status::internal("Error decompressing: corrupt deflate stream"),
            Status::resource_exhausted(
                "Error decompressing: size limit, of 9 bytes, exceeded while decompressing message",
            ),
        ] {
            let error = Error::undecodable(&status).expect("bad input");
            assert_eq!(error.code(), Code::InvalidArgument, "{status:?}");
        }
        assert!(Error::undecodable(&Status::internal("Kafka failed")).is_none());
        assert!(Error::undecodable(&Status::resource_exhausted("--max-subscriptions")).is_none());
        assert!(Error::undecodable(&Status::unavailable("protocol error: x")).is_none());
    }

    #[test]
    fn messages_say_what_to_do() {
        let status = Status::from(Error::TopicNotFound(clip("orders").to_string()));
        assert!(
            status.message().contains("--create-topics"),
            "{}",
            status.message()
        );
        let slow = Status::from(Error::SlowSubscriber {
            after: Duration::from_secs(5),
            at: "orders/0@7".into(),
        });
        assert_eq!(slow.code(), Code::ResourceExhausted);
        assert!(slow.message().contains("START_FROM_OFFSETS"), "{slow:?}");
        assert!(slow.message().contains("orders/0@7"), "{slow:?}");
        let stalled = Status::from(Error::Stalled {
            after: Duration::from_secs(300),
        });
        assert_eq!(stalled.code(), Code::ResourceExhausted);
        assert!(stalled.message().contains("--stall-timeout"), "{stalled:?}");
    }

    #[test]
    fn a_refused_group_protocol_is_a_failed_precondition_saying_what_to_do() {
        let refused = Error::consumer_fatal(RDKafkaErrorCode::UnsupportedVersion, true);
        let status = Status::from(refused);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(
            status.message().contains("--group-protocol classic"),
            "{status:?}"
        );
        // Under the classic protocol the same code is another failure.
        let other = Error::consumer_fatal(RDKafkaErrorCode::UnsupportedVersion, false);
        assert!(matches!(other, Error::ConsumerFailed(_)), "{other}");
        let mixed = Error::fatal_to_consumer(&KafkaError::MessageConsumption(
            RDKafkaErrorCode::InconsistentGroupProtocol,
        ))
        .expect("a group that refuses the member ends the subscription");
        assert_eq!(mixed.code(), Code::FailedPrecondition);
        assert!(mixed.to_string().contains("eager"), "{mixed}");
        let fatal = Error::fatal_to_consumer(&KafkaError::MessageConsumptionFatal(
            RDKafkaErrorCode::UnsupportedVersion,
        ));
        assert!(
            fatal.is_some(),
            "a fatal consumer error ends the subscription"
        );
    }

    #[test]
    fn consumer_statuses_name_the_error_code_and_never_librdkafka_s_text() {
        // librdkafka's fatal-error text can name brokers and internals: the
        // client sees the code's description only.
        let fatal = Error::fatal_to_consumer(&KafkaError::MessageConsumptionFatal(
            RDKafkaErrorCode::Fatal,
        ))
        .unwrap();
        let code_text = RDKafkaErrorCode::Fatal.to_string();
        assert_eq!(
            fatal.to_string(),
            format!("the Kafka consumer failed ({code_text}); resubscribe")
        );
        let gone = Error::fatal_to_consumer(&KafkaError::MessageConsumption(
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ))
        .unwrap();
        assert!(!gone.to_string().contains("Message consumption"), "{gone}");
    }
}
