//! Checks on what clients send, before anything reaches Kafka; each turns a
//! request into what the publish or subscribe side takes. Each failure is an
//! [`Error::InvalidArgument`] whose message says what to change.

use std::collections::HashMap;

use eventgateway::record::{header, timestamp_to_millis, Payload};
use eventgateway::v1::{
    AckMode, AcknowledgeRequest, PublishEventRequest, StartFrom, SubscribeRequest,
};

use crate::config::MIN_ACK_TIMEOUT;
use crate::error::Error;
use crate::publish::Publish;
use crate::subscribe::{parse_ack_id, Acks, ManualAcks, StartPosition, SubscriptionSpec};

/// Longest topic name Kafka accepts.
const MAX_TOPIC_LEN: usize = 249;

/// Which bytes a Kafka topic name may hold: ASCII letters and digits, '.',
/// '_' and '-'.
const LEGAL: [bool; 256] = {
    let mut legal = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        legal[b] = c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-';
        b += 1;
    }
    legal
};

/// Checks that `topic` is a legal Kafka topic name.
fn topic_name(topic: &str) -> Result<(), Error> {
    // Every publish checks its topic: the common case takes one pass over
    // the bytes, the rest below says what is wrong.
    let illegal = topic.bytes().position(|b| !LEGAL[usize::from(b)]);
    if illegal.is_none()
        && !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && topic != "."
        && topic != ".."
    {
        return Ok(());
    }
    if topic.is_empty() {
        return Err(Error::InvalidArgument(
            "topic is empty: name the Kafka topic".into(),
        ));
    }
    if topic == "." || topic == ".." {
        return Err(Error::InvalidArgument(format!(
            "topic {topic:?} is not a legal Kafka topic name"
        )));
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(Error::InvalidArgument(format!(
            "topic name is {} characters long; Kafka allows at most {MAX_TOPIC_LEN}",
            topic.len()
        )));
    }
    // Every byte before the first illegal one is ASCII: it starts a char.
    let bad = illegal
        .and_then(|at| topic[at..].chars().next())
        .unwrap_or_default();
    Err(Error::InvalidArgument(format!(
        "topic {topic:?} contains {bad:?}; Kafka topic names use only letters, digits, '.', '_' and '-'"
    )))
}

/// Checks a publish request and turns it into a [`Publish`], its payload
/// encoded (once) to check its size.
pub(super) fn publish_request(
    mut request: PublishEventRequest,
    max_payload_bytes: usize,
) -> Result<Publish, Error> {
    topic_name(&request.topic)?;
    let event = request.event.as_mut().ok_or_else(|| {
        Error::InvalidArgument("event is missing: set the event to publish".into())
    })?;
    for name in event.attributes.keys() {
        if name.is_empty() {
            return Err(Error::InvalidArgument(
                "an attribute has an empty name".into(),
            ));
        }
        if name.starts_with(header::CE_PREFIX) || name.eq_ignore_ascii_case(header::CONTENT_TYPE) {
            return Err(Error::InvalidArgument(format!(
                "attribute {name:?} is reserved: names starting with \"ce_\" and \"content-type\" are set from the event's fields"
            )));
        }
    }
    if let Some(time) = &event.time {
        if !(0..1_000_000_000).contains(&time.nanos) {
            return Err(Error::InvalidArgument(
                "event.time has nanos outside 0..1e9".into(),
            ));
        }
    }
    let payload = Payload::encode(event.data.take());
    if payload.value.len() > max_payload_bytes {
        return Err(Error::InvalidArgument(format!(
            "the payload is {} bytes; this gateway accepts at most {max_payload_bytes}",
            payload.value.len()
        )));
    }
    Ok(Publish { request, payload })
}

/// Checks an acknowledge request: the subscription id and every ack id.
pub(super) fn acknowledge_request(request: AcknowledgeRequest) -> Result<(String, Acks), Error> {
    if request.subscription_id.is_empty() {
        return Err(Error::InvalidArgument(
            "subscription_id is empty: pass the id from the stream's Subscribed message".into(),
        ));
    }
    let acks = request
        .ack_ids
        .iter()
        .map(|id| parse_ack_id(id))
        .collect::<Result<Acks, _>>()?;
    Ok((request.subscription_id, acks))
}

/// Checks a subscribe request and turns it into what the consumer needs;
/// `defaults` fill what a MANUAL subscription leaves unset.
pub(super) fn subscribe_request(
    request: &SubscribeRequest,
    defaults: ManualAcks,
) -> Result<SubscriptionSpec, Error> {
    if request.topics.is_empty() {
        return Err(Error::InvalidArgument(
            "topics is empty: name at least one topic".into(),
        ));
    }
    let mut topics: Vec<String> = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        topic_name(topic)?;
        if !topics.contains(topic) {
            topics.push(topic.clone());
        }
    }
    if !request.group.is_empty() {
        group_name(&request.group)?;
    }
    let ack_mode = AckMode::try_from(request.ack_mode).map_err(|_| {
        Error::InvalidArgument(format!("ack_mode {} is not an AckMode", request.ack_mode))
    })?;
    let manual = if ack_mode == AckMode::Manual {
        let ack_timeout = match &request.ack_timeout {
            None => defaults.ack_timeout,
            Some(timeout) => std::time::Duration::try_from(*timeout)
                .ok()
                .filter(|t| *t >= MIN_ACK_TIMEOUT)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "ack_timeout must be at least {MIN_ACK_TIMEOUT:?}"
                    ))
                })?,
        };
        let max_unacked = match request.max_unacked {
            0 => defaults.max_unacked,
            n => n as usize,
        };
        Some(ManualAcks {
            ack_timeout,
            max_unacked,
        })
    } else {
        if request.ack_timeout.is_some() || request.max_unacked != 0 {
            return Err(Error::InvalidArgument(
                "ack_timeout and max_unacked apply only to ACK_MODE_MANUAL".into(),
            ));
        }
        None
    };
    let start_from = StartFrom::try_from(request.start_from).map_err(|_| {
        Error::InvalidArgument(format!(
            "start_from {} is not a StartFrom",
            request.start_from
        ))
    })?;
    if start_from != StartFrom::Timestamp && request.start_time.is_some() {
        return Err(Error::InvalidArgument(
            "start_time is set, but start_from is not START_FROM_TIMESTAMP".into(),
        ));
    }
    if start_from != StartFrom::Offsets && !request.start_offsets.is_empty() {
        return Err(Error::InvalidArgument(
            "start_offsets is set, but start_from is not START_FROM_OFFSETS".into(),
        ));
    }
    let start = match start_from {
        StartFrom::Unspecified | StartFrom::Latest => StartPosition::Latest,
        StartFrom::Earliest => StartPosition::Earliest,
        StartFrom::Timestamp => {
            let time = request.start_time.as_ref().ok_or_else(|| {
                Error::InvalidArgument("START_FROM_TIMESTAMP needs start_time".into())
            })?;
            StartPosition::Timestamp(timestamp_to_millis(time).max(0))
        }
        StartFrom::Offsets => {
            if request.start_offsets.is_empty() {
                return Err(Error::InvalidArgument(
                    "START_FROM_OFFSETS needs start_offsets".into(),
                ));
            }
            let mut offsets = HashMap::new();
            for position in &request.start_offsets {
                if !topics.contains(&position.topic) {
                    return Err(Error::InvalidArgument(format!(
                        "start_offsets names topic {:?}, which is not in topics",
                        position.topic
                    )));
                }
                if position.partition < 0 || position.offset < 0 {
                    return Err(Error::InvalidArgument(format!(
                        "start_offsets has a negative partition or offset for topic {:?}",
                        position.topic
                    )));
                }
                offsets.insert(
                    (position.topic.clone(), position.partition),
                    position.offset,
                );
            }
            StartPosition::Offsets(offsets)
        }
    };
    Ok(SubscriptionSpec {
        topics,
        group: (!request.group.is_empty()).then(|| request.group.clone()),
        start,
        manual,
    })
}

/// Checks a consumer group name.
fn group_name(group: &str) -> Result<(), Error> {
    if group.len() > MAX_TOPIC_LEN || group.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "group must be at most {MAX_TOPIC_LEN} characters without control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventgateway::v1::event::Data;
    use eventgateway::v1::Event;
    use tonic::Code;

    fn code(result: Result<(), Error>) -> Option<Code> {
        result.err().map(|e| e.code())
    }

    #[test]
    fn legal_topic_names_pass_and_others_say_why() {
        for ok in ["user-registered", "a.b_c-D9", &"x".repeat(249)] {
            assert_eq!(code(topic_name(ok)), None, "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "has space",
            "slash/topic",
            "ümlaut",
            &"x".repeat(250),
        ] {
            assert_eq!(code(topic_name(bad)), Some(Code::InvalidArgument), "{bad}");
        }
    }

    #[test]
    fn publish_requests_need_an_event_under_the_limit_and_no_reserved_attributes() {
        let refused = |request: &PublishEventRequest, max| {
            publish_request(request.clone(), max)
                .unwrap_err()
                .to_string()
        };
        let mut request = PublishEventRequest {
            topic: "t".into(),
            key: String::new(),
            event: None,
        };
        assert!(refused(&request, 4).contains("event is missing"));
        request.event = Some(Event {
            data: Some(Data::Text("12345".into())),
            ..Event::default()
        });
        assert!(refused(&request, 4).contains("at most 4"));
        let accepted = publish_request(request.clone(), 5).unwrap();
        assert_eq!(accepted.payload.value, b"12345");
        let event = accepted.request.event.as_ref().unwrap();
        assert_eq!(event.data, None, "the payload moved");
        let event = request.event.as_mut().unwrap();
        event.attributes.insert("ce_id".into(), "x".into());
        assert!(refused(&request, 5).contains("reserved"));
    }

    #[test]
    fn a_json_payload_is_measured_as_the_text_stored() {
        let object = eventgateway::json::json_to_struct(br#"{"a":"bcd"}"#).unwrap();
        let request = PublishEventRequest {
            topic: "t".into(),
            key: String::new(),
            event: Some(Event {
                data: Some(Data::Json(object)),
                ..Event::default()
            }),
        };
        let stored = br#"{"a":"bcd"}"#.len();
        assert!(publish_request(request.clone(), stored - 1).is_err());
        let accepted = publish_request(request, stored).unwrap();
        assert_eq!(accepted.payload.value, br#"{"a":"bcd"}"#);
    }

    #[test]
    fn acknowledgements_need_a_subscription_and_ack_ids_the_gateway_handed_out() {
        let request = |id: &str, ack_ids: &[&str]| AcknowledgeRequest {
            subscription_id: id.into(),
            ack_ids: ack_ids.iter().map(|a| a.to_string()).collect(),
        };
        let (id, acks) = acknowledge_request(request("s", &["t:1:2"])).unwrap();
        assert_eq!((id.as_str(), acks), ("s", vec![(("t".into(), 1), 2)]));
        for bad in [request("", &["t:1:2"]), request("s", &["t:1:2", "t:x:1"])] {
            let error = acknowledge_request(bad).unwrap_err();
            assert_eq!(error.code(), Code::InvalidArgument);
        }
    }

    #[test]
    fn subscribe_requests_need_topics_and_start_options_that_fit() {
        use eventgateway::v1::PartitionOffset;
        let ok = SubscribeRequest {
            topics: vec!["a".into(), "a".into(), "b".into()],
            ..SubscribeRequest::default()
        };
        let defaults = ManualAcks {
            ack_timeout: std::time::Duration::from_secs(30),
            max_unacked: 100,
        };
        let spec = subscribe_request(&ok, defaults).unwrap();
        assert_eq!(spec.topics, vec!["a", "b"]);
        assert_eq!(spec.start, StartPosition::Latest);
        assert_eq!(spec.group, None);

        let bad = [
            SubscribeRequest::default(),
            SubscribeRequest {
                topics: vec!["bad topic".into()],
                ..SubscribeRequest::default()
            },
            SubscribeRequest {
                start_from: StartFrom::Timestamp as i32,
                ..ok.clone()
            },
            SubscribeRequest {
                start_from: StartFrom::Offsets as i32,
                ..ok.clone()
            },
            SubscribeRequest {
                start_from: StartFrom::Offsets as i32,
                start_offsets: vec![PartitionOffset {
                    topic: "other".into(),
                    partition: 0,
                    offset: 0,
                }],
                ..ok.clone()
            },
            SubscribeRequest {
                start_offsets: vec![PartitionOffset::default()],
                ..ok.clone()
            },
            SubscribeRequest {
                start_from: 99,
                ..ok.clone()
            },
            SubscribeRequest {
                max_unacked: 5,
                ..ok.clone()
            },
            SubscribeRequest {
                ack_mode: AckMode::Manual as i32,
                ack_timeout: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 1_000,
                }),
                ..ok.clone()
            },
        ];
        for request in bad {
            let error = subscribe_request(&request, defaults).unwrap_err();
            assert_eq!(error.code(), Code::InvalidArgument, "{request:?}: {error}");
        }
        let manual = SubscribeRequest {
            ack_mode: AckMode::Manual as i32,
            ..ok.clone()
        };
        assert_eq!(
            subscribe_request(&manual, defaults).unwrap().manual,
            Some(defaults)
        );
        let tuned = SubscribeRequest {
            ack_mode: AckMode::Manual as i32,
            max_unacked: 10,
            ack_timeout: Some(prost_types::Duration {
                seconds: 2,
                nanos: 0,
            }),
            ..ok
        };
        assert_eq!(
            subscribe_request(&tuned, defaults).unwrap().manual,
            Some(ManualAcks {
                ack_timeout: std::time::Duration::from_secs(2),
                max_unacked: 10
            })
        );
    }
}
