//! Everything that parses client or broker input, as the fuzz targets
//! (`fuzz/`) and their regression tests drive it: protobuf bytes a client
//! could send, decoded and checked (a publish that passes is mapped to a
//! record and back, asserting that nothing was changed on the way; a
//! StreamingSubscribe message, subscribe or settle); any Kafka record
//! becoming an event; JSON text becoming a Struct and back; an
//! `authorization` value read as a bearer token and verified (never
//! passing without a signature); the policy and JWKS documents; a gRPC-Web
//! call's body, framed or base64 text, through the edge's layers; a
//! CloudEvent POSTed over plain HTTP, in each mode; signed subscription and
//! ack ids (acks at any replica).
//! Not an API: hidden, and only for those callers.

use eventgateway::json::{json_to_struct, struct_problem, struct_to_json};
use eventgateway::record::{payload_to_record, record_to_event, IncomingRecord};
use eventgateway::v1::streaming_subscribe_request::Kind as Inbound;
use eventgateway::v1::{
    event::Data, AcknowledgeRequest, PublishEventRequest, SettleRequest, StreamingSubscribeRequest,
    SubscribeRequest,
};
use prost::Message as _;

use crate::auth::jwt::{self, Expected, KeySet};
use crate::auth::policy::{Operation, Policy};
use crate::grpc::validate;
use crate::http::cloudevents;
use crate::route::{AckIds, RouteSettings, Routing};
use crate::subscribe::ManualAcks;

/// The payload bound the publish target checks against.
const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Checks a PublishEventRequest; one that passes becomes a record whose
/// headers carry its attributes exactly, and that reads back as the same
/// attributes and payload bytes.
pub fn publish(bytes: &[u8]) {
    let Ok(request) = PublishEventRequest::decode(bytes) else {
        return;
    };
    let Ok(publish) = validate::publish_request(request, MAX_PAYLOAD_BYTES) else {
        return;
    };
    let key = publish.request.key.clone();
    let event = publish.request.event.clone().unwrap_or_default();
    let value = publish.payload.value.clone();
    let record = payload_to_record(&key, event.clone(), publish.payload);
    assert_eq!(
        record.value, value,
        "the payload is written as it was checked"
    );
    assert_eq!(record.key.unwrap_or_default(), key.as_bytes());
    let headers: Vec<(String, Vec<u8>)> = record
        .headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect();
    let incoming = IncomingRecord {
        topic: &publish.request.topic,
        partition: 0,
        offset: 0,
        value: Some(&record.value),
        timestamp_ms: record.timestamp_ms,
        headers: headers
            .iter()
            .map(|(name, value)| (name.as_str(), Some(value.as_slice())))
            .collect(),
    };
    let back = record_to_event(&incoming);
    for (name, value) in &event.attributes {
        assert_eq!(back.attributes.get(name), Some(value), "attribute {name:?}");
    }
    for (name, value) in &event.binary_attributes {
        let text = std::str::from_utf8(value).ok();
        let came = match text {
            Some(_) => back.attributes.get(name).map(|v| v.as_bytes().to_vec()),
            None => back.binary_attributes.get(name).cloned(),
        };
        assert_eq!(came.as_ref(), Some(value), "binary attribute {name:?}");
    }
    if !event.id.is_empty() {
        assert_eq!(back.id, event.id);
    }
}

/// Checks a SubscribeRequest.
pub fn subscribe(bytes: &[u8]) {
    if let Ok(request) = SubscribeRequest::decode(bytes) {
        let defaults = ManualAcks::new(std::time::Duration::from_secs(30), 100);
        let _ = validate::subscribe_request(&request, &defaults);
    }
}

/// Checks a StreamingSubscribe message: its subscribe, or its settle.
pub fn streaming_subscribe(bytes: &[u8]) {
    let Ok(message) = StreamingSubscribeRequest::decode(bytes) else {
        return;
    };
    match message.kind {
        Some(Inbound::Subscribe(request)) => {
            let defaults = ManualAcks::new(std::time::Duration::from_secs(30), 100);
            let _ = validate::subscribe_request(&request, &defaults);
        }
        Some(Inbound::Settle(request)) => {
            let _ = validate::settle_request(request, AckIds::Plain);
        }
        None => {}
    }
}

/// The content types a gRPC-Web call may come with: binary frames, or
/// frames in base64 text.
const GRPC_WEB_TYPES: [&str; 4] = [
    "application/grpc-web",
    "application/grpc-web+proto",
    "application/grpc-web-text",
    "application/grpc-web-text+proto",
];

/// Sends a gRPC-Web call (the first byte picks its content type, the rest
/// is its body) through tonic-web's layer and the edge's bad-input layer to
/// the health service, as the gateway serves it: the answer is HTTP 200
/// (the gRPC status in its trailer frame) or a 4xx, never a fault.
pub fn grpc_web(bytes: &[u8]) {
    let Some((&kind, body)) = bytes.split_first() else {
        return;
    };
    let content_type = GRPC_WEB_TYPES[usize::from(kind) % GRPC_WEB_TYPES.len()];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let (_reporter, health) = tonic_health::server::health_reporter();
        let service = tower::ServiceBuilder::new()
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(crate::edge::BadInput)
            .service(health);
        let request = http::Request::post("/grpc.health.v1.Health/Check")
            .header(http::header::CONTENT_TYPE, content_type)
            .body(tonic::body::Body::new(http_body_util::Full::new(
                bytes::Bytes::copy_from_slice(body),
            )))
            .expect("a request");
        let response = tower::ServiceExt::oneshot(service, request)
            .await
            .expect("the health service answers");
        let status = response.status();
        assert!(
            status.is_success() || status.is_client_error(),
            "HTTP {status} for a {content_type} body of {} bytes",
            body.len()
        );
        // The body ends, with its trailer frame or an error.
        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
    });
}

/// The key a token must be signed with (an Ed25519 public key whose
/// private half no one keeps): no input can verify.
const JWKS: &[u8] = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"fuzz","alg":"EdDSA","x":"BkLB-z3sR8lSrewMfRhBZPLPlZnUpUNAAauw7sQlRGI"}]}"#;

/// Reads an `authorization` value as a bearer token, finds the key it
/// names, and verifies it: none passes without a signature.
pub fn token(bytes: &[u8]) {
    let Ok(value) = std::str::from_utf8(bytes) else {
        return;
    };
    let Some(token) = crate::auth::bearer(value) else {
        return;
    };
    let _ = jwt::key_id(token);
    let keys = KeySet::parse(JWKS).expect("the fuzz key set parses");
    let expected = Expected {
        issuer: "https://issuer.example".into(),
        audience: "event-gateway".into(),
        leeway: std::time::Duration::from_secs(30),
    };
    assert!(
        jwt::verify(token, &keys, &expected).is_err(),
        "a token verified without its key's signature: {token:?}"
    );
}

/// Parses a policy document; one that parses answers questions about any
/// principal and topic.
pub fn policy(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(policy) = Policy::parse(text) {
        for principal in ["svc-a", "", "*"] {
            let _ = policy.allows(principal, Operation::Publish, "orders");
            let _ = policy.allows_subscription(principal, &["orders".into()], Some("g"));
            let _ = policy.quota(principal);
            let _ = policy.grants_any(principal, Operation::Subscribe);
        }
    }
}

/// Parses a JWKS document.
pub fn jwks(bytes: &[u8]) {
    let _ = KeySet::parse(bytes);
}

/// Checks an AcknowledgeRequest, and the same bytes as a SettleRequest;
/// and the bytes as signed ids, which none passes.
pub fn acknowledge(bytes: &[u8]) {
    signed_ids(bytes);
    if let Ok(request) = AcknowledgeRequest::decode(bytes) {
        let _ = validate::acknowledge_request(request, AckIds::Plain);
    }
    if let Ok(request) = SettleRequest::decode(bytes) {
        let _ = validate::settle_call(request.clone(), AckIds::Plain);
        let _ = validate::settle_request(request, AckIds::Plain);
    }
}

/// Reads `bytes` as a CloudEvent POSTed over HTTP in each mode (binary
/// mode: the first line's `name: value` pairs, `;`-separated, as headers,
/// the rest as the body); an event that comes out is checked as any
/// publish is.
pub fn cloudevent(bytes: &[u8]) {
    let (head, body) = match bytes.iter().position(|&b| b == b'\n') {
        Some(at) => (&bytes[..at], &bytes[at + 1..]),
        None => (bytes, &[][..]),
    };
    let mut headers = http::HeaderMap::new();
    for pair in head.split(|&b| b == b';') {
        let Some(colon) = pair.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&pair[..colon], &pair[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    let body = bytes::Bytes::copy_from_slice(body);
    let mut events = Vec::new();
    events.extend(cloudevents::binary("t", &headers, body.clone()));
    events.extend(cloudevents::structured("t", &body));
    events.extend(cloudevents::batch("t", &body).into_iter().flatten());
    for event in events {
        let _ = validate::publish_request(event, MAX_PAYLOAD_BYTES);
    }
}

/// A replica's routing with a key no input knows.
fn routing() -> Routing {
    Routing::new(RouteSettings {
        keys: vec![b"a key for the fuzz targets, 32 bytes or more".to_vec()],
        advertised: "10.0.0.1:50052".into(),
        forward_timeout: std::time::Duration::from_secs(1),
        mtls: None,
    })
    .expect("a routing without TLS")
}

/// Reads `bytes` as a signed subscription id and as a signed ack id: none
/// passes without the key's signature.
fn signed_ids(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let routing = routing();
    assert!(
        routing.owner(&text).is_err(),
        "a subscription id without a signature"
    );
    let me = routing.me().clone();
    assert!(
        AckIds::Signed(&routing, &me).open(&text).is_err(),
        "an ack id without a signature"
    );
}

/// A record header: its name and value.
type Header = (String, Vec<u8>);

/// Splits fuzz input into a record's headers and value: a header count,
/// then each header as a name and a value, each one length byte first; the
/// rest is the value (none when the input ends in the headers).
fn split_record(bytes: &[u8]) -> (Vec<Header>, Option<&[u8]>) {
    let mut rest = bytes;
    let take = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        let (&len, tail) = rest.split_first()?;
        let len = (len as usize).min(tail.len());
        let (taken, tail) = tail.split_at(len);
        *rest = tail;
        Some(taken.to_vec())
    };
    let count = take(&mut rest).map_or(0, |c| c.first().copied().unwrap_or(0) % 16);
    let mut headers = Vec::new();
    for _ in 0..count {
        let (Some(name), Some(value)) = (take(&mut rest), take(&mut rest)) else {
            return (headers, None);
        };
        // Header names reach the gateway as text (the Kafka client's API).
        headers.push((String::from_utf8_lossy(&name).into_owned(), value));
    }
    (headers, Some(rest))
}

/// Any Kafka record becomes an event, without a byte of its value or of a
/// header's value lost.
pub fn record(bytes: &[u8]) {
    let (headers, value) = split_record(bytes);
    let incoming = IncomingRecord {
        topic: "t",
        partition: 0,
        offset: 0,
        value,
        timestamp_ms: Some(0),
        headers: headers
            .iter()
            .map(|(name, value)| (name.as_str(), Some(value.as_slice())))
            .collect(),
    };
    let event = record_to_event(&incoming);
    match (&event.data, value) {
        (None, None) => {}
        (Some(Data::Binary(data)), Some(value)) => assert_eq!(data, value),
        (Some(Data::Text(text)), Some(value)) => assert_eq!(text.as_bytes(), value),
        (Some(Data::Json(object)), Some(value)) => {
            let original: serde_json::Value = serde_json::from_slice(value).unwrap();
            let carried: serde_json::Value =
                serde_json::from_slice(&struct_to_json(object)).unwrap();
            assert!(
                same_json(&original, &carried),
                "JSON comes as a Struct only unchanged"
            );
        }
        (data, value) => panic!("{data:?} from {value:?}"),
    }
    let mut last = std::collections::HashMap::new();
    for (name, value) in &headers {
        last.insert(name.as_str(), value.as_slice());
    }
    for (name, value) in last {
        if std::str::from_utf8(value).is_err() {
            assert_eq!(
                event.binary_attributes.get(name).map(Vec::as_slice),
                Some(value)
            );
        }
    }
}

/// Whether two JSON values are the same: numbers by value (`3.0` is `3`,
/// as JSON says), the rest exactly.
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(a), J::Number(b)) => a.as_f64() == b.as_f64(),
        (J::Array(a), J::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_json(a, b))
        }
        (J::Object(a), J::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| same_json(v, w)))
        }
        (a, b) => a == b,
    }
}

/// JSON text becomes a Struct only when it comes back the same; a Struct a
/// client sends is either refused or written as JSON that parses.
pub fn json(bytes: &[u8]) {
    if let Some(object) = json_to_struct(bytes) {
        let original: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&struct_to_json(&object)).unwrap();
        assert!(
            same_json(&original, &back),
            "{original} came back as {back}"
        );
    }
    if let Ok(object) = prost_types::Struct::decode(bytes) {
        if struct_problem(&object).is_none() {
            let text = struct_to_json(&object);
            assert!(serde_json::from_slice::<serde_json::Value>(&text).is_ok());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 2048,
            failure_persistence: None,
            ..Default::default()
        })]

        /// What the fuzz targets check, on arbitrary bytes, in every run of
        /// the suite.
        #[test]
        fn no_input_breaks_a_target(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            publish(&bytes);
            subscribe(&bytes);
            acknowledge(&bytes);
            streaming_subscribe(&bytes);
            record(&bytes);
            json(&bytes);
            token(&bytes);
            policy(&bytes);
            jwks(&bytes);
            grpc_web(&bytes);
            cloudevent(&bytes);
        }
    }

    #[test]
    fn whole_numbers_are_the_same_json_with_or_without_a_fraction() {
        let (a, b) = (serde_json::json!({"n": 3.0}), serde_json::json!({"n": 3}));
        assert!(same_json(&a, &b));
        assert!(!same_json(&a, &serde_json::json!({"n": 3.5})));
        assert!(!same_json(&a, &serde_json::json!({"n": "3"})));
    }

    /// Every input kept under `fuzz/regressions/<target>/` (a crash once
    /// found, or an input worth keeping) still passes its target.
    #[test]
    fn the_kept_fuzz_inputs_pass() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 11] = [
            ("publish_request", publish),
            ("subscribe_request", subscribe),
            ("acknowledge_request", acknowledge),
            ("streaming_subscribe_request", streaming_subscribe),
            ("record", record),
            ("json", json),
            ("token", token),
            ("policy", policy),
            ("jwks", jwks),
            ("grpc_web", grpc_web),
            ("cloudevent", cloudevent),
        ];
        let mut seen = 0;
        for (target, run) in targets {
            let Ok(entries) = std::fs::read_dir(root.join(target)) else {
                continue;
            };
            for entry in entries {
                run(&std::fs::read(entry.unwrap().path()).unwrap());
                seen += 1;
            }
        }
        assert!(seen > 0, "fuzz/regressions holds inputs");
    }
}
