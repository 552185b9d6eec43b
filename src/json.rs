//! Conversion between `google.protobuf.Struct` (how grpcurl and generated
//! clients send JSON objects) and JSON text (how the object is stored in
//! Kafka).
//!
//! A Struct holds numbers as doubles and nests a few messages per JSON
//! level, so not every JSON object survives the trip, nor can every client
//! decode the result. JSON text becomes a Struct only when nothing is lost
//! and any client with default limits can read it ([`json_to_struct`]):
//!
//! - nested at most [`MAX_DEPTH`] levels (each level is three protobuf
//!   messages; decoders stop at 100);
//! - every number held exactly by a double: an integer within ±2^53, any
//!   other number with at most 15 significant digits, and finite;
//! - at most [`MAX_STRUCT_BYTES`] as written, checked before it is parsed,
//!   and once encoded (a Struct of numbers can be five times its text).
//!
//! Otherwise a record's JSON is delivered as `text`, unchanged. The other
//! way, a Struct to publish is refused when JSON could not carry it
//! ([`struct_problem`]): deeper than [`MAX_DEPTH`], or with a number that is
//! not finite.

use prost::Message;
use prost_types::{value::Kind, ListValue, Struct, Value};
use serde_json::{Map, Number, Value as Json};

/// Deepest nesting of objects and arrays carried as a Struct.
pub const MAX_DEPTH: usize = 24;
/// Largest JSON text, and encoded Struct, a record's JSON becomes on
/// delivery.
pub const MAX_STRUCT_BYTES: usize = 1 << 20;
/// Largest integer an `f64` holds exactly; whole numbers up to it are written
/// without a fraction (`123`, not `123.0`).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;
/// Most significant decimal digits every double holds exactly.
const MAX_DIGITS: usize = 15;

/// Serialises a `Struct` as JSON text.
pub fn struct_to_json(object: &Struct) -> Vec<u8> {
    // Writing a `serde_json::Value` into a Vec cannot fail.
    serde_json::to_vec(&Json::Object(struct_to_map(object))).unwrap_or_default()
}

/// Parses JSON text into a `Struct`: `None` unless the text is a JSON object
/// a Struct carries exactly and any client can decode (see the module).
pub fn json_to_struct(text: &[u8]) -> Option<Struct> {
    // Checked before parsing: what a JSON bomb (`[0,0,...]`) costs grows
    // with its text, tens of times over.
    if text.len() > MAX_STRUCT_BYTES {
        return None;
    }
    let Json::Object(map) = serde_json::from_slice::<Json>(text).ok()? else {
        return None;
    };
    if depth_of_map(&map) > MAX_DEPTH || !numbers_exact(text) {
        return None;
    }
    let object = map_to_struct(map);
    (object.encoded_len() <= MAX_STRUCT_BYTES).then_some(object)
}

/// Why JSON cannot carry `object`, if it cannot: it nests deeper than
/// [`MAX_DEPTH`], or holds a number that is not finite.
pub fn struct_problem(object: &Struct) -> Option<String> {
    fn check(value: &Value, depth: usize) -> Option<String> {
        if depth > MAX_DEPTH {
            return Some(format!(
                "the json payload nests more than {MAX_DEPTH} levels"
            ));
        }
        match &value.kind {
            Some(Kind::NumberValue(n)) if !n.is_finite() => Some(
                "the json payload holds a number that is not finite (NaN or infinity), which JSON cannot carry"
                    .into(),
            ),
            Some(Kind::StructValue(inner)) => inner
                .fields
                .values()
                .find_map(|value| check(value, depth + 1)),
            Some(Kind::ListValue(list)) => {
                list.values.iter().find_map(|value| check(value, depth + 1))
            }
            _ => None,
        }
    }
    object.fields.values().find_map(|value| check(value, 1))
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

/// How deep an object nests: 1 for one with no object or array inside.
fn depth_of_map(map: &Map<String, Json>) -> usize {
    1 + map.values().map(depth_of).max().unwrap_or(0)
}

fn depth_of(json: &Json) -> usize {
    match json {
        Json::Object(map) => depth_of_map(map),
        Json::Array(items) => 1 + items.iter().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether a double holds every number of valid JSON `text` exactly.
fn numbers_exact(text: &[u8]) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    let mut at = 0;
    while at < text.len() {
        let byte = text[at];
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            at += 1;
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                at += 1;
            }
            b'-' | b'0'..=b'9' => {
                let end = text[at..]
                    .iter()
                    .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                    .map_or(text.len(), |length| at + length);
                if !number_exact(&text[at..end]) {
                    return false;
                }
                at = end;
            }
            _ => at += 1,
        }
    }
    true
}

/// Whether a double holds the JSON number `token` exactly.
fn number_exact(token: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(token) else {
        return false;
    };
    if !text.contains(['.', 'e', 'E']) {
        return text
            .parse::<i128>()
            .is_ok_and(|n| n.unsigned_abs() <= MAX_SAFE_INTEGER as u128);
    }
    let mantissa = text.split(['e', 'E']).next().unwrap_or_default();
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    significant.len() <= MAX_DIGITS && text.parse::<f64>().is_ok_and(f64::is_finite)
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_are_read_as_the_closest_double() {
        // Without correct rounding, 37e070 was read one unit in the last
        // place off (3.7000000000000005e71): a changed number.
        let object = json_to_struct(br#"{"n": 37e070, "m": 0.1}"#).unwrap();
        let number = |name: &str| match object.fields[name].kind {
            Some(Kind::NumberValue(n)) => n,
            ref other => panic!("{other:?}"),
        };
        assert_eq!(number("n"), 3.7e71);
        assert_eq!(number("m"), 0.1);
        let back: Json = serde_json::from_slice(&struct_to_json(&object)).unwrap();
        assert_eq!(back["n"].as_f64(), Some(3.7e71));
    }

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

    #[test]
    fn numbers_a_double_cannot_hold_keep_json_out_of_a_struct() {
        for inexact in [
            r#"{"id":1234567890123456789}"#,
            r#"{"id":-9007199254740993}"#,
            r#"{"x":0.10000000000000001}"#,
            r#"{"x":1e400}"#,
            r#"{"a":{"b":[1,2,12345678901234567890]}}"#,
        ] {
            assert!(json_to_struct(inexact.as_bytes()).is_none(), "{inexact}");
        }
        for exact in [
            r#"{"id":9007199254740991,"x":-9007199254740991}"#,
            r#"{"x":0.1,"z":1.5e300,"w":-2.5E-3}"#,
            r#"{"s":"12345678901234567890 in a string","e":"\"1e999\""}"#,
        ] {
            let object = json_to_struct(exact.as_bytes()).expect(exact);
            let back: Json = serde_json::from_slice(&struct_to_json(&object)).unwrap();
            let original: Json = serde_json::from_str(exact).unwrap();
            assert_eq!(back.to_string(), original.to_string(), "{exact}");
        }
        // A whole number written with a fraction is the same number.
        let whole = json_to_struct(br#"{"y":1.0}"#).expect("exact");
        assert_eq!(struct_to_json(&whole), br#"{"y":1}"#);
    }

    #[test]
    fn deep_or_large_json_stays_out_of_a_struct() {
        let nested = |depth: usize| format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        assert!(json_to_struct(nested(MAX_DEPTH).as_bytes()).is_some());
        assert!(json_to_struct(nested(MAX_DEPTH + 1).as_bytes()).is_none());
        let numbers = format!("{{\"n\":[{}]}}", vec!["1"; 300_000].join(","));
        assert!(numbers.len() < MAX_STRUCT_BYTES);
        assert!(
            json_to_struct(numbers.as_bytes()).is_none(),
            "its Struct is too large"
        );
        // Text over the bound is never parsed, even when it is mostly
        // blanks and its Struct would be small.
        let blank = format!("{{\"a\":{}1}}", " ".repeat(MAX_STRUCT_BYTES));
        assert!(json_to_struct(blank.as_bytes()).is_none());
        let under = format!("{{\"a\":{}1}}", " ".repeat(MAX_STRUCT_BYTES - 16));
        assert!(json_to_struct(under.as_bytes()).is_some());
    }

    #[test]
    fn structs_json_cannot_carry_are_named() {
        let object = |value: Value| Struct {
            fields: [("x".to_owned(), value)].into(),
        };
        let number = |n: f64| Value {
            kind: Some(Kind::NumberValue(n)),
        };
        assert!(struct_problem(&object(number(1.5))).is_none());
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let problem = struct_problem(&object(number(bad))).expect("refused");
            assert!(problem.contains("not finite"), "{problem}");
        }
        let mut deep = number(1.0);
        for _ in 0..MAX_DEPTH {
            deep = Value {
                kind: Some(Kind::StructValue(object(deep))),
            };
        }
        let problem = struct_problem(&object(deep)).expect("too deep");
        assert!(problem.contains("levels"), "{problem}");
    }
}
