use super::*;
use http::HeaderValue;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

#[test]
fn only_cloudevents_are_taken_so_no_simple_cross_site_post_gets_through() {
    let with = |content_type: &str| headers(&[("content-type", content_type)]);
    assert_eq!(
        mode(&with("application/cloudevents+json")),
        Some(Mode::Structured)
    );
    assert_eq!(
        mode(&with("Application/CloudEvents+JSON; charset=utf-8")),
        Some(Mode::Structured)
    );
    for simple in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json",
        "",
    ] {
        assert_eq!(mode(&with(simple)), None, "{simple}");
    }
    let binary = headers(&[("content-type", "text/plain"), ("ce-specversion", "1.0")]);
    assert_eq!(mode(&binary), Some(Mode::Binary));
}

#[test]
fn a_binary_mode_event_keeps_its_body_and_every_attribute_where_the_kafka_binding_puts_it() {
    let map = headers(&[
        ("ce-specversion", "1.0"),
        ("ce-id", "e-1"),
        ("ce-source", "/orders"),
        ("ce-type", "order.placed"),
        ("ce-time", "2026-12-07T10:00:00Z"),
        ("ce-subject", "caf%C3%A9 42"),
        ("ce-partitionkey", "customer-7"),
        ("content-type", "application/json"),
        ("x-other", "not an attribute"),
    ]);
    let request = binary("orders", &map, Bytes::from_static(b"{\"n\": 1}")).unwrap();
    assert_eq!(
        (request.topic.as_str(), request.key.as_str()),
        ("orders", "customer-7")
    );
    let event = request.event.unwrap();
    assert_eq!(
        (
            event.id.as_str(),
            event.source.as_str(),
            event.r#type.as_str()
        ),
        ("e-1", "/orders", "order.placed")
    );
    assert_eq!(event.time.unwrap().seconds, 1_796_637_600);
    assert_eq!(event.content_type, "application/json");
    assert_eq!(
        event.data,
        Some(Data::Binary(b"{\"n\": 1}".to_vec())),
        "the bytes as sent"
    );
    assert_eq!(event.attributes.len(), 1, "{:?}", event.attributes);
    assert_eq!(event.attributes["ce_subject"], "café 42");
}

#[test]
fn a_structured_event_s_data_is_json_text_or_bytes_as_its_content_type_says() {
    let event = |body: serde_json::Value| {
        structured("t", body.to_string().as_bytes())
            .unwrap()
            .event
            .unwrap()
    };
    let base = serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"});
    let with = |extra: serde_json::Value| {
        let mut body = base.clone();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        event(body)
    };
    let json = with(serde_json::json!({"data": {"n": 1}, "subject": "s", "count": 3}));
    assert!(matches!(json.data, Some(Data::Json(_))));
    assert_eq!(json.attributes["ce_subject"], "s");
    assert_eq!(json.attributes["ce_count"], "3");
    let text = with(serde_json::json!({"data": "hello", "datacontenttype": "text/plain"}));
    assert_eq!(text.data, Some(Data::Text("hello".into())));
    let array = with(serde_json::json!({"data": [1, 2]}));
    assert_eq!(array.data, Some(Data::Binary(b"[1,2]".to_vec())));
    let bytes = with(serde_json::json!({"data_base64": "AAEC"}));
    assert_eq!(bytes.data, Some(Data::Binary(vec![0, 1, 2])));
    assert_eq!(event(base.clone()).data, None);
}

#[test]
fn what_is_not_a_cloudevent_is_refused_saying_why() {
    let refused = |body: &str| structured("t", body.as_bytes()).unwrap_err();
    assert!(refused("not json").contains("not JSON"));
    assert!(refused("[1]").contains("one JSON object"));
    assert!(refused(r#"{"specversion":"1.0","source":"/s","type":"t"}"#).contains("needs id"));
    assert!(refused(r#"{"id":"1","source":"/s","type":"t"}"#).contains("needs specversion"));
    assert!(
        refused(r#"{"specversion":"1.0","id":"1","source":"/s","type":false}"#)
            .contains("\"type\" is not a string")
    );
    assert!(refused(r#"{"specversion":"0.3","id":"1","source":"/s","type":"t"}"#).contains("0.3"));
    assert!(refused(
        r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"yesterday"}"#
    )
    .contains("RFC 3339"));
    assert!(
        refused(r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","Bad-Name":"x"}"#)
            .contains("not a CloudEvents name")
    );
    assert!(refused(
        r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":"AA=="}"#
    )
    .contains("not both"));
    assert!(
        refused(r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","x":{"y":1}}"#)
            .contains("not a string")
    );
    let bad_escape = headers(&[
        ("ce-specversion", "1.0"),
        ("ce-id", "%zz"),
        ("ce-source", "/s"),
        ("ce-type", "t"),
    ]);
    assert!(binary("t", &bad_escape, Bytes::new())
        .unwrap_err()
        .contains("percent"));
    let many: Vec<(String, String)> = (0..MAX_ATTRIBUTES + 1)
        .map(|i| (format!("ce-x{i}"), "v".to_owned()))
        .collect();
    let mut map = headers(&[("ce-specversion", "1.0")]);
    for (name, value) in &many {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    assert!(binary("t", &map, Bytes::new())
        .unwrap_err()
        .contains("more than"));
}

#[test]
fn a_batch_is_an_array_of_events_refused_whole_naming_the_one_that_is_not() {
    let event =
        |id: &str| serde_json::json!({"specversion": "1.0", "id": id, "source": "/s", "type": "t"});
    let body = serde_json::json!([event("a"), event("b")]).to_string();
    let events = batch("t", body.as_bytes()).unwrap();
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e.event.as_ref().unwrap().id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    let broken = serde_json::json!([event("a"), {"id": "b"}]).to_string();
    assert!(batch("t", broken.as_bytes())
        .unwrap_err()
        .starts_with("event 1 of the batch"));
    assert!(batch("t", b"{}").unwrap_err().contains("one JSON array"));
    let many = serde_json::Value::Array(vec![event("x"); MAX_BATCH_EVENTS + 1]).to_string();
    assert!(batch("t", many.as_bytes())
        .unwrap_err()
        .contains("at most 1000"));
}
