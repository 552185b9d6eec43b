//! The API's messages in the proto3 JSON mapping (field names in
//! lowerCamelCase, 64-bit integers and durations as strings, timestamps in
//! RFC 3339, bytes in base64, enums by name), read and written through the
//! descriptor set the build makes (prost-reflect): one mapping for every
//! message, no hand-written copy of the schema. Answers carry every field,
//! zeros included (partition 0 and offset 0 are answers too).

use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions, Value,
};

use crate::text::clip;

/// Why a JSON body or query could not be read, for the caller.
pub(crate) type Refusal = String;

/// The mapping: see the module.
#[derive(Clone)]
pub(crate) struct Json {
    /// The API's descriptors.
    pool: DescriptorPool,
}

impl Json {
    /// The mapping of the descriptor set built from `proto/`.
    pub(crate) fn new() -> anyhow::Result<Self> {
        let pool = DescriptorPool::decode(eventgateway::FILE_DESCRIPTOR_SET)?;
        Ok(Self { pool })
    }

    /// The descriptors themselves (the routes' annotations are read from
    /// them in the tests).
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// The descriptor of message `name` (`eventgateway.v1.` left out).
    fn message(&self, name: &str) -> Result<MessageDescriptor, Refusal> {
        self.pool
            .get_message_by_name(&format!("eventgateway.v1.{name}"))
            .ok_or_else(|| format!("no message {name} in the API"))
    }

    /// Message `name` read from JSON `body` (empty: all fields unset), with
    /// `bound` (path variables: field and value) set over it.
    pub(crate) fn read<T: Message + Default>(
        &self,
        name: &str,
        body: &[u8],
        bound: &[(&str, String)],
    ) -> Result<T, Refusal> {
        let descriptor = self.message(name)?;
        let mut message = if body.iter().all(u8::is_ascii_whitespace) {
            DynamicMessage::new(descriptor.clone())
        } else {
            let mut reader = serde_json::Deserializer::from_slice(body);
            let message = DynamicMessage::deserialize_with_options(
                descriptor.clone(),
                &mut reader,
                &DeserializeOptions::new(),
            )
            .and_then(|message| reader.end().map(|()| message))
            .map_err(|error| unreadable(name, &error))?;
            message
        };
        for (field, value) in bound {
            let Some(field) = descriptor.get_field_by_name(field) else {
                return Err(format!("{name} has no field {field}"));
            };
            message.set_field(&field, Value::String(value.clone()));
        }
        message
            .transcode_to::<T>()
            .map_err(|error| unreadable(name, &error))
    }

    /// Message `name` read from `value` (a query string turned into JSON).
    pub(crate) fn read_value<T: Message + Default>(
        &self,
        name: &str,
        value: serde_json::Value,
    ) -> Result<T, Refusal> {
        let descriptor = self.message(name)?;
        DynamicMessage::deserialize_with_options(descriptor, value, &DeserializeOptions::new())
            .map_err(|error| unreadable(name, &error))?
            .transcode_to::<T>()
            .map_err(|error| unreadable(name, &error))
    }

    /// `message` (of type `name`) as JSON. Every message the gateway
    /// answers is one of the API's, encoded by prost: an error here is a
    /// fault in the gateway.
    pub(crate) fn write<T: Message>(
        &self,
        name: &str,
        message: &T,
    ) -> Result<serde_json::Value, String> {
        self.message(name).and_then(|descriptor| {
            let mut dynamic = DynamicMessage::new(descriptor);
            dynamic
                .transcode_from(message)
                .map_err(|error| error.to_string())?;
            dynamic
                .serialize_with_options(
                    serde_json::value::Serializer,
                    &SerializeOptions::new().skip_default_fields(false),
                )
                .map_err(|error| error.to_string())
        })
    }

    /// What a query parameter named `path` (dotted, by proto or JSON name)
    /// of message `name` is: its field's kind, and whether it repeats.
    pub(crate) fn query_field(&self, name: &str, path: &str) -> Result<QueryField, Refusal> {
        let mut descriptor = self.message(name)?;
        let mut json_path = Vec::new();
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let field = descriptor
                .get_field_by_json_name(part)
                .or_else(|| descriptor.get_field_by_name(part))
                .ok_or_else(|| format!("{name} has no field {}", clip(path)))?;
            let kind = field.kind();
            json_path.push(field.json_name().to_owned());
            match (kind.as_message(), parts.peek()) {
                (Some(inner), Some(_)) if !field.is_list() && !field.is_map() => {
                    descriptor = inner.clone();
                }
                (None, None) if !field.is_map() => {
                    return Ok(QueryField {
                        json_path,
                        boolean: matches!(kind, prost_reflect::Kind::Bool),
                        repeated: field.is_list(),
                    })
                }
                (Some(inner), None) if is_text_like(inner.full_name()) && !field.is_list() => {
                    return Ok(QueryField {
                        json_path,
                        boolean: false,
                        repeated: false,
                    })
                }
                _ => {
                    return Err(format!(
                    "{} cannot be a query parameter (send the request as a JSON body with POST)",
                    clip(path)
                ))
                }
            }
        }
        Err(format!("{} is not a field", clip(path)))
    }
}

/// A field set by a query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryField {
    /// Its path by JSON names (`["retryPolicy", "minimumBackoff"]`).
    pub(crate) json_path: Vec<String>,
    /// Whether its value is `true` or `false` rather than a string.
    pub(crate) boolean: bool,
    /// Whether the parameter may come more than once.
    pub(crate) repeated: bool,
}

/// Well-known messages written as one JSON string.
fn is_text_like(name: &str) -> bool {
    matches!(
        name,
        "google.protobuf.Duration" | "google.protobuf.Timestamp"
    )
}

/// Why `name` could not be read, the caller's text in it clipped.
fn unreadable(name: &str, error: &dyn std::fmt::Display) -> Refusal {
    format!("not a {name} in JSON: {}", clip(&error.to_string()))
}

#[cfg(test)]
mod tests {
    use eventgateway::v1::{PublishEventRequest, PublishEventResponse, SubscribeRequest};

    use super::*;

    #[test]
    fn requests_are_read_in_the_proto3_json_mapping_with_path_variables_over_the_body() {
        let json = Json::new().unwrap();
        let request: PublishEventRequest = json
            .read(
                "PublishEventRequest",
                br#"{"topic": "ignored", "key": "k", "event": {"type": "t", "source": "s", "json": {"a": 1}, "time": "2026-01-02T03:04:05Z"}}"#,
                &[("topic", "orders".to_owned())],
            )
            .unwrap();
        assert_eq!(request.topic, "orders");
        assert_eq!(request.key, "k");
        let event = request.event.unwrap();
        assert_eq!(event.r#type, "t");
        assert_eq!(event.time.unwrap().seconds, 1_767_323_045);

        let empty: PublishEventRequest = json
            .read("PublishEventRequest", b" ", &[("topic", "t".into())])
            .unwrap();
        assert!(empty.event.is_none());
        for bad in [
            &b"{"[..],
            br#"{"unknown": 1}"#,
            br#"{"key": 5}"#,
            br#"{} {}"#,
        ] {
            let error = json
                .read::<PublishEventRequest>("PublishEventRequest", bad, &[])
                .unwrap_err();
            assert!(error.starts_with("not a PublishEventRequest"), "{error}");
        }
    }

    #[test]
    fn answers_carry_every_field_zeros_included() {
        let json = Json::new().unwrap();
        let written = json.write(
            "PublishEventResponse",
            &PublishEventResponse {
                event_id: "e".into(),
                topic: "t".into(),
                partition: 0,
                offset: 0,
                timestamp: None,
            },
        );
        assert_eq!(
            written.unwrap(),
            serde_json::json!({"eventId": "e", "topic": "t", "partition": 0, "offset": "0"})
        );
    }

    #[test]
    fn query_parameters_name_scalar_fields_by_either_name_and_messages_only_as_text() {
        let json = Json::new().unwrap();
        let field = |path| json.query_field("SubscribeRequest", path);
        assert!(field("topics").unwrap().repeated);
        assert_eq!(field("start_from").unwrap().json_path, ["startFrom"]);
        assert!(field("orderedByKey").unwrap().boolean);
        assert_eq!(
            field("retry_policy.minimumBackoff").unwrap().json_path,
            ["retryPolicy", "minimumBackoff"]
        );
        assert_eq!(field("ackTimeout").unwrap().json_path, ["ackTimeout"]);
        for refused in ["startOffsets", "retryPolicy", "nope", "topics.x", ""] {
            assert!(field(refused).is_err(), "{refused}");
        }
        let request: SubscribeRequest = json
            .read_value(
                "SubscribeRequest",
                serde_json::json!({"topics": ["a", "b"], "ackTimeout": "30s", "maxUnacked": "5"}),
            )
            .unwrap();
        assert_eq!(request.topics, ["a", "b"]);
        assert_eq!(request.max_unacked, 5);
    }
}
