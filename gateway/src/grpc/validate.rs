//! Checks on what clients send, before anything reaches Kafka; each turns a
//! request into what the publish or subscribe side takes. Each failure is an
//! [`Error::InvalidArgument`] whose message says what to change. Every count
//! and size a client sends is checked against its bound before the work
//! that grows with it, and every client string a message repeats is clipped.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use eventgateway::record::{header, timestamp_to_millis, Payload};
use eventgateway::v1::{
    event::Data, AckMode, AcknowledgeRequest, PublishEventRequest, SettleRequest, StartFrom,
    SubscribeRequest,
};

use crate::error::Error;
use crate::publish::Publish;
use crate::subscribe::{
    parse_ack_id, AckRef, Backoff, DeadLetterPolicy, ManualAcks, StartPosition, SubscriptionSpec,
    TopicPartition, Verb, MAX_ACK_TIMEOUT, MAX_DELAY, MAX_UNACKED, MIN_ACK_TIMEOUT,
};
use crate::text::clip;
use eventgateway::bounds::*;

/// The earliest and the latest event time accepted: the years 1 to 9999,
/// which RFC 3339 (and so the `ce_time` header) can write.
const TIMES: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// Checks that `topic` is a legal Kafka topic name.
fn topic_name(topic: &str) -> Result<(), Error> {
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

/// Whether `name` is a header name the event's own fields set: `ce_*` and
/// `content-type`, in any case (many Kafka clients compare header names
/// without case).
fn reserved(name: &str) -> bool {
    let prefix = name.get(..header::CE_PREFIX.len());
    prefix.is_some_and(|p| p.eq_ignore_ascii_case(header::CE_PREFIX))
        || name.eq_ignore_ascii_case(header::CONTENT_TYPE)
}

/// Checks an event's attributes, text and binary: how many, how large, and
/// their names.
fn attributes(event: &eventgateway::v1::Event) -> Result<(), Error> {
    let count = event.attributes.len() + event.binary_attributes.len();
    if count > MAX_ATTRIBUTES {
        return Err(Error::InvalidArgument(format!(
            "the event has {count} attributes; at most {MAX_ATTRIBUTES}"
        )));
    }
    let text = event
        .attributes
        .iter()
        .map(|(name, value)| (name, value.as_bytes()));
    let binary = event
        .binary_attributes
        .iter()
        .map(|(name, value)| (name, value.as_slice()));
    let mut total = 0;
    for (name, value) in text.chain(binary) {
        if name.is_empty() {
            return Err(Error::InvalidArgument(
                "an attribute has an empty name".into(),
            ));
        }
        if name.len() > MAX_ATTRIBUTE_NAME_LEN {
            return Err(Error::InvalidArgument(format!(
                "attribute name {} is {} bytes; at most {MAX_ATTRIBUTE_NAME_LEN}",
                clip(name),
                name.len()
            )));
        }
        if reserved(name) {
            return Err(Error::InvalidArgument(format!(
                "attribute {} is reserved: names starting with \"ce_\" and \"content-type\" (in any case) are set from the event's fields",
                clip(name)
            )));
        }
        if value.len() > MAX_ATTRIBUTE_VALUE_LEN {
            return Err(Error::InvalidArgument(format!(
                "attribute {} has a value of {} bytes; at most {MAX_ATTRIBUTE_VALUE_LEN}",
                clip(name),
                value.len()
            )));
        }
        total += name.len() + value.len();
    }
    if total > MAX_ATTRIBUTES_BYTES {
        return Err(Error::InvalidArgument(format!(
            "the event's attributes take {total} bytes; at most {MAX_ATTRIBUTES_BYTES}"
        )));
    }
    if let Some(name) = event
        .binary_attributes
        .keys()
        .find(|name| event.attributes.contains_key(*name))
    {
        return Err(Error::InvalidArgument(format!(
            "attribute {} is in both attributes and binary_attributes; a name goes in one",
            clip(name)
        )));
    }
    Ok(())
}

/// Checks the bounds of a PublishEvents batch as a whole: its count and its
/// encoded size; each event is checked on its own as it is published.
/// Answers each event's encoded size.
pub(crate) fn batch(
    batch: &[PublishEventRequest],
    max_payload_bytes: usize,
) -> Result<Vec<usize>, Error> {
    if batch.len() > MAX_BATCH_EVENTS {
        return Err(Error::InvalidArgument(format!(
            "the batch has {} events; at most {MAX_BATCH_EVENTS}",
            batch.len()
        )));
    }
    let most = max_payload_bytes.saturating_mul(BATCH_PAYLOADS);
    let sizes: Vec<usize> = batch.iter().map(prost::Message::encoded_len).collect();
    let bytes: usize = sizes.iter().sum();
    if bytes > most {
        return Err(Error::InvalidArgument(format!(
            "the batch's events are {bytes} bytes; at most {most} ({BATCH_PAYLOADS} times \
             --max-payload-bytes)"
        )));
    }
    Ok(sizes)
}

/// Checks a publish request and turns it into a [`Publish`], its payload
/// encoded (once) to check its size.
pub(crate) fn publish_request(
    mut request: PublishEventRequest,
    max_payload_bytes: usize,
) -> Result<Publish, Error> {
    topic_name(&request.topic)?;
    let event = request.event.as_mut().ok_or_else(|| {
        Error::InvalidArgument("event is missing: set the event to publish".into())
    })?;
    if request.key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidArgument(format!(
            "the key is {} bytes; at most {MAX_KEY_LEN}",
            request.key.len()
        )));
    }
    for (field, value) in [
        ("event.id", &event.id),
        ("event.type", &event.r#type),
        ("event.source", &event.source),
        ("event.content_type", &event.content_type),
    ] {
        if value.len() > MAX_FIELD_LEN {
            return Err(Error::InvalidArgument(format!(
                "{field} is {} bytes; at most {MAX_FIELD_LEN}",
                value.len()
            )));
        }
    }
    attributes(event)?;
    if let Some(time) = &event.time {
        if !(0..1_000_000_000).contains(&time.nanos) || !TIMES.contains(&time.seconds) {
            return Err(Error::InvalidArgument(
                "event.time must lie in the years 1 to 9999, with nanos in 0..1e9".into(),
            ));
        }
    }
    if let Some(Data::Json(object)) = &event.data {
        if let Some(problem) = eventgateway::json::struct_problem(object) {
            return Err(Error::InvalidArgument(format!(
                "{problem}; send it as text instead"
            )));
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

/// Checks a subscription id a client sends back.
fn subscription_id(id: &str) -> Result<(), Error> {
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

/// Reads an ack id, refusing one longer than any the gateway hands out
/// before looking into it.
fn ack_ref(id: &str) -> Result<AckRef, Error> {
    if id.len() > MAX_ACK_ID_LEN {
        return Err(Error::InvalidArgument(format!(
            "an ack id of {} bytes is not one the gateway handed out (at most {MAX_ACK_ID_LEN})",
            id.len()
        )));
    }
    parse_ack_id(id)
}

/// Checks an acknowledge request: the subscription id and every ack id.
pub(crate) fn acknowledge_request(
    request: AcknowledgeRequest,
) -> Result<(String, Vec<AckRef>), Error> {
    subscription_id(&request.subscription_id)?;
    if request.ack_ids.len() > MAX_ACK_IDS {
        return Err(Error::InvalidArgument(format!(
            "{} ack ids in one call; acknowledge at most {MAX_ACK_IDS} at a time",
            request.ack_ids.len()
        )));
    }
    let acks = request
        .ack_ids
        .iter()
        .map(|id| ack_ref(id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((request.subscription_id, acks))
}

/// A settle request that passed its bounds.
#[derive(Debug)]
pub(crate) struct Settle {
    /// The request id to echo.
    pub(crate) request_id: String,
    /// Each verb with the attempt its ack id names, or why it names none.
    pub(crate) verbs: Vec<(Verb, Result<AckRef, String>)>,
    /// Each verb's ack id as sent (clipped to [`MAX_ACK_ID_LEN`]), for the
    /// answer.
    pub(crate) ack_ids: Vec<String>,
}

/// Checks a settle request's bounds (the subscription id is the caller's
/// to check: a stream settles its own). Ack ids that name nothing are not
/// refused here: each is answered UNKNOWN.
pub(crate) fn settle_request(request: SettleRequest) -> Result<Settle, Error> {
    let count = request.acks.len()
        + request.nacks.len()
        + request.extends.len()
        + request.dead_letters.len();
    if count > MAX_ACK_IDS {
        return Err(Error::InvalidArgument(format!(
            "{count} ack ids in one settle request; at most {MAX_ACK_IDS}"
        )));
    }
    if request.request_id.len() > MAX_REQUEST_ID_LEN {
        return Err(Error::InvalidArgument(format!(
            "request_id is {} bytes; at most {MAX_REQUEST_ID_LEN}",
            request.request_id.len()
        )));
    }
    let mut verbs = Vec::with_capacity(count);
    for id in request.acks {
        verbs.push((Verb::Ack, id));
    }
    for nack in request.nacks {
        let after = nack.delay.map(|d| delay("a nack delay", d)).transpose()?;
        verbs.push((Verb::Nack(after), nack.ack_id));
    }
    for extend in request.extends {
        let by = extend
            .extension
            .map(|d| delay("an extension", d))
            .transpose()?;
        verbs.push((Verb::Extend(by), extend.ack_id));
    }
    for letter in request.dead_letters {
        if letter.reason.len() > MAX_REASON_LEN {
            return Err(Error::InvalidArgument(format!(
                "a dead-letter reason is {} bytes; at most {MAX_REASON_LEN}",
                letter.reason.len()
            )));
        }
        verbs.push((Verb::DeadLetter(letter.reason), letter.ack_id));
    }
    let mut ack_ids = Vec::with_capacity(count);
    let verbs = verbs
        .into_iter()
        .map(|(verb, id)| {
            let named = ack_ref(&id).map_err(|error| error.to_string());
            ack_ids.push(truncated(id, MAX_ACK_ID_LEN));
            (verb, named)
        })
        .collect();
    Ok(Settle {
        request_id: request.request_id,
        verbs,
        ack_ids,
    })
}

/// Checks a Settle call whole, before it goes anywhere: the id of the
/// subscription it settles for, and its verbs.
pub(crate) fn settle_call(mut request: SettleRequest) -> Result<(String, Settle), Error> {
    subscription_id(&request.subscription_id)?;
    let id = std::mem::take(&mut request.subscription_id);
    Ok((id, settle_request(request)?))
}

/// Checks a subscribe request and turns it into what the consumer needs;
/// `defaults` fill what a MANUAL subscription leaves unset.
pub(crate) fn subscribe_request(
    request: &SubscribeRequest,
    defaults: &ManualAcks,
) -> Result<SubscriptionSpec, Error> {
    if request.topics.is_empty() {
        return Err(Error::InvalidArgument(
            "topics is empty: name at least one topic".into(),
        ));
    }
    if request.topics.len() > MAX_TOPICS {
        return Err(Error::InvalidArgument(format!(
            "{} topics; a subscription reads at most {MAX_TOPICS}",
            request.topics.len()
        )));
    }
    let mut seen = HashSet::with_capacity(request.topics.len());
    let mut topics: Vec<String> = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        topic_name(topic)?;
        if seen.insert(topic.as_str()) {
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
        Some(manual_acks(request, defaults, &topics)?)
    } else {
        if request.ack_timeout.is_some()
            || request.max_unacked != 0
            || request.retry_policy.is_some()
            || request.dead_letter_policy.is_some()
            || request.ordered_by_key
        {
            return Err(Error::InvalidArgument(
                "ack_timeout, max_unacked, retry_policy, dead_letter_policy and ordered_by_key apply only to ACK_MODE_MANUAL".into(),
            ));
        }
        None
    };
    Ok(SubscriptionSpec {
        start: start_position(request, &seen)?,
        topics,
        group: (!request.group.is_empty()).then(|| request.group.clone()),
        manual,
    })
}

/// The acknowledgement settings of a MANUAL subscription, within bounds.
fn manual_acks(
    request: &SubscribeRequest,
    defaults: &ManualAcks,
    topics: &[String],
) -> Result<ManualAcks, Error> {
    let ack_timeout = match &request.ack_timeout {
        None => defaults.ack_timeout,
        Some(timeout) => Duration::try_from(*timeout)
            .ok()
            .filter(|t| (MIN_ACK_TIMEOUT..=MAX_ACK_TIMEOUT).contains(t))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "ack_timeout must be {MIN_ACK_TIMEOUT:?} to {MAX_ACK_TIMEOUT:?}"
                ))
            })?,
    };
    let max_unacked = match request.max_unacked {
        0 => defaults.max_unacked,
        n if n <= MAX_UNACKED => n as usize,
        n => {
            return Err(Error::InvalidArgument(format!(
                "max_unacked is {n}; at most {MAX_UNACKED} deliveries can be out at once"
            )))
        }
    };
    Ok(ManualAcks {
        ack_timeout,
        max_unacked,
        retry: request
            .retry_policy
            .as_ref()
            .map(retry_policy)
            .transpose()?,
        dead_letter: request
            .dead_letter_policy
            .as_ref()
            .map(|policy| dead_letter_policy(policy, topics))
            .transpose()?,
        ordered_by_key: request.ordered_by_key,
    })
}

/// A delay, extension or backoff `what` the client sent, within 0 to
/// [`MAX_DELAY`].
fn delay(what: &str, duration: prost_types::Duration) -> Result<Duration, Error> {
    Duration::try_from(duration)
        .ok()
        .filter(|d| *d <= MAX_DELAY)
        .ok_or_else(|| {
            Error::InvalidArgument(format!("{what} must be 0 to {}s", MAX_DELAY.as_secs()))
        })
}

/// A retry policy within bounds.
fn retry_policy(policy: &eventgateway::v1::RetryPolicy) -> Result<Backoff, Error> {
    let min = policy.minimum_backoff.map_or(Ok(Duration::ZERO), |d| {
        delay("retry_policy.minimum_backoff", d)
    })?;
    let max = policy
        .maximum_backoff
        .map_or(Ok(MAX_DELAY), |d| delay("retry_policy.maximum_backoff", d))?;
    if min > max {
        return Err(Error::InvalidArgument(format!(
            "retry_policy.minimum_backoff ({min:?}) is longer than maximum_backoff ({max:?})"
        )));
    }
    Ok(Backoff { min, max })
}

/// A dead-letter policy for `topics`: a legal dead-letter topic for each,
/// none of them a topic it reads.
fn dead_letter_policy(
    policy: &eventgateway::v1::DeadLetterPolicy,
    topics: &[String],
) -> Result<DeadLetterPolicy, Error> {
    if policy.max_delivery_attempts > MAX_DELIVERY_ATTEMPTS {
        return Err(Error::InvalidArgument(format!(
            "dead_letter_policy.max_delivery_attempts is {}; at most {MAX_DELIVERY_ATTEMPTS}",
            policy.max_delivery_attempts
        )));
    }
    let dead_letters = DeadLetterPolicy {
        topic: (!policy.topic.is_empty()).then(|| policy.topic.clone()),
        max_attempts: policy.max_delivery_attempts,
    };
    for topic in topics {
        let target = dead_letters.topic_for(topic);
        topic_name(&target).map_err(|error| {
            Error::InvalidArgument(format!("dead-letter topic of {}: {error}", clip(topic)))
        })?;
        if topics.contains(&target) {
            return Err(Error::InvalidArgument(format!(
                "the dead-letter topic {} is one of the subscription's topics",
                clip(&target)
            )));
        }
    }
    Ok(dead_letters)
}

/// Where a subscription starts; `topics` are its (checked) topics.
fn start_position(
    request: &SubscribeRequest,
    topics: &HashSet<&str>,
) -> Result<StartPosition, Error> {
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
    Ok(match start_from {
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
            if request.start_offsets.len() > MAX_START_OFFSETS {
                return Err(Error::InvalidArgument(format!(
                    "start_offsets names {} partitions; at most {MAX_START_OFFSETS}",
                    request.start_offsets.len()
                )));
            }
            let mut offsets = HashMap::with_capacity(request.start_offsets.len());
            for position in &request.start_offsets {
                if !topics.contains(position.topic.as_str()) {
                    return Err(Error::InvalidArgument(format!(
                        "start_offsets names topic {}, which is not in topics",
                        clip(&position.topic)
                    )));
                }
                if position.partition < 0 || position.offset < 0 {
                    return Err(Error::InvalidArgument(format!(
                        "start_offsets has a negative partition or offset for topic {}",
                        clip(&position.topic)
                    )));
                }
                offsets.insert(
                    TopicPartition::new(position.topic.as_str(), position.partition),
                    position.offset,
                );
            }
            StartPosition::Offsets(offsets)
        }
    })
}

/// Checks a consumer group name.
fn group_name(group: &str) -> Result<(), Error> {
    if group.len() > MAX_TOPIC_LEN || group.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "group must be at most {MAX_TOPIC_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let (id, acks) = acknowledge_request(request("s", &["t:1:2:3"])).unwrap();
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
            let error = acknowledge_request(bad).unwrap_err();
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
        let settle = settle_request(request.clone()).unwrap();
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
            invalid(settle_request(bad))
        };
        assert!(over(&|r| r.nacks[0].delay = seconds(601)).contains("nack delay"));
        assert!(over(&|r| r.nacks[0].delay = seconds(-1)).contains("nack delay"));
        assert!(over(&|r| r.extends[0].extension = seconds(601)).contains("extension"));
        assert!(over(&|r| r.dead_letters[0].reason = "r".repeat(1025)).contains("1024"));
        assert!(over(&|r| r.request_id = "i".repeat(257)).contains("256"));
        assert!(over(&|r| r.acks = vec![String::new(); MAX_ACK_IDS]).contains("10000"));
        assert!(invalid(settle_call(request.clone())).contains("subscription_id"));
        let named = SettleRequest {
            subscription_id: "s".into(),
            ..request
        };
        let (id, settle) = settle_call(named).unwrap();
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
        let huge = invalid(acknowledge_request(acknowledge(
            "x".repeat(3 << 20),
            vec![],
        )));
        assert!(huge.len() < 200, "{huge}");
        let ids = vec!["t:0:0".to_owned(); MAX_ACK_IDS + 1];
        assert!(invalid(acknowledge_request(acknowledge("s".into(), ids))).contains("at most"));
        let long = invalid(acknowledge_request(acknowledge(
            "s".into(),
            vec!["t".repeat(1 << 20)],
        )));
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
        for seconds in [9_223_372_036_854_775_807, 253_402_300_800, -62_135_596_801] {
            assert!(invalid(publish_request(publish("a", seconds), 10)).contains("9999"));
        }
        for seconds in [253_402_300_799, -62_135_596_800] {
            assert!(publish_request(publish("a", seconds), 10).is_ok());
        }
    }
}
