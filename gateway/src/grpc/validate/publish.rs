//! PublishEvent and PublishEvents: the topic, the event, its attributes
//! and time, and a batch's count and size.

use eventgateway::record::{header, Payload};
use eventgateway::v1::{event::Data, PublishEventRequest};

use crate::error::Error;
use crate::publish::Publish;
use crate::text::clip;
use eventgateway::bounds::*;

use super::*;

/// The earliest and the latest event time accepted: the years 1 to 9999,
/// which RFC 3339 (and so the `ce_time` header) can write.
const TIMES: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// Whether `name` is a header name the event's own fields set: the
/// CloudEvents attributes the event has fields for (`ce_specversion`,
/// `ce_id`, `ce_type`, `ce_source`, `ce_time`) and `content-type`, in any
/// case (many Kafka clients compare header names without case). Other
/// `ce_*` names are CloudEvents attributes without a field of their own
/// (`ce_subject`, `ce_dataschema`, extensions), carried as attributes.
fn reserved(name: &str) -> bool {
    [
        header::SPECVERSION,
        header::ID,
        header::TYPE,
        header::SOURCE,
        header::TIME,
        header::CONTENT_TYPE,
    ]
    .iter()
    .any(|reserved| name.eq_ignore_ascii_case(reserved))
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
                "attribute {} is reserved: ce_specversion, ce_id, ce_type, ce_source, ce_time and content-type (in any case) are set from the event's fields",
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
