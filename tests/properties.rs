//! Property tests of what parses client and broker input: an event survives
//! the trip through a Kafka record; any record (any value, any headers)
//! becomes an event without a panic and without losing a byte; JSON becomes
//! a Struct only when it comes back the same, however deep it nests.

use std::collections::HashMap;

use eventgateway::json::{json_to_struct, struct_to_json};
use eventgateway::record::{
    event_to_record, millis_to_timestamp, record_to_event, IncomingRecord, BINARY_CONTENT_TYPE,
    JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE,
};
use eventgateway::v1::{event::Data, Event};
use proptest::prelude::*;
use serde_json::Value as Json;

/// Attribute names a client may send: not reserved, not empty.
fn attribute_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_.-]{0,15}".prop_filter("not reserved", |name| !name.starts_with("ce_"))
}

/// JSON a Struct carries exactly: integers within 2^53, short strings,
/// nesting a few levels deep.
fn exact_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        (-(1i64 << 53)..(1i64 << 53)).prop_map(Json::from),
        "\\PC{0,12}".prop_map(Json::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::hash_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|map| Json::Object(map.into_iter().collect())),
        ]
    })
}

fn exact_object() -> impl Strategy<Value = Json> {
    prop::collection::hash_map("[a-z]{1,6}", exact_json(), 0..4)
        .prop_map(|map| Json::Object(map.into_iter().collect()))
}

fn payload() -> impl Strategy<Value = Option<Data>> {
    prop_oneof![
        Just(None),
        "\\PC{0,40}".prop_map(|text| Some(Data::Text(text))),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|bytes| Some(Data::Binary(bytes))),
        exact_object().prop_map(|object| {
            let text = serde_json::to_vec(&object).unwrap();
            Some(Data::Json(
                json_to_struct(&text).expect("exact JSON is a Struct"),
            ))
        }),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (
        "[a-zA-Z0-9-]{1,20}",
        "\\PC{0,20}",
        "\\PC{0,20}",
        0i64..253_402_300_799_000,
        prop::collection::hash_map(attribute_name(), "\\PC{0,20}", 0..5),
        prop::collection::hash_map(
            attribute_name(),
            prop::collection::vec(any::<u8>(), 0..20),
            0..5,
        ),
        payload(),
    )
        .prop_map(|(id, r#type, source, millis, attributes, binary, data)| {
            let binary_attributes = binary
                .into_iter()
                .filter(|(name, _)| !attributes.contains_key(name))
                .collect();
            Event {
                id,
                r#type,
                source,
                time: Some(millis_to_timestamp(millis)),
                attributes,
                binary_attributes,
                data,
                content_type: String::new(),
            }
        })
}

fn incoming<'a>(value: Option<&'a [u8]>, headers: &'a [(String, Vec<u8>)]) -> IncomingRecord<'a> {
    IncomingRecord {
        topic: "t",
        partition: 0,
        offset: 7,
        value,
        timestamp_ms: Some(1_700_000_000_000),
        headers: headers
            .iter()
            .map(|(name, value)| (name.as_str(), Some(value.as_slice())))
            .collect(),
    }
}

proptest! {
    // A failure prints its minimal input; nothing is written into the tree.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn an_event_survives_the_trip_through_a_record(event in event()) {
        let record = event_to_record("key", event.clone());
        let headers: Vec<(String, Vec<u8>)> = record
            .headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect();
        // An event without a payload is a record without a value (a tombstone).
        let value = event.data.as_ref().map(|_| record.value.as_slice());
        let back = record_to_event(&incoming(value, &headers));
        // A binary value that happens to be text comes back as text.
        let mut expected = event.clone();
        let (text, binary): (HashMap<_, _>, HashMap<_, _>) = expected
            .binary_attributes
            .drain()
            .partition(|(_, value)| std::str::from_utf8(value).is_ok());
        expected.binary_attributes = binary;
        expected.attributes.extend(
            text.into_iter()
                .map(|(name, value)| (name, String::from_utf8(value).unwrap())),
        );
        expected.content_type = match &event.data {
            Some(Data::Json(_)) => JSON_CONTENT_TYPE,
            Some(Data::Text(_)) => TEXT_CONTENT_TYPE,
            Some(Data::Binary(_)) | None => BINARY_CONTENT_TYPE,
        }
        .to_owned();
        prop_assert_eq!(back, expected);
    }

    #[test]
    fn any_record_becomes_an_event_without_losing_a_byte(
        value in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        headers in prop::collection::vec(("\\PC{0,12}", prop::collection::vec(any::<u8>(), 0..16)), 0..8),
    ) {
        let event = record_to_event(&incoming(value.as_deref(), &headers));
        match (&event.data, &value) {
            (None, None) => {}
            (Some(Data::Binary(bytes)), Some(value)) => prop_assert_eq!(bytes, value),
            (Some(Data::Text(text)), Some(value)) => prop_assert_eq!(text.as_bytes(), value.as_slice()),
            (Some(Data::Json(object)), Some(value)) => {
                // Equal as JSON (numbers by value): gateway::fuzzing checks it.
                prop_assert!(serde_json::from_slice::<Json>(value).is_ok());
                prop_assert!(serde_json::from_slice::<Json>(&struct_to_json(object)).is_ok());
            }
            (data, value) => prop_assert!(false, "{:?} from {:?}", data, value),
        }
        // The last header of each name wins; its value is there, exactly.
        let mut last: HashMap<&str, &[u8]> = HashMap::new();
        for (name, value) in &headers {
            last.insert(name, value);
        }
        for (name, value) in last {
            match std::str::from_utf8(value) {
                Err(_) => prop_assert_eq!(event.binary_attributes.get(name).map(Vec::as_slice), Some(value)),
                Ok(text) if !name.starts_with("ce_") && name != "content-type" => {
                    prop_assert_eq!(event.attributes.get(name).map(String::as_str), Some(text));
                }
                Ok(_) => {}
            }
        }
    }

    #[test]
    fn json_becomes_a_struct_only_when_it_comes_back_the_same(json in exact_json()) {
        let text = serde_json::to_vec(&json).unwrap();
        if let Some(object) = json_to_struct(&text) {
            let back: Json = serde_json::from_slice(&struct_to_json(&object)).unwrap();
            prop_assert_eq!(back, json);
        } else {
            prop_assert!(!json.is_object(), "an exact object is refused: {}", json);
        }
    }
}

#[test]
fn very_deep_json_is_text_not_a_crash() {
    for depth in [25, 1_000, 100_000] {
        let text = format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
        assert!(json_to_struct(text.as_bytes()).is_none(), "depth {depth}");
        let objects = format!("{}{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        assert!(
            json_to_struct(objects.as_bytes()).is_none(),
            "depth {depth}"
        );
    }
}
