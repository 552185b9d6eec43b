//! Conversion between `google.protobuf.Struct` (how grpcurl and generated
//! clients send JSON objects) and JSON text (how the object is stored in
//! Kafka).

use prost_types::{value::Kind, ListValue, Struct, Value};
use serde_json::{Map, Number, Value as Json};

/// Largest integer an `f64` holds exactly; whole numbers up to it are written
/// without a fraction (`123`, not `123.0`).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Serialises a `Struct` as JSON text.
pub fn struct_to_json(object: &Struct) -> Vec<u8> {
    // Writing a `serde_json::Value` into a Vec cannot fail.
    serde_json::to_vec(&Json::Object(struct_to_map(object))).unwrap_or_default()
}

/// Parses JSON text into a `Struct`; `None` unless the text is a JSON object.
pub fn json_to_struct(text: &[u8]) -> Option<Struct> {
    match serde_json::from_slice::<Json>(text).ok()? {
        Json::Object(map) => Some(map_to_struct(map)),
        _ => None,
    }
}

fn struct_to_map(object: &Struct) -> Map<String, Json> {
    object
        .fields
        .iter()
        .map(|(name, value)| (name.clone(), value_to_json(value)))
        .collect()
}

fn value_to_json(value: &Value) -> Json {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::NumberValue(n)) => number_to_json(*n),
        Some(Kind::StructValue(s)) => Json::Object(struct_to_map(s)),
        Some(Kind::ListValue(l)) => Json::Array(l.values.iter().map(value_to_json).collect()),
    }
}

fn number_to_json(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        // Exact: the value is whole and within the range an f64 holds exactly.
        Json::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Json::Null, Json::Number)
    }
}

fn map_to_struct(map: Map<String, Json>) -> Struct {
    Struct {
        fields: map
            .into_iter()
            .map(|(name, value)| (name, json_to_value(value)))
            .collect(),
    }
}

fn json_to_value(json: Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(json_to_value).collect(),
        }),
        Json::Object(map) => Kind::StructValue(map_to_struct(map)),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_nested_objects_and_keeps_integers_whole() {
        let text = br#"{"user_id":123,"email":"a@example.com","score":1.5,"tags":["x",null,true],"nested":{"k":"v"}}"#;
        let object = json_to_struct(text).expect("an object");
        let back: Json = serde_json::from_slice(&struct_to_json(&object)).unwrap();
        let original: Json = serde_json::from_slice(text).unwrap();
        assert_eq!(back, original);
        assert!(String::from_utf8(struct_to_json(&object))
            .unwrap()
            .contains(r#""user_id":123"#));
    }

    #[test]
    fn only_objects_become_structs() {
        assert!(json_to_struct(b"[1,2]").is_none());
        assert!(json_to_struct(b"\"text\"").is_none());
        assert!(json_to_struct(b"not json").is_none());
    }
}
