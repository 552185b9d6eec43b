//! CloudEvents over HTTP, in: an event in binary mode (`ce-*` headers, the
//! body as the data, of any content type) or structured mode
//! (`application/cloudevents+json`), read into the PublishEventRequest it
//! stands for. Every attribute goes where the CloudEvents Kafka binding
//! puts it: `id`, `source`, `type`, `time` and the content type into the
//! event's fields (headers `ce_id`, ...), `partitionkey` into the record
//! key, and every other attribute (`subject`, `dataschema`, extensions)
//! into an attribute `ce_<name>`, written as the header of that name.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use eventgateway::json::json_to_struct;
use eventgateway::v1::{event::Data, Event, PublishEventRequest};
use http::HeaderMap;
use prost_types::Timestamp;

use crate::auth::webhook::Webhook;

/// The CloudEvents version taken.
const SPECVERSION: &str = "1.0";
/// The extension whose value is the Kafka record key.
const PARTITION_KEY: &str = "partitionkey";
/// The most events of one batch.
const MAX_BATCH_EVENTS: usize = eventgateway::bounds::MAX_BATCH_EVENTS;
/// The most attributes (headers or members) one event may carry.
const MAX_ATTRIBUTES: usize = eventgateway::bounds::MAX_ATTRIBUTES + 10;

/// The attributes whose values are JSON strings in structured mode (the
/// context attributes of type String, URI-reference or Timestamp, and
/// the partitioning extension); other extensions may also be numbers or
/// booleans.
const STRINGS: [&str; 8] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "dataschema",
    PARTITION_KEY,
];

/// Why a request is not an event: the message for its 400.
pub(crate) type Refusal = String;

/// How an event came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `ce-*` headers and the body as the data.
    Binary,
    /// One JSON object with the attributes and the data.
    Structured,
    /// A JSON array of structured events.
    Batch,
}

/// The mode of a request with `headers`, if it is a CloudEvent: the only
/// bodies taken, so that no content type a browser sends cross-site
/// without a preflight gets through (binary mode needs a `ce-specversion`
/// header, which no simple request carries).
pub(crate) fn mode(headers: &HeaderMap) -> Option<Mode> {
    let media = media_type(headers);
    match media.as_str() {
        "application/cloudevents+json" => return Some(Mode::Structured),
        "application/cloudevents-batch+json" => return Some(Mode::Batch),
        _ => {}
    }
    headers
        .contains_key("ce-specversion")
        .then_some(Mode::Binary)
}

/// Whether a request with `headers` has a plain JSON body (what a webhook
/// sender POSTs).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers) == "application/json"
}

/// The event of a plain body POSTed to `route`'s topic: its type and
/// source the route's, its id the route's id header (or a new UUIDv7),
/// the body byte for byte.
pub(crate) fn plain(route: &Webhook, headers: &HeaderMap, body: Bytes) -> PublishEventRequest {
    let id = route
        .id_header
        .as_deref()
        .and_then(|name| headers.get(name))
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let event = Event {
        id,
        r#type: route.event_type.clone(),
        source: route.source.clone(),
        content_type: "application/json".into(),
        data: (!body.is_empty()).then(|| Data::Binary(body.to_vec())),
        ..Event::default()
    };
    PublishEventRequest {
        topic: route.topic.clone(),
        key: String::new(),
        event: Some(event),
    }
}

/// The request's media type, lower case, without parameters.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The event of a binary-mode request to `topic`.
pub(crate) fn binary(
    topic: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<PublishEventRequest, Refusal> {
    let mut event = Event::default();
    let mut key = String::new();
    let mut seen = 0;
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        seen += 1;
        if seen > MAX_ATTRIBUTES {
            return Err(format!("more than {MAX_ATTRIBUTES} ce-* headers"));
        }
        let value = crate::text::percent_decoded(value.as_bytes())
            .ok_or_else(|| format!("header ce-{attribute} is not percent-encoded UTF-8"))?;
        set(&mut event, &mut key, attribute, value)?;
    }
    event.content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !body.is_empty() {
        event.data = Some(Data::Binary(body.to_vec()));
    }
    finish(topic, event, key)
}

/// The event of a structured-mode request to `topic`.
pub(crate) fn structured(topic: &str, body: &[u8]) -> Result<PublishEventRequest, Refusal> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| format!("the body is not JSON: {error}"))?;
    one(topic, value)
}

/// The events of a batch-mode request to `topic`, in order: refused whole
/// when one of them is not an event (its index says which).
pub(crate) fn batch(topic: &str, body: &[u8]) -> Result<Vec<PublishEventRequest>, Refusal> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| format!("the body is not JSON: {error}"))?;
    let serde_json::Value::Array(events) = value else {
        return Err("a batch is one JSON array of events".into());
    };
    if events.len() > MAX_BATCH_EVENTS {
        return Err(format!(
            "the batch has {} events; at most {MAX_BATCH_EVENTS}",
            events.len()
        ));
    }
    events
        .into_iter()
        .enumerate()
        .map(|(at, event)| {
            one(topic, event).map_err(|why| format!("event {at} of the batch: {why}"))
        })
        .collect()
}

/// The event a structured-mode JSON value stands for.
fn one(topic: &str, value: serde_json::Value) -> Result<PublishEventRequest, Refusal> {
    let serde_json::Value::Object(members) = value else {
        return Err("a structured-mode event is one JSON object".into());
    };
    if members.len() > MAX_ATTRIBUTES {
        return Err(format!("more than {MAX_ATTRIBUTES} members"));
    }
    if !members.contains_key("specversion") {
        return Err(format!("a CloudEvent needs specversion ({SPECVERSION})"));
    }
    let mut event = Event::default();
    let mut key = String::new();
    let (mut data, mut data_base64) = (None, None);
    for (name, value) in members {
        match name.as_str() {
            "data" => data = Some(value),
            "data_base64" => data_base64 = Some(value),
            "datacontenttype" => event.content_type = string(&name, value)?,
            _ => {
                let value = if STRINGS.contains(&name.as_str()) {
                    string(&name, value)?
                } else {
                    text(&name, value)?
                };
                set(&mut event, &mut key, &name, value)?;
            }
        }
    }
    event.data = match (data, data_base64) {
        (Some(_), Some(_)) => return Err("an event has data or data_base64, not both".into()),
        (None, Some(encoded)) => {
            let encoded = text("data_base64", encoded)?;
            let bytes = BASE64
                .decode(encoded.as_bytes())
                .map_err(|_| "data_base64 is not base64".to_owned())?;
            Some(Data::Binary(bytes))
        }
        (Some(value), None) => Some(json_data(&event.content_type, value)?),
        (None, None) => None,
    };
    finish(topic, event, key)
}

/// The data member as the event's payload: a JSON object as `json` when
/// the content type is JSON (or none), a string as `text` when it is not,
/// and any other JSON value as its JSON text.
fn json_data(content_type: &str, value: serde_json::Value) -> Result<Data, Refusal> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let json = media.is_empty() || media == "application/json" || media.ends_with("+json");
    Ok(match value {
        serde_json::Value::String(text) if !json => Data::Text(text),
        serde_json::Value::Object(_) if json => {
            let text = value.to_string();
            match json_to_struct(text.as_bytes()) {
                Some(object) => Data::Json(object),
                None => Data::Binary(text.into_bytes()),
            }
        }
        other => Data::Binary(other.to_string().into_bytes()),
    })
}

/// A structured member that must be a JSON string.
fn string(name: &str, value: serde_json::Value) -> Result<String, Refusal> {
    match value {
        serde_json::Value::String(text) => Ok(text),
        _ => Err(format!(
            "attribute {} is not a string",
            crate::text::clip(name)
        )),
    }
}

/// A structured member's value as text: strings as they are, numbers and
/// booleans as JSON writes them.
fn text(name: &str, value: serde_json::Value) -> Result<String, Refusal> {
    match value {
        serde_json::Value::String(text) => Ok(text),
        value @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {
            Ok(value.to_string())
        }
        _ => Err(format!(
            "attribute {} is not a string, number or boolean",
            crate::text::clip(name)
        )),
    }
}

/// Sets attribute `name` (lower case, without `ce-`) of an event.
fn set(event: &mut Event, key: &mut String, name: &str, value: String) -> Result<(), Refusal> {
    let valid = !name.is_empty()
        && name.len() <= 20
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !valid {
        return Err(format!(
            "attribute name {} is not a CloudEvents name (a to z and 0 to 9, at most 20)",
            crate::text::clip(name)
        ));
    }
    match name {
        "specversion" if value == SPECVERSION => {}
        "specversion" => {
            return Err(format!(
                "specversion {} is not {SPECVERSION}",
                crate::text::clip(&value)
            ))
        }
        "id" => event.id = value,
        "source" => event.source = value,
        "type" => event.r#type = value,
        "time" => {
            let time = value
                .parse::<Timestamp>()
                .map_err(|_| format!("time {} is not RFC 3339", crate::text::clip(&value)))?;
            event.time = Some(time);
        }
        PARTITION_KEY => *key = value,
        other => {
            event.attributes.insert(format!("ce_{other}"), value);
        }
    }
    Ok(())
}

/// The request, once the attributes CloudEvents requires are there.
fn finish(topic: &str, event: Event, key: String) -> Result<PublishEventRequest, Refusal> {
    for (name, value) in [
        ("id", &event.id),
        ("source", &event.source),
        ("type", &event.r#type),
    ] {
        if value.is_empty() {
            return Err(format!("a CloudEvent needs {name}"));
        }
    }
    Ok(PublishEventRequest {
        topic: topic.to_owned(),
        key,
        event: Some(event),
    })
}

#[cfg(test)]
mod tests;
