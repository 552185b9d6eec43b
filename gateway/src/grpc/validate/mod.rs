//! Checks on what clients send, before anything reaches Kafka; each turns a
//! request into what the publish or subscribe side takes. Each failure is an
//! [`Error::InvalidArgument`] whose message says what to change. Every count
//! and size a client sends is checked against its bound before the work
//! that grows with it, and every client string a message repeats is clipped.

mod publish;
mod settle;
mod subscribe;

use std::time::Duration;

use crate::error::Error;
use crate::subscribe::MAX_DELAY;
use crate::text::clip;
use eventgateway::bounds::*;

pub(crate) use self::publish::{batch, publish_request};
pub(crate) use self::settle::{acknowledge_request, settle_call, settle_request, Settle};
pub(crate) use self::subscribe::subscribe_request;

/// Checks that `topic` is a legal Kafka topic name.
pub(crate) fn topic_name(topic: &str) -> Result<(), Error> {
    // Every publish checks its topic: the common case takes one pass over
    // the bytes, the rest below says what is wrong.
    if is_topic_name(topic) {
        return Ok(());
    }
    let illegal = topic.bytes().position(|b| !topic_byte(b));
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
            "topic name is {} bytes long; Kafka allows at most {MAX_TOPIC_LEN}",
            topic.len()
        )));
    }
    // Every byte before the first illegal one is ASCII: it starts a char.
    let bad = illegal
        .and_then(|at| topic[at..].chars().next())
        .unwrap_or_default();
    Err(Error::InvalidArgument(format!(
        "topic {} contains {bad:?}; Kafka topic names use only letters, digits, '.', '_' and '-'",
        clip(topic)
    )))
}

/// Checks a subscription id a client sends back.
pub(super) fn subscription_id(id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::InvalidArgument(
            "subscription_id is empty: pass the id from the stream's Subscribed message".into(),
        ));
    }
    if id.len() > MAX_SUBSCRIPTION_ID_LEN {
        return Err(Error::InvalidArgument(format!(
            "subscription_id is {} bytes; the gateway's ids have at most {MAX_SUBSCRIPTION_ID_LEN}",
            id.len()
        )));
    }
    Ok(())
}

/// A delay, extension or backoff `what` the client sent, within 0 to
/// [`MAX_DELAY`].
pub(super) fn delay(what: &str, duration: prost_types::Duration) -> Result<Duration, Error> {
    Duration::try_from(duration)
        .ok()
        .filter(|d| *d <= MAX_DELAY)
        .ok_or_else(|| {
            Error::InvalidArgument(format!("{what} must be 0 to {}s", MAX_DELAY.as_secs()))
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use eventgateway::v1::{
        event::Data, AckMode, AcknowledgeRequest, Event, PublishEventRequest, SettleRequest,
        StartFrom, SubscribeRequest,
    };
    use tonic::Code;

    use super::*;
    use crate::route::AckIds;
    use crate::subscribe::{
        AckRef, Backoff, ManualAcks, StartPosition, TopicPartition, Verb, MAX_ACK_TIMEOUT,
        MAX_UNACKED,
    };

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
    fn a_batch_is_bounded_in_count_and_bytes() {
        let event = |bytes: usize| PublishEventRequest {
            topic: "t".into(),
            key: String::new(),
            event: Some(Event {
                data: Some(Data::Binary(vec![0; bytes])),
                ..Event::default()
            }),
        };
        assert!(batch(&vec![event(1); MAX_BATCH_EVENTS], 1_000_000).is_ok());
        let many = batch(&vec![event(1); MAX_BATCH_EVENTS + 1], 1_000_000).unwrap_err();
        assert_eq!(many.code(), Code::InvalidArgument);
        assert!(many.to_string().contains("at most 1000"), "{many}");
        // Four events of 1,000 bytes fit four times 1,100; a fifth does not.
        assert!(batch(&vec![event(1000); 4], 1100).is_ok());
        let large = batch(&vec![event(1000); 5], 1100).unwrap_err();
        assert_eq!(large.code(), Code::InvalidArgument);
        assert!(large.to_string().contains("--max-payload-bytes"), "{large}");
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
    fn keys_fields_and_attributes_are_bounded_each_refusal_naming_its_limit() {
        let publish = |key: String, event: Event| PublishEventRequest {
            topic: "t".into(),
            key,
            event: Some(event),
        };
        let refused = |request: PublishEventRequest| {
            let error = publish_request(request, 1 << 20).unwrap_err();
            assert_eq!(error.code(), tonic::Code::InvalidArgument);
            let message = error.to_string();
            assert!(message.len() < 512, "{message}");
            message
        };
        let many = |n: usize| -> HashMap<String, String> {
            (0..n).map(|i| (format!("a{i}"), "v".to_owned())).collect()
        };
        let text = |attributes| Event {
            attributes,
            ..Event::default()
        };
        assert!(
            publish_request(publish(String::new(), text(many(MAX_ATTRIBUTES))), 1 << 20).is_ok()
        );
        assert!(
            refused(publish(String::new(), text(many(MAX_ATTRIBUTES + 1)))).contains("at most 100")
        );
        let mixed = Event {
            attributes: many(60),
            binary_attributes: (0..41).map(|i| (format!("b{i}"), vec![0xff])).collect(),
            ..Event::default()
        };
        assert!(refused(publish(String::new(), mixed)).contains("101 attributes"));
        let long_name = [("n".repeat(MAX_ATTRIBUTE_NAME_LEN + 1), String::new())].into();
        assert!(refused(publish(String::new(), text(long_name))).contains("at most 256"));
        let large_value = [("n".to_owned(), "v".repeat(MAX_ATTRIBUTE_VALUE_LEN + 1))].into();
        assert!(refused(publish(String::new(), text(large_value))).contains("at most 16384"));
        let total: HashMap<String, String> = (0..3)
            .map(|i| (format!("n{i}"), "v".repeat(MAX_ATTRIBUTE_VALUE_LEN - 10)))
            .collect();
        assert!(refused(publish(String::new(), text(total))).contains("at most 32768"));
        let both = Event {
            attributes: [("n".to_owned(), "v".to_owned())].into(),
            binary_attributes: [("n".to_owned(), vec![1])].into(),
            ..Event::default()
        };
        assert!(refused(publish(String::new(), both)).contains("in both"));
        let reserved = Event {
            binary_attributes: [("CE_type".to_owned(), vec![1])].into(),
            ..Event::default()
        };
        assert!(refused(publish(String::new(), reserved)).contains("reserved"));
        let key = "k".repeat(MAX_KEY_LEN + 1);
        assert!(refused(publish(key, Event::default())).contains("at most 4096"));
        let source = Event {
            source: "s".repeat(MAX_FIELD_LEN + 1),
            ..Event::default()
        };
        assert!(refused(publish(String::new(), source)).contains("event.source"));
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
        let (id, acks) = acknowledge_request(request("s", &["t:1:2:3"]), AckIds::Plain).unwrap();
        let named = AckRef {
            position: TopicPartition::new("t", 1).at(2),
            attempt: 3,
        };
        assert_eq!((id.as_str(), acks), ("s", vec![named]));
        for bad in [
            request("", &["t:1:2:1"]),
            request("s", &["t:1:2:1", "t:x:1:1"]),
            request("s", &["t:1:2"]),
        ] {
            let error = acknowledge_request(bad, AckIds::Plain).unwrap_err();
            assert_eq!(error.code(), Code::InvalidArgument);
        }
    }

    #[test]
    fn settle_requests_keep_their_bounds_and_answer_bad_ids_one_by_one() {
        use eventgateway::v1::{DeadLetter, Extend, Nack};
        let seconds = |seconds: i64| Some(prost_types::Duration { seconds, nanos: 0 });
        let request = SettleRequest {
            request_id: "r".into(),
            acks: vec!["t:0:1:1".into(), "nonsense".into()],
            nacks: vec![Nack {
                ack_id: "t:0:2:1".into(),
                delay: seconds(5),
            }],
            extends: vec![Extend {
                ack_id: "t:0:3:1".into(),
                extension: None,
            }],
            dead_letters: vec![DeadLetter {
                ack_id: "x".repeat(MAX_ACK_ID_LEN + 10),
                reason: "poison".into(),
            }],
            ..SettleRequest::default()
        };
        let settle = settle_request(request.clone(), AckIds::Plain).unwrap();
        assert_eq!(settle.request_id, "r");
        let verbs: Vec<&Verb> = settle.verbs.iter().map(|(v, _)| v).collect();
        assert_eq!(
            verbs,
            [
                &Verb::Ack,
                &Verb::Ack,
                &Verb::Nack(Some(Duration::from_secs(5))),
                &Verb::Extend(None),
                &Verb::DeadLetter("poison".into())
            ]
        );
        let named: Vec<bool> = settle.verbs.iter().map(|(_, a)| a.is_ok()).collect();
        assert_eq!(named, [true, false, true, true, false]);
        assert_eq!(
            settle.ack_ids[4].len(),
            MAX_ACK_ID_LEN,
            "echoed ids are bounded"
        );

        let over = |change: &dyn Fn(&mut SettleRequest)| {
            let mut bad = request.clone();
            change(&mut bad);
            invalid(settle_request(bad, AckIds::Plain))
        };
        assert!(over(&|r| r.nacks[0].delay = seconds(601)).contains("nack delay"));
        assert!(over(&|r| r.nacks[0].delay = seconds(-1)).contains("nack delay"));
        assert!(over(&|r| r.extends[0].extension = seconds(601)).contains("extension"));
        assert!(over(&|r| r.dead_letters[0].reason = "r".repeat(1025)).contains("1024"));
        assert!(over(&|r| r.request_id = "i".repeat(257)).contains("256"));
        assert!(over(&|r| r.acks = vec![String::new(); MAX_ACK_IDS]).contains("10000"));
        assert!(invalid(settle_call(request.clone(), AckIds::Plain)).contains("subscription_id"));
        let named = SettleRequest {
            subscription_id: "s".into(),
            ..request
        };
        let (id, settle) = settle_call(named, AckIds::Plain).unwrap();
        assert_eq!((id.as_str(), settle.ack_ids.len()), ("s", 5));
    }

    #[test]
    fn retry_and_dead_letter_policies_and_key_order_are_checked() {
        use eventgateway::v1::{DeadLetterPolicy as WirePolicy, RetryPolicy};
        let defaults = ManualAcks::new(Duration::from_secs(30), 100);
        let seconds = |seconds: i64| Some(prost_types::Duration { seconds, nanos: 0 });
        let request = SubscribeRequest {
            topics: vec!["orders".into(), "refunds".into()],
            ack_mode: AckMode::Manual as i32,
            retry_policy: Some(RetryPolicy {
                minimum_backoff: seconds(1),
                maximum_backoff: None,
            }),
            dead_letter_policy: Some(WirePolicy {
                topic: String::new(),
                max_delivery_attempts: 5,
            }),
            ordered_by_key: true,
            ..SubscribeRequest::default()
        };
        let spec = subscribe_request(&request, &defaults).unwrap();
        let manual = spec.manual.clone().unwrap();
        assert_eq!(
            manual.retry,
            Some(Backoff {
                min: Duration::from_secs(1),
                max: MAX_DELAY
            })
        );
        assert!(manual.ordered_by_key);
        assert_eq!(spec.dead_letter_topics(), ["orders.dlq", "refunds.dlq"]);

        let refused = |change: &dyn Fn(&mut SubscribeRequest)| {
            let mut bad = request.clone();
            change(&mut bad);
            invalid(subscribe_request(&bad, &defaults))
        };
        assert!(refused(&|r| r.ack_mode = AckMode::Auto as i32).contains("only to ACK_MODE_MANUAL"));
        let backoff = |min, max| {
            move |r: &mut SubscribeRequest| {
                r.retry_policy = Some(RetryPolicy {
                    minimum_backoff: seconds(min),
                    maximum_backoff: seconds(max),
                })
            }
        };
        assert!(refused(&backoff(5, 1)).contains("longer than maximum_backoff"));
        assert!(refused(&backoff(1, 601)).contains("maximum_backoff must be"));
        assert!(refused(&backoff(-1, 1)).contains("minimum_backoff must be"));
        let letters = |topic: &str, attempts| {
            let topic = topic.to_owned();
            move |r: &mut SubscribeRequest| {
                r.dead_letter_policy = Some(WirePolicy {
                    topic: topic.clone(),
                    max_delivery_attempts: attempts,
                })
            }
        };
        assert!(refused(&letters("", 1001)).contains("at most 1000"));
        assert!(refused(&letters("bad name", 1)).contains("dead-letter topic"));
        assert!(refused(&letters("refunds", 1)).contains("one of the subscription's topics"));
        let long = "t".repeat(MAX_TOPIC_LEN - 2);
        assert!(refused(&|r| r.topics = vec![long.clone()]).contains("dead-letter topic"));
        let own = letters("graveyard", 0);
        let mut shared = request.clone();
        own(&mut shared);
        let spec = subscribe_request(&shared, &defaults).unwrap();
        assert_eq!(spec.dead_letter_topics(), ["graveyard"]);
    }

    #[test]
    fn subscribe_requests_need_topics_and_start_options_that_fit() {
        use eventgateway::v1::PartitionOffset;
        let ok = SubscribeRequest {
            topics: vec!["a".into(), "a".into(), "b".into()],
            ..SubscribeRequest::default()
        };
        let defaults = ManualAcks::new(std::time::Duration::from_secs(30), 100);
        let spec = subscribe_request(&ok, &defaults).unwrap();
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
            let error = subscribe_request(&request, &defaults).unwrap_err();
            assert_eq!(error.code(), Code::InvalidArgument, "{request:?}: {error}");
        }
        let manual = SubscribeRequest {
            ack_mode: AckMode::Manual as i32,
            ..ok.clone()
        };
        assert_eq!(
            subscribe_request(&manual, &defaults).unwrap().manual,
            Some(defaults.clone())
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
            subscribe_request(&tuned, &defaults).unwrap().manual,
            Some(ManualAcks::new(std::time::Duration::from_secs(2), 10))
        );
    }

    fn invalid<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
        let error = result.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{error}");
        error.to_string()
    }

    #[test]
    fn counts_and_sizes_are_bounded_before_the_work_that_grows_with_them() {
        let defaults = ManualAcks::new(Duration::from_secs(30), 100);
        let many = SubscribeRequest {
            topics: (0..100_000).map(|i| format!("topic-{i}")).collect(),
            ..SubscribeRequest::default()
        };
        assert!(invalid(subscribe_request(&many, &defaults)).contains("at most 100"));
        let duplicates = SubscribeRequest {
            topics: vec!["a".into(); MAX_TOPICS],
            ..SubscribeRequest::default()
        };
        assert_eq!(
            subscribe_request(&duplicates, &defaults).unwrap().topics,
            ["a"]
        );
        let manual = |max_unacked, seconds| SubscribeRequest {
            topics: vec!["a".into()],
            ack_mode: AckMode::Manual as i32,
            max_unacked,
            ack_timeout: Some(prost_types::Duration { seconds, nanos: 0 }),
            ..SubscribeRequest::default()
        };
        assert!(
            invalid(subscribe_request(&manual(u32::MAX, 30), &defaults)).contains("at most 10000")
        );
        assert!(invalid(subscribe_request(&manual(10, i64::MAX), &defaults)).contains("600s"));
        assert!(invalid(subscribe_request(&manual(10, 601), &defaults)).contains("600s"));
        let bounds = subscribe_request(&manual(MAX_UNACKED, 600), &defaults).unwrap();
        assert_eq!(
            bounds.manual,
            Some(ManualAcks::new(MAX_ACK_TIMEOUT, MAX_UNACKED as usize))
        );

        let acknowledge = |id: String, ack_ids: Vec<String>| AcknowledgeRequest {
            subscription_id: id,
            ack_ids,
        };
        let huge = invalid(acknowledge_request(
            acknowledge("x".repeat(3 << 20), vec![]),
            AckIds::Plain,
        ));
        assert!(huge.len() < 200, "{huge}");
        let ids = vec!["t:0:0".to_owned(); MAX_ACK_IDS + 1];
        assert!(invalid(acknowledge_request(
            acknowledge("s".into(), ids),
            AckIds::Plain
        ))
        .contains("at most"));
        let long = invalid(acknowledge_request(
            acknowledge("s".into(), vec!["t".repeat(1 << 20)]),
            AckIds::Plain,
        ));
        assert!(long.len() < 200, "{long}");
    }

    #[test]
    fn client_strings_in_messages_are_clipped() {
        let topic = format!("{}/", "x".repeat(300));
        let request = SubscribeRequest {
            topics: vec!["a".into()],
            start_from: StartFrom::Offsets as i32,
            start_offsets: vec![eventgateway::v1::PartitionOffset {
                topic: "y".repeat(3 << 20),
                partition: 0,
                offset: 0,
            }],
            ..SubscribeRequest::default()
        };
        let defaults = ManualAcks::new(Duration::from_secs(30), 100);
        let message = invalid(subscribe_request(&request, &defaults));
        assert!(message.len() < 300, "{} bytes", message.len());
        let message = invalid(topic_name(&topic));
        assert!(message.contains("bytes long"), "{message}");
        let message = invalid(topic_name(&format!("{}/", "x".repeat(200))));
        assert!(message.contains("'/'"), "{message}");
        assert!(message.contains("...(+73 bytes)"), "{message}");
    }

    #[test]
    fn reserved_names_in_any_case_and_times_beyond_rfc_3339_are_refused() {
        let publish = |name: &str, seconds: i64| PublishEventRequest {
            topic: "t".into(),
            key: String::new(),
            event: Some(Event {
                attributes: [(name.to_owned(), "x".to_owned())].into(),
                time: Some(prost_types::Timestamp { seconds, nanos: 0 }),
                ..Event::default()
            }),
        };
        for name in ["ce_id", "CE_ID", "Ce_Type", "Content-Type", "CONTENT-TYPE"] {
            assert!(
                invalid(publish_request(publish(name, 0), 10)).contains("reserved"),
                "{name}"
            );
        }
        assert!(publish_request(publish("cetus", 0), 10).is_ok());
        // CloudEvents attributes without a field of their own.
        assert!(publish_request(publish("ce_subject", 0), 10).is_ok());
        for seconds in [9_223_372_036_854_775_807, 253_402_300_800, -62_135_596_801] {
            assert!(invalid(publish_request(publish("a", seconds), 10)).contains("9999"));
        }
        for seconds in [253_402_300_799, -62_135_596_800] {
            assert!(publish_request(publish("a", seconds), 10).is_ok());
        }
    }
}
